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

from django.core.cache import cache
from django.db import transaction
from django.utils.module_loading import autodiscover_modules

log = logging.getLogger(__name__)


def task_named(task_name: str) -> Any:
    """The registered Celery task called ``task_name``; KeyError when there is none."""
    from ecoreport.celery import app

    if task_name not in app.tasks:
        # A web process has imported no ``tasks`` module (that is the point of naming tasks):
        # the worker's autodiscovery registers them all; an unknown name still raises KeyError.
        autodiscover_modules("tasks")
    return app.tasks[task_name]


def enqueue(task_name: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
    """Send ``task_name`` now (outside a transaction, or once it commits)."""
    task = task_named(task_name)
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


def enqueue_debounced(task_name: str, *, key: str, window_s: float) -> None:
    """Send ``task_name`` at most once per ``window_s`` seconds, ``window_s`` from now.

    For work that many commits ask for and one run covers (the rollup after ingest batches):
    the first caller in a window sets ``key`` in the cache and sends the task with that delay,
    so it runs after every caller that found the key set has committed; later callers in the
    window send nothing. Call it once the transaction has committed. Eager mode (tests, the
    embedded demo) sends at once. A broker error frees the key and is logged: the caller's work
    is committed, and the periodic sweeps pick it up.
    """
    from ecoreport.celery import app

    if app.conf.task_always_eager:
        enqueue(task_name)
        return
    if not cache.add(key, 1, timeout=window_s):
        return
    try:
        enqueue(task_name, countdown=window_s)
    except Exception:
        cache.delete(key)
        log.exception("task.enqueue_failed task=%s", task_name)
