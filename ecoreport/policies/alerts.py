"""Alerts: one per status change worth telling, its recipients, and its words (text and
webhook payload). Delivery is ``policies.delivery``; this module only enqueues it."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Q

from ecoreport.core.enqueue import enqueue_on_commit
from ecoreport.organizations.models import Membership, Role
from ecoreport.policies import calc
from ecoreport.policies.models import Alert, AlertDelivery, Target, TargetEvaluation, Webhook

log = logging.getLogger(__name__)


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
    for delivery in deliveries:
        # After commit: the worker must find the row, and a slow receiver must not hold the
        # evaluation's transaction open. A broker that is down leaves the row pending, and the
        # hourly sweep (``deliveries_stalled``) enqueues it again.
        enqueue_on_commit("policies.deliver_alert", delivery.pk)
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
