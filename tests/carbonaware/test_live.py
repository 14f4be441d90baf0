"""The SDK's routes over real HTTP: gunicorn on the test database, as a scheduler calls them
(its query strings, its bearer token), with the headers a generated client looks at."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tests.carbonaware.conftest import SDK
from tests.conftest import load_hourly

pytestmark = [pytest.mark.e2e]


def _get(url: str, token: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_a_scheduler_reads_the_current_forecast_over_http(processes, cast):
    # The live server runs on the real clock: the forecast starts at the current hour.
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    load_hourly("GB", first, [300.0, 250.0, 120.0, 110.0, 260.0, 310.0])
    _, _, url = processes.web()
    base = url + SDK

    status, kind, body = _get(
        f"{base}/emissions/forecasts/current?location=GB&windowSize=120", cast.member_token
    )
    assert (status, kind) == (200, "application/json"), body
    (forecast,) = json.loads(body)
    assert forecast["windowSize"] == 120
    (optimal,) = forecast["optimalDataPoints"]
    start = first + timedelta(hours=2)
    assert optimal == {
        "location": "GB",
        "timestamp": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration": 120,
        "value": 115.0,
    }

    status, kind, body = _get(
        f"{base}/emissions/forecasts/current?location=GB&windowSize=abc", cast.member_token
    )
    assert (status, kind) == (400, "application/problem+json"), body
    problem = json.loads(body)
    assert problem["status"] == 400 and list(problem["errors"]) == ["windowSize"]

    status, _, body = _get(
        f"{base}/emissions/bylocation?location=GB&time=2001-01-01", cast.member_token
    )
    assert (status, body) == (204, b"")
    status, _, body = _get(f"{base}/locations", cast.member_token)
    assert status == 200 and list(json.loads(body)) == ["GB"]
