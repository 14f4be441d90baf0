"""A real Prometheus server (Debian's ``prometheus`` package) scrapes the live gunicorn with an
API token, every second, and what it stored agrees with the usage API.

Skipped with a reason where the binary is absent, failed instead in CI (tests/metrics/conftest.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.conftest import iso, make_batch, make_sample
from tests.metrics.conftest import prometheus_binary

pytestmark = [pytest.mark.e2e]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, *, at_least: float, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(promql)
            if value is not None and value >= at_least:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{promql} did not reach {at_least}: {self.log.read_text()[-3000:]}")


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Any]:
    """Starts Prometheus on a free port with its own storage; ``start(jobs)`` takes
    {job name: (target URL, bearer token)}."""
    binary = prometheus_binary("prometheus")
    procs: list[subprocess.Popen] = []

    def start(jobs: dict[str, tuple[str, str]]) -> Prometheus:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": name,
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials": token},
                    "static_configs": [{"targets": [urllib.parse.urlsplit(url).netloc]}],
                }
                for name, (url, token) in jobs.items()
            ],
        }
        # JSON is YAML: the config needs no YAML library.
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(json.dumps(config))
        port = _free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        server = Prometheus(f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(server.url + "/-/ready", timeout=2):
                    return server
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus was not ready in 60 s: {log.read_text()[-3000:]}")

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_prometheus_scrapes_the_live_app_and_agrees_with_the_usage_api(
    live_stack: Any, prometheus_server: Any
) -> None:
    from ecoreport.carbon.sites import site_create
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="scraped", name="Scraped")
    site = site_create(organization=org, slug="paris", name="Paris", grid_zone="FR")
    host = host_ensure(organization=org, hostname="node-prom", site=site)
    agent_token = agent_token_issue(host=host)
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="pat", role="viewer")
    )
    # Another organization's fleet on the same server: never in this token's series.
    other = organization_create(slug="unscraped", name="Unscraped")
    other_agent = agent_token_issue(host=host_ensure(organization=other, hostname="node-other"))

    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    teams = [
        [{"share": 0.6, "team": "nlp", "project": "llm"}],
        [{"share": 1.0, "team": "vision", "project": "detector"}],
        [],
    ]
    samples = [
        make_sample(
            gpu=f"GPU-{g}",
            start=start + timedelta(minutes=5 * i),
            seconds=300,
            energy_j=90_000.0 + 700 * i + g,
            attribution=teams[(g + i) % 3],
        )
        for g in range(3)
        for i in range(24)
    ]
    expected_j = sum(s["energy_j"] for s in samples)
    for token, batch in (
        (agent_token, make_batch(samples)),
        (other_agent, make_batch([make_sample(gpu="GPU-O", start=start, seconds=300)])),
    ):
        status, answer = live_stack.ingest(token, batch)
        assert status == 200 and not answer["rejected"], answer

    def usage_j() -> float:
        window = f"start={iso(start - timedelta(hours=1))}&end={iso(timezone.now())}"
        status, body = live_stack.request("GET", f"/api/v1/usage?{window}", token=api_token)
        assert status == 200, body
        return body["totals"]["energy_kwh"] * 3.6e6

    deadline = time.monotonic() + 60
    while usage_j() < expected_j * (1 - 1e-12) and time.monotonic() < deadline:
        time.sleep(0.3)
    api_j = usage_j()
    assert api_j == pytest.approx(expected_j, rel=1e-12)

    prometheus = prometheus_server(
        {"ecoreport": (live_stack.url, api_token), "wrong-token": (live_stack.url, "eru_nope")}
    )
    # Two scrapes of the app with the token, each a success.
    prometheus.wait_for('count_over_time(up{job="ecoreport"}[5m])', at_least=2)
    assert prometheus.value('min_over_time(up{job="ecoreport"}[5m])') == 1.0
    # The same app refuses a bad token: Prometheus records the target as down.
    prometheus.wait_for('count_over_time(up{job="wrong-token"}[5m])', at_least=2)
    assert prometheus.value('max_over_time(up{job="wrong-token"}[5m])') == 0.0

    assert prometheus.value("sum(ecoreport_energy_joules_total)") == pytest.approx(api_j, rel=1e-9)
    hosts = {
        r["metric"]["host"]
        for r in prometheus.query("ecoreport_host_last_sample_timestamp_seconds")
    }
    assert hosts == {"node-prom"}
    by_team = {
        r["metric"].get("team", ""): float(r["value"][1])
        for r in prometheus.query("sum by (team) (ecoreport_energy_joules_total)")
    }
    assert set(by_team) == {"nlp", "vision", ""}
    assert sum(by_team.values()) == pytest.approx(api_j, rel=1e-9)
