"""Report periods: parsing, neighbours and the has-it-ended check (pure, injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecoreport.reports.periods import (
    PeriodError,
    last_complete_quarter,
    parse_complete_period,
    parse_period,
)

UTC = UTC


@pytest.mark.parametrize(
    ("text", "label", "start", "end"),
    [
        ("2026-Q3", "2026-Q3", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026-q4", "2026-Q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-07", "2026-07", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)),
        ("2026-12", "2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (" 2025 ", "2025", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_valid_periods(text, label, start, end):
    period = parse_period(text)
    assert (period.label, period.start, period.end) == (label, start, end)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-Q5",
        "2026-Q0",
        "2026-13",
        "2026-7",
        "26-Q1",
        "Q3-2026",
        "2026-W12",
        "1999",
        "last quarter",
        "2026-07-01",
    ],
)
def test_malformed_periods_are_refused_with_a_message(text):
    with pytest.raises(PeriodError) as error:
        parse_period(text)
    assert str(error.value)


def test_neighbours():
    q1 = parse_period("2026-Q1")
    assert q1.previous.label == "2025-Q4"
    assert q1.year_before.label == "2025-Q1"
    assert parse_period("2026-01").previous.label == "2025-12"
    assert parse_period("2026").previous.label == "2025"
    assert parse_period("2026-Q3").hours == 92 * 24


@pytest.mark.parametrize(
    ("text", "message"),
    [("2027-Q1", "in the future"), ("2026-Q4", "has not ended"), ("2026", "has not ended")],
)
def test_periods_that_have_not_ended_are_refused(text, message):
    with pytest.raises(PeriodError, match=message):
        parse_complete_period(text, now=datetime(2026, 11, 28, tzinfo=UTC))


def test_last_complete_quarter():
    assert last_complete_quarter(datetime(2026, 10, 1, 0, 0, tzinfo=UTC)).label == "2026-Q3"
    assert last_complete_quarter(datetime(2026, 2, 14, tzinfo=UTC)).label == "2025-Q4"
