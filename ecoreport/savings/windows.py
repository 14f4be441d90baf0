"""The best time to run: the start hour with the lowest average grid intensity in a window,
from a zone's hourly factors or forecasts (the Carbon Aware SDK's "best window" question).

The signal is the zone's marginal rate (basis ``marginal``, e.g. WattTime) where it has one
for the coming hours: the emissions a job adds are those of the marginal plant, so that is what
a timing decision should minimise. Without one, the grid-average (location) factors. The answer
says which (``basis``); the two are never mixed in one answer, they are not on one scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from ecoreport.carbon.emissions import G_PER_KG
from ecoreport.carbon.models import CarbonIntensity, Resolution
from ecoreport.carbon.resolver import hours_between
from ecoreport.organizations.models import Organization
from ecoreport.savings import calc
from ecoreport.savings.selectors import SavingsError

MAX_WINDOW_H = 168


def best_window(
    organization: Organization,
    *,
    zone: str,
    duration_h: int,
    within_h: int,
    now: datetime,
    energy_kwh: float | None = None,
) -> dict[str, Any]:
    """The start hour within the next ``within_h`` hours whose ``duration_h`` hours have the
    lowest average intensity of ``zone``, from its hourly factors or forecasts: marginal ones
    where at least ``duration_h`` consecutive hours of them start now, else location-based.

    Only hourly factors count: a month or year average says nothing about which hour is cleaner,
    so a zone without hourly data for the coming hours is an error, never a guess.
    """
    if duration_h < 1:
        raise SavingsError(
            "duration_h must be a whole number of hours, at least 1.", field="duration_h"
        )
    if within_h < 1:
        raise SavingsError(
            "within_h must be a whole number of hours, at least 1.", field="within_h"
        )
    if within_h > MAX_WINDOW_H:
        raise SavingsError(f"within_h may be at most {MAX_WINDOW_H} hours.", field="within_h")
    if within_h < duration_h:
        raise SavingsError(
            f"The window ({within_h} h) is shorter than the duration ({duration_h} h).",
            field="within_h",
        )
    first = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = first + timedelta(hours=within_h)
    # One query for both kinds of hourly factor; marginal first, the averages where it is short.
    rows = list(
        CarbonIntensity.objects.visible_to(organization).filter(
            zone=zone,
            basis__in=["marginal", "location"],
            resolution=Resolution.HOUR,
            start__gte=first,
            start__lt=last,
        )
    )
    basis = "marginal"
    series = _series(rows, basis=basis, first=first, last=last)
    if len(series) < duration_h:
        basis = "location"
        series = _series(rows, basis=basis, first=first, last=last)
    if not series:
        raise SavingsError(
            f"Zone '{zone}' has no hourly carbon-intensity data (actual or forecast) from "
            f"{first:%Y-%m-%dT%H:00Z}; the best time to run needs hourly factors. Load "
            "forecasts for the coming hours with `manage.py import_carbon_intensity` (a CSV "
            "with resolution-hour rows) or configure a provider that has forecasts for it "
            "(CARBON_PROVIDER_ZONES, docs/methodology.md).",
            field="zone",
        )
    if len(series) < duration_h:
        raise SavingsError(
            f"Zone '{zone}' has hourly data for only {len(series)} consecutive hours from "
            f"{first:%Y-%m-%dT%H:00Z}, fewer than the duration ({duration_h} h).",
            field="duration_h",
        )
    values = [r.intensity_g_per_kwh for r in series]
    best, _now = calc.best_window(values, duration_h=duration_h)
    chosen = series[best.start_index : best.start_index + duration_h]
    # Averages from the slices themselves (the running sum is only for the search).
    best_avg = sum(r.intensity_g_per_kwh for r in chosen) / duration_h
    now_avg = sum(values[:duration_h]) / duration_h
    start = chosen[0].start.astimezone(UTC)
    answer: dict[str, Any] = {
        "zone": zone,
        # Which signal ranked the hours: "marginal" (the emissions of added load) or "location"
        # (the grid average); the averages and savings below are in that signal's terms.
        "basis": basis,
        "duration_h": duration_h,
        "within_h": within_h,
        "covered_h": len(series),
        "start": start,
        "end": start + timedelta(hours=duration_h),
        "avg_intensity_g_per_kwh": best_avg,
        "now": {"start": first, "avg_intensity_g_per_kwh": now_avg},
        "saving_g_per_kwh": now_avg - best_avg,
        "saving_pct": (now_avg - best_avg) / now_avg * 100.0 if now_avg else 0.0,
        "forecast": any(r.is_forecast for r in chosen),
        "sources": sorted({f"{r.source} ({r.year})" for r in chosen}),
        "hours": [
            {
                "start": r.start.astimezone(UTC),
                "intensity_g_per_kwh": r.intensity_g_per_kwh,
                "forecast": r.is_forecast,
            }
            for r in series
        ],
    }
    if energy_kwh is not None:
        answer["energy_kwh"] = energy_kwh
        answer["saving_co2e_kg"] = energy_kwh * (now_avg - best_avg) / G_PER_KG
    return answer


def _series(
    rows: Iterable[CarbonIntensity], *, basis: str, first: datetime, last: datetime
) -> list[CarbonIntensity]:
    """The consecutive hourly factors of ``basis`` from ``first``, up to the first gap."""
    by_hour: dict[datetime, CarbonIntensity] = {}
    # The organization's own factor for an hour wins over a shared one.
    mine = [r for r in rows if r.basis == basis]
    for row in sorted(mine, key=lambda r: (r.organization_id is not None, r.start)):
        by_hour[row.start.astimezone(UTC)] = row
    series: list[CarbonIntensity] = []
    for hour in hours_between(first, last):
        if hour not in by_hour:
            break
        series.append(by_hour[hour])
    return series
