"""Rollups: raw samples → HourlyUsage, HourlyJobUsage and HourlySummary, idempotently, one
(organization, hour) at a time.

A rollup of an hour deletes that hour's rows and rebuilds them from the samples, so running it
twice, or after late data, gives the same rows as running it once on complete data. On
PostgreSQL an advisory lock per (organization, hour) keeps two workers from
rebuilding the same hour at once; SQLite serialises writers anyway.

Each rolled-up hour gets its emissions from ``accounting.emissions`` (which also rewrites
them when factors change) and its summary rows from ``accounting.summary``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, models, transaction

from ecoreport.accounting.emissions import emissions_apply
from ecoreport.accounting.models import (
    Component,
    EmissionFigures,
    EmissionProvenance,
    EnergyMeasures,
    Source,
    UsageMeasures,
    field_names,
)
from ecoreport.accounting.summary import summary_rebuild
from ecoreport.carbon.resolver import SiteHourFactors, site_hour_factors
from ecoreport.codecarbon.models import EnergyPart, Run
from ecoreport.core.periods import hour_floor
from ecoreport.telemetry.models import DirtyHour
from ecoreport.telemetry.validation import MAX_INTERVAL_S

log = logging.getLogger(__name__)

# One statement rolls up a run of consecutive hours: the share table has no time column, so
# each statement may scan it (PostgreSQL picks a hash join when the range is a large part of
# the table); one scan per run instead of one per hour keeps a backlog linear. The hour is
# truncated in SQL, as each backend stores it (SQLite: Django's "YYYY-MM-DD HH:MM:SS[.ffffff]"
# text, whose minutes and seconds are read by position).
MAX_RUN_HOURS = 24
_HOUR_EXPR = {
    "postgresql": "date_trunc('hour', s.start, 'UTC')",
    "sqlite": "strftime('%%Y-%%m-%%d %%H:00:00', s.start)",
}
_NEXT_HOUR_EXPR = {
    "postgresql": "date_trunc('hour', s.start, 'UTC') + interval '1 hour'",
    "sqlite": "strftime('%%Y-%%m-%%d %%H:00:00', s.start, '+1 hour')",
}
# Seconds from the start of the sample's hour to the sample's start.
_OFFSET_EXPR = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM s.start - date_trunc('hour', s.start, 'UTC'))"
    " AS DOUBLE PRECISION)",
    "sqlite": "(CAST(substr(s.start, 15, 2) AS INTEGER) * 60 + CAST(substr(s.start, 18) AS REAL))",
}

# Proration. Ingest refuses samples longer than MAX_INTERVAL_S (an hour), so a sample overlaps
# at most two hours: the one it starts in (its head) and the next (its tail, when it crosses the
# boundary, i.e. ends after the next hour's first instant). Each share's energy is split between
# them by time: the larger part is the product (energy x its fraction of the duration, a
# fraction >= 0.5) and the smaller part the energy minus it. By Sterbenz' lemma that subtraction
# is exact in floating point, so the two parts of every share add up to the share's energy
# exactly, and the hours to the sample. Seconds (GPU time, utilization weights) are split the
# same way; ``sample_count`` counts a sample in the hour it starts only, so that counts still
# add up over hours.
#
# Crossing samples are few (one per GPU and hour boundary at most, for the agent's aligned
# intervals), so they are taken apart from the rest: a first statement copies the run's
# crossing samples (including those of the hour before it whose tails reach into it) into a
# small temporary table; the main scan is the plain sum over the samples that stay in their
# hour, as without proration (same plan, no per-row arithmetic for the split); the crossing
# samples' head and tail parts are then added from the small table through the share index.
# The parts table may hold several rows per key: the INSERTs below sum them anyway.
#
# Raw SQL, CASE included, on purpose: temporary tables, CREATE TABLE ... AS and INSERT ...
# SELECT are beyond the ORM, and this is the hot path. The column lists are derived from the
# abstract measure models (``accounting.models``), so a new measure is one field there plus its
# expression in ``_PART_SUMS`` (a missing one fails when this module loads).
_CROSSING_CREATE = """
CREATE TEMPORARY TABLE rollup_crossing AS
SELECT s.id AS id, s.organization_id AS organization_id, s.gpu_id AS gpu_id,
       s.host_id AS host_id, s.gpu_util_pct AS gpu_util_pct, s.duration_s AS duration_s,
       {hour_expr} AS head_hour, {next_hour_expr} AS tail_hour,
       3600.0 - {offset_expr} AS head_s
FROM telemetry_energysample s
WHERE s.organization_id = %s AND s.start >= %s AND s.start < %s
  AND s."end" > {next_hour_expr}
"""
# Each measure of a share's part, from its energy {e} (J) and its seconds {t}; ``sample_count``
# is counted apart (a sample counts in the hour it starts only).
_PART_SUMS = {
    "energy_j": "{e}",
    "idle_energy_j": "CASE WHEN sh.idle THEN {e} ELSE 0.0 END",
    "unattributed_energy_j": "CASE WHEN sh.attributed THEN 0.0 ELSE {e} END",
    "agent_energy_j": "{e}",
    "gpu_seconds": "{t} * sh.share",
    "util_seconds": "CASE WHEN s.gpu_util_pct IS NULL THEN 0.0 ELSE {t} * sh.share END",
    "util_x_seconds": "COALESCE(s.gpu_util_pct, 0.0) * {t} * sh.share",
    "util_x_energy_j": "COALESCE(s.gpu_util_pct, 0.0) * {e}",
    "util_energy_j": "CASE WHEN s.gpu_util_pct IS NULL THEN 0.0 ELSE {e} END",
}
_USAGE_MEASURES = field_names(UsageMeasures)
_JOB_MEASURES = field_names(EnergyMeasures)
_PART_MEASURES = [c for c in _USAGE_MEASURES if c != "sample_count"]
if set(_PART_SUMS) != set(_PART_MEASURES):
    raise RuntimeError(
        f"rollup: measures without a part expression: {set(_PART_MEASURES) - set(_PART_SUMS)}, "
        f"expressions without a measure: {set(_PART_SUMS) - set(_PART_MEASURES)}"
    )


def _part_sums(energy: str, seconds: str) -> str:
    return ",\n       ".join(
        f"SUM({_PART_SUMS[name].format(e=energy, t=seconds)}) AS {name}" for name in _PART_MEASURES
    )


def _sql_literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if value == "":
        return "''"
    raise TypeError(f"no SQL literal for a default of {value!r}")


def _unset_emissions(*bases: type[models.Model]) -> tuple[list[str], list[str]]:
    """The non-null emission columns a fresh row starts with, and their defaults as literals
    (the nullable ones are left out: NULL until ``emissions_apply`` writes them)."""
    columns = [f for base in bases for f in base._meta.local_fields if not f.null]
    return [f.attname for f in columns], [_sql_literal(f.get_default()) for f in columns]


_PART_GROUP = (
    "GROUP BY s.organization_id, {hour}, s.gpu_id, s.host_id, h.site_id, sh.team_id,"
    ' sh.project_id, sh.job_id, sh."user"'
)
# The agent measures GPUs: its parts are all of the gpu component.
_AGENT_DIMENSIONS = f"'{Component.GPU}', '{Source.AGENT}'"
_PARTS_CREATE = f"""
CREATE TEMPORARY TABLE rollup_parts AS
SELECT s.organization_id AS organization_id, {{hour_expr}} AS hour, s.gpu_id AS gpu_id,
       s.host_id AS host_id, h.site_id AS site_id, sh.team_id AS team_id,
       sh.project_id AS project_id, sh.job_id AS job_id, sh."user" AS user_name,
       {_part_sums("sh.energy_j", "s.duration_s")},
       COUNT(*) AS sample_count,
       CAST('{Component.GPU}' AS VARCHAR(8)) AS component,
       CAST('{Source.AGENT}' AS VARCHAR(16)) AS source
FROM telemetry_sampleshare sh
JOIN telemetry_energysample s ON s.id = sh.sample_id
JOIN fleet_host h ON h.id = s.host_id
WHERE s.organization_id = %s AND s.start >= %s AND s.start < %s
  AND s."end" <= {{next_hour_expr}}
{_PART_GROUP.format(hour="{hour_expr}")}
"""  # noqa: S608 - constants only
_BIG_FRACTION = (
    "(CASE WHEN s.head_s * 2.0 >= s.duration_s THEN s.head_s / s.duration_s"
    " ELSE (s.duration_s - s.head_s) / s.duration_s END)"
)
# Head and tail of each crossing share: (part, its energy, its seconds, which hours, count).
_CROSSING_PARTS = [
    (
        "head",
        f"(CASE WHEN s.head_s * 2.0 >= s.duration_s THEN sh.energy_j * {_BIG_FRACTION}"
        f" ELSE sh.energy_j - sh.energy_j * {_BIG_FRACTION} END)",
        "s.head_s",
        "s.head_hour >= %s",
        "COUNT(*)",
    ),
    (
        "tail",
        f"(CASE WHEN s.head_s * 2.0 >= s.duration_s THEN sh.energy_j - sh.energy_j * {_BIG_FRACTION}"
        f" ELSE sh.energy_j * {_BIG_FRACTION} END)",
        "(s.duration_s - s.head_s)",
        "s.tail_hour < %s",
        "0",
    ),
]
_CROSSING_INSERT = {
    part: f"""
INSERT INTO rollup_parts
SELECT s.organization_id, s.{part}_hour, s.gpu_id, s.host_id, h.site_id, sh.team_id,
       sh.project_id, sh.job_id, sh."user",
       {_part_sums(energy, seconds)},
       {count}, {_AGENT_DIMENSIONS}
FROM rollup_crossing s
JOIN telemetry_sampleshare sh ON sh.sample_id = s.id
JOIN fleet_host h ON h.id = s.host_id
WHERE {where}
{_PART_GROUP.format(hour=f"s.{part}_hour")}
"""  # noqa: S608 - constants only
    for part, energy, seconds, where, count in _CROSSING_PARTS
}
# CodeCarbon's energy, already split by hour and component when it was received
# (``codecarbon.booking``): a part is a job's (its run's) energy at the run's site, with no GPU
# or host. Of the measures it has energy only: GPU time and utilization are the agent's.
_CODECARBON_PART_SUMS = {"energy_j": "SUM(p.energy_j)"}
_CODECARBON_PARTS = f"""
INSERT INTO rollup_parts
SELECT p.organization_id, p.hour, NULL, NULL, r.site_id, r.team_id, r.project_id, r.job_id, '',
       {", ".join(_CODECARBON_PART_SUMS.get(name, "0.0") for name in _PART_MEASURES)},
       SUM(p.sample_count), p.component, '{Source.CODECARBON}'
FROM {EnergyPart._meta.db_table} p
JOIN {Run._meta.db_table} r ON r.id = p.run_id
WHERE p.organization_id = %s AND p.hour >= %s AND p.hour < %s
GROUP BY p.organization_id, p.hour, r.site_id, r.team_id, r.project_id, r.job_id, p.component
"""  # noqa: S608 - constants only
_USAGE_UNSET, _USAGE_UNSET_VALUES = _unset_emissions(EmissionFigures, EmissionProvenance)
_USAGE_FROM_PARTS = f"""
INSERT INTO accounting_hourlyusage
    (organization_id, hour, gpu_id, host_id, site_id, team_id, project_id, component, source,
     {", ".join(_USAGE_MEASURES)},
     {", ".join(_USAGE_UNSET)})
SELECT organization_id, hour, gpu_id, host_id, site_id, team_id, project_id, component, source,
       {", ".join(f"SUM({c})" for c in _USAGE_MEASURES)},
       {", ".join(_USAGE_UNSET_VALUES)}
FROM rollup_parts
GROUP BY organization_id, hour, gpu_id, host_id, site_id, team_id, project_id, component, source
"""  # noqa: S608 - constants only
# Jobs: the parts with a job id, GPUs summed away. Shares without one (idle, unattributed) have
# no job row.
_JOB_UNSET, _JOB_UNSET_VALUES = _unset_emissions(EmissionFigures)
_JOBS_FROM_PARTS = f"""
INSERT INTO accounting_hourlyjobusage
    (organization_id, hour, site_id, team_id, project_id, job_id, user_name, component, source,
     {", ".join(_JOB_MEASURES)}, gpu_count,
     {", ".join(_JOB_UNSET)})
SELECT organization_id, hour, site_id, team_id, project_id, job_id, user_name, component, source,
       {", ".join(f"SUM({c})" for c in _JOB_MEASURES)},
       COUNT(DISTINCT gpu_id),
       {", ".join(_JOB_UNSET_VALUES)}
FROM rollup_parts
WHERE job_id <> ''
GROUP BY organization_id, hour, site_id, team_id, project_id, job_id, user_name, component, source
"""  # noqa: S608 - constants only


def hours_rollup(*, organization_id: int, hours: Iterable[datetime]) -> int:
    """Rebuild HourlyUsage, HourlyJobUsage and HourlySummary for these hours of one
    organization. Call inside a transaction.

    Each run of up to ``MAX_RUN_HOURS`` consecutive hours scans its samples once into a
    temporary table of (hour, GPU, team, project, job) parts, a sample that crosses an hour
    boundary contributing to both hours by overlap (also one that starts in the hour before the
    run: the run's first hour gets its tail; no hour outside the run is touched); HourlyUsage
    and the jobs are two small INSERT ... SELECTs from the parts; each hour's emissions follow in one UPDATE per table
    that applies each site's PUE and factors (resolved once for all the hours); the summary is
    rebuilt from HourlyUsage last. Returns the number of hours rebuilt.
    """
    ops = connection.ops
    count = 0
    hour_list = sorted({hour_floor(h) for h in hours})
    factors = site_hour_factors(organization_id=organization_id, hours=hour_list)
    by_hour: dict[datetime, dict[int, SiteHourFactors]] = {}
    for (site_key, hour), value in factors.items():
        by_hour.setdefault(hour, {})[site_key] = value
    runs: list[list[datetime]] = []
    for hour in hour_list:
        if runs and runs[-1][-1] + timedelta(hours=1) == hour and len(runs[-1]) < MAX_RUN_HOURS:
            runs[-1].append(hour)
        else:
            runs.append([hour])
    vendor = connection.vendor
    exprs = {
        "hour_expr": _HOUR_EXPR[vendor],
        "next_hour_expr": _NEXT_HOUR_EXPR[vendor],
        "offset_expr": _OFFSET_EXPR[vendor],
    }
    crossing_create = _CROSSING_CREATE.format(**exprs)
    parts_create = _PARTS_CREATE.format(**exprs)
    for run in runs:
        start = ops.adapt_datetimefield_value(run[0])
        end = ops.adapt_datetimefield_value(run[-1] + timedelta(hours=1))
        # Samples that start before the run can reach into its first hour.
        reach = ops.adapt_datetimefield_value(run[0] - timedelta(seconds=MAX_INTERVAL_S))
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                for hour in run:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)",
                        [organization_id, int(hour.timestamp() // 3600)],
                    )
            for table in ("accounting_hourlyusage", "accounting_hourlyjobusage"):
                cursor.execute(
                    f"DELETE FROM {table} "  # noqa: S608 - constant table names
                    "WHERE organization_id = %s AND hour >= %s AND hour < %s",
                    [organization_id, start, end],
                )
            # The temporary table lives for this run only; on an error the transaction's
            # rollback removes it with everything else.
            cursor.execute(crossing_create, [organization_id, reach, end])
            if vendor == "postgresql":
                # Row counts for the planner: a handful of crossing samples is joined to their
                # shares through the index, not by a scan of the share table.
                cursor.execute("ANALYZE rollup_crossing")
            cursor.execute(parts_create, [organization_id, start, end])
            cursor.execute(_CROSSING_INSERT["head"], [start])
            cursor.execute(_CROSSING_INSERT["tail"], [end])
            cursor.execute("DROP TABLE rollup_crossing")
            cursor.execute(_CODECARBON_PARTS, [organization_id, start, end])
            cursor.execute(_USAGE_FROM_PARTS)
            cursor.execute(_JOBS_FROM_PARTS)
            cursor.execute("DROP TABLE rollup_parts")
        for hour in run:
            emissions_apply(
                organization_id=organization_id,
                start=hour,
                end=hour + timedelta(hours=1),
                per_site=by_hour.get(hour, {}),
                summary=False,
            )
            count += 1
        summary_rebuild(
            organization_id=organization_id, start=run[0], end=run[-1] + timedelta(hours=1)
        )
    return count


def dirty_hours_rollup(*, limit: int = 200) -> int:
    """Claim up to ``limit`` dirty marks, rebuild their hours; returns the hours rebuilt.

    Claiming and rebuilding share one transaction: a worker that dies half-way leaves the marks
    in place for the next sweep.
    """
    with transaction.atomic():
        claimed = _claim_dirty(limit)
        by_org: dict[int, set[datetime]] = {}
        for org_id, hour in claimed:
            by_org.setdefault(org_id, set()).add(hour)
        rebuilt = 0
        for org_id, hours in sorted(by_org.items()):
            rebuilt += hours_rollup(organization_id=org_id, hours=hours)
    if rebuilt:
        log.info("rollup.done hours=%d marks=%d", rebuilt, len(claimed))
    return rebuilt


def _claim_dirty(limit: int) -> list[tuple[int, datetime]]:
    """Delete up to ``limit`` marks and every other visible mark of the same hours.

    Many batches mark the same hour; rebuilding it once covers all of them, since the rebuild
    reads every sample committed before it starts. Marks locked by another worker are skipped,
    never waited on, so two workers cannot deadlock on each other's marks.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                DELETE FROM telemetry_dirtyhour WHERE id IN (
                    SELECT id FROM telemetry_dirtyhour ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
                ) RETURNING organization_id, hour
                """,
                [limit],
            )
            claimed = {(org_id, hour) for org_id, hour in cursor.fetchall()}
            if claimed:
                orgs = [org_id for org_id, _ in claimed]
                hours = [hour for _, hour in claimed]
                cursor.execute(
                    """
                    DELETE FROM telemetry_dirtyhour WHERE id IN (
                        SELECT d.id FROM telemetry_dirtyhour d
                        JOIN unnest(%s::bigint[], %s::timestamptz[]) AS c(org_id, hour)
                          ON d.organization_id = c.org_id AND d.hour = c.hour
                        FOR UPDATE OF d SKIP LOCKED
                    )
                    """,
                    [orgs, hours],
                )
            return sorted(claimed)
    rows = list(DirtyHour.objects.order_by("id").values_list("organization_id", "hour")[:limit])
    claimed_set = set(rows)
    for org_id in {org_id for org_id, _ in claimed_set}:
        DirtyHour.objects.filter(
            organization_id=org_id, hour__in=[h for o, h in claimed_set if o == org_id]
        ).delete()
    return sorted(claimed_set)
