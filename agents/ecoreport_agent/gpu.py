"""What the agent tracks for one GPU between two interval boundaries, and how it reads a metric.

Shared by discovery (which creates a ``GpuState``), polling (which fills it every tick) and
booking (which turns it into samples at each boundary).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ecoreport_agent.nvml import NvmlError

# The agent's log channel, whichever of its modules the measurement loop is in.
log = logging.getLogger("ecoreport_agent.agent")

COUNTER = "counter"
POWER_INTEGRATION = "power_integration"


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


def read_metric(state: GpuState, metric: str, fn: Any, *args: Any) -> Any:
    """One optional NVML reading: ``None`` when unsupported (asked once) or failed this time.

    Raises ``GpuLost`` when NVML says the GPU is gone.
    """
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
