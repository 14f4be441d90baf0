"""How a CodeCarbon delta is booked: pure functions, tested without a database.

A delta is energy over ``duration`` seconds ending at ``timestamp``. Hourly factors apply to
each hour's energy, so a delta that crosses hour boundaries is split between the hours pro rata
by time (the agent's samples are split the same way, ``docs/methodology.md``, "Proration").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from ecoreport.core.periods import hour_floor

_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourSlice:
    hour: datetime
    seconds: float
    fraction: float


def hour_slices(start: datetime, end: datetime) -> list[HourSlice]:
    """The hours [start, end) overlaps, with the seconds of each and its fraction of the whole.

    The fractions sum to 1 up to rounding; ``split_energy`` makes the energies add up exactly.
    """
    if end <= start:
        raise ValueError("end must be after start")
    total = (end - start).total_seconds()
    slices = []
    hour = hour_floor(start)
    while hour < end:
        lo, hi = max(start, hour), min(end, hour + _HOUR)
        seconds = (hi - lo).total_seconds()
        if seconds > 0:
            slices.append(HourSlice(hour=hour, seconds=seconds, fraction=seconds / total))
        hour += _HOUR
    return slices


def split_energy(energy: float, slices: list[HourSlice]) -> list[float]:
    """``energy`` shared out by the slices' fractions; the last part is what the others left,
    so the parts sum to ``energy`` (conservation: nothing made or lost by the split)."""
    parts = [energy * s.fraction for s in slices[:-1]]
    parts.append(energy - math.fsum(parts))
    return parts
