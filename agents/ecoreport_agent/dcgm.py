"""dcgm-exporter as the measurement source (``ecoreport-agent run --source dcgm --dcgm-url``).

:class:`DcgmExporter` exposes the pynvml functions the agent calls, answered from the
exporter's Prometheus text exposition, so the measurement loop, booking, resume, spool and
uploader are the NVML path's, with its guarantees:

- energy is ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (millijoules since the driver loaded, a
  counter) per GPU ``UUID``: a counter that goes back (driver reload) books nothing for that
  interval; a restarted agent books the counter's advance across its downtime once (``resume``);
- without the counter, ``DCGM_FI_DEV_POWER_USAGE`` (W) is integrated, as on pre-Volta GPUs;
- an exporter that does not answer is a transient failure (the interval's baseline is kept, so
  the next good read covers the outage; nothing is made up); a GPU missing from an answer that
  lists others is lost, and its advance is booked when it is back;
- MIG: dcgm-exporter repeats the physical GPU's energy on every instance's series; energy stays
  per physical GPU (one counter per ``UUID``, never summed over instances);
- processes are the pods dcgm-exporter names (``namespace``/``pod``/``container`` labels in
  Kubernetes mode, ``hpc_job`` with its Slurm mapping), each a stable pseudo-pid. Several pods on
  one GPU (time-slicing) split its energy by their own ``DCGM_FI_DEV_GPU_UTIL`` when the exporter
  gives them different values (per-pod figures), and evenly when it repeats one device-level
  value for all of them (NVIDIA/dcgm-exporter #307, #587) -- equal weights are an even split.
  Each sample says which in its ``split`` (``utilization``, ``even``, or ``single`` for one pod):
  the utilization figures answer ``nvmlDeviceGetProcessUtilization`` only when they differ, so
  booking sees what the NVML path would (``booking.split_basis``).

Scrapes are shared: one HTTP request answers every call made within ``max_age_s``.
"""

from __future__ import annotations

import collections
import logging
import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from ecoreport_agent.attribution import LABEL_SHORT_MAX_CHARS, Labels, clean_label
from ecoreport_agent.kubernetes import LabelMapping, Pod, PodDirectory
from ecoreport_agent.nvml import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_TIMEOUT,
)

log = logging.getLogger("ecoreport_agent.dcgm")

ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER = "DCGM_FI_DEV_POWER_USAGE"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
MEM_UTIL = "DCGM_FI_DEV_MEM_COPY_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
TEMPERATURE = "DCGM_FI_DEV_GPU_TEMP"
WANTED = frozenset({ENERGY, POWER, GPU_UTIL, MEM_UTIL, FB_USED, FB_FREE, TEMPERATURE})
# Pseudo-pids for pods: above Linux's largest pid_max (2^22), so never a real process.
PSEUDO_PID_BASE = 1 << 23
MIB = 1024 * 1024

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_exposition(text: str, wanted: frozenset[str] = WANTED) -> list[tuple[str, dict, float]]:
    """(metric, labels, value) of each sample line of Prometheus text exposition whose metric
    is ``wanted``; comments, other metrics and unparsable lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_end = line.find("{")
        name = line[: name_end if name_end >= 0 else line.find(" ")].strip()
        if name not in wanted:
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = {}
        for key, raw in _LABEL.findall(match.group(2) or ""):
            labels[key] = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], raw)
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        out.append((name, labels, value))
    return out


@dataclass
class GpuSeries:
    uuid: str
    index: int
    name: str
    values: dict[str, float]  # the physical GPU's metric -> value (first series seen)
    pods: dict[tuple[str, str, str, str], float | None]  # pod key -> its own GPU_UTIL


class DcgmError(Exception):
    """Shaped like ``pynvml.NVMLError``: the NVML return code is in ``value``."""

    def __init__(self, value: int, message: str = "") -> None:
        super().__init__(message or f"dcgm-exporter error {value}")
        self.value = value


class _Value:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class DcgmExporter:
    """A pynvml-compatible module object answered from dcgm-exporter's ``/metrics``."""

    NVMLError = DcgmError

    def __init__(
        self,
        url: str,
        *,
        max_age_s: float = 0.5,
        timeout_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        fetch: Callable[[str, float], str] | None = None,
    ) -> None:
        self.url = url
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.monotonic = monotonic
        self.wall = wall
        self.fetch = fetch or _http_get
        self.scrapes = 0
        self._gpus: dict[str, GpuSeries] = {}
        self._order: list[str] = []
        self._error: str | None = None
        self._at = -float("inf")
        self._pids: dict[tuple[str, str, str, str], int] = {}
        self.labels_by_pid: dict[int, tuple[str, str, str, str]] = {}
        # uuid -> (wall µs, pid, util) samples since the agent last asked
        self._util: dict[str, collections.deque[tuple[int, int, float]]] = {}

    # -- scraping ---------------------------------------------------------------------------

    def _scrape(self) -> None:
        now = self.monotonic()
        if now - self._at < self.max_age_s:
            if self._error is not None:
                raise DcgmError(NVML_ERROR_TIMEOUT, self._error)
            return
        self._at = now
        self.scrapes += 1
        try:
            text = self.fetch(self.url, self.timeout_s)
        except (OSError, ValueError) as exc:
            if self._error is None:
                log.warning("dcgm.scrape_failed url=%s error=%r", self.url, str(exc))
            self._error = f"dcgm-exporter at {self.url} did not answer: {exc}"
            raise DcgmError(NVML_ERROR_TIMEOUT, self._error) from exc
        if self._error is not None:
            log.info("dcgm.scrape_ok url=%s", self.url)
        self._error = None
        self._ingest(parse_exposition(text))

    def _ingest(self, samples: Iterable[tuple[str, dict, float]]) -> None:
        gpus: dict[str, GpuSeries] = {}
        for metric, labels, value in samples:
            gpu_uuid = labels.get("UUID")
            if not gpu_uuid:
                continue
            gpu = gpus.get(gpu_uuid)
            if gpu is None:
                try:
                    index = int(labels.get("gpu", len(gpus)))
                except ValueError:
                    index = len(gpus)
                gpu = GpuSeries(gpu_uuid, index, labels.get("modelName", ""), {}, {})
                gpus[gpu_uuid] = gpu
            # MIG instances and time-sliced pods repeat the physical GPU's values: first wins.
            gpu.values.setdefault(metric, value)
            key = _pod_key(labels)
            if key is not None:
                if metric == GPU_UTIL:
                    gpu.pods[key] = value
                else:
                    gpu.pods.setdefault(key, None)
        self._gpus = gpus
        self._order = sorted(gpus, key=lambda u: (gpus[u].index, u))
        stamp = int(self.wall() * 1e6)
        for gpu in gpus.values():
            utils = [u for u in gpu.pods.values() if u is not None]
            if len(gpu.pods) < 2 or len(utils) < len(gpu.pods) or len(set(utils)) < 2:
                continue  # one pod, or one device-level value repeated: no per-pod figure
            ring = self._util.setdefault(gpu.uuid, collections.deque(maxlen=64))
            for key, util in gpu.pods.items():
                ring.append((stamp, self._pid(key), float(util or 0.0)))

    def _pid(self, key: tuple[str, str, str, str]) -> int:
        pid = self._pids.get(key)
        if pid is None:
            pid = PSEUDO_PID_BASE + len(self._pids)
            self._pids[key] = pid
            self.labels_by_pid[pid] = key
        return pid

    def _gpu(self, handle: Any) -> GpuSeries:
        if not isinstance(handle, str):
            raise DcgmError(NVML_ERROR_INVALID_ARGUMENT)
        self._scrape()
        gpu = self._gpus.get(handle)
        if gpu is None:
            raise DcgmError(NVML_ERROR_GPU_IS_LOST, f"{handle} is no longer exported")
        return gpu

    def _metric(self, handle: Any, metric: str) -> float:
        value = self._gpu(handle).values.get(metric)
        if value is None:
            raise DcgmError(NVML_ERROR_NOT_SUPPORTED, f"{metric} is not exported")
        return value

    # -- pynvml's names ---------------------------------------------------------------------

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return f"dcgm-exporter at {self.url}"

    def nvmlDeviceGetCount(self) -> int:
        self._scrape()
        return len(self._order)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self._scrape()
        if not 0 <= index < len(self._order):
            raise DcgmError(NVML_ERROR_INVALID_ARGUMENT)
        return self._order[index]

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle).name

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> _Value:
        values = self._gpu(handle).values
        used = int(values.get(FB_USED, 0.0) * MIB)
        free = int(values.get(FB_FREE, 0.0) * MIB)
        return _Value(total=used + free, used=used, free=free)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _Value:
        gpu = self._metric(handle, GPU_UTIL)
        memory = self._gpu(handle).values.get(MEM_UTIL, 0.0)
        return _Value(gpu=round(gpu), memory=round(memory))

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return round(self._metric(handle, TEMPERATURE))

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return round(self._metric(handle, POWER) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        return int(self._metric(handle, ENERGY))

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        raise DcgmError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[_Value]:
        gpu = self._gpu(handle)
        return [_Value(pid=self._pid(key), usedGpuMemory=None) for key in gpu.pods]

    def nvmlDeviceGetProcessUtilization(self, handle: Any, since_us: int) -> list[_Value]:
        self._gpu(handle)
        ring = self._util.get(handle)
        samples = [s for s in ring or () if s[0] > since_us]
        if not samples:
            raise DcgmError(NVML_ERROR_NOT_FOUND)
        return [_Value(pid=pid, smUtil=util, timeStamp=stamp) for stamp, pid, util in samples]

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        # Instances are not separate energy meters: the physical GPU is measured as one.
        raise DcgmError(NVML_ERROR_NOT_SUPPORTED)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml"):

            def missing(*args: Any) -> Any:
                raise DcgmError(NVML_ERROR_NOT_SUPPORTED)

            return missing
        raise AttributeError(name)


def _pod_key(labels: dict) -> tuple[str, str, str, str] | None:
    """(namespace, pod, container, hpc_job) of a series, or None when it names no workload."""
    pod = labels.get("pod") or labels.get("exported_pod") or ""
    namespace = labels.get("namespace") or labels.get("exported_namespace") or ""
    container = labels.get("container") or labels.get("exported_container") or ""
    job = labels.get("hpc_job") or ""
    if not pod and not job:
        return None
    return (namespace, pod, container, job)


def _http_get(url: str, timeout_s: float) -> str:
    # The URL is the operator's configured exporter address.
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
        return reply.read().decode("utf-8", "replace")


_DEPLOYMENT_POD = re.compile(
    r"-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$"
)


class DcgmLabels:
    """Labels of dcgm-exporter's pods: the Kubernetes mapping from namespace and pod name (the
    exporter gives no pod labels or owners), ``hpc_job`` as a Slurm job id."""

    def __init__(
        self,
        exporter: DcgmExporter,
        mapping: LabelMapping | None = None,
        directory: PodDirectory | None = None,
    ) -> None:
        self.exporter = exporter
        self.mapping = mapping or LabelMapping()
        # With --kubernetes too: the pod's labels and owner from the kubelet, by name.
        self.directory = directory
        self._cache: dict[int, Labels] = {}

    def labels(self, pid: int) -> Labels:
        cached = self._cache.get(pid)
        if cached is not None:
            return cached
        key = self.exporter.labels_by_pid.get(pid)
        if key is None:
            return (None, None, None, None)
        namespace, pod, _container, job = key
        project = team = job_id = None
        listed = self.directory.find(namespace, pod) if self.directory and pod else None
        if listed is not None:
            project, team, _user, job_id = self.mapping.labels(listed)
        elif pod:
            # No owner is exported: a Deployment's pod (<name>-<template hash>-<suffix>) is
            # recognised by Kubernetes' alphabet for generated names.
            name = _DEPLOYMENT_POD.sub("", pod)
            project, team, _user, _ = self.mapping.labels(
                Pod(uid="", namespace=namespace or "default", name=name)
            )
            job_id = clean_label(f"{namespace}/{pod}", LABEL_SHORT_MAX_CHARS)
        if job:
            job_id = clean_label("slurm-" + job, LABEL_SHORT_MAX_CHARS)
        labels = (project, team, None, job_id)
        self._cache[pid] = labels
        return labels

    def forget_except(self, live_pids: Iterable[int]) -> None:
        live = set(live_pids)
        self._cache = {pid: labels for pid, labels in self._cache.items() if pid in live}
