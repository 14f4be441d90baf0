"""Celery tasks: thin, named, bounded, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

from ecoreport.accounting.services import dirty_hours_rollup

log = logging.getLogger(__name__)


@shared_task(name="accounting.rollup_dirty_hours", time_limit=900, soft_time_limit=840)
def rollup_dirty_hours() -> int:
    total = 0
    while hours := dirty_hours_rollup(limit=200):
        total += hours
    return total
