"""The targets page draws a target's history: a point per ended period, not one lost point."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ecoreport.core.periods import period_shift, period_start
from ecoreport.policies.services import target_evaluate
from tests.conftest import make_batch, make_sample
from tests.factories import energy_target

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_history_chart_draws_more_than_one_point(
    signed_in, live_server, cast, agent, post_batch
):
    page = signed_in
    current = period_start("month", timezone.now())
    months = [period_shift("month", current, -k) for k in (3, 2, 1)]
    samples = [
        make_sample(start=m + timedelta(days=4, hours=h), seconds=3600, energy_j=3600 * 200.0)
        for m in months
        for h in range(6)
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["rejected"] == []
    target = energy_target(cast.org)
    target_evaluate(target=target)

    page.goto(f"{live_server.url}/targets/?target={target.pk}")
    page.wait_for_selector("[data-figure='history'][data-drawn='true']", timeout=15_000)

    points = page.locator("[data-figure='history'] .scatterlayer .trace .points path")
    assert points.count() > 1
    # The ended months are a trace of their own with a marker each.
    first_trace = page.locator("[data-figure='history'] .scatterlayer .trace").first
    assert first_trace.locator(".points path").count() == 3
    assert (
        page.locator("#history-note")
        .inner_text()
        .startswith(f"History starts {months[0]:%Y-%m-%d}")
    )
    assert page.js_errors == []
