"""dcgm-exporter as the source: a local HTTP server serving its text exposition, whose energy
counter is an exact function of (fake) time, drives the real agent loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from agent_fakes import make_agent, spooled
from ecoreport_agent.agent import Agent
from ecoreport_agent.dcgm import DcgmExporter, DcgmLabels, parse_exposition
from ecoreport_agent.nvml import Nvml

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"


class FakeExporter:
    """dcgm-exporter's /metrics. GPU g's counter is ``base_mj + watts * (t - t0) * 1000`` at
    wall time t (from the reset instant on, if any); ``up``/``gpus``/``pods`` are switches."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.t0 = clock.time()
        self.watts = {UUID_A: 300.0, UUID_B: 120.0}
        self.base_mj = {UUID_A: 5_000_000.0, UUID_B: 9_000_000.0}
        self.reset_at: dict[str, float] = {}
        self.gpus = [UUID_A, UUID_B]
        # uuid -> [(namespace, pod, util or None for "device value repeated")]
        self.pods: dict[str, list[tuple[str, str, float | None]]] = {}
        self.mig: set[str] = set()
        self.up = True
        self.requests = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                exporter.requests += 1
                if not exporter.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counter_mj(self, gpu: str, t: float) -> int:
        reset = self.reset_at.get(gpu)
        if reset is not None and t >= reset:
            return int(self.watts[gpu] * (t - reset) * 1000)
        return int(self.base_mj[gpu] + self.watts[gpu] * (t - self.t0) * 1000)

    def text(self) -> str:
        t = self.clock.time()
        lines = [
            "# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
            "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter",
        ]
        for index, gpu in enumerate(self.gpus):
            series: list[tuple[str, float | None]] = []
            for namespace, pod, util in self.pods.get(gpu, []):
                series.append((f',namespace="{namespace}",pod="{pod}",container="main"', util))
            if not series:
                series = [("", None)]
            if gpu in self.mig:
                series = [
                    (f',GPU_I_PROFILE="3g.40gb",GPU_I_ID="{i}"' + extra, util)
                    for i, (extra, util) in enumerate(series * 2)
                ]
            common = f'gpu="{index}",UUID="{gpu}",device="nvidia{index}",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"'
            for extra, util in series:
                labels = "{" + common + extra + "}"
                lines.append(
                    f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{labels} {self.counter_mj(gpu, t)}"
                )
                lines.append(f"DCGM_FI_DEV_POWER_USAGE{labels} {self.watts[gpu]:.3f}")
                lines.append(f"DCGM_FI_DEV_GPU_UTIL{labels} {80 if util is None else util}")
                lines.append(f"DCGM_FI_DEV_FB_USED{labels} 20000")
                lines.append(f"DCGM_FI_DEV_FB_FREE{labels} 61559")
                lines.append(f"DCGM_FI_DEV_GPU_TEMP{labels} 61")
                lines.append(f"DCGM_FI_DEV_SM_CLOCK{labels} 1980")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter(clock) -> Iterator[FakeExporter]:
    e = FakeExporter(clock)
    yield e
    e.close()


def dcgm_agent(exporter: FakeExporter, clock, spool, **kw: Any) -> Agent:
    source = DcgmExporter(exporter.url, monotonic=clock.monotonic, wall=clock.time)
    agent = make_agent(fake=source, spool=spool, clock=clock, labels=DcgmLabels(source), **kw)  # type: ignore[arg-type]
    return agent


def booked_mj(spool, gpu: str) -> int:
    return sum(round(s["energy_j"] * 1000) for s in spooled(spool, gpu))


def test_parse_exposition_reads_labels_with_escapes_and_skips_the_rest():
    text = (
        "# HELP x\n"
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",pod="a\\"b",namespace="n\\\\s"} 42 1700000000000\n'
        'DCGM_FI_DEV_SM_CLOCK{gpu="0"} 1\n'
        "DCGM_FI_DEV_GPU_TEMP 55\n"
        "garbage line\n"
    )
    assert parse_exposition(text) == [
        (
            "DCGM_FI_DEV_GPU_UTIL",
            {"gpu": "0", "UUID": "GPU-1", "pod": 'a"b', "namespace": "n\\s"},
            42.0,
        ),
        ("DCGM_FI_DEV_GPU_TEMP", {}, 55.0),
    ]


def test_energy_per_gpu_is_the_counters_advance(exporter, clock, spool):
    start = clock.time()
    agent = dcgm_agent(exporter, clock, spool)
    agent.run(max_cycles=4)
    for gpu in (UUID_A, UUID_B):
        samples = spooled(spool, gpu)
        assert samples[0]["payload"]["method"] == "counter"
        first, last = samples[0]["start_s"], samples[-1]["end_s"]
        assert first == pytest.approx(start, abs=1e-3)
        assert booked_mj(spool, gpu) == exporter.counter_mj(gpu, last) - exporter.counter_mj(
            gpu, first
        )
    # One scrape answers all the calls of a poll tick, for both GPUs.
    assert exporter.requests <= 45


def test_time_sliced_pods_split_evenly_when_the_exporter_repeats_one_value(exporter, clock, spool):
    exporter.pods[UUID_A] = [("nlp", "train-abcde", None), ("vision", "detector-0", None)]
    agent = dcgm_agent(exporter, clock, spool)
    agent.run(max_cycles=2)
    entries = spooled(spool, UUID_A)[-1]["payload"]["attribution"]
    assert {(e["team"], e["project"], e["job_id"]): e["share"] for e in entries} == {
        ("nlp", "train", "nlp/train-abcde"): 0.5,
        ("vision", "detector-0", "vision/detector-0"): 0.5,
    }
    # The sample says how: dcgm-exporter gave no per-pod figures to split by.
    assert {s["payload"].get("split") for s in spooled(spool, UUID_A)} == {"even"}


def test_time_sliced_pods_split_by_their_own_utilization(exporter, clock, spool):
    exporter.pods[UUID_A] = [("nlp", "train-abcde", 60.0), ("vision", "detector-0", 20.0)]
    agent = dcgm_agent(exporter, clock, spool)
    agent.run(max_cycles=2)
    entries = spooled(spool, UUID_A)[-1]["payload"]["attribution"]
    assert {e["team"]: e["share"] for e in entries} == {"nlp": 0.75, "vision": 0.25}
    assert {s["payload"].get("split") for s in spooled(spool, UUID_A)} == {"utilization"}


def test_one_pod_on_a_gpu_is_a_single_split_and_an_idle_gpu_says_none(exporter, clock, spool):
    exporter.pods[UUID_A] = [("nlp", "train-abcde", 60.0)]
    agent = dcgm_agent(exporter, clock, spool)
    agent.run(max_cycles=2)
    assert {s["payload"].get("split") for s in spooled(spool, UUID_A)} == {"single"}
    # GPU B runs no pod: idle energy, nothing divided, no split sent.
    assert all("split" not in s["payload"] for s in spooled(spool, UUID_B))


def test_hpc_job_maps_to_the_slurm_job_id(clock):
    text = f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{UUID_A}",hpc_job="4242"}} 90\n'
    source = DcgmExporter("http://unused", monotonic=clock.monotonic, fetch=lambda url, t: text)
    (proc,) = source.nvmlDeviceGetComputeRunningProcesses(UUID_A)
    assert DcgmLabels(source).labels(proc.pid) == (None, None, None, "slurm-4242")


def test_exporter_outage_loses_and_doubles_nothing(exporter, clock, spool):
    start = clock.time()
    agent = dcgm_agent(exporter, clock, spool)

    def down() -> None:
        exporter.up = False

    def up() -> None:
        exporter.up = True

    clock.at(clock.mono + 12.5, down)
    clock.at(clock.mono + 47.5, up)
    agent.run(max_cycles=8)
    for gpu in (UUID_A, UUID_B):
        samples = spooled(spool, gpu)
        # Contiguous: the outage's energy is in the first interval booked after it.
        for a, b in zip(samples, samples[1:]):
            assert b["start_s"] == pytest.approx(a["end_s"], abs=1e-3)
        assert samples[0]["start_s"] == pytest.approx(start, abs=1e-3)
        assert max(s["end_s"] - s["start_s"] for s in samples) >= 30  # the outage, booked once
        end = samples[-1]["end_s"]
        assert booked_mj(spool, gpu) == exporter.counter_mj(gpu, end) - exporter.counter_mj(
            gpu, start
        )


def test_counter_reset_books_nothing_made_up(exporter, clock, spool):
    start = clock.time()
    agent = dcgm_agent(exporter, clock, spool)
    reset = start + 25.0
    exporter.reset_at[UUID_A] = reset
    agent.run(max_cycles=6)
    samples = spooled(spool, UUID_A)
    before = [s for s in samples if s["end_s"] <= reset]
    after = [s for s in samples if s["start_s"] >= reset]
    assert len(before) + len(after) == len(samples)  # the interval holding the reset: not booked
    assert sum(round(s["energy_j"] * 1000) for s in before) == exporter.counter_mj(
        UUID_A, before[-1]["end_s"]
    ) - exporter.counter_mj(UUID_A, start)
    assert sum(round(s["energy_j"] * 1000) for s in after) == exporter.counter_mj(
        UUID_A, after[-1]["end_s"]
    ) - exporter.counter_mj(UUID_A, after[0]["start_s"])


def test_gpu_that_disappears_and_returns_has_its_advance_booked_once(exporter, clock, spool):
    start = clock.time()
    agent = dcgm_agent(exporter, clock, spool, rediscover_s=10.0)

    def gone() -> None:
        exporter.gpus = [UUID_A]

    def back() -> None:
        exporter.gpus = [UUID_A, UUID_B]

    clock.at(clock.mono + 14.5, gone)
    clock.at(clock.mono + 41.5, back)
    agent.run(max_cycles=8)
    assert UUID_B in agent.gpus
    samples = spooled(spool, UUID_B)
    assert max(s["end_s"] - s["start_s"] for s in samples) >= 20  # booked on its return
    for a, b in zip(samples, samples[1:]):
        assert b["start_s"] == pytest.approx(a["end_s"], abs=1e-3)
    assert booked_mj(spool, UUID_B) == exporter.counter_mj(
        UUID_B, samples[-1]["end_s"]
    ) - exporter.counter_mj(UUID_B, start)


def test_restart_after_downtime_books_the_advance_once(exporter, clock, spool):
    start = clock.time()
    first = dcgm_agent(exporter, clock, spool)
    first.run(max_cycles=3)  # a killed agent leaves the same: its last booked reading
    clock.advance(95.0)  # down for 95 s
    second = dcgm_agent(exporter, clock, spool)
    second.run(max_cycles=3)
    for gpu in (UUID_A, UUID_B):
        samples = spooled(spool, gpu)
        assert max(s["end_s"] - s["start_s"] for s in samples) >= 95
        for a, b in zip(samples, samples[1:]):
            assert b["start_s"] == pytest.approx(a["end_s"], abs=1e-3)
        assert booked_mj(spool, gpu) == exporter.counter_mj(
            gpu, samples[-1]["end_s"]
        ) - exporter.counter_mj(gpu, start)


def test_mig_energy_stays_per_physical_gpu(exporter, clock, spool):
    exporter.mig.add(UUID_A)
    exporter.pods[UUID_A] = [("nlp", "a-abcde", None), ("vision", "b-abcde", None)]
    start = clock.time()
    agent = dcgm_agent(exporter, clock, spool)
    agent.run(max_cycles=3)
    samples = spooled(spool, UUID_A)
    assert booked_mj(spool, UUID_A) == exporter.counter_mj(
        UUID_A, samples[-1]["end_s"]
    ) - exporter.counter_mj(UUID_A, start)
    assert len(agent.gpus) == 2  # instances are not GPUs of their own


def test_cli_requires_the_exporter_url():
    from ecoreport_agent.config import ConfigError, resolve

    with pytest.raises(ConfigError, match="--dcgm-url"):
        resolve({"source": "dcgm"}, environ={})
    assert (
        resolve({"source": "dcgm", "dcgm_url": "http://x:9400/metrics"}, environ={}).source
        == "dcgm"
    )
    assert isinstance(Nvml(DcgmExporter("http://127.0.0.1:9/metrics")), Nvml)


def test_pod_names_map_to_their_workload(clock):
    text = "".join(
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{UUID_A}",namespace="vision",pod="{pod}"}} {u}\n'
        for pod, u in (("detector-7c9f5d8b4-x2k4q", 10), ("train-42-b7xkz", 20), ("web-0", 30))
    )
    source = DcgmExporter("http://unused", monotonic=clock.monotonic, fetch=lambda url, t: text)
    labels = DcgmLabels(source)
    projects = [
        labels.labels(p.pid)[0] for p in source.nvmlDeviceGetComputeRunningProcesses(UUID_A)
    ]
    assert projects == ["detector", "train-42", "web-0"]


def test_with_the_kubelet_dcgm_pods_get_their_labels_and_owner(clock):
    from ecoreport_agent.kubernetes import Pod, PodDirectory

    class Kubelet:
        calls = 0

        def pods(self):
            Kubelet.calls += 1
            return [
                Pod(
                    uid="u-1",
                    namespace="shared",
                    name="pretrain-42-b7xkz",
                    labels={"ecoreport.io/team": "nlp"},
                    owner_kind="Job",
                    owner_name="pretrain-42",
                )
            ]

    text = f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{UUID_A}",namespace="shared",pod="pretrain-42-b7xkz"}} 9\n'
    source = DcgmExporter("http://unused", monotonic=clock.monotonic, fetch=lambda url, t: text)
    labels = DcgmLabels(source, directory=PodDirectory(Kubelet(), monotonic=clock.monotonic))
    (proc,) = source.nvmlDeviceGetComputeRunningProcesses(UUID_A)
    assert labels.labels(proc.pid) == ("pretrain-42", "nlp", None, "shared/pretrain-42")
    assert Kubelet.calls == 1
