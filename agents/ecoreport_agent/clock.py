"""Clocks and timestamp formatting.

Durations come from the monotonic clock, which NTP steps cannot move; wall-clock time is only
used to name interval boundaries (UTC, ISO 8601 with a ``Z``). Everything that waits takes a
clock object so tests can inject a fake one instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import time


class Clock:
    """The real clocks. ``sleep`` wakes early when ``stop`` is set (SIGTERM/SIGINT)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)


def iso_utc(epoch_s: float) -> str:
    """Millisecond ISO 8601 in UTC with ``Z``: ``2026-11-28T10:00:00.000Z``.

    Callers round boundaries to the millisecond first, so the end of one sample and the start of
    the next render to the very same string (the backend's natural key is GPU + start).
    """
    moment = dt.datetime.fromtimestamp(round(epoch_s, 3), tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> float:
    """Inverse of :func:`iso_utc` (also accepts offsets), as epoch seconds."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    return moment.timestamp()


def ms(epoch_s: float) -> float:
    """Round to the millisecond, the resolution timestamps travel with."""
    return round(epoch_s, 3)
