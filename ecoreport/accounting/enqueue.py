"""Enqueue the rollup after an ingest, debounced: one pending run covers every batch.

This lives beside the task rather than in ``tasks``: the ingest service calls it, and services
import no ``tasks`` module (issue 14). It sends the task by name through ``core.enqueue``.
"""

from __future__ import annotations

import logging

from django.core.cache import cache

from ecoreport.core.enqueue import enqueue

log = logging.getLogger(__name__)

ROLLUP_TASK = "accounting.rollup_dirty_hours"

# Ingest commits many batches a second; one rollup a second covers them all. The task runs no
# earlier than the debounce key expires, so every batch that found the key set has committed
# before the task reads the samples.
ROLLUP_DEBOUNCE_S = 1


def enqueue_rollup(*, organization_id: int) -> None:
    """Send one rollup soon; called once the ingest's transaction has committed."""
    from ecoreport.celery import app

    if app.conf.task_always_eager:
        enqueue(ROLLUP_TASK)
        return
    # The rollup task claims dirty hours of every organization; one pending run is enough.
    if not cache.add("accounting:rollup-pending", organization_id, timeout=ROLLUP_DEBOUNCE_S):
        return
    try:
        enqueue(ROLLUP_TASK, countdown=ROLLUP_DEBOUNCE_S)
    except Exception:
        # The batch is stored and its hours are marked dirty; the periodic sweep rolls them up
        # once the broker is back. Losing the enqueue must not fail the ingest.
        cache.delete("accounting:rollup-pending")
        log.exception("rollup.enqueue_failed organization_id=%s", organization_id)
