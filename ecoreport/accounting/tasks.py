"""Celery tasks: thin, named, bounded, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache

from ecoreport.accounting.services import dirty_hours_rollup

log = logging.getLogger(__name__)

# Ingest commits many batches a second; one rollup a second covers them all. The task runs no
# earlier than the debounce key expires, so every batch that found the key set has committed
# before the task reads the samples.
ROLLUP_DEBOUNCE_S = 1


@shared_task(name="accounting.rollup_dirty_hours", time_limit=900, soft_time_limit=840)
def rollup_dirty_hours() -> int:
    total = 0
    while hours := dirty_hours_rollup(limit=200):
        total += hours
    return total


def enqueue_rollup(*, organization_id: int) -> None:
    if rollup_dirty_hours.app.conf.task_always_eager:
        rollup_dirty_hours.delay()
        return
    # The rollup task claims dirty hours of every organization; one pending run is enough.
    if not cache.add("accounting:rollup-pending", organization_id, timeout=ROLLUP_DEBOUNCE_S):
        return
    try:
        rollup_dirty_hours.apply_async(countdown=ROLLUP_DEBOUNCE_S)
    except Exception:
        # The batch is stored and its hours are marked dirty; the periodic sweep rolls them up
        # once the broker is back. Losing the enqueue must not fail the ingest.
        cache.delete("accounting:rollup-pending")
        log.exception("rollup.enqueue_failed organization_id=%s", organization_id)
