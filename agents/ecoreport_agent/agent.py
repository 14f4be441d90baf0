"""The measurement loop: poll NVML, close intervals, book them, upload.

One thread. Every ``poll_s`` (1 s by default) each GPU is asked for power, utilization, memory,
temperature and its compute processes; every ``interval_s`` (10 s) the interval is closed:

- GPUs with an energy counter book the counter's advance (millijoules, exact);
- GPUs without one book the trapezoidal integral of the polled power;
- the processes seen at each tick share that tick's energy (by per-process utilization where the
  GPU reports it, evenly where not); ticks with no process are idle energy, left unattributed.

Interval *durations* come from the monotonic clock. Wall-clock timestamps only name the interval:
each GPU keeps a timeline where the next sample starts exactly where the previous one ended.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ecoreport_agent.attribution import (
    Labels,
    LabelSource,
    attribution_entries,
    tick_contributions,
)
from ecoreport_agent.clock import Clock, iso_utc, ms
from ecoreport_agent.nvml import Nvml, NvmlError
from ecoreport_agent.spool import HOUR_S, Reading, Spool, SpoolSample
from ecoreport_agent.uploader import Uploader

log = logging.getLogger("ecoreport_agent.agent")

COUNTER = "counter"
POWER_INTEGRATION = "power_integration"
CLOCK_STEP_S = 2.0  # wall clock vs. monotonic disagreement treated as a step (NTP slews less)


def read_boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    """Changes at every boot; a persisted counter reading from another boot is meaningless."""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


class GpuLost(Exception):
    pass


@dataclass
class GpuState:
    uuid: str
    index: int
    handle: Any
    method: str
    inventory: dict[str, Any]
    start_mono: float
    start_wall: float
    start_mj: int | None
    mig_devices: list[tuple[Any, float]] = field(default_factory=list)  # (handle, GPU fraction)
    unsupported: set[str] = field(default_factory=set)
    # Accumulated over the open interval.
    util: list[float] = field(default_factory=list)
    mem_util: list[float] = field(default_factory=list)
    mem_used_mib: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    power_max_w: float | None = None
    last_power_w: float | None = None
    ticks: list[tuple[float, tuple[int, ...], dict[int, float] | None]] = field(
        default_factory=list
    )
    pi_energy_j: float = 0.0
    pi_last: tuple[float, float] | None = None  # (monotonic, watts) of the last power reading
    pi_gap: bool = False  # a hole in the power readings: this interval's energy is unknown
    proc_util_since_us: int = 0
    last_poll_mono: float = -1.0
    failures: int = 0  # consecutive failed counter reads

    def reset_interval(self) -> None:
        self.util.clear()
        self.mem_util.clear()
        self.mem_used_mib.clear()
        self.temperature.clear()
        self.ticks.clear()
        self.power_max_w = None
        self.pi_energy_j = 0.0
        self.pi_gap = False


def split_interval(
    start_wall: float, end_wall: float, energy_mj: int, counter_start_mj: int | None
) -> list[tuple[float, float, int, int | None, int | None]]:
    """Chunks cut at the UTC hour boundaries inside the interval (so each lies in one hour and
    none is longer than an hour), energy split by duration in whole millijoules (exact sum).

    Hour-aligned chunks let the backend apply each hour's carbon factor and PUE to that hour's
    energy without having to prorate them (it would; this is what it would get to).
    """
    duration = end_wall - start_wall
    edges = [start_wall]
    boundary = (math.floor(start_wall / HOUR_S) + 1) * HOUR_S
    while boundary < end_wall:
        edges.append(boundary)
        boundary += HOUR_S
    edges.append(end_wall)
    chunks = []
    booked = 0
    for k in range(len(edges) - 1):
        if k == len(edges) - 2:
            part = energy_mj - booked
        else:
            # cumulative share rounded down, so the parts are whole millijoules adding up exactly
            part = int(energy_mj * (edges[k + 1] - start_wall) / duration) - booked
        c0 = None if counter_start_mj is None else counter_start_mj + booked
        c1 = None if counter_start_mj is None else counter_start_mj + booked + part
        chunks.append((edges[k], edges[k + 1], part, c0, c1))
        booked += part
    return chunks


def _mean(values: Sequence[float], digits: int) -> float | None:
    return round(sum(values) / len(values), digits) if values else None


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
        self.spool_max_bytes = spool_max_bytes
        self.rediscover_s = rediscover_s
        self.upload_budget_s = upload_budget_s
        self.gpus: dict[str, GpuState] = {}
        self.lost: dict[str, str] = {}  # uuid -> why
        self.device_count = 0
        self.cycles = 0
        self._last_discover_mono = -math.inf
        self._clock_step_logged = False
        self._spool_full_logged_mono = -math.inf

    # -- discovery --------------------------------------------------------------------------

    def discover(self) -> None:
        """Find GPUs not yet measured (at start, after a loss, after a hot-plug)."""
        self._last_discover_mono = self.clock.monotonic()
        try:
            count = self.nvml.device_count()
        except NvmlError as exc:
            log.warning("gpu.discover_failed error=%r", str(exc))
            return
        self.device_count = count
        for index in range(count):
            try:
                handle = self.nvml.handle(index)
                gpu_uuid = self.nvml.uuid(handle)
            except NvmlError as exc:
                log.debug("gpu.discover_skip index=%d error=%r", index, str(exc))
                continue
            state = self.gpus.get(gpu_uuid)
            if state is not None:
                state.handle, state.index = handle, index
                continue
            try:
                self._attach(index, handle, gpu_uuid)
            except NvmlError as exc:
                log.warning(
                    "gpu.attach_failed uuid=%s index=%d error=%r", gpu_uuid, index, str(exc)
                )

    def _maybe_rediscover(self) -> None:
        if self.clock.monotonic() - self._last_discover_mono < self.rediscover_s:
            return
        if self.lost:
            self.discover()
            return
        self._last_discover_mono = self.clock.monotonic()
        try:
            count = self.nvml.device_count()
        except NvmlError:
            return
        if count != self.device_count or count != len(self.gpus):
            self.discover()

    def _attach(self, index: int, handle: Any, gpu_uuid: str) -> None:
        nvml = self.nvml
        name = nvml.name(handle)
        memory_total, _used = nvml.memory(handle)
        try:
            power_limit_w: float | None = nvml.power_limit_mw(handle) / 1000.0
        except NvmlError as exc:
            if exc.lost:
                raise
            power_limit_w = None
        counter_mj: int | None
        try:
            counter_mj = nvml.energy_mj(handle)
            method = COUNTER
        except NvmlError as exc:
            if not exc.unsupported:
                raise  # a transient failure: try again at the next discovery
            counter_mj, method = None, POWER_INTEGRATION
        mig_devices = self._mig_devices(handle, memory_total)
        first_power: tuple[float, float] | None = None
        if method == POWER_INTEGRATION:
            try:
                first_power = (self.clock.monotonic(), nvml.power_mw(handle) / 1000.0)
            except NvmlError as exc:
                if exc.lost:
                    raise
        inventory = {
            "uuid": gpu_uuid,
            "index": index,
            "name": name,
            "memory_total_mib": memory_total // (1024 * 1024),
            "power_limit_w": power_limit_w,
        }
        self.spool.upsert_gpus([inventory])
        now_mono, now_wall = self.clock.monotonic(), ms(self.clock.time())
        if first_power is not None:
            now_mono = first_power[0]  # the integral starts at this reading
        start_wall = now_wall
        samples: list[SpoolSample] = []
        previous = self.spool.reading(gpu_uuid)
        if previous is not None:
            # Never start before what is already booked (the backend's key is GPU + start).
            start_wall = max(now_wall, previous.wall_s)
            resumed = self._resume(previous, counter_mj, method, now_mono)
            if resumed:
                samples, start_wall = resumed
        state = GpuState(
            uuid=gpu_uuid,
            index=index,
            handle=handle,
            method=method,
            inventory=inventory,
            start_mono=now_mono,
            start_wall=start_wall,
            start_mj=counter_mj,
            mig_devices=mig_devices,
            proc_util_since_us=int((self.clock.time() - self.interval_s) * 1e6),
            pi_last=first_power,
        )
        reading = Reading(gpu_uuid, method, counter_mj, now_mono, start_wall, self.boot_id)
        self.spool.book(samples, [reading])
        self.gpus[gpu_uuid] = state
        self.lost.pop(gpu_uuid, None)
        log.info(
            "gpu.attached uuid=%s index=%d name=%r method=%s power_limit_w=%s mig=%s",
            gpu_uuid,
            index,
            name,
            method,
            power_limit_w,
            bool(mig_devices),
        )

    def _resume(
        self, previous: Reading, counter_mj: int | None, method: str, now_mono: float
    ) -> tuple[list[SpoolSample], float] | None:
        """Book the counter's advance since the last booked reading (agent down, GPU lost).

        Only when it is provably the same counter: same boot, counter not gone backwards. The
        advance is then exactly the energy the GPU used meanwhile, and nobody can say who used
        it, so it goes out unattributed. A driver reload during the downtime that was followed
        by more than the old value's worth of energy looks like a smaller advance: the agent
        under-counts in that case, never over-counts.
        """
        if method != COUNTER or counter_mj is None or previous.counter_mj is None:
            log.info("resume.not_possible uuid=%s reason=no_counter", previous.gpu_uuid)
            return None
        if previous.boot_id != self.boot_id:
            log.warning(
                "resume.unknown uuid=%s reason=reboot: energy since the last reading before the"
                " reboot cannot be known",
                previous.gpu_uuid,
            )
            return None
        if counter_mj < previous.counter_mj:
            log.warning(
                "resume.unknown uuid=%s reason=counter_reset previous_mj=%d now_mj=%d: the driver"
                " was reloaded; energy since the last reading cannot be known",
                previous.gpu_uuid,
                previous.counter_mj,
                counter_mj,
            )
            return None
        duration = now_mono - previous.mono_s
        end_wall = ms(previous.wall_s + duration)
        if end_wall <= previous.wall_s:
            return None
        energy_mj = counter_mj - previous.counter_mj
        samples = [
            self._sample(previous.gpu_uuid, COUNTER, s, e, mj, c0, c1, {}, [])
            for s, e, mj, c0, c1 in split_interval(
                previous.wall_s, end_wall, energy_mj, previous.counter_mj
            )
        ]
        log.info(
            "resume.booked uuid=%s seconds=%.1f energy_j=%.3f samples=%d",
            previous.gpu_uuid,
            duration,
            energy_mj / 1000,
            len(samples),
        )
        return samples, end_wall

    def _mig_devices(self, handle: Any, parent_total: int) -> list[tuple[Any, float]]:
        """MIG instances of a physical GPU and the fraction of it each one holds.

        Energy is only measurable per physical GPU; processes run in instances. A process is
        charged its instance's fraction (the instance's memory over the GPU's: memory slices
        track compute slices in every MIG profile), split evenly within the instance.
        """
        try:
            if not self.nvml.mig_enabled(handle):
                return []
            devices = self.nvml.mig_devices(handle)
        except NvmlError as exc:
            log.debug("gpu.mig_query_failed error=%r", str(exc))
            return []
        out = []
        for device in devices:
            try:
                total, _ = self.nvml.memory(device)
            except NvmlError:
                continue
            out.append((device, total / parent_total if parent_total else 0.0))
        return out

    def _lose(self, state: GpuState, exc: Exception) -> None:
        """Stop measuring a GPU that errors; the open interval is left to the resume logic."""
        self.gpus.pop(state.uuid, None)
        self.lost[state.uuid] = str(exc)
        log.warning(
            "gpu.lost uuid=%s index=%d error=%r: the other GPUs go on; it is looked for again"
            " every %.0f s and its counter's advance is booked when it is back",
            state.uuid,
            state.index,
            str(exc),
            self.rediscover_s,
        )

    # -- polling ------------------------------------------------------------------------------

    def _read(self, state: GpuState, metric: str, fn: Any, *args: Any) -> Any:
        if metric in state.unsupported:
            return None
        try:
            return fn(*args)
        except NvmlError as exc:
            if exc.unsupported:
                state.unsupported.add(metric)
                log.info("gpu.metric_unsupported uuid=%s metric=%s", state.uuid, metric)
                return None
            if exc.lost:
                raise GpuLost(str(exc)) from exc
            log.debug("gpu.read_failed uuid=%s metric=%s error=%r", state.uuid, metric, str(exc))
            return None

    def poll(self) -> None:
        for state in list(self.gpus.values()):
            try:
                self._poll_gpu(state)
            except GpuLost as exc:
                self._lose(state, exc)

    def _poll_gpu(self, state: GpuState) -> None:
        nvml, handle = self.nvml, state.handle
        now = self.clock.monotonic()
        state.last_poll_mono = now
        power_mw = self._read(state, "power", nvml.power_mw, handle)
        power_w = None if power_mw is None else power_mw / 1000.0
        if power_w is not None:
            state.power_max_w = (
                power_w if state.power_max_w is None else max(state.power_max_w, power_w)
            )
            state.last_power_w = power_w
            if state.method == POWER_INTEGRATION:
                if state.pi_last is None:
                    # The first reading since attach (the one at attach failed): the interval
                    # starts here; before it nothing was measured.
                    state.start_wall = ms(state.start_wall + (now - state.start_mono))
                    state.start_mono = now
                else:
                    t0, w0 = state.pi_last
                    # More than three missed polls: the trapezoid would be a guess.
                    if now - t0 > max(3 * self.poll_s, 5.0):
                        state.pi_gap = True
                    else:
                        state.pi_energy_j += (w0 + power_w) / 2.0 * (now - t0)
                state.pi_last = (now, power_w)
        rates = self._read(state, "utilization", nvml.utilization, handle)
        if rates is not None:
            state.util.append(rates[0])
            state.mem_util.append(rates[1])
        memory = self._read(state, "memory", nvml.memory, handle)
        if memory is not None:
            state.mem_used_mib.append(memory[1] / (1024 * 1024))
        temperature = self._read(state, "temperature", nvml.temperature, handle)
        if temperature is not None:
            state.temperature.append(temperature)
        pids, fixed = self._processes(state)
        weight = power_w if power_w is not None else (state.last_power_w or 1.0)
        state.ticks.append((weight, pids, fixed))

    def _processes(self, state: GpuState) -> tuple[tuple[int, ...], dict[int, float] | None]:
        if not state.mig_devices:
            procs = self._read(state, "processes", self.nvml.compute_processes, state.handle)
            return tuple(sorted({p.pid for p in procs or ()})), None
        fixed: dict[int, float] = {}
        for device, fraction in state.mig_devices:
            try:
                procs = self.nvml.compute_processes(device)
            except NvmlError:
                continue  # an instance destroyed under us; the next discovery refreshes the list
            for proc in procs:
                fixed[proc.pid] = fixed.get(proc.pid, 0.0) + fraction / len(procs)
        return tuple(sorted(fixed)), fixed

    # -- closing intervals --------------------------------------------------------------------

    def close_interval(self) -> int:
        """Close every GPU's interval and book all samples in one transaction. Returns count."""
        samples: list[SpoolSample] = []
        readings: list[Reading] = []
        live_pids: set[int] = set()
        for state in list(self.gpus.values()):
            try:
                self._close_gpu(state, samples, readings, live_pids)
            except GpuLost as exc:
                self._lose(state, exc)
        if samples or readings:
            self.spool.book(samples, readings)
        self.cycles += 1
        if self.cycles % 60 == 0:
            self.labels.forget_except(live_pids)
        return len(samples)

    def _close_gpu(
        self,
        state: GpuState,
        samples: list[SpoolSample],
        readings: list[Reading],
        live_pids: set[int],
    ) -> None:
        now = self.clock.monotonic()
        counter_mj: int | None = None
        if state.method == COUNTER:
            try:
                counter_mj = self.nvml.energy_mj(state.handle)
            except NvmlError as exc:
                if exc.lost:
                    raise GpuLost(str(exc)) from exc
                # Not emitted: no made-up zero. The baseline stays, so the next interval covers
                # this one too. Logged once per episode, not every interval.
                state.failures += 1
                level = logging.WARNING if state.failures == 1 else logging.DEBUG
                log.log(level, "gpu.counter_read_failed uuid=%s error=%r", state.uuid, str(exc))
                return
            if state.failures:
                log.info("gpu.counter_read_ok uuid=%s failures=%d", state.uuid, state.failures)
                state.failures = 0
            assert state.start_mj is not None
            if counter_mj < state.start_mj:
                log.warning(
                    "gpu.counter_reset uuid=%s previous_mj=%d now_mj=%d: driver reload; this"
                    " interval's energy cannot be known and is not booked",
                    state.uuid,
                    state.start_mj,
                    counter_mj,
                )
                self._restart_interval(state, now, counter_mj, readings)
                return
            energy_mj = counter_mj - state.start_mj
        else:
            if state.pi_last is None or state.pi_last[0] != state.last_poll_mono:
                # The boundary's own power reading failed: keep integrating into the next one.
                return
            # The interval ends at the boundary's power reading, where the integral ends.
            now = state.pi_last[0]
            if state.pi_gap:
                log.warning(
                    "gpu.power_gap uuid=%s: power readings missing for too long; interval not"
                    " booked",
                    state.uuid,
                )
                self._restart_interval(state, now, None, readings)
                return
            energy_mj = round(state.pi_energy_j * 1000)
        end_wall = ms(state.start_wall + (now - state.start_mono))
        if end_wall <= state.start_wall:
            return  # shorter than a millisecond (a stop right after a boundary)
        shares = self._shares(state, live_pids)
        stats = {
            "gpu_util_pct": _mean(state.util, 2),
            "mem_util_pct": _mean(state.mem_util, 2),
            "mem_used_mib": None
            if not state.mem_used_mib
            else int(_mean(state.mem_used_mib, 0) or 0),
            "power_max_w": None if state.power_max_w is None else round(state.power_max_w, 1),
            "temperature_c": _mean(state.temperature, 1),
        }
        entries = attribution_entries(shares)
        for s, e, mj, c0, c1 in split_interval(
            state.start_wall, end_wall, energy_mj, state.start_mj
        ):
            samples.append(self._sample(state.uuid, state.method, s, e, mj, c0, c1, stats, entries))
        readings.append(Reading(state.uuid, state.method, counter_mj, now, end_wall, self.boot_id))
        state.start_mono, state.start_wall, state.start_mj = now, end_wall, counter_mj
        state.reset_interval()
        self._check_wall_clock(state)

    def _restart_interval(
        self, state: GpuState, now: float, counter_mj: int | None, readings: list[Reading]
    ) -> None:
        """Drop the open interval and start a new one now (a gap in this GPU's timeline)."""
        state.start_wall = ms(state.start_wall + (now - state.start_mono))
        state.start_mono, state.start_mj = now, counter_mj
        state.reset_interval()
        readings.append(
            Reading(state.uuid, state.method, counter_mj, now, state.start_wall, self.boot_id)
        )

    def _check_wall_clock(self, state: GpuState) -> None:
        """Follow a wall clock stepped forward (gap); never follow it backwards (overlap).

        Going back would give the next sample a start the backend already has for this GPU,
        and it would drop it as a duplicate: energy lost. Keeping the monotonic timeline instead
        leaves timestamps ahead of the wall clock until it catches up.
        """
        real = self.clock.time()
        drift = real - state.start_wall
        if drift > CLOCK_STEP_S:
            log.warning("clock.step_forward uuid=%s seconds=%.3f", state.uuid, drift)
            state.start_wall = ms(real)
        elif drift < -CLOCK_STEP_S and not self._clock_step_logged:
            self._clock_step_logged = True
            log.warning(
                "clock.step_backward seconds=%.3f: timestamps follow the monotonic clock until"
                " the wall clock catches up",
                -drift,
            )

    def _shares(self, state: GpuState, live_pids: set[int]) -> dict[Labels, float]:
        total_weight = sum(w for w, _, _ in state.ticks)
        seen = {pid for _, pids, _ in state.ticks for pid in pids}
        if not seen or total_weight <= 0:
            return {}
        live_pids.update(seen)
        util: dict[int, float] | None = None
        if not state.mig_devices and "process_util" not in state.unsupported:
            util = self._process_util(state)
        per_pid: dict[int, float] = {}
        for weight, pids, fixed in state.ticks:
            for pid, part in tick_contributions(pids, util, fixed).items():
                per_pid[pid] = per_pid.get(pid, 0.0) + weight * part
        shares: dict[Labels, float] = {}
        for pid, value in per_pid.items():
            labels = self.labels.labels(pid)
            shares[labels] = shares.get(labels, 0.0) + value / total_weight
        return shares

    def _process_util(self, state: GpuState) -> dict[int, float] | None:
        try:
            samples = self._read(
                state,
                "process_util",
                self.nvml.process_utilization,
                state.handle,
                state.proc_util_since_us,
            )
        except GpuLost:
            raise
        if not samples:
            return None
        sums: dict[int, list[float]] = {}
        for s in samples:
            acc = sums.setdefault(s.pid, [0.0, 0])
            acc[0] += s.sm_util
            acc[1] += 1
            state.proc_util_since_us = max(state.proc_util_since_us, s.timestamp_us)
        return {pid: total / n for pid, (total, n) in sums.items()}

    def _sample(
        self,
        gpu_uuid: str,
        method: str,
        start: float,
        end: float,
        energy_mj: int,
        counter_start: int | None,
        counter_end: int | None,
        stats: dict[str, Any],
        attribution: list[dict[str, Any]],
    ) -> SpoolSample:
        payload = {
            "gpu_uuid": gpu_uuid,
            "start": iso_utc(start),
            "end": iso_utc(end),
            "energy_j": energy_mj / 1000,
            "method": method,
            "gpu_util_pct": stats.get("gpu_util_pct"),
            "mem_util_pct": stats.get("mem_util_pct"),
            "mem_used_mib": stats.get("mem_used_mib"),
            "power_max_w": stats.get("power_max_w"),
            "temperature_c": stats.get("temperature_c"),
            "attribution": attribution,
        }
        return SpoolSample(
            gpu_uuid=gpu_uuid,
            start_s=start,
            end_s=end,
            energy_j=energy_mj / 1000,
            method=method,
            payload=payload,
            counter_start_mj=counter_start if method == COUNTER else None,
            counter_end_mj=counter_end if method == COUNTER else None,
        )

    # -- spool bound --------------------------------------------------------------------------

    def enforce_spool_bound(self) -> None:
        """Near the limit, merge old samples (resolution lost, energy kept); never drop any."""
        if self.spool.used_bytes() < 0.8 * self.spool_max_bytes:
            return
        before = self.spool.used_bytes()
        rows_before = self.spool.pending_count()
        for _ in range(8):
            considered, left = self.spool.compact(0.5)
            if considered == left or self.spool.used_bytes() < 0.6 * self.spool_max_bytes:
                break
        log.warning(
            "spool.compacted bytes_before=%d bytes_after=%d samples_before=%d samples_after=%d"
            " limit_bytes=%d: old samples merged into longer intervals (energy kept, resolution"
            " lost) because uploads are not keeping up",
            before,
            self.spool.used_bytes(),
            rows_before,
            self.spool.pending_count(),
            self.spool_max_bytes,
        )
        now = self.clock.monotonic()
        if (
            self.spool.used_bytes() > self.spool_max_bytes
            and now - self._spool_full_logged_mono > 3600
        ):
            self._spool_full_logged_mono = now
            log.error(
                "spool.over_limit bytes=%d limit_bytes=%d: nothing left to merge; samples are kept"
                " (never dropped) and the spool grows past its limit",
                self.spool.used_bytes(),
                self.spool_max_bytes,
            )

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
                self.rediscover_s,
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
        self._maybe_rediscover()
        if self.uploader is not None and self.uploader.ready():
            self.uploader.flush(min(self.upload_budget_s, self.interval_s / 2))
