"""Writes for targets: evaluation, status transitions, alerts and their delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ecoreport.organizations.models import Membership, Organization, Role
from ecoreport.policies import calc, transport
from ecoreport.policies.calc import Status
from ecoreport.policies.models import (
    Alert,
    AlertDelivery,
    Target,
    TargetEvaluation,
    Webhook,
)
from ecoreport.policies.selectors import metric_value, scope_metrics

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-EcoReport-Signature"


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


def target_period_start(target: Target, now: datetime) -> datetime:
    if target.period_label:
        return calc.parse_period_label(target.period, target.period_label)
    return calc.period_start(target.period, now)


def _evaluate_period(target: Target, *, start: datetime, now: datetime) -> dict[str, Any]:
    """The numbers and status of ``target`` over the period starting at ``start``, as of now."""
    end = calc.period_shift(target.period, start, 1)
    at = min(now, end)
    ended = now >= end
    cumulative = calc.metric_is_cumulative(target.metric, normalized=target.normalize_per_gpu_hour)
    notes = []

    to_date = scope_metrics(target, start=start, end=at)
    value, why = metric_value(target, to_date)
    if why:
        notes.append(why if now >= start else "the period has not started")

    trailing_value = None
    if target.forecast_method == Target.ForecastMethod.TRAILING_14D and not ended:
        trailing = scope_metrics(target, start=at - calc.TRAILING_WINDOW, end=at)
        trailing_value, _ = metric_value(target, trailing)
    result = calc.forecast(
        cumulative=cumulative,
        method=target.forecast_method,
        value_to_date=value,
        elapsed=at - start,
        remaining=end - at,
        trailing_value=trailing_value,
    )

    threshold = target.threshold
    baseline_value = None
    if target.reduction_pct is not None:
        b_start = calc.baseline_start(target.period, target.baseline, start)
        b_end = calc.period_shift(target.period, b_start, 1)
        baseline_value, why = metric_value(target, scope_metrics(target, start=b_start, end=b_end))
        if baseline_value is None:
            threshold = None
            notes.append(f"baseline {calc.period_label(target.period, b_start)}: {why}")
        else:
            threshold = calc.relative_threshold(
                baseline_value=baseline_value, reduction_pct=target.reduction_pct
            )

    status = calc.status_of(
        comparator=target.comparator,
        threshold=threshold,
        value=value,
        forecast_value=result.value,
        cumulative=cumulative,
        period_ended=ended,
    )
    return {
        "period_start": start,
        "period_end": end,
        "final": ended,
        "status": status,
        "value": value,
        "forecast_value": result.value,
        "forecast_rate_per_day": result.rate_per_day,
        "forecast_method": target.forecast_method,
        "trailing_value": trailing_value,
        "threshold_value": threshold,
        "baseline_value": baseline_value,
        "gpu_hours": (to_date or {}).get("gpu_hours") or 0.0,
        "note": "; ".join(notes)[:200],
    }


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
            _record(target, _evaluate_period(target, start=last.period_start, now=now), now=now)
        )
    done.append(_record(target, _evaluate_period(target, start=start, now=now), now=now))
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


# --- Alerts ---------------------------------------------------------------------------------


def alert_email_recipients(target: Target) -> list[str]:
    """Admins and owners of the organization, and members of the target's team who opted in."""
    members = Membership.objects.for_org(target.organization_id).select_related("user")
    team_id = target.team_id
    if team_id is None and target.project_id is not None:
        team_id = target.project.team_id
    wanted = Q(role__in=[Role.ADMIN, Role.OWNER])
    if team_id is not None:
        wanted |= Q(teams=team_id, alert_subscription__email_alerts=True)
    emails = {m.user.email for m in members.filter(wanted).distinct() if m.user.email}
    return sorted(emails)


def alert_create(*, target: Target, evaluation: TargetEvaluation, from_status: str) -> Alert:
    alert = Alert.objects.create(
        organization_id=target.organization_id,
        target=target,
        evaluation=evaluation,
        from_status=from_status,
        to_status=evaluation.status,
    )
    deliveries = [
        AlertDelivery(
            organization_id=target.organization_id,
            alert=alert,
            channel=AlertDelivery.Channel.WEBHOOK,
            webhook=webhook,
        )
        for webhook in Webhook.objects.for_org(target.organization_id).filter(is_active=True)
    ]
    recipients = alert_email_recipients(target)
    if recipients:
        deliveries.append(
            AlertDelivery(
                organization_id=target.organization_id,
                alert=alert,
                channel=AlertDelivery.Channel.EMAIL,
                recipients=recipients,
            )
        )
    for delivery in deliveries:
        delivery.save()
    from ecoreport.policies.tasks import enqueue_delivery

    for delivery in deliveries:
        # After commit: the worker must find the row, and a slow receiver must not hold the
        # evaluation's transaction open.
        transaction.on_commit(lambda pk=delivery.pk: enqueue_delivery(delivery_id=pk))
    log.info(
        "alert.created target_id=%s from=%s to=%s deliveries=%s",
        target.pk,
        from_status or "-",
        evaluation.status,
        len(deliveries),
    )
    return alert


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def alert_text(alert: Alert) -> str:
    target, ev = alert.target, alert.evaluation
    unit = calc.METRICS[target.metric].unit + ("/GPU-h" if target.normalize_per_gpu_hour else "")
    label = calc.period_label(target.period, ev.period_start)
    word = {"at_most": "at most", "at_least": "at least"}[target.comparator]
    scope = target.scope
    # The team or project by name too: a slug may be a digest (a label in another script).
    subject = {Target.Scope.TEAM: target.team, Target.Scope.PROJECT: target.project}.get(
        target.scope_kind
    )
    if subject is not None and subject.name and subject.name != subject.slug:
        scope += f" “{subject.name}”"
    return (
        f"[EcoReport] {target.name} ({scope}, {label}): "
        f"{alert.from_status or 'new'} → {alert.to_status}. "
        f"{target.metric} so far {_fmt(ev.value)} {unit}, forecast {_fmt(ev.forecast_value)} "
        f"({ev.forecast_method}), target {word} {_fmt(ev.threshold_value)} {unit}."
    )


def alert_payload(alert: Alert, *, fmt: str) -> dict[str, Any]:
    if fmt == Webhook.Format.SLACK:
        return {"text": alert_text(alert)}
    target, ev = alert.target, alert.evaluation
    return {
        "event": "target.status_changed",
        "alert_id": alert.pk,
        "organization": target.organization.slug,
        "target": {
            "id": target.pk,
            "name": target.name,
            "scope": target.scope,
            "metric": target.metric,
            "comparator": target.comparator,
            "period": target.period,
            "normalize_per_gpu_hour": target.normalize_per_gpu_hour,
        },
        "from_status": alert.from_status or None,
        "to_status": alert.to_status,
        "evaluation": {
            "evaluated_at": ev.evaluated_at.isoformat(),
            "period_start": ev.period_start.isoformat(),
            "period_end": ev.period_end.isoformat(),
            "final": ev.final,
            "value": ev.value,
            "forecast_value": ev.forecast_value,
            "forecast_method": ev.forecast_method,
            "threshold": ev.threshold_value,
            "baseline_value": ev.baseline_value,
        },
        "text": alert_text(alert),
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(HTTP status, error) of one POST; error is blank on 2xx. The transport refuses internal
    destinations and never follows a redirect (see policies/transport.py)."""
    return transport.post(url, body, headers, timeout=settings.POLICIES_WEBHOOK_TIMEOUT_S)


def alert_delivery_attempt(*, delivery_id: int) -> float | None:
    """Try one pending delivery once. Returns the seconds to wait before the next attempt, or
    None when there is nothing more to do (sent, failed for good, gone, or already sent).

    The attempt count lives on the row, so a retry lost with a broker outage and re-enqueued
    by the sweep still stops after POLICIES_DELIVERY_MAX_RETRIES retries."""
    delivery = (
        AlertDelivery.objects.select_related(
            "alert__target__organization",
            "alert__target__team",
            "alert__target__project",
            "alert__evaluation",
            "webhook",
        )
        .filter(pk=delivery_id, state=AlertDelivery.State.PENDING)
        .first()
    )
    if delivery is None:
        return None
    last_attempt = delivery.attempts >= settings.POLICIES_DELIVERY_MAX_RETRIES
    code: int | None = None
    if delivery.channel == AlertDelivery.Channel.WEBHOOK:
        webhook = delivery.webhook
        assert webhook is not None
        body = json.dumps(alert_payload(delivery.alert, fmt=webhook.format)).encode()
        code, error = _post(
            webhook.url,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "EcoReport-Webhook/1",
                "X-EcoReport-Event": "target.status_changed",
                "X-EcoReport-Delivery": str(delivery.pk),
                SIGNATURE_HEADER: sign(body, webhook.secret),
            },
        )
    else:
        target = delivery.alert.target
        try:
            send_mail(
                subject=f"[EcoReport] {target.name}: {delivery.alert.to_status.replace('_', ' ')}",
                message=alert_text(delivery.alert),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=list(delivery.recipients),
            )
            error = ""
        except Exception as exc:  # any backend error is worth a retry
            error = f"{type(exc).__name__}: {exc}"
    now = timezone.now()
    ok = not error
    state = (
        AlertDelivery.State.SENT
        if ok
        else AlertDelivery.State.FAILED
        if last_attempt
        else AlertDelivery.State.PENDING
    )
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        attempts=F("attempts") + 1,
        last_attempt_at=now,
        response_code=code,
        last_error=error[:500],
        state=state,
        sent_at=now if ok else None,
    )
    log.info(
        "alert.delivery id=%s channel=%s ok=%s code=%s", delivery.pk, delivery.channel, ok, code
    )
    if ok or last_attempt:
        return None
    return delivery_backoff_s(delivery.attempts)


def deliveries_stalled(*, older_than_s: float = 3600) -> list[int]:
    """Pending deliveries nobody has tried for a while: their enqueue or retry message was lost
    (broker down at commit, worker killed). The hourly evaluation re-enqueues them."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        AlertDelivery.objects.filter(state=AlertDelivery.State.PENDING)
        .filter(
            Q(last_attempt_at__lt=cutoff) | Q(last_attempt_at__isnull=True, created_at__lt=cutoff)
        )
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )


def delivery_backoff_s(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: doubling from the base, capped."""
    return float(min(settings.POLICIES_DELIVERY_BACKOFF_S * 2**retries, 3600))
