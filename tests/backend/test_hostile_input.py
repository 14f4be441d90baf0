"""Hostile or clumsy input on the read API and the pages gets a clear 4xx (or is ignored with
a sane default), never a 500, and the API's errors all have the one documented shape."""

from __future__ import annotations

import json

import pytest

from ecoreport.policies.models import Target

pytestmark = [pytest.mark.django_db]

NUL = "%00"


def _api(client, cast, method: str, url: str, body=None, *, content_type="application/json"):
    kwargs = {"HTTP_AUTHORIZATION": f"Bearer {cast.owner_token}"}
    if body is not None:
        kwargs["data"] = body
        kwargs["content_type"] = content_type
    return getattr(client, method)(url, **kwargs)


def _assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


API_QUERIES_REFUSED = [
    # NUL bytes in query parameters and path slugs (PostgreSQL cannot compare such text).
    "/api/v1/reports?team=a" + NUL + "b",
    "/api/v1/reports?period=2026-Q1" + NUL,
    "/api/v1/sites/dc" + NUL + "1",
    "/api/v1/sites/dc" + NUL + "1/pue",
    "/api/v1/sites/dc" + NUL + "1/instruments",
    "/api/v1/usage?group_by=team" + NUL,
    "/api/v1/savings?scope=team:a" + NUL,
    "/api/v1/carbon/best-window?zone=F" + NUL + "R&duration_h=2",
    "/api/v1/usage?" + NUL + "=1",
    # Offsets no place on earth has, and years before 1970 or past 2199.
    "/api/v1/usage?start=2026-11-01T00:00:00%2B23:59",
    "/api/v1/usage?end=2026-11-01T00:00:00-15:00",
    "/api/v1/usage?start=1969-12-31T23:00:00Z",
    "/api/v1/usage?start=0001-01-01T00:00:00Z&end=0001-01-02T00:00:00Z",
    "/api/v1/usage?start=0001-01-01T00:00:00%2B01:00",
    "/api/v1/usage?end=9999-12-31T23:00:00-05:00",
    "/api/v1/usage/provenance?start=1900-01-01T00:00:00Z&end=1900-01-02T00:00:00Z",
    "/api/v1/savings?start=1969-01-01T00:00:00Z",
    "/api/v1/carbon-intensity?start=1969-01-01T00:00:00Z",
    "/api/v1/carbon-intensity?end=2026-01-01T00:00:00%2B20:00",
    # An empty date is a mistake, not "use the default".
    "/api/v1/usage?start=",
    "/api/v1/savings?end=",
    # Huge numbers.
    "/api/v1/carbon-intensity?limit=99999999999999999999999999",
    "/api/v1/carbon-intensity?offset=-1",
    "/api/v1/carbon/best-window?zone=FR&duration_h=99999999999999999999999",
]


@pytest.mark.parametrize("url", API_QUERIES_REFUSED)
def test_hostile_query_on_the_api_is_a_400_in_the_error_shape(client, cast, url):
    _assert_error_shape(_api(client, cast, "get", url), 400)


API_BODIES_REFUSED = [
    ("post", "/api/v1/sites", '{"slug": "dc2", "name": "\\ud800", "grid_zone": "FR"}'),
    ("post", "/api/v1/sites", '{"slug": "dc2", "name": "a\\u0000b", "grid_zone": "FR"}'),
    ("post", "/api/v1/carbon-intensity", '{"zone": "\\udfff", "g_co2e_per_kwh": 1}'),
    ("post", "/api/v1/carbon-intensity", "[" * 100_000 + "]" * 100_000),
    ("put", "/api/v1/alerts/subscription", '{"email_alerts": true, "x": {"\\ud800": 1}}'),
    ("post", "/api/v1/targets", '{"name": "\\ud83d"}'),
    ("post", "/api/v1/sites", "not json"),
]


@pytest.mark.parametrize(("method", "url", "body"), API_BODIES_REFUSED)
def test_hostile_json_body_on_the_api_is_a_400(client, cast, method, url, body):
    error = _assert_error_shape(_api(client, cast, method, url, body), 400)
    assert error["code"] == "parse_error"


def test_a_pue_period_before_1970_is_refused(client, cast):
    from ecoreport.carbon.sites import site_create

    site_create(organization=cast.org, slug="dc1", name="DC 1", grid_zone="FR")
    body = json.dumps({"pue": "1.2", "valid_from": "1969-06-01T00:00:00Z"})
    error = _assert_error_shape(_api(client, cast, "post", "/api/v1/sites/dc1/pue", body), 400)
    assert "1970" in json.dumps(error["details"])


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "content_type"),
    [
        # Django's own 404s: a view's Http404 and a path that no API route matches.
        ("get", "/api/v1/reports/999999", None, 404, "application/json"),
        ("get", "/api/v1/targets/999999", None, 404, "application/json"),
        ("get", "/api/v1/webhooks/999999", None, 404, "application/json"),
        ("get", "/api/v1/targets/99999999999999999999999", None, 404, "application/json"),
        ("get", "/api/v1/reports/99999999999999999999999", None, 404, "application/json"),
        (
            "delete",
            "/api/v1/sites/dc1/instruments/99999999999999999999",
            None,
            404,
            "application/json",
        ),
        ("get", "/api/v1/nothing-here", None, 404, "application/json"),
        ("delete", "/api/v1/targets/not-a-number", None, 404, "application/json"),
        ("post", "/api/v2/ingest", "{}", 404, "application/json"),
        # DRF's method, media type and negotiation errors.
        ("delete", "/api/v1/usage", None, 405, "application/json"),
        ("post", "/api/v1/sites", "slug=dc3", 415, "application/x-www-form-urlencoded"),
    ],
)
def test_every_api_error_has_the_one_shape(client, cast, method, url, body, status, content_type):
    _assert_error_shape(_api(client, cast, method, url, body, content_type=content_type), status)


def test_unauthenticated_and_unacceptable_requests_have_the_one_shape(client, cast):
    _assert_error_shape(client.get("/api/v1/usage"), 401)
    _assert_error_shape(client.get("/api/v1/usage", HTTP_AUTHORIZATION="Bearer eru_nope"), 401)
    _assert_error_shape(client.get("/api/v1/agent/ping"), 401)
    unacceptable = client.get(
        "/api/v1/usage",
        HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}",
        HTTP_ACCEPT="application/x-nothing",
    )
    _assert_error_shape(unacceptable, 406)
    member = client.post(
        "/api/v1/sites",
        data={"slug": "dc9", "grid_zone": "FR"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
    )
    _assert_error_shape(member, 403)


def test_throttled_requests_have_the_one_shape_and_retry_after(client, cast, monkeypatch):
    from ecoreport.core.throttling import ApiThrottle

    # The rates are read into the class when DRF loads; patch them there, for this test only.
    monkeypatch.setattr(
        ApiThrottle, "THROTTLE_RATES", {**ApiThrottle.THROTTLE_RATES, "api": "1/min"}
    )
    _api(client, cast, "get", "/api/v1/savings/assumptions")
    throttled = _api(client, cast, "get", "/api/v1/savings/assumptions")
    _assert_error_shape(throttled, 429)
    assert int(throttled["Retry-After"]) > 0


# --- Pages ------------------------------------------------------------------------------------

PAGES_REFUSED = [
    "/?org=ac" + NUL + "me",
    "/teams/nl" + NUL + "p/",
    "/projects/ll" + NUL + "m/",
    "/fleet/?period=7" + NUL + "d",
    "/targets/?edit=1" + NUL,
    "/savings/?scope=team:a" + NUL,
    "/reports/?x=" + NUL,
    "/manage/factors/?zone=F" + NUL + "R",
]


@pytest.mark.parametrize("url", PAGES_REFUSED)
def test_nul_in_a_page_url_is_a_400(client, cast, url):
    client.force_login(cast.owner.user)
    response = client.get(url)
    assert response.status_code == 400, response.content[:300]
    assert b"NUL" in response.content


PAGES_WITH_ODD_INPUT = [
    # A target id that is not a number names no target.
    ("/targets/?edit=abc", 404),
    ("/targets/?edit=-1", 404),
    ("/targets/?edit=99999999999999999999999", 404),
    ("/targets/?edit=%EF%BC%91", 404),  # a full-width digit one: isdigit() but not an id
    ("/targets/?target=abc", 200),
    # Custom periods before 1970, at the end of the calendar, reversed: the picker says why and
    # shows the default period.
    ("/?period=custom&start=0001-01-01&end=0001-01-02", 200),
    ("/?period=custom&start=1969-12-01&end=1969-12-31", 200),
    ("/?period=custom&start=9999-12-30&end=9999-12-31", 200),
    ("/fleet/?period=custom&start=0001-01-01&end=0001-01-01", 200),
    ("/savings/?period=custom&start=0001-01-01&end=0001-01-02", 200),
    ("/targets/?period=custom&start=0001-01-01&end=0001-01-02", 200),
    ("/savings/results.json?period=custom&start=0001-01-01&end=0001-01-02", 200),
    ("/?period=custom&start=2026-01-01T00:00:00%2B23:59&end=2026-01-02", 200),
    ("/?period=nope&group=nope", 200),
    ("/manage/factors/?page=99999999999999999999", 200),
    ("/manage/factors/?page=abc", 200),
]


@pytest.mark.parametrize(("url", "status"), PAGES_WITH_ODD_INPUT)
def test_odd_page_input_is_a_clear_answer_not_a_500(client, cast, url, status):
    Target.objects.create(
        organization=cast.org, name="Energy", metric="energy_kwh", threshold=1, period="month"
    )
    client.force_login(cast.owner.user)
    response = client.get(url)
    assert response.status_code == status, response.content[:300]


def test_a_period_before_1970_is_explained_on_the_page(client, cast):
    client.force_login(cast.owner.user)
    response = client.get("/?period=custom&start=1969-12-01&end=1969-12-31")
    assert response.status_code == 200
    assert "Dates must lie between 1970-01-01 and 2199-12-31." in response.content.decode()


def test_posting_a_non_numeric_target_id_is_a_404(client, cast):
    client.force_login(cast.owner.user)
    response = client.post("/targets/", {"target_id": "abc", "name": "x"})
    assert response.status_code == 404
