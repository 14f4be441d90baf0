"""Delivery of an alert: one attempt at a time, by webhook (signed, through the SSRF-safe
``policies.transport``) or e-mail; the attempt count and backoff live on the row."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Q
from django.utils import timezone

from ecoreport.policies import transport
from ecoreport.policies.alerts import alert_payload, alert_text
from ecoreport.policies.models import AlertDelivery

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-EcoReport-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, headers: dict[str, str]) -> transport.PostResult:
    """HTTP status, error (blank on 2xx) and Retry-After of one POST. The transport refuses
    internal destinations and never follows a redirect (see policies/transport.py)."""
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
    retry_after: float | None = None
    final = False
    if delivery.channel == AlertDelivery.Channel.WEBHOOK:
        webhook = delivery.webhook
        assert webhook is not None
        body = json.dumps(alert_payload(delivery.alert, fmt=webhook.format)).encode()
        code, error, retry_after, final = _post(
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
    # A destination the transport refuses stays refused: no retries that cannot succeed.
    last_attempt = last_attempt or final
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
    # A receiver that said when to come back (429/503 Retry-After, capped) is not asked sooner.
    return max(delivery_backoff_s(delivery.attempts), retry_after or 0.0)


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
