"""Celery tasks: thin, named, bounded; they take ids and re-fetch."""

from __future__ import annotations

import logging

from celery import shared_task
from kombu.exceptions import OperationalError

from ecoreport.policies.delivery import alert_delivery_attempt, deliveries_stalled
from ecoreport.policies.services import target_evaluate, targets_evaluate

log = logging.getLogger(__name__)


@shared_task(name="policies.evaluate_targets", time_limit=1800, soft_time_limit=1700)
def evaluate_targets() -> int:
    summary = targets_evaluate()
    log.info(
        "targets.evaluated count=%s failed=%s statuses=%s",
        summary.evaluated,
        summary.failed,
        dict(summary.by_status),
    )
    for delivery_id in deliveries_stalled():
        enqueue_delivery(delivery_id=delivery_id)
    return summary.evaluated


@shared_task(name="policies.evaluate_target", time_limit=300, soft_time_limit=280)
def evaluate_target(target_id: int) -> None:
    from ecoreport.policies.models import Target

    target = Target.objects.filter(pk=target_id, is_active=True).first()
    if target is None:
        return  # deleted or paused since it was enqueued
    target_evaluate(target=target)


@shared_task(name="policies.deliver_alert", time_limit=120, soft_time_limit=100)
def deliver_alert(delivery_id: int) -> None:
    wait_s = alert_delivery_attempt(delivery_id=delivery_id)
    if wait_s is not None:
        # A new message rather than self.retry(): the attempt count is on the row (so the
        # sweep's re-enqueues obey the same limit), and eager mode runs the retries as well.
        deliver_alert.apply_async((delivery_id,), countdown=wait_s)


def enqueue_delivery(*, delivery_id: int) -> None:
    try:
        deliver_alert.delay(delivery_id)
    except OperationalError:
        # The broker is down. The delivery stays pending and the hourly sweep enqueues it again;
        # the evaluation that created it has committed and must not fail for this.
        log.exception("alert.enqueue_failed delivery_id=%s", delivery_id)
