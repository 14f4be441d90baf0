"""Thin Celery tasks over the services: named, time-limited, no results, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

from ecoreport.reports import services
from ecoreport.reports.delivery import report_deliveries_sweep, report_delivery_attempt

log = logging.getLogger(__name__)


@shared_task(name="reports.build", ignore_result=True, soft_time_limit=600, time_limit=660)
def build_report(report_id: int) -> None:
    # Returns quietly if the report is gone or another worker has it (the service's claim).
    services.report_build(report_id=report_id)


@shared_task(name="reports.issue_due", ignore_result=True, soft_time_limit=3000, time_limit=3300)
def issue_due() -> int:
    return len(services.report_issue_due())


@shared_task(name="reports.reissue_late", ignore_result=True, soft_time_limit=3000, time_limit=3300)
def reissue_late() -> int:
    return len(services.reports_reissue_late())


@shared_task(name="reports.deliver", ignore_result=True, soft_time_limit=100, time_limit=120)
def deliver(delivery_id: int) -> None:
    wait_s = report_delivery_attempt(delivery_id=delivery_id)
    if wait_s is not None:
        # A new message rather than self.retry(): the attempt count is on the row.
        deliver.apply_async((delivery_id,), countdown=wait_s)


@shared_task(
    name="reports.deliveries_sweep", ignore_result=True, soft_time_limit=300, time_limit=330
)
def deliveries_sweep() -> int:
    return report_deliveries_sweep()
