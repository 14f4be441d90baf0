"""The poll every ``poll_s``: one GPU's power, utilization, memory, temperature and processes.

Readings accumulate in the GPU's ``GpuState`` until the interval is booked. Without an energy
counter, the polled power is integrated here (trapezoids between consecutive readings).
"""

from __future__ import annotations

from ecoreport_agent.clock import ms
from ecoreport_agent.gpu import POWER_INTEGRATION, GpuState, read_metric
from ecoreport_agent.nvml import Nvml, NvmlError


def poll_gpu(state: GpuState, nvml: Nvml, now: float, poll_s: float) -> None:
    """Record one tick taken at monotonic ``now``; raises ``GpuLost`` if the GPU is gone."""
    handle = state.handle
    state.last_poll_mono = now
    power_mw = read_metric(state, "power", nvml.power_mw, handle)
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
                if now - t0 > max(3 * poll_s, 5.0):
                    state.pi_gap = True
                else:
                    state.pi_energy_j += (w0 + power_w) / 2.0 * (now - t0)
            state.pi_last = (now, power_w)
    rates = read_metric(state, "utilization", nvml.utilization, handle)
    if rates is not None:
        state.util.append(rates[0])
        state.mem_util.append(rates[1])
    memory = read_metric(state, "memory", nvml.memory, handle)
    if memory is not None:
        state.mem_used_mib.append(memory[1] / (1024 * 1024))
    temperature = read_metric(state, "temperature", nvml.temperature, handle)
    if temperature is not None:
        state.temperature.append(temperature)
    pids, fixed = _processes(state, nvml)
    weight = power_w if power_w is not None else (state.last_power_w or 1.0)
    state.ticks.append((weight, pids, fixed))


def _processes(state: GpuState, nvml: Nvml) -> tuple[tuple[int, ...], dict[int, float] | None]:
    """The pids on the GPU this tick, and on a MIG GPU the fraction of it each one holds."""
    if not state.mig_devices:
        procs = read_metric(state, "processes", nvml.compute_processes, state.handle)
        return tuple(sorted({p.pid for p in procs or ()})), None
    fixed: dict[int, float] = {}
    for device, fraction in state.mig_devices:
        try:
            procs = nvml.compute_processes(device)
        except NvmlError:
            continue  # an instance destroyed under us; the next discovery refreshes the list
        for proc in procs:
            fixed[proc.pid] = fixed.get(proc.pid, 0.0) + fraction / len(procs)
    return tuple(sorted(fixed)), fixed
