"""Fakes at the agent's boundaries: NVML (hardware), the clock, and the ingest server.

A module with its own name (not conftest) so test files can import it unambiguously next to
the backend's tests/conftest.py.

Nothing here imports Django or the backend: these tests also run on Python 3.9 with only the
agent installed (``pip install ./agents pytest``).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"
try:
    import ecoreport_agent  # noqa: F401
except ImportError:  # not installed: test the checkout
    sys.path.insert(0, str(AGENTS_DIR))

from ecoreport_agent.agent import Agent  # noqa: E402
from ecoreport_agent.nvml import Nvml  # noqa: E402
from ecoreport_agent.spool import Spool  # noqa: E402
from ecoreport_agent.uploader import Uploader  # noqa: E402

# 2027-01-15T08:00:00Z: a fixed, whole-hour wall clock start for the fake clock.
T0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)

NOT_SUPPORTED = 3
NOT_FOUND = 6
TIMEOUT = 10
GPU_IS_LOST = 15


class FakeClock:
    """Monotonic and wall clocks that only move when told to; ``sleep`` advances them.

    ``at(mono, fn)`` schedules a scenario step (a GPU falls off, the server comes back) at a
    monotonic instant; ``listeners`` (the fake GPUs) integrate energy over every advance.
    """

    def __init__(self, wall: float = T0, mono: float = 5000.0) -> None:
        self.mono = mono
        self.wall = wall
        self.stop = threading.Event()
        self.listeners: list[Callable[[float, float], None]] = []
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def at(self, mono: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        self._events.append((mono, self._seq, fn))
        self._events.sort()

    def advance(self, seconds: float) -> None:
        target = self.mono + seconds
        while True:
            due = [e for e in self._events if e[0] <= target]
            step_to = due[0][0] if due else target
            self._move(step_to - self.mono)
            if not due:
                return
            self._events.remove(due[0])
            due[0][2]()

    def _move(self, seconds: float) -> None:
        if seconds <= 0:
            return
        for listener in self.listeners:
            listener(self.mono, seconds)
        self.mono += seconds
        self.wall += seconds


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"fake NVML error {value}")
        self.value = value


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_limit_w: float = 700.0
    memory_mib: int = 81559
    power_w: float = 300.0
    # Power as a function of monotonic time, for ramps; overrides power_w when set.
    power_fn: Callable[[float], float] | None = None
    has_counter: bool = True
    energy_mj: float = 123_456_789.0  # the counter: since "driver load"
    util: int = 80
    mem_util: int = 40
    mem_used_mib: int = 20_000
    temperature: int = 60
    pids: list[int] = field(default_factory=list)
    # pid -> SM %; None: the GPU does not report per-process utilization.
    process_util: dict[int, int] | None = field(default_factory=dict)
    lost: bool = False
    present: bool = True
    failing: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code
    mig: list[tuple[int, list[int]]] | None = None  # [(instance memory MiB, pids)]

    def power_at(self, mono: float) -> float:
        return self.power_fn(mono) if self.power_fn else self.power_w

    def integrate(self, mono: float, seconds: float) -> None:
        # Midpoint rule: exact for constant and linear power.
        self.energy_mj += self.power_at(mono + seconds / 2) * seconds * 1000


class FakeNvml:
    """The pynvml functions the agent calls, backed by controllable FakeGpu objects."""

    NVMLError = FakeNVMLError

    def __init__(self, clock: FakeClock, gpus: list[FakeGpu]) -> None:
        self.clock = clock
        self.gpus = gpus
        clock.listeners.append(self._integrate)
        self.calls: list[str] = []

    def _integrate(self, mono: float, seconds: float) -> None:
        for gpu in self.gpus:
            gpu.integrate(mono, seconds)

    def _visible(self) -> list[FakeGpu]:
        return [g for g in self.gpus if g.present]

    def _gpu(self, handle: Any, function: str) -> FakeGpu:
        self.calls.append(function)
        gpu = handle if isinstance(handle, FakeGpu) else getattr(handle, "parent", None)
        if gpu is None:
            raise FakeNVMLError(2)
        if gpu.lost or not gpu.present:
            raise FakeNVMLError(GPU_IS_LOST)
        if function in gpu.failing:
            raise FakeNVMLError(gpu.failing[function])
        return gpu

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.00 (fake)"

    def nvmlDeviceGetCount(self) -> int:
        return len(self._visible())

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        visible = self._visible()
        if index >= len(visible):
            raise FakeNVMLError(2)
        return visible[index]

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        if isinstance(h, MigHandle):
            return f"MIG-{h.parent.uuid}-{h.slot}"
        return self._gpu(h, "uuid").uuid

    def nvmlDeviceGetName(self, h: Any) -> str:
        return self._gpu(h, "name").name

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any) -> int:
        return int(self._gpu(h, "limit").power_limit_w * 1000)

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        if isinstance(h, MigHandle):
            total = h.memory_mib * 1024 * 1024
            return _Obj(total=total, used=0, free=total)
        total = gpu.memory_mib * 1024 * 1024
        used = gpu.mem_used_mib * 1024 * 1024
        return _Obj(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        if gpu.mig is not None:
            raise FakeNVMLError(NOT_SUPPORTED)  # as on a MIG-enabled GPU
        return _Obj(gpu=gpu.util, memory=gpu.mem_util)

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetPowerUsage")
        return int(gpu.power_at(self.clock.mono) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption")
        if not gpu.has_counter:
            raise FakeNVMLError(NOT_SUPPORTED)
        return int(gpu.energy_mj)

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        gpu = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        pids = h.pids if isinstance(h, MigHandle) else gpu.pids
        return [_Obj(pid=p, usedGpuMemory=1 << 30) for p in pids]

    def nvmlDeviceGetProcessUtilization(self, h: Any, since_us: int) -> list[Any]:
        gpu = self._gpu(h, "nvmlDeviceGetProcessUtilization")
        if gpu.process_util is None:
            raise FakeNVMLError(NOT_SUPPORTED)
        now_us = int(self.clock.wall * 1e6)
        samples = [
            _Obj(pid=p, smUtil=u, memUtil=0, encUtil=0, decUtil=0, timeStamp=now_us)
            for p, u in gpu.process_util.items()
            if p in gpu.pids
        ]
        if not samples:
            raise FakeNVMLError(NOT_FOUND)
        return samples

    def nvmlDeviceGetMigMode(self, h: Any) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetMigMode")
        return [1, 1] if gpu.mig is not None else [0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetMaxMigDeviceCount")
        return 7 if gpu.mig is not None else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, slot: int) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        if gpu.mig is None or slot >= len(gpu.mig):
            raise FakeNVMLError(NOT_FOUND)
        memory_mib, pids = gpu.mig[slot]
        return MigHandle(gpu, slot, memory_mib, pids)


@dataclass
class MigHandle:
    parent: FakeGpu
    slot: int
    memory_mib: int
    pids: list[int]


class DictLabels:
    """Label source for fake pids: pid -> (project, team, user, job_id)."""

    def __init__(self, labels: dict[int, tuple[Any, ...]] | None = None) -> None:
        self.map = labels or {}

    def labels(self, pid: int) -> tuple[Any, ...]:
        return self.map.get(pid, (None, None, f"uid-{pid}", None))

    def forget_except(self, live_pids: Any) -> None:
        pass


# -- the ingest server ----------------------------------------------------------------------


class IngestState:
    """What the fake backend stored, and how it should answer next."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.samples: dict[tuple[str, str], dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.inventory: dict[str, dict[str, Any]] = {}
        # Scripted answers, consumed one per ingest request before normal processing:
        # (status, headers, body) or "store-then-500" (stores, then loses the answer).
        self.script: list[Any] = []
        self.max_samples_per_request: int | None = None  # above it: 413
        # A poison batch: the first batch id seen gets this status every time it is sent.
        self.poison_first_status: int | None = None
        self.poisoned: set[str] = set()

    def energy_by_gpu(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (gpu, _start), sample in self.samples.items():
            totals[gpu] = totals.get(gpu, 0.0) + sample["energy_j"]
        return totals


def _handler(state: IngestState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {state.token}"

        def do_GET(self) -> None:
            if self.path != "/api/v1/agent/ping":
                self._reply(404, {"error": {"code": "not_found"}})
            elif not self._authorized():
                self._reply(401, {"error": {"code": "unauthorized"}})
            else:
                self._reply(200, {"organization": "acme", "host": "gpu-node-07"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/api/v1/ingest":
                self._reply(404, {"error": {"code": "not_found"}})
                return
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
            with state.lock:
                state.requests.append(
                    {
                        "batch_id": body.get("batch_id"),
                        "n": len(body.get("samples", [])),
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                scripted = state.script.pop(0) if state.script else None
                if state.poison_first_status and not state.poisoned:
                    state.poisoned.add(body.get("batch_id"))
                if body.get("batch_id") in state.poisoned and scripted is None:
                    scripted = (state.poison_first_status, {}, {"error": {"code": "server_error"}})
            if scripted is not None and scripted != "store-then-500":
                status, headers, answer = scripted
                self._reply(status, answer, headers)
                return
            if not self._authorized():
                self._reply(401, {"error": {"code": "unauthorized"}})
                return
            if (
                state.max_samples_per_request is not None
                and len(body["samples"]) > state.max_samples_per_request
            ):
                self._reply(413, {"error": {"code": "too_large"}})
                return
            answer = self._store(body)
            if scripted == "store-then-500":
                self._reply(500, {"error": {"code": "oops"}})  # the ack is lost
                return
            self._reply(200, answer)

        def _store(self, body: dict[str, Any]) -> dict[str, Any]:
            with state.lock:
                if body["batch_id"] in state.batches:
                    return state.batches[body["batch_id"]]
                for gpu in body.get("gpus", []):
                    state.inventory[gpu["uuid"]] = gpu
                accepted = duplicates = 0
                rejected = []
                for index, sample in enumerate(body["samples"]):
                    key = (sample["gpu_uuid"], sample["start"])
                    gpu = state.inventory.get(sample["gpu_uuid"])
                    if sample["energy_j"] < 0:
                        rejected.append({"index": index, "field": "energy_j", "error": "negative"})
                        continue
                    if gpu and sample["energy_j"] > gpu["power_limit_w"] * _seconds(sample) + 1e-6:
                        rejected.append(
                            {"index": index, "field": "energy_j", "error": "above power limit"}
                        )
                        continue
                    if key in state.samples:
                        duplicates += 1
                        continue
                    state.samples[key] = sample
                    accepted += 1
                answer = {
                    "batch_id": body["batch_id"],
                    "accepted": accepted,
                    "duplicates": duplicates,
                    "rejected": rejected,
                }
                state.batches[body["batch_id"]] = answer
                return answer

    return Handler


def _seconds(sample: dict[str, Any]) -> float:
    from ecoreport_agent.clock import parse_iso_utc

    return parse_iso_utc(sample["end"]) - parse_iso_utc(sample["start"])


class IngestServer:
    """A tiny backend on 127.0.0.1 implementing the ingest contract (dedup by batch and key).

    ``down()`` closes the listening socket (connection refused), ``up()`` reopens the same port.
    """

    def __init__(self, token: str = "good-token") -> None:
        self.state = IngestState(token)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self.up()

    def up(self) -> None:
        if self._thread is not None:
            return
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self.state))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        if self._thread is None:
            return
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._thread = None
        self._httpd = None  # type: ignore[assignment]


class WrongSite:
    """A web site on 127.0.0.1 that is not EcoReport, as a mistyped ``--server`` finds one.

    Every path under ``/admin`` (Django's admin, say) redirects to its login page; the login
    page and every other path answer ``200`` with HTML, whatever the method and the token.
    ``requests`` lists ``(method, path)`` as they arrive.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _answer(self) -> None:
                site.requests.append((self.command, self.path))
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.startswith("/admin/") and not self.path.startswith("/admin/login"):
                    self.send_response(302)
                    self.send_header("Location", f"/admin/login/?next={self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                page = b"<!doctype html><title>Log in</title><form method=post></form>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            do_GET = do_POST = _answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def make_agent(
    *,
    fake: FakeNvml,
    spool: Spool,
    clock: FakeClock,
    labels: Any = None,
    server: str | None = None,
    token: str = "good-token",
    interval_s: float = 10.0,
    poll_s: float = 1.0,
    boot_id: str = "boot-a",
    **kwargs: Any,
) -> Agent:
    uploader = None
    if server is not None:
        uploader = Uploader(
            spool=spool,
            server=server,
            token=token,
            hostname="gpu-node-07",
            monotonic=clock.monotonic,
            wall=clock.time,
            rng=random.Random(7),
            batch_size=kwargs.pop("batch_size", 1000),
        )
    return Agent(
        nvml=Nvml(fake),
        spool=spool,
        labels=labels or DictLabels(),
        uploader=uploader,
        clock=clock,  # type: ignore[arg-type]
        interval_s=interval_s,
        poll_s=poll_s,
        boot_id=boot_id,
        **kwargs,
    )


def spooled(spool: Spool, gpu_uuid: str | None = None) -> list[dict[str, Any]]:
    """Every sample still in the spool (with its counter audit columns), by GPU then start."""
    query = (
        "SELECT gpu_uuid, start_s, end_s, energy_j, counter_start_mj, counter_end_mj, payload,"
        " batch_id FROM samples"
    )
    rows = spool.db.execute(query + " ORDER BY gpu_uuid, start_s").fetchall()
    out = []
    for gpu, start_s, end_s, energy_j, c0, c1, payload, batch_id in rows:
        if gpu_uuid is not None and gpu != gpu_uuid:
            continue
        out.append(
            {
                "gpu_uuid": gpu,
                "start_s": start_s,
                "end_s": end_s,
                "energy_j": energy_j,
                "counter_start_mj": c0,
                "counter_end_mj": c1,
                "payload": json.loads(payload),
                "batch_id": batch_id,
            }
        )
    return out


def agent_env(**extra: str) -> dict[str, str]:
    """Environment for an agent subprocess: the checkout importable, no stray ECOREPORT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECOREPORT_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(AGENTS_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.update(extra)
    return env
