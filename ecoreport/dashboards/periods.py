"""The period picker: turns ``?period=…`` into a [start, end) window and the window before it.
Pure functions with an injected "now"; tested on their own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from ecoreport.core.errors import DomainError

PRESETS = {
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "month": "This month",
    "last-month": "Last month",
    "quarter": "This quarter",
    "last-quarter": "Last quarter",
    "custom": "Custom",
}
DEFAULT = "30d"
# How charts bucket the period: "auto" picks by its length (see Period.granularity).
GROUPINGS = {"auto": "Automatic", "hour": "By hour", "day": "By day", "month": "By month"}
MAX_HOURLY_DAYS = 31
MAX_DAYS = 800
# Nothing was measured before 1970; the bounds also keep "the period before" and "+1 day" far
# from the limits of ``date`` (0001-01-01 minus a day is an OverflowError, a 500).
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(2199, 12, 31)


class PeriodError(DomainError):
    code = "invalid_period"
    field = "period"


@dataclass(frozen=True)
class Period:
    key: str
    start: datetime
    end: datetime
    group: str = "auto"

    @property
    def label(self) -> str:
        if self.key != "custom":
            return PRESETS[self.key]
        return f"{self.start:%Y-%m-%d} to {(self.end - timedelta(seconds=1)):%Y-%m-%d}"

    @property
    def last_day(self) -> date:
        """The last day the window touches, as the picker's inclusive "to" date shows it."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def previous(self) -> Period:
        """The window of the same length just before (the same length in months for calendar
        presets, so "this quarter" compares with the whole previous quarter)."""
        if self.key in ("month", "last-month"):
            start = _add_months(self.start, -1)
            return Period("custom", start, self.start)
        if self.key in ("quarter", "last-quarter"):
            return Period("custom", _add_months(self.start, -3), self.start)
        return Period("custom", self.start - (self.end - self.start), self.start)

    @property
    def granularity(self) -> str:
        if self.group != "auto":
            return self.group
        days = (self.end - self.start).days
        if days <= 3:
            return "hour"
        if days <= 120:
            return "day"
        return "month"


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=1)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def quarter_start(moment: datetime) -> datetime:
    return moment.replace(
        month=(moment.month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0, microsecond=0
    )


def parse_period(params: dict[str, str], *, now: datetime) -> Period:
    """The window from ``period`` (and ``start``/``end`` for a custom one), bucketed as
    ``group`` asks (automatic by default)."""
    period = _window(params, now=now)
    group = params.get("group") or "auto"
    if group not in GROUPINGS:
        raise PeriodError(f"Unknown grouping {group!r}; choose one of {', '.join(GROUPINGS)}.")
    if group == "hour" and (period.end - period.start).days > MAX_HOURLY_DAYS:
        raise PeriodError(
            f"Grouping by hour is for periods of up to {MAX_HOURLY_DAYS} days; "
            "choose a shorter period or group by day."
        )
    return replace(period, group=group)


def _window(params: dict[str, str], *, now: datetime) -> Period:
    key = params.get("period") or DEFAULT
    if key not in PRESETS:
        raise PeriodError(f"Unknown period {key!r}; choose one of {', '.join(PRESETS)}.")
    now = now.astimezone(UTC)
    # Presets end at the next whole hour so the current, partly measured hour is included.
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if key in ("7d", "30d", "90d"):
        return Period(key, end - timedelta(days=int(key[:-1])), end)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if key == "month":
        return Period(key, month_start, end)
    if key == "last-month":
        return Period(key, _add_months(month_start, -1), month_start)
    if key == "quarter":
        return Period(key, quarter_start(now), end)
    if key == "last-quarter":
        q = quarter_start(now)
        return Period(key, _add_months(q, -3), q)
    try:
        first = date.fromisoformat(params.get("start", ""))
        last = date.fromisoformat(params.get("end", ""))
    except ValueError:
        raise PeriodError("A custom period needs start and end dates as YYYY-MM-DD.") from None
    if not (EARLIEST_DAY <= first <= LATEST_DAY and EARLIEST_DAY <= last <= LATEST_DAY):
        raise PeriodError(
            f"Dates must lie between {EARLIEST_DAY.isoformat()} and {LATEST_DAY.isoformat()}."
        )
    if last < first:
        raise PeriodError("The end date is before the start date.")
    if (last - first).days > MAX_DAYS:
        raise PeriodError(f"A custom period can span at most {MAX_DAYS} days.")
    # Both dates are inclusive for people; the window is [first 00:00, last+1 00:00).
    return Period(key, _day_start(first), _day_start(last + timedelta(days=1)))
