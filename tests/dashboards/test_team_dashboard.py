"""The team and project pages' newer parts: emissions by project, the intensity experienced
against the zone average, and the biggest jobs (table and CSV)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.carbon.factors import factors_import
from ecoreport.carbon.sites import site_create
from ecoreport.dashboards import selectors as sel
from ecoreport.dashboards.periods import Period
from tests.conftest import iso, make_batch, make_sample

pytestmark = pytest.mark.django_db

KWH = 3_600_000.0
DAY = datetime(2026, 11, 20, tzinfo=UTC)


def test_bucket_start_truncates_like_the_database():
    moment = datetime(2026, 8, 17, 13, 45, tzinfo=UTC)
    assert sel.bucket_start(moment, "hour") == datetime(2026, 8, 17, 13, tzinfo=UTC)
    assert sel.bucket_start(moment, "day") == datetime(2026, 8, 17, tzinfo=UTC)
    assert sel.bucket_start(moment, "month") == datetime(2026, 8, 1, tzinfo=UTC)
    assert sel.bucket_start(moment, "quarter") == datetime(2026, 7, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        sel.bucket_start(moment, "week")


def test_zone_average_is_weighted_by_where_the_energy_was_used():
    assert sel.zone_weighted_average({"FR": 3.0, "PL": 1.0}, {"FR": 50.0, "PL": 650.0}) == 200.0
    assert sel.zone_weighted_average({}, {"FR": 50.0}) is None
    assert sel.zone_weighted_average({"FR": 0.0}, {"FR": 50.0}) is None


@pytest.fixture
def pl_day(cast, make_agent, django_capture_on_commit_callbacks):
    """A Polish site with hourly factors for one day: 100 g/kWh from 00:00 to 11:00 and
    300 g/kWh after; one GPU draws 1 kWh in each of hours 02:00 and 03:00 only."""
    site = site_create(
        organization=cast.org, slug="dc-pl", name="Warsaw", grid_zone="PL", pue="1.0"
    )
    rows = [
        {
            "zone": "PL",
            "start": iso(DAY + timedelta(hours=h)),
            "end": iso(DAY + timedelta(hours=h + 1)),
            "g_co2e_per_kwh": 100.0 if h < 12 else 300.0,
            "basis": "location",
            "source": "test grid operator",
            "year": 2026,
        }
        for h in range(24)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert not factors_import(records=list(enumerate(rows, start=2))).errors
    return site, make_agent(cast.org, "node-pl", site=site)


def _post_jobs(agent, post_batch):
    samples = [
        make_sample(
            start=DAY + timedelta(hours=h),
            seconds=3600,
            energy_j=KWH * (1 + i),
            attribution=[
                {"share": 1.0, "team": "nlp", "project": "llm", "job_id": job, "user": "ann"}
            ],
        )
        for i, (h, job) in enumerate([(2, "train-small"), (3, "train-big")])
    ]
    assert post_batch(agent.token, make_batch(samples, power_limit_w=2500.0)).json()["accepted"]


def test_intensity_experienced_against_the_zone_average(cast, pl_day, post_batch):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    period = Period("custom", DAY, DAY + timedelta(days=7))  # daily buckets
    from ecoreport.organizations.models import Team

    scope = sel.Scope(cast.org, team=Team.objects.get(organization=cast.org, slug="nlp"))
    (day,) = sel.breakdown(scope, period, by="site").intensity
    assert day["period_start"] == DAY
    # The work ran in two 100 g hours; the zone averaged 200 g over the day.
    assert day["experienced_g_per_kwh"] == pytest.approx(100.0)
    assert day["zone_avg_g_per_kwh"] == pytest.approx(200.0)


def test_team_page_lists_the_biggest_jobs_and_downloads_them(client, cast, pl_day, post_batch):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    client.force_login(cast.member.user)
    query = "period=custom&start=2026-11-20&end=2026-11-20"
    response = client.get(f"/teams/nlp/?{query}")
    assert response.status_code == 200
    jobs = response.context["jobs"]
    assert [j["job_id"] for j in jobs] == ["train-big", "train-small"]
    assert jobs[0]["energy_kwh"] == pytest.approx(2.0)
    assert jobs[0]["co2e_kg"] == pytest.approx(2.0 * 100.0 / 1000)
    assert jobs[0]["gpu_hours"] == pytest.approx(1.0)
    assert jobs[0]["until"] == DAY + timedelta(hours=4)
    assert b"train-big" in response.content
    figures = response.context["figures"]
    assert {"emissions-over-time", "intensity"} <= set(figures)

    csv = client.get(f"/projects/llm/?{query}&download=jobs").content.decode().splitlines()
    assert csv[0].startswith("job_id,user,team,project,first_hour,until,peak_gpus,gpu_hours")
    assert csv[1].startswith("train-big,ann,nlp,llm,")
    assert len(csv) == 3


def test_outsider_never_sees_acme_jobs(client, cast, pl_day, post_batch):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    client.force_login(cast.outsider.user)
    assert client.get("/teams/nlp/?download=jobs").status_code == 404
    assert b"train-big" not in client.get("/").content


def test_team_hosts_download_is_computed_on_demand(client, cast, pl_day, post_batch):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    client.force_login(cast.member.user)
    query = "period=custom&start=2026-11-20&end=2026-11-20"
    lines = client.get(f"/teams/nlp/?{query}&download=hosts").content.decode().splitlines()
    assert lines[0].startswith("host,energy_kwh")
    assert lines[1].startswith("node-pl,3.0")
    assert "hosts" not in client.get(f"/teams/nlp/?{query}").context


def test_picker_shows_the_inclusive_last_day_of_a_custom_period(client, cast):
    client.force_login(cast.member.user)
    content = client.get("/?period=custom&start=2026-11-01&end=2026-11-03").content.decode()
    assert 'name="start" value="2026-11-01"' in content
    assert 'name="end" value="2026-11-03"' in content


def test_one_scan_breakdown_agrees_with_the_headline(cast, pl_day, post_batch):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    period = Period("custom", DAY, DAY + timedelta(days=1))  # hourly buckets
    scope = sel.Scope(cast.org)
    split = sel.breakdown(scope, period, by="team")
    total = sel.headline(scope, period)["current"]
    assert total["energy_kwh"] == pytest.approx(3.0)
    for rows in (split.series, split.ranked, split.over_time):
        assert sum(r["energy_kwh"] for r in rows) == pytest.approx(total["energy_kwh"])
        assert sum(r["co2e_kg"] for r in rows) == pytest.approx(total["co2e_kg"])
    assert [r["period_start"] for r in split.over_time] == [
        DAY + timedelta(hours=2),
        DAY + timedelta(hours=3),
    ]
    assert [r["team"] for r in split.ranked] == ["nlp"]
    by_site = sel.breakdown(scope, period, by="site")
    assert [(r["site"], r["energy_kwh"]) for r in by_site.ranked] == [("dc-pl", pytest.approx(3.0))]


def test_zone_averages_follow_a_factor_change(
    cast, pl_day, post_batch, django_capture_on_commit_callbacks
):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    period = Period("custom", DAY, DAY + timedelta(days=7))
    scope = sel.Scope(cast.org)
    assert sel.breakdown(scope, period, by="site").intensity[0][
        "zone_avg_g_per_kwh"
    ] == pytest.approx(200.0)
    row = {
        "zone": "PL",
        "start": iso(DAY + timedelta(hours=23)),
        "end": iso(DAY + timedelta(hours=24)),
        "g_co2e_per_kwh": 540.0,  # was 300: the day's average rises by 240 / 24 = 10
        "basis": "location",
        "source": "test grid operator, revised",
        "year": 2026,
    }
    with django_capture_on_commit_callbacks(execute=True):
        result = factors_import(records=[(2, row)], replace=True)
    assert not result.errors
    assert sel.breakdown(scope, period, by="site").intensity[0][
        "zone_avg_g_per_kwh"
    ] == pytest.approx(210.0)


def test_grouping_changes_the_chart_buckets(client, cast, pl_day, post_batch):
    _, agent = pl_day
    _post_jobs(agent, post_batch)
    client.force_login(cast.member.user)
    query = "period=custom&start=2026-11-18&end=2026-11-24"
    daily = client.get(f"/teams/nlp/?{query}").context["figures"]["energy-over-time"]
    hourly = client.get(f"/teams/nlp/?{query}&group=hour").context["figures"]["energy-over-time"]
    assert daily["data"][0]["x"] == ["2026-11-20T00:00:00+00:00"]
    assert hourly["data"][0]["x"] == ["2026-11-20T02:00:00+00:00", "2026-11-20T03:00:00+00:00"]
    content = client.get(f"/teams/nlp/?{query}&group=hour").content.decode()
    assert '<option value="hour" selected>' in content
    refused = client.get("/teams/nlp/?period=90d&group=hour")
    assert "Grouping by hour is for periods of up to 31 days" in refused.content.decode()
