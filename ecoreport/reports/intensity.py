"""The carbon intensity each site's energy experienced in the period, beside the plain time
average of its zone's location-based factor (what a load running flat would have experienced):
below the average, the work ran at cleaner hours."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.resolver import hours_between, location_factors
from ecoreport.core.periods import CalendarPeriod
from ecoreport.organizations.models import Organization
from ecoreport.reports.totals import HAS_EMISSIONS, SUMS, metrics


def site_intensity(
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
    hours = hours_between(period.start, period.end)
    factors = location_factors(zones=zones, hours=hours, organization_id=organization.pk)
    out = {}
    for zone in zones:
        values = [factors[(zone, h)].intensity_g_per_kwh for h in hours if (zone, h) in factors]
        if values:
            out[zone] = sum(values) / len(values)
    return out
