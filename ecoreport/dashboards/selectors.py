"""What the pages read. Every query starts from the caller's organization and aggregates in the
database; Python only shapes the few rows that come back.

Totals, series and team/project breakdowns read HourlySummary (GPUs and hosts summed away, so a
year of a large fleet stays small); host, GPU and heatmap views read HourlyUsage through its
(organization, team|project, hour) indexes; the jobs tables read HourlyJobUsage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import HourlyJobUsage, HourlySummary, HourlyUsage
from ecoreport.carbon.models import WORLD_ZONE
from ecoreport.carbon.resolver import hours_between, location_factors
from ecoreport.dashboards.periods import Period
from ecoreport.fleet.models import Gpu, Host, Site
from ecoreport.organizations.models import Organization, Project, Team


@dataclass(frozen=True)
class Scope:
    """Organization-wide, or one team, or one project."""

    organization: Organization
    team: Team | None = None
    project: Project | None = None

    def _narrow(self, qs: QuerySet) -> QuerySet:
        if self.team is not None:
            qs = qs.filter(team=self.team)
        if self.project is not None:
            qs = qs.filter(project=self.project)
        return qs

    def usage(self) -> QuerySet[HourlyUsage]:
        return self._narrow(HourlyUsage.objects.for_org(self.organization))

    def summary(self) -> QuerySet[HourlySummary]:
        return self._narrow(HourlySummary.objects.for_org(self.organization))

    def jobs(self) -> QuerySet[HourlyJobUsage]:
        return self._narrow(HourlyJobUsage.objects.for_org(self.organization))


def _window(scope: Scope, period: Period) -> QuerySet[HourlySummary]:
    return scope.summary().filter(hour__gte=period.start, hour__lt=period.end)


def _usage_window(scope: Scope, period: Period) -> QuerySet[HourlyUsage]:
    return scope.usage().filter(hour__gte=period.start, hour__lt=period.end)


_SUMS = usage.SUMMARY_SUMS


def totals(scope: Scope, period: Period) -> dict[str, Any]:
    return usage.usage_metrics(_window(scope, period).aggregate(**_SUMS))


def headline(scope: Scope, period: Period) -> dict[str, Any]:
    """Totals for the period and the change against the period before, per metric."""
    now, before = totals(scope, period), totals(scope, period.previous)
    change: dict[str, float | None] = {}
    for key, value in now.items():
        prev = before.get(key)
        change[key] = (value - prev) / prev * 100.0 if value is not None and prev else None
    idle = now.get("idle_energy_kwh") or 0.0
    energy = now.get("energy_kwh") or 0.0
    now.setdefault("idle_energy_share_pct", idle / energy * 100.0 if energy else None)
    return {"current": now, "previous": before, "change_pct": change}


def series(scope: Scope, period: Period, *, by: str) -> list[dict[str, Any]]:
    """Rows of (period_start, group value, metrics) at the period's granularity."""
    field = usage.GROUP_FIELDS[by]
    summarized = by in ("team", "project")
    qs = _window(scope, period) if summarized else _usage_window(scope, period)
    granularity = period.granularity
    rows = (
        qs.annotate(period=usage._period_expr(granularity))
        .values("period", field)
        .annotate(**(_SUMS if summarized else usage._SUMS))
        .order_by("period", field)
    )
    return [{"period_start": r["period"], by: r[field], **usage.usage_metrics(r)} for r in rows]


def series_total(scope: Scope, period: Period) -> list[dict[str, Any]]:
    rows = (
        _window(scope, period)
        .annotate(period=usage._period_expr(period.granularity))
        .values("period")
        .annotate(**_SUMS)
        .order_by("period")
    )
    return [{"period_start": r["period"], **usage.usage_metrics(r)} for r in rows]


def ranked(scope: Scope, period: Period, *, by: str) -> list[dict[str, Any]]:
    field = usage.GROUP_FIELDS[by]
    if by in ("team", "project"):
        rows = _window(scope, period).values(field).annotate(**_SUMS).order_by("-energy_j")
    else:
        rows = (
            _usage_window(scope, period).values(field).annotate(**usage._SUMS).order_by("-energy_j")
        )
    out = []
    for r in rows:
        metrics = usage.usage_metrics(r)
        energy = metrics.get("energy_kwh") or 0.0
        metrics["idle_energy_share_pct"] = (
            (metrics.get("idle_energy_kwh") or 0.0) / energy * 100.0 if energy else None
        )
        out.append({by: r[field], **metrics})
    return out


def biggest_jobs(scope: Scope, period: Period, *, limit: int = 10) -> list[dict[str, Any]]:
    """The jobs with the most energy in the period, with their GPU time, peak GPU count,
    utilization and emissions. A job's hours outside the period are not counted."""
    rows = (
        scope.jobs()
        .filter(hour__gte=period.start, hour__lt=period.end)
        .values("job_id", "user_name", "team__slug", "project__slug")
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
    return [
        {
            "job_id": r["job_id"],
            "user": r["user_name"] or None,
            "team": r["team__slug"],
            "project": r["project__slug"],
            "first_hour": r["first_hour"],
            "until": r["last_hour"] + timedelta(hours=1),
            "peak_gpus": r["peak_gpus"],
            "gpu_hours": (r["seconds"] or 0.0) / 3600.0,
            "energy_kwh": (r["energy"] or 0.0) / usage.J_PER_KWH,
            "avg_gpu_util_pct": r["util_x"] / r["util_seconds_sum"]
            if r["util_seconds_sum"]
            else None,
            "co2e_kg": (r["co2e"] or 0.0) / 1000.0,
            "co2e_market_kg": (r["co2e_market"] or 0.0) / 1000.0,
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


def intensity_series(scope: Scope, period: Period) -> list[dict[str, Any]]:
    """Per bucket: the carbon intensity the scope's energy experienced (location CO2e over
    facility kWh) and the plain average intensity of the same zones over the bucket's hours,
    weighted by where the energy was used. Below the average: the work ran at cleaner hours."""
    granularity = period.granularity
    rows = (
        _window(scope, period)
        .annotate(period=usage._period_expr(granularity))
        .values("period", "site_id")
        .annotate(facility=Sum("facility_energy_j"), co2e=Sum("co2e_g"))
        .order_by()
    )
    zones = dict(Site.objects.for_org(scope.organization).values_list("pk", "grid_zone"))
    buckets: dict[datetime, dict[str, Any]] = {}
    for r in rows:
        entry = buckets.setdefault(r["period"], {"facility": 0.0, "co2e": 0.0, "zones": {}})
        zone = zones.get(r["site_id"], WORLD_ZONE)
        entry["facility"] += r["facility"] or 0.0
        entry["co2e"] += r["co2e"] or 0.0
        entry["zones"][zone] = entry["zones"].get(zone, 0.0) + (r["facility"] or 0.0)
    if not buckets:
        return []
    used_zones = {z for entry in buckets.values() for z in entry["zones"]}
    hours = hours_between(period.start, period.end)
    factors = location_factors(zones=used_zones, hours=hours, organization_id=scope.organization.pk)
    sums: dict[datetime, dict[str, list[float]]] = {}
    for (zone, hour), factor in factors.items():
        acc = sums.setdefault(bucket_start(hour, granularity), {}).setdefault(zone, [0.0, 0.0])
        acc[0] += factor.intensity_g_per_kwh
        acc[1] += 1
    out = []
    for start in sorted(buckets):
        entry = buckets[start]
        averages = {z: total / n for z, (total, n) in sums.get(start, {}).items() if n}
        out.append(
            {
                "period_start": start,
                "experienced_g_per_kwh": entry["co2e"] / (entry["facility"] / usage.J_PER_KWH)
                if entry["facility"]
                else None,
                "zone_avg_g_per_kwh": zone_weighted_average(entry["zones"], averages),
            }
        )
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
    stale_after: timedelta = timedelta(minutes=10),
) -> dict[str, Any]:
    """Sites, hosts and GPUs with their last hour: power, utilization, idle or not, silent."""
    now = now or timezone.now()
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
    return {
        "sites": list(Site.objects.for_org(organization).annotate(host_count=Count("hosts"))),
        "hosts": hosts,
        "gpus": gpus,
        "idle_now": [g for g in gpus if g["idle"] and not g["silent"]],
        "silent_hosts": silent_hosts,
    }


def teams_of(organization: Organization) -> QuerySet[Team]:
    return Team.objects.for_org(organization).order_by("slug")


def projects_of(organization: Organization, team: Team | None = None) -> QuerySet[Project]:
    qs = Project.objects.for_org(organization)
    if team is not None:
        qs = qs.filter(team=team)
    return qs.order_by("slug")


def targets_glance(scope: Scope) -> list[dict[str, Any]]:
    """Active targets of the scope (the whole organization's on the overview) with status."""
    from ecoreport.policies.calc import METRICS
    from ecoreport.policies.models import Target

    qs = (
        Target.objects.for_org(scope.organization)
        .filter(is_active=True)
        .select_related("team", "project")
    )
    if scope.team is not None:
        qs = qs.filter(team=scope.team)
    elif scope.project is not None:
        qs = qs.filter(project=scope.project)
    from ecoreport.policies.models import TargetEvaluation

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
