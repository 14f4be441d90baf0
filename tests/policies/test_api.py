"""The targets and webhooks API with the cast: the owner writes, the member reads, the outsider
sees nothing; bad input is a 400 that says what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine

from ecoreport.policies.models import Target, TargetEvaluation, Webhook
from ecoreport.policies.services import target_create, target_evaluate

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 11, tzinfo=UTC)


@pytest.fixture
def api(client, django_capture_on_commit_callbacks):
    def call(method: str, path: str, token: str, body=None, **params):
        kwargs = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
            if body is not None:
                return getattr(client, method)(
                    path, data=json.dumps(body), content_type="application/json", **kwargs
                )
            return getattr(client, method)(path, params or None, **kwargs)

    return call


GOOD = {
    "name": "Quarterly GPU energy",
    "scope": "org",
    "metric": "energy_kwh",
    "comparator": "at_most",
    "threshold": 5000,
    "period": "quarter",
}


def test_owner_creates_and_the_target_is_evaluated_at_once(cast, usage, api):
    usage(datetime(2026, 10, 1, tzinfo=UTC), 24)
    response = api("post", "/api/v1/targets", cast.owner_token, GOOD)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in GOOD} == {**GOOD, "threshold": 5000.0}
    assert body["unit"] == "kWh"
    assert body["forecast_method"] == "run_rate"
    assert body["reduction_pct"] is None
    assert body["baseline"] == ""
    target = Target.objects.get()
    assert target.organization == cast.org
    assert target.status == "on_track"  # evaluated on commit, not an hour later
    status = api("get", f"/api/v1/targets/{target.pk}/status", cast.member_token).json()
    assert status["status"] == "on_track"
    assert status["latest"]["period"] == "2026-Q4"
    assert status["latest"]["value"] == pytest.approx(12.0)
    assert status["latest"]["forecast_value"] == pytest.approx(12.0 * 92 / 41)
    assert status["latest"]["threshold_value"] == 5000.0
    assert len(status["history"]) == 1


def test_member_reads_but_cannot_write(cast, api):
    target = target_create(
        organization=cast.org,
        name="t",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1.0,
        period="month",
    )
    assert api("get", "/api/v1/targets", cast.member_token).json()[0]["id"] == target.pk
    assert api("get", f"/api/v1/targets/{target.pk}", cast.member_token).status_code == 200
    assert api("post", "/api/v1/targets", cast.member_token, GOOD).status_code == 403
    assert (
        api(
            "patch", f"/api/v1/targets/{target.pk}", cast.member_token, {"threshold": 2}
        ).status_code
        == 403
    )
    assert api("delete", f"/api/v1/targets/{target.pk}", cast.member_token).status_code == 403
    assert Target.objects.get().threshold == 1.0


def test_outsider_sees_nothing(cast, api):
    target = target_create(
        organization=cast.org,
        name="t",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1.0,
        period="month",
    )
    assert api("get", "/api/v1/targets", cast.outsider_token).json() == []
    for method in ("get", "delete"):
        assert api(method, f"/api/v1/targets/{target.pk}", cast.outsider_token).status_code == 404
    assert (
        api(
            "patch", f"/api/v1/targets/{target.pk}", cast.outsider_token, {"threshold": 9}
        ).status_code
        == 404
    )
    response = api("get", f"/api/v1/targets/{target.pk}/status", cast.outsider_token)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Target.objects.filter(pk=target.pk, threshold=1.0).exists()


def test_anonymous_is_refused(client):
    assert client.get("/api/v1/targets").status_code in (401, 403)


def test_list_is_ordered_by_name(cast, api):
    for name in ("b", "c", "a"):
        target_create(
            organization=cast.org,
            name=name,
            metric="energy_kwh",
            comparator="at_most",
            threshold=1.0,
            period="month",
        )
    assert [t["name"] for t in api("get", "/api/v1/targets", cast.owner_token).json()] == [
        "a",
        "b",
        "c",
    ]


def test_update_and_delete(cast, api):
    from tests.factories import TeamFactory

    TeamFactory(organization=cast.org, slug="vision")
    target = target_create(
        organization=cast.org,
        name="t",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1.0,
        period="month",
    )
    response = api(
        "patch",
        f"/api/v1/targets/{target.pk}",
        cast.owner_token,
        {"scope": "team:vision", "threshold": 250},
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["scope"], response.json()["threshold"]) == ("team:vision", 250.0)
    assert api("delete", f"/api/v1/targets/{target.pk}", cast.owner_token).status_code == 204
    assert not Target.objects.exists()


def test_relative_target_per_gpu_hour(cast, api):
    body = {
        **GOOD,
        "threshold": None,
        "reduction_pct": 20,
        "baseline": "2025-q4",
        "normalize_per_gpu_hour": True,
        "forecast_method": "trailing_14d",
    }
    response = api("post", "/api/v1/targets", cast.owner_token, body)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["reduction_pct"], data["baseline"], data["unit"]) == (20.0, "2025-Q4", "kWh/GPU-h")
    defaulted = api(
        "post",
        "/api/v1/targets",
        cast.owner_token,
        {**GOOD, "threshold": None, "reduction_pct": 10},
    ).json()
    assert defaulted["baseline"] == "same_period_last_year"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"metric": "avg_gpu_util_pct", "comparator": "at_least", "threshold": 120},
            "threshold",
            "GPU utilization is at most 100 %; got 120",
        ),
        ({"metric": "idle_energy_share_pct", "threshold": -5}, "threshold", "never negative"),
        ({"threshold": -1}, "threshold", "IT energy is never negative"),
        ({"threshold": None}, "threshold", "a threshold is required"),
        ({"threshold": "lots"}, "threshold", "A valid number is required."),
        ({"metric": "energy_per_gpu_hour_wh", "threshold": 45000}, "threshold", "at most 10000"),
        ({"scope": "team:nope"}, "scope", "there is no team 'nope' in this organization"),
        ({"scope": "project:ghost"}, "scope", "there is no project 'ghost'"),
        ({"scope": "everyone"}, "scope", "use 'org', 'team:SLUG' or 'project:SLUG'"),
        ({"metric": "water_l"}, "metric", "not a valid choice"),
        ({"period": "week"}, "period", "not a valid choice"),
        ({"comparator": "about"}, "comparator", "not a valid choice"),
        ({"forecast_method": "magic"}, "forecast_method", "not a valid choice"),
        (
            {"threshold": None, "reduction_pct": 20, "baseline": "2027-Q1"},
            "baseline",
            "the baseline period 2027-Q1 must end before the target period 2026-Q4 starts",
        ),
        (
            {"threshold": None, "reduction_pct": 20, "baseline": "2026-Q4"},
            "baseline",
            "must end before the target period 2026-Q4 starts",
        ),
        (
            {
                "threshold": None,
                "reduction_pct": 20,
                "baseline": "2026-Q1",
                "period_label": "2025-Q4",
            },
            "baseline",
            "must end before the target period 2025-Q4 starts",
        ),
        (
            {"threshold": None, "reduction_pct": 20, "baseline": "last-ish"},
            "baseline",
            "'last-ish' is not a quarter",
        ),
        ({"threshold": None, "reduction_pct": 120}, "reduction_pct", "between 0 and 100"),
        ({"reduction_pct": 20}, "threshold", "either threshold or reduction_pct"),
        (
            {"threshold": None, "reduction_pct": 20, "comparator": "at_least"},
            "comparator",
            "needs comparator 'at_most'",
        ),
        ({"baseline": "previous_period"}, "baseline", "only applies to a relative target"),
        (
            {"metric": "avg_gpu_util_pct", "threshold": 50, "normalize_per_gpu_hour": True},
            "normalize_per_gpu_hour",
            "already a ratio",
        ),
        ({"period_label": "2026-13"}, "period_label", "is not a quarter"),
    ],
)
def test_bad_target_input_is_a_clear_400(cast, api, change, field, message):
    response = api("post", "/api/v1/targets", cast.owner_token, {**GOOD, **change})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith(f"{field}: ")
    assert message in error["message"]
    assert field in error["details"]
    assert not Target.objects.exists()


def test_partial_update_is_validated_against_the_stored_target(cast, api):
    target = target_create(
        organization=cast.org,
        name="u",
        metric="avg_gpu_util_pct",
        comparator="at_least",
        threshold=60.0,
        period="month",
    )
    response = api("patch", f"/api/v1/targets/{target.pk}", cast.owner_token, {"threshold": 101})
    assert response.status_code == 400
    assert "at most 100" in response.json()["error"]["message"]


def test_status_history_is_newest_first_and_limited(cast, usage, api):
    usage(datetime(2026, 11, 1, tzinfo=UTC), 240)
    target = target_create(
        organization=cast.org,
        name="t",
        metric="energy_kwh",
        comparator="at_most",
        threshold=50.0,
        period="month",
    )
    for day in (5, 6, 7):  # 48, 60 and 72 kWh so far
        with time_machine.travel(datetime(2026, 11, day, tzinfo=UTC), tick=False):
            target_evaluate(target=target)
    body = api("get", f"/api/v1/targets/{target.pk}/status", cast.member_token, limit=2).json()
    assert body["status"] == "breached"
    assert [h["evaluated_at"] for h in body["history"]] == [
        "2026-11-07T00:00:00Z",
        "2026-11-06T00:00:00Z",
    ]
    assert body["latest"] == body["history"][0]
    assert body["target"]["id"] == target.pk
    assert (
        api("get", f"/api/v1/targets/{target.pk}/status", cast.member_token, limit=0).status_code
        == 400
    )
    assert TargetEvaluation.objects.count() == 3


def test_never_evaluated_target_says_so(cast, api):
    target = Target.objects.create(
        organization=cast.org,
        name="t",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1.0,
        period="month",
    )
    body = api("get", f"/api/v1/targets/{target.pk}/status", cast.owner_token).json()
    assert (body["status"], body["latest"], body["history"]) == ("not_evaluated", None, [])


# --- Webhooks -----------------------------------------------------------------------------


def test_webhook_secret_is_write_only(cast, api):
    response = api(
        "post",
        "/api/v1/webhooks",
        cast.owner_token,
        {"url": "https://hooks.example.com/ecoreport", "secret": "x" * 32},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "secret" not in body
    assert (body["url"], body["format"], body["is_active"]) == (
        "https://hooks.example.com/ecoreport",
        "json",
        True,
    )
    assert body["recent_deliveries"] == [] and body["failed_deliveries"] == 0
    assert Webhook.objects.get().secret == "x" * 32
    listed = api("get", "/api/v1/webhooks", cast.owner_token).json()
    assert [w["id"] for w in listed] == [body["id"]] and "secret" not in listed[0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"url": "ftp://files.example.com/x", "secret": "x" * 32},
            "must use http or https, not 'ftp'",
        ),
        ({"url": "javascript:alert(1)", "secret": "x" * 32}, "must use http or https"),
        ({"url": "hooks.example.com", "secret": "x" * 32}, "must use http or https, not 'nothing'"),
        ({"url": "http://", "secret": "x" * 32}, "not a valid URL"),
        ({"url": "https://hooks.example.com/x", "secret": "short"}, "at least 16"),
        ({"url": "https://hooks.example.com/x"}, "required"),
        (
            {"url": "https://hooks.example.com/x", "secret": "x" * 32, "format": "xml"},
            "not a valid choice",
        ),
    ],
)
def test_bad_webhooks_are_a_clear_400(cast, api, body, message):
    response = api("post", "/api/v1/webhooks", cast.owner_token, body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not Webhook.objects.exists()


def test_webhooks_are_for_admins_only(cast, api):
    hook = Webhook.objects.create(
        organization=cast.org, url="https://h.example.com/x", secret="s" * 20
    )
    assert api("get", "/api/v1/webhooks", cast.member_token).status_code == 403
    assert api("get", "/api/v1/webhooks", cast.outsider_token).json() == []
    assert api("get", f"/api/v1/webhooks/{hook.pk}", cast.outsider_token).status_code == 404
    assert api("delete", f"/api/v1/webhooks/{hook.pk}", cast.outsider_token).status_code == 404
    response = api("patch", f"/api/v1/webhooks/{hook.pk}", cast.owner_token, {"is_active": False})
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert api("delete", f"/api/v1/webhooks/{hook.pk}", cast.owner_token).status_code == 204


def test_members_opt_in_to_alert_emails(cast, api):
    assert api("get", "/api/v1/alerts/subscription", cast.member_token).json() == {
        "email_alerts": False
    }
    assert api(
        "put", "/api/v1/alerts/subscription", cast.member_token, {"email_alerts": True}
    ).json() == {"email_alerts": True}
    assert cast.member.alert_subscription.email_alerts is True
    assert api("get", "/api/v1/alerts/subscription", cast.owner_token).json() == {
        "email_alerts": False
    }
