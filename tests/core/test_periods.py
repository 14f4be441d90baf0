"""Calendar periods (``ecoreport.core.periods``), one table per question: which labels name which
period, which are refused and why, where a moment's period starts and ends, a period's
neighbours, whether it has ended, and the hour an instant falls in. Pure, injected clock.

The reports parse a label of any kind (years 2000-2999); targets parse a label of one kind
(years from 1970) and name periods by their start. Both readings are checked on every label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ecoreport.core.periods import (
    CalendarPeriod,
    PeriodError,
    hour_floor,
    last_complete_quarter,
    parse_complete_period,
    parse_period,
    parse_period_label,
    period_bounds,
    period_label,
    period_shift,
    period_start,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (text, kind, label, start, end): the period a label names, read either way.
LABELS = [
    ("2026-Q3", "quarter", "2026-Q3", utc(2026, 7, 1), utc(2026, 10, 1)),
    ("2026-q4", "quarter", "2026-Q4", utc(2026, 10, 1), utc(2027, 1, 1)),
    ("2026-Q4", "quarter", "2026-Q4", utc(2026, 10, 1), utc(2027, 1, 1)),
    ("2026-q1", "quarter", "2026-Q1", utc(2026, 1, 1), utc(2026, 4, 1)),
    ("2026-07", "month", "2026-07", utc(2026, 7, 1), utc(2026, 8, 1)),
    ("2026-12", "month", "2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
    ("2026-03", "month", "2026-03", utc(2026, 3, 1), utc(2026, 4, 1)),
    (" 2025 ", "year", "2025", utc(2025, 1, 1), utc(2026, 1, 1)),
    ("2024", "year", "2024", utc(2024, 1, 1), utc(2025, 1, 1)),
]


@pytest.mark.parametrize(("text", "kind", "label", "start", "end"), LABELS)
def test_a_label_names_one_period(text, kind, label, start, end):
    period = parse_period(text)
    assert (period.kind, period.label, period.start, period.end) == (kind, label, start, end)
    assert str(period) == label
    # A target's reading: the start of the period of its kind, and the label back from it.
    assert parse_period_label(kind, text) == start
    assert period_label(kind, start) == label
    assert period_bounds(kind, start) == (start, end)


# (kind, text, message): kind None is a report's label of any kind, else a target's of one kind.
REFUSED = [
    (None, "", "is not a period"),
    (None, "2026-Q5", "is not a period"),
    (None, "2026-Q0", "is not a period"),
    (None, "2026-13", "is not a period"),
    (None, "2026-7", "is not a period"),
    (None, "26-Q1", "is not a period"),
    (None, "Q3-2026", "is not a period"),
    (None, "2026-W12", "is not a period"),
    (None, "1999", "out of range; years 2000-2999 only"),
    (None, "last quarter", "is not a period"),
    (None, "2026-07-01", "is not a period"),
    ("month", "2026-13", "is not a month; write it like 2026-03"),
    ("month", "2026-Q1", "is not a month; write it like 2026-03"),
    ("quarter", "2026-Q5", "is not a quarter; write it like 2026-Q1"),
    ("quarter", "2026", "is not a quarter; write it like 2026-Q1"),
    ("year", "26", "is not a year; write it like 2026"),
    ("year", "1900", "is not a year; write it like 2026"),
]


@pytest.mark.parametrize(("kind", "text", "message"), REFUSED)
def test_malformed_labels_are_refused_with_a_message(kind, text, message):
    with pytest.raises(PeriodError, match=message) as error:
        parse_period(text) if kind is None else parse_period_label(kind, text)
    assert isinstance(error.value, ValueError)  # serializers catch ValueError


# (kind, moment, start, end, length in days): the period a moment falls in.
CONTAINING = [
    ("month", utc(2026, 1, 1), utc(2026, 1, 1), utc(2026, 2, 1), 31),
    ("month", utc(2026, 1, 31, 23, 59, 59, 999999), utc(2026, 1, 1), utc(2026, 2, 1), 31),
    ("month", utc(2026, 12, 15), utc(2026, 12, 1), utc(2027, 1, 1), 31),
    ("month", utc(2024, 2, 29, 12), utc(2024, 2, 1), utc(2024, 3, 1), 29),  # leap day
    ("month", utc(2024, 2, 1), utc(2024, 2, 1), utc(2024, 3, 1), 29),
    ("month", utc(2025, 2, 28, 23), utc(2025, 2, 1), utc(2025, 3, 1), 28),
    ("month", utc(2025, 2, 1), utc(2025, 2, 1), utc(2025, 3, 1), 28),
    ("quarter", utc(2024, 1, 1), utc(2024, 1, 1), utc(2024, 4, 1), 91),
    ("quarter", utc(2025, 1, 1), utc(2025, 1, 1), utc(2025, 4, 1), 90),
    ("quarter", utc(2026, 3, 31, 23, 59), utc(2026, 1, 1), utc(2026, 4, 1), 90),
    ("quarter", utc(2026, 4, 1), utc(2026, 4, 1), utc(2026, 7, 1), 91),
    ("quarter", utc(2026, 9, 30, 12), utc(2026, 7, 1), utc(2026, 10, 1), 92),
    ("quarter", utc(2026, 11, 27, 10), utc(2026, 10, 1), utc(2027, 1, 1), 92),
    ("year", utc(2024, 1, 1), utc(2024, 1, 1), utc(2025, 1, 1), 366),
    ("year", utc(2024, 12, 31, 23, 59), utc(2024, 1, 1), utc(2025, 1, 1), 366),
    ("year", utc(2025, 1, 1), utc(2025, 1, 1), utc(2026, 1, 1), 365),
    # 00:30 on 1 April in UTC+2 is still 31 March in UTC: first quarter, March.
    ("quarter", datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), utc(2026, 1, 1), utc(2026, 4, 1), 90),
    ("month", datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), utc(2026, 3, 1), utc(2026, 4, 1), 31),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "moment", "start", "end", "days"), CONTAINING)
def test_the_period_a_moment_falls_in(kind, moment, start, end, days):
    period = CalendarPeriod.containing(kind, moment)
    assert (period.start, period.end) == (start, end)
    assert period.start.tzinfo is UTC
    assert (period.end - period.start).days == days
    assert period.hours == days * 24
    assert period_bounds(kind, moment) == (start, end)
    assert period_start(kind, moment) == start
    assert period_start(kind, moment).tzinfo is UTC


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: period_start("month", datetime(2026, 1, 1)), "naive"),
        (lambda: CalendarPeriod.containing("quarter", datetime(2026, 1, 1)), "naive"),
        (lambda: period_start("week", utc(2026, 1, 1)), "unknown period 'week'"),
    ],
)
def test_naive_datetimes_and_unknown_kinds_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# (label, previous, year before, 2 periods later): neighbours of the same kind.
NEIGHBOURS = [
    ("2026-Q1", "2025-Q4", "2025-Q1", "2026-Q3"),
    ("2026-Q4", "2026-Q3", "2025-Q4", "2027-Q2"),
    ("2026-01", "2025-12", "2025-01", "2026-03"),
    ("2026-12", "2026-11", "2025-12", "2027-02"),
    ("2026", "2025", "2025", "2028"),
]


@pytest.mark.parametrize(("label", "previous", "year_before", "later"), NEIGHBOURS)
def test_neighbours(label, previous, year_before, later):
    period = parse_period(label)
    assert period.previous.label == previous
    assert period.year_before.label == year_before
    assert period.shifted(2).label == later
    # A target's reading: the start of the period so many periods on.
    assert period_shift(period.kind, period.start, -1) == period.previous.start
    assert period_shift(period.kind, period.start, 2) == period.shifted(2).start
    assert period_shift(period.kind, period.start, 1) == period.end


# (text, now, message or None): a report needs a period that has ended.
NOW = utc(2026, 11, 28)
ENDED = [
    ("2027-Q1", NOW, "in the future"),
    ("2026-Q4", NOW, "has not ended yet; it can be reported from 2027-01-01"),
    ("2026", NOW, "has not ended"),
    ("2026-Q3", NOW, None),
    ("2026-10", NOW, None),
    ("2026-Q3", utc(2026, 10, 1), None),  # ended at the instant it is asked for
]


@pytest.mark.parametrize(("text", "now", "message"), ENDED)
def test_only_ended_periods_can_be_reported(text, now, message):
    if message is None:
        assert parse_complete_period(text, now=now).label == text
    else:
        with pytest.raises(PeriodError, match=message):
            parse_complete_period(text, now=now)


@pytest.mark.parametrize(
    ("now", "label"),
    [
        (utc(2026, 10, 1, 0, 0), "2026-Q3"),
        (utc(2026, 2, 14), "2025-Q4"),
        (utc(2026, 9, 30, 23, 59), "2026-Q2"),
    ],
)
def test_last_complete_quarter(now, label):
    assert last_complete_quarter(now).label == label


# (moment, its UTC hour): the key of every hourly rollup and factor.
HOURS = [
    (utc(2026, 11, 28, 10, 0), utc(2026, 11, 28, 10)),
    (utc(2026, 11, 28, 10, 59, 59, 999999), utc(2026, 11, 28, 10)),
    (datetime(2026, 11, 28, 0, 30, tzinfo=timezone(timedelta(hours=2))), utc(2026, 11, 27, 22)),
    (datetime(2026, 11, 28, 10, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))), utc(2026, 11, 28, 4)),
]  # fmt: skip


@pytest.mark.parametrize(("moment", "hour"), HOURS)
def test_hour_floor(moment, hour):
    assert hour_floor(moment) == hour
    assert hour_floor(moment).tzinfo is UTC
