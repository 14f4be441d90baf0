"""Where CodeCarbon trackers reported CPU and RAM energy, the dashboards and the reports show
IT energy by component; agent-only data keeps the pages and tables it had."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from ecoreport.core.periods import CalendarPeriod
from ecoreport.reports.content import build
from tests.codecarbon.test_ingest_api import delta
from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

HOUR = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


@pytest.fixture
def both(cast, agent, post_batch, tracker, post_cc, start_run):
    """An agent's GPU sample and a tracker's delta (cpu 2 Wh, gpu 10 Wh, ram 0.5 Wh)."""
    sample = make_sample(start=HOUR, seconds=600, energy_j=36_000.0)
    assert post_batch(agent.token, make_batch([sample])).status_code == 200
    run_id = start_run(tracker.raw)
    assert (
        post_cc(
            "emissions", delta(run_id, end=HOUR + timedelta(minutes=20)), tracker.raw
        ).status_code
        == 201
    )
    return cast


def test_the_overview_shows_energy_by_component(client, both):
    client.force_login(both.member.user)
    response = client.get("/?period=7d")
    current = response.context["headline"]["current"]
    assert current["gpu_energy_kwh"] == pytest.approx(0.01 + 0.01, rel=1e-12)
    assert current["cpu_energy_kwh"] == pytest.approx(0.002, rel=1e-12)
    assert current["ram_energy_kwh"] == pytest.approx(0.0005, rel=1e-12)
    assert current["energy_kwh"] == pytest.approx(0.0225, rel=1e-12)
    assert b'id="energy-components"' in response.content
    # The project's page too: it is the tracker's project.
    project = client.get("/projects/llm/?period=7d")
    assert project.context["headline"]["current"]["cpu_energy_kwh"] == pytest.approx(0.002)


def test_agent_only_pages_show_no_component_line(client, cast, agent, post_batch):
    assert post_batch(agent.token, make_batch([make_sample(start=HOUR)])).status_code == 200
    client.force_login(cast.member.user)
    response = client.get("/?period=7d")
    assert response.context["headline"]["current"]["cpu_energy_kwh"] == 0.0
    assert b'id="energy-components"' not in response.content


def _report(org):
    period = CalendarPeriod.containing("quarter", HOUR)
    return build(organization=org, team=None, period=period, generated_at=datetime.now(UTC))


def test_the_report_headline_lists_the_components(both):
    content = _report(both.org)
    rows = {r["key"]: r["value"] for r in content["headline"]}
    keys = [r["key"] for r in content["headline"]]
    assert keys[:4] == ["energy_kwh", "gpu_energy_kwh", "cpu_energy_kwh", "ram_energy_kwh"]
    assert rows["energy_kwh"] == pytest.approx(
        rows["gpu_energy_kwh"] + rows["cpu_energy_kwh"] + rows["ram_energy_kwh"], rel=1e-12
    )
    assert rows["cpu_energy_kwh"] == pytest.approx(0.002, rel=1e-12)


def test_an_agent_only_report_keeps_its_headline(cast, agent, post_batch):
    assert post_batch(agent.token, make_batch([make_sample(start=HOUR)])).status_code == 200
    keys = [r["key"] for r in _report(cast.org)["headline"]]
    assert "cpu_energy_kwh" not in keys and keys[0] == "energy_kwh"


def test_host_and_gpu_views_leave_out_the_trackers_hostless_rows(client, both):
    from ecoreport.accounting.scope import Scope
    from ecoreport.dashboards import selectors as sel
    from ecoreport.dashboards.periods import Period

    client.force_login(both.member.user)
    response = client.get("/?period=7d")
    period = response.context["period"]
    assert isinstance(period, Period)
    scope = Scope(both.org)
    hosts = sel.ranked(scope, period, by="host")
    assert [h["host"] for h in hosts] == ["gpu-node-01"]
    assert sel.heatmap(scope, period)["hosts"] == ["gpu-node-01"]
