"""A Celery worker killed with SIGKILL in the middle of a rollup: nothing is lost, nothing is
counted twice. A rollup claims its dirty hours and rebuilds them in one transaction, so the
hours a dead worker had claimed are dirty again once the database rolls it back, and the next
sweep rebuilds them; the rollup converges to the raw samples.

Real processes: gunicorn, a worker that is killed, a second worker and the sweep (the task
beat sends every minute, sent here with ``celery call``). Runs on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
from datetime import timedelta

import pytest
from django.db.models import Sum

from tests.conftest import BASE_TIME, make_batch, make_sample
from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.e2e]

GPUS = 3
HOURS = 480  # enough work that the kill lands while the worker is still rolling up


def test_rollup_converges_after_the_worker_is_killed_mid_way(processes):
    from ecoreport.accounting.models import HourlyUsage
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.services import organization_create
    from ecoreport.telemetry.models import DirtyHour, EnergySample

    org = organization_create(slug="sigkill", name="Killed worker")
    token = agent_token_issue(host=host_ensure(organization=org, hostname="node-k"))
    _, web_log, url = processes.web()
    stack = Stack(url=url, env=processes.env, worker_log=web_log, web_log=web_log)
    # Whole hours going back from BASE_TIME, one GPU per batch; no worker runs yet, so the
    # whole backlog waits for the first one.
    first_hour = BASE_TIME - timedelta(hours=HOURS)
    for g in range(GPUS):
        batch = make_batch(
            [
                make_sample(
                    gpu=f"GPU-{g}",
                    start=first_hour + timedelta(hours=h),
                    seconds=3600,
                    energy_j=1_000_000.0 + 17.0 * h + g,
                    attribution=[{"share": 0.5, "team": "nlp", "project": "llm"}] if h % 3 else [],
                )
                for h in range(HOURS)
            ]
        )
        status, answer = stack.request(
            "POST",
            "/api/v1/ingest",
            token=token,
            body=gzip.compress(json.dumps(batch).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert status == 200, answer
        assert answer["accepted"] == HOURS
    raw_j = EnergySample.objects.filter(organization=org).aggregate(e=Sum("energy_j"))["e"]

    worker, _ = processes.worker()
    deadline = time.monotonic() + 40
    while not HourlyUsage.objects.filter(organization=org).exists():
        assert time.monotonic() < deadline, "the worker rolled nothing up"
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    dirty_at_kill = DirtyHour.objects.filter(organization=org).values("hour").distinct().count()
    rolled_at_kill = HourlyUsage.objects.filter(organization=org).values("hour").distinct().count()
    assert dirty_at_kill > 0, "the worker finished before the kill: the test proved nothing"

    # A new worker; beat's sweep runs until no hour is dirty. A hour the dead worker still had
    # locked is skipped by one sweep (SKIP LOCKED) and rebuilt by a later one.
    processes.worker()
    deadline = time.monotonic() + 45
    sweeps = 0
    while DirtyHour.objects.filter(organization=org).exists():
        assert time.monotonic() < deadline, "the sweep did not catch up"
        processes.call_task("accounting.rollup_dirty_hours")
        sweeps += 1
        for _ in range(50):
            if not DirtyHour.objects.filter(organization=org).exists():
                break
            time.sleep(0.2)

    rolled = HourlyUsage.objects.filter(organization=org)
    rolled_j = rolled.aggregate(e=Sum("energy_j"))["e"]
    per_hour_raw = {
        row["start"]: row["e"]
        for row in EnergySample.objects.filter(organization=org)
        .values("start")
        .annotate(e=Sum("energy_j"))
    }
    per_hour_rolled = {
        row["hour"]: row["e"] for row in rolled.values("hour").annotate(e=Sum("energy_j"))
    }
    print(
        f"\nSIGKILL mid-rollup: {rolled_at_kill} of {HOURS} hours rolled up at the kill,"
        f" {dirty_at_kill} dirty; {sweeps} sweep(s) after; raw {raw_j:.1f} J,"
        f" rolled up {rolled_j:.1f} J, difference {rolled_j - raw_j:.6f} J"
    )
    assert rolled_j == pytest.approx(raw_j, rel=1e-12)
    assert per_hour_rolled.keys() == per_hour_raw.keys()
    for hour, energy_j in per_hour_raw.items():
        assert per_hour_rolled[hour] == pytest.approx(energy_j, rel=1e-12), hour
