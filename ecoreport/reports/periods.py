"""Report periods: ``2026-Q3``, ``2026-07`` or ``2026`` as a [start, end) window in UTC, with
the period before it and the same period a year earlier. Pure functions; "now" is injected."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ecoreport.core.errors import DomainError

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YEAR = re.compile(r"^(\d{4})$")


class PeriodError(DomainError):
    code = "invalid_period"
    field = "period"


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


@dataclass(frozen=True)
class ReportPeriod:
    kind: str  # quarter | month | year
    year: int
    index: int  # quarter 1-4, month 1-12, or 1 for a year

    @property
    def months(self) -> int:
        return {"quarter": 3, "month": 1, "year": 12}[self.kind]

    @property
    def first_month(self) -> int:
        return {"quarter": (self.index - 1) * 3 + 1, "month": self.index, "year": 1}[self.kind]

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.first_month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        year, month = _add_months(self.year, self.first_month, self.months)
        return datetime(year, month, 1, tzinfo=UTC)

    @property
    def label(self) -> str:
        if self.kind == "quarter":
            return f"{self.year}-Q{self.index}"
        if self.kind == "month":
            return f"{self.year}-{self.index:02d}"
        return f"{self.year}"

    @property
    def hours(self) -> int:
        return int((self.end - self.start).total_seconds() // 3600)

    def shifted(self, steps: int) -> ReportPeriod:
        """The period ``steps`` periods of the same kind later (negative: earlier)."""
        per_year = {"quarter": 4, "month": 12, "year": 1}[self.kind]
        index = self.year * per_year + self.index - 1 + steps
        return ReportPeriod(self.kind, index // per_year, index % per_year + 1)

    @property
    def previous(self) -> ReportPeriod:
        return self.shifted(-1)

    @property
    def year_before(self) -> ReportPeriod:
        return ReportPeriod(self.kind, self.year - 1, self.index)

    def __str__(self) -> str:
        return self.label


def parse_period(text: str) -> ReportPeriod:
    """``2026-Q3`` | ``2026-07`` | ``2026``; anything else is a PeriodError a person can act on."""
    value = (text or "").strip().upper()
    if m := _QUARTER.match(value):
        period = ReportPeriod("quarter", int(m[1]), int(m[2]))
    elif m := _MONTH.match(value):
        period = ReportPeriod("month", int(m[1]), int(m[2]))
    elif m := _YEAR.match(value):
        period = ReportPeriod("year", int(m[1]), 1)
    else:
        raise PeriodError(
            f"{text!r} is not a period; use a quarter (2026-Q3), a month (2026-07) or a year (2026)."
        )
    if not 2000 <= period.year <= 2999:
        raise PeriodError(f"{text!r} is out of range; years 2000-2999 only.")
    return period


def parse_complete_period(text: str, *, now: datetime) -> ReportPeriod:
    """A period that has ended: a report of a period still running would be issued incomplete."""
    period = parse_period(text)
    if period.start > now:
        raise PeriodError(f"{period.label} is in the future.")
    if period.end > now:
        raise PeriodError(
            f"{period.label} has not ended yet; it can be reported from {period.end:%Y-%m-%d}."
        )
    return period


def quarter_of(moment: datetime) -> ReportPeriod:
    moment = moment.astimezone(UTC)
    return ReportPeriod("quarter", moment.year, (moment.month - 1) // 3 + 1)


def last_complete_quarter(now: datetime) -> ReportPeriod:
    return quarter_of(now).previous
