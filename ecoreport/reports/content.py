"""The report's content: one plain, JSON-ready structure that every format renders, so the PDF,
the HTML, the CSV and the XLSX cannot disagree. Aggregation happens in the database over
HourlyUsage (the same sums as ``/api/v1/usage``); Python shapes the few rows that come back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDay, TruncMonth

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import HourlyUsage
from ecoreport.accounting.scope import Scope
from ecoreport.core.periods import CalendarPeriod
from ecoreport.fleet.models import Gpu, Host
from ecoreport.organizations.models import Organization, Team
from ecoreport.reports import coverage
from ecoreport.reports.targets import report_targets

log = logging.getLogger(__name__)

J_PER_KWH = usage.J_PER_KWH
_FIELDS = {f.name for f in HourlyUsage._meta.get_fields()}
# Emissions columns come from the carbon app's rollup; without them the report says so.
HAS_EMISSIONS = {"facility_energy_j", "co2e_g", "co2e_market_g"} <= _FIELDS
EMISSION_SUMS = (
    {
        "facility_energy_j": Sum("facility_energy_j"),
        "co2e_g": Sum("co2e_g"),
        "co2e_market_g": Sum("co2e_market_g"),
    }
    if HAS_EMISSIONS
    else {}
)
SUMS = {**usage._SUMS, **EMISSION_SUMS}
TOP_GROUPS = 12  # teams/projects named in charts; tables list all

# (key, label, unit, digits): the headline table, in order.
HEADLINE = [
    ("energy_kwh", "IT energy", "kWh", 2),
    ("facility_energy_kwh", "Facility energy (IT x PUE)", "kWh", 2),
    ("co2e_kg", "Emissions, location-based", "kg CO2e", 2),
    ("co2e_market_kg", "Emissions, market-based", "kg CO2e", 2),
    ("gpu_hours", "GPU-hours", "h", 2),
    ("avg_gpu_util_pct", "Average GPU utilization", "%", 1),
    ("idle_energy_share_pct", "Idle energy share", "%", 1),
]

FORMULAS = [
    ("IT energy", "energy_kWh = Σ measured GPU energy (J) / 3,600,000"),
    ("Facility energy", "facility_kWh = IT energy_kWh x PUE of the site in that hour"),
    (
        "Location-based CO2e",
        "co2e_g = facility_kWh x grid intensity of the site's zone for that hour (g/kWh)",
    ),
    (
        "Market-based CO2e",
        "co2e_market_g = facility_kWh x contractual factor (supplier, else residual mix, else location) x (1 - certificate share)",
    ),
    ("GPU-hours", "Σ GPU-seconds weighted by attribution share / 3,600"),
    ("Utilization", "time-weighted mean of sampled GPU utilization (%)"),
    ("Idle share", "energy drawn with no process on the GPU / IT energy"),
    ("Experienced intensity", "location-based co2e_g / facility_kWh (energy-weighted)"),
]


def metrics(sums: dict[str, Any]) -> dict[str, Any]:
    """usage_metrics plus facility energy, emissions and idle share, all from summed columns."""
    out = usage.usage_metrics(sums)
    energy = out["energy_kwh"] or 0.0
    out["idle_energy_share_pct"] = (
        ((out["idle_energy_kwh"] or 0.0) / energy * 100.0) if energy else None
    )
    if HAS_EMISSIONS:
        out["facility_energy_kwh"] = (sums.get("facility_energy_j") or 0.0) / J_PER_KWH
        out["co2e_kg"] = (sums.get("co2e_g") or 0.0) / 1000.0
        out["co2e_market_kg"] = (sums.get("co2e_market_g") or 0.0) / 1000.0
    else:
        out["facility_energy_kwh"] = out["co2e_kg"] = out["co2e_market_kg"] = None
    return out


def change_pct(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return (now - before) / before * 100.0


def scope_usage(organization: Organization, team: Team | None) -> QuerySet[HourlyUsage]:
    qs = HourlyUsage.objects.for_org(organization)
    return qs.filter(team=team) if team is not None else qs


def _window(qs: QuerySet[HourlyUsage], start: datetime, end: datetime) -> QuerySet[HourlyUsage]:
    return qs.filter(hour__gte=start, hour__lt=end)


def data_totals(
    organization: Organization, team: Team | None, period: CalendarPeriod
) -> dict[str, float]:
    """Measurement totals (not factors) of the scope and period: a change here is late data."""
    sums = _window(scope_usage(organization, team), period.start, period.end).aggregate(
        energy_j=Sum("energy_j"), gpu_seconds=Sum("gpu_seconds"), samples=Sum("sample_count")
    )
    return {k: float(v or 0.0) for k, v in sums.items()}


def _cube(qs: QuerySet[HourlyUsage], trunc: Any) -> list[dict[str, Any]]:
    """Sums per (time bucket, team, project) in one scan: by team, by project, over time and
    by team over months are all re-additions of these few thousand rows (sums add; ratios are
    derived afterwards), so the big table is read once instead of four times."""
    rows = (
        qs.annotate(bucket=trunc)
        .values("bucket", "team__slug", "project__slug")
        .annotate(**SUMS)
        .order_by()
    )
    return list(rows)


def _rollup(
    cube: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, dict[str, float]]:
    out: dict[Any, dict[str, float]] = {}
    for row in cube:
        acc = out.setdefault(key(row), dict.fromkeys(SUMS, 0.0))
        for name in SUMS:
            acc[name] += row[name] or 0.0
    return out


def _ranked(cube: list[dict[str, Any]], field: str, name: str) -> list[dict[str, Any]]:
    rows = [{name: k, **metrics(v)} for k, v in _rollup(cube, lambda r: r[field]).items()]
    rows.sort(key=lambda r: (-(r["energy_kwh"] or 0.0), r[name] or ""))
    return rows


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _intensity(
    qs: QuerySet[HourlyUsage], organization: Organization, period: CalendarPeriod
) -> list[dict[str, Any]]:
    if not HAS_EMISSIONS:
        return []
    rows = list(
        qs.values("site__slug", "site__name", "site__grid_zone")
        .annotate(**SUMS)
        .order_by("site__slug")
    )
    zones = {r["site__grid_zone"] for r in rows if r["site__grid_zone"]}
    averages = _zone_averages(zones, organization, period)
    out = []
    for r in rows:
        m = metrics(r)
        facility = m["facility_energy_kwh"] or 0.0
        zone = r["site__grid_zone"] or "(no site: world average)"
        out.append(
            {
                "site": r["site__slug"] or "(no site)",
                "zone": zone,
                "facility_energy_kwh": facility,
                "co2e_kg": m["co2e_kg"],
                "co2e_market_kg": m["co2e_market_kg"],
                "experienced_g_per_kwh": (m["co2e_kg"] or 0.0) * 1000.0 / facility
                if facility
                else None,
                "zone_average_g_per_kwh": averages.get(r["site__grid_zone"]),
            }
        )
    return out


def _zone_averages(
    zones: set[str], organization: Organization, period: CalendarPeriod
) -> dict[str, float]:
    """Time-averaged location-based factor of each zone over every hour of the period (what a
    load running flat would have experienced)."""
    if not zones:
        return {}
    try:
        from ecoreport.carbon.resolver import hours_between, location_factors
    except ImportError:  # pragma: no cover - carbon app absent
        return {}
    hours = hours_between(period.start, period.end)
    factors = location_factors(zones=zones, hours=hours, organization_id=organization.pk)
    out = {}
    for zone in zones:
        values = [factors[(zone, h)].intensity_g_per_kwh for h in hours if (zone, h) in factors]
        if values:
            out[zone] = sum(values) / len(values)
    return out


def _methodology(
    qs: QuerySet[HourlyUsage], organization: Organization, sums: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Formulas, PUE and factors used. Energy shares here are shares of IT energy, the same base
    as the fallback share of the usage API (``usage.fallback_share_pct``): the factor rows
    marked as fallback add up to the printed fallback share."""
    out: dict[str, Any] = {"formulas": [{"name": n, "formula": f} for n, f in FORMULAS]}
    if not HAS_EMISSIONS:
        out.update(available=False, pue=[], factors=[], market=[], fallbacks={})
        return out
    sums = sums or {}
    total_it = float(sums.get("energy_j") or 0.0)
    pue_rows = list(
        qs.values("site__slug", "pue")
        .annotate(
            energy_j=Sum("energy_j"),
            facility_j=Sum("facility_energy_j"),
            first=Min("hour"),
            last=Max("hour"),
        )
        .order_by("site__slug", "first")
    )
    sources: dict[str, str] = {}
    try:
        from ecoreport.carbon.models import SitePue

        for sp in (
            SitePue.objects.for_org(organization).select_related("site").order_by("valid_from")
        ):
            if sp.source:
                sources[f"{sp.site.slug}|{float(sp.pue):.3f}"] = sp.source
    except ImportError:  # pragma: no cover
        pass
    pue = []
    for r in pue_rows:
        site = r["site__slug"] or "(no site)"
        value = r["pue"]
        pue.append(
            {
                "site": site,
                "pue": value,
                "first_hour": r["first"].isoformat(),
                "last_hour": r["last"].isoformat(),
                "it_energy_kwh": (r["energy_j"] or 0.0) / J_PER_KWH,
                "source": sources.get(f"{site}|{(value or 0):.3f}")
                or (
                    "site setting"
                    if r["site__slug"]
                    else "default PUE for hosts at no site (fallback)"
                ),
            }
        )
    # One scan grouped by the factor ids stored on each row (no joins over the big table); the
    # factors' descriptions are then read by id from the small factor tables.
    groups = list(
        qs.values(
            "intensity_factor_id",
            "intensity_resolution",
            "intensity_fallback",
            "market_basis",
            "market_instrument_id",
            "market_factor_id",
        )
        .annotate(
            energy_j=Sum("energy_j"),
            facility_j=Sum("facility_energy_j"),
            co2e_g=Sum("co2e_g"),
            co2e_market_g=Sum("co2e_market_g"),
            min_g=Min("intensity_g_per_kwh"),
            max_g=Max("intensity_g_per_kwh"),
            certificate_share=Max("certificate_share"),
            first_hour=Min("hour"),
            last_hour=Max("hour"),
        )
        .order_by()
    )
    from ecoreport.carbon.models import CarbonIntensity, MarketInstrument
    from ecoreport.carbon.resolver import MARKET_ZONE_PRIOR_YEAR

    factor_ids = {g["intensity_factor_id"] for g in groups} | {
        g["market_factor_id"] for g in groups
    }
    described = {
        f.pk: f
        for f in CarbonIntensity.objects.filter(pk__in=[i for i in factor_ids if i]).only(
            "zone", "source", "year", "start"
        )
    }
    instruments = {
        m.pk: m.source
        for m in MarketInstrument.objects.filter(
            pk__in=[g["market_instrument_id"] for g in groups if g["market_instrument_id"]]
        ).only("source")
    }

    def share(energy_j: float) -> float | None:
        return energy_j / total_it * 100.0 if total_it else None

    def weighted(co2e: float, facility: float) -> float | None:
        return co2e / (facility / J_PER_KWH) if facility else None

    location: dict[tuple[Any, ...], dict[str, Any]] = {}
    market_acc: dict[tuple[str, str], dict[str, Any]] = {}
    for g in groups:
        facility = g["facility_j"] or 0.0
        energy = g["energy_j"] or 0.0
        factor = described.get(g["intensity_factor_id"])
        key = (
            factor.zone if factor else "(built-in default)",
            g["intensity_resolution"] or "-",
            factor.source if factor else "configured world default",
            factor.year if factor else None,
            bool(g["intensity_fallback"]),
        )
        acc = location.setdefault(
            key,
            {
                "energy_j": 0.0,
                "facility_j": 0.0,
                "co2e_g": 0.0,
                "ids": set(),
                "min_g": None,
                "max_g": None,
            },
        )
        acc["energy_j"] += energy
        acc["facility_j"] += facility
        acc["co2e_g"] += g["co2e_g"] or 0.0
        acc["ids"].add(g["intensity_factor_id"])
        for bound, pick in (("min_g", min), ("max_g", max)):
            if g[bound] is not None:
                acc[bound] = g[bound] if acc[bound] is None else pick(acc[bound], g[bound])
        market_factor = described.get(g["market_factor_id"])
        source = (
            instruments.get(g["market_instrument_id"])
            or (market_factor.source if market_factor else None)
            or "location-based factor"
        )
        macc = market_acc.setdefault(
            (g["market_basis"] or "-", source),
            {"energy_j": 0.0, "facility_j": 0.0, "co2e_g": 0.0, "cert": 0.0, "carried": set()},
        )
        if g["market_basis"] == MARKET_ZONE_PRIOR_YEAR and market_factor is not None:
            # An earlier year's zone market factor carried forward: flagged, with its years.
            macc["carried"].add(
                (
                    market_factor.start.year,
                    g["first_hour"].astimezone(UTC).year,
                    g["last_hour"].astimezone(UTC).year,
                )
            )
        macc["energy_j"] += energy
        macc["facility_j"] += facility
        macc["co2e_g"] += g["co2e_market_g"] or 0.0
        macc["cert"] = max(macc["cert"], g["certificate_share"] or 0.0)
    factors = [
        {
            "basis": "location",
            "zone": zone,
            "resolution": resolution,
            "source": source,
            "year": year,
            "factors_used": len(acc["ids"] - {None}),
            "min_g_per_kwh": acc["min_g"],
            "max_g_per_kwh": acc["max_g"],
            "weighted_g_per_kwh": weighted(acc["co2e_g"], acc["facility_j"]),
            "energy_share_pct": share(acc["energy_j"]),
            "fallback": fallback,
        }
        for (zone, resolution, source, year, fallback), acc in sorted(
            location.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
        )
    ]
    market = [
        {
            "basis": basis,
            "source": source,
            "weighted_g_per_kwh": weighted(acc["co2e_g"], acc["facility_j"]),
            "max_certificate_share": acc["cert"],
            "energy_share_pct": share(acc["energy_j"]),
            "fallback": bool(acc["carried"]),
            "fallback_note": "; ".join(
                f"market factor of {of} applied to "
                f"{'-'.join(str(y) for y in sorted({lo, hi}))} (fallback)"
                for of, lo, hi in sorted(acc["carried"])
            )
            or None,
        }
        for (basis, source), acc in sorted(market_acc.items())
    ]
    no_site_j = sum((r["energy_j"] or 0.0) for r in pue_rows if r["site__slug"] is None)
    out.update(
        available=True,
        pue=pue,
        factors=factors,
        market=market,
        fallbacks={
            # The usage API's own function on the same sums: one number everywhere.
            "world_average_share_pct": usage.fallback_share_pct(sums) or 0.0,
            "no_site_share_pct": no_site_j / total_it * 100.0 if total_it else 0.0,
            "base": "IT energy",
        },
    )
    return out


def _data_quality(organization: Organization, period: CalendarPeriod) -> dict[str, Any]:
    """Coverage of the organization's fleet (whatever the report's scope: a team shares GPUs)."""
    window = _window(HourlyUsage.objects.for_org(organization), period.start, period.end)
    per_gpu = {
        r["gpu_id"]: r
        for r in window.values("gpu_id", "host_id")
        .annotate(seconds=Sum("gpu_seconds"), energy_j=Sum("energy_j"), last=Max("hour"))
        .order_by()
    }
    known = Gpu.objects.for_org(organization).filter(
        Q(created_at__lt=period.end) | Q(pk__in=list(per_gpu))
    )
    # Bounded: each GPU's latest sample in the period through the (gpu, start) key, not a scan
    # of the raw table. A GPU's method follows its hardware and driver, not the hour.
    try:
        from ecoreport.telemetry.models import EnergySample

        latest = (
            EnergySample.objects.filter(
                gpu=OuterRef("pk"), start__gte=period.start, start__lt=period.end
            )
            .order_by("-start")
            .values("method")[:1]
        )
        methods = dict(known.annotate(m=Subquery(latest)).values_list("pk", "m"))
    except ImportError:  # pragma: no cover
        methods = {}
    gpus_known = len(methods) if methods else known.count()
    by_method: dict[str, float] = {}
    for gpu_id, r in per_gpu.items():
        method = methods.get(gpu_id) or "unknown (no raw samples kept)"
        by_method[method] = by_method.get(method, 0.0) + (r["energy_j"] or 0.0)
    total_j = sum(by_method.values())
    expected_h = gpus_known * period.hours
    measured_h = sum((r["seconds"] or 0.0) for r in per_gpu.values()) / 3600.0
    silent = list(
        known.exclude(pk__in=list(per_gpu))
        .select_related("host")
        .order_by("host__hostname", "index")
        .values_list("host__hostname", "uuid")[:20]
    )
    hours = sorted(window.values_list("hour", flat=True).distinct().order_by())
    gaps = _gaps(hours, period)
    stale_before = period.end - timedelta(hours=24)
    # A host's last hour is its latest GPU's (same scan as the per-GPU sums).
    host_last: dict[int, datetime] = {}
    for r in per_gpu.values():
        host_last[r["host_id"]] = max(r["last"], host_last.get(r["host_id"], r["last"]))
    names = dict(Host.objects.filter(pk__in=list(host_last)).values_list("pk", "hostname"))
    stopped = sorted(
        (
            {"host": names.get(host_id, str(host_id)), "last_hour": last.isoformat()}
            for host_id, last in host_last.items()
            if last < stale_before
        ),
        key=lambda h: (h["last_hour"], h["host"]),
    )
    return {
        "gpus_known": gpus_known,
        "gpus_reporting": len(per_gpu),
        "hours_in_period": period.hours,
        "hours_with_data": len(hours),
        "expected_gpu_hours": expected_h,
        "measured_gpu_hours": measured_h,
        "coverage_pct": measured_h / expected_h * 100.0 if expected_h else None,
        "gpus_without_data": [{"host": h, "gpu": u} for h, u in silent],
        "gpus_without_data_count": gpus_known - len(per_gpu),
        "gaps": gaps[:10],
        "gap_count": len(gaps),
        "hosts_stopped": stopped[:20],
        "hosts_stopped_count": len(stopped),
        "energy_by_method": [
            {
                "method": m,
                "energy_kwh": j / J_PER_KWH,
                "share_pct": j / total_j * 100.0 if total_j else None,
            }
            for m, j in sorted(by_method.items(), key=lambda kv: -kv[1])
        ],
    }


def _gaps(hours: list[datetime], period: CalendarPeriod) -> list[dict[str, Any]]:
    """Runs of hours with no measurement from any GPU, longest first."""
    if not hours:
        return []
    present = set(hours)
    gaps, run_start = [], None
    moment = period.start
    while moment < period.end:
        if moment not in present and run_start is None:
            run_start = moment
        elif moment in present and run_start is not None:
            gaps.append((run_start, moment))
            run_start = None
        moment += timedelta(hours=1)
    if run_start is not None:
        gaps.append((run_start, period.end))
    gaps.sort(key=lambda g: (-(g[1] - g[0]), g[0]))
    return [
        {
            "start": s.isoformat(),
            "end": e.isoformat(),
            "hours": int((e - s).total_seconds() // 3600),
        }
        for s, e in gaps
    ]


def _comparisons(
    organization: Organization, period: CalendarPeriod, data_quality: dict[str, Any]
) -> dict[str, Any]:
    """Coverage of this period (from its data quality figures) and of the two it is compared
    with, and whether each comparison holds (see ``reports.coverage``)."""
    min_pct = coverage.min_coverage_pct()
    now = coverage.from_data_quality(period, data_quality)
    before = coverage.period_coverage(organization, period.previous)
    year = coverage.period_coverage(organization, period.year_before)
    return {
        "min_coverage_pct": min_pct,
        "coverage": [
            {"role": "this period", **now.as_dict()},
            {"role": "previous period", **before.as_dict()},
            {"role": "same period a year before", **year.as_dict()},
        ],
        "previous": coverage.comparison(now, before, min_pct=min_pct),
        "year_before": coverage.comparison(now, year, min_pct=min_pct),
    }


def _recommendations(
    organization: Organization, team: Team | None, period: CalendarPeriod
) -> dict[str, Any]:
    """The top savings levers of the savings app for the scope and period, largest CO2e first."""
    try:
        from ecoreport.savings.selectors import recommendations
    except ImportError:  # pragma: no cover - savings app absent
        return {"available": False, "rows": []}

    found = recommendations(
        organization, Scope(organization=organization, team=team), period.start, period.end
    )
    rows = []
    for rec in found[:5]:
        rows.append(
            {
                "rank": rec.get("rank"),
                "title": str(rec.get("title") or rec.get("key") or ""),
                "kind": rec.get("kind"),
                "detail": str(rec.get("sentence") or ""),
                "energy_kwh": _num(rec, "energy_kwh"),
                "co2e_kg": _num(rec, "co2e_kg"),
                "cost": _num(rec, "cost"),
                "currency": rec.get("currency"),
            }
        )
    return {"available": True, "rows": rows}


def _num(rec: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = rec.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def build(
    *,
    organization: Organization,
    team: Team | None,
    period: CalendarPeriod,
    generated_at: datetime,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    qs = scope_usage(organization, team)
    window = _window(qs, period.start, period.end)
    progress("totals")
    current_sums = window.aggregate(**SUMS)
    current = metrics(current_sums)
    previous = metrics(_window(qs, period.previous.start, period.previous.end).aggregate(**SUMS))
    last_year = metrics(
        _window(qs, period.year_before.start, period.year_before.end).aggregate(**SUMS)
    )
    has_data = bool(current["gpu_hours"] or current["energy_kwh"])
    progress("data quality and coverage of the compared periods")
    data_quality = _data_quality(organization, period)
    comparisons = _comparisons(organization, period, data_quality)
    vs_previous = comparisons["previous"]["comparable"]
    vs_last_year = comparisons["year_before"]["comparable"]
    headline = [
        {
            "key": key,
            "label": label,
            "unit": unit,
            "digits": digits,
            "value": current.get(key),
            "previous": previous.get(key),
            "last_year": last_year.get(key),
            # A change against a partly measured period is not printed: it measures the gap.
            "change_previous_pct": change_pct(current.get(key), previous.get(key))
            if vs_previous
            else None,
            "change_last_year_pct": change_pct(current.get(key), last_year.get(key))
            if vs_last_year
            else None,
            "previous_comparable": vs_previous,
            "last_year_comparable": vs_last_year,
        }
        for key, label, unit, digits in HEADLINE
    ]
    content: dict[str, Any] = {
        "meta": {
            "organization": organization.slug,
            "organization_name": organization.name,
            "team": team.slug if team else None,
            "scope": f"Team {team.name or team.slug}" if team else "Whole organization",
            "period": period.label,
            "period_kind": period.kind,
            "previous_period": period.previous.label,
            "year_before_period": period.year_before.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "generated_at": generated_at.isoformat(),
            "emissions_available": HAS_EMISSIONS,
        },
        "has_data": has_data,
        "totals": current,
        "headline": headline,
        "comparisons": comparisons,
    }
    if not has_data:
        content.update(
            by_team=[],
            by_project=[],
            monthly_by_team=[],
            daily=[],
            intensity=[],
            targets=report_targets(organization, team, period, generated_at=generated_at),
            recommendations={"available": False, "rows": []},
            methodology=_methodology(window.none(), organization),
            data_quality=data_quality,
        )
        return content
    progress("teams, projects and time series")
    trunc = (
        TruncMonth("hour", tzinfo=UTC) if period.kind == "year" else TruncDay("hour", tzinfo=UTC)
    )
    cube = _cube(window, trunc)
    content["by_team"] = _ranked(cube, "team__slug", "team")
    content["by_project"] = _ranked(cube, "project__slug", "project")
    content["daily"] = [
        {"period_start": k.isoformat(), **metrics(v)}
        for k, v in sorted(_rollup(cube, lambda r: r["bucket"]).items())
    ]
    by_month_team = _rollup(cube, lambda r: (_month_start(r["bucket"]), r["team__slug"] or ""))
    content["monthly_by_team"] = [
        {"period_start": month.isoformat(), "group": team or None, **metrics(v)}
        for (month, team), v in sorted(by_month_team.items())
    ]
    progress("carbon intensity")
    content["intensity"] = _intensity(window, organization, period)
    progress("targets and recommendations")
    content["targets"] = report_targets(organization, team, period, generated_at=generated_at)
    content["recommendations"] = _recommendations(organization, team, period)
    progress("methodology")
    content["methodology"] = _methodology(window, organization, current_sums)
    content["data_quality"] = data_quality
    return content
