"""The real agent process, with simulated GPUs, against the live backend: the backend's totals
equal the energy the agent measured, GPU by GPU."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import BIN

pytestmark = [pytest.mark.e2e]


def _agent(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ecoreport-agent"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_agent_energy_arrives_exactly_once(live_stack, tmp_path):
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="live", name="Live agent")
    token = agent_token_issue(host=host_ensure(organization=org, hostname="sim-live"))
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="ana", role="viewer")
    )
    spool = tmp_path / "spool.db"
    common = ["--spool", str(spool)]
    env = {k: v for k, v in live_stack.env.items() if not k.startswith("ECOREPORT_")}
    began = datetime.now(UTC) - timedelta(minutes=1)

    run = _agent(
        "run",
        "--server",
        live_stack.url,
        "--token",
        token,
        "--simulate",
        "3",
        "--seed",
        "5",
        "--interval",
        "1",
        "--max-cycles",
        "6",
        "--hostname",
        "sim-live",
        *common,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # A second run continues from the persisted counters: the energy between the runs is
    # booked once, by the second run.
    time.sleep(1.0)
    run = _agent(
        "run",
        "--server",
        live_stack.url,
        "--token",
        token,
        "--simulate",
        "3",
        "--seed",
        "5",
        "--interval",
        "1",
        "--max-cycles",
        "4",
        "--hostname",
        "sim-live",
        *common,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    status = json.loads(_agent("status", "--json", *common, env=env).stdout)
    assert status["pending_samples"] == 0, status
    assert status["dead_letter"] == 0, status
    measured = {g["uuid"]: g["energy_j"] for g in status["gpus"]}
    assert len(measured) == 3 and all(v > 0 for v in measured.values())

    end = datetime.now(UTC) + timedelta(hours=1)
    query = (
        f"/api/v1/usage?group_by=gpu&start={began:%Y-%m-%dT%H:00:00Z}&end={end:%Y-%m-%dT%H:00:00Z}"
    )
    deadline = time.monotonic() + 60
    while True:
        code, body = live_stack.request("GET", query, token=api_token)
        assert code == 200, body
        stored = {r["gpu"]: r["energy_kwh"] * 3.6e6 for r in body["rows"]}
        if (
            stored.keys() == measured.keys()
            and all(abs(stored[u] - measured[u]) < 0.01 for u in measured)
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for uuid, energy_j in measured.items():
        assert stored.get(uuid) == pytest.approx(energy_j, abs=0.01), (uuid, stored, measured)
