"""A person signs in, opens the overview and a team dashboard, sees the charts drawn, changes the
period, and the browser reports no JavaScript error."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


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
