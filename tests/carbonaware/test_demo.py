"""The demo shows the SDK-shaped API: its first zone has a forecast a scheduler can ask about,
and seed_demo says what that answer is."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine

from tests.carbonaware.conftest import sdk_get

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_the_demo_answers_a_scheduler_as_the_best_window_does(client):
    from ecoreport.demo.carbon import demo_carbon_aware_hint, demo_carbon_seed
    from ecoreport.demo.services import demo_seed
    from ecoreport.organizations.services import api_token_issue
    from ecoreport.savings.windows import best_window
    from tests.factories import MembershipFactory

    summary = demo_seed(days=1, gpus=4, now=NOW)
    demo_carbon_seed(organization=summary.organization, days=1, now=NOW)
    scheduler = MembershipFactory(
        organization=summary.organization, username="scheduler", role="viewer"
    )
    token = api_token_issue(membership=scheduler)
    with time_machine.travel(NOW, tick=False):
        response = sdk_get(
            client,
            "/emissions/forecasts/current",
            token,
            {"location": "FR", "windowSize": 180},
        )
        hint = demo_carbon_aware_hint(organization=summary.organization)
    assert response.status_code == 200, response.content
    (forecast,) = response.json()
    best = best_window(summary.organization, zone="FR", duration_h=3, within_h=168, now=NOW)
    assert best["basis"] == "marginal"
    optimal = forecast["optimalDataPoints"][0]
    assert optimal["timestamp"] == best["start"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert optimal["value"] == pytest.approx(best["avg_intensity_g_per_kwh"])
    assert f"best start {best['start']:%Y-%m-%d %H:%M} UTC" in hint
    assert "location=FR&windowSize=180" in hint and "(marginal signal)" in hint


def test_seed_demo_prints_what_the_carbon_aware_api_answers():
    from django.core.management import call_command

    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--days", "1", "--gpus", "1", stdout=out)
    assert "Carbon Aware SDK API: GET /api/carbon-aware/emissions/forecasts/current?location=" in (
        out.getvalue()
    )
    assert "best start" in out.getvalue()
