"""Bounded disk: near its limit the spool merges old samples (resolution lost, energy kept).

Samples are never dropped: past the limit with nothing left to merge, the spool grows and says so.
"""

from __future__ import annotations

import logging
import math

from ecoreport_agent.clock import Clock
from ecoreport_agent.spool import Spool

# The agent's log channel, whichever of its modules the measurement loop is in.
log = logging.getLogger("ecoreport_agent.agent")


class SpoolBound:
    def __init__(self, *, spool: Spool, clock: Clock, max_bytes: int) -> None:
        self.spool = spool
        self.clock = clock
        self.max_bytes = max_bytes
        self._full_logged_mono = -math.inf

    def enforce(self) -> None:
        """Near the limit, merge old samples (resolution lost, energy kept); never drop any."""
        if self.spool.used_bytes() < 0.8 * self.max_bytes:
            return
        before = self.spool.used_bytes()
        rows_before = self.spool.pending_count()
        for _ in range(8):
            considered, left = self.spool.compact(0.5)
            if considered == left or self.spool.used_bytes() < 0.6 * self.max_bytes:
                break
        log.warning(
            "spool.compacted bytes_before=%d bytes_after=%d samples_before=%d samples_after=%d"
            " limit_bytes=%d: old samples merged into longer intervals (energy kept, resolution"
            " lost) because uploads are not keeping up",
            before,
            self.spool.used_bytes(),
            rows_before,
            self.spool.pending_count(),
            self.max_bytes,
        )
        now = self.clock.monotonic()
        if self.spool.used_bytes() > self.max_bytes and now - self._full_logged_mono > 3600:
            self._full_logged_mono = now
            log.error(
                "spool.over_limit bytes=%d limit_bytes=%d: nothing left to merge; samples are kept"
                " (never dropped) and the spool grows past its limit",
                self.spool.used_bytes(),
                self.max_bytes,
            )
