"""A team keeps one colour on every chart: whatever period ranks it first or last, on the pages
and in the HTML report; unattributed work is grey."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.core.palette import PALETTE, UNATTRIBUTED_COLOUR
from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

DAY1 = datetime(2026, 11, 2, tzinfo=UTC)
DAY2 = datetime(2026, 11, 9, tzinfo=UTC)


def _colours(figure):
    return {trace["name"]: trace["marker"]["color"] for trace in figure["data"]}


@pytest.fixture
def two_weeks(cast, agent, post_batch):
    from tests.factories import TeamFactory

    TeamFactory(organization=cast.org, slug="alpha", name="Alpha")  # created first
    TeamFactory(organization=cast.org, slug="beta", name="Beta")

    def hours(day, team, watts, n, gpu):
        return [
            make_sample(
                gpu=gpu,
                start=day + timedelta(hours=i),
                seconds=3600,
                energy_j=3600 * watts,
                attribution=[{"share": 1.0, "team": team, "project": f"{team}-p"}] if team else [],
            )
            for i in range(n)
        ]

    # Week one: beta used most; week two: alpha did. Some idle energy in both.
    samples = (
        hours(DAY1, "alpha", 100.0, 2, "GPU-0")
        + hours(DAY1, "beta", 300.0, 4, "GPU-1")
        + hours(DAY1, None, 50.0, 2, "GPU-2")
        + hours(DAY2, "alpha", 400.0, 4, "GPU-0")
        + hours(DAY2, "beta", 100.0, 1, "GPU-1")
    )
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == len(samples)
    return cast


def test_a_team_keeps_its_colour_whatever_the_period_ranks_it(client, two_weeks):
    client.force_login(two_weeks.member.user)
    week1 = client.get("/", {"period": "custom", "start": "2026-11-02", "end": "2026-11-08"})
    week2 = client.get("/", {"period": "custom", "start": "2026-11-09", "end": "2026-11-15"})
    first, second = (_colours(r.context["figures"]["energy-by-team"]) for r in (week1, week2))
    assert [t["team"] for t in week1.context["teams"]][:2] == ["beta", "alpha"]
    assert [t["team"] for t in week2.context["teams"]][:2] == ["alpha", "beta"]
    assert first["Alpha"] == second["Alpha"] and first["Beta"] == second["Beta"]
    assert first["Alpha"] != first["Beta"]
    assert first["(unattributed)"] == UNATTRIBUTED_COLOUR
    assert UNATTRIBUTED_COLOUR not in PALETTE


def test_the_html_report_uses_the_pages_colours(client, two_weeks):
    from ecoreport.core.periods import parse_period
    from ecoreport.reports import content as report_content
    from ecoreport.reports.html import report_figures

    client.force_login(two_weeks.member.user)
    page = client.get("/", {"period": "custom", "start": "2026-11-02", "end": "2026-11-15"})
    content = report_content.build(
        organization=two_weeks.org,
        team=None,
        period=parse_period("2026-11"),
        generated_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    report = _colours(report_figures(content)["energy-by-team"])
    pages = _colours(page.context["figures"]["energy-by-team"])
    assert report["Alpha"] == pages["Alpha"] and report["Beta"] == pages["Beta"]
