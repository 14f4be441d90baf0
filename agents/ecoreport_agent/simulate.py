"""Simulated GPUs for demos, tests and benchmarks on machines without one.

:class:`SimulatedNvml` exposes the same functions as the ``pynvml`` module, so ``--simulate N``
runs the agent's real measurement, attribution, spool and upload code. Everything is a pure
function of (seed, host, GPU index, wall-clock time):

- power is piecewise constant over 15-minute blocks with a small 60 s ripple whose integral has
  a closed form, so the energy counter at any instant is exact and *identical in every process*:
  an agent killed and restarted sees the counter advance across its downtime, as on hardware;
- jobs (team, project, user, Slurm-style job id) start and stop on the hour, more of them by day
  (a diurnal pattern), some GPUs sit idle (60-90 W on the big ones), some jobs share a GPU, some
  hold a GPU without using it;
- the counter restarts from zero every 14 days at a per-GPU instant, like a driver reload;
- one model (a Pascal P100) has no energy counter, so the agent integrates its power instead.

:func:`simulate_history` produces the same GPUs' samples in the ingest format for any past
window, for the backend's demo seeding, without running an agent.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ecoreport_agent.attribution import Labels, attribution_entries
from ecoreport_agent.booking import split_basis
from ecoreport_agent.clock import iso_utc
from ecoreport_agent.nvml import (
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
)

BLOCK_S = 900  # power and jobs change every 15 minutes, on wall-clock boundaries
RIPPLE = 0.03  # +-3 % ripple ...
RIPPLE_CYCLES = 15  # ... with a 60 s period: a whole number of cycles per block
COUNTER_PERIOD_S = 14 * 86400  # a simulated driver reload every two weeks
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuModel:
    name: str
    power_limit_w: float
    idle_w: float
    memory_mib: int
    has_counter: bool  # Volta and newer report nvmlDeviceGetTotalEnergyConsumption
    process_util: bool  # reports per-process utilization
    mig_capable: bool


H100 = GpuModel("NVIDIA H100 80GB HBM3", 700.0, 72.0, 81559, True, True, True)
A100 = GpuModel("NVIDIA A100-SXM4-80GB", 400.0, 58.0, 81920, True, True, True)
L4 = GpuModel("NVIDIA L4", 72.0, 16.0, 23034, True, True, False)
V100 = GpuModel("Tesla V100-SXM2-32GB", 300.0, 41.0, 32768, True, True, False)
P100 = GpuModel("Tesla P100-PCIE-16GB", 250.0, 31.0, 16384, False, False, False)
# GPU i of a simulated host has model LAYOUT[i % 8]: one GPU is an H100, five include the P100.
LAYOUT = (H100, H100, A100, L4, P100, A100, H100, V100)

TEAMS = {
    "nlp": (("llm-pretrain", "chat-finetune", "embeddings"), ("alice", "bob", "chen")),
    "vision": (("detector-v2", "segmentation"), ("dana", "emre")),
    "research": (("rl-agents", "diffusion-lab", "protein-fold"), ("farah", "gus")),
}
TEAM_NAMES = tuple(TEAMS)

_MASK = (1 << 64) - 1


def _mix(*parts: int) -> int:
    """splitmix64 over the parts: a fast, stable hash (Python's hash() is salted per process)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (part & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK
        h ^= h >> 29
    return h


def _unit(*parts: int) -> float:
    return _mix(*parts) / float(1 << 64)


def _salt(text: str) -> int:
    value = 0
    for byte in text.encode():
        value = _mix(value, byte)
    return value


@dataclass(frozen=True)
class Job:
    pid: int
    labels: Labels
    util: float  # this job's share of SM activity, 0..1
    mem_fraction: float


@dataclass(frozen=True)
class Block:
    power_w: float
    util: float  # GPU utilization 0..1
    jobs: tuple[Job, ...]


class SimGpu:
    """One simulated GPU; a pure function of (seed, host, index) and time."""

    def __init__(self, seed: int, host: str, index: int) -> None:
        self.seed = seed
        self.index = index
        self.key = _mix(seed, _salt(host), index)
        self.model = LAYOUT[index % len(LAYOUT)]
        raw = uuidlib.UUID(int=(_mix(self.key, 1) << 64) | _mix(self.key, 2))
        self.uuid = f"GPU-{raw}"
        self.counter_offset_s = _unit(self.key, 3) * COUNTER_PERIOD_S
        self._blocks: dict[int, Block] = {}
        self._counter_cache: tuple[float, int, float] | None = None  # (origin, block, joules)

    # -- the schedule ---------------------------------------------------------------------------

    def block(self, b: int) -> Block:
        cached = self._blocks.get(b)
        if cached is not None:
            return cached
        if len(self._blocks) > 4096:
            self._blocks.clear()
        result = self._compute_block(b)
        self._blocks[b] = result
        return result

    def _job(self, window: int, slot: int) -> tuple[Labels, int, float, float]:
        h = _mix(self.key, 10, window, slot)
        team = TEAM_NAMES[h % len(TEAM_NAMES)]
        projects, users = TEAMS[team]
        project = projects[(h >> 8) % len(projects)]
        user = users[(h >> 16) % len(users)]
        job_id = f"slurm-{100000 + (h >> 24) % 900000}"
        pid = 2000 + (h >> 44) % 200000
        # One job in ten holds the GPU without computing: the idle waste dashboards look for.
        util = 0.02 if (h >> 40) % 10 == 0 else 0.5 + 0.45 * _unit(self.key, 11, window, slot)
        mem = 0.3 + 0.6 * _unit(self.key, 12, window, slot)
        return (project, team, user, job_id), pid, util, mem

    def _compute_block(self, b: int) -> Block:
        model = self.model
        hour_of_day = (b * BLOCK_S % 86400) / 3600.0
        daytime = 0.5 + 0.5 * math.cos(2 * math.pi * (hour_of_day - 14.0) / 24.0)
        hour, window = b // 4, b // 8  # jobs run on the hour; a job keeps its identity 2 h
        busy = _unit(self.key, 20, hour) < 0.3 + 0.55 * daytime
        # Some jobs finish early: the last quarter of their hour is idle.
        if busy and b % 4 == 3 and _unit(self.key, 21, hour) < 0.2:
            busy = False
        if not busy:
            return Block(model.idle_w * (0.95 + 0.1 * _unit(self.key, 22, b)), 0.0, ())
        jobs = []
        labels, pid, util, mem = self._job(window, 0)
        jobs.append(Job(pid, labels, util, mem))
        if _unit(self.key, 23, window) < 0.15:  # a shared GPU: a second team's job
            labels2, pid2, util2, mem2 = self._job(window, 1)
            if pid2 != pid:
                jobs.append(Job(pid2, labels2, util2 * 0.5, mem2 * 0.3))
        total_util = min(0.95, sum(j.util for j in jobs))
        jitter = 0.97 + 0.06 * _unit(self.key, 24, b)
        power = model.idle_w + (model.power_limit_w - model.idle_w) * total_util * 0.92 * jitter
        return Block(power, total_util, tuple(jobs))

    # -- power and energy -------------------------------------------------------------------

    def power_w(self, t: float) -> float:
        b = int(t // BLOCK_S)
        phase = (t - b * BLOCK_S) / BLOCK_S
        return self.block(b).power_w * (1 + RIPPLE * math.sin(2 * math.pi * RIPPLE_CYCLES * phase))

    def _block_energy(self, b: int, t0: float, t1: float) -> float:
        """Joules in [t0, t1] inside block b (closed-form integral of the ripple)."""
        base = b * BLOCK_S
        k = 2 * math.pi * RIPPLE_CYCLES / BLOCK_S
        ripple = RIPPLE / k * (math.cos(k * (t0 - base)) - math.cos(k * (t1 - base)))
        return self.block(b).power_w * ((t1 - t0) + ripple)

    def energy_between(self, t0: float, t1: float) -> float:
        total = 0.0
        t = t0
        while t < t1:
            b = int(t // BLOCK_S)
            end = min(t1, (b + 1) * BLOCK_S)
            total += self._block_energy(b, t, end)
            t = end
        return total

    def counter_origin(self, t: float) -> float:
        n = math.floor((t - self.counter_offset_s) / COUNTER_PERIOD_S)
        return n * COUNTER_PERIOD_S + self.counter_offset_s

    def counter_mj(self, t: float) -> int:
        """The energy counter: millijoules since the last simulated driver load."""
        origin = self.counter_origin(t)
        first = math.ceil(origin / BLOCK_S)  # the first whole block after the origin
        if t <= first * BLOCK_S:
            return int(self.energy_between(origin, t) * 1000)
        cache = self._counter_cache
        if cache is None or cache[0] != origin or t < cache[1] * BLOCK_S:
            cache = (origin, first, self.energy_between(origin, first * BLOCK_S))
        origin, b, joules = cache
        whole = int(t // BLOCK_S)
        while b < whole:
            joules += self._block_energy(b, b * BLOCK_S, (b + 1) * BLOCK_S)
            b += 1
        self._counter_cache = (origin, b, joules)
        return int((joules + self.energy_between(max(origin, b * BLOCK_S), t)) * 1000)


class _Value:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class SimNVMLError(Exception):
    """Shaped like ``pynvml.NVMLError``: the NVML return code is in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(f"simulated NVML error {value}")
        self.value = value


class SimulatedNvml:
    """A pynvml-compatible module object backed by :class:`SimGpu` instances."""

    NVMLError = SimNVMLError

    def __init__(
        self,
        n_gpus: int,
        *,
        seed: int = 0,
        host: str = "sim-host",
        clock: Callable[[], float] | None = None,
        kubernetes: bool = False,
    ) -> None:
        import time

        self.gpus = [SimGpu(seed, host, i) for i in range(n_gpus)]
        self.clock = clock or time.time
        self.kubernetes = kubernetes
        self.labels_by_pid: dict[int, Labels] = {}

    def _gpu(self, handle: Any) -> SimGpu:
        if not isinstance(handle, SimGpu):
            raise SimNVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return handle

    # pynvml's names, hence the camelCase.
    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.90.07 (simulated)"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimGpu:
        if not 0 <= index < len(self.gpus):
            raise SimNVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle).model.name

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        return self._gpu(handle).index

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return int(self._gpu(handle).model.power_limit_w * 1000)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> _Value:
        gpu = self._gpu(handle)
        block = gpu.block(int(self.clock() // BLOCK_S))
        total = gpu.model.memory_mib * MIB
        used = int(total * min(0.97, 0.01 + sum(j.mem_fraction for j in block.jobs)))
        return _Value(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _Value:
        gpu = self._gpu(handle)
        t = self.clock()
        block = gpu.block(int(t // BLOCK_S))
        noise = 4 * (_unit(gpu.key, 30, int(t)) - 0.5) if block.util > 0.05 else 0.0
        util = max(0, min(100, round(block.util * 100 + noise)))
        return _Value(gpu=util, memory=round(util * 0.55))

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._gpu(handle)
        return round(27 + 52 * gpu.power_w(self.clock()) / gpu.model.power_limit_w)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return int(self._gpu(handle).power_w(self.clock()) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        gpu = self._gpu(handle)
        if not gpu.model.has_counter:
            raise SimNVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.counter_mj(self.clock())

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[_Value]:
        gpu = self._gpu(handle)
        block = gpu.block(int(self.clock() // BLOCK_S))
        total = gpu.model.memory_mib * MIB
        out = []
        for job in block.jobs:
            self.labels_by_pid[job.pid] = pod_labels(job.labels) if self.kubernetes else job.labels
            out.append(_Value(pid=job.pid, usedGpuMemory=int(total * job.mem_fraction * 0.9)))
        return out

    def nvmlDeviceGetProcessUtilization(self, handle: Any, since_us: int) -> list[_Value]:
        gpu = self._gpu(handle)
        if not gpu.model.process_util:
            raise SimNVMLError(NVML_ERROR_NOT_SUPPORTED)
        t = self.clock()
        now_us = int(t * 1e6)
        block = gpu.block(int(t // BLOCK_S))
        if not block.jobs or now_us <= since_us:
            raise SimNVMLError(NVML_ERROR_NOT_FOUND)
        return [
            _Value(
                pid=j.pid,
                timeStamp=now_us,
                smUtil=round(j.util * 100),
                memUtil=0,
                encUtil=0,
                decUtil=0,
            )
            for j in block.jobs
        ]

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        if not self._gpu(handle).model.mig_capable:
            raise SimNVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        return 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        raise SimNVMLError(NVML_ERROR_NOT_FOUND)

    def __getattr__(self, name: str) -> Any:
        # Any other pynvml function: "this driver does not have it", as old drivers answer.
        if name.startswith("nvml"):

            def missing(*args: Any) -> Any:
                raise SimNVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)

            return missing
        raise AttributeError(name)


def simulated_pod(labels: Labels) -> Any:
    """The Kubernetes pod a simulated job runs as (``--simulate N --kubernetes``): a Job's pod in
    the team's namespace, or, for one job in three, in a ``shared-gpu`` namespace with the team
    given by the ``ecoreport.io/team`` label; ``ecoreport.io/project`` names the project."""
    from ecoreport_agent.kubernetes import Pod

    project, team, _user, job_id = labels
    number = (job_id or "0").rsplit("-", 1)[-1]
    h = _mix(_salt(job_id or ""), 40)
    pod_labels = {"app.kubernetes.io/name": project or "job", "ecoreport.io/project": project or ""}
    namespace = team or "default"
    if h % 3 == 0:
        namespace = "shared-gpu"
        pod_labels["ecoreport.io/team"] = team or ""
    job = f"{project}-{number}"
    suffix = "".join("abcdefghijklmnopqrstuvwxyz0123456789"[(h >> (6 * k)) % 36] for k in range(5))
    pod_labels["batch.kubernetes.io/job-name"] = job
    return Pod(
        uid=str(uuidlib.UUID(int=(h << 64) | _mix(h, 41))),
        namespace=namespace,
        name=f"{job}-{suffix}",
        labels=pod_labels,
        owner_kind="Job",
        owner_name=job,
    )


def pod_labels(labels: Labels) -> Labels:
    """A simulated job's labels as the Kubernetes mapping gives them (no user: pods have none)."""
    from ecoreport_agent.kubernetes import LabelMapping

    return LabelMapping().labels(simulated_pod(labels))


class SimulatedLabels:
    """Label source for simulated processes (their 'environment' is the job's labels)."""

    def __init__(self, sim: SimulatedNvml) -> None:
        self.sim = sim

    def labels(self, pid: int) -> Labels:
        return self.sim.labels_by_pid.get(pid, (None, None, None, None))

    def forget_except(self, live_pids: Any) -> None:
        pass


def simulated_inventory(
    n_gpus: int, *, seed: int = 0, host: str = "sim-host"
) -> list[dict[str, Any]]:
    """The ``gpus`` inventory of a simulated host, as the ingest API expects it."""
    return [_inventory(SimGpu(seed, host, i)) for i in range(n_gpus)]


def _inventory(gpu: SimGpu) -> dict[str, Any]:
    return {
        "uuid": gpu.uuid,
        "index": gpu.index,
        "name": gpu.model.name,
        "memory_total_mib": gpu.model.memory_mib,
        "power_limit_w": gpu.model.power_limit_w,
    }


def _epoch(value: dt.datetime | float) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("simulate_history needs timezone-aware datetimes")
        return value.timestamp()
    return float(value)


def simulate_history(
    n_gpus: int,
    start: dt.datetime | float,
    end: dt.datetime | float,
    step_s: float = 300.0,
    seed: int = 0,
    host: str = "sim-host",
) -> Iterator[dict[str, Any]]:
    """Samples of ``n_gpus`` simulated GPUs over [start, end), in the ingest API's format.

    Windows are ``step_s`` long (<= 3600), contiguous per GPU; energy is the exact integral of
    the simulated power (what the counter would show); attribution is the energy-weighted split
    among the jobs that ran; utilization and memory are duration-weighted means.
    """
    if not 0 < step_s <= 3600:
        raise ValueError("step_s must be in (0, 3600]")
    t_start, t_end = _epoch(start), _epoch(end)
    gpus = [SimGpu(seed, host, i) for i in range(n_gpus)]
    t = t_start
    while t < t_end:
        t_next = min(t_end, t + step_s)
        for gpu in gpus:
            yield _history_sample(gpu, t, t_next)
        t = t_next


def _history_sample(gpu: SimGpu, t0: float, t1: float) -> dict[str, Any]:
    energy = 0.0
    shares: dict[Labels, float] = {}
    util_s = mem_s = temp_s = 0.0
    peak = 0.0
    shared = by_util = 0  # blocks with several jobs; of them, divided by the jobs' utilization
    t = t0
    while t < t1:
        b = int(t // BLOCK_S)
        piece_end = min(t1, (b + 1) * BLOCK_S)
        block = gpu.block(b)
        e = gpu._block_energy(b, t, piece_end)
        energy += e
        total_util = sum(j.util for j in block.jobs)
        if len(block.jobs) > 1:
            shared += 1
            by_util += total_util > 0
        for job in block.jobs:
            weight = job.util / total_util if total_util > 0 else 1 / len(block.jobs)
            shares[job.labels] = shares.get(job.labels, 0.0) + e * weight
        d = piece_end - t
        util_s += block.util * 100 * d
        mem_s += min(0.97, 0.01 + sum(j.mem_fraction for j in block.jobs)) * d
        temp_s += (27 + 52 * block.power_w / gpu.model.power_limit_w) * d
        peak = max(peak, block.power_w * (1 + RIPPLE))
        t = piece_end
    duration = t1 - t0
    energy_j = round(energy, 3)
    sample = {
        "gpu_uuid": gpu.uuid,
        "start": iso_utc(t0),
        "end": iso_utc(t1),
        "energy_j": energy_j,
        "method": "counter" if gpu.model.has_counter else "power_integration",
        "gpu_util_pct": round(util_s / duration, 2),
        "mem_util_pct": round(util_s / duration * 0.55, 2),
        "mem_used_mib": int(gpu.model.memory_mib * mem_s / duration),
        "power_max_w": round(peak, 1),
        "temperature_c": round(temp_s / duration, 1),
        "attribution": attribution_entries(
            {k: v / energy for k, v in shares.items()} if energy > 0 else {}
        ),
    }
    if sample["attribution"]:
        # How the energy was divided, as the agent's booking says it (absent when idle).
        sample["split"] = split_basis(shared, by_util)
    return sample
