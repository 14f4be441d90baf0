"""Celery tasks of the ingest: thin, named, bounded, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


# SMTP errors are OSErrors: transient, worth a few retries; the notice stays unclaimed meanwhile.
@shared_task(
    name="telemetry.label_budget_notify",
    time_limit=120,
    soft_time_limit=100,
    autoretry_for=(OSError,),
    retry_backoff=60,
    max_retries=3,
    ignore_result=True,
)
def label_budget_notify(notice_id: int) -> bool:
    from ecoreport.telemetry.services import label_budget_notify as notify

    return notify(notice_id=notice_id)
