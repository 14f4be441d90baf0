"""The pure arithmetic of targets: baselines, forecasts and status, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.policies import calc
from ecoreport.policies.calc import Status


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Period bounds, labels and their refusals are the shared calendar's: tests/core/test_periods.py.


@pytest.mark.parametrize(
    ("kind", "baseline", "target_start", "expected"),
    [
        ("quarter", "same_period_last_year", utc(2026, 10, 1), utc(2025, 10, 1)),
        ("quarter", "previous_period", utc(2026, 1, 1), utc(2025, 10, 1)),
        ("month", "previous_period", utc(2024, 3, 1), utc(2024, 2, 1)),
        ("month", "same_period_last_year", utc(2025, 2, 1), utc(2024, 2, 1)),
        ("year", "previous_period", utc(2026, 1, 1), utc(2025, 1, 1)),
        ("quarter", "2024-Q2", utc(2026, 10, 1), utc(2024, 4, 1)),
    ],
)
def test_baseline_start(kind, baseline, target_start, expected):
    assert calc.baseline_start(kind, baseline, target_start) == expected


DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("cumulative", "method", "to_date", "elapsed", "remaining", "trailing", "value", "rate"),
    [
        # 100 kWh in 10 of 30 days: 10 kWh/day, 300 kWh at the end.
        (True, "run_rate", 100.0, 10 * DAY, 20 * DAY, None, 300.0, 10.0),
        # 14 days trailing used 280 kWh: 20 kWh/day for the 20 days left, on top of the 100.
        (True, "trailing_14d", 100.0, 10 * DAY, 20 * DAY, 280.0, 500.0, 20.0),
        # The period has ended: the forecast is the figure itself.
        (True, "run_rate", 123.0, 30 * DAY, timedelta(0), None, 123.0, None),
        (True, "run_rate", None, 10 * DAY, 20 * DAY, None, None, None),
        (True, "trailing_14d", 100.0, 10 * DAY, 20 * DAY, None, None, None),
        (True, "run_rate", 0.0, timedelta(0), 30 * DAY, None, None, None),
        # Ratios stay where they are: the period's own value or the trailing one.
        (False, "run_rate", 62.5, 10 * DAY, 20 * DAY, 40.0, 62.5, None),
        (False, "trailing_14d", 62.5, 10 * DAY, 20 * DAY, 40.0, 40.0, None),
    ],
)
def test_forecast_arithmetic(
    cumulative, method, to_date, elapsed, remaining, trailing, value, rate
):
    result = calc.forecast(
        cumulative=cumulative,
        method=method,
        value_to_date=to_date,
        elapsed=elapsed,
        remaining=remaining,
        trailing_value=trailing,
    )
    assert result.value == (pytest.approx(value) if value is not None else None)
    assert result.rate_per_day == (pytest.approx(rate) if rate is not None else None)


def test_relative_threshold():
    assert calc.relative_threshold(baseline_value=1000.0, reduction_pct=20) == pytest.approx(800.0)


@pytest.mark.parametrize(
    ("comparator", "threshold", "value", "forecast", "cumulative", "ended", "status"),
    [
        ("at_most", 300.0, 100.0, 250.0, True, False, Status.ON_TRACK),
        ("at_most", 300.0, 100.0, 350.0, True, False, Status.AT_RISK),
        ("at_most", 300.0, 301.0, 900.0, True, False, Status.BREACHED),  # already crossed
        ("at_most", 300.0, 299.0, 299.0, True, True, Status.ON_TRACK),
        ("at_most", 300.0, 301.0, 301.0, True, True, Status.BREACHED),  # ended on wrong side
        ("at_most", 300.0, 300.0, 300.0, True, True, Status.ON_TRACK),  # the threshold is allowed
        ("at_least", 100.0, 10.0, 90.0, True, False, Status.AT_RISK),
        ("at_least", 100.0, 10.0, 120.0, True, False, Status.ON_TRACK),
        ("at_least", 100.0, 90.0, 90.0, True, True, Status.BREACHED),
        # An average below its floor mid-period can still recover: at risk, not breached.
        ("at_least", 60.0, 55.0, 55.0, False, False, Status.AT_RISK),
        ("at_least", 60.0, 65.0, 55.0, False, False, Status.AT_RISK),  # trailing is worse
        ("at_least", 60.0, 65.0, 70.0, False, False, Status.ON_TRACK),
        ("at_least", 60.0, 55.0, 55.0, False, True, Status.BREACHED),
        ("at_most", 20.0, 25.0, 25.0, False, False, Status.AT_RISK),
        ("at_most", 300.0, None, None, True, False, Status.NO_DATA),
        ("at_most", None, 100.0, 200.0, True, False, Status.NO_DATA),  # no baseline, no threshold
        ("at_most", 300.0, 100.0, None, True, False, Status.ON_TRACK),  # no forecast yet
    ],
)
def test_status(comparator, threshold, value, forecast, cumulative, ended, status):
    assert (
        calc.status_of(
            comparator=comparator,
            threshold=threshold,
            value=value,
            forecast_value=forecast,
            cumulative=cumulative,
            period_ended=ended,
        )
        == status
    )


@pytest.mark.parametrize(
    ("metric", "threshold", "ok"),
    [
        ("avg_gpu_util_pct", 60.0, True),
        ("avg_gpu_util_pct", 100.0, True),
        ("avg_gpu_util_pct", 120.0, False),
        ("idle_energy_share_pct", -1.0, False),
        ("energy_kwh", -5.0, False),
        ("energy_kwh", 1e9, True),
        ("co2e_kg", 0.0, True),
        ("avg_intensity_g_per_kwh", 250.0, True),
        ("avg_intensity_g_per_kwh", 250000.0, False),
        ("energy_per_gpu_hour_wh", 450.0, True),
        ("energy_per_gpu_hour_wh", float("nan"), False),
    ],
)
def test_threshold_kinds(metric, threshold, ok):
    assert (calc.threshold_problem(metric, threshold) is None) is ok


def test_normalized_totals_are_ratios():
    assert calc.metric_is_cumulative("energy_kwh")
    assert not calc.metric_is_cumulative("energy_kwh", normalized=True)
    assert not calc.metric_is_cumulative("avg_gpu_util_pct")
