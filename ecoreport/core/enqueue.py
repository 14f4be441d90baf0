"""Enqueue a Celery task once the current transaction commits, without importing the task.

Services name the task they want run (``"accounting.rollup_dirty_hours"``) instead of importing
its module, so that ``tasks`` modules import ``services`` and never the other way round. The
task is looked up in the Celery app's registry when the transaction commits, so eager mode
(tests, the embedded demo) and ``apply_async`` options behave exactly as with the task object.

A broker that is down must not undo work that is already committed: the error is logged, and
the periodic sweeps pick the work up (each caller's docstring says which).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils.module_loading import autodiscover_modules

log = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
    """Send ``task_name`` now (outside a transaction, or once it commits)."""
    from ecoreport.celery import app

    if task_name not in app.tasks:
        # A web process has imported no ``tasks`` module (that is the point of naming tasks):
        # the worker's autodiscovery registers them all; an unknown name still raises KeyError.
        autodiscover_modules("tasks")
    task = app.tasks[task_name]
    options: dict[str, Any] = {} if countdown is None else {"countdown": countdown}
    task.apply_async(args, kwargs, **options)


def enqueue_on_commit(
    task_name: str, *args: Any, countdown: float | None = None, **kwargs: Any
) -> None:
    """Send ``task_name`` once the current transaction commits; a broker error is logged."""

    def send() -> None:
        try:
            enqueue(task_name, *args, countdown=countdown, **kwargs)
        except Exception:
            log.exception("task.enqueue_failed task=%s", task_name)

    transaction.on_commit(send)
