"""Each kind of background work has a queue of its own: rollups go on while report and alert
workers are busy, or absent (docs/operations.md, "Scaling out")."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta

import pytest
from django.conf import settings

from tests.conftest import BASE_TIME, iso, make_batch, make_sample

ROUTED = {
    "accounting.rollup_dirty_hours": "rollups",
    "carbon.recompute_emissions": "rollups",
    "reports.build": "reports",
    "reports.issue_due": "reports",
    "reports.reissue_late": "reports",
    "reports.deliver": "reports",
    "reports.deliveries_sweep": "reports",
    "policies.evaluate_targets": "alerts",
    "policies.evaluate_target": "alerts",
    "policies.deliver_alert": "alerts",
    "telemetry.label_budget_notify": "alerts",
}


def test_every_task_goes_to_the_queue_of_its_kind():
    from ecoreport.celery import app
    from ecoreport.core.enqueue import task_named

    task_named("accounting.rollup_dirty_hours")  # registers every tasks module
    # The suite's own probe tasks (tests.*) are registered only when their module is imported.
    names = {n for n in app.tasks if not n.startswith(("celery.", "tests."))}
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    expected = {n: settings.TASK_QUEUES[kind] for n, kind in ROUTED.items()}
    routed = {n: app.amqp.router.route({}, n)["queue"].name for n in names}
    # Every task is routed; only the provider fetch stays on the default queue.
    assert routed == {**expected, "carbon.fetch_provider_factors": default}
    # A worker started without -Q serves all four queues.
    assert {q.name for q in app.amqp.queues.values()} == {default, *settings.TASK_QUEUES.values()}


@pytest.mark.e2e
def test_a_rollups_only_worker_rolls_up_while_report_work_waits_on_its_own_queue(processes):
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    if not settings.REDIS_URL:
        pytest.skip("queue lengths are read from Redis; the embedded broker is one machine's")
    import redis

    _, worker_log = processes.worker(queues=("rollups",))
    _, _, url = processes.web()
    org = organization_create(slug="queues", name="Queues")
    agent_token = agent_token_issue(host=host_ensure(organization=org, hostname="node-q"))
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="lee", role="viewer")
    )
    from tests.e2e.conftest import Stack

    stack = Stack(url=url, env=processes.env, worker_log=worker_log, web_log=worker_log)
    # Work for the reports queue that nobody serves: it waits there, in nobody's way.
    processes.call_task("reports.issue_due")
    broker = redis.Redis.from_url(settings.REDIS_URL)
    reports_queue = f"{processes.env['CELERY_QUEUE']}.reports"
    assert broker.llen(reports_queue) == 1

    samples = [
        make_sample(
            gpu="GPU-q", start=BASE_TIME + timedelta(minutes=5 * i), seconds=60, energy_j=9000.0
        )
        for i in range(6)
    ]
    body = gzip.compress(json.dumps(make_batch(samples)).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    status, answer = stack.request(
        "POST", "/api/v1/ingest", token=agent_token, body=body, headers=headers
    )
    assert status == 200 and answer["accepted"] == 6, answer
    window = f"start={iso(BASE_TIME)}&end={iso(BASE_TIME + timedelta(hours=2))}"
    deadline = time.monotonic() + 60
    while True:
        status, usage = stack.request("GET", f"/api/v1/usage?{window}", token=api_token)
        assert status == 200, usage
        if usage["totals"]["energy_kwh"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert usage["totals"]["energy_kwh"] == pytest.approx(6 * 9000.0 / 3.6e6, rel=1e-12)
    assert "rollup.done" in worker_log.read_text()
    assert broker.llen(reports_queue) == 1  # still waiting: this worker never took it
    broker.delete(reports_queue)
