"""What ``/metrics`` reads: one organization's energy and emissions totals, each GPU's latest
sample, and its targets' statuses. Every read starts from the organization, so a scrape can
never see another organization's series.

The series are bounded by teams x projects x sites (the totals) and hosts x GPUs (the gauges),
never by jobs: the totals are summed from ``HourlySummary``, which has no job column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery, Sum

from ecoreport.accounting.scope import Scope
from ecoreport.fleet.models import Gpu, Site
from ecoreport.organizations.models import Organization, Project, Team
from ecoreport.policies.calc import Status
from ecoreport.policies.selectors import targets_for_org
from ecoreport.telemetry.models import EnergySample

# The figures a total carries, as HourlySummary columns.
TOTAL_COLUMNS = ("energy_j", "facility_energy_j", "co2e_g", "co2e_market_g")

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


def totals_for_org(organization: Organization) -> list[Total]:
    """Sums over every rolled-up hour, by (team, project, site), ordered by their slugs.

    Grouped by ids first and named afterwards from the organization's own (small) tables: the
    aggregate then reads only the summary, and the joins are a few dozen dictionary lookups.
    """
    rows = (
        Scope(organization)
        .summary()
        .order_by()  # the model's ordering (hour first) would split the groups
        .values("team_id", "project_id", "site_id")
        .annotate(**{column: Sum(column) for column in TOTAL_COLUMNS})
    )
    teams = dict(Team.objects.for_org(organization).values_list("pk", "slug"))
    projects = dict(Project.objects.for_org(organization).values_list("pk", "slug"))
    sites = dict(Site.objects.for_org(organization).values_list("pk", "slug"))
    totals = [
        Total(
            team=teams.get(row["team_id"], ""),
            project=projects.get(row["project_id"], ""),
            site=sites.get(row["site_id"], ""),
            **{column: float(row[column] or 0.0) for column in TOTAL_COLUMNS},
        )
        for row in rows
    ]
    return sorted(totals, key=lambda t: (t.team, t.project, t.site))


def gpu_readings(organization: Organization, *, now: datetime) -> list[GpuReading]:
    """Each GPU of the organization with its latest sample (by start), ordered by host and index.

    One index probe per GPU (the samples' natural key is (gpu, start)) finds the latest sample's
    id; a second query reads those samples. Both stay small at any history length.
    """
    latest = EnergySample.objects.filter(gpu=OuterRef("pk")).order_by("-start").values("pk")[:1]
    gpus = list(
        Gpu.objects.for_org(organization)
        .order_by("host__hostname", "index", "uuid")
        .annotate(latest_sample_id=Subquery(latest))
        .values("host__hostname", "index", "uuid", "latest_sample_id")
    )
    ids = [g["latest_sample_id"] for g in gpus if g["latest_sample_id"] is not None]
    samples = {
        s["pk"]: s
        for s in EnergySample.objects.for_org(organization)
        .filter(pk__in=ids)
        .values("pk", "end", "duration_s", "energy_j", "gpu_util_pct")
    }
    fresh_since = now - GPU_SAMPLE_FRESH_FOR
    readings = []
    for gpu in gpus:
        sample = samples.get(gpu["latest_sample_id"])
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
