"""Reports from the app: admins generate one from /reports/ (with the formats they pick) and
watch its progress; each report's page previews its headline figures; members subscribe and
each issued quarterly report is e-mailed to them with its files, once, retried while the mail
server is down (locmem backend, and a real SMTP server on 127.0.0.1)."""

from __future__ import annotations

import email
import socket
from datetime import UTC, datetime
from email import policy

import pytest
import time_machine
from django.core import mail

from ecoreport.core.periods import parse_period
from ecoreport.reports.delivery import report_deliveries_sweep, report_delivery_attempt
from ecoreport.reports.models import Report, ReportDelivery
from ecoreport.reports.services import report_build, report_generate

pytestmark = pytest.mark.django_db


def _generate(client, **data):
    return client.post(
        "/reports/",
        {"action": "generate", "period": "2026-Q3", "scope": "", "formats": ["pdf", "csv"], **data},
    )


def test_an_admin_generates_a_report_with_the_formats_picked(
    client, cast, q3_data, after_q3, django_capture_on_commit_callbacks
):
    client.force_login(cast.owner.user)
    page = client.get("/reports/").content.decode()
    assert 'id="generate-report"' in page and '<option value="2026-Q3">' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = _generate(client)
    report = Report.objects.get(organization=cast.org)
    assert response.status_code == 302 and response["Location"] == f"/reports/{report.pk}/"
    assert report.status == "issued" and report.requested_by == cast.owner.user
    assert sorted(report.files.values_list("format", flat=True)) == ["csv", "pdf"]
    # The page previews the headline figures the report printed.
    body = client.get(f"/reports/{report.pk}/").content.decode()
    assert "Headline figures" in body and "IT energy" in body
    kwh = report.headline["energy_kwh"]
    assert f"{kwh:,.2f}" in body
    # Asked again with the same formats and unchanged data: the same report, no copy.
    with django_capture_on_commit_callbacks(execute=True):
        again = _generate(client, formats=["pdf"])
    assert again["Location"] == f"/reports/{report.pk}/"
    # A format the issued report lacks makes a new version that has it.
    with django_capture_on_commit_callbacks(execute=True):
        more = _generate(client, formats=["xlsx"])
    newer = Report.objects.get(organization=cast.org, version=2)
    assert more["Location"] == f"/reports/{newer.pk}/"
    assert list(newer.files.values_list("format", flat=True)) == ["xlsx"]


def test_members_cannot_generate_and_bad_input_is_explained(client, cast, q3_data, after_q3):
    client.force_login(cast.member.user)
    assert 'id="generate-report"' not in client.get("/reports/").content.decode()
    assert _generate(client).status_code == 403
    client.force_login(cast.owner.user)
    response = _generate(client, period="2026-Q4")  # not ended on 2026-10-20
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert _generate(client, formats=[]).status_code == 400
    assert _generate(client, scope="no-such-team").status_code == 400
    assert not Report.objects.exists()


def test_a_running_build_shows_its_step(client, cast, q3_data, after_q3):
    from ecoreport.reports.services import report_request

    report, _ = report_request(organization=cast.org, period=parse_period("2026-Q3"))
    client.force_login(cast.member.user)
    body = client.get(f"/reports/{report.pk}/").content.decode()
    assert 'id="report-progress"' in body and f"/reports/{report.pk}/status.json" in body
    seen = []

    def watch(step):  # the step is on the row while the build runs
        seen.append((step, Report.objects.get(pk=report.pk).progress))

    report_build(report_id=report.pk, progress=watch)
    assert seen and all(step == stored for step, stored in seen)
    assert "rendering pdf" in [step for step, _ in seen]
    status = client.get(f"/reports/{report.pk}/status.json").json()
    assert status == {"id": report.pk, "status": "issued", "progress": "", "error": ""}
    client.force_login(cast.outsider.user)
    assert client.get(f"/reports/{report.pk}/status.json").status_code == 404


def _subscribe(client, membership, address):
    membership.user.email = address
    membership.user.save()
    client.force_login(membership.user)
    assert client.post("/reports/", {"action": "subscribe"}).status_code == 302


def test_subscribers_get_each_issued_quarterly_report_with_its_files_once(
    client, cast, q3_data, after_q3, django_capture_on_commit_callbacks, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    _subscribe(client, cast.member, "mo@acme.example")
    _subscribe(client, cast.outsider, "oscar@globex.example")  # another organization's
    assert "Stop e-mailing me" in client.get("/reports/").content.decode()
    client.force_login(cast.member.user)
    with django_capture_on_commit_callbacks(execute=True):
        report = report_generate(
            organization=cast.org, period=parse_period("2026-Q3"), trigger="schedule"
        )
    sent = [m for m in mail.outbox if m.to == ["mo@acme.example"]]
    assert len(sent) == 1
    parsed = email.message_from_bytes(sent[0].message().as_bytes(), policy=policy.default)
    files = {p.get_filename(): p.get_payload(decode=True) for p in parsed.iter_attachments()}
    assert sorted(files) == [f"{report.filename_stem}.{f}" for f in ("csv", "html", "pdf", "xlsx")]
    assert files[f"{report.filename_stem}.pdf"] == bytes(report.files.get(format="pdf").content)
    assert not [m for m in mail.outbox if "oscar@globex.example" in m.to]
    # A sweep re-enqueues nothing sent: no second e-mail.
    assert report_deliveries_sweep() == 0
    assert len([m for m in mail.outbox if m.to == ["mo@acme.example"]]) == 1
    # Unsubscribed: the next issued report is not sent.
    assert client.post("/reports/", {"action": "unsubscribe"}).status_code == 302
    with (
        time_machine.travel(datetime(2027, 1, 20, tzinfo=UTC), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        report_generate(organization=cast.org, period=parse_period("2026-Q4"), trigger="schedule")
    assert len([m for m in mail.outbox if m.to == ["mo@acme.example"]]) == 1


def test_on_demand_reports_are_not_mailed(
    client, cast, q3_data, after_q3, django_capture_on_commit_callbacks, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    _subscribe(client, cast.member, "mo@acme.example")
    with django_capture_on_commit_callbacks(execute=True):
        report_generate(organization=cast.org, period=parse_period("2026-Q3"))
    assert mail.outbox == [] and not ReportDelivery.objects.exists()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls this name
            self.messages.append((envelope.rcpt_tos, envelope.content))
            return "250 OK"

    handler = Keep()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    yield controller, handler, port
    if getattr(controller, "_thread", None) is not None:  # started by the test
        controller.stop()


def test_delivery_over_smtp_is_retried_while_the_server_is_down(
    client, cast, q3_data, after_q3, settings, smtp_server, django_capture_on_commit_callbacks
):
    controller, handler, port = smtp_server
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    _subscribe(client, cast.member, "mo@acme.example")
    # The server is not started yet: the first attempt fails and the delivery waits.
    with django_capture_on_commit_callbacks(execute=False):
        report = report_generate(
            organization=cast.org, period=parse_period("2026-Q3"), trigger="schedule"
        )
    delivery = ReportDelivery.objects.get(report=report)
    wait = report_delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert wait == settings.REPORTS_DELIVERY_BACKOFF_S and delivery.state == "pending"
    assert delivery.attempts == 1 and "Connection" in delivery.last_error
    controller.start()
    assert report_delivery_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.state == "sent" and delivery.sent_at is not None
    assert report_delivery_attempt(delivery_id=delivery.pk) is None  # never twice
    assert len(handler.messages) == 1
    recipients, raw = handler.messages[0]
    assert recipients == ["mo@acme.example"]
    message = email.message_from_bytes(raw, policy=policy.default)
    assert report.period in message["Subject"]
    files = {
        part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()
    }
    # Byte for byte: each file matches the SHA-256 the report's page shows.
    for f in report.files.all():
        assert files[f"{report.filename_stem}.{f.format}"] == bytes(f.content), f.format
    assert set(files) == {f"{report.filename_stem}.{f}" for f in ("csv", "html", "pdf", "xlsx")}


def test_a_delivery_fails_for_good_after_its_retries(
    client, cast, q3_data, after_q3, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", probe.getsockname()[1]
    settings.REPORTS_DELIVERY_MAX_RETRIES = 2
    _subscribe(client, cast.member, "mo@acme.example")
    with django_capture_on_commit_callbacks(execute=False):
        report = report_generate(
            organization=cast.org, period=parse_period("2026-Q3"), trigger="schedule"
        )
    delivery = ReportDelivery.objects.get(report=report)
    waits = [report_delivery_attempt(delivery_id=delivery.pk) for _ in range(4)]
    delivery.refresh_from_db()
    assert waits == [60.0, 120.0, None, None]
    assert delivery.state == "failed" and delivery.attempts == 3
