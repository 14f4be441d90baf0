"""The numbers and status of a target over one period, as of a moment: reads the rollups and
writes nothing. The hourly evaluation records them (``services``); a report reads them for a
period it covers (``reports.targets``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecoreport.policies import calc
from ecoreport.policies.models import Target
from ecoreport.policies.selectors import metric_value, scope_first_hour, scope_metrics


def target_period_start(target: Target, now: datetime) -> datetime:
    if target.period_label:
        return calc.parse_period_label(target.period, target.period_label)
    return calc.period_start(target.period, now)


def evaluate_period(target: Target, *, start: datetime, now: datetime) -> dict[str, Any]:
    """The numbers and status of ``target`` over the period starting at ``start``, as of now."""
    end = calc.period_shift(target.period, start, 1)
    at = min(now, end)
    ended = now >= end
    cumulative = calc.metric_is_cumulative(target.metric, normalized=target.normalize_per_gpu_hour)
    notes = []

    to_date = scope_metrics(target, start=start, end=at)
    value, why = metric_value(target, to_date)
    if why:
        notes.append(why if now >= start else "the period has not started")

    trailing_value = None
    if target.forecast_method == Target.ForecastMethod.TRAILING_14D and not ended:
        trailing = scope_metrics(target, start=at - calc.TRAILING_WINDOW, end=at)
        trailing_value, _ = metric_value(target, trailing)
    result = calc.forecast(
        cumulative=cumulative,
        method=target.forecast_method,
        value_to_date=value,
        elapsed=at - start,
        remaining=end - at,
        trailing_value=trailing_value,
    )

    threshold = target.threshold
    baseline_value = None
    if target.reduction_pct is not None:
        b_start = calc.baseline_start(target.period, target.baseline, start)
        b_end = calc.period_shift(target.period, b_start, 1)
        baseline_value, why = metric_value(target, scope_metrics(target, start=b_start, end=b_end))
        if baseline_value is None:
            threshold = None
            notes.append(f"baseline {calc.period_label(target.period, b_start)}: {why}")
        else:
            threshold = calc.relative_threshold(
                baseline_value=baseline_value, reduction_pct=target.reduction_pct
            )

    status = calc.status_of(
        comparator=target.comparator,
        threshold=threshold,
        value=value,
        forecast_value=result.value,
        cumulative=cumulative,
        period_ended=ended,
    )
    return {
        "period_start": start,
        "period_end": end,
        "final": ended,
        "status": status,
        "value": value,
        "forecast_value": result.value,
        "forecast_rate_per_day": result.rate_per_day,
        "forecast_method": target.forecast_method,
        "trailing_value": trailing_value,
        "threshold_value": threshold,
        "baseline_value": baseline_value,
        "gpu_hours": (to_date or {}).get("gpu_hours") or 0.0,
        "note": "; ".join(notes)[:200],
    }


# The history shows at most this many ended periods before the current one: a year of months,
# three years of quarters. Each costs one or two aggregates over the rollups.
HISTORY_PERIODS = 12


def target_history(
    target: Target, *, now: datetime, max_periods: int | None = None
) -> dict[str, Any]:
    """The ended periods of a recurring target, each evaluated now from the rollups as the hourly
    evaluation would have at its end, from the first period with measured usage of the scope.

    ``first_usage_at`` is where that history starts (None: no usage yet); ``periods`` are
    ``evaluate_period`` results, oldest first. A target for one named period has no others.
    """
    first = scope_first_hour(target)
    if first is None or target.period_label:
        return {"first_usage_at": first, "periods": [], "truncated": False}
    kind = target.period
    max_periods = max_periods or HISTORY_PERIODS
    starts: list[datetime] = []
    start = calc.period_shift(kind, calc.period_start(kind, now), -1)
    while len(starts) < max_periods and calc.period_shift(kind, start, 1) > first:
        starts.append(start)
        start = calc.period_shift(kind, start, -1)
    # Older periods with usage that the cap left out.
    truncated = calc.period_shift(kind, start, 1) > first
    periods = [evaluate_period(target, start=s, now=now) for s in reversed(starts)]
    return {"first_usage_at": first, "periods": periods, "truncated": truncated}
