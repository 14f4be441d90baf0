"""/carbon/: each site's zone with its hourly intensity (actual and forecast) and the best time
to run, answered by the same service as /api/v1/carbon/best-window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from ecoreport.carbon.models import CarbonIntensity
from ecoreport.savings.windows import best_window
from tests.factories import SiteFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# 24 hours ahead: 300, 290, ... cleanest at 08:00 from now (220), then dirtier again.
AHEAD = [300 - 10 * h if h <= 8 else 220 + 15 * (h - 8) for h in range(24)]


@pytest.fixture
def grid(cast):
    SiteFactory(organization=cast.org, slug="paris", name="Paris DC", grid_zone="ZP")
    SiteFactory(organization=cast.org, slug="annual", name="Annual only", grid_zone="ZY")
    rows = [
        CarbonIntensity(
            organization=cast.org,
            zone="ZP",
            resolution="hour",
            start=NOW + timedelta(hours=h),
            end=NOW + timedelta(hours=h + 1),
            intensity_g_per_kwh=value,
            basis="location",
            source="test forecast",
            year=2026,
            is_forecast=h > 0,
        )
        for h, value in enumerate(AHEAD)
    ] + [
        CarbonIntensity(
            organization=cast.org,
            zone="ZP",
            resolution="hour",
            start=NOW - timedelta(hours=h),
            end=NOW - timedelta(hours=h - 1),
            intensity_g_per_kwh=400.0,
            basis="location",
            source="test actuals",
            year=2026,
        )
        for h in range(1, 25)
    ]
    CarbonIntensity.objects.bulk_create(rows)
    return cast


def test_each_zone_has_its_chart_and_the_form_answers_like_the_service(client, grid):
    client.force_login(grid.member.user)
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        page = client.get("/carbon/")
        answer = client.get(
            "/carbon/", {"zone": "ZP", "duration_h": 2, "within_h": 24, "energy_kwh": 50}
        )
        expected = best_window(
            grid.org, zone="ZP", duration_h=2, within_h=24, now=NOW, energy_kwh=50
        )
    assert page.status_code == 200
    charts = {c["zone"]: c for c in page.context["charts"]}
    assert charts["ZP"]["hours"] == 48 and charts["ZP"]["forecast_until"] == NOW + timedelta(
        hours=23
    )
    names = [t["name"] for t in page.context["figures"][charts["ZP"]["key"]]["data"]]
    assert names == ["Grid average", "Grid average (forecast)"]
    assert charts["ZY"]["hours"] == 0 and charts["ZY"]["key"] not in page.context["figures"]
    assert answer.status_code == 200
    assert answer.context["answer"] == expected
    assert expected["start"] == NOW + timedelta(hours=7)  # 230 + 220 is the cleanest pair
    body = answer.content.decode()
    assert "2026-11-27 19:00 UTC" in body and "forecasts" in body


def test_bad_input_and_a_zone_without_hourly_data_are_explained(client, grid):
    client.force_login(grid.member.user)
    with time_machine.travel(NOW, tick=False):
        bad = client.get("/carbon/", {"zone": "ZP", "duration_h": 0, "within_h": 24})
        unknown = client.get("/carbon/", {"zone": "XX", "duration_h": 2, "within_h": 24})
        annual = client.get("/carbon/", {"zone": "ZY", "duration_h": 2, "within_h": 24})
    assert bad.status_code == 400 and unknown.status_code == 400
    assert (
        annual.status_code == 200 and "no hourly carbon-intensity data" in annual.context["problem"]
    )
    assert "import_carbon_intensity" in annual.content.decode()


def test_an_outsider_sees_none_of_the_organizations_grid(client, grid):
    client.force_login(grid.outsider.user)
    page = client.get("/carbon/")
    assert page.status_code == 200 and page.context["charts"] == []
    assert "ZP" not in page.content.decode()
