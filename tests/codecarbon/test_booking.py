"""Splitting a CodeCarbon delta by hour: pure functions, no database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.codecarbon.booking import hour_slices, split_energy

T = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # inside one hour
        (T + timedelta(minutes=10), T + timedelta(minutes=12), [(T, 120.0)]),
        # ending on the hour: the next hour is not touched
        (T + timedelta(minutes=50), T + timedelta(hours=1), [(T, 600.0)]),
        # crossing one boundary
        (
            T + timedelta(minutes=45),
            T + timedelta(hours=1, minutes=15),
            [(T, 900.0), (T + timedelta(hours=1), 900.0)],
        ),
        # spanning whole hours
        (
            T + timedelta(minutes=30),
            T + timedelta(hours=2, minutes=6),
            [(T, 1800.0), (T + timedelta(hours=1), 3600.0), (T + timedelta(hours=2), 360.0)],
        ),
        # a non-UTC offset is the same instant
        (
            datetime(2026, 11, 28, 11, 59, tzinfo=UTC).astimezone(
                datetime.now(UTC).astimezone().tzinfo
            ),
            T + timedelta(hours=2, minutes=1),
            [(T + timedelta(hours=1), 60.0), (T + timedelta(hours=2), 60.0)],
        ),
    ],
)
def test_hour_slices_are_the_overlap_with_each_hour(start, end, expected):
    slices = hour_slices(start, end)
    assert [(s.hour, s.seconds) for s in slices] == expected
    assert math.fsum(s.fraction for s in slices) == pytest.approx(1.0, abs=1e-15)


def test_an_empty_or_backward_interval_is_refused():
    with pytest.raises(ValueError, match="after start"):
        hour_slices(T, T)


@pytest.mark.parametrize("energy", [0.1, 1e-7, 3.6e6 / 3, 123456.789])
@pytest.mark.parametrize("minutes", [7, 61, 179, 24 * 60 + 1])
def test_split_energy_conserves_the_delta_and_follows_time(energy, minutes):
    start = T + timedelta(minutes=53, seconds=17)
    slices = hour_slices(start, start + timedelta(minutes=minutes))
    parts = split_energy(energy, slices)
    assert math.fsum(parts) == energy
    for piece, part in zip(slices, parts, strict=True):
        assert part == pytest.approx(energy * piece.seconds / (minutes * 60), rel=1e-9)
