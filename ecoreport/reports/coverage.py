"""How much of a period was measured, and whether two periods can be compared.

A quarter whose data start in its last week sums to a fraction of a full quarter, so "+1,506 %
vs 2026-Q2" says more about the missing weeks than about the work. Every comparison in a report
therefore states the coverage of both periods and is marked *not comparable* when either falls
below ``REPORT_COMPARISON_MIN_COVERAGE_PCT`` (default 90 %).

Coverage is the organization's fleet (as in the data quality section: teams share GPUs), two
figures per period:

* hours with data: hours in which any GPU of the organization reported, over hours in the period;
* GPUs reporting: GPUs with data in the period, over GPUs known then (registered before the
  period ended, or measured in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Q

from ecoreport.accounting.models import HourlyUsage
from ecoreport.core.periods import CalendarPeriod
from ecoreport.fleet.models import Gpu
from ecoreport.organizations.models import Organization


@dataclass(frozen=True)
class Coverage:
    period: str
    hours_in_period: int
    hours_with_data: int
    gpus_known: int
    gpus_reporting: int

    @property
    def hours_pct(self) -> float:
        return self.hours_with_data / self.hours_in_period * 100.0 if self.hours_in_period else 0.0

    @property
    def gpus_pct(self) -> float:
        return self.gpus_reporting / self.gpus_known * 100.0 if self.gpus_known else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "hours_in_period": self.hours_in_period,
            "hours_with_data": self.hours_with_data,
            "hours_with_data_pct": self.hours_pct,
            "gpus_known": self.gpus_known,
            "gpus_reporting": self.gpus_reporting,
            "gpus_reporting_pct": self.gpus_pct,
        }


def period_coverage(organization: Organization, period: CalendarPeriod) -> Coverage:
    """One scan of the period's rollup rows (distinct hours and GPUs together), and a count of
    the GPUs known then. The report's own period takes these figures from its data quality
    section instead (same definitions), so this runs for the compared periods only."""
    window = HourlyUsage.objects.for_org(organization).filter(
        hour__gte=period.start, hour__lt=period.end
    )
    found = window.aggregate(
        hours=Count("hour", distinct=True), gpus=Count("gpu_id", distinct=True)
    )
    known = (
        Gpu.objects.for_org(organization)
        .filter(Q(created_at__lt=period.end) | Q(pk__in=window.values("gpu_id")))
        .count()
    )
    return Coverage(period.label, period.hours, found["hours"] or 0, known, found["gpus"] or 0)


def from_data_quality(period: CalendarPeriod, dq: dict[str, Any]) -> Coverage:
    return Coverage(
        period.label,
        dq["hours_in_period"],
        dq["hours_with_data"],
        dq["gpus_known"],
        dq["gpus_reporting"],
    )


def min_coverage_pct() -> float:
    return float(settings.REPORT_COMPARISON_MIN_COVERAGE_PCT)


def comparison(now: Coverage, before: Coverage, *, min_pct: float) -> dict[str, Any]:
    """Whether ``now`` can be compared with ``before``, and a sentence that says why not.
    Both periods must reach ``min_pct`` in hours with data and in GPUs reporting."""
    short = [
        f"{c.period} had data in {c.hours_pct:.1f}% of hours and from {c.gpus_pct:.1f}% of "
        f"the GPUs known then"
        if c.hours_with_data
        else f"{c.period} has no data"
        for c in (now, before)
        if c.hours_pct < min_pct or c.gpus_pct < min_pct
    ]
    return {
        "period": before.period,
        "comparable": not short,
        "reason": "; ".join(short) + f" (below {min_pct:g}%)" if short else "",
    }


def comparisons(
    organization: Organization, period: CalendarPeriod, data_quality: dict[str, Any]
) -> dict[str, Any]:
    """Coverage of this period (from its data quality figures) and of the two it is compared
    with, and whether each comparison holds (see the module's docstring)."""
    min_pct = min_coverage_pct()
    now = from_data_quality(period, data_quality)
    before = period_coverage(organization, period.previous)
    year = period_coverage(organization, period.year_before)
    return {
        "min_coverage_pct": min_pct,
        "coverage": [
            {"role": "this period", **now.as_dict()},
            {"role": "previous period", **before.as_dict()},
            {"role": "same period a year before", **year.as_dict()},
        ],
        "previous": comparison(now, before, min_pct=min_pct),
        "year_before": comparison(now, year, min_pct=min_pct),
    }
