"""Celery tasks: thin, named, bounded; they take ids and re-fetch."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from ecoreport.policies.services import (
    alert_delivery_attempt,
    delivery_backoff_s,
    targets_evaluate,
)

log = logging.getLogger(__name__)


@shared_task(name="policies.evaluate_targets", time_limit=1800, soft_time_limit=1700)
def evaluate_targets() -> int:
    summary = targets_evaluate()
    log.info("targets.evaluated count=%s failed=%s statuses=%s",
             summary.evaluated, summary.failed, dict(summary.by_status))
    return summary.evaluated


@shared_task(
    name="policies.deliver_alert",
    bind=True,
    time_limit=120,
    soft_time_limit=100,
    max_retries=None,  # bounded by POLICIES_DELIVERY_MAX_RETRIES below
)
def deliver_alert(self, delivery_id: int) -> None:  # type: ignore[no-untyped-def]
    retries = self.request.retries or 0
    outcome = alert_delivery_attempt(
        delivery_id=delivery_id, last_attempt=retries >= settings.POLICIES_DELIVERY_MAX_RETRIES
    )
    if outcome is False:
        raise self.retry(countdown=delivery_backoff_s(retries))


def enqueue_delivery(*, delivery_id: int) -> None:
    try:
        deliver_alert.delay(delivery_id)
    except Exception:
        # The delivery row stays pending with no attempt; the evaluation that made it is done.
        log.exception("alert.enqueue_failed delivery_id=%s", delivery_id)


@shared_task(name="policies.evaluate_target", time_limit=300, soft_time_limit=280)
def evaluate_target(target_id: int) -> None:
    from ecoreport.policies.models import Target
    from ecoreport.policies.services import target_evaluate

    target = Target.objects.filter(pk=target_id, is_active=True).first()
    if target is None:
        return  # deleted or paused since it was enqueued
    target_evaluate(target=target)
