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
import urllib.error
import urllib.request
from datetime import timedelta

import pytest

from tests.codecarbon.conftest import captured
from tests.conftest import BASE_TIME, iso, load_hourly, make_batch, make_sample
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


def _codecarbon_token(org):
    from ecoreport.carbon.sites import site_create
    from ecoreport.codecarbon.services import token_issue
    from ecoreport.organizations.models import Project, Team

    team = Team.objects.create(organization=org, slug="cc-team")
    project = Project.objects.create(organization=org, slug="cc-project", team=team)
    site = site_create(organization=org, slug="cc-dc", name="DC", grid_zone="FR", pue="1.2")
    return token_issue(team=team, project=project, site=site)[1]


def _post_json(url: str, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


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
    # The other ways in answer too: a CodeCarbon tracker's run, the Carbon Aware SDK routes,
    # and a Prometheus scrape (its closed-hours cache misses and sums every hour instead).
    cc_token = _codecarbon_token(org)
    run = {**captured()[0]["body"], "experiment_id": "11111111-2222-3333-4444-555555555555"}
    status, created = _post_json(url, "/api/codecarbon/runs", run, {"x-api-token": cc_token})
    assert status == 201 and created["id"], created
    load_hourly("FR", BASE_TIME, [50.0, 60.0], organization=org)
    status, locations = stack.request("GET", "/api/carbon-aware/locations", token=api_token)
    assert status == 200 and "FR" in json.dumps(locations), locations
    scrape = urllib.request.Request(url + "/metrics")
    scrape.add_header("Authorization", f"Bearer {api_token}")
    with urllib.request.urlopen(scrape, timeout=30) as answer:
        assert answer.status == 200 and b"ecoreport_target_status" in answer.read()
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
