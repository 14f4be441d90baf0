"""A sample that crosses an hour boundary gets each hour's PUE and carbon factor on that hour's
part of its energy (issue 13, item 1)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ecoreport.accounting.models import HourlyJobUsage, HourlyUsage
from ecoreport.carbon.factors import factors_import
from ecoreport.carbon.pue import site_pue_set
from tests.carbon.test_rollup_emissions import hourly, load
from tests.conftest import BASE_TIME, iso, make_batch, make_sample

pytestmark = pytest.mark.django_db

H10, H11 = BASE_TIME, BASE_TIME + timedelta(hours=1)
KWH = 3_600_000.0


def _crossing_sample(energy_j: float = 0.2 * KWH):
    # 10:50-11:10 at 600 W: 0.2 kWh, 0.1 kWh in each hour.
    return make_sample(
        start=H10 + timedelta(minutes=50),
        seconds=1200,
        energy_j=energy_j,
        attribution=[{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "j-1"}],
    )


def test_sample_from_10_50_to_11_10_gets_half_its_energy_and_each_hours_factor(
    site_agent, post_batch, run_on_commit, cast, get_usage
):
    _, agent = site_agent("GB", pue="1.5")
    load(run_on_commit, hourly("GB", H10, 100.0), hourly("GB", H11, 300.0))
    post_batch(agent.token, make_batch([_crossing_sample()], power_limit_w=1500.0))

    rows = {r.hour: r for r in HourlyUsage.objects.all()}
    assert {h: r.energy_j for h, r in rows.items()} == {H10: 0.1 * KWH, H11: 0.1 * KWH}
    # 0.1 kWh x 1.5 = 0.15 kWh of facility energy per hour, at 100 and 300 g/kWh.
    assert {h: r.co2e_g for h, r in rows.items()} == {H10: 15.0, H11: 45.0}
    assert {h: r.intensity_g_per_kwh for h, r in rows.items()} == {H10: 100.0, H11: 300.0}
    jobs = {j.hour: j.co2e_g for j in HourlyJobUsage.objects.all()}
    assert jobs == {H10: 15.0, H11: 45.0}

    body = get_usage(
        cast.member_token,
        start=iso(H10),
        end=iso(H11 + timedelta(hours=1)),
        granularity="hour",
    ).json()
    assert [(r["energy_kwh"], r["facility_energy_kwh"], r["co2e_kg"]) for r in body["rows"]] == [
        (0.1, 0.15, 0.015),
        (0.1, 0.15, 0.045),
    ]
    assert body["totals"]["energy_kwh"] == 0.2
    assert body["totals"]["co2e_kg"] == 0.06
    # The intensity the energy experienced is the mean of the two hours', not hour 10's.
    assert body["totals"]["avg_intensity_g_per_kwh"] == pytest.approx(200.0)


def test_pue_change_at_the_boundary_applies_to_each_hours_part(
    site_agent, post_batch, run_on_commit
):
    site, agent = site_agent("GB", pue="1.2")
    load(run_on_commit, hourly("GB", H10, 200.0), hourly("GB", H11, 200.0))
    run_on_commit(site_pue_set, site=site, pue="1.6", valid_from=H11)
    post_batch(agent.token, make_batch([_crossing_sample()], power_limit_w=1500.0))
    rows = {r.hour: r for r in HourlyUsage.objects.all()}
    assert {h: r.pue for h, r in rows.items()} == {H10: 1.2, H11: 1.6}
    assert rows[H10].facility_energy_j == pytest.approx(0.12 * KWH)
    assert rows[H11].facility_energy_j == pytest.approx(0.16 * KWH)


def test_factor_change_for_hour_11_rewrites_only_the_tail(site_agent, post_batch, run_on_commit):
    _, agent = site_agent("GB", pue="1.0")
    load(run_on_commit, hourly("GB", H10, 100.0), hourly("GB", H11, 300.0))
    post_batch(agent.token, make_batch([_crossing_sample()], power_limit_w=1500.0))
    result = run_on_commit(factors_import, records=[(2, hourly("GB", H11, 500.0))], replace=True)
    assert not result.errors, result.errors
    rows = {r.hour: r.co2e_g for r in HourlyUsage.objects.all()}
    assert rows == {H10: pytest.approx(10.0), H11: pytest.approx(50.0)}
