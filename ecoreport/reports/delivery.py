"""Reports by e-mail: members subscribe; each issued quarterly report is sent to every
subscriber with its files attached, once per address, retried while the mail server fails."""

from __future__ import annotations

import logging
from email import encoders
from email.mime.base import MIMEBase

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from ecoreport.core.enqueue import enqueue_on_commit
from ecoreport.organizations.models import Membership
from ecoreport.reports.models import (
    CONTENT_TYPES,
    Report,
    ReportDelivery,
    ReportSubscription,
)

log = logging.getLogger(__name__)


def report_subscription_set(*, membership: Membership, subscribed: bool) -> bool:
    """Subscribe or unsubscribe the member; returns whether they are subscribed now."""
    if subscribed:
        ReportSubscription.objects.get_or_create(
            organization=membership.organization, user=membership.user
        )
    else:
        ReportSubscription.objects.filter(
            organization=membership.organization, user=membership.user
        ).delete()
    return subscribed


def is_subscribed(membership: Membership) -> bool:
    return ReportSubscription.objects.filter(
        organization=membership.organization, user=membership.user
    ).exists()


def subscriber_emails(report: Report) -> list[str]:
    """Addresses of the subscribers who are still members of the report's organization."""
    members = Membership.objects.for_org(report.organization).values("user_id")
    return sorted(
        {
            s.user.email
            for s in ReportSubscription.objects.for_org(report.organization)
            .filter(user_id__in=members)
            .select_related("user")
            if s.user.email
        }
    )


def report_deliveries_create(*, report: Report) -> list[int]:
    """One pending delivery per subscriber's address (none twice: the unique row), each sent by
    the ``reports.deliver`` task after the transaction commits. Returns the new deliveries."""
    created = []
    for email in subscriber_emails(report):
        delivery, new = ReportDelivery.objects.get_or_create(
            organization=report.organization, report=report, email=email
        )
        if new:
            created.append(delivery.pk)
            enqueue_on_commit("reports.deliver", delivery.pk)
    return created


def _message(report: Report, email: str) -> EmailMessage:
    scope = f" ({report.scope_label})" if report.team_id else ""
    lines = [
        f"The {report.period} sustainability report of {report.organization.name}{scope}, "
        f"version {report.version}, is attached.",
    ]
    if report.change_note:
        lines += ["", "What changed since the previous version:", report.change_note]
    lines += [
        "",
        "You receive this because you subscribed on the Reports page of EcoReport; unsubscribe "
        "there.",
    ]
    message = EmailMessage(
        subject=f"[EcoReport] {report.organization.name}: sustainability report "
        f"{report.period}{scope} v{report.version}",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email],
    )
    for f in report.files.all():
        # Base64 for every file, text ones included: a text/* part would be re-encoded with
        # CRLF line ends on the way, and the file would no longer match its SHA-256.
        maintype, subtype = CONTENT_TYPES[f.format].split(";")[0].split("/")
        part = MIMEBase(maintype, subtype)
        part.set_payload(bytes(f.content))
        encoders.encode_base64(part)
        part.add_header(
            "Content-Disposition", "attachment", filename=f"{report.filename_stem}.{f.format}"
        )
        message.attach(part)
    return message


def report_delivery_attempt(*, delivery_id: int) -> float | None:
    """Send one pending delivery once. Returns seconds to wait before the next attempt, or None
    when there is nothing more to do (sent, failed for good, gone). The attempt count is on the
    row: after REPORTS_DELIVERY_MAX_RETRIES retries the delivery is ``failed``."""
    with transaction.atomic():
        delivery = (
            # of=("self",): PostgreSQL cannot lock the nullable side (the team) of the join.
            ReportDelivery.objects.select_for_update(of=("self",))
            .select_related("report__organization", "report__team")
            .filter(pk=delivery_id, state=ReportDelivery.State.PENDING)
            .first()
        )
        if delivery is None:
            return None
        try:
            _message(delivery.report, delivery.email).send()
            error = ""
        except Exception as exc:  # any backend error (refused, unreachable) is worth a retry
            error = f"{type(exc).__name__}: {exc}"
        delivery.attempts += 1
        if not error:
            delivery.state = ReportDelivery.State.SENT
            delivery.sent_at = timezone.now()
            delivery.last_error = ""
        else:
            delivery.last_error = error[:2000]
            if delivery.attempts > settings.REPORTS_DELIVERY_MAX_RETRIES:
                delivery.state = ReportDelivery.State.FAILED
        delivery.save()
    log.info(
        "report.delivery report_id=%s delivery_id=%s state=%s attempts=%s error=%s",
        delivery.report_id,
        delivery.pk,
        delivery.state,
        delivery.attempts,
        error or "-",
    )
    if delivery.state != ReportDelivery.State.PENDING:
        return None
    return settings.REPORTS_DELIVERY_BACKOFF_S * 2 ** (delivery.attempts - 1)


def report_deliveries_sweep() -> int:
    """Enqueue every pending delivery again: one whose task was lost (a broker outage at issue
    time, a worker killed) is sent by the next sweep. A delivery is locked while it is sent and
    sent only while pending, so a duplicate task never sends twice."""
    pending = list(
        ReportDelivery.objects.filter(state=ReportDelivery.State.PENDING).values_list(
            "pk", flat=True
        )
    )
    for pk in pending:
        enqueue_on_commit("reports.deliver", pk)
    return len(pending)
