"""The best time to run: the start hour with the lowest average grid intensity in a window,
from a zone's hourly factors or forecasts (the Carbon Aware SDK's "best window" question).

The signal is the zone's marginal rate (basis ``marginal``, e.g. WattTime) where it has one
for the coming hours: the emissions a job adds are those of the marginal plant, so that is what
a timing decision should minimise. Without one, the grid-average (location) factors. The answer
says which (``basis``); the two are never mixed in one answer, they are not on one scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
    first, basis, series = _coming_signal(
        organization, zone=zone, now=now, within_h=within_h, needed_h=duration_h
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


def hourly_signal(
    organization: Organization, *, zone: str, first: datetime, last: datetime, needed_h: int
) -> tuple[str, list[CarbonIntensity]]:
    """The timing signal of ``zone`` from the hour ``first`` until ``last``: (basis, its
    consecutive hourly factors from ``first`` up to the first gap).

    The marginal rate where at least ``needed_h`` consecutive hours of it start at ``first``,
    else the location-based factors. The best window and the Carbon Aware SDK answers both
    read their hours here, so they see the same data by the same rules.
    """
    rows = _hourly_rows(organization, zone=zone, first=first, last=last)
    series = _series(rows, basis="marginal", first=first, last=last)
    if len(series) >= needed_h:
        return "marginal", series
    return "location", _series(rows, basis="location", first=first, last=last)


def _coming_signal(
    organization: Organization, *, zone: str, now: datetime, within_h: int, needed_h: int
) -> tuple[datetime, str, list[CarbonIntensity]]:
    """(the current hour, basis, series) of ``zone`` for the next ``within_h`` hours; a
    ``SavingsError`` naming the zone when it has no hourly data from the current hour."""
    first = _hour_of(now)
    basis, series = hourly_signal(
        organization,
        zone=zone,
        first=first,
        last=first + timedelta(hours=within_h),
        needed_h=needed_h,
    )
    if not series:
        raise SavingsError(
            f"Zone '{zone}' has no hourly carbon-intensity data (actual or forecast) from "
            f"{first:%Y-%m-%dT%H:00Z}; the best time to run needs hourly factors. Load "
            "forecasts for the coming hours with `manage.py import_carbon_intensity` (a CSV "
            "with resolution-hour rows) or configure a provider that has forecasts for it "
            "(CARBON_PROVIDER_ZONES, docs/methodology.md).",
            field="zone",
        )
    return first, basis, series


def _hourly_rows(
    organization: Organization, *, zone: str, first: datetime, last: datetime
) -> list[CarbonIntensity]:
    # One query for both kinds of hourly factor; the callers choose the basis.
    return list(
        CarbonIntensity.objects.visible_to(organization).filter(
            zone=zone,
            basis__in=["marginal", "location"],
            resolution=Resolution.HOUR,
            start__gte=first,
            start__lt=last,
        )
    )


def _by_hour(rows: Iterable[CarbonIntensity], *, basis: str) -> dict[datetime, CarbonIntensity]:
    by_hour: dict[datetime, CarbonIntensity] = {}
    # The organization's own factor for an hour wins over a shared one.
    mine = [r for r in rows if r.basis == basis]
    for row in sorted(mine, key=lambda r: (r.organization_id is not None, r.start)):
        by_hour[row.start.astimezone(UTC)] = row
    return by_hour


def _series(
    rows: Iterable[CarbonIntensity], *, basis: str, first: datetime, last: datetime
) -> list[CarbonIntensity]:
    """The consecutive hourly factors of ``basis`` from ``first``, up to the first gap."""
    by_hour = _by_hour(rows, basis=basis)
    series: list[CarbonIntensity] = []
    for hour in hours_between(first, last):
        if hour not in by_hour:
            break
        series.append(by_hour[hour])
    return series


def _hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- the Carbon Aware SDK's questions (ecoreport.savings.carbon_aware answers them over HTTP) --


@dataclass(frozen=True)
class Point:
    """One value of a timing signal: ``duration_s`` from ``start``, in g CO2e/kWh."""

    start: datetime
    duration_s: int
    intensity_g_per_kwh: float


@dataclass(frozen=True)
class Forecast:
    zone: str
    basis: str
    generated_at: datetime
    start: datetime
    end: datetime
    window_s: int | None
    points: list[Point]
    optimal: list[Point]


def forecast_windows(
    organization: Organization,
    *,
    zone: str,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    window_min: int | None = None,
) -> Forecast:
    """The zone's signal from the current hour (the best window's hours, up to
    ``MAX_WINDOW_H``), scoped to ``[start, end)`` (default: all of it), as the mean of every
    ``window_min``-minute window starting at ``start`` and every hour after it (without a
    window: the hourly values themselves), and the lowest of those (every one that ties).

    The same hours, basis rule and averaging as ``best_window``; what the Carbon Aware SDK's
    ``emissions/forecasts/current`` answers for one location.
    """
    if window_min is not None and not 1 <= window_min <= MAX_WINDOW_H * 60:
        raise SavingsError(
            f"The window must be 1 to {MAX_WINDOW_H * 60} minutes.", field="window_min"
        )
    _first, basis, series = _coming_signal(
        organization,
        zone=zone,
        now=now,
        within_h=MAX_WINDOW_H,
        needed_h=-(-window_min // 60) if window_min else 1,
    )
    data_from, data_to = series[0].start.astimezone(UTC), series[-1].end.astimezone(UTC)
    start = data_from if start is None else start.astimezone(UTC)
    end = data_to if end is None else end.astimezone(UTC)
    span = f"{data_from:%Y-%m-%dT%H:%MZ} to {data_to:%Y-%m-%dT%H:%MZ}"
    if start >= end:
        raise SavingsError("The start must be before the end.", field="start")
    if not data_from <= start <= data_to:
        raise SavingsError(f"The start must be within the forecast, {span}.", field="start")
    if not data_from <= end <= data_to:
        raise SavingsError(f"The end must be within the forecast, {span}.", field="end")
    if window_min is None:
        # No window: the hourly values that overlap the scope, as they are.
        points = [
            Point(r.start.astimezone(UTC), calc.HOUR_S, r.intensity_g_per_kwh)
            for r in series
            if r.end > start and r.start < end
        ]
    else:
        offset_s = int((start - data_from).total_seconds())
        averages = calc.window_averages(
            [r.intensity_g_per_kwh for r in series],
            window_s=window_min * 60,
            start_s=offset_s,
            end_s=int((end - data_from).total_seconds()),
        )
        points = [
            Point(start + timedelta(hours=k), window_min * 60, value)
            for k, value in enumerate(averages)
        ]
    best = calc.lowest([p.intensity_g_per_kwh for p in points])
    return Forecast(
        zone=zone,
        basis=basis,
        # When the newest of the factors used was stored: a provider's forecast run, an import.
        generated_at=max(r.created_at for r in series).astimezone(UTC),
        start=start,
        end=end,
        window_s=None if window_min is None else window_min * 60,
        points=points,
        optimal=[points[i] for i in best],
    )


def observed(
    organization: Organization, *, zone: str, start: datetime, end: datetime | None = None
) -> tuple[str, list[Point]]:
    """The zone's hourly signal over ``[start, end)`` (no end: the hour ``start`` falls in),
    every hour that has one, gaps left out: the marginal rate where it has at least as many of
    these hours as the location-based factors, else those (the best window's rule, for a
    period instead of a run of hours from now)."""
    first = _hour_of(start)
    last = first + timedelta(hours=1) if end is None else end
    rows = _hourly_rows(organization, zone=zone, first=first, last=last)
    marginal, average = _by_hour(rows, basis="marginal"), _by_hour(rows, basis="location")
    basis, chosen = (
        ("marginal", marginal)
        if marginal and len(marginal) >= len(average)
        else ("location", average)
    )
    return basis, [
        Point(hour, calc.HOUR_S, chosen[hour].intensity_g_per_kwh) for hour in sorted(chosen)
    ]


def hourly_factors(
    organization: Organization, *, zone: str, start: datetime, end: datetime
) -> dict[str, list[CarbonIntensity]]:
    """The zone's hourly factors in ``[start, end)`` by basis (``location``, ``marginal``), in
    hour order, the organization's own before a shared one for the same hour; gaps left out
    (the carbon page draws them as they are)."""
    rows = _hourly_rows(organization, zone=zone, first=start, last=end)
    return {
        basis: [row for _, row in sorted(_by_hour(rows, basis=basis).items())]
        for basis in ("location", "marginal")
    }


def signal_zones(organization: Organization) -> list[str]:
    """The zones with hourly factors (either basis) the organization can see, in order."""
    return list(
        CarbonIntensity.objects.visible_to(organization)
        .filter(basis__in=["marginal", "location"], resolution=Resolution.HOUR)
        .order_by("zone")
        .values_list("zone", flat=True)
        .distinct()
    )
