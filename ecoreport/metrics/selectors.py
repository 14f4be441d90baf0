"""What ``/metrics`` reads: one organization's energy and emissions totals, each GPU's latest
sample, and its targets' statuses. Every read starts from the organization, so a scrape can
never see another organization's series.

The series are bounded by teams x projects x sites (the totals) and hosts x GPUs (the gauges),
never by jobs: the totals are summed from ``HourlySummary``, which has no job column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, QuerySet, Subquery, Sum

from ecoreport.accounting.scope import Scope
from ecoreport.fleet.models import Gpu, Site
from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.policies.calc import Status
from ecoreport.policies.selectors import targets_for_org
from ecoreport.telemetry.models import EnergySample

# The figures a total carries, as HourlySummary columns.
TOTAL_COLUMNS = ("energy_j", "facility_energy_j", "co2e_g", "co2e_market_g")

# Hours before midnight UTC this long ago are summed from the cache (``totals_for_org``).
CLOSED_AFTER = timedelta(days=1)

# A GPU whose latest sample ended longer ago than this has no power or utilization series: a
# reading from yesterday is not a current gauge (Prometheus would mark an exporter's series
# stale when it stops). The host's last-sample timestamp stays, so dashboards can show it.
GPU_SAMPLE_FRESH_FOR = timedelta(minutes=15)

# ecoreport_target_status: 0 on track, 1 at risk, 2 breached. Targets with no data or not yet
# evaluated have no value to give and no series.
TARGET_STATUS_VALUES = {Status.ON_TRACK: 0, Status.AT_RISK: 1, Status.BREACHED: 2}


@dataclass(frozen=True)
class Total:
    """Everything rolled up so far for one (team, project, site); slugs, "" for none."""

    team: str
    project: str
    site: str
    energy_j: float
    facility_energy_j: float
    co2e_g: float
    co2e_market_g: float


@dataclass(frozen=True)
class GpuReading:
    host: str
    index: int
    uuid: str
    # None when the GPU has no sample, or none fresh enough to stand for its power now.
    power_w: float | None
    utilization_ratio: float | None
    # The end of the GPU's latest sample, fresh or not; None when it has none.
    last_sample_end: datetime | None


@dataclass(frozen=True)
class TargetState:
    target_id: int
    name: str
    metric: str
    status_value: int


def _sums_by_ids(summary: QuerySet) -> dict[tuple, list[float]]:
    """Sums by (team id, project id, site id) of these summary rows."""
    rows = (
        summary.order_by()  # the model's ordering (hour first) would split the groups
        .values_list("team_id", "project_id", "site_id")
        .annotate(*(Sum(column) for column in TOTAL_COLUMNS))
    )
    return {tuple(row[:3]): [float(v or 0.0) for v in row[3:]] for row in rows}


def _closed_hours_cutoff(now: datetime) -> datetime:
    """Hours before this are "closed": summed from the cache. Midnight UTC a day back, so the
    hours read live are always the last 24 to 48, where the rollup books new energy."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - CLOSED_AFTER


def totals_for_org(organization: Organization, *, now: datetime) -> list[Total]:
    """Sums over every rolled-up hour, by (team, project, site), ordered by their slugs.

    The closed hours (a year of them is most of the summary table: ~140 ms to sum at 1,000
    GPUs, the whole budget of a scrape) are summed once per ``METRICS_CLOSED_HOURS_CACHE_S``
    and cached; the last one to two days are summed at every scrape. A change to a closed hour
    (a factor change's recompute, an agent's spool replayed after a day's outage) reaches the
    counters within that time.

    Grouped by ids and named afterwards from the organization's own (small) tables: the
    aggregate reads only the summary, and an id that is gone (a deleted team, whose rows the
    database set to null) is named "" as the null rows are.
    """
    cutoff = _closed_hours_cutoff(now)
    summary = Scope(organization).summary()
    key = f"metrics:closed-totals:{organization.pk}:{cutoff.isoformat()}"
    closed = cache.get(key)
    if closed is None:
        closed = _sums_by_ids(summary.filter(hour__lt=cutoff))
        cache.set(key, closed, timeout=settings.METRICS_CLOSED_HOURS_CACHE_S)
    live = _sums_by_ids(summary.filter(hour__gte=cutoff))
    teams = dict(Team.objects.for_org(organization).values_list("pk", "slug"))
    projects = dict(Project.objects.for_org(organization).values_list("pk", "slug"))
    sites = dict(Site.objects.for_org(organization).values_list("pk", "slug"))
    named: dict[tuple[str, str, str], list[float]] = {}
    for part in (closed, live):
        for (team_id, project_id, site_id), sums in part.items():
            labels = (teams.get(team_id, ""), projects.get(project_id, ""), sites.get(site_id, ""))
            into = named.setdefault(labels, [0.0] * len(TOTAL_COLUMNS))
            for i, value in enumerate(sums):
                into[i] += value
    return [
        Total(team, project, site, *sums) for (team, project, site), sums in sorted(named.items())
    ]


def gpu_readings(organization: Organization, *, now: datetime) -> list[GpuReading]:
    """Each GPU of the organization with its latest sample (by start), ordered by host and index.

    One index probe per GPU (the samples' natural key is (gpu, start)) finds the latest sample,
    inside the query that reads those samples; it stays small at any history length.
    """
    gpus = Gpu.objects.for_org(organization)
    latest = EnergySample.objects.filter(gpu=OuterRef("pk")).order_by("-start").values("pk")[:1]
    samples = {
        s["gpu_id"]: s
        for s in EnergySample.objects.for_org(organization)
        .filter(pk__in=gpus.annotate(latest_id=Subquery(latest)).values("latest_id"))
        .order_by()  # the model's ordering joins GPUs and hosts to sort by them: not needed
        .values("gpu_id", "end", "duration_s", "energy_j", "gpu_util_pct")
    }
    fresh_since = now - GPU_SAMPLE_FRESH_FOR
    readings = []
    for gpu in gpus.order_by("host__hostname", "index", "uuid").values(
        "pk", "host__hostname", "index", "uuid"
    ):
        sample = samples.get(gpu["pk"])
        fresh = sample is not None and sample["end"] >= fresh_since
        util_pct = sample["gpu_util_pct"] if fresh and sample else None
        readings.append(
            GpuReading(
                host=gpu["host__hostname"],
                index=gpu["index"],
                uuid=gpu["uuid"],
                power_w=sample["energy_j"] / sample["duration_s"]
                if fresh and sample and sample["duration_s"] > 0
                else None,
                utilization_ratio=util_pct / 100.0 if util_pct is not None else None,
                last_sample_end=sample["end"] if sample else None,
            )
        )
    return readings


def target_states(organization: Organization) -> list[TargetState]:
    """The active targets with a status to report, by name."""
    return [
        TargetState(
            target_id=target.pk,
            name=target.name,
            metric=target.metric,
            status_value=TARGET_STATUS_VALUES[target.status],
        )
        for target in targets_for_org(organization).filter(
            is_active=True, status__in=list(TARGET_STATUS_VALUES)
        )
    ]
