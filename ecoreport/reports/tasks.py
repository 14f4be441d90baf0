"""Thin Celery tasks over the services: named, time-limited, no results, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

from ecoreport.reports import services

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
