"""Savings arithmetic: pure functions over plain numbers, no database and no clock.

Every lever yields an ``Amount`` saved: IT energy (what the GPUs would not draw), facility energy
(IT x PUE), location- and market-based CO2e and cost. The emission arithmetic is the carbon
app's (``facility_energy_j``, ``co2e_g``); nothing here resolves a factor.

Units are in the names: joules and grams inside, kWh and kg only when shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ecoreport.carbon.emissions import G_PER_KG, J_PER_KWH, co2e_g, facility_energy_j


@dataclass(frozen=True)
class Amount:
    energy_j: float = 0.0
    facility_energy_j: float = 0.0
    co2e_g: float = 0.0
    co2e_market_g: float = 0.0
    cost: float = 0.0

    def scaled(self, fraction: float) -> Amount:
        return Amount(
            self.energy_j * fraction,
            self.facility_energy_j * fraction,
            self.co2e_g * fraction,
            self.co2e_market_g * fraction,
            self.cost * fraction,
        )

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.energy_j + other.energy_j,
            self.facility_energy_j + other.facility_energy_j,
            self.co2e_g + other.co2e_g,
            self.co2e_market_g + other.co2e_market_g,
            self.cost + other.cost,
        )

    def __sub__(self, other: Amount) -> Amount:
        return self + other.scaled(-1.0)

    def shown(self) -> dict[str, float]:
        """The figures an answer carries: kWh, kg and money."""
        # "+ 0.0" turns the -0.0 of a saving that cancels out (x - x) into 0.0.
        return {
            "energy_kwh": self.energy_j / J_PER_KWH + 0.0,
            "facility_energy_kwh": self.facility_energy_j / J_PER_KWH + 0.0,
            "co2e_kg": self.co2e_g / G_PER_KG + 0.0,
            "co2e_market_kg": self.co2e_market_g / G_PER_KG + 0.0,
            "cost": self.cost + 0.0,
        }


def total(amounts: Iterable[Amount]) -> Amount:
    out = Amount()
    for amount in amounts:
        out = out + amount
    return out


def footprint(
    *,
    energy_j: float,
    pue: float,
    intensity_g_per_kwh: float,
    market_intensity_g_per_kwh: float,
    price_per_kwh: float,
) -> Amount:
    """IT energy at one site and hour: what it costs and emits there (facility = IT x PUE)."""
    facility_j = facility_energy_j(it_energy_j=energy_j, pue=pue)
    return Amount(
        energy_j=energy_j,
        facility_energy_j=facility_j,
        co2e_g=co2e_g(energy_j=facility_j, intensity_g_per_kwh=intensity_g_per_kwh),
        co2e_market_g=co2e_g(energy_j=facility_j, intensity_g_per_kwh=market_intensity_g_per_kwh),
        cost=facility_j / J_PER_KWH * price_per_kwh,
    )


def pct(value: float) -> float:
    return value / 100.0


# --- what-if levers -------------------------------------------------------------------------


def fraction_saved(
    *, reduction_pct: float, applicable_pct: float = 100.0, already_pct: float = 0.0
) -> float:
    """Share of the energy a what-if lever saves: the reduction, applied to the part of the work
    it applies to and that does not already use it.

    saving = E x applicable x (1 - already) x reduction
    """
    return pct(applicable_pct) * (1.0 - pct(already_pct)) * pct(reduction_pct)


# --- carbon-aware timing --------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One hour of one site: the scope's IT energy in it and the factors that apply to it."""

    hour: datetime
    energy_j: float
    pue: float
    intensity_g_per_kwh: float
    market_intensity_g_per_kwh: float
    price_per_kwh: float = 0.0
    # What ranks the hour for a timing decision: the zone's marginal rate where it has one
    # (None: the location-based intensity). It never enters the footprint.
    signal_g_per_kwh: float | None = None

    @property
    def signal(self) -> float:
        return self.intensity_g_per_kwh if self.signal_g_per_kwh is None else self.signal_g_per_kwh

    def footprint(self, energy_j: float) -> Amount:
        return footprint(
            energy_j=energy_j,
            pue=self.pue,
            intensity_g_per_kwh=self.intensity_g_per_kwh,
            market_intensity_g_per_kwh=self.market_intensity_g_per_kwh,
            price_per_kwh=self.price_per_kwh,
        )


@dataclass
class Shift:
    baseline: Amount = field(default_factory=Amount)  # the flexible work where it ran
    shifted: Amount = field(default_factory=Amount)  # the same work in the chosen hours
    placements: list[tuple[datetime, float]] = field(default_factory=list)  # (hour, energy_j)

    @property
    def saving(self) -> Amount:
        return self.baseline - self.shifted


def shift_block(slots: Sequence[Slot], *, flexible_pct: float) -> Shift:
    """Move the flexible share of a block's work to its lowest-intensity hours.

    The block's busiest hour is taken as the site's capacity for this scope: an hour can take
    flexible work up to ``peak - its own inflexible work``, so the shifted plan never runs more
    at once than the scope already did. Hours are filled cheapest first (the timing signal:
    marginal rate where given, else location-based intensity; then location-based, then
    market-based, then the earlier hour). Work stays at its site; IT energy does not change,
    emissions do.
    """
    share = pct(flexible_pct)
    out = Shift()
    if not slots or share <= 0.0:
        return out
    peak_j = max(s.energy_j for s in slots)
    remaining_j = 0.0
    for slot in slots:
        flexible_j = slot.energy_j * share
        remaining_j += flexible_j
        out.baseline = out.baseline + slot.footprint(flexible_j)
    order = sorted(
        slots,
        key=lambda s: (s.signal, s.intensity_g_per_kwh, s.market_intensity_g_per_kwh, s.hour),
    )
    for slot in order:
        if remaining_j <= 0.0:
            break
        room_j = peak_j - slot.energy_j * (1.0 - share)
        placed_j = min(remaining_j, room_j)
        if placed_j <= 0.0:
            continue
        out.placements.append((slot.hour, placed_j))
        out.shifted = out.shifted + slot.footprint(placed_j)
        remaining_j -= placed_j
    out.placements.sort()
    return out


# --- best time to run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start_index: int
    avg_intensity_g_per_kwh: float


HOUR_S = 3600


def window_averages(
    intensities: Sequence[float],
    *,
    window_s: int,
    start_s: int = 0,
    end_s: int | None = None,
) -> list[float]:
    """The time-weighted mean of every window of ``window_s`` seconds over consecutive hourly
    intensities (hour ``i`` covers seconds ``[3600 i, 3600 (i + 1))``), the first window
    starting at ``start_s``, each next one an hour later, none ending after ``end_s`` (default:
    the end of the data).

    A window that starts or ends inside an hour takes that hour's intensity for the part it
    covers (the Carbon Aware SDK's rolling average does the same for its data points). Each
    window is summed afresh: a running sum would drift by float error and make equal windows
    unequal.
    """
    if window_s < 1:
        raise ValueError("window_s must be at least 1")
    covered_s = HOUR_S * len(intensities)
    last_s = covered_s if end_s is None else min(end_s, covered_s)
    out: list[float] = []
    begin = max(start_s, 0)
    while begin + window_s <= last_s:
        stop = begin + window_s
        weighted = 0.0
        moment = begin
        while moment < stop:
            hour = moment // HOUR_S
            until = min((hour + 1) * HOUR_S, stop)
            weighted += intensities[hour] * (until - moment)
            moment = until
        out.append(weighted / window_s)
        begin += HOUR_S
    return out


def lowest(averages: Sequence[float]) -> list[int]:
    """The indices of the lowest of ``averages``, in order; equal within float error (1e-9)
    counts as equal, so the same intensity computed two ways is one optimum, not two."""
    if not averages:
        return []
    least = min(averages)
    return [i for i, value in enumerate(averages) if value <= least + 1e-9]


def best_window(intensities: Sequence[float], *, duration_h: int) -> tuple[Window, Window]:
    """(best, now) over consecutive hourly intensities, index 0 being the current hour.

    Every start from 0 to len - duration is a candidate; the lowest average wins, the earliest
    among equals (no reason to wait for the same intensity).
    """
    if duration_h < 1:
        raise ValueError("duration_h must be at least 1")
    if len(intensities) < duration_h:
        raise ValueError("fewer hours than the duration")
    averages = window_averages(intensities, window_s=duration_h * HOUR_S)
    best = lowest(averages)[0]
    return Window(best, averages[best]), Window(0, averages[0])
