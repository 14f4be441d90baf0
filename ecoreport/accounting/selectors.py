"""Reads over HourlyUsage. Aggregation happens in the database; Python only shapes rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Case, Count, F, FloatField, Max, Min, Q, Sum, When
from django.db.models.functions import TruncDay, TruncMonth, TruncQuarter

from ecoreport.accounting.models import (
    Component,
    EmissionFigures,
    EmissionProvenance,
    HourlyUsage,
    UsageMeasures,
    field_names,
)

# J_PER_KWH is read as ``usage.J_PER_KWH`` by the dashboards and the reports: re-exported, the
# one constant rather than a copy.
from ecoreport.carbon.emissions import J_PER_KWH as J_PER_KWH
from ecoreport.carbon.emissions import S_PER_HOUR, g_to_kg, j_to_kwh, j_to_wh
from ecoreport.carbon.models import WORLD_ZONE
from ecoreport.carbon.resolver import MARKET_ZONE_PRIOR_YEAR, hours_between, location_factors
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization

GROUP_FIELDS = {
    "team": "team__slug",
    "project": "project__slug",
    "host": "host__hostname",
    "gpu": "gpu__uuid",
    "source": "source",
}
# Groupings shown to people by a name beside their slug: ``team_name``, ``project_name`` (the
# name, or the slug where the name is blank).
NAME_FIELDS = {"team": "team__name", "project": "project__name"}
GRANULARITIES = ("hour", "day", "month", "quarter", "total")

_SUMS = {
    # First: annotations named like fields (energy_j) would shadow them in later expressions.
    "fallback_energy_j": Sum(
        Case(
            When(intensity_fallback=True, then=F("energy_j")),
            default=0.0,
            output_field=FloatField(),
        )
    ),
    # Every measure and emission figure but the sample count, which no reader sums.
    **{
        name: Sum(name)
        for name in field_names(UsageMeasures, EmissionFigures)
        if name != "sample_count"
    },
}


# The same sums over HourlySummary, whose fallback energy is a column of its own.
SUMMARY_SUMS = {name: Sum(name) for name in _SUMS}

# Energy by component (gpu, cpu, ram), over either table. Annotated before the sums above, whose
# ``energy_j`` would otherwise shadow the column these read.
COMPONENT_SUMS = {
    f"{c}_energy_j": Sum("energy_j", filter=Q(component=c), default=0.0) for c in Component.values
}
_USAGE_SUMS = {**COMPONENT_SUMS, **_SUMS}


@dataclass(frozen=True)
class UsageQuery:
    start: datetime
    end: datetime
    group_by: tuple[str, ...] = ()
    granularity: str = "total"


def _period_expr(granularity: str) -> Any:
    if granularity == "hour":
        return F("hour")
    if granularity == "day":
        return TruncDay("hour", tzinfo=UTC)
    if granularity == "month":
        return TruncMonth("hour", tzinfo=UTC)
    if granularity == "quarter":
        return TruncQuarter("hour", tzinfo=UTC)
    raise ValueError(f"unknown granularity {granularity!r}")


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def fallback_share_pct(sums: Mapping[str, float | None]) -> float | None:
    """The one definition of the "fallback share", used by the usage API, the dashboards and
    the reports: the share of **IT energy** (measured joules) whose location-based factor was
    a fallback (the world average; the zone had no factor of its own), in %.

    IT energy rather than facility energy: the share says how much of what was *measured* rests
    on a made-up factor, a property of the factor table's coverage that a PUE assumption must not
    move. Both rollup tables store it the same way (``fallback_energy_j`` is IT joules), so the
    API, the dashboards and the report read one number. None when there is no energy.
    """
    return _pct(sums.get("fallback_energy_j") or 0.0, sums.get("energy_j") or 0.0)


def usage_metrics(
    sums: Mapping[str, float | None], zone_avg_intensity_g_per_kwh: float | None = None
) -> dict[str, float | None]:
    """Derived figures from summed rollup columns (pure; shared by rows and totals).

    ``avg_intensity_g_per_kwh`` is what the energy experienced: location CO2e over facility
    energy, i.e. the facility-energy-weighted hourly intensity. ``zone_avg_intensity_g_per_kwh``
    (computed by the caller) is the plain average of the same zones' hourly factors over the
    period: below it, the work ran at cleaner hours than average.
    """
    energy_j = sums.get("energy_j") or 0.0
    # The GPU ratios' base: the agent's energy, measured with GPU time and idle state (all of
    # it where the caller summed no sources apart, as the jobs tables do).
    gpu_base_j = (sums.get("agent_energy_j") or 0.0) if "agent_energy_j" in sums else energy_j
    gpu_seconds = sums.get("gpu_seconds") or 0.0
    util_seconds = sums.get("util_seconds") or 0.0
    util_energy_j = sums.get("util_energy_j") or 0.0
    facility_j = sums.get("facility_energy_j") or 0.0
    co2e = sums.get("co2e_g") or 0.0
    return {
        "energy_kwh": j_to_kwh(energy_j),
        # Parts of energy_kwh (None where the caller summed no components).
        **{
            f"{c}_energy_kwh": j_to_kwh(sums[f"{c}_energy_j"] or 0.0)
            if f"{c}_energy_j" in sums
            else None
            for c in Component.values
        },
        "idle_energy_kwh": j_to_kwh(sums.get("idle_energy_j") or 0.0),
        "unattributed_energy_kwh": j_to_kwh(sums.get("unattributed_energy_j") or 0.0),
        "gpu_hours": gpu_seconds / S_PER_HOUR,
        "avg_gpu_util_pct": (sums.get("util_x_seconds") or 0.0) / util_seconds
        if util_seconds
        else None,
        "energy_weighted_gpu_util_pct": (
            (sums.get("util_x_energy_j") or 0.0) / util_energy_j if util_energy_j else None
        ),
        "facility_energy_kwh": j_to_kwh(facility_j),
        "co2e_kg": g_to_kg(co2e),
        "co2e_market_kg": g_to_kg(sums.get("co2e_market_g") or 0.0),
        "avg_intensity_g_per_kwh": co2e / j_to_kwh(facility_j) if facility_j else None,
        "zone_avg_intensity_g_per_kwh": zone_avg_intensity_g_per_kwh,
        "idle_energy_share_pct": _pct(sums.get("idle_energy_j") or 0.0, gpu_base_j),
        # Wh of GPU energy per hour of GPU time: the average power draw, in W, of the work.
        "energy_per_gpu_hour_wh": j_to_wh(gpu_base_j) / (gpu_seconds / S_PER_HOUR)
        if gpu_seconds
        else None,
        "fallback_share_pct": fallback_share_pct(sums),
    }


class _ZoneAverages:
    """Plain averages of a zone's hourly location-based factors over a period, memoised."""

    def __init__(self, organization: Organization) -> None:
        self.organization = organization
        self._cache: dict[tuple[str, datetime, datetime], float] = {}

    def get(self, zone: str, start: datetime, end: datetime) -> float:
        key = (zone, start, end)
        if key not in self._cache:
            hours = hours_between(start, end)
            resolved = location_factors(
                zones=[zone], hours=hours, organization_id=self.organization.pk
            )
            values = [resolved[(zone, h)].intensity_g_per_kwh for h in hours]
            self._cache[key] = sum(values) / len(values) if values else 0.0
        return self._cache[key]


def _period_bounds(
    granularity: str, period_start: datetime, query: UsageQuery
) -> tuple[datetime, datetime]:
    if granularity == "total":
        lo, hi = query.start, query.end
    elif granularity == "hour":
        lo, hi = period_start, period_start + timedelta(hours=1)
    elif granularity == "day":
        lo, hi = period_start, period_start + timedelta(days=1)
    else:
        months = 1 if granularity == "month" else 3
        month = period_start.month - 1 + months
        lo = period_start
        hi = period_start.replace(year=period_start.year + month // 12, month=month % 12 + 1)
    # Whole hours inside the query's range: the factors are hourly.
    lo = max(lo, query.start).replace(minute=0, second=0, microsecond=0)
    hi = min(hi, query.end)
    if hi.minute or hi.second or hi.microsecond:
        hi = hi.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return lo, hi


def usage_for_org(*, organization: Organization, query: UsageQuery) -> dict[str, Any]:
    base = HourlyUsage.objects.for_org(organization).filter(
        hour__gte=query.start, hour__lt=query.end
    )
    fields = [GROUP_FIELDS[g] for g in query.group_by]
    # A name is one per slug: grouping by it too changes no group, and labels the rows.
    names = [NAME_FIELDS[g] for g in query.group_by if g in NAME_FIELDS]
    # Grouped by site as well: the zone average of a row weights each zone's hourly average by
    # the share of the row's facility energy used there. Rows are then folded in Python.
    if query.granularity == "total":
        grouped = base.values(*fields, *names, "site_id")
    else:
        grouped = base.annotate(period=_period_expr(query.granularity)).values(
            "period", *fields, *names, "site_id"
        )
    zones = dict(Site.objects.for_org(organization).values_list("pk", "grid_zone"))
    averages = _ZoneAverages(organization)
    folded: dict[tuple, dict[str, Any]] = {}
    total_sums: dict[str, float] = dict.fromkeys(_USAGE_SUMS, 0.0)
    total_zone_energy: dict[str, float] = {}
    for rec in grouped.annotate(**_USAGE_SUMS).order_by():
        period = rec["period"] if query.granularity != "total" else query.start
        key = (period, *[rec[f] for f in fields])
        entry = folded.setdefault(
            key,
            {
                "sums": dict.fromkeys(_USAGE_SUMS, 0.0),
                "zones": {},
                "names": {n: rec[n] for n in names},
            },
        )
        zone = zones.get(rec["site_id"], WORLD_ZONE)
        for name in _USAGE_SUMS:
            entry["sums"][name] += rec[name] or 0.0
            total_sums[name] += rec[name] or 0.0
        weight = rec["facility_energy_j"] or 0.0
        entry["zones"][zone] = entry["zones"].get(zone, 0.0) + weight
        total_zone_energy[zone] = total_zone_energy.get(zone, 0.0) + weight

    def zone_avg(zone_energy: dict[str, float], lo: datetime, hi: datetime) -> float | None:
        weight = sum(zone_energy.values())
        if not weight or hi <= lo:
            return None
        return sum(e * averages.get(z, lo, hi) for z, e in zone_energy.items()) / weight

    totals = usage_metrics(
        total_sums, zone_avg(total_zone_energy, *_period_bounds("total", query.start, query))
    )
    if query.granularity == "total" and not fields:
        return {"rows": [{"period_start": query.start, **totals}], "totals": totals}
    rows = []
    for key, entry in folded.items():
        row: dict[str, Any] = {"period_start": key[0]}
        for name, value in zip(query.group_by, key[1:], strict=True):
            row[name] = value
            if name in NAME_FIELDS:
                row[f"{name}_name"] = entry["names"][NAME_FIELDS[name]] or value
        bounds = _period_bounds(query.granularity, key[0], query)
        row.update(usage_metrics(entry["sums"], zone_avg(entry["zones"], *bounds)))
        rows.append(row)
    rows.sort(
        key=lambda r: (r["period_start"], *[(r[g] is not None, r[g] or "") for g in query.group_by])
    )
    return {"rows": rows, "totals": totals}


# A component is a site's rows with the same PUE and factors (the time of the write aside).
_PROVENANCE_KEYS = [
    "site_id",
    *(c for c in field_names(EmissionProvenance) if c != "emissions_computed_at"),
]
PROVENANCE_FILTERS = {
    "team": "team__slug",
    "project": "project__slug",
    "host": "host__hostname",
    "gpu": "gpu__uuid",
}


def _market_fallback(group: dict[str, Any], factor: Any) -> dict[str, Any]:
    """Whether the market-based factor of a provenance component is a fallback, and which: the
    zone's annual market factor of an earlier year carried forward to these hours."""
    if group["market_basis"] != MARKET_ZONE_PRIOR_YEAR or factor is None:
        return {"fallback": False, "fallback_note": None}
    years = sorted(
        {group["first_hour"].astimezone(UTC).year, group["last_hour"].astimezone(UTC).year}
    )
    applied = "-".join(str(y) for y in years)
    return {
        "fallback": True,
        "fallback_note": (
            f"market factor of {factor.start.astimezone(UTC).year} applied to {applied} (fallback)"
        ),
    }


def usage_provenance(
    *, organization: Organization, start: datetime, end: datetime, filters: dict[str, str]
) -> dict[str, Any]:
    """What a figure is made of: the energy under each distinct (site, PUE, factors) combination,
    with each factor's value, source, year, basis and resolution. The components sum to the
    totals that ``usage_for_org`` reports for the same range and filters."""
    from ecoreport.carbon.models import CarbonIntensity, MarketInstrument

    qs = HourlyUsage.objects.for_org(organization).filter(hour__gte=start, hour__lt=end)
    for name, value in filters.items():
        qs = qs.filter(**{PROVENANCE_FILTERS[name]: value})
    groups = list(
        qs.values(*_PROVENANCE_KEYS)
        .annotate(
            energy_j=Sum("energy_j"),
            facility_energy_j=Sum("facility_energy_j"),
            co2e_g=Sum("co2e_g"),
            co2e_market_g=Sum("co2e_market_g"),
            first_hour=Min("hour"),
            last_hour=Max("hour"),
            hours=Count("hour", distinct=True),
        )
        .order_by()
    )
    factor_ids = {g["intensity_factor_id"] for g in groups} | {
        g["market_factor_id"] for g in groups
    }
    factors = {f.pk: f for f in CarbonIntensity.objects.filter(pk__in=factor_ids - {None})}
    instruments = {
        i.pk: i
        for i in MarketInstrument.objects.for_org(organization).filter(
            pk__in={g["market_instrument_id"] for g in groups} - {None}
        )
    }
    sites = {s.pk: s for s in Site.objects.for_org(organization)}

    def factor_doc(factor_id: int | None) -> dict[str, Any] | None:
        f = factors.get(factor_id) if factor_id else None
        if f is None:
            return None
        return {
            "id": f.pk,
            "zone": f.zone,
            "g_co2e_per_kwh": f.intensity_g_per_kwh,
            "resolution": f.resolution,
            "start": f.start,
            "end": f.end,
            "basis": f.basis,
            "source": f.source,
            "year": f.year,
            "scope": f.scope,
            "own": f.organization_id is not None,
            "is_forecast": f.is_forecast,
        }

    components = []
    for g in groups:
        site = sites.get(g["site_id"])
        inst = instruments.get(g["market_instrument_id"]) if g["market_instrument_id"] else None
        components.append(
            {
                "site": site.slug if site else None,
                "grid_zone": site.grid_zone if site else None,
                "first_hour": g["first_hour"],
                "last_hour": g["last_hour"],
                "hours": g["hours"],
                "energy_kwh": j_to_kwh(g["energy_j"] or 0.0),
                "pue": g["pue"],
                "facility_energy_kwh": j_to_kwh(g["facility_energy_j"] or 0.0),
                "location": {
                    "g_co2e_per_kwh": g["intensity_g_per_kwh"],
                    "resolution": g["intensity_resolution"],
                    "fallback": g["intensity_fallback"],
                    "factor": factor_doc(g["intensity_factor_id"]),
                    "co2e_kg": g_to_kg(g["co2e_g"] or 0.0),
                },
                "market": {
                    "g_co2e_per_kwh": g["market_intensity_g_per_kwh"],
                    "basis": g["market_basis"],
                    "certificate_share": g["certificate_share"],
                    "instrument": None
                    if inst is None
                    else {
                        "id": inst.pk,
                        "kind": inst.kind,
                        "g_co2e_per_kwh": inst.intensity_g_per_kwh,
                        "valid_from": inst.valid_from,
                        "valid_to": inst.valid_to,
                        "source": inst.source,
                        "year": inst.year,
                    },
                    "factor": factor_doc(g["market_factor_id"]),
                    **_market_fallback(g, factors.get(g["market_factor_id"])),
                    "co2e_kg": g_to_kg(g["co2e_market_g"] or 0.0),
                },
            }
        )
    components.sort(key=lambda c: (c["first_hour"], c["site"] or "", -c["energy_kwh"]))
    totals = {
        "energy_kwh": sum(c["energy_kwh"] for c in components),
        "facility_energy_kwh": sum(c["facility_energy_kwh"] for c in components),
        "co2e_kg": sum(c["location"]["co2e_kg"] for c in components),
        "co2e_market_kg": sum(c["market"]["co2e_kg"] for c in components),
    }
    return {"components": components, "totals": totals}
