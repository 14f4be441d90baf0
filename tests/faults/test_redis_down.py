"""Redis unreachable: ingest stores and acknowledges, the read API answers, and the rollup
catches up through the sweep once Redis is back.

The web process is started with a Redis URL on a port where nothing listens (its broker and its
cache). Runs on PostgreSQL and on SQLite: the database is whatever the suite uses.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
from datetime import timedelta

import pytest

from tests.conftest import BASE_TIME, iso, make_batch, make_sample
from tests.e2e.conftest import Stack, _free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def _org():
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="redis-down", name="Redis down")
    agent_token = agent_token_issue(host=host_ensure(organization=org, hostname="node-rd"))
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="ria", role="viewer")
    )
    return org, agent_token, api_token


def _usage_kwh(stack: Stack, token: str) -> tuple[int, float]:
    status, body = stack.request(
        "GET",
        f"/api/v1/usage?start={iso(BASE_TIME)}&end={iso(BASE_TIME + timedelta(hours=3))}",
        token=token,
    )
    return status, (body or {}).get("totals", {}).get("energy_kwh", -1.0)


def test_ingest_and_read_api_answer_with_redis_down_and_rollups_catch_up(processes):
    from ecoreport.accounting.models import HourlyUsage
    from ecoreport.telemetry.models import DirtyHour, EnergySample

    org, agent_token, api_token = _org()
    redis_port = _free_port()
    env = {**processes.env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    _, web_log, url = processes.web(env=env, degraded_ok=True)
    stack = Stack(url=url, env=env, worker_log=web_log, web_log=web_log)

    batches = [
        make_batch(
            [
                make_sample(gpu=f"GPU-{b}", start=BASE_TIME + timedelta(minutes=5 * i), seconds=300)
                for i in range(24)
            ]
        )
        for b in range(3)
    ]
    timings_s = []
    for batch in batches:
        started = time.monotonic()
        status, answer = stack.request(
            "POST",
            "/api/v1/ingest",
            token=agent_token,
            body=gzip.compress(json.dumps(batch).encode()),
            headers=HEADERS,
        )
        timings_s.append(time.monotonic() - started)
        assert status == 200, answer
        assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (24, 0, [])
    expected_j = sum(s["energy_j"] for b in batches for s in b["samples"])
    stored = EnergySample.objects.filter(organization=org)
    assert stored.count() == 72
    assert sum(stored.values_list("energy_j", flat=True)) == pytest.approx(expected_j)
    assert DirtyHour.objects.filter(organization=org).exists()
    # Nothing could roll up, but the read API answers (with what is rolled up: nothing yet).
    assert _usage_kwh(stack, api_token) == (200, 0.0)
    log = web_log.read_text()
    assert "cache.unavailable" in log
    assert "throttle.local_fallback" in log
    assert "Internal Server Error" not in log
    print(f"ingest with Redis down: {', '.join(f'{t * 1000:.0f} ms' for t in timings_s)}")

    # Redis comes back on that port; a worker starts and beat's sweep runs.
    redis = subprocess.Popen(
        [
            "redis-server",
            *("--port", str(redis_port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    processes.procs.append(redis)
    processes.worker(env=env)
    processes.call_task("accounting.rollup_dirty_hours", env=env)
    deadline = time.monotonic() + 30
    while DirtyHour.objects.filter(organization=org).exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    rolled = HourlyUsage.objects.filter(organization=org)
    assert sum(rolled.values_list("energy_j", flat=True)) == pytest.approx(expected_j, rel=1e-12)
    assert _usage_kwh(stack, api_token) == (200, pytest.approx(expected_j / 3.6e6, rel=1e-12))
