"""Celery tasks: thin, named, bounded, idempotent."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task

from ecoreport.accounting.emissions import emissions_recompute
from ecoreport.accounting.services import dirty_hours_rollup

log = logging.getLogger(__name__)


@shared_task(name="accounting.rollup_dirty_hours", time_limit=900, soft_time_limit=840)
def rollup_dirty_hours() -> int:
    total = 0
    while hours := dirty_hours_rollup(limit=200):
        total += hours
    return total


# Beside the rollup, like the recompute itself. The name stays carbon's: carbon's writes (and
# migration carbon/0003) send it by name, and messages already queued under it still run.
@shared_task(name="carbon.recompute_emissions", time_limit=1800, soft_time_limit=1740)
def recompute_emissions(
    *,
    start: str,
    end: str,
    zone: str | None = None,
    site_ids: list[int] | None = None,
    organization_id: int | None = None,
) -> int:
    # Idempotent: it compares what is stored with what resolves now, so a rerun writes nothing.
    return emissions_recompute(
        start=datetime.fromisoformat(start),
        end=datetime.fromisoformat(end),
        zone=zone,
        site_ids=site_ids,
        organization_id=organization_id,
    )
