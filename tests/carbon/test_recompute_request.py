"""Carbon's writes ask for the emissions recompute by task name: the name must resolve in any
process (a web server imports no tasks module by itself), and the request must go out only once
the change has committed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_recompute_task_is_found_by_name_in_a_process_that_imported_no_tasks():
    probe = (
        "import os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'ecoreport.settings')\n"
        "django.setup()\n"
        "from ecoreport.carbon.recompute import RECOMPUTE_TASK\n"
        "from ecoreport.celery import app\n"
        "from ecoreport.core.enqueue import task_named\n"
        "print(RECOMPUTE_TASK in app.tasks, task_named(RECOMPUTE_TASK).name == RECOMPUTE_TASK)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # Not imported by anything a web process loads, yet found by name when a write sends it.
    assert done.stdout.strip().splitlines()[-1] == "False True"


@pytest.mark.django_db
def test_recompute_request_is_sent_on_commit_with_the_period_and_sites(
    monkeypatch, django_capture_on_commit_callbacks
):
    from datetime import UTC, datetime

    from ecoreport.carbon import recompute
    from ecoreport.core.enqueue import task_named

    sent: list[tuple[tuple, dict]] = []
    task = task_named(recompute.RECOMPUTE_TASK)
    monkeypatch.setattr(task, "apply_async", lambda args, kwargs, **_: sent.append((args, kwargs)))
    start = datetime(2026, 3, 1, 5, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        recompute.recompute_enqueue(start=start, end=None, site_ids={3, 1}, organization_id=7)
        assert sent == []  # not before the commit
    assert len(callbacks) == 2  # the factors' version moves on first, then the task is sent
    assert sent == [
        (
            (),
            {
                "start": "2026-03-01T05:00:00+00:00",
                "end": "2200-01-01T00:00:00+00:00",
                "zone": None,
                "site_ids": [1, 3],
                "organization_id": 7,
            },
        )
    ]
