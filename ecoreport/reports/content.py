"""The report's content: one plain, JSON-ready structure that every format renders, so the PDF,
the HTML, the CSV and the XLSX cannot disagree. Aggregation happens in the database over
HourlyUsage (the same sums as ``/api/v1/usage``); Python shapes the few rows that come back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDay, TruncMonth

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import HourlyUsage
from ecoreport.fleet.models import Gpu
from ecoreport.organizations.models import Organization, Team
from ecoreport.reports.periods import ReportPeriod

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
    out["idle_energy_share_pct"] = ((out["idle_energy_kwh"] or 0.0) / energy * 100.0) if energy else None
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
    organization: Organization, team: Team | None, period: ReportPeriod
) -> dict[str, float]:
    """Measurement totals (not factors) of the scope and period: a change here is late data."""
    sums = _window(scope_usage(organization, team), period.start, period.end).aggregate(
        energy_j=Sum("energy_j"), gpu_seconds=Sum("gpu_seconds"), samples=Sum("sample_count")
    )
    return {k: float(v or 0.0) for k, v in sums.items()}


def _grouped(qs: QuerySet[HourlyUsage], field: str, name: str) -> list[dict[str, Any]]:
    rows = [{name: r[field], **metrics(r)} for r in qs.values(field).annotate(**SUMS).order_by()]
    rows.sort(key=lambda r: (-(r["energy_kwh"] or 0.0), r[name] or ""))
    return rows


def _series(
    qs: QuerySet[HourlyUsage], trunc: Any, field: str | None = None
) -> list[dict[str, Any]]:
    values = ["bucket", field] if field else ["bucket"]
    rows = qs.annotate(bucket=trunc).values(*values).annotate(**SUMS).order_by()
    out = []
    for r in rows:
        row = {"period_start": r["bucket"].isoformat(), **metrics(r)}
        if field:
            row["group"] = r[field]
        out.append(row)
    out.sort(key=lambda r: (r["period_start"], r.get("group") or ""))
    return out


def _intensity(
    qs: QuerySet[HourlyUsage], organization: Organization, period: ReportPeriod
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
    zones: set[str], organization: Organization, period: ReportPeriod
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


def _methodology(qs: QuerySet[HourlyUsage], organization: Organization) -> dict[str, Any]:
    out: dict[str, Any] = {"formulas": [{"name": n, "formula": f} for n, f in FORMULAS]}
    if not HAS_EMISSIONS:
        out.update(available=False, pue=[], factors=[], market=[], fallbacks={})
        return out
    total_facility = qs.aggregate(e=Sum("facility_energy_j"))["e"] or 0.0
    pue_rows = (
        qs.values("site__slug", "pue")
        .annotate(energy_j=Sum("energy_j"), first=Min("hour"), last=Max("hour"))
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
    factor_rows = (
        qs.values(
            zone=F("intensity_factor__zone"),
            resolution=F("intensity_resolution"),
            source=F("intensity_factor__source"),
            year=F("intensity_factor__year"),
            fallback=F("intensity_fallback"),
        )
        .annotate(
            facility_j=Sum("facility_energy_j"),
            co2e_g=Sum("co2e_g"),
            factors=Count("intensity_factor", distinct=True),
            min_g=Min("intensity_g_per_kwh"),
            max_g=Max("intensity_g_per_kwh"),
        )
        .order_by("zone", "resolution", "source")
    )
    factors = []
    for r in factor_rows:
        facility = r["facility_j"] or 0.0
        factors.append(
            {
                "basis": "location",
                "zone": r["zone"] or "(built-in default)",
                "resolution": r["resolution"] or "-",
                "source": r["source"] or "configured world default",
                "year": r["year"],
                "factors_used": r["factors"],
                "min_g_per_kwh": r["min_g"],
                "max_g_per_kwh": r["max_g"],
                "weighted_g_per_kwh": (r["co2e_g"] or 0.0) / (facility / J_PER_KWH)
                if facility
                else None,
                "facility_energy_share_pct": facility / total_facility * 100.0
                if total_facility
                else None,
                "fallback": bool(r["fallback"]),
            }
        )
    market_rows = (
        qs.values(
            market_basis_=F("market_basis"),
            instrument=F("market_instrument__source"),
            factor_source=F("market_factor__source"),
        )
        .annotate(
            facility_j=Sum("facility_energy_j"),
            co2e_g=Sum("co2e_market_g"),
            certificate_share=Max("certificate_share"),
        )
        .order_by("market_basis_")
    )
    market = []
    for r in market_rows:
        facility = r["facility_j"] or 0.0
        market.append(
            {
                "basis": r["market_basis_"] or "-",
                "source": r["instrument"] or r["factor_source"] or "location-based factor",
                "weighted_g_per_kwh": (r["co2e_g"] or 0.0) / (facility / J_PER_KWH)
                if facility
                else None,
                "max_certificate_share": r["certificate_share"],
                "facility_energy_share_pct": facility / total_facility * 100.0
                if total_facility
                else None,
            }
        )
    fallback_j = (
        qs.filter(intensity_fallback=True).aggregate(e=Sum("facility_energy_j"))["e"] or 0.0
    )
    no_site_j = qs.filter(site__isnull=True).aggregate(e=Sum("facility_energy_j"))["e"] or 0.0
    out.update(
        available=True,
        pue=pue,
        factors=factors,
        market=market,
        fallbacks={
            "world_average_share_pct": fallback_j / total_facility * 100.0
            if total_facility
            else 0.0,
            "no_site_share_pct": no_site_j / total_facility * 100.0 if total_facility else 0.0,
        },
    )
    return out


def _data_quality(organization: Organization, period: ReportPeriod) -> dict[str, Any]:
    """Coverage of the organization's fleet (whatever the report's scope: a team shares GPUs)."""
    window = _window(HourlyUsage.objects.for_org(organization), period.start, period.end)
    per_gpu = {
        r["gpu_id"]: r
        for r in window.values("gpu_id")
        .annotate(seconds=Sum("gpu_seconds"), energy_j=Sum("energy_j"))
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
    stopped = [
        {"host": r["host__hostname"], "last_hour": r["last"].isoformat()}
        for r in window.values("host__hostname").annotate(last=Max("hour")).order_by("last")
        if r["last"] < stale_before
    ]
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


def _gaps(hours: list[datetime], period: ReportPeriod) -> list[dict[str, Any]]:
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


def _targets(organization: Organization, team: Team | None, period: ReportPeriod) -> dict[str, Any]:
    try:
        from ecoreport.policies.models import Target, TargetEvaluation
    except ImportError:  # pragma: no cover
        return {"available": False, "rows": []}
    targets = Target.objects.for_org(organization).select_related("team", "project")
    if team is not None:
        targets = targets.filter(
            Q(team=team) | Q(project__team=team) | Q(scope_kind=Target.Scope.ORG)
        )
    rows = []
    for target in targets.order_by("name", "id"):
        evaluations = list(
            TargetEvaluation.objects.for_org(organization)
            .filter(target=target, period_start__lt=period.end, period_end__gt=period.start)
            .order_by("evaluated_at", "id")
            .values("evaluated_at", "status", "value", "threshold_value", "final", "period_start")
        )
        if not evaluations and not target.is_active:
            continue
        history: list[dict[str, Any]] = []
        for e in evaluations:
            if not history or history[-1]["status"] != e["status"]:
                history.append({"at": e["evaluated_at"].isoformat(), "status": e["status"]})
        last = evaluations[-1] if evaluations else None
        rows.append(
            {
                "name": target.name,
                "scope": target.scope,
                "metric": target.metric,
                "comparator": target.comparator,
                "period": target.period,
                "threshold": last["threshold_value"] if last else target.threshold,
                "value": last["value"] if last else None,
                "status": last["status"] if last else "not evaluated",
                "final": bool(last and last["final"]),
                "evaluations": len(evaluations),
                "history": history[-12:],
            }
        )
    return {"available": True, "rows": rows}


def _recommendations(
    organization: Organization, team: Team | None, period: ReportPeriod
) -> dict[str, Any]:
    """The top savings levers of the savings app for the scope and period, largest CO2e first."""
    try:
        from ecoreport.savings.selectors import recommendations
    except ImportError:  # pragma: no cover - savings app absent
        return {"available": False, "rows": []}
    from ecoreport.dashboards.selectors import Scope

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
    period: ReportPeriod,
    generated_at: datetime,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    qs = scope_usage(organization, team)
    window = _window(qs, period.start, period.end)
    progress("totals")
    current = metrics(window.aggregate(**SUMS))
    previous = metrics(_window(qs, period.previous.start, period.previous.end).aggregate(**SUMS))
    last_year = metrics(
        _window(qs, period.year_before.start, period.year_before.end).aggregate(**SUMS)
    )
    has_data = bool(current["gpu_hours"] or current["energy_kwh"])
    headline = [
        {
            "key": key,
            "label": label,
            "unit": unit,
            "digits": digits,
            "value": current.get(key),
            "previous": previous.get(key),
            "last_year": last_year.get(key),
            "change_previous_pct": change_pct(current.get(key), previous.get(key)),
            "change_last_year_pct": change_pct(current.get(key), last_year.get(key)),
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
    }
    if not has_data:
        content.update(
            by_team=[],
            by_project=[],
            monthly_by_team=[],
            daily=[],
            intensity=[],
            targets=_targets(organization, team, period),
            recommendations={"available": False, "rows": []},
            methodology=_methodology(window.none(), organization),
            data_quality=_data_quality(organization, period),
        )
        return content
    progress("teams and projects")
    content["by_team"] = _grouped(window, "team__slug", "team")
    content["by_project"] = _grouped(window, "project__slug", "project")
    progress("time series")
    trunc = (
        TruncMonth("hour", tzinfo=UTC) if period.kind == "year" else TruncDay("hour", tzinfo=UTC)
    )
    content["daily"] = _series(window, trunc)
    content["monthly_by_team"] = _series(window, TruncMonth("hour", tzinfo=UTC), "team__slug")
    progress("carbon intensity")
    content["intensity"] = _intensity(window, organization, period)
    progress("targets and recommendations")
    content["targets"] = _targets(organization, team, period)
    content["recommendations"] = _recommendations(organization, team, period)
    progress("methodology")
    content["methodology"] = _methodology(window, organization)
    progress("data quality")
    content["data_quality"] = _data_quality(organization, period)
    return content
