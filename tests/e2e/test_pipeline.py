"""A batch posted over HTTP to a running server is rolled up by a separate Celery worker process
(through Redis and PostgreSQL in CI's first pass, the filesystem broker and SQLite in its
second) and comes out of the read API."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta

import pytest

from tests.conftest import BASE_TIME, iso, make_batch, make_sample

pytestmark = [pytest.mark.e2e]


def _usage_total(stack, token: str) -> dict:
    status, body = stack.request(
        "GET",
        f"/api/v1/usage?start={iso(BASE_TIME)}&end={iso(BASE_TIME + timedelta(hours=3))}"
        "&group_by=team",
        token=token,
    )
    assert status == 200, body
    return body


def test_batch_over_http_is_rolled_up_by_the_worker(live_stack):
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="e2e", name="End to end")
    agent_token = agent_token_issue(host=host_ensure(organization=org, hostname="node-e2e"))
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="lee", role="viewer")
    )

    samples = [
        make_sample(
            gpu=f"GPU-{g}",
            start=BASE_TIME + timedelta(minutes=5 * i),
            seconds=300,
            energy_j=100_000.0 + 1000 * i + g,
            attribution=[{"share": 0.75, "team": "nlp", "project": "llm"}] if i % 2 else [],
        )
        for g in range(2)
        for i in range(30)
    ]
    expected_kwh = sum(s["energy_j"] for s in samples) / 3.6e6
    batch = make_batch(samples)
    body = gzip.compress(json.dumps(batch).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    status, answer = live_stack.request(
        "POST", "/api/v1/ingest", token=agent_token, body=body, headers=headers
    )
    assert status == 200, answer
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (60, 0, [])

    deadline = time.monotonic() + 60
    usage = _usage_total(live_stack, api_token)
    while usage["totals"]["energy_kwh"] < expected_kwh - 1e-9 and time.monotonic() < deadline:
        time.sleep(0.3)
        usage = _usage_total(live_stack, api_token)
    assert usage["totals"]["energy_kwh"] == pytest.approx(expected_kwh, rel=1e-12)
    teams = {r["team"]: r["energy_kwh"] for r in usage["rows"]}
    attributed = sum(s["energy_j"] * 0.75 for s in samples if s["attribution"]) / 3.6e6
    assert teams["nlp"] == pytest.approx(attributed, rel=1e-12)
    # The web process only enqueued; the worker process did the rollup.
    assert "rollup.done" in live_stack.worker_log.read_text()
    assert "rollup.done" not in live_stack.web_log.read_text()

    # The agent retries the same batch: the original answer, nothing counted twice.
    status, again = live_stack.request(
        "POST", "/api/v1/ingest", token=agent_token, body=body, headers=headers
    )
    assert (status, again) == (200, answer)
    time.sleep(1.5)
    assert _usage_total(live_stack, api_token)["totals"]["energy_kwh"] == pytest.approx(
        expected_kwh
    )


def test_health_reports_the_broker(live_stack):
    import urllib.request

    with urllib.request.urlopen(live_stack.url + "/healthz", timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "ok"
    assert body["broker"]["ok"] is True
