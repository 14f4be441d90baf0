"""Pure arithmetic for targets: periods, baselines, forecasts and status. No database, no clock:
every function takes the moment it reasons about, so tests pin time by passing it.

Periods are UTC calendar periods, half-open ``[start, end)``; their arithmetic is the shared
calendar's (``ecoreport.core.periods``), a target naming a kind and storing the period's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ecoreport.core.periods import PERIOD_KINDS, add_months

# Re-exported: the policies code reads them as ``calc.period_start`` and so on.
from ecoreport.core.periods import parse_period_label as parse_period_label
from ecoreport.core.periods import period_label as period_label
from ecoreport.core.periods import period_shift as period_shift
from ecoreport.core.periods import period_start as period_start

PERIODS = PERIOD_KINDS
TRAILING_WINDOW = timedelta(days=14)


class Status:
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    NO_DATA = "no_data"
    ALL = (ON_TRACK, AT_RISK, BREACHED, NO_DATA)


@dataclass(frozen=True)
class MetricSpec:
    label: str  # what people read; the key is for URLs, the API and files
    unit: str
    # Cumulative metrics add up over the period (energy, emissions) and are forecast by
    # extrapolating to the period's end; ratios (averages, shares, intensities) are forecast as
    # their current or trailing value.
    cumulative: bool
    # Inclusive bounds a threshold must lie in; None = unbounded.
    minimum: float = 0.0
    maximum: float | None = None


METRICS: dict[str, MetricSpec] = {
    "energy_kwh": MetricSpec("IT energy", "kWh", cumulative=True),
    "facility_energy_kwh": MetricSpec("Facility energy", "kWh", cumulative=True),
    "co2e_kg": MetricSpec("Emissions, location-based", "kg CO2e", cumulative=True),
    "co2e_market_kg": MetricSpec("Emissions, market-based", "kg CO2e", cumulative=True),
    "avg_gpu_util_pct": MetricSpec("GPU utilization", "%", cumulative=False, maximum=100.0),
    "idle_energy_share_pct": MetricSpec("Idle energy share", "%", cumulative=False, maximum=100.0),
    # The dirtiest grids are near 1,200 g/kWh; 5,000 leaves room without admitting typos in kg.
    "avg_intensity_g_per_kwh": MetricSpec(
        "Carbon intensity", "g CO2e/kWh", cumulative=False, maximum=5000.0
    ),
    # No GPU draws more than a few kW: a larger figure is a unit mistake (kWh for Wh).
    "energy_per_gpu_hour_wh": MetricSpec(
        "Energy per GPU-hour", "Wh/GPU-h", cumulative=False, maximum=10000.0
    ),
}

# What people read for the stored values (the API, CSV and URLs keep the values).
COMPARATOR_LABELS = {"at_most": "at most", "at_least": "at least"}
STATUS_LABELS = {
    "on_track": "on track",
    "at_risk": "at risk",
    "breached": "breached",
    "no_data": "no data",
    "": "not evaluated",
}
PERIOD_LABELS = {"month": "monthly", "quarter": "quarterly", "year": "yearly"}
BASELINE_LABELS = {
    "previous_period": "the previous period",
    "same_period_last_year": "the same period last year",
}


def metric_label(metric: str) -> str:
    spec = METRICS.get(metric)
    return spec.label if spec else metric


def metric_is_cumulative(metric: str, *, normalized: bool = False) -> bool:
    """Per-GPU-hour normalization turns a total into a ratio."""
    return METRICS[metric].cumulative and not normalized


def threshold_problem(metric: str, threshold: float) -> str | None:
    """Why ``threshold`` cannot be a threshold of ``metric``, or None."""
    spec = METRICS[metric]
    if threshold != threshold or threshold in (float("inf"), float("-inf")):
        return "must be a finite number"
    if threshold < spec.minimum:
        return (
            f"{spec.label} is never negative; use a threshold of at least"
            f" {spec.minimum:g} {spec.unit}"
        )
    if spec.maximum is not None and threshold > spec.maximum:
        return f"{spec.label} is at most {spec.maximum:g} {spec.unit}; got {threshold:g}"
    return None


# --- Baselines ------------------------------------------------------------------------------


BASELINE_RELATIVE = ("previous_period", "same_period_last_year")


def baseline_start(kind: str, baseline: str, target_start: datetime) -> datetime:
    """Start of the baseline period for the target period starting at ``target_start``."""
    if baseline == "previous_period":
        return period_shift(kind, target_start, -1)
    if baseline == "same_period_last_year":
        return add_months(target_start, -12)
    return parse_period_label(kind, baseline)


# --- Forecast and status --------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    value: float | None
    # Cumulative metrics only: the rate extrapolated over the rest of the period.
    rate_per_day: float | None = None


def forecast(
    *,
    cumulative: bool,
    method: str,
    value_to_date: float | None,
    elapsed: timedelta,
    remaining: timedelta,
    trailing_value: float | None,
    trailing_window: timedelta = TRAILING_WINDOW,
) -> Forecast:
    """The metric's expected value at the end of the period.

    Cumulative: value so far + rate x time remaining, where the rate is the period's own run rate
    (value so far / time elapsed) or the trailing window's (its total / its length). A ratio is
    expected to stay where it is: its value so far (run rate) or its trailing-window value.
    """
    if method not in ("run_rate", "trailing_14d"):
        raise ValueError(f"unknown forecast method {method!r}")
    if not cumulative:
        return Forecast(value_to_date if method == "run_rate" else trailing_value)
    if value_to_date is None:
        return Forecast(None)
    if remaining <= timedelta(0):
        return Forecast(value_to_date, None)
    if method == "run_rate":
        if elapsed <= timedelta(0):
            return Forecast(None)
        rate_per_s = value_to_date / elapsed.total_seconds()
    else:
        if trailing_value is None:
            return Forecast(None)
        rate_per_s = trailing_value / trailing_window.total_seconds()
    return Forecast(value_to_date + rate_per_s * remaining.total_seconds(), rate_per_s * 86400.0)


def relative_threshold(*, baseline_value: float, reduction_pct: float) -> float:
    return baseline_value * (1.0 - reduction_pct / 100.0)


def _wrong_side(comparator: str, value: float, threshold: float) -> bool:
    if comparator == "at_most":
        return value > threshold
    if comparator == "at_least":
        return value < threshold
    raise ValueError(f"unknown comparator {comparator!r}")


def status_of(
    *,
    comparator: str,
    threshold: float | None,
    value: float | None,
    forecast_value: float | None,
    cumulative: bool,
    period_ended: bool,
) -> str:
    """on_track, at_risk, breached or no_data.

    breached: the period ended on the wrong side, or a cumulative figure has already passed an
    "at most" threshold (it can only grow). A ratio on the wrong side mid-period is at_risk, not
    breached: an average can still recover before the period ends.
    at_risk: the forecast (or, for a ratio, the value so far) is on the wrong side.
    """
    if value is None or threshold is None:
        return Status.NO_DATA
    if period_ended:
        return Status.BREACHED if _wrong_side(comparator, value, threshold) else Status.ON_TRACK
    if cumulative and comparator == "at_most" and value > threshold:
        return Status.BREACHED
    if not cumulative and _wrong_side(comparator, value, threshold):
        return Status.AT_RISK
    if forecast_value is not None and _wrong_side(comparator, forecast_value, threshold):
        return Status.AT_RISK
    return Status.ON_TRACK
