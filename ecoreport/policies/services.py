"""Writes for targets: create, edit, and record their evaluations (whose status changes raise
alerts, ``policies.alerts``). The numbers come from ``policies.evaluation``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ecoreport.organizations.models import Organization
from ecoreport.policies.alerts import alert_create
from ecoreport.policies.calc import Status
from ecoreport.policies.evaluation import evaluate_period, target_period_start
from ecoreport.policies.models import Target, TargetEvaluation

log = logging.getLogger(__name__)


# --- Targets --------------------------------------------------------------------------------


def target_create(*, organization: Organization, **fields: Any) -> Target:
    target = Target(organization=organization, **fields)
    target.save()
    return target


def target_update(*, target: Target, **fields: Any) -> Target:
    changed_rule = False
    for name, value in fields.items():
        if getattr(target, name) != value and name not in ("name", "is_active"):
            changed_rule = True
        setattr(target, name, value)
    if changed_rule:
        # A new rule starts a new story: the next evaluation is a first one, so an edit
        # does not raise an alert that only reflects the edit.
        target.status = ""
        target.status_changed_at = None
    target.updated_at = timezone.now()
    target.save()
    return target


# --- Evaluation -----------------------------------------------------------------------------


def _alert_worthy(previous: str, new: str) -> bool:
    """A first evaluation that finds things fine says nothing; nor does the flip between
    no_data and on_track that every period start brings before its first rollup."""
    if previous == new:
        return False
    if previous == "":
        return new in (Status.AT_RISK, Status.BREACHED)
    return {previous, new} != {Status.NO_DATA, Status.ON_TRACK}


def _record(target: Target, numbers: dict[str, Any], *, now: datetime) -> TargetEvaluation:
    with transaction.atomic():
        evaluation = TargetEvaluation.objects.create(
            organization_id=target.organization_id, target=target, evaluated_at=now, **numbers
        )
        previous, new = target.status, numbers["status"]
        changes: dict[str, Any] = {"status": new, "last_evaluated_at": now}
        if new != previous:
            changes["status_changed_at"] = now
        # Claim the transition with a conditional UPDATE: of two evaluations racing from the
        # same previous status, only the one whose UPDATE matches sends the alert.
        claimed = Target.objects.filter(pk=target.pk, status=previous).update(**changes)
        if claimed:
            for name, value in changes.items():
                setattr(target, name, value)
            if _alert_worthy(previous, new):
                alert_create(target=target, evaluation=evaluation, from_status=previous)
    return evaluation


def target_evaluate(*, target: Target, now: datetime | None = None) -> list[TargetEvaluation]:
    """Evaluate the target's current period; first close a period that ended since the last
    evaluation, so "ended on the wrong side" is recorded (and alerted) before the rollover."""
    now = now or timezone.now()
    start = target_period_start(target, now)
    done = []
    last = target.evaluations.order_by("-evaluated_at", "-id").first()
    if last is not None and not last.final and last.period_start < start:
        done.append(
            _record(target, evaluate_period(target, start=last.period_start, now=now), now=now)
        )
    done.append(_record(target, evaluate_period(target, start=start, now=now), now=now))
    return done


@dataclass
class EvaluationSummary:
    evaluated: int = 0
    failed: int = 0
    by_status: Counter[str] = field(default_factory=Counter)


def targets_evaluate(
    *,
    organization: Organization | None = None,
    now: datetime | None = None,
    progress: Callable[[Target, TargetEvaluation], None] | None = None,
) -> EvaluationSummary:
    now = now or timezone.now()
    targets = Target.objects.filter(is_active=True).select_related(
        "organization", "team", "project"
    )
    if organization is not None:
        targets = targets.for_org(organization)
    summary = EvaluationSummary()
    for target in targets.order_by("organization_id", "id").iterator():
        try:
            evaluation = target_evaluate(target=target, now=now)[-1]
        except Exception:
            # One broken target must not stop the organization's others from being checked.
            summary.failed += 1
            log.exception("target.evaluate_failed target_id=%s", target.pk)
            continue
        summary.evaluated += 1
        summary.by_status[evaluation.status] += 1
        if progress is not None:
            progress(target, evaluation)
    return summary
