"""Agent overhead: CPU seconds per hour, peak RSS, NVML calls per interval.

Runs the real agent process (``python -m ecoreport_agent run``) with simulated GPUs at the
production interval against a stub ingest server on 127.0.0.1, for a fixed duration, and reads
its CPU time and memory from /proc. Goals (issue 3): < 7.2 CPU-s per hour (0.2 % of one core)
and < 40 MB peak RSS.

    python benchmarks/agent_overhead.py                  # 10 minutes, 8 GPUs, 10 s interval
    python benchmarks/agent_overhead.py --duration 240   # shorter; rates are extrapolated
    python benchmarks/agent_overhead.py --source dcgm    # read a stub dcgm-exporter: 8 GPUs, 20 pods
    python benchmarks/agent_overhead.py --pod-lookups    # + the kubelet pod attribution's cost

``--source dcgm`` serves dcgm-exporter's text exposition from 127.0.0.1 (energy counters exact
functions of time, 20 pods time-sliced over the GPUs with their own utilization) and runs the
agent with ``--source dcgm``. ``--pod-lookups`` measures, in this process, the NVML path's pod
attribution for 20 GPU processes in 20 pods (fake ``/proc/<pid>/cgroup`` files, a stub kubelet):
what the agent does per poll (``observe``) and per interval (``labels``), for an hour's worth
of intervals.

Two CPU figures are reported: the whole run including interpreter start-up and the first
(simulator warm-up, discovery) seconds, and the steady state measured from --warmup seconds on.
The steady state is what an agent costs over a day; start-up is paid once.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Stub:
    def __init__(self) -> None:
        self.requests = 0
        self.samples = 0
        self.lock = threading.Lock()


def stub_server(stub: Stub) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
            with stub.lock:
                stub.requests += 1
                stub.samples += len(body["samples"])
            answer = json.dumps(
                {
                    "batch_id": body["batch_id"],
                    "accepted": len(body["samples"]),
                    "duplicates": 0,
                    "rejected": [],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


PODS = 20


class StubExporter:
    """dcgm-exporter's /metrics for ``gpus`` GPUs and ``PODS`` pods spread over them."""

    def __init__(self, gpus: int) -> None:
        self.gpus = [f"GPU-bench-{i:04d}-0000-0000-000000000000" for i in range(gpus)]
        self.t0 = time.time()
        self.scrapes = 0

    def text(self) -> str:
        t = time.time()
        lines = []
        for index, uuid in enumerate(self.gpus):
            pods = [p for p in range(PODS) if p % len(self.gpus) == index]
            for k, pod in enumerate(pods or [None]):
                extra = (
                    ""
                    if pod is None
                    else (f',namespace="team-{pod % 4}",pod="job-{pod}-abcde",container="main"')
                )
                labels = f'{{gpu="{index}",UUID="{uuid}",modelName="NVIDIA H100 80GB HBM3"{extra}}}'
                lines += [
                    f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{labels} {int(4e8 + 500 * (t - self.t0) * 1000)}",
                    f"DCGM_FI_DEV_POWER_USAGE{labels} 500.0",
                    f"DCGM_FI_DEV_GPU_UTIL{labels} {40 + 10 * k}",
                    f"DCGM_FI_DEV_MEM_COPY_UTIL{labels} 20",
                    f"DCGM_FI_DEV_FB_USED{labels} 30000",
                    f"DCGM_FI_DEV_FB_FREE{labels} 51559",
                    f"DCGM_FI_DEV_GPU_TEMP{labels} 60",
                    f"DCGM_FI_DEV_SM_CLOCK{labels} 1980",
                    f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{labels} 0.3",
                ]
        return "\n".join(lines) + "\n"


def exporter_server(exporter: StubExporter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            exporter.scrapes += 1
            body = exporter.text().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def pod_lookups(interval_s: float, poll_s: float = 1.0) -> dict[str, Any]:
    """CPU of the kubelet pod attribution for PODS processes over an hour of intervals."""
    sys.path.insert(0, str(ROOT / "agents"))
    from ecoreport_agent.kubernetes import KubeletClient, KubernetesLabelSource, PodDirectory

    pods = [
        {
            "metadata": {
                "uid": f"{p:08x}-0000-4000-8000-000000000000",
                "namespace": f"team-{p % 4}",
                "name": f"job-{p}-abcde",
                "labels": {"ecoreport.io/project": f"project-{p % 6}"},
                "ownerReferences": [{"kind": "Job", "name": f"job-{p}", "controller": True}],
            }
        }
        for p in range(PODS)
    ]
    requests = [0]

    class Kubelet(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            requests[0] += 1
            body = json.dumps({"items": pods}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Kubelet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as proc:
        pids = list(range(40000, 40000 + PODS))
        for p, pid in enumerate(pids):
            d = Path(proc, str(pid))
            d.mkdir()
            (d / "stat").write_text(f"{pid} (python) S 1 " + "0 " * 17 + "12345 0\n")
            (d / "environ").write_bytes(b"HOME=/root\0")
            uid = pods[p]["metadata"]["uid"].replace("-", "_")
            (d / "cgroup").write_text(
                "0::/kubepods.slice/kubepods-burstable.slice/"
                f"kubepods-burstable-pod{uid}.slice/cri-containerd-{pid:x}.scope\n"
            )
        client = KubeletClient(
            f"http://127.0.0.1:{server.server_address[1]}", token_file=None, ca_file=None
        )
        source = KubernetesLabelSource(PodDirectory(client), proc_root=proc)
        intervals = round(3600 / interval_s)
        ticks = max(1, round(interval_s / poll_s))
        started = time.process_time()
        for n in range(intervals):
            for _ in range(ticks):
                source.observe(pids)
            for pid in pids:
                source.labels(pid)
            if n % 60 == 59:
                source.forget_except(pids)
        cpu = time.process_time() - started
    server.shutdown()
    return {
        "pod_lookup_cpu_s_per_hour": round(cpu, 3),
        "pod_lookup_kubelet_requests_per_hour": requests[0],
        "pod_lookup_cgroup_reads_per_hour": source.cgroup_reads,
        "pod_lookup_labels": source.labels(pids[0]),
    }


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="excluded from steady state")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--source", choices=("simulate", "dcgm"), default="simulate")
    parser.add_argument("--pod-lookups", action="store_true", help="also time pod attribution")
    args = parser.parse_args()

    stub = Stub()
    server = stub_server(stub)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    exporter = StubExporter(args.gpus)
    source_args = ["--simulate", str(args.gpus)]
    if args.source == "dcgm":
        metrics = exporter_server(exporter)
        dcgm_url = f"http://127.0.0.1:{metrics.server_address[1]}/metrics"
        source_args = ["--source", "dcgm", "--dcgm-url", dcgm_url]
    with tempfile.TemporaryDirectory() as tmp:
        spool = os.path.join(tmp, "spool.db")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "agents"))
        cmd = [
            sys.executable, "-m", "ecoreport_agent", "run",
            *source_args, "--interval", str(args.interval),
            "--server", url, "--token", "bench", "--spool", spool,
            "--duration", str(args.duration), "--log-level", "WARNING",
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env)
        time.sleep(args.warmup)
        warm_cpu, warm_at = cpu_seconds(proc.pid), time.monotonic()
        last_cpu, last_at, hwm_kb = warm_cpu, warm_at, vm_hwm_kb(proc.pid)
        while True:
            # wait4 (not Popen.poll, which would reap the child first) gives its rusage.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                last_cpu, last_at = cpu_seconds(proc.pid), time.monotonic()
                hwm_kb = max(hwm_kb, vm_hwm_kb(proc.pid))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        total_cpu = usage.ru_utime + usage.ru_stime
        status_out = subprocess.run(
            [sys.executable, "-m", "ecoreport_agent", "status", "--json", "--spool", spool],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        stats = json.loads(status_out.stdout)
    server.shutdown()

    calls = stats["agent"]["nvml_calls_per_interval"]
    steady_rate = (last_cpu - warm_cpu) / max(1e-9, last_at - warm_at) * 3600
    result: dict[str, Any] = {
        "source": args.source,
        "gpus": args.gpus,
        "interval_s": args.interval,
        "duration_s": round(elapsed, 1),
        "exit_status": os.waitstatus_to_exitcode(status),
        "cpu_s_total": round(total_cpu, 3),
        "cpu_s_per_hour_whole_run": round(total_cpu / elapsed * 3600, 2),
        "cpu_s_per_hour_steady": round(steady_rate, 2),
        "peak_rss_mb": round(max(hwm_kb, usage.ru_maxrss) / 1024, 1),
        "nvml_calls_per_interval": round(sum(calls.values()), 1),
        "nvml_calls_per_interval_by_function": calls,
        "intervals": stats["agent"]["cycles"],
        "uploads": stub.requests,
        "samples_uploaded": stub.samples,
        "samples_pending": stats["pending_samples"],
    }
    if args.source == "dcgm":
        result["pods"] = PODS
        result["exporter_scrapes_per_interval"] = round(
            exporter.scrapes / max(1, stats["agent"]["cycles"]), 1
        )
    if args.pod_lookups:
        result.update(pod_lookups(args.interval))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if key != "nvml_calls_per_interval_by_function":
                print(f"{key:32} {value}")
        for name, count in sorted(calls.items()):
            print(f"  {name:46} {count}")
        ok = result["cpu_s_per_hour_steady"] < 7.2 and result["peak_rss_mb"] < 40
        print("goals (< 7.2 CPU-s/hour steady, < 40 MB RSS):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
