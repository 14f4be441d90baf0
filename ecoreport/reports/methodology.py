"""The report's methodology section: the formulas, the PUE used per site, and the location- and
market-based carbon factors used, each with its share of the IT energy, so every figure of the
report names the factors it came from (design invariant 5).

Energy shares here are shares of IT energy, the same base as the fallback share of the usage API
(``usage.fallback_share_pct``): the factor rows marked as fallback add up to the printed
fallback share.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.db.models import Max, Min, QuerySet, Sum

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.models import CarbonIntensity, MarketInstrument, SitePue
from ecoreport.carbon.resolver import MARKET_ZONE_PRIOR_YEAR
from ecoreport.organizations.models import Organization
from ecoreport.reports.totals import HAS_EMISSIONS, J_PER_KWH

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


def methodology(
    qs: QuerySet[HourlyUsage], organization: Organization, sums: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Formulas, PUE and factors used over the rows ``qs`` (the report's scope and period);
    ``sums`` are the same rows' totals (``totals.SUMS``)."""
    out: dict[str, Any] = {"formulas": [{"name": n, "formula": f} for n, f in FORMULAS]}
    if not HAS_EMISSIONS:
        out.update(available=False, pue=[], factors=[], market=[], fallbacks={})
        return out
    sums = sums or {}
    total_it = float(sums.get("energy_j") or 0.0)
    pue_rows = _pue_rows(qs)
    pue = _pue_used(pue_rows, _pue_sources(organization))
    groups = _factor_groups(qs)
    described, instruments = _factors_described(groups)
    no_site_j = sum((r["energy_j"] or 0.0) for r in pue_rows if r["site__slug"] is None)
    out.update(
        available=True,
        pue=pue,
        factors=_location_factors(groups, described, total_it),
        market=_market_factors(groups, described, instruments, total_it),
        fallbacks={
            # The usage API's own function on the same sums: one number everywhere.
            "world_average_share_pct": usage.fallback_share_pct(sums) or 0.0,
            "no_site_share_pct": no_site_j / total_it * 100.0 if total_it else 0.0,
            "base": "IT energy",
        },
    )
    return out


# --- PUE ------------------------------------------------------------------------------------


def _pue_rows(qs: QuerySet[HourlyUsage]) -> list[dict[str, Any]]:
    """IT and facility energy per site and PUE value, with the first and last hour it applied."""
    return list(
        qs.values("site__slug", "pue")
        .annotate(
            energy_j=Sum("energy_j"),
            facility_j=Sum("facility_energy_j"),
            first=Min("hour"),
            last=Max("hour"),
        )
        .order_by("site__slug", "first")
    )


def _pue_sources(organization: Organization) -> dict[str, str]:
    """The stated source of each site's PUE value, keyed ``site|pue``."""
    sources: dict[str, str] = {}
    for sp in SitePue.objects.for_org(organization).select_related("site").order_by("valid_from"):
        if sp.source:
            sources[f"{sp.site.slug}|{float(sp.pue):.3f}"] = sp.source
    return sources


def _pue_used(pue_rows: list[dict[str, Any]], sources: dict[str, str]) -> list[dict[str, Any]]:
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
    return pue


# --- Carbon factors -------------------------------------------------------------------------


def _factor_groups(qs: QuerySet[HourlyUsage]) -> list[dict[str, Any]]:
    """One scan grouped by the factor ids stored on each row (no joins over the big table); the
    factors' descriptions are then read by id from the small factor tables."""
    return list(
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


def _factors_described(
    groups: list[dict[str, Any]],
) -> tuple[dict[int, CarbonIntensity], dict[int, str]]:
    """The factors (by id) and the market instruments' sources (by id) the groups used."""
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
    return described, instruments


def _share(energy_j: float, total_it: float) -> float | None:
    return energy_j / total_it * 100.0 if total_it else None


def _weighted(co2e: float, facility: float) -> float | None:
    return co2e / (facility / J_PER_KWH) if facility else None


def _location_factors(
    groups: list[dict[str, Any]], described: dict[int, CarbonIntensity], total_it: float
) -> list[dict[str, Any]]:
    """Location-based factors by zone, resolution, source and year, fallbacks apart."""
    location: dict[tuple[Any, ...], dict[str, Any]] = {}
    for g in groups:
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
        acc["energy_j"] += g["energy_j"] or 0.0
        acc["facility_j"] += g["facility_j"] or 0.0
        acc["co2e_g"] += g["co2e_g"] or 0.0
        acc["ids"].add(g["intensity_factor_id"])
        for bound, pick in (("min_g", min), ("max_g", max)):
            if g[bound] is not None:
                acc[bound] = g[bound] if acc[bound] is None else pick(acc[bound], g[bound])
    return [
        {
            "basis": "location",
            "zone": zone,
            "resolution": resolution,
            "source": source,
            "year": year,
            "factors_used": len(acc["ids"] - {None}),
            "min_g_per_kwh": acc["min_g"],
            "max_g_per_kwh": acc["max_g"],
            "weighted_g_per_kwh": _weighted(acc["co2e_g"], acc["facility_j"]),
            "energy_share_pct": _share(acc["energy_j"], total_it),
            "fallback": fallback,
        }
        for (zone, resolution, source, year, fallback), acc in sorted(
            location.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
        )
    ]


def _market_factors(
    groups: list[dict[str, Any]],
    described: dict[int, CarbonIntensity],
    instruments: dict[int, str],
    total_it: float,
) -> list[dict[str, Any]]:
    """Market-based factors by basis and source (instrument, factor, or the location factor),
    an earlier year's zone factor carried forward flagged with its years."""
    market_acc: dict[tuple[str, str], dict[str, Any]] = {}
    for g in groups:
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
        macc["energy_j"] += g["energy_j"] or 0.0
        macc["facility_j"] += g["facility_j"] or 0.0
        macc["co2e_g"] += g["co2e_market_g"] or 0.0
        macc["cert"] = max(macc["cert"], g["certificate_share"] or 0.0)
    return [
        {
            "basis": basis,
            "source": source,
            "weighted_g_per_kwh": _weighted(acc["co2e_g"], acc["facility_j"]),
            "max_certificate_share": acc["cert"],
            "energy_share_pct": _share(acc["energy_j"], total_it),
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
