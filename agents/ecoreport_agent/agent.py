"""The measurement loop: poll NVML, close intervals, book them, upload.

One thread. Every ``poll_s`` (1 s by default) each GPU is asked for power, utilization, memory,
temperature and its compute processes (``polling``); every ``interval_s`` (10 s) the interval is
closed and booked (``booking``), the spool kept under its bound (``spool_bound``), lost and new
GPUs looked for (``discovery``, which also books the energy used while a GPU was not measured,
``resume``), and what is spooled uploaded within a time budget.

Interval *durations* come from the monotonic clock. Wall-clock timestamps only name the interval:
each GPU keeps a timeline where the next sample starts exactly where the previous one ended.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading

from ecoreport_agent.attribution import LabelSource
from ecoreport_agent.booking import Booker
from ecoreport_agent.clock import Clock
from ecoreport_agent.discovery import Fleet
from ecoreport_agent.gpu import GpuLost, GpuState
from ecoreport_agent.nvml import Nvml
from ecoreport_agent.polling import poll_gpu
from ecoreport_agent.resume import read_boot_id
from ecoreport_agent.spool import Reading, Spool, SpoolSample
from ecoreport_agent.spool_bound import SpoolBound
from ecoreport_agent.uploader import Uploader

log = logging.getLogger("ecoreport_agent.agent")


class Agent:
    def __init__(
        self,
        *,
        nvml: Nvml,
        spool: Spool,
        labels: LabelSource,
        uploader: Uploader | None = None,
        clock: Clock | None = None,
        interval_s: float = 10.0,
        poll_s: float = 1.0,
        boot_id: str | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        rediscover_s: float = 60.0,
        upload_budget_s: float = 5.0,
    ) -> None:
        if interval_s <= 0 or poll_s <= 0:
            raise ValueError("interval and poll period must be positive")
        self.nvml = nvml
        self.spool = spool
        self.labels = labels
        self.uploader = uploader
        self.clock = clock or Clock()
        self.interval_s = float(interval_s)
        # A whole number of polls per interval, so every boundary is a poll.
        self.ticks_per_interval = max(1, round(interval_s / min(poll_s, interval_s)))
        self.poll_s = self.interval_s / self.ticks_per_interval
        self.boot_id = boot_id or read_boot_id()
        self.upload_budget_s = upload_budget_s
        self.cycles = 0
        self.fleet = Fleet(
            nvml=nvml,
            spool=spool,
            clock=self.clock,
            boot_id=self.boot_id,
            interval_s=self.interval_s,
            rediscover_s=rediscover_s,
        )
        self.booker = Booker(nvml=nvml, clock=self.clock, labels=labels, boot_id=self.boot_id)
        self.spool_bound = SpoolBound(spool=spool, clock=self.clock, max_bytes=spool_max_bytes)

    @property
    def gpus(self) -> dict[str, GpuState]:
        """The GPUs measured now, by uuid."""
        return self.fleet.gpus

    @property
    def lost(self) -> dict[str, str]:
        """GPUs that errored and are looked for again: uuid -> why."""
        return self.fleet.lost

    def discover(self) -> None:
        self.fleet.discover()

    def poll(self) -> None:
        # A label source that resolves processes while they run (Kubernetes: the pod from the
        # cgroup) sees each tick's pids, so a process that exits before the boundary keeps them.
        observe = getattr(self.labels, "observe", None)
        for state in list(self.gpus.values()):
            try:
                poll_gpu(state, self.nvml, self.clock.monotonic(), self.poll_s)
            except GpuLost as exc:
                self.fleet.lose(state, exc)
                continue
            if observe is not None and state.ticks:
                observe(state.ticks[-1][1])

    def close_interval(self) -> int:
        """Close every GPU's interval and book all samples in one transaction. Returns count."""
        samples: list[SpoolSample] = []
        readings: list[Reading] = []
        live_pids: set[int] = set()
        for state in list(self.gpus.values()):
            try:
                self.booker.close_gpu(state, samples, readings, live_pids)
            except GpuLost as exc:
                self.fleet.lose(state, exc)
        if samples or readings:
            self.spool.book(samples, readings)
        self.cycles += 1
        if self.cycles % 60 == 0:
            self.labels.forget_except(live_pids)
        return len(samples)

    def enforce_spool_bound(self) -> None:
        self.spool_bound.enforce()

    # -- the loop -----------------------------------------------------------------------------

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        max_cycles: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        stop = stop or getattr(self.clock, "stop", None) or threading.Event()
        self.spool.meta_set(pid=os.getpid(), started_s=self.clock.time(), stopped_s=None)
        self.discover()
        if not self.gpus:
            log.warning(
                "agent.no_gpus: no GPU could be measured yet; looking again every %.0f s",
                self.fleet.rediscover_s,
            )
        started = self.clock.monotonic()
        # Boundaries fall on wall-clock multiples of the interval (10:00:00, 10:00:10 ...), so
        # samples line up across GPUs and hosts; the first interval is a partial one.
        to_boundary = self.interval_s - (self.clock.time() % self.interval_s)
        anchor = started + to_boundary
        tick = -math.floor(to_boundary / self.poll_s - 1e-9)
        # Steady-state cost: calls made by discovery above are not counted per interval.
        calls_at_start = dict(self.nvml.calls)
        cycles_at_start = self.cycles
        just_closed = False
        while not stop.is_set():
            target = anchor + tick * self.poll_s
            self.clock.sleep(target - self.clock.monotonic())
            if stop.is_set():
                break
            self.poll()
            if tick % self.ticks_per_interval == 0:
                self._boundary()
                done = self.cycles - cycles_at_start
                if (max_cycles is not None and done >= max_cycles) or (
                    duration_s is not None and self.clock.monotonic() - started >= duration_s
                ):
                    just_closed = True
                    break
            tick += 1
            behind = self.clock.monotonic() - (anchor + tick * self.poll_s)
            if behind > self.poll_s:  # a slow upload or a stopped process: skip missed polls
                tick += math.ceil(behind / self.poll_s)
        if not just_closed:
            # SIGTERM/SIGINT: book the interval in progress (a short one), then a last upload.
            self.poll()
            self.close_interval()
        if self.uploader is not None:
            self.uploader.final_flush(self.upload_budget_s)
        done = max(1, self.cycles - cycles_at_start)
        per_interval = {
            name: round((count - calls_at_start.get(name, 0)) / done, 2)
            for name, count in sorted(self.nvml.calls.items())
        }
        self.spool.meta_set(
            stopped_s=self.clock.time(),
            cycles=self.cycles,
            nvml_calls_per_interval=json.dumps(per_interval),
        )
        log.info(
            "agent.stopped cycles=%d nvml_calls_per_interval=%.1f",
            self.cycles,
            sum(per_interval.values()),
        )

    def _boundary(self) -> None:
        self.close_interval()
        self.enforce_spool_bound()
        self.fleet.maybe_rediscover()
        if self.uploader is not None and self.uploader.ready():
            self.uploader.flush(min(self.upload_budget_s, self.interval_s / 2))
