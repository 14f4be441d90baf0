"""Celery tasks: thin, named, bounded, idempotent. The emissions recompute that carbon's writes
ask for runs beside the rollup (``accounting.tasks.recompute_emissions``)."""

from __future__ import annotations

from celery import shared_task

from ecoreport.carbon.providers import providers_fetch


@shared_task(name="carbon.fetch_provider_factors", time_limit=900, soft_time_limit=840)
def fetch_provider_factors() -> int:
    return providers_fetch()
