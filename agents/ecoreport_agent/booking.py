"""Closing a GPU's interval at a boundary: its energy, who used it, and its samples.

- GPUs with an energy counter book the counter's advance (millijoules, exact);
- GPUs without one book the trapezoidal integral of the polled power;
- the processes seen at each tick share that tick's energy (by per-process utilization where the
  GPU reports it, evenly where not); ticks with no process are idle energy, left unattributed;
  each sample says how its energy was split (``split``: see :func:`split_basis`).

A counter that went backwards (driver reload) or a hole in the power readings books nothing for
the interval: the GPU's timeline restarts, leaving a gap, never a made-up figure.

A counter's advance is booked up to what the GPU can draw in the interval (its power limit times
``POWER_CAP_FACTOR``); the rest is *carried*: the baseline moves only by what was booked, so the
next interval (or, after a stop, the next run's resume) books it. Energy is never lost or made up,
only moved by a few seconds. An advance too large for timing (more than ``MAX_CARRY_S`` of it to
carry) is a glitching counter: booked as read, for the backend to refuse. The advance can exceed that bound without the GPU drawing
more: the counter is read a few milliseconds after the instant that labels the interval (a very
short first or last interval shows it), and dcgm-exporter's counter moves in steps of its own
collect interval (30 s by default), so one interval can see two steps. The backend refuses
samples above the power limit times ``INGEST_POWER_MARGIN`` (1.1 by default; keep it above this
factor), and a refused sample would be dead-lettered: energy lost.
"""

from __future__ import annotations

import logging

from ecoreport_agent.attribution import (
    Labels,
    LabelSource,
    attribution_entries,
    tick_contributions,
)
from ecoreport_agent.clock import Clock, ms
from ecoreport_agent.gpu import COUNTER, GpuLost, GpuState, read_metric
from ecoreport_agent.nvml import Nvml, NvmlError
from ecoreport_agent.samples import make_sample, mean, split_interval
from ecoreport_agent.spool import Reading, SpoolSample

# The agent's log channel, whichever of its modules the measurement loop is in.
log = logging.getLogger("ecoreport_agent.agent")


POWER_CAP_FACTOR = 1.05  # below the backend's default INGEST_POWER_MARGIN (1.1)
# At most this many seconds at the capped power are carried: more is no timing effect but a
# glitching counter, booked as read so that the backend refuses it (kept in the dead letter).
MAX_CARRY_S = 60.0
CLOCK_STEP_S = 2.0  # wall clock vs. monotonic disagreement treated as a step (NTP slews less)


SINGLE, UTILIZATION, EVEN = "single", "utilization", "even"


def split_basis(shared_ticks: int, by_utilization: int) -> str:
    """How an attributed interval's energy was divided among its processes (the sample's
    ``split``): ``single`` when no polling tick saw more than one process (nothing to divide:
    each tick's energy goes to the one process on the GPU), ``utilization`` when every tick
    shared by several processes was divided by their own utilization, ``even`` when at least
    one was divided evenly (no per-process figures; on MIG, the instances' fixed slices).
    """
    if shared_ticks == 0:
        return SINGLE
    return UTILIZATION if by_utilization == shared_ticks else EVEN


def bookable_mj(advance_mj: int, duration_s: float, inventory: dict) -> int:
    """How much of a counter's ``advance_mj`` over ``duration_s`` to book now: at most the GPU's
    power limit times ``POWER_CAP_FACTOR`` over the interval, the rest carried. All of it when no
    limit is known, and when the rest is more than ``MAX_CARRY_S`` of that power (a glitch).
    """
    limit_w = inventory.get("power_limit_w")
    if not limit_w or limit_w <= 0:
        return advance_mj
    cap_mj = max(int(limit_w * POWER_CAP_FACTOR * duration_s * 1000), 0)
    if (
        advance_mj <= cap_mj
        or advance_mj - cap_mj > limit_w * POWER_CAP_FACTOR * MAX_CARRY_S * 1000
    ):
        return advance_mj
    return cap_mj


def _by_utilization(pids: tuple[int, ...], util: dict[int, float] | None) -> bool:
    """Whether ``tick_contributions`` divides this tick by utilization (not evenly)."""
    return util is not None and sum(util.get(pid, 0.0) for pid in pids) > 0


class Booker:
    def __init__(self, *, nvml: Nvml, clock: Clock, labels: LabelSource, boot_id: str) -> None:
        self.nvml = nvml
        self.clock = clock
        self.labels = labels
        self.boot_id = boot_id
        self._clock_step_logged = False

    def close_gpu(
        self,
        state: GpuState,
        samples: list[SpoolSample],
        readings: list[Reading],
        live_pids: set[int],
    ) -> None:
        """Append the interval's samples and the GPU's new reading; raises ``GpuLost``."""
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
        if counter_mj is not None:
            energy_mj = bookable_mj(energy_mj, end_wall - state.start_wall, state.inventory)
        shares, split = self._shares(state, live_pids)
        stats = {
            "gpu_util_pct": mean(state.util, 2),
            "mem_util_pct": mean(state.mem_util, 2),
            "mem_used_mib": None
            if not state.mem_used_mib
            else int(mean(state.mem_used_mib, 0) or 0),
            "power_max_w": None if state.power_max_w is None else round(state.power_max_w, 1),
            "temperature_c": mean(state.temperature, 1),
        }
        entries = attribution_entries(shares)
        for s, e, mj, c0, c1 in split_interval(
            state.start_wall, end_wall, energy_mj, state.start_mj
        ):
            samples.append(
                make_sample(state.uuid, state.method, s, e, mj, c0, c1, stats, entries, split)
            )
        if counter_mj is not None:
            # The baseline is what is booked; a carried rest stays above it.
            assert state.start_mj is not None
            counter_mj = state.start_mj + energy_mj
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

    def _shares(
        self, state: GpuState, live_pids: set[int]
    ) -> tuple[dict[Labels, float], str | None]:
        """The interval's energy share per labels, and how it was split (``split_basis``)."""
        total_weight = sum(w for w, _, _ in state.ticks)
        seen = {pid for _, pids, _ in state.ticks for pid in pids}
        if not seen or total_weight <= 0:
            return {}, None
        live_pids.update(seen)
        util: dict[int, float] | None = None
        if not state.mig_devices and "process_util" not in state.unsupported:
            util = self._process_util(state)
        per_pid: dict[int, float] = {}
        shared_ticks = by_util = 0
        for weight, pids, fixed in state.ticks:
            for pid, part in tick_contributions(pids, util, fixed).items():
                per_pid[pid] = per_pid.get(pid, 0.0) + weight * part
            if len(pids) > 1:
                shared_ticks += 1
                if fixed is None and _by_utilization(pids, util):
                    by_util += 1
        shares: dict[Labels, float] = {}
        for pid, value in per_pid.items():
            labels = self.labels.labels(pid)
            shares[labels] = shares.get(labels, 0.0) + value / total_weight
        return shares, split_basis(shared_ticks, by_util)

    def _process_util(self, state: GpuState) -> dict[int, float] | None:
        samples = read_metric(
            state,
            "process_util",
            self.nvml.process_utilization,
            state.handle,
            state.proc_util_since_us,
        )
        if not samples:
            return None
        sums: dict[int, list[float]] = {}
        for s in samples:
            acc = sums.setdefault(s.pid, [0.0, 0])
            acc[0] += s.sm_util
            acc[1] += 1
            state.proc_util_since_us = max(state.proc_util_since_us, s.timestamp_us)
        return {pid: total / n for pid, (total, n) in sums.items()}
