"""The on-commit enqueue helper runs the named task after commit, never on rollback."""

from __future__ import annotations

import pytest
from celery import shared_task
from django.db import transaction

from ecoreport.core.enqueue import enqueue, enqueue_on_commit

RAN: list[tuple[int, float | None]] = []


@shared_task(name="tests.enqueue_probe")
def enqueue_probe(value: int, scale: float | None = None) -> None:
    RAN.append((value, scale))


@pytest.mark.django_db(transaction=True)
def test_named_task_runs_after_commit_and_not_after_rollback():
    RAN.clear()
    with transaction.atomic():
        enqueue_on_commit("tests.enqueue_probe", 1)
        assert RAN == []  # not before the commit
    assert RAN == [(1, None)]
    with transaction.atomic():
        enqueue_on_commit("tests.enqueue_probe", 2, scale=0.5)
        transaction.set_rollback(True)
    assert RAN == [(1, None)]
    with transaction.atomic():
        enqueue_on_commit("tests.enqueue_probe", 3, scale=0.5, countdown=0)
    assert RAN == [(1, None), (3, 0.5)]


@pytest.mark.django_db(transaction=True)
def test_unknown_task_is_logged_not_raised_after_commit(caplog):
    with transaction.atomic():
        enqueue_on_commit("no.such.task")
    assert "task.enqueue_failed task=no.such.task" in caplog.text


def test_unknown_task_name_raises_when_sent_directly():
    with pytest.raises(KeyError):
        enqueue("no.such.task")


def test_a_fresh_web_process_finds_tasks_it_never_imported():
    # As in a web process: Django set up, no ``tasks`` module imported by anyone. Sent by name,
    # the task must still be found (and, eager, run) instead of being logged as unknown.
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup()\n"
        "from ecoreport.celery import app\n"
        "assert 'ecoreport.reports.tasks' not in sys.modules\n"
        "sent = []\n"
        "app.conf.task_always_eager = False\n"
        "from celery.app.task import Task\n"
        "Task.apply_async = lambda self, args, kwargs, **o: sent.append((self.name, args))\n"
        "from ecoreport.core.enqueue import enqueue\n"
        "enqueue('reports.build', 7)\n"
        "print(sent)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[('reports.build', (7,))]"
