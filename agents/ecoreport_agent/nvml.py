"""A thin wrapper over the pynvml module (``nvidia-ml-py``).

The wrapper takes the *module* as an argument: the real ``pynvml``, the simulator
(:mod:`ecoreport_agent.simulate`) or a test's fake all expose the same functions, so every code
path above this file is the one that runs on real hardware. It also counts calls per function,
which the overhead benchmark reports.
"""

from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass
from typing import Any

# NVML return codes (nvml.h). Copied so fakes need not carry pynvml's constants.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0

# Errors after which the handle is no longer trustworthy: the GPU fell off the bus, was reset,
# or the driver went away. The agent drops the GPU and looks for it again later by UUID.
LOST_CODES = frozenset(
    {
        NVML_ERROR_UNINITIALIZED,
        NVML_ERROR_INVALID_ARGUMENT,
        NVML_ERROR_GPU_IS_LOST,
        NVML_ERROR_RESET_REQUIRED,
        NVML_ERROR_DRIVER_NOT_LOADED,
        NVML_ERROR_UNKNOWN,
    }
)
# "This GPU cannot do that": stop asking for the rest of the run.
UNSUPPORTED_CODES = frozenset({NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND})

MISSING_SENTENCE = (
    "NVML is not available ({reason}): install the NVIDIA driver (it provides libnvidia-ml.so) "
    "or run with --simulate N to use N simulated GPUs."
)


class NvmlError(Exception):
    """An NVML call failed. ``code`` is the NVML return code, ``function`` the call."""

    def __init__(self, function: str, code: int, message: str = "") -> None:
        super().__init__(f"{function} failed: {message or 'NVML error'} (code {code})")
        self.function = function
        self.code = code

    @property
    def lost(self) -> bool:
        return self.code in LOST_CODES

    @property
    def unsupported(self) -> bool:
        return self.code in UNSUPPORTED_CODES


class NvmlUnavailable(Exception):
    """No NVML: bindings, library or driver missing. ``str()`` says what to do."""


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    used_memory_bytes: int | None


@dataclass(frozen=True)
class ProcessUtil:
    pid: int
    sm_util: int
    timestamp_us: int


def load_pynvml() -> Any:
    """Import the real bindings and initialise NVML, or raise :class:`NvmlUnavailable`."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a declared dependency
        raise NvmlUnavailable(
            MISSING_SENTENCE.format(reason=f"the nvidia-ml-py package is missing: {exc}")
        ) from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(MISSING_SENTENCE.format(reason=str(exc))) from exc
    except OSError as exc:  # a broken libnvidia-ml.so
        raise NvmlUnavailable(MISSING_SENTENCE.format(reason=str(exc))) from exc
    return pynvml


def _text(value: Any) -> str:
    # nvidia-ml-py before 11.515 returned bytes for names and UUIDs.
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """The NVML calls the agent makes, with error translation and call counting."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self._error_type = getattr(lib, "NVMLError", Exception)
        self.calls: collections.Counter[str] = collections.Counter()

    def _call(self, function: str, *args: Any) -> Any:
        self.calls[function] += 1
        try:
            return getattr(self.lib, function)(*args)
        except self._error_type as exc:
            code = getattr(exc, "value", NVML_ERROR_UNKNOWN)
            raise NvmlError(function, code if isinstance(code, int) else -1, str(exc)) from exc

    def shutdown(self) -> None:
        with contextlib.suppress(NvmlError):
            self._call("nvmlShutdown")

    def driver_version(self) -> str:
        return _text(self._call("nvmlSystemGetDriverVersion"))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def uuid(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetUUID", handle))

    def name(self, handle: Any) -> str:
        return _text(self._call("nvmlDeviceGetName", handle))

    def memory(self, handle: Any) -> tuple[int, int]:
        """(total, used) in bytes."""
        info = self._call("nvmlDeviceGetMemoryInfo", handle)
        return int(info.total), int(info.used)

    def utilization(self, handle: Any) -> tuple[int, int]:
        """(gpu %, memory-controller %) averaged by the driver over its last sample period."""
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        return int(rates.gpu), int(rates.memory)

    def temperature(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU))

    def power_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", handle))

    def energy_mj(self, handle: Any) -> int:
        """Total energy since the driver was loaded, millijoules (Volta and newer)."""
        return int(self._call("nvmlDeviceGetTotalEnergyConsumption", handle))

    def power_limit_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetEnforcedPowerLimit", handle))

    def compute_processes(self, handle: Any) -> list[ProcessInfo]:
        procs = self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        return [ProcessInfo(int(p.pid), getattr(p, "usedGpuMemory", None)) for p in procs]

    def process_utilization(self, handle: Any, since_us: int) -> list[ProcessUtil]:
        """Per-process SM utilization samples newer than ``since_us`` (CPU timestamp, µs).

        NVML answers NOT_FOUND when there is no sample newer than ``since_us``; that is "no data",
        not a failure.
        """
        try:
            samples = self._call("nvmlDeviceGetProcessUtilization", handle, since_us)
        except NvmlError as exc:
            if exc.code == NVML_ERROR_NOT_FOUND:
                return []
            raise
        return [ProcessUtil(int(s.pid), int(s.smUtil), int(s.timeStamp)) for s in samples]

    def mig_enabled(self, handle: Any) -> bool:
        try:
            current, _pending = self._call("nvmlDeviceGetMigMode", handle)
        except NvmlError as exc:
            if exc.unsupported:
                return False
            raise
        return bool(current)

    def mig_devices(self, handle: Any) -> list[Any]:
        count = int(self._call("nvmlDeviceGetMaxMigDeviceCount", handle))
        devices = []
        for slot in range(count):
            try:
                devices.append(self._call("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot))
            except NvmlError as exc:
                # Empty slots answer NOT_FOUND; anything else is a real error.
                if exc.code not in (NVML_ERROR_NOT_FOUND, NVML_ERROR_INVALID_ARGUMENT):
                    raise
        return devices
