"""A person signs in, opens the overview and a team dashboard, sees the charts drawn, changes the
period, and the browser reports no JavaScript error."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.conftest import make_batch, make_sample

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def signed_in(page, live_server, cast, agent, post_batch):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    samples = [
        make_sample(
            start=start + timedelta(hours=i),
            seconds=3600,
            energy_j=3600 * 250.0,
            attribution=[{"share": 1.0, "team": "nlp", "project": "llm"}] if i % 4 else [],
        )
        for i in range(40)
    ]
    post_batch(agent.token, make_batch(samples))
    user = cast.member.user
    user.set_password("pw-for-browser")
    user.save()
    assert get_user_model().objects.filter(username=user.username).exists()
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-for-browser")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def test_overview_and_team_dashboard_draw_their_charts(signed_in, live_server):
    page = signed_in
    page.wait_for_selector("[data-figure='energy-by-team'][data-drawn='true']", timeout=15_000)
    assert page.locator("[data-figure='energy-by-team'] .main-svg").count() > 0
    assert page.locator("table tbody tr").first.inner_text().startswith("nlp")

    page.click("text=Teams")
    page.click("a[href^='/teams/nlp/']")
    page.wait_for_selector("[data-figure='energy-over-time'][data-drawn='true']", timeout=15_000)
    for figure in ("emissions-over-time", "intensity", "utilization"):
        page.wait_for_selector(f"[data-figure='{figure}'][data-drawn='true']", timeout=15_000)
    assert "Team:" in page.locator("h1").inner_text()
    assert page.locator("#jobs-title").is_visible()
    assert page.js_errors == []


def test_changing_the_period_reloads_with_it(signed_in):
    page = signed_in
    page.select_option("#period-select", "7d")
    page.wait_for_url("**period=7d**")
    page.wait_for_selector("[data-drawn='true']", timeout=15_000)
    assert page.locator("#period-select").input_value() == "7d"
    # Custom dates appear only for the custom preset, and can be reached by keyboard.
    assert page.locator(".period .custom").is_hidden()
    page.select_option("#period-select", "custom")
    assert page.locator(".period .custom").is_visible()
    page.focus("#period-select")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "period-start"
    assert page.js_errors == []
