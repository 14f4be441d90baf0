"""What the pages read. Every query starts from the caller's organization and aggregates in the
database; Python only shapes the few rows that come back.

Totals, series and team/project breakdowns read HourlySummary (GPUs and hosts summed away, so a
year of a large fleet stays small); host, GPU and heatmap views read HourlyUsage through its
(organization, team|project, hour) indexes; the jobs tables read HourlyJobUsage."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import Component, HourlyJobUsage, HourlySummary, HourlyUsage
from ecoreport.accounting.scope import Scope
from ecoreport.carbon.emissions import G_PER_KG, S_PER_HOUR
from ecoreport.carbon.models import FACTORS_VERSION_KEY, WORLD_ZONE
from ecoreport.carbon.resolver import hours_between, location_factors
from ecoreport.core.palette import colours_in_order
from ecoreport.dashboards.periods import Period
from ecoreport.fleet.models import Gpu, GpuClaimConflict, Host, Site
from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.organizations.selectors import label_colours

# The pages read the organization's navigation through this module (``sel.teams_of``).
from ecoreport.organizations.selectors import projects_of as projects_of
from ecoreport.organizations.selectors import teams_of as teams_of
from ecoreport.policies.calc import METRICS
from ecoreport.policies.models import Target, TargetEvaluation


def _window(scope: Scope, period: Period) -> QuerySet[HourlySummary]:
    return scope.summary().filter(hour__gte=period.start, hour__lt=period.end)


def _usage_window(scope: Scope, period: Period) -> QuerySet[HourlyUsage]:
    # The host and GPU views: rows a CodeCarbon tracker reported name no host or GPU, and
    # would be one blank host here (their energy is in the totals and breakdowns).
    return scope.usage().filter(hour__gte=period.start, hour__lt=period.end, host__isnull=False)


_SUMS = usage.SUMMARY_SUMS


def headline(scope: Scope, period: Period) -> dict[str, Any]:
    """Totals for the period and the change against the period before, per metric.

    One query: the previous window always ends where the period starts, so both are sums over
    [previous.start, end) split at the period's start.
    """
    split = Q(hour__gte=period.start)
    # Energy by component too (gpu, cpu, ram): the page shows the split where CodeCarbon
    # trackers reported CPU or RAM energy.
    components = {f"{c}_energy_j": Q(component=c) for c in Component.values}
    sums = (
        scope.summary()
        .filter(hour__gte=period.previous.start, hour__lt=period.end)
        .aggregate(
            **{f"now_{name}": Sum(name, filter=split) for name in _SUMS},
            **{f"before_{name}": Sum(name, filter=~split) for name in _SUMS},
            **{
                f"{when}_{name}": Sum("energy_j", filter=where & part, default=0.0)
                for name, part in components.items()
                for when, where in (("now", split), ("before", ~split))
            },
        )
    )
    names = [*_SUMS, *components]
    now = usage.usage_metrics({name: sums[f"now_{name}"] for name in names})
    before = usage.usage_metrics({name: sums[f"before_{name}"] for name in names})
    change: dict[str, float | None] = {}
    for key, value in now.items():
        prev = before.get(key)
        change[key] = (value - prev) / prev * 100.0 if value is not None and prev else None
    return {"current": now, "previous": before, "change_pct": change}


# Dimensions a breakdown can group by, read from HourlySummary by id (no join in the scan).
_BY_ID = {"team": "team_id", "project": "project_id", "site": "site_id"}


@dataclass
class Breakdown:
    """What a page's charts and tables need, from one scan of HourlySummary.

    ``series``: (period_start, group, metrics) rows; ``ranked``: groups by energy, largest
    first; ``over_time``: metrics per period_start for the whole scope; ``intensity``: per
    period_start, the carbon intensity the scope's energy experienced (location CO2e over
    facility kWh) and the plain average intensity of the same zones over the bucket's hours,
    weighted by where the energy was used: below the average, the work ran at cleaner hours.
    """

    by: str
    series: list[dict[str, Any]]
    ranked: list[dict[str, Any]]
    over_time: list[dict[str, Any]]
    intensity: list[dict[str, Any]]


def _add(acc: dict[str, float], row: dict[str, Any]) -> None:
    for name in _SUMS:
        acc[name] = acc.get(name, 0.0) + (row[name] or 0.0)


def _labels(organization: Organization, by: str) -> dict[int | None, tuple[str | None, str | None]]:
    """id -> (slug, name to show): teams and projects by their name (the slug where it is
    blank), sites by their slug as before."""
    if by == "team":
        rows = Team.objects.for_org(organization).values_list("pk", "slug", "name")
    elif by == "project":
        rows = Project.objects.for_org(organization).values_list("pk", "slug", "name")
    else:
        sites = Site.objects.for_org(organization).values_list("pk", "slug")
        return {None: (None, None), **{pk: (slug, slug) for pk, slug in sites}}
    return {None: (None, None), **{pk: (slug, name or slug) for pk, slug, name in rows}}


def breakdown(scope: Scope, period: Period, *, by: str, intensity: bool = True) -> Breakdown:
    """Series, ranking, scope totals over time and (unless ``intensity`` is false) the
    intensity experienced against the zone average, grouped by team, project or site, all
    folded in Python from one grouped query (a few thousand rows at most)."""
    group_field = _BY_ID[by]
    fields = ["period", group_field] + (["site_id"] if group_field != "site_id" else [])
    rows = (
        _window(scope, period)
        .annotate(period=usage._period_expr(period.granularity))
        .values(*fields)
        .annotate(**_SUMS)
        .order_by()
    )
    labels = _labels(scope.organization, by)
    # Teams and projects carry the name to show as ``team_name``/``project_name`` beside the slug
    # (last, so the CSV downloads keep their first columns).
    names = dict(labels.values()) if by != "site" else {}

    def named(group: str | None) -> dict[str, str | None]:
        return {f"{by}_name": names.get(group)} if names else {}

    per_group_period: dict[tuple[datetime, Any], dict[str, float]] = {}
    per_group: dict[Any, dict[str, float]] = {}
    per_period: dict[datetime, dict[str, float]] = {}
    site_energy: dict[datetime, dict[int | None, float]] = {}
    for r in rows:
        group = labels.get(r[group_field], (None, None))[0]
        _add(per_group_period.setdefault((r["period"], group), {}), r)
        _add(per_group.setdefault(group, {}), r)
        _add(per_period.setdefault(r["period"], {}), r)
        per_site = site_energy.setdefault(r["period"], {})
        per_site[r["site_id"]] = per_site.get(r["site_id"], 0.0) + (r["facility_energy_j"] or 0.0)

    def group_key(group: Any) -> tuple[bool, str]:
        return (group is None, group or "")

    series = [
        {
            "period_start": start,
            by: group,
            **usage.usage_metrics(sums),
            **named(group),
        }
        for (start, group), sums in sorted(
            per_group_period.items(), key=lambda item: (item[0][0], group_key(item[0][1]))
        )
    ]
    ranked = sorted(
        (
            {by: group, **usage.usage_metrics(sums), **named(group)}
            for group, sums in per_group.items()
        ),
        key=lambda r: (-r["energy_kwh"], group_key(r[by])),
    )
    over_time = [
        {"period_start": start, **usage.usage_metrics(per_period[start])}
        for start in sorted(per_period)
    ]
    if not intensity:
        return Breakdown(by, series, ranked, over_time, [])
    zones = dict(Site.objects.for_org(scope.organization).values_list("pk", "grid_zone"))
    zone_energy: dict[datetime, dict[str, float]] = {}
    for start, per_site in site_energy.items():
        energy_by_zone = zone_energy.setdefault(start, {})
        for site_id, joules in per_site.items():
            zone = zones.get(site_id, WORLD_ZONE) if site_id is not None else WORLD_ZONE
            energy_by_zone[zone] = energy_by_zone.get(zone, 0.0) + joules
    averages = zone_averages(
        scope.organization,
        {z for energy in zone_energy.values() for z in energy},
        period,
    )
    experienced = []
    for start in sorted(per_period):
        sums = per_period[start]
        facility = sums.get("facility_energy_j") or 0.0
        experienced.append(
            {
                "period_start": start,
                "experienced_g_per_kwh": (sums.get("co2e_g") or 0.0) / (facility / usage.J_PER_KWH)
                if facility
                else None,
                "zone_avg_g_per_kwh": zone_weighted_average(
                    zone_energy[start], averages.get(start, {})
                ),
            }
        )
    return Breakdown(by, series, ranked, over_time, experienced)


def ranked(scope: Scope, period: Period, *, by: str) -> list[dict[str, Any]]:
    """Hosts or GPUs by energy, largest first, from HourlyUsage (teams, projects and sites come
    ranked from ``breakdown``)."""
    field = usage.GROUP_FIELDS[by]
    rows = _usage_window(scope, period).values(field).annotate(**usage._SUMS).order_by("-energy_j")
    return [{by: r[field], **usage.usage_metrics(r)} for r in rows]


def biggest_jobs(
    scope: Scope, period: Period, *, limit: int = 10, user: str | None = None
) -> list[dict[str, Any]]:
    """The jobs with the most energy in the period, with their GPU time, peak GPU count,
    utilization and emissions. A job's hours outside the period are not counted. ``user``: only
    that user's jobs.

    Grouped by team and project ids, not their slugs: joining first would make PostgreSQL sort
    every job-hour of the period by text; the ten rows kept are labelled afterwards."""
    jobs = scope.jobs()
    if user is not None:
        jobs = jobs.filter(user_name=user)
    db = connections[jobs.db]  # the replica's, on a page that reads from it
    postgresql = db.vendor == "postgresql"
    with transaction.atomic(using=db.alias) if postgresql else nullcontext():
        if postgresql:
            # Tens of thousands of jobs in a quarter: with the default 4 MB, PostgreSQL sorts the
            # job-hours on disk before grouping; this much lets it hash them in memory (203 ms
            # -> 90 ms on a 90-day team page of the benchmark). For this query only.
            with db.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '64MB'")
        rows = list(
            jobs.filter(hour__gte=period.start, hour__lt=period.end)
            .values("job_id", "user_name", "team_id", "project_id")
            .annotate(
                energy=Sum("energy_j"),
                seconds=Sum("gpu_seconds"),
                util_seconds_sum=Sum("util_seconds"),
                util_x=Sum("util_x_seconds"),
                peak_gpus=Max("gpu_count"),
                first_hour=Min("hour"),
                last_hour=Max("hour"),
                co2e=Sum("co2e_g"),
                co2e_market=Sum("co2e_market_g"),
            )
            .order_by("-energy", "job_id")[:limit]
        )
    teams = {
        pk: (slug, name or slug)
        for pk, slug, name in Team.objects.filter(pk__in={r["team_id"] for r in rows}).values_list(
            "pk", "slug", "name"
        )
    }
    projects = {
        pk: (slug, name or slug)
        for pk, slug, name in Project.objects.filter(
            pk__in={r["project_id"] for r in rows}
        ).values_list("pk", "slug", "name")
    }
    return [
        {
            "job_id": r["job_id"],
            "user": r["user_name"] or None,
            "team": teams.get(r["team_id"], (None, None))[0],
            "project": projects.get(r["project_id"], (None, None))[0],
            "first_hour": r["first_hour"],
            "until": r["last_hour"] + timedelta(hours=1),
            "peak_gpus": r["peak_gpus"],
            "gpu_hours": (r["seconds"] or 0.0) / S_PER_HOUR,
            "energy_kwh": (r["energy"] or 0.0) / usage.J_PER_KWH,
            "avg_gpu_util_pct": r["util_x"] / r["util_seconds_sum"]
            if r["util_seconds_sum"]
            else None,
            "co2e_kg": (r["co2e"] or 0.0) / G_PER_KG,
            "co2e_market_kg": (r["co2e_market"] or 0.0) / G_PER_KG,
            # Names to show, last so that the CSV download keeps its first columns.
            "team_name": teams.get(r["team_id"], (None, None))[1],
            "project_name": projects.get(r["project_id"], (None, None))[1],
        }
        for r in rows
    ]


def bucket_start(moment: datetime, granularity: str) -> datetime:
    """The start of the period bucket an hour falls in (as ``_period_expr`` truncates in SQL)."""
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "month":
        return day.replace(day=1)
    if granularity == "quarter":
        return day.replace(day=1, month=(moment.month - 1) // 3 * 3 + 1)
    raise ValueError(f"unknown granularity {granularity!r}")


def zone_weighted_average(
    energy_by_zone: dict[str, float], zone_average: dict[str, float]
) -> float | None:
    """The zones' average intensities weighted by the facility energy used in each (pure)."""
    weight = sum(e for z, e in energy_by_zone.items() if z in zone_average)
    if not weight:
        return None
    return sum(e * zone_average[z] for z, e in energy_by_zone.items() if z in zone_average) / weight


ZONE_AVERAGES_TTL_S = 15 * 60


def zone_averages(
    organization: Organization, zones: set[str], period: Period
) -> dict[datetime, dict[str, float]]:
    """Per bucket of the period and zone: the plain average of the zone's hourly
    location-based factors (as the resolver picks them) over the bucket's hours in the period.

    Resolving every hour of a quarter builds thousands of factor objects, so the answer is
    cached under the factors' version, which every factor change moves on (``factors_changed``);
    the time limit bounds staleness where the cache is per process.
    """
    if not zones:
        return {}
    key = ":".join(
        [
            "dashboards:zone-averages",
            str(cache.get(FACTORS_VERSION_KEY, 0)),
            str(organization.pk),
            ",".join(sorted(zones)),
            period.start.isoformat(),
            period.end.isoformat(),
            period.granularity,
        ]
    )
    cached = cache.get(key)
    if cached is not None:
        return cached
    factors = location_factors(
        zones=zones, hours=hours_between(period.start, period.end), organization_id=organization.pk
    )
    sums: dict[datetime, dict[str, list[float]]] = {}
    for (zone, hour), factor in factors.items():
        acc = sums.setdefault(bucket_start(hour, period.granularity), {}).setdefault(
            zone, [0.0, 0.0]
        )
        acc[0] += factor.intensity_g_per_kwh
        acc[1] += 1
    out = {
        start: {z: total / n for z, (total, n) in per_zone.items() if n}
        for start, per_zone in sums.items()
    }
    cache.set(key, out, ZONE_AVERAGES_TTL_S)
    return out


def heatmap(scope: Scope, period: Period, *, limit_hosts: int = 40) -> dict[str, Any]:
    """Average GPU utilization per host and day (hosts with the most energy first)."""
    window = _usage_window(scope, period)
    hosts = list(
        window.values("host__hostname")
        .annotate(e=Sum("energy_j"))
        .order_by("-e")
        .values_list("host__hostname", flat=True)[:limit_hosts]
    )
    rows = (
        window.filter(host__hostname__in=hosts)
        .annotate(period=usage._period_expr("day"))
        .values("period", "host__hostname")
        .annotate(**usage._SUMS)
        .order_by("period")
    )
    return {
        "hosts": hosts,
        "cells": [
            (r["period"], r["host__hostname"], usage.usage_metrics(r)["avg_gpu_util_pct"])
            for r in rows
        ],
    }


def fleet_state(
    organization: Organization,
    *,
    now: datetime | None = None,
    stale_after: timedelta | None = None,
) -> dict[str, Any]:
    """Sites, hosts and GPUs with their last hour: power, utilization, idle or not, silent
    (nothing received for ``AGENT_STALE_AFTER_S``, unless ``stale_after`` says otherwise)."""
    now = now or timezone.now()
    stale_after = stale_after or timedelta(seconds=settings.AGENT_STALE_AFTER_S)
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    recent = {
        r["gpu_id"]: r
        for r in HourlyUsage.objects.for_org(organization)
        .filter(hour__gte=last_hour)
        .values("gpu_id")
        .annotate(**usage._SUMS)
    }
    gpus = []
    for gpu in (
        Gpu.objects.for_org(organization)
        .select_related("host", "host__site")
        .order_by("host__hostname", "index")
    ):
        r = recent.get(gpu.pk)
        metrics = usage.usage_metrics(r) if r else {}
        seconds = (r or {}).get("gpu_seconds") or 0.0
        power_w = (r["energy_j"] / seconds) if r and seconds else None
        gpus.append(
            {
                "gpu": gpu,
                "power_w": power_w,
                "util_pct": metrics.get("avg_gpu_util_pct"),
                # Idle: nine tenths of its last-hour energy was drawn with no process on it.
                "idle": r is not None
                and (r["idle_energy_j"] or 0) >= 0.9 * (r["energy_j"] or 0) > 0,
                "silent": gpu.last_seen_at is None or now - gpu.last_seen_at > stale_after,
            }
        )
    hosts = list(
        Host.objects.for_org(organization).select_related("site").annotate(gpu_count=Count("gpus"))
    )
    silent_hosts = [
        h
        for h in hosts
        if h.gpu_count and (h.last_seen_at is None or now - h.last_seen_at > stale_after)
    ]
    # GPUs a second host listed while their own host reported them (its samples refused): a day
    # of them, so that a collision seen overnight is still on the page in the morning.
    conflicts = list(
        GpuClaimConflict.objects.for_org(organization)
        .filter(last_at__gte=now - timedelta(days=1))
        .select_related("gpu", "gpu__host", "claimant")
    )
    return {
        "sites": list(Site.objects.for_org(organization).annotate(host_count=Count("hosts"))),
        "hosts": hosts,
        "gpus": gpus,
        "idle_now": [g for g in gpus if g["idle"] and not g["silent"]],
        "silent_hosts": silent_hosts,
        "claim_conflicts": conflicts,
    }


def targets_glance(scope: Scope) -> list[dict[str, Any]]:
    """Active targets of the scope (the whole organization's on the overview) with status."""
    qs = (
        Target.objects.for_org(scope.organization)
        .filter(is_active=True)
        .select_related("team", "project")
    )
    if scope.team is not None:
        qs = qs.filter(team=scope.team)
    elif scope.project is not None:
        qs = qs.filter(project=scope.project)
    latest = TargetEvaluation.objects.filter(target=OuterRef("pk")).order_by("-evaluated_at", "-id")
    qs = qs.annotate(
        latest_value=Subquery(latest.values("value")[:1]),
        latest_forecast=Subquery(latest.values("forecast_value")[:1]),
        latest_threshold=Subquery(latest.values("threshold_value")[:1]),
    )
    # One query whatever the number of targets: the latest evaluation comes as subqueries.
    return [
        {
            "target": t,
            "evaluation": {
                "value": t.latest_value,
                "forecast_value": t.latest_forecast,
                "threshold_value": t.latest_threshold,
            },
            "unit": METRICS[t.metric].unit,
        }
        for t in qs.order_by("name")
    ]


def live_fleet(organization: Organization, *, now: datetime | None = None) -> dict[str, Any]:
    """The fleet right now, from each GPU's latest raw sample (not the rollups, which lag by up
    to an hour): its power, whether a process was on it, and each host's last sample.

    A GPU is *silent* when its latest sample ended more than ``AGENT_STALE_AFTER_S`` ago (or it
    has none); silent GPUs add nothing to the power now. *Busy*: its latest sample had a share
    with a process (not idle); *idle*: it had none. One query for the latest samples (a
    subquery per GPU on the (gpu, start) key) and one for their shares."""
    from ecoreport.telemetry.models import EnergySample, SampleShare

    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.AGENT_STALE_AFTER_S)
    latest = EnergySample.objects.filter(gpu=OuterRef("pk")).order_by("-start")
    gpus = list(
        Gpu.objects.for_org(organization)
        .select_related("host")
        .annotate(latest_id=Subquery(latest.values("pk")[:1]))
        .order_by("host__hostname", "index")
    )
    samples = {
        s.pk: s
        for s in EnergySample.objects.filter(
            organization=organization, pk__in=[g.latest_id for g in gpus if g.latest_id]
        )
    }
    busy_ids = set(
        SampleShare.objects.filter(
            organization=organization, sample_id__in=list(samples), idle=False
        ).values_list("sample_id", flat=True)
    )
    power_w = 0.0
    rows = []
    hosts: dict[str, dict[str, Any]] = {}
    for gpu in gpus:
        sample = samples.get(gpu.latest_id) if gpu.latest_id else None
        silent = sample is None or now - sample.end > stale_after
        state = "silent" if silent else ("busy" if sample.pk in busy_ids else "idle")  # type: ignore[union-attr]
        watts = sample.energy_j / sample.duration_s if sample and sample.duration_s else None
        if not silent and watts is not None:
            power_w += watts
        rows.append(
            {
                "host": gpu.host.hostname,
                "index": gpu.index,
                "uuid": gpu.uuid,
                "state": state,
                "power_w": watts,
                "util_pct": sample.gpu_util_pct if sample else None,
                "sample_end": sample.end if sample else None,
            }
        )
        host = hosts.setdefault(gpu.host.hostname, {"host": gpu.host.hostname, "last": None})
        if sample and (host["last"] is None or sample.end > host["last"]):
            host["last"] = sample.end
    host_rows = []
    for host in hosts.values():
        last = host["last"]
        age = (now - last).total_seconds() if last else None
        host_rows.append(
            {
                "host": host["host"],
                "last_sample_at": last,
                "seconds_since": age,
                "offline": age is None or age > stale_after.total_seconds(),
            }
        )
    counts = {s: sum(1 for r in rows if r["state"] == s) for s in ("busy", "idle", "silent")}
    return {
        "now": now,
        "stale_after_s": stale_after.total_seconds(),
        "power_w": power_w,
        "gpus": rows,
        "gpus_busy": counts["busy"],
        "gpus_idle": counts["idle"],
        "gpus_silent": counts["silent"],
        "hosts": host_rows,
    }


# How far back the job, host and GPU pages read the raw samples (the rest is from the rollups).
RAW_LOOKBACK = timedelta(days=7)


def job_detail(organization: Organization, job_id: str) -> dict[str, Any] | None:
    """One job over its whole life, from its rolled-up hours: totals, the hourly timeline, who
    ran it where, and the GPUs it used (from the raw samples while they are kept). ``None`` when
    the organization has no job of that id."""
    from ecoreport.savings.assumptions import Assumptions, source_record
    from ecoreport.savings.levers import TITLES
    from ecoreport.savings.selectors import what_if_fractions
    from ecoreport.telemetry.models import SampleShare

    rows = HourlyJobUsage.objects.for_org(organization).filter(job_id=job_id)
    hours = list(
        rows.values("hour")
        .annotate(
            energy=Sum("energy_j"),
            seconds=Sum("gpu_seconds"),
            gpus=Sum("gpu_count"),
            co2e=Sum("co2e_g"),
        )
        .order_by("hour")
    )
    if not hours:
        return None
    sums = rows.aggregate(
        energy_j=Sum("energy_j"),
        gpu_seconds=Sum("gpu_seconds"),
        util_seconds=Sum("util_seconds"),
        util_x_seconds=Sum("util_x_seconds"),
        facility_energy_j=Sum("facility_energy_j"),
        co2e_g=Sum("co2e_g"),
        co2e_market_g=Sum("co2e_market_g"),
        peak=Max("gpu_count"),
    )
    metrics = usage.usage_metrics(sums)
    teams = Team.objects.filter(pk__in=rows.values("team_id")).order_by("slug")
    projects = Project.objects.filter(pk__in=rows.values("project_id")).order_by("slug")
    sites = Site.objects.filter(pk__in=rows.values("site_id")).order_by("slug")
    users = sorted(set(rows.exclude(user_name="").values_list("user_name", flat=True)))
    first, last = hours[0]["hour"], hours[-1]["hour"]
    # A sample may start in the hour before the job's first rolled-up hour (proration). The raw
    # shares have no job index: a job that ran for weeks is read over its last RAW_LOOKBACK only.
    gpus = list(
        SampleShare.objects.filter(
            organization=organization,
            job_id=job_id,
            sample__start__gte=max(first - timedelta(hours=1), last - RAW_LOOKBACK),
            sample__start__lt=last + timedelta(hours=1),
        )
        .values("sample__host__hostname", "sample__gpu__index", "sample__gpu__uuid")
        .annotate(energy=Sum("energy_j"))
        .order_by("sample__host__hostname", "sample__gpu__index")
    )
    a = Assumptions()
    low_util = metrics["avg_gpu_util_pct"] is not None and (
        metrics["avg_gpu_util_pct"] < a.low_util_threshold_pct
    )
    what_ifs = [
        {
            "key": key,
            "title": TITLES[key],
            "fraction_pct": fraction * 100.0,
            "energy_kwh": (metrics["energy_kwh"] or 0.0) * fraction,
            "co2e_kg": (metrics["co2e_kg"] or 0.0) * fraction,
            "sources": [source_record(n) for n in names],
        }
        for key, fraction, names in what_if_fractions(a)
    ]
    return {
        "job_id": job_id,
        "first_hour": first,
        "until": last + timedelta(hours=1),
        "peak_gpus": sums["peak"],
        **metrics,
        "teams": list(teams),
        "projects": list(projects),
        "sites": list(sites),
        "users": users,
        "hours": [
            {
                "hour": h["hour"],
                "energy_kwh": (h["energy"] or 0.0) / usage.J_PER_KWH,
                "gpu_hours": (h["seconds"] or 0.0) / S_PER_HOUR,
                "gpus": h["gpus"],
                "co2e_kg": (h["co2e"] or 0.0) / G_PER_KG,
            }
            for h in hours
        ],
        "gpus": [
            {
                "host": g["sample__host__hostname"],
                "index": g["sample__gpu__index"],
                "uuid": g["sample__gpu__uuid"],
                "energy_kwh": (g["energy"] or 0.0) / usage.J_PER_KWH,
            }
            for g in gpus
        ],
        "gpus_since": max(first - timedelta(hours=1), last - RAW_LOOKBACK),
        "low_utilization": low_util,
        "low_util_threshold_pct": a.low_util_threshold_pct,
        "what_ifs": what_ifs,
    }


def user_jobs(organization: Organization, user_name: str, period: Period) -> list[dict[str, Any]]:
    """A user's jobs in the period, biggest first (the same rows as the biggest-jobs tables)."""
    return biggest_jobs(Scope(organization), period, user=user_name, limit=100)


def zone_hourly_intensity(
    organization: Organization, zone: str, *, start: datetime, end: datetime
) -> dict[str, list[dict[str, Any]]]:
    """A zone's hourly factors in ``[start, end)`` by basis (``location``, ``marginal``), the
    organization's own before shared ones for the same hour, each marked actual or forecast
    (the best window's own reading of them: ``savings.windows.hourly_factors``)."""
    from ecoreport.savings.windows import hourly_factors

    return {
        basis: [
            {
                "start": r.start,
                "intensity_g_per_kwh": r.intensity_g_per_kwh,
                "forecast": r.is_forecast,
                "source": r.source,
            }
            for r in rows
        ]
        for basis, rows in hourly_factors(organization, zone=zone, start=start, end=end).items()
    }


def chart_colours(organization: Organization, by: str) -> dict[str, str]:
    """Each team's, project's or site's own chart colour (creation order), keyed by slug."""
    if by == "site":
        slugs = Site.objects.for_org(organization).order_by("pk").values_list("slug", flat=True)
        return colours_in_order(list(slugs))
    return label_colours(organization, by)


def device_usage(
    organization: Organization, period: Period, *, host: Host | None = None, gpu: Gpu | None = None
) -> dict[str, Any]:
    """One host's or one GPU's period from the rollups: totals, a series at the period's
    granularity, the split by team and project, and (from the raw shares while kept) the jobs
    that ran on it."""
    from ecoreport.telemetry.models import SampleShare

    rows = HourlyUsage.objects.for_org(organization).filter(
        hour__gte=period.start, hour__lt=period.end
    )
    # The jobs from the raw shares over the period's last RAW_LOOKBACK at most (no job index).
    shares = SampleShare.objects.filter(
        organization=organization,
        sample__start__gte=max(period.start, period.end - RAW_LOOKBACK),
        sample__start__lt=period.end,
    ).exclude(job_id="")
    if host is not None:
        rows, shares = rows.filter(host=host), shares.filter(sample__host=host)
    if gpu is not None:
        rows, shares = rows.filter(gpu=gpu), shares.filter(sample__gpu=gpu)
    totals = usage.usage_metrics(rows.aggregate(**usage._SUMS))
    series = [
        {"period_start": r["period"], **usage.usage_metrics(r)}
        for r in rows.annotate(period=usage._period_expr(period.granularity))
        .values("period")
        .annotate(**usage._SUMS)
        .order_by("period")
    ]
    split = [
        {
            "team": r["team__slug"],
            "team_name": r["team__name"] or r["team__slug"],
            "project": r["project__slug"],
            "project_name": r["project__name"] or r["project__slug"],
            **usage.usage_metrics(r),
        }
        for r in rows.values("team__slug", "team__name", "project__slug", "project__name")
        .annotate(**usage._SUMS)
        .order_by("-energy_j")
    ]
    jobs = [
        {"job_id": r["job_id"], "energy_kwh": (r["e"] or 0.0) / usage.J_PER_KWH}
        for r in shares.values("job_id").annotate(e=Sum("energy_j")).order_by("-e", "job_id")[:20]
    ]
    return {
        "totals": totals,
        "series": series,
        "split": split,
        "jobs": jobs,
        "jobs_since": max(period.start, period.end - RAW_LOOKBACK),
    }
