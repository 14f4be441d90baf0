"""Alerts: one per status change, to a real webhook receiver on loopback with a signature the
test verifies, retried with backoff, failures visible; email to admins and opted-in members."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail

from ecoreport.policies.delivery import delivery_backoff_s
from ecoreport.policies.models import Alert, AlertDelivery, AlertSubscription, Target, Webhook
from ecoreport.policies.services import target_create, target_evaluate

pytestmark = pytest.mark.django_db

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
NOV_11 = datetime(2026, 11, 11, tzinfo=UTC)


@pytest.fixture
def evaluate(django_capture_on_commit_callbacks):
    """Evaluate at a frozen moment and run what it enqueued on commit (the deliveries)."""

    def run(target: Target, moment: datetime = NOV_11, *, deliver: bool = True):
        with (
            time_machine.travel(moment, tick=False),
            django_capture_on_commit_callbacks(execute=deliver) as callbacks,
        ):
            evaluations = target_evaluate(target=target)
        return evaluations[-1], callbacks

    return run


@pytest.fixture
def energy_target(cast, usage):
    usage(NOV_1, 240, kwh_per_hour=0.5)  # 120 kWh so far, 360 forecast for November
    return target_create(
        organization=cast.org,
        name="GPU energy",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1000.0,
        period="month",
    )


def set_threshold(target: Target, threshold: float) -> None:
    # Straight to the row: an edit through the API restarts the status story on purpose.
    Target.objects.filter(pk=target.pk).update(threshold=threshold)
    target.threshold = threshold


def hook(cast, receiver, **fields) -> Webhook:
    return Webhook.objects.create(
        organization=cast.org, url=receiver.url, secret=receiver.secret, **fields
    )


def test_one_signed_alert_per_transition(cast, receiver, energy_target, evaluate):
    hook(cast, receiver)
    assert evaluate(energy_target)[0].status == "on_track"  # a first, quiet evaluation
    set_threshold(energy_target, 300.0)
    assert evaluate(energy_target)[0].status == "at_risk"
    evaluate(energy_target, datetime(2026, 11, 11, 1, tzinfo=UTC))  # still at risk: no alert
    evaluate(energy_target, datetime(2026, 11, 11, 2, tzinfo=UTC))
    set_threshold(energy_target, 100.0)
    assert evaluate(energy_target, datetime(2026, 11, 11, 3, tzinfo=UTC))[0].status == "breached"

    assert len(receiver.requests) == 2
    bodies = receiver.verified_bodies()
    assert len(bodies) == 2  # every request carries a valid signature of its raw body
    assert [(b["from_status"], b["to_status"]) for b in bodies] == [
        ("on_track", "at_risk"),
        ("at_risk", "breached"),
    ]
    first = bodies[0]
    assert first["event"] == "target.status_changed"
    assert first["organization"] == "acme"
    assert first["target"] == {
        "id": energy_target.pk,
        "name": "GPU energy",
        "scope": "org",
        "metric": "energy_kwh",
        "comparator": "at_most",
        "period": "month",
        "normalize_per_gpu_hour": False,
    }
    assert first["evaluation"]["value"] == pytest.approx(120.0)
    assert first["evaluation"]["forecast_value"] == pytest.approx(360.0)
    assert first["evaluation"]["threshold"] == 300.0
    assert receiver.requests[0]["headers"]["content-type"] == "application/json"
    assert Alert.objects.count() == 2
    assert set(AlertDelivery.objects.values_list("state", "attempts")) == {("sent", 1)}


def test_a_wrong_secret_does_not_verify(cast, receiver, energy_target, evaluate):
    hook(cast, receiver)
    receiver.secret = "some-other-secret-entirely"
    set_threshold(energy_target, 300.0)
    evaluate(energy_target)
    assert len(receiver.requests) == 1
    assert receiver.verified_bodies() == []


def test_first_evaluation_alerts_only_when_something_is_wrong(cast, receiver, usage, evaluate):
    hook(cast, receiver)
    usage(NOV_1, 240, kwh_per_hour=0.5)
    fine = target_create(
        organization=cast.org,
        name="fine",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1000.0,
        period="month",
    )
    bad = target_create(
        organization=cast.org,
        name="bad",
        metric="energy_kwh",
        comparator="at_most",
        threshold=100.0,
        period="month",
    )
    evaluate(fine)
    evaluate(bad)
    assert [
        (b["target"]["name"], b["from_status"], b["to_status"]) for b in receiver.verified_bodies()
    ] == [("bad", None, "breached")]


def test_period_start_no_data_flip_is_quiet(cast, receiver, energy_target, evaluate):
    hook(cast, receiver)
    evaluate(energy_target)  # on_track in November
    # 1 December, before the first December rollup: November is closed on track, December has
    # no data yet. Neither is news.
    evaluation, _ = evaluate(energy_target, datetime(2026, 12, 1, 0, 5, tzinfo=UTC))
    assert evaluation.status == "no_data"
    assert receiver.requests == []


def test_racing_evaluations_alert_once(cast, receiver, energy_target, evaluate):
    hook(cast, receiver)
    set_threshold(energy_target, 300.0)
    stale = Target.objects.get(pk=energy_target.pk)  # loaded before either evaluation
    evaluate(energy_target)
    evaluate(stale)  # believes the status is still blank, but the row says at_risk
    assert len(receiver.requests) == 1
    assert Alert.objects.count() == 1


def test_retries_until_the_receiver_recovers(cast, receiver, energy_target, evaluate):
    hook(cast, receiver)
    receiver.plan = [500, 500]  # then 200
    set_threshold(energy_target, 300.0)
    evaluate(energy_target)
    assert len(receiver.requests) == 3
    assert len(receiver.verified_bodies()) == 3
    assert len({r["body"] for r in receiver.requests}) == 1  # the same alert, resent
    delivery = AlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("sent", 3, 200)
    assert delivery.last_error == ""
    assert Alert.objects.count() == 1


def test_failures_are_visible_after_the_last_retry(
    cast, receiver, energy_target, evaluate, client, settings
):
    settings.POLICIES_DELIVERY_MAX_RETRIES = 2
    hook(cast, receiver)
    receiver.plan = [500] * 10
    set_threshold(energy_target, 300.0)
    evaluate(energy_target)
    assert len(receiver.requests) == 3  # the first attempt and two retries
    delivery = AlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("failed", 3, 500)
    assert delivery.last_error.startswith("HTTP 500")
    body = client.get("/api/v1/webhooks", HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}").json()
    assert body[0]["failed_deliveries"] == 1
    assert body[0]["recent_deliveries"][0]["state"] == "failed"
    assert body[0]["recent_deliveries"][0]["last_error"].startswith("HTTP 500")


def test_backoff_doubles(settings):
    settings.POLICIES_DELIVERY_BACKOFF_S = 30
    assert [delivery_backoff_s(n) for n in range(5)] == [30, 60, 120, 240, 480]
    assert delivery_backoff_s(20) == 3600  # capped


def test_retry_is_scheduled_with_backoff(cast, receiver, energy_target, evaluate, monkeypatch):
    from ecoreport.policies import tasks

    scheduled = []
    monkeypatch.setattr(
        tasks.deliver_alert,
        "apply_async",
        lambda args, countdown: scheduled.append((args, countdown)),
    )
    hook(cast, receiver)
    receiver.plan = [503, 503]
    set_threshold(energy_target, 300.0)
    evaluate(energy_target, deliver=False)
    delivery = AlertDelivery.objects.get()
    tasks.deliver_alert(delivery.pk)
    tasks.deliver_alert(delivery.pk)
    assert scheduled == [((delivery.pk,), 30.0), ((delivery.pk,), 60.0)]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("pending", 2, 503)


@pytest.mark.parametrize(
    ("retry_after", "expected_s"),
    [
        pytest.param("120", (120.0, 120.0), id="seconds"),
        pytest.param("5", (30.0, 30.0), id="sooner-than-the-backoff"),
        pytest.param("86400", (3600.0, 3600.0), id="capped"),
        pytest.param("in-a-minute", (30.0, 30.0), id="unreadable"),
        pytest.param(None, (598.0, 600.0), id="http-date"),
    ],
)
def test_a_receivers_retry_after_delays_the_next_attempt(
    cast, receiver, energy_target, evaluate, monkeypatch, retry_after, expected_s
):
    from email.utils import formatdate

    from ecoreport.policies import tasks

    scheduled = []
    monkeypatch.setattr(
        tasks.deliver_alert,
        "apply_async",
        lambda args, countdown: scheduled.append(countdown),
    )
    hook(cast, receiver)
    header = retry_after or formatdate(time.time() + 600, usegmt=True)
    receiver.plan = [(429, {"Retry-After": header})]
    set_threshold(energy_target, 300.0)
    evaluate(energy_target, deliver=False)
    tasks.deliver_alert(AlertDelivery.objects.get().pk)
    (countdown,) = scheduled
    low, high = expected_s
    assert low <= countdown <= high  # the backoff alone would be 30 s


def test_stalled_deliveries_are_swept_up(cast, receiver, energy_target, evaluate):
    from ecoreport.policies.tasks import evaluate_targets

    hook(cast, receiver)
    set_threshold(energy_target, 300.0)
    evaluate(energy_target, deliver=False)  # as if the broker had lost the enqueue
    assert receiver.requests == []
    with time_machine.travel(datetime(2026, 11, 11, 2, tzinfo=UTC), tick=False):
        evaluate_targets()
    assert len(receiver.verified_bodies()) == 1
    assert AlertDelivery.objects.get().state == "sent"


def test_a_slow_receiver_never_blocks_evaluation(cast, receiver, energy_target, evaluate, settings):
    settings.POLICIES_WEBHOOK_TIMEOUT_S = 0.3
    settings.POLICIES_DELIVERY_MAX_RETRIES = 0
    hook(cast, receiver)
    receiver.delay_s = 3.0
    set_threshold(energy_target, 300.0)
    began = time.monotonic()
    evaluation, callbacks = evaluate(energy_target, deliver=False)
    assert time.monotonic() - began < 1.0
    assert evaluation.status == "at_risk"
    # The delivery is its own task, enqueued after the evaluation committed.
    assert len(callbacks) == 1
    assert AlertDelivery.objects.get().state == "pending"
    began = time.monotonic()
    callbacks[0]()
    assert time.monotonic() - began < 2.0  # the short timeout, not the receiver's 3 s
    delivery = AlertDelivery.objects.get()
    assert delivery.state == "failed"
    # The same words as for a closed port: the log must not tell open ports from closed ones.
    assert delivery.last_error == "failed: no HTTP answer"


def test_a_receiver_that_is_down_is_a_recorded_failure(cast, energy_target, evaluate, settings):
    settings.POLICIES_DELIVERY_MAX_RETRIES = 0
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    Webhook.objects.create(organization=cast.org, url=f"http://127.0.0.1:{port}/x", secret="s" * 20)
    set_threshold(energy_target, 300.0)
    assert evaluate(energy_target)[0].status == "at_risk"
    delivery = AlertDelivery.objects.get()
    assert delivery.state == "failed"
    # Not the socket's "Connection refused": that would let an admin scan internal ports.
    assert delivery.last_error == "failed: no HTTP answer"


def test_slack_format_posts_text(cast, receiver, energy_target, evaluate):
    hook(cast, receiver, format="slack")
    set_threshold(energy_target, 300.0)
    evaluate(energy_target)
    (body,) = receiver.verified_bodies()
    assert list(body) == ["text"]
    assert body["text"].startswith("[EcoReport] GPU energy (org, 2026-11): new → at_risk.")
    assert "forecast 360.00" in body["text"]


def test_inactive_webhooks_and_other_orgs_webhooks_get_nothing(
    cast, receiver, energy_target, evaluate
):
    hook(cast, receiver, is_active=False)
    Webhook.objects.create(organization=cast.other_org, url=receiver.url, secret=receiver.secret)
    set_threshold(energy_target, 300.0)
    evaluate(energy_target)
    assert receiver.requests == []


def test_email_goes_to_admins_and_opted_in_team_members(cast, usage, team, evaluate):
    from django.contrib.auth import get_user_model

    from ecoreport.organizations.services import membership_ensure

    users = get_user_model().objects
    users.filter(username="olivia").update(email="olivia@acme.test")  # owner
    users.filter(username="mo").update(email="mo@acme.test")  # member of nlp, opted in
    users.filter(username="oscar").update(email="oscar@globex.test")  # the other org's owner
    quiet = membership_ensure(organization=cast.org, username="quinn", role="member")
    users.filter(username="quinn").update(email="quinn@acme.test")  # member of nlp, not opted in
    for membership in (cast.member, quiet):
        membership.teams.add(team)
    AlertSubscription.objects.create(membership=cast.member, email_alerts=True)

    usage(NOV_1, 240, kwh_per_hour=0.5, team=team)
    team_target = target_create(
        organization=cast.org,
        name="NLP energy",
        metric="energy_kwh",
        comparator="at_most",
        threshold=300.0,
        period="month",
        scope_kind="team",
        team=team,
    )
    org_target = target_create(
        organization=cast.org,
        name="Org energy",
        metric="energy_kwh",
        comparator="at_most",
        threshold=300.0,
        period="month",
    )
    evaluate(team_target)
    evaluate(org_target)
    assert [sorted(m.to) for m in mail.outbox] == [
        ["mo@acme.test", "olivia@acme.test"],
        ["olivia@acme.test"],
    ]
    assert mail.outbox[0].subject == "[EcoReport] NLP energy: at risk"
    assert "team:nlp" in mail.outbox[0].body
    assert set(AlertDelivery.objects.values_list("channel", "state")) == {("email", "sent")}


def test_alert_text_names_the_team_beside_its_scope_key(cast, usage, evaluate):
    # Issue 12: a label in another script has a digest slug; the alert says which team it is.
    from ecoreport.organizations.models import Team
    from ecoreport.policies.alerts import alert_text

    team = Team.objects.create(organization=cast.org, slug="efde87f5ca", name="研究チーム")
    usage(NOV_1, 240, kwh_per_hour=0.5, team=team)
    target = target_create(
        organization=cast.org,
        name="Research energy",
        metric="energy_kwh",
        comparator="at_most",
        threshold=300.0,
        period="month",
        scope_kind="team",
        team=team,
    )
    evaluate(target, deliver=False)
    text = alert_text(Alert.objects.get(target=target))
    assert text.startswith("[EcoReport] Research energy (team:efde87f5ca “研究チーム”, 2026-11): ")


def test_an_alert_email_the_worker_prints_is_logged_at_info_not_warning(
    energy_target, evaluate, settings, caplog
):
    """The console e-mail backend (the default, so the demo's) prints to stdout, which a Celery
    worker redirects to its log at CELERY_WORKER_REDIRECT_STDOUTS_LEVEL."""
    import logging
    import sys

    from django.contrib.auth import get_user_model

    from ecoreport.celery import app

    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    get_user_model().objects.filter(username="olivia").update(email="olivia@acme.test")
    set_threshold(energy_target, 300.0)  # 360 kWh forecast: at risk, an alert
    logger = logging.getLogger("celery.redirected")
    saved = sys.stdout, sys.stderr
    # What the worker does at start (celery.apps.worker.Worker.on_start).
    app.log.redirect_stdouts_to_logger(logger, loglevel=app.conf.worker_redirect_stdouts_level)
    try:
        with caplog.at_level(logging.DEBUG, logger="celery.redirected"):
            evaluate(energy_target)
    finally:
        sys.stdout, sys.stderr = saved
    printed = [r for r in caplog.records if r.name == "celery.redirected"]
    assert any("Subject: [EcoReport] GPU energy: at risk" in r.getMessage() for r in printed)
    assert {r.levelname for r in printed} == {"INFO"}
