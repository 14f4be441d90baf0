"""Agent overhead: CPU seconds per hour, peak RSS, NVML calls per interval.

Runs the real agent process (``python -m ecoreport_agent run``) with simulated GPUs at the
production interval against a stub ingest server on 127.0.0.1, for a fixed duration, and reads
its CPU time and memory from /proc. Goals (issue 3): < 7.2 CPU-s per hour (0.2 % of one core)
and < 40 MB peak RSS.

    python benchmarks/agent_overhead.py                  # 10 minutes, 8 GPUs, 10 s interval
    python benchmarks/agent_overhead.py --duration 240   # shorter; rates are extrapolated

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
    args = parser.parse_args()

    stub = Stub()
    server = stub_server(stub)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        spool = os.path.join(tmp, "spool.db")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "agents"))
        cmd = [
            sys.executable, "-m", "ecoreport_agent", "run",
            "--simulate", str(args.gpus), "--interval", str(args.interval),
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
    result = {
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
