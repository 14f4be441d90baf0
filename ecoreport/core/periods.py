"""Calendar periods, the one place for period math: a month, a quarter or a year in UTC as a
half-open ``[start, end)`` window, its label (``2026-07``, ``2026-Q3``, ``2026``), its neighbours,
and the hour an instant falls in.

Reports parse any of the three labels; targets name one kind and store its start; the
dashboards' picker ("this month", "last quarter") and the rollups' hours build on the same
arithmetic. Pure functions: no database, no clock; "now" is always passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ecoreport.core.errors import DomainError

PERIOD_KINDS = ("month", "quarter", "year")
_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_PER_YEAR = {"month": 12, "quarter": 4, "year": 1}
# One pattern per kind; group 1 is the year, group 2 the month or quarter. They are disjoint,
# so a label of unknown kind matches at most one.
_LABELS = {
    "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
    "month": re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$"),
    "year": re.compile(r"^(\d{4})$"),
}
_EXAMPLES = {"month": "2026-03", "quarter": "2026-Q1", "year": "2026"}
# Reports name years 2000-2999; a target's label may name any year from 1970 (nothing was
# measured before, and older baselines are typos).
REPORT_YEARS = (2000, 2999)
EARLIEST_LABEL_YEAR = 1970


class PeriodError(DomainError):
    """A period a person asked for that cannot be one; the message says why and what to write.

    A ValueError (through DomainError), so callers that catch ValueError (serializers) keep
    working; the API answers it as ``invalid_period`` on the ``period`` input."""

    code = "invalid_period"
    field = "period"


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` moved by whole calendar months (day and time kept: pass a period start)."""
    index = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def hour_floor(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in: the key of every hourly rollup and factor."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class CalendarPeriod:
    kind: str  # month | quarter | year
    year: int
    index: int  # month 1-12, quarter 1-4, or 1 for a year

    @classmethod
    def containing(cls, kind: str, moment: datetime) -> CalendarPeriod:
        """The ``kind`` period ``moment`` falls in (``moment`` converted to UTC first)."""
        if moment.tzinfo is None:
            raise ValueError("naive datetime; periods are UTC")
        if kind not in _MONTHS:
            raise ValueError(f"unknown period {kind!r}")
        moment = moment.astimezone(UTC)
        index = {"month": moment.month, "quarter": (moment.month - 1) // 3 + 1, "year": 1}[kind]
        return cls(kind, moment.year, index)

    @property
    def months(self) -> int:
        return _MONTHS[self.kind]

    @property
    def first_month(self) -> int:
        return {"quarter": (self.index - 1) * 3 + 1, "month": self.index, "year": 1}[self.kind]

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.first_month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return add_months(self.start, self.months)

    @property
    def label(self) -> str:
        if self.kind == "quarter":
            return f"{self.year:04d}-Q{self.index}"
        if self.kind == "month":
            return f"{self.year:04d}-{self.index:02d}"
        return f"{self.year:04d}"

    @property
    def hours(self) -> int:
        return int((self.end - self.start).total_seconds() // 3600)

    def shifted(self, steps: int) -> CalendarPeriod:
        """The period ``steps`` periods of the same kind later (negative: earlier)."""
        per_year = _PER_YEAR[self.kind]
        index = self.year * per_year + self.index - 1 + steps
        return CalendarPeriod(self.kind, index // per_year, index % per_year + 1)

    @property
    def previous(self) -> CalendarPeriod:
        return self.shifted(-1)

    @property
    def year_before(self) -> CalendarPeriod:
        return CalendarPeriod(self.kind, self.year - 1, self.index)

    def __str__(self) -> str:
        return self.label


def _match(kind: str, value: str) -> CalendarPeriod | None:
    match = _LABELS[kind].match(value)
    if not match:
        return None
    return CalendarPeriod(kind, int(match[1]), int(match[2]) if kind != "year" else 1)


# --- Reports: a label of any kind ---------------------------------------------------------


def parse_period(text: str) -> CalendarPeriod:
    """``2026-Q3`` | ``2026-07`` | ``2026``; anything else is a PeriodError a person can act on."""
    value = (text or "").strip().upper()
    for kind in _LABELS:
        if (period := _match(kind, value)) is not None:
            break
    else:
        raise PeriodError(
            f"{text!r} is not a period; use a quarter (2026-Q3), a month (2026-07) or a year (2026)."
        )
    low, high = REPORT_YEARS
    if not low <= period.year <= high:
        raise PeriodError(f"{text!r} is out of range; years {low}-{high} only.")
    return period


def parse_complete_period(text: str, *, now: datetime) -> CalendarPeriod:
    """A period that has ended: a report of a period still running would be issued incomplete."""
    period = parse_period(text)
    if period.start > now:
        raise PeriodError(f"{period.label} is in the future.")
    if period.end > now:
        raise PeriodError(
            f"{period.label} has not ended yet; it can be reported from {period.end:%Y-%m-%d}."
        )
    return period


def quarter_of(moment: datetime) -> CalendarPeriod:
    return CalendarPeriod.containing("quarter", moment)


def last_complete_quarter(now: datetime) -> CalendarPeriod:
    return quarter_of(now).previous


# --- Targets: a kind, and periods named by their start ----------------------------------------


def period_start(kind: str, moment: datetime) -> datetime:
    """Start of the ``kind`` period containing ``moment`` (converted to UTC)."""
    return CalendarPeriod.containing(kind, moment).start


def period_shift(kind: str, start: datetime, n: int) -> datetime:
    """Start of the period ``n`` periods after (negative: before) the one starting at ``start``."""
    return add_months(start, _MONTHS[kind] * n)


def period_bounds(kind: str, moment: datetime) -> tuple[datetime, datetime]:
    start = period_start(kind, moment)
    return start, period_shift(kind, start, 1)


def period_label(kind: str, start: datetime) -> str:
    return CalendarPeriod.containing(kind, start).label


def parse_period_label(kind: str, label: str) -> datetime:
    """Start of the period a label names: ``2026-03`` (month), ``2026-Q1`` (quarter), ``2026``."""
    period = _match(kind, label.strip().upper())
    if period is None or period.year < EARLIEST_LABEL_YEAR:
        raise PeriodError(f"'{label}' is not a {kind}; write it like {_EXAMPLES[kind]}")
    return period.start
