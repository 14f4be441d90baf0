"""Which GPUs are measured: discovery at start, hot-plug, loss and return.

A GPU that errors is dropped from the measured set without stopping the others; it is looked for
again every ``rediscover_s``, as are GPUs plugged in meanwhile. Attaching a GPU that was measured
before (by this process or an earlier one) first books its counter's advance since then.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ecoreport_agent.clock import Clock, ms
from ecoreport_agent.gpu import COUNTER, POWER_INTEGRATION, GpuState
from ecoreport_agent.nvml import Nvml, NvmlError
from ecoreport_agent.resume import resume_samples
from ecoreport_agent.spool import Reading, Spool, SpoolSample

# The agent's log channel, whichever of its modules the measurement loop is in.
log = logging.getLogger("ecoreport_agent.agent")


class Fleet:
    def __init__(
        self,
        *,
        nvml: Nvml,
        spool: Spool,
        clock: Clock,
        boot_id: str,
        interval_s: float,
        rediscover_s: float,
    ) -> None:
        self.nvml = nvml
        self.spool = spool
        self.clock = clock
        self.boot_id = boot_id
        self.interval_s = interval_s
        self.rediscover_s = rediscover_s
        self.gpus: dict[str, GpuState] = {}
        self.lost: dict[str, str] = {}  # uuid -> why
        self.device_count = 0
        self._last_discover_mono = -math.inf

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

    def maybe_rediscover(self) -> None:
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
        read_at: tuple[float, float] | None = None  # (monotonic, wall) of the counter reading
        try:
            counter_mj = nvml.energy_mj(handle)
            # The interval starts at this reading, not after the calls below (a spool write can
            # take milliseconds): its energy would otherwise start before its label.
            read_at = (self.clock.monotonic(), ms(self.clock.time()))
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
        now_mono, now_wall = read_at or (self.clock.monotonic(), ms(self.clock.time()))
        if first_power is not None:
            now_mono = first_power[0]  # the integral starts at this reading
        start_wall = now_wall
        samples: list[SpoolSample] = []
        previous = self.spool.reading(gpu_uuid)
        if previous is not None:
            # Never start before what is already booked (the backend's key is GPU + start).
            start_wall = max(now_wall, previous.wall_s)
            resumed = resume_samples(previous, counter_mj, method, now_mono, self.boot_id)
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

    def lose(self, state: GpuState, exc: Exception) -> None:
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
