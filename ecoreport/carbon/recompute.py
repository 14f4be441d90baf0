"""Asking for an emissions recompute after a change of factors, PUE or instruments.

Every change that alters what applies to past hours calls ``recompute_enqueue`` for exactly the
zone or site and period it touches. Once the change commits, the factors' version moves on
(caches keyed by it are no longer read) and the task ``carbon.recompute_emissions`` is sent by
name; it runs ``accounting.emissions.emissions_recompute``, beside the rollup, which rewrites
only the (site, hour) rows whose PUE or factors actually differ. Carbon owns factors, zones,
PUE and instruments; the rollup tables are accounting's.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.core.cache import cache
from django.db import transaction

from ecoreport.carbon.models import FACTORS_VERSION_KEY, SINCE_EVER, UNTIL_EVER
from ecoreport.core.enqueue import enqueue_on_commit

RECOMPUTE_TASK = "carbon.recompute_emissions"


def recompute_enqueue(
    *,
    start: datetime | None,
    end: datetime | None,
    zone: str | None = None,
    site_ids: Iterable[int] | None = None,
    organization_id: int | None = None,
) -> None:
    """Once the transaction commits: move the factors' version on, then send the recompute of
    [start, end) (open ends: all time) for these sites, or the sites in ``zone``."""
    transaction.on_commit(factors_changed)
    enqueue_on_commit(
        RECOMPUTE_TASK,
        start=(start or SINCE_EVER).isoformat(),
        end=(end or UNTIL_EVER).isoformat(),
        zone=zone,
        site_ids=sorted(site_ids) if site_ids is not None else None,
        organization_id=organization_id,
    )


def factors_changed() -> None:
    """Move the factors' version on, so caches keyed by it are no longer read."""
    if not cache.add(FACTORS_VERSION_KEY, 1, timeout=None):
        try:
            cache.incr(FACTORS_VERSION_KEY)
        except ValueError:  # evicted between add and incr
            cache.add(FACTORS_VERSION_KEY, 1, timeout=None)
