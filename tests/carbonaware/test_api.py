"""The Carbon Aware SDK's WebAPI routes, table-driven from the requests and answers the SDK
documents (casdk-docs/docs/tutorial-basics/carbon-aware-webapi.md, its controllers' tests and
DTOs), on our own hourly factors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from tests.carbonaware.conftest import sdk_get
from tests.conftest import iso, load_hourly
from tests.savings.conftest import DAY, PROFILE_ZA

pytestmark = pytest.mark.django_db

# The documented forecast request was made at 2022-07-19T13:37:49 for zone "northeurope"
# (its data points say "IE"): we serve zone IE from 13:00 that day, 24 hours, dirtiest by day.
REQUESTED_AT = datetime(2022, 7, 19, 13, 37, 49, tzinfo=UTC)
FIRST = datetime(2022, 7, 19, 13, tzinfo=UTC)
IE = [540.0 - 10 * h if h < 6 else 480.0 + (h % 7) * 9 for h in range(24)]
IE[5] = 448.4451043375  # 18:00, the documented optimal value
PROBLEM_KEYS = {"type", "title", "status", "detail"}


@pytest.fixture
def ie(db):
    load_hourly("IE", FIRST, IE)


def forecast(client, token, **params):
    with time_machine.travel(REQUESTED_AT, tick=False):
        return sdk_get(client, "/emissions/forecasts/current", token, params)


def test_documented_forecast_request_answers_the_documented_shape(client, cast, ie):
    response = forecast(
        client,
        cast.member_token,
        location="IE",
        dataStartAt="2022-07-19T14:00:00Z",
        dataEndAt="2022-07-20T04:38:00Z",
        windowSize=10,
    )
    assert response.status_code == 200, response.content
    (body,) = response.json()
    assert set(body) == {
        "requestedAt",
        "generatedAt",
        "location",
        "dataStartAt",
        "dataEndAt",
        "windowSize",
        "optimalDataPoints",
        "forecastData",
    }
    assert body["requestedAt"] == "2022-07-19T13:37:49Z"
    assert body["location"] == "IE"
    assert (body["dataStartAt"], body["dataEndAt"]) == (
        "2022-07-19T14:00:00Z",
        "2022-07-20T04:38:00Z",
    )
    assert body["windowSize"] == 10
    # One 10-minute window per hour from 14:00; the last one that ends by 04:38 starts at 04:00.
    points = body["forecastData"]
    assert [p["timestamp"] for p in points] == [
        f"2022-07-{19 + (14 + k) // 24}T{(14 + k) % 24:02d}:00:00Z" for k in range(15)
    ]
    assert all(p["duration"] == 10 and p["location"] == "IE" for p in points)
    assert [p["value"] for p in points] == pytest.approx(IE[1:16])
    assert body["optimalDataPoints"] == [
        {
            "location": "IE",
            "timestamp": "2022-07-19T18:00:00Z",
            "duration": 10,
            "value": 448.4451043375,
        }
    ]


def test_without_data_bounds_the_whole_forecast_is_used(client, cast, ie):
    (body,) = forecast(client, cast.member_token, location="IE").json()
    assert (body["dataStartAt"], body["dataEndAt"]) == (
        "2022-07-19T13:00:00Z",
        "2022-07-20T13:00:00Z",
    )
    # No windowSize: one data point's duration, the hourly values as they are.
    assert body["windowSize"] == 60
    assert [p["value"] for p in body["forecastData"]] == pytest.approx(IE)
    assert [p["timestamp"] for p in body["optimalDataPoints"]] == ["2022-07-19T18:00:00Z"]


@pytest.mark.parametrize(
    ("params", "timestamps", "values"),
    [
        # A window that starts inside an hour is weighted by the part of each hour it covers.
        (
            {
                "dataStartAt": "2022-07-19T14:30:00Z",
                "dataEndAt": "2022-07-19T17:30:00Z",
                "windowSize": 60,
            },
            ["2022-07-19T14:30:00Z", "2022-07-19T15:30:00Z", "2022-07-19T16:30:00Z"],
            [(IE[1] + IE[2]) / 2, (IE[2] + IE[3]) / 2, (IE[3] + IE[4]) / 2],
        ),
        # Without a window the hours that overlap the scope are returned as they are.
        (
            {"dataStartAt": "2022-07-19T14:30:00Z", "dataEndAt": "2022-07-19T16:00:00Z"},
            ["2022-07-19T14:00:00Z", "2022-07-19T15:00:00Z"],
            [IE[1], IE[2]],
        ),
        # A window longer than the scope: no data points and no optimum, not an error.
        (
            {
                "dataStartAt": "2022-07-19T14:00:00Z",
                "dataEndAt": "2022-07-19T16:00:00Z",
                "windowSize": 180,
            },
            [],
            [],
        ),
    ],
)
def test_forecast_windows_within_the_scope(client, cast, ie, params, timestamps, values):
    response = forecast(client, cast.member_token, location="IE", **params)
    assert response.status_code == 200, response.content
    (body,) = response.json()
    assert [p["timestamp"] for p in body["forecastData"]] == timestamps
    assert [p["value"] for p in body["forecastData"]] == pytest.approx(values)
    if not values:
        assert body["optimalDataPoints"] == []


def test_repeated_location_answers_one_forecast_each_in_order(client, cast, ie):
    load_hourly("FR", FIRST, [50.0] * 12)
    response = forecast(client, cast.member_token, location=["FR", "IE"], windowSize=120)
    assert [f["location"] for f in response.json()] == ["FR", "IE"]
    fr = response.json()[0]
    # A constant signal: every window ties, and the SDK lists every tied window.
    assert len(fr["optimalDataPoints"]) == len(fr["forecastData"]) == 11


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "location"),
        ({"location": ""}, "location"),
        ({"location": "NOWHERE"}, "location"),
        # The SDK's own test: a start and end before the forecast is a 400.
        (
            {
                "location": "IE",
                "dataStartAt": "1999-01-01T00:00:00Z",
                "dataEndAt": "1999-01-02T00:00:00Z",
            },
            "dataStartAt",
        ),
        (
            {
                "location": "IE",
                "dataStartAt": "2022-07-19T18:00:00Z",
                "dataEndAt": "2022-07-19T15:00:00Z",
            },
            "dataStartAt",
        ),
        ({"location": "IE", "dataEndAt": "2022-07-25T00:00:00Z"}, "dataEndAt"),
        ({"location": "IE", "dataStartAt": "yesterday"}, "dataStartAt"),
        ({"location": "IE", "windowSize": "ten"}, "windowSize"),
        ({"location": "IE", "windowSize": 0}, "windowSize"),
        ({"location": "IE", "windowSize": -30}, "windowSize"),
        ({"location": "IE", "windowSize": 168 * 60 + 1}, "windowSize"),
    ],
)
def test_bad_forecast_requests_are_validation_problem_details(client, cast, ie, params, field):
    response = forecast(client, cast.member_token, **params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == 400
    assert body["title"] == "One or more validation errors occurred."
    assert list(body["errors"]) == [field], body
    assert all(isinstance(m, str) and m for m in body["errors"][field])


@pytest.mark.parametrize(
    "path", ["/emissions/forecasts/current", "/emissions/bylocation", "/locations"]
)
def test_every_route_needs_a_bearer_token_and_says_so_as_a_problem(client, ie, path):
    response = sdk_get(client, path, None, {"location": "IE"})
    assert response.status_code in (401, 403)
    body = response.json()
    assert body["status"] == response.status_code and set(body) >= PROBLEM_KEYS
    assert response["Content-Type"].startswith("application/problem+json")
    assert sdk_get(client, path, "eru_not-a-token", {"location": "IE"}).status_code == 401


@pytest.mark.parametrize(
    ("now_h", "duration_h", "within_h"),
    [(0, 1, 24), (0, 3, 24), (0, 3, 12), (5, 1, 24), (5, 4, 30), (20, 6, 24), (0, 1, 48)],
)
def test_forecast_is_the_best_window_in_the_sdks_terms(client, cast, now_h, duration_h, within_h):
    """One implementation: with the best window's horizon as ``dataEndAt``, the SDK's first
    optimum for ``windowSize = 60 x duration_h`` is the best window's start and average."""
    load_hourly("ZA", DAY, PROFILE_ZA)
    now = DAY + timedelta(hours=now_h, minutes=20)
    first = DAY + timedelta(hours=now_h)
    with time_machine.travel(now, tick=False):
        best = client.get(
            "/api/v1/carbon/best-window",
            {"zone": "ZA", "duration_h": duration_h, "within_h": within_h},
            HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
        ).json()
        (sdk,) = sdk_get(
            client,
            "/emissions/forecasts/current",
            cast.member_token,
            {
                "location": "ZA",
                "windowSize": 60 * duration_h,
                "dataEndAt": iso(min(first + timedelta(hours=within_h), DAY + timedelta(hours=48))),
            },
        ).json()
    optimal = sdk["optimalDataPoints"][0]
    assert optimal["timestamp"] == best["start"].replace("+00:00", "Z")
    assert optimal["value"] == pytest.approx(best["avg_intensity_g_per_kwh"])
    assert sdk["forecastData"][0]["value"] == pytest.approx(best["now"]["avg_intensity_g_per_kwh"])


def test_marginal_signals_steer_both_apis_alike(client, cast, ie):
    # A marginal signal cleanest at 22:00-01:00 (the grid average is cleanest at 18:00).
    marginal = [600.0 if not 9 <= h < 12 else 250.0 for h in range(24)]
    load_hourly("IE", FIRST, marginal, basis="marginal", source="test marginal signal")
    (sdk,) = forecast(client, cast.member_token, location="IE", windowSize=180).json()
    assert [p["timestamp"] for p in sdk["optimalDataPoints"]] == ["2022-07-19T22:00:00Z"]
    assert sdk["optimalDataPoints"][0]["value"] == pytest.approx(250.0)


def test_an_organizations_own_factors_are_its_alone(client, cast):
    load_hourly("ZX", FIRST, [100.0, 90.0, 80.0], organization=cast.org)
    mine = forecast(client, cast.member_token, location="ZX")
    assert mine.status_code == 200
    theirs = forecast(client, cast.outsider_token, location="ZX")
    assert theirs.status_code == 400 and list(theirs.json()["errors"]) == ["location"]
    with time_machine.travel(REQUESTED_AT, tick=False):
        assert "ZX" in sdk_get(client, "/locations", cast.member_token).json()
        assert sdk_get(client, "/locations", cast.outsider_token).status_code == 204


# --- emissions/bylocation ----------------------------------------------------------------------

JAN = datetime(2022, 1, 1, tzinfo=UTC)


@pytest.fixture
def useast(db):
    load_hourly("useast", JAN, [70.0, 64.0, 80.0, 75.0])
    load_hourly("useast", datetime(2022, 5, 16, 23, tzinfo=UTC), [90.0, 95.0])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # The documented request: date-only bounds, every hour with data in between.
        (
            {"time": "2022-01-01", "toTime": "2022-05-17"},
            [
                ("2022-01-01T00:00:00Z", 70.0),
                ("2022-01-01T01:00:00Z", 64.0),
                ("2022-01-01T02:00:00Z", 80.0),
                ("2022-01-01T03:00:00Z", 75.0),
                ("2022-05-16T23:00:00Z", 90.0),
            ],
        ),
        # No toTime: the hour the instant falls in.
        ({"time": "2022-01-01T01:20:00Z"}, [("2022-01-01T01:00:00Z", 64.0)]),
        # toTime is exclusive.
        (
            {"time": "2022-01-01T01:00:00+00:00", "toTime": "2022-01-01T03:00:00Z"},
            [("2022-01-01T01:00:00Z", 64.0), ("2022-01-01T02:00:00Z", 80.0)],
        ),
        # Offsets are honoured: 06:00+06:00 is midnight UTC.
        ({"time": "2022-01-01T06:00:00+06:00"}, [("2022-01-01T00:00:00Z", 70.0)]),
    ],
)
def test_bylocation_answers_the_documented_emissions_data(client, cast, useast, params, expected):
    response = sdk_get(
        client, "/emissions/bylocation", cast.member_token, {"location": "useast", **params}
    )
    assert response.status_code == 200, response.content
    assert response.json() == [
        {"location": "useast", "time": time, "duration": "01:00:00", "rating": rating}
        for time, rating in expected
    ]


def test_bylocation_without_data_is_no_content(client, cast, useast):
    response = sdk_get(
        client,
        "/emissions/bylocation",
        cast.member_token,
        {"location": "useast", "time": "2021-06-01"},
    )
    assert response.status_code == 204 and response.content == b""


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"time": "2022-01-01"}, "location"),
        ({"location": "", "time": "2022-01-01"}, "location"),
        ({"location": "useast", "toTime": "2022-01-02"}, "time"),
        ({"location": "useast", "time": "2022-01-02", "toTime": "2022-01-01"}, "time"),
        ({"location": "useast", "time": "2022-13-45"}, "time"),
        ({"location": "useast", "time": "2020-01-01", "toTime": "2022-01-01"}, "toTime"),
    ],
)
def test_bad_bylocation_requests_are_validation_problem_details(
    client, cast, useast, params, field
):
    response = sdk_get(client, "/emissions/bylocation", cast.member_token, params)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and set(body) >= PROBLEM_KEYS
    assert list(body["errors"]) == [field], body


def test_locations_lists_the_zones_with_hourly_factors_as_the_sdks_dictionary(
    client, cast, ie, useast
):
    from ecoreport.carbon.models import CarbonIntensity

    # An annual factor says nothing about which hour is cleaner: not a location here.
    CarbonIntensity.objects.create(
        zone="ZB",
        resolution="year",
        start=JAN,
        end=JAN.replace(year=2023),
        intensity_g_per_kwh=50.0,
        source="test annual",
        year=2022,
    )
    response = sdk_get(client, "/locations", cast.member_token)
    assert response.status_code == 200
    assert response.json() == {
        "IE": {"latitude": None, "longitude": None, "name": "IE"},
        "useast": {"latitude": None, "longitude": None, "name": "useast"},
    }


def test_a_nul_in_the_query_is_refused_as_a_problem_before_any_view(client, cast):
    response = sdk_get(
        client, "/emissions/forecasts/current", cast.member_token, {"location": "F\x00R"}
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == 400 and "NUL" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("post", {}, 405),
        ("delete", {}, 405),
        ("get", {"HTTP_ACCEPT": "application/xml"}, 406),
    ],
)
def test_framework_refusals_are_problems_too(client, cast, ie, method, headers, status):
    response = getattr(client, method)(
        "/api/carbon-aware/emissions/forecasts/current?location=IE",
        HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
        **headers,
    )
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")


def test_throttled_requests_are_problems_with_retry_after(client, cast, ie, monkeypatch):
    from ecoreport.core.throttling import ApiThrottle

    # The rates are read into the class when DRF loads; patch them there, for this test only.
    monkeypatch.setattr(
        ApiThrottle, "THROTTLE_RATES", {**ApiThrottle.THROTTLE_RATES, "api": "1/min"}
    )
    statuses = []
    for _ in range(2):
        response = sdk_get(client, "/locations", cast.member_token)
        statuses.append(response.status_code)
    assert statuses == [200, 429]
    assert int(response["Retry-After"]) > 0
    assert response.json()["status"] == 429 and response.json()["title"] == "Too Many Requests"
