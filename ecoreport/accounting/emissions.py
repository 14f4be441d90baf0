"""Emissions on the rollup rows: ``emissions_apply`` writes a site's PUE and factors (and the
facility energy and CO2e they give) onto its rows of a range, for each hour the rollup builds;
``emissions_recompute`` rewrites the rows whose resolved PUE or factors changed, after a factor,
PUE or instrument change (task ``carbon.recompute_emissions``, which carbon's writes enqueue).

Carbon owns factors, zones, PUE and instruments and resolves them (``carbon.resolver``); the
rollup tables, and what is written onto them, are accounting's. The arithmetic is
``carbon.emissions``'; here it is the same formula in SQL, one UPDATE for any number of rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from functools import cache

from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from ecoreport.accounting.models import EmissionProvenance, HourlyJobUsage, HourlyUsage
from ecoreport.accounting.summary import summary_rebuild
from ecoreport.carbon.emissions import J_PER_KWH
from ecoreport.carbon.models import WORLD_ZONE
from ecoreport.carbon.resolver import NO_SITE, SiteHourFactors, site_hour_factors
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization

log = logging.getLogger(__name__)
_HOUR = timedelta(hours=1)

# The provenance columns written from a site's resolved factors (emissions_computed_at is the
# time of the write), and the SiteHourFactors attribute each comes from: three are named
# differently there.
_FACTOR_ATTRS = {
    "intensity_factor_id": "factor_id",
    "intensity_resolution": "resolution",
    "intensity_fallback": "fallback",
}
_FACTOR_FIELDS = [
    f for f in EmissionProvenance._meta.local_fields if f.attname != "emissions_computed_at"
]
_PUE_FIELD = HourlyUsage._meta.get_field("pue")
_FACTOR_COLUMNS = [(f.attname, _FACTOR_ATTRS.get(f.attname, f.attname)) for f in _FACTOR_FIELDS]
if missing := {a for _, a in _FACTOR_COLUMNS} - {f.name for f in dataclass_fields(SiteHourFactors)}:
    raise RuntimeError(f"rollup: provenance columns SiteHourFactors does not carry: {missing}")


def _factors_tuple(factors: SiteHourFactors) -> tuple:
    """The provenance values of ``factors`` in ``_FACTOR_COLUMNS`` order."""
    return tuple(getattr(factors, attr) for _, attr in _FACTOR_COLUMNS)


def _site_filter(site_keys: Iterable[int]) -> Q:
    """The rows of these site keys (NO_SITE: the rows of hosts placed at no site)."""
    keys = set(site_keys)
    where = Q(site_id__in=sorted(keys - {NO_SITE}))
    if NO_SITE in keys:
        where |= Q(site__isnull=True)
    return where


# emissions_apply stays raw SQL although Django's Case/When can express it: the rollup calls it
# for every hour, and the ORM's version (one When per site and column, resolved and compiled
# per call) took 2.0 s instead of 0.75 s for the 24 hours of ``benchmarks/rollup.py --gpus
# 100``, most of it compiling. The columns and their types still come from the model.
@cache
def _cast_type(field: models.Field, vendor: str) -> str:
    # Once per field and database vendor (the cache key): the rollup builds CASEs every hour.
    target = field.target_field if field.is_relation else field
    return target.cast_db_type(connection)


def _case(per_site: dict[int, SiteHourFactors], attr: str, field: models.Field) -> tuple[str, list]:
    # Every value is CAST: PostgreSQL must know a parameter's type inside CASE, and a NULL
    # parameter would otherwise be taken for text. SQLite accepts the same casts.
    sql_type = _cast_type(field, connection.vendor)
    parts, params = [], []
    for site_key, value in per_site.items():
        parts.append(f"WHEN %s THEN CAST(%s AS {sql_type})")
        params += [site_key, getattr(value, attr)]
    return f"CASE COALESCE(site_id, {NO_SITE}) {' '.join(parts)} END", params


def emissions_apply(
    *,
    organization_id: int,
    start: datetime,
    end: datetime,
    per_site: dict[int, SiteHourFactors],
    summary: bool = True,
) -> int:
    """Write facility energy, CO2e and provenance onto the rows of these sites in [start, end).

    Set-based: one UPDATE for any number of rows, whatever the sites' factors. Only rows of the
    sites in ``per_site`` are touched. The jobs' rows get the same PUE and factors, and (unless
    the caller rebuilds it itself) HourlySummary is rebuilt for the same sites and range.
    Returns the number of HourlyUsage rows written.
    """
    if not per_site:
        return 0
    ops = connection.ops
    keys = list(per_site)
    where = (
        "WHERE organization_id = %s AND hour >= %s AND hour < %s "
        f"AND COALESCE(site_id, {NO_SITE}) IN ({', '.join(['%s'] * len(keys))})"
    )
    where_params = [
        organization_id,
        ops.adapt_datetimefield_value(start),
        ops.adapt_datetimefield_value(end),
        *keys,
    ]
    energy_sets, energy_params = _energy_assignments(per_site)
    assignments, params = [], []
    for field, (column, attr) in zip(_FACTOR_FIELDS, _FACTOR_COLUMNS, strict=True):
        expr, expr_params = _case(per_site, attr, field)
        assignments.append(f"{column} = {expr}")
        params += expr_params
    assignments += [*energy_sets, "emissions_computed_at = %s"]
    params += [*energy_params, ops.adapt_datetimefield_value(timezone.now())]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {HourlyUsage._meta.db_table} SET {', '.join(assignments)} {where}",  # noqa: S608
            params + where_params,
        )
        rewritten = cursor.rowcount
        cursor.execute(
            f"UPDATE {HourlyJobUsage._meta.db_table} SET {', '.join(energy_sets)} {where}",  # noqa: S608
            energy_params + where_params,
        )
    if summary:
        summary_rebuild(organization_id=organization_id, start=start, end=end, site_keys=keys)
    return rewritten


def _energy_assignments(per_site: dict[int, SiteHourFactors]) -> tuple[list[str], list]:
    """SET clauses for facility energy and CO2e from each row's energy and its site's factors."""
    float_field = _PUE_FIELD
    pue_expr, pue_params = _case(per_site, "pue", float_field)
    loc_expr, loc_params = _case(per_site, "intensity_g_per_kwh", float_field)
    mkt_expr, mkt_params = _case(per_site, "market_intensity_g_per_kwh", float_field)
    # facility = IT x PUE (J); CO2e (g) = facility (J) / J_PER_KWH x intensity (g/kWh)
    return (
        [
            f"facility_energy_j = energy_j * {pue_expr}",
            f"co2e_g = energy_j * {pue_expr} * {loc_expr} / {J_PER_KWH!r}",
            f"co2e_market_g = energy_j * {pue_expr} * {mkt_expr} / {J_PER_KWH!r}",
        ],
        pue_params + pue_params + loc_params + pue_params + mkt_params,
    )


def emissions_recompute(
    *,
    start: datetime,
    end: datetime,
    zone: str | None = None,
    site_ids: Iterable[int] | None = None,
    organization_id: int | None = None,
) -> int:
    """Rewrite the emissions of rows in [start, end) whose resolved PUE or factors changed.

    What a factor, PUE or instrument change in ``carbon`` asks for (task
    ``carbon.recompute_emissions``, enqueued on commit). It resolves the factors again for the
    hours that have usage there and rewrites only the (site, hour) rows whose PUE or factors
    actually differ: a new hourly factor rewrites that hour and nothing else.

    Targets: the given sites, or every site in ``zone`` (every site and site-less host for the
    WORLD zone, whose factor stands in for any zone without one). Returns rows rewritten.
    """
    targets: dict[int, set[int]] = defaultdict(set)  # organization -> site keys
    sites = Site.objects.all()
    if organization_id is not None:
        sites = sites.filter(organization_id=organization_id)
    if site_ids is not None:
        sites = sites.filter(pk__in=list(site_ids))
    elif zone is not None and zone != WORLD_ZONE:
        sites = sites.filter(grid_zone=zone)
    for org_id, site_id in sites.values_list("organization_id", "pk"):
        targets[org_id].add(site_id)
    if site_ids is None and zone == WORLD_ZONE:
        orgs = Organization.objects.all()
        if organization_id is not None:
            orgs = orgs.filter(pk=organization_id)
        for org_id in orgs.values_list("pk", flat=True):
            targets[org_id].add(NO_SITE)

    stored_fields = ["site_id", "hour", *(c for c, _ in _FACTOR_COLUMNS), "emissions_computed_at"]
    rewritten = 0
    for org_id, keys in sorted(targets.items()):
        stored: dict[tuple[int, datetime], set[tuple]] = defaultdict(set)
        rows = (
            HourlyUsage.objects.filter(organization_id=org_id, hour__gte=start, hour__lt=end)
            .filter(_site_filter(keys))
            .values_list(*stored_fields)
            .distinct()
            .order_by()
        )
        for row in rows:
            stored[(row[0] or NO_SITE, row[1])].add(tuple(row[2:]))
        if not stored:
            continue
        resolved = site_hour_factors(
            organization_id=org_id, hours={h for _, h in stored}, site_ids=keys
        )
        changed: dict[datetime, dict] = defaultdict(dict)
        for (site_key, hour), values in stored.items():
            want = resolved[(site_key, hour)]
            want_tuple = _factors_tuple(want)
            if len(values) != 1 or any(v[:-1] != want_tuple or v[-1] is None for v in values):
                changed[hour][site_key] = want
        # Consecutive hours with the same per-site factors share one UPDATE: an annual factor
        # change over a quarter is one statement, an hourly one a statement per hour.
        run_start: datetime | None = None
        run_end: datetime | None = None
        run_sites: dict = {}
        for hour in sorted(changed):
            per_site = changed[hour]
            if run_start is not None and run_end == hour and per_site == run_sites:
                run_end = hour + _HOUR
                continue
            if run_start is not None and run_end is not None:
                rewritten += emissions_apply(
                    organization_id=org_id, start=run_start, end=run_end, per_site=run_sites
                )
            run_start, run_end, run_sites = hour, hour + _HOUR, per_site
        if run_start is not None and run_end is not None:
            rewritten += emissions_apply(
                organization_id=org_id, start=run_start, end=run_end, per_site=run_sites
            )
        log.info(
            "carbon.recompute org=%s hours_changed=%d rows=%d", org_id, len(changed), rewritten
        )
    return rewritten
