"""The real agent process reading a dcgm-exporter endpoint, against the live backend: the
backend's energy per GPU equals the exporter's counter advance, split per pod, through an
exporter outage, an agent ``kill -9`` and a counter reset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import BIN

pytestmark = [pytest.mark.e2e]

GPU_A = "GPU-d1d1d1d1-0000-4000-8000-00000000000a"
GPU_B = "GPU-d1d1d1d1-0000-4000-8000-00000000000b"
WATTS = {GPU_A: 350.0, GPU_B: 90.0}


class Exporter:
    """dcgm-exporter text exposition; counter = base + watts * (time - t0) in mJ (from the
    reset instant on for a reset GPU). Logs the counter it served, per GPU."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.up = True
        self.reset_at: dict[str, float] = {}
        self.served: dict[str, list[int]] = {GPU_A: [], GPU_B: []}
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not exporter.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counter(self, gpu: str, t: float) -> int:
        reset = self.reset_at.get(gpu)
        if reset is not None and t >= reset:
            return int(WATTS[gpu] * (t - reset) * 1000)
        return int(7_000_000_000 + WATTS[gpu] * (t - self.t0) * 1000)

    def text(self) -> str:
        with self.lock:
            t = time.time()
            lines = []
            pods = {
                GPU_A: [
                    ('namespace="nlp",pod="train-abcde"', 60),
                    ('namespace="vision",pod="det-0"', 20),
                ],
                GPU_B: [("", 0)],
            }
            for index, gpu in enumerate((GPU_A, GPU_B)):
                counter = self.counter(gpu, t)
                self.served[gpu].append(counter)
                for extra, util in pods[gpu]:
                    labels = f'{{gpu="{index}",UUID="{gpu}",modelName="NVIDIA A100-SXM4-80GB"'
                    labels += ("," + extra if extra else "") + ',container="main"}'
                    lines += [
                        f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{labels} {counter}",
                        f"DCGM_FI_DEV_POWER_USAGE{labels} {WATTS[gpu]}",
                        f"DCGM_FI_DEV_GPU_UTIL{labels} {util}",
                        f"DCGM_FI_DEV_FB_USED{labels} 1000",
                        f"DCGM_FI_DEV_FB_FREE{labels} 80000",
                    ]
            return "\n".join(lines) + "\n"


def test_dcgm_source_energy_arrives_exactly_once(live_stack, tmp_path):
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="dcgm", name="dcgm agent")
    token = agent_token_issue(host=host_ensure(organization=org, hostname="k8s-node-1"))
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="ana", role="viewer")
    )
    exporter = Exporter()
    spool = tmp_path / "spool.db"
    env = {k: v for k, v in live_stack.env.items() if not k.startswith("ECOREPORT_")}
    began = datetime.now(UTC) - timedelta(minutes=1)
    argv = [
        str(BIN / "ecoreport-agent"),
        "run",
        "--server",
        live_stack.url,
        "--token",
        token,
        "--source",
        "dcgm",
        "--dcgm-url",
        exporter.url,
        "--interval",
        "1",
        "--poll",
        "0.5",
        "--hostname",
        "k8s-node-1",
        "--spool",
        str(spool),
    ]
    log = open(tmp_path / "agent.log", "w")  # noqa: SIM115 - closed at the end
    agent = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(4)
    exporter.up = False  # an outage of 3 s
    time.sleep(3)
    exporter.up = True
    time.sleep(3)
    os.kill(agent.pid, signal.SIGKILL)  # kill -9: no final booking, no final upload
    agent.wait(10)
    time.sleep(2.5)  # down for 2.5 s: the counter's advance is booked once by the next run
    agent = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(3)
    exporter.reset_at[GPU_B] = time.time()  # a driver reload on GPU B
    time.sleep(4)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(60) == 0, (tmp_path / "agent.log").read_text()[-3000:]
    log.close()
    exporter.server.shutdown()
    agent_log = (tmp_path / "agent.log").read_text()
    # The three events happened, and were handled as such.
    assert "dcgm.scrape_failed" in agent_log
    assert f"resume.booked uuid={GPU_A}" in agent_log
    assert f"gpu.counter_reset uuid={GPU_B}" in agent_log

    status = json.loads(
        subprocess.run(
            [str(BIN / "ecoreport-agent"), "status", "--json", "--spool", str(spool)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert status["pending_samples"] == 0, status
    measured = {g["uuid"]: g["energy_j"] for g in status["gpus"]}
    served_a = exporter.served[GPU_A]
    # GPU A: exactly the counter's advance from the first reading to the last (the final booking
    # reads last), across the outage and the kill -9.
    assert round(measured[GPU_A] * 1000) == served_a[-1] - served_a[0]
    # GPU B: the interval holding the reset is not booked; nothing is made up.
    wall = exporter.reset_at[GPU_B] - exporter.t0
    upper = WATTS[GPU_B] * (time.time() - exporter.t0)
    assert WATTS[GPU_B] * (wall - 2.5) < measured[GPU_B] < upper

    end = datetime.now(UTC) + timedelta(hours=1)
    window = f"start={began:%Y-%m-%dT%H:00:00Z}&end={end:%Y-%m-%dT%H:00:00Z}"
    deadline = time.monotonic() + 60
    while True:
        code, body = live_stack.request(
            "GET", f"/api/v1/usage?group_by=gpu&{window}", token=api_token
        )
        assert code == 200, body
        stored = {r["gpu"]: r["energy_kwh"] * 3.6e6 for r in body["rows"]}
        if (
            stored.keys() == measured.keys()
            and all(abs(stored[u] - measured[u]) < 0.01 for u in measured)
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for gpu, energy_j in measured.items():
        assert stored.get(gpu) == pytest.approx(energy_j, abs=0.01), (gpu, stored, measured)

    code, body = live_stack.request("GET", f"/api/v1/usage?group_by=team&{window}", token=api_token)
    assert code == 200, body
    teams = {r["team"]: r["energy_kwh"] * 3.6e6 for r in body["rows"]}
    # The two time-sliced pods split GPU A by their own utilization, 60:20.
    assert teams["nlp"] == pytest.approx(3 * teams["vision"], rel=1e-3), teams
