"""The fleet page's live panel updates itself: a sample posted while the page is open shows up
without a reload."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import make_batch, make_sample

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_sample_posted_during_the_visit_appears_without_reload(
    signed_in, live_server, agent, post_batch, settings
):
    settings.LIVE_REFRESH_S = 1
    page = signed_in
    page.goto(f"{live_server.url}/fleet/")
    page.wait_for_selector("#live[data-live-at]", timeout=15_000)
    assert page.locator("[data-live='power_w']").inner_text() == "0"
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    now = timezone.now().replace(microsecond=0)
    batch = make_batch([make_sample(start=now - timedelta(seconds=12), energy_j=10 * 321.0)])
    assert post_batch(agent.token, batch).json()["accepted"] == 1

    page.wait_for_selector("[data-live='power_w']:text-is('321')", timeout=15_000)
    assert page.evaluate("window.loadedOnce") is True
    row = page.locator("[data-live-hosts] tr", has_text="gpu-node-01")
    assert "reporting" in row.inner_text() and "s ago" in row.inner_text()
    assert page.js_errors == []
