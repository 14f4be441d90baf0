"""HourlySummary and HourlyJobUsage: derived from the same samples as HourlyUsage, they must
agree with it to the joule, survive re-rollups, and follow PUE and factor changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Sum

from ecoreport.accounting.models import HourlyJobUsage, HourlySummary, HourlyUsage
from ecoreport.accounting.services import hours_rollup
from ecoreport.carbon.pue import site_pue_set
from ecoreport.carbon.sites import site_create
from tests.conftest import BASE_TIME, make_batch, make_sample

pytestmark = pytest.mark.django_db

KWH = 3_600_000.0
# Every column the two tables share beside the keys: each measure and emission figure, whatever
# measures get added, not a copy of today's list.
_KEYS = {"id", "organization", "hour", "site", "team", "project", "component", "source"}
COLUMNS = sorted(
    (
        {f.name for f in HourlySummary._meta.concrete_fields}
        & {f.name for f in HourlyUsage._meta.concrete_fields}
    )
    - _KEYS
)


@pytest.fixture
def fr_agent(cast, make_agent):
    site = site_create(
        organization=cast.org, slug="dc-fr", name="Paris", grid_zone="FR", pue="1.25"
    )
    return site, make_agent(cast.org, "node-fr", site=site)


def _measure(agent, post_batch):
    """Two GPUs over three hours: GPU-0 shared 50/50 by two jobs, GPU-1 running one job for the
    first two hours and idle in the third."""
    samples = []
    for hour in range(3):
        start = BASE_TIME + timedelta(hours=hour)
        samples.append(
            make_sample(
                gpu="GPU-0",
                start=start,
                seconds=3600,
                energy_j=0.4 * KWH,
                attribution=[
                    {"share": 0.5, "team": "nlp", "project": "llm", "job_id": "j-1", "user": "ann"},
                    {"share": 0.5, "team": "nlp", "project": "llm", "job_id": "j-2", "user": "bo"},
                ],
            )
        )
        samples.append(
            make_sample(
                gpu="GPU-1",
                start=start,
                seconds=3600,
                energy_j=(0.6 if hour < 2 else 0.1) * KWH,
                gpu_util_pct=90.0 if hour < 2 else 0.0,
                attribution=[{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "j-3"}]
                if hour < 2
                else [],
            )
        )
    body = make_batch(samples, gpus=["GPU-0", "GPU-1"], power_limit_w=1500.0)
    assert post_batch(agent.token, body).json()["accepted"] == 6


def _sums(model, **filters):
    return model.objects.filter(**filters).aggregate(**{c: Sum(c) for c in COLUMNS})


def test_summary_equals_hourly_usage_column_by_column(fr_agent, post_batch):
    _, agent = fr_agent
    _measure(agent, post_batch)
    usage, summary = _sums(HourlyUsage), _sums(HourlySummary)
    for column in COLUMNS:
        assert summary[column] == pytest.approx(usage[column]), column
    assert summary["energy_j"] == pytest.approx(3 * 0.4 * KWH + 2 * 0.6 * KWH + 0.1 * KWH)
    # One row per (hour, site, team, project): the idle hour of GPU-1 has no team of its own.
    assert HourlySummary.objects.count() == 3 + 1
    first = HourlySummary.objects.get(hour=BASE_TIME, team__slug="nlp")
    assert first.facility_energy_j == pytest.approx(1.25 * KWH)
    assert first.co2e_g == pytest.approx(1.25 * 56.0)  # Ember 2023, France


def test_jobs_get_their_share_of_the_energy_and_emissions(fr_agent, post_batch):
    _, agent = fr_agent
    _measure(agent, post_batch)
    jobs = {
        r["job_id"]: r
        for r in HourlyJobUsage.objects.values("job_id", "user_name").annotate(
            energy=Sum("energy_j"), seconds=Sum("gpu_seconds"), co2e=Sum("co2e_g")
        )
    }
    assert set(jobs) == {"j-1", "j-2", "j-3"}
    assert jobs["j-1"]["energy"] == pytest.approx(3 * 0.2 * KWH)
    assert jobs["j-1"]["seconds"] == pytest.approx(3 * 1800)
    assert jobs["j-1"]["user_name"] == "ann"
    assert jobs["j-3"]["energy"] == pytest.approx(2 * 0.6 * KWH)
    assert jobs["j-3"]["co2e"] == pytest.approx(2 * 0.6 * 1.25 * 56.0)
    # Everything with a job id is in the jobs table; the idle hour is not.
    attributed = HourlyUsage.objects.aggregate(
        e=Sum("energy_j"), idle=Sum("idle_energy_j"), un=Sum("unattributed_energy_j")
    )
    total_jobs = HourlyJobUsage.objects.aggregate(e=Sum("energy_j"))["e"]
    assert total_jobs == pytest.approx(attributed["e"] - attributed["un"])


def test_rolling_up_again_changes_nothing(fr_agent, post_batch, cast):
    _, agent = fr_agent
    _measure(agent, post_batch)
    before = (_sums(HourlySummary), HourlySummary.objects.count(), HourlyJobUsage.objects.count())
    hours_rollup(
        organization_id=cast.org.pk, hours=[BASE_TIME + timedelta(hours=h) for h in (0, 2)]
    )
    after = (_sums(HourlySummary), HourlySummary.objects.count(), HourlyJobUsage.objects.count())
    assert after == before


def test_pue_change_rewrites_summary_and_jobs(
    fr_agent, post_batch, django_capture_on_commit_callbacks
):
    site, agent = fr_agent
    _measure(agent, post_batch)
    with django_capture_on_commit_callbacks(execute=True):
        site_pue_set(
            site=site, pue="1.50", valid_from=BASE_TIME + timedelta(hours=1), now=BASE_TIME
        )
    usage, summary = _sums(HourlyUsage), _sums(HourlySummary)
    for column in ("facility_energy_j", "co2e_g", "co2e_market_g"):
        assert summary[column] == pytest.approx(usage[column]), column
    first = HourlySummary.objects.get(hour=BASE_TIME, team__slug="nlp")
    later = HourlySummary.objects.get(hour=BASE_TIME + timedelta(hours=1), team__slug="nlp")
    assert first.facility_energy_j == pytest.approx(1.25 * KWH)
    assert later.facility_energy_j == pytest.approx(1.50 * KWH)
    job = HourlyJobUsage.objects.get(job_id="j-3", hour=BASE_TIME + timedelta(hours=1))
    assert job.facility_energy_j == pytest.approx(1.50 * 0.6 * KWH)
    assert job.co2e_g == pytest.approx(1.50 * 0.6 * 56.0)


def test_upgrade_marks_rolled_up_hours_for_a_rebuild(fr_agent, post_batch):
    # Migration 0003 cannot rebuild jobs from HourlyUsage (it has no job column): it marks the
    # hours already rolled up as dirty, and the sweep rebuilds all three tables.
    import importlib

    from django.apps import apps

    from ecoreport.accounting.services import dirty_hours_rollup
    from ecoreport.telemetry.models import DirtyHour

    migration = importlib.import_module(
        "ecoreport.accounting.migrations.0003_dashboard_summaries_and_jobs"
    )
    _, agent = fr_agent
    _measure(agent, post_batch)
    before = (_sums(HourlySummary), HourlyJobUsage.objects.count())
    HourlySummary.objects.all().delete()
    HourlyJobUsage.objects.all().delete()
    assert not DirtyHour.objects.exists()
    migration.backfill(apps, None)
    assert sorted(DirtyHour.objects.values_list("hour", flat=True)) == [
        BASE_TIME + timedelta(hours=h) for h in range(3)
    ]
    assert dirty_hours_rollup() == 3
    assert (_sums(HourlySummary), HourlyJobUsage.objects.count()) == before
