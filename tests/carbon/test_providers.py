"""Provider clients against a local HTTP server that speaks each API's format (127.0.0.1 only:
the test suite blocks any other address)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ecoreport.carbon.models import CarbonIntensity
from ecoreport.carbon.providers import (
    ElectricityMaps,
    HttpClient,
    ProviderError,
    UkGrid,
    WattTime,
    providers_fetch,
)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


class FakeApis(BaseHTTPRequestHandler):
    """Routes by path; ``script`` holds queued failures (status, headers) per path prefix."""

    script: dict[str, list[tuple[int, dict[str, str]]]] = {}
    requests: list[tuple[str, dict[str, str]]] = []

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body if body is not None else {"error": "x"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        type(self).requests.append((self.path, dict(self.headers)))
        for prefix, queue in self.script.items():
            if path.startswith(prefix) and queue:
                status, headers = queue.pop(0)
                return self._send(status, headers=headers)
        if path == "/v3/carbon-intensity/history":
            if self.headers.get("auth-token") != "em-token":
                return self._send(401)
            return self._send(
                200,
                {
                    "zone": "FR",
                    "history": [
                        {
                            "zone": "FR",
                            "carbonIntensity": 40 + h,
                            "datetime": f"2026-11-27T{h:02d}:00:00.000Z",
                            "isEstimated": False,
                        }
                        for h in range(10, 12)
                    ],
                },
            )
        if path == "/v3/carbon-intensity/forecast":
            return self._send(
                200,
                {
                    "zone": "FR",
                    # 11:00 is also in the history (an actual): the forecast must not dilute it.
                    "forecast": [
                        {"carbonIntensity": 90, "datetime": "2026-11-27T11:00:00.000Z"},
                        {"carbonIntensity": 70, "datetime": "2026-11-27T12:00:00.000Z"},
                    ],
                },
            )
        if path == "/login":
            expected = "Basic " + base64.b64encode(b"wt-user:wt-pass").decode()
            if self.headers.get("Authorization") != expected:
                return self._send(403)
            return self._send(200, {"token": "wt-token"})
        if path == "/v3/historical":
            if self.headers.get("Authorization") != "Bearer wt-token":
                return self._send(401)
            start = datetime(2026, 11, 27, 10, tzinfo=UTC)
            data = [
                {
                    "point_time": (start + timedelta(minutes=5 * i)).strftime(
                        "%Y-%m-%dT%H:%M:%S+00:00"
                    ),
                    "value": 1000.0 if i < 12 else 2000.0,
                }
                for i in range(24)
            ]
            return self._send(
                200,
                {
                    "data": data,
                    "meta": {
                        "signal_type": "co2_moer",
                        "units": "lbs_co2_per_mwh",
                        "region": "CAISO_NORTH",
                    },
                },
            )
        if path.startswith("/intensity/"):
            return self._send(
                200,
                {
                    "data": [
                        {
                            "from": "2026-11-27T10:00Z",
                            "to": "2026-11-27T10:30Z",
                            "intensity": {"forecast": 180, "actual": 190, "index": "moderate"},
                        },
                        {
                            "from": "2026-11-27T10:30Z",
                            "to": "2026-11-27T11:00Z",
                            "intensity": {"forecast": 200, "actual": 210, "index": "moderate"},
                        },
                        {
                            "from": "2026-11-27T11:00Z",
                            "to": "2026-11-27T11:30Z",
                            "intensity": {"forecast": 150, "actual": None, "index": "low"},
                        },
                    ]
                },
            )
        return self._send(404)


@pytest.fixture
def fake() -> Iterator[str]:
    FakeApis.script, FakeApis.requests = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def http(sleeps: list[float]) -> HttpClient:
    return HttpClient(retries=2, timeout_s=5, sleep=sleeps.append)


def test_electricity_maps_history_and_forecast(fake, http):
    values = ElectricityMaps(http, base_url=fake, token="em-token").fetch(
        zone="FR", start=NOW, end=NOW
    )
    assert [(v.hour.hour, v.g_per_kwh, v.is_forecast) for v in values] == [
        (10, 50, False),
        (11, 51, False),
        (12, 70, True),
    ]
    assert FakeApis.requests[0][0] == "/v3/carbon-intensity/history?zone=FR"


def test_an_hour_with_an_actual_and_a_forecast_keeps_the_actual(fake, http):
    values = ElectricityMaps(http, base_url=fake, token="em-token").fetch(
        zone="FR", start=NOW, end=NOW
    )
    eleven = next(v for v in values if v.hour.hour == 11)
    # History says 51 g/kWh, the forecast 90: the measurement stands, not their mean (70.5).
    assert (eleven.g_per_kwh, eleven.is_forecast) == (51, False)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        # (minute, value, forecast) -> (value, is_forecast)
        ([(0, 100.0, False), (30, 300.0, True)], (100.0, False)),
        ([(0, 100.0, True), (30, 300.0, True)], (200.0, True)),
        ([(0, 100.0, False), (30, 200.0, False), (30, 900.0, True)], (150.0, False)),
    ],
)
def test_hourly_averages_actuals_only_where_an_hour_has_any(points, expected):
    from ecoreport.carbon.providers import _hourly

    hour = datetime(2026, 11, 27, 10, tzinfo=UTC)
    (value,) = _hourly([(hour + timedelta(minutes=m), v, f) for m, v, f in points])
    assert (value.hour, value.g_per_kwh, value.is_forecast) == (hour, *expected)


def test_electricity_maps_bad_token_is_an_error_without_retries(fake, http, sleeps):
    with pytest.raises(ProviderError, match="401"):
        ElectricityMaps(http, base_url=fake, token="wrong").fetch(zone="FR", start=NOW, end=NOW)
    assert sleeps == []


def test_watttime_logs_in_and_converts_lbs_per_mwh(fake, http):
    values = WattTime(http, base_url=fake, username="wt-user", password="wt-pass").fetch(
        zone="CAISO_NORTH", start=NOW - timedelta(hours=2), end=NOW
    )
    # 12 five-minute points per hour averaged: 1,000 and 2,000 lb/MWh -> 453.59 and 907.18 g/kWh.
    assert [(v.hour.hour, round(v.g_per_kwh, 2)) for v in values] == [(10, 453.59), (11, 907.18)]
    assert any("signal_type=co2_moer" in path for path, _ in FakeApis.requests)


def test_watttime_logs_in_again_when_the_token_expired(fake, http):
    client = WattTime(http, base_url=fake, username="wt-user", password="wt-pass")
    client._token = "expired"
    assert len(client.fetch(zone="CAISO_NORTH", start=NOW, end=NOW)) == 2
    assert [p.split("?")[0] for p, _ in FakeApis.requests] == [
        "/v3/historical",
        "/login",
        "/v3/historical",
    ]


def test_uk_grid_half_hours_average_into_hours_actual_before_forecast(fake, http):
    values = UkGrid(http, base_url=fake).fetch(zone="GB", start=NOW - timedelta(hours=2), end=NOW)
    assert [(v.hour.hour, v.g_per_kwh, v.is_forecast) for v in values] == [
        (10, 200.0, False),
        (11, 150.0, True),
    ]
    assert FakeApis.requests[0][0] == "/intensity/2026-11-27T10:00Z/2026-11-27T12:00Z"


def test_rate_limit_waits_for_retry_after_then_succeeds(fake, http, sleeps):
    FakeApis.script = {"/intensity/": [(429, {"Retry-After": "7"}), (503, {})]}
    values = UkGrid(http, base_url=fake).fetch(zone="GB", start=NOW, end=NOW)
    assert len(values) == 2
    assert sleeps == [7.0, 2.0]  # Retry-After honoured, then exponential backoff for the 503


def test_rate_limit_with_an_http_date_waits_until_that_date(fake, http, sleeps):
    # Retry-After may be an HTTP-date (RFC 9110); it used to be read as "unparsable: 1 s".
    FakeApis.script = {
        "/intensity/": [(429, {"Retry-After": formatdate(time.time() + 20, usegmt=True)})]
    }
    values = UkGrid(http, base_url=fake).fetch(zone="GB", start=NOW, end=NOW)
    assert len(values) == 2
    (wait,) = sleeps
    assert 18 < wait <= 20


def test_a_client_error_is_not_retried(fake, http, sleeps):
    FakeApis.script = {"/intensity/": [(400, {}), (400, {})]}
    with pytest.raises(ProviderError, match=r"answered 400$") as raised:
        UkGrid(http, base_url=fake).fetch(zone="GB", start=NOW, end=NOW)
    assert raised.value.status == 400
    assert (sleeps, len(FakeApis.requests)) == ([], 1)


def test_persistent_failure_gives_up_after_the_retries(fake, http, sleeps):
    FakeApis.script = {"/intensity/": [(500, {})] * 5}
    with pytest.raises(ProviderError, match="500 after 3 tries"):
        UkGrid(http, base_url=fake).fetch(zone="GB", start=NOW, end=NOW)
    assert len(sleeps) == 2


def test_unreachable_provider_is_an_error(http):
    with pytest.raises(ProviderError, match="unreachable"):
        UkGrid(http, base_url="http://127.0.0.1:9").fetch(zone="GB", start=NOW, end=NOW)


@pytest.mark.django_db
def test_scheduled_fetch_stores_hourly_factors_and_recomputes(
    fake, http, settings, site_agent, post_batch, django_capture_on_commit_callbacks
):
    from ecoreport.accounting.models import HourlyUsage
    from tests.conftest import make_batch, make_sample

    settings.CARBON_PROVIDER_ZONES = [
        "ukgrid:GB",
        "electricitymaps:FR",
        "watttime:US-CAL-CISO@CAISO_NORTH",
    ]
    settings.UKGRID_BASE_URL = settings.ELECTRICITYMAPS_BASE_URL = fake
    settings.ELECTRICITYMAPS_TOKEN = "em-token"
    settings.WATTTIME_USERNAME = ""  # no credentials: WattTime stays off
    hour = datetime(2026, 11, 27, 10, tzinfo=UTC)
    _, agent = site_agent("GB", pue="1.0")
    post_batch(
        agent.token,
        make_batch([make_sample(start=hour, seconds=3600, energy_j=3_600_000)], power_limit_w=1500),
    )
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(237.6)
    with django_capture_on_commit_callbacks(execute=True):
        changed = providers_fetch(now=NOW, http=http)
    assert changed == 5  # GB 10:00, 11:00; FR 10:00, 11:00, 12:00
    gb = CarbonIntensity.objects.filter(zone="GB", resolution="hour").order_by("start")
    assert [(f.intensity_g_per_kwh, f.is_forecast) for f in gb] == [(200.0, False), (150.0, True)]
    assert "NESO" in gb[0].source
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(200.0)
    assert not any("historical" in p for p, _ in FakeApis.requests)
    # A second fetch with the same figures changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert providers_fetch(now=NOW, http=http) == 0


@pytest.mark.django_db
def test_providers_are_off_by_default(settings):
    assert settings.CARBON_PROVIDER_ZONES == []
    assert providers_fetch(now=NOW) == 0


def test_fetch_is_scheduled_and_registered():
    from ecoreport.celery import app
    from ecoreport.schedules import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["carbon-fetch-provider-factors"]
    assert entry["task"] == "carbon.fetch_provider_factors" and entry["options"]["expires"] < 3600
    app.loader.import_default_modules()
    assert {"carbon.fetch_provider_factors", "carbon.recompute_emissions"} <= set(app.tasks)


@pytest.mark.django_db
def test_watttime_is_stored_as_marginal_and_changes_no_reported_emission(
    fake, http, settings, site_agent, post_batch, django_capture_on_commit_callbacks
):
    from ecoreport.accounting.models import HourlyUsage
    from tests.conftest import make_batch, make_sample

    settings.CARBON_PROVIDER_ZONES = ["watttime:US-CAL-CISO@CAISO_NORTH"]
    settings.WATTTIME_BASE_URL = fake
    settings.WATTTIME_USERNAME, settings.WATTTIME_PASSWORD = "wt-user", "wt-pass"
    hour = datetime(2026, 11, 27, 10, tzinfo=UTC)
    _, agent = site_agent("US-CAL-CISO", pue="1.0")
    post_batch(
        agent.token,
        make_batch([make_sample(start=hour, seconds=3600, energy_j=3_600_000)], power_limit_w=1500),
    )
    before = HourlyUsage.objects.values_list("co2e_g", "intensity_factor_id", "intensity_fallback")
    before = list(before)
    with django_capture_on_commit_callbacks(execute=True):
        assert providers_fetch(now=NOW, http=http) == 2
    stored = CarbonIntensity.objects.filter(zone="US-CAL-CISO").order_by("start")
    assert [(f.basis, f.resolution, round(f.intensity_g_per_kwh, 2)) for f in stored] == [
        ("marginal", "hour", 453.59),
        ("marginal", "hour", 907.18),
    ]
    after = list(
        HourlyUsage.objects.values_list("co2e_g", "intensity_factor_id", "intensity_fallback")
    )
    assert after == before  # still the world average, flagged: the zone has no average factor
    assert after[0][2] is True
