"""Emissions in the rollup: PUE in force at the hour, hourly-resolved factors, market-based
instruments, exact recompute after a change, and the read API's metrics and provenance."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.factors import factor_delete, factors_import
from ecoreport.carbon.instruments import market_instrument_create
from ecoreport.carbon.pue import site_pue_set
from tests.conftest import BASE_TIME, iso
from tests.conftest import make_batch as _make_batch
from tests.conftest import make_sample as _make_sample

pytestmark = pytest.mark.django_db

KWH = 3_600_000.0


def make_sample(**kwargs):
    # Hour-long samples: a kWh in an hour is 1 kW, within the batch's power limit below.
    kwargs.setdefault("seconds", 3600)
    return _make_sample(**kwargs)


def make_batch(samples):
    return _make_batch(samples, power_limit_w=1500.0)


def hourly(zone: str, hour: datetime, value: float, basis: str = "location") -> dict:
    return {
        "zone": zone,
        "start": iso(hour),
        "end": iso(hour + timedelta(hours=1)),
        "g_co2e_per_kwh": value,
        "basis": basis,
        "source": "test grid operator",
        "year": hour.year,
    }


def load(run_on_commit, *rows: dict) -> None:
    result = run_on_commit(factors_import, records=list(enumerate(rows, start=2)))
    assert not result.errors, result.errors


def test_emissions_use_the_site_pue_and_the_zone_annual_default(site_agent, post_batch):
    _, agent = site_agent("FR", pue="1.25")
    post_batch(agent.token, make_batch([make_sample(energy_j=KWH)]))
    row = HourlyUsage.objects.get()
    assert row.pue == 1.25
    assert row.facility_energy_j == pytest.approx(1.25 * KWH)
    # 1.25 kWh x 56.0 g/kWh (Ember 2023, France), carried forward to 2026.
    assert row.co2e_g == pytest.approx(70.0)
    assert row.intensity_resolution == "year" and row.intensity_fallback is False
    assert row.intensity_factor.source.startswith("Ember") and row.intensity_factor.year == 2023
    # No market instruments: market-based equals location-based.
    assert row.market_basis == "location" and row.co2e_market_g == pytest.approx(70.0)


def test_same_energy_at_different_hours_gets_each_hours_factor(
    site_agent, post_batch, run_on_commit
):
    _, agent = site_agent("GB", pue="1.0")
    load(
        run_on_commit,
        hourly("GB", BASE_TIME, 100.0),
        hourly("GB", BASE_TIME + timedelta(hours=1), 300.0),
    )
    post_batch(
        agent.token,
        make_batch(
            [
                make_sample(start=BASE_TIME, energy_j=KWH),
                make_sample(start=BASE_TIME + timedelta(hours=1), energy_j=KWH),
                make_sample(start=BASE_TIME + timedelta(hours=2), energy_j=KWH),  # no hourly factor
            ]
        ),
    )
    by_hour = {r.hour: r for r in HourlyUsage.objects.all()}
    assert by_hour[BASE_TIME].co2e_g == pytest.approx(100.0)
    assert by_hour[BASE_TIME + timedelta(hours=1)].co2e_g == pytest.approx(300.0)
    assert by_hour[BASE_TIME + timedelta(hours=2)].co2e_g == pytest.approx(237.6)  # annual GB
    assert [by_hour[BASE_TIME + timedelta(hours=h)].intensity_resolution for h in range(3)] == [
        "hour",
        "hour",
        "year",
    ]


def test_month_factor_sits_between_hour_and_year(site_agent, post_batch, run_on_commit):
    _, agent = site_agent("DE", pue="1.0")
    month = BASE_TIME.replace(day=1, hour=0)
    load(
        run_on_commit,
        {
            "zone": "DE",
            "start": "2026-11-01",
            "end": "2026-12-01",
            "g_co2e_per_kwh": 350,
            "basis": "location",
            "source": "monthly test",
            "year": 2026,
        },
        hourly("DE", BASE_TIME, 200.0),
    )
    post_batch(
        agent.token,
        make_batch(
            [make_sample(start=BASE_TIME, energy_j=KWH), make_sample(start=month, energy_j=KWH)]
        ),
    )
    assert {r.hour: (r.intensity_resolution, r.co2e_g) for r in HourlyUsage.objects.all()} == {
        BASE_TIME: ("hour", pytest.approx(200.0)),
        month: ("month", pytest.approx(350.0)),
    }


def test_zone_without_factors_falls_back_to_world_and_is_flagged(
    site_agent, post_batch, cast, get_usage
):
    _, unknown = site_agent("XX-NOWHERE", pue="1.0")
    _, fr = site_agent("FR", pue="1.0")
    post_batch(unknown.token, make_batch([make_sample(gpu="GPU-x", energy_j=KWH)]))
    post_batch(fr.token, make_batch([make_sample(gpu="GPU-f", energy_j=1.5 * KWH)]))
    row = HourlyUsage.objects.get(gpu__uuid="GPU-x")
    assert (row.intensity_resolution, row.intensity_fallback, row.intensity_g_per_kwh) == (
        "world",
        True,
        481.0,
    )
    totals = get_usage(
        cast.member_token, start=iso(BASE_TIME), end=iso(BASE_TIME + timedelta(hours=1))
    ).json()["totals"]
    assert totals["fallback_share_pct"] == pytest.approx(40.0)


def test_host_without_site_uses_default_pue_and_world_factor(agent, post_batch):
    post_batch(agent.token, make_batch([make_sample(energy_j=KWH)]))
    row = HourlyUsage.objects.get()
    assert row.pue == 1.58 and row.intensity_fallback is True
    assert row.co2e_g == pytest.approx(1.58 * 481.0)


def test_pue_change_mid_quarter_applies_only_from_its_date(site_agent, post_batch, run_on_commit):
    site, agent = site_agent("FR", pue="1.25")
    october = datetime(2026, 10, 15, 12, tzinfo=UTC)
    november = datetime(2026, 11, 15, 12, tzinfo=UTC)
    post_batch(
        agent.token,
        make_batch(
            [make_sample(start=october, energy_j=KWH), make_sample(start=november, energy_j=KWH)]
        ),
    )
    run_on_commit(
        site_pue_set,
        site=site,
        pue="1.50",
        valid_from=datetime(2026, 11, 1, tzinfo=UTC),
        now=datetime(2026, 11, 20, tzinfo=UTC),
    )
    rows = {r.hour: r for r in HourlyUsage.objects.all()}
    assert rows[october].facility_energy_j == pytest.approx(1.25 * KWH)
    assert rows[november].facility_energy_j == pytest.approx(1.50 * KWH)
    assert rows[november].co2e_g == pytest.approx(1.5 * 56.0)
    site.refresh_from_db()
    assert str(site.pue) == "1.500"  # the current value follows the period in force now
    # New samples rolled up later get the PUE of their own hour too.
    post_batch(
        agent.token, make_batch([make_sample(start=october + timedelta(hours=1), energy_j=KWH)])
    )
    assert HourlyUsage.objects.get(hour=october + timedelta(hours=1)).pue == 1.25


def _snapshot() -> dict:
    return {r.pk: (r.hour, r.emissions_computed_at, r.co2e_g) for r in HourlyUsage.objects.all()}


def test_recompute_after_a_factor_change_touches_only_the_affected_hours(
    site_agent, post_batch, run_on_commit
):
    _, agent = site_agent("PL", pue="1.0")
    _, other = site_agent("SE", pue="1.0")
    hours = [BASE_TIME + timedelta(hours=h) for h in range(3)]
    post_batch(agent.token, make_batch([make_sample(start=h, energy_j=KWH) for h in hours]))
    post_batch(
        other.token, make_batch([make_sample(gpu="GPU-se", start=h, energy_j=KWH) for h in hours])
    )
    before = _snapshot()
    load(run_on_commit, hourly("PL", hours[1], 800.0))
    after = _snapshot()
    changed = {pk for pk in before if before[pk] != after[pk]}
    assert {after[pk][0] for pk in changed} == {hours[1]}
    assert len(changed) == 1  # the PL row of that hour; the SE row of the same hour is untouched
    assert set(after) == set(before)  # updated in place, not deleted and re-inserted
    assert HourlyUsage.objects.get(pk=next(iter(changed))).co2e_g == pytest.approx(800.0)

    # Removing the factor puts the hour back on the annual default, and only that hour.
    from ecoreport.carbon.models import CarbonIntensity

    factor = CarbonIntensity.objects.get(zone="PL", resolution="hour")
    run_on_commit(factor_delete, factor=factor)
    final = _snapshot()
    assert {pk for pk in after if after[pk] != final[pk]} == changed
    assert HourlyUsage.objects.get(pk=next(iter(changed))).co2e_g == pytest.approx(661.9)


def test_recompute_is_idempotent(site_agent, post_batch):
    from ecoreport.accounting.emissions import emissions_recompute
    from ecoreport.carbon.models import SINCE_EVER, UNTIL_EVER

    _, agent = site_agent("FR")
    post_batch(agent.token, make_batch([make_sample()]))
    assert emissions_recompute(start=SINCE_EVER, end=UNTIL_EVER, zone="FR") == 0
    assert emissions_recompute(start=SINCE_EVER, end=UNTIL_EVER, zone="WORLD") == 0


def test_market_based_hierarchy_and_certificates(site_agent, post_batch, run_on_commit):
    site, agent = site_agent("DE", pue="1.0")
    day = timedelta(days=1)
    starts = [BASE_TIME - 3 * day, BASE_TIME - 2 * day, BASE_TIME - day, BASE_TIME]
    post_batch(agent.token, make_batch([make_sample(start=s, energy_j=KWH) for s in starts]))
    # Day 1: zone residual mix published as a market-basis factor (month).
    load(
        run_on_commit,
        {
            "zone": "DE",
            "start": "2026-11-01",
            "end": "2026-12-01",
            "g_co2e_per_kwh": 600,
            "basis": "market",
            "source": "AIB residual mix (test)",
            "year": 2026,
        },
    )
    # Day 2 onwards: the site's own residual mix; day 3 onwards a supplier contract; day 4 also
    # certificates for 75 % of consumption.
    run_on_commit(
        market_instrument_create,
        site=site,
        kind="residual",
        valid_from=starts[1],
        intensity_g_per_kwh=500.0,
        source="supplier residual",
        year=2026,
    )
    run_on_commit(
        market_instrument_create,
        site=site,
        kind="supplier",
        valid_from=starts[2],
        intensity_g_per_kwh=100.0,
        source="green tariff contract",
        year=2026,
    )
    run_on_commit(
        market_instrument_create,
        site=site,
        kind="certificate",
        valid_from=starts[3],
        valid_to=starts[3] + day,
        covered_share=0.75,
        source="GO registry",
        year=2026,
    )
    rows = {r.hour: r for r in HourlyUsage.objects.all()}
    got = [(rows[s].market_basis, rows[s].co2e_market_g) for s in starts]
    assert got == [
        ("zone", pytest.approx(600.0)),
        ("residual", pytest.approx(500.0)),
        ("supplier", pytest.approx(100.0)),
        ("supplier", pytest.approx(25.0)),
    ]
    # Location-based is untouched by contracts (dual reporting).
    assert {round(r.co2e_g, 6) for r in rows.values()} == {381.0}


def test_usage_metrics_and_carbon_aware_timing(
    site_agent, post_batch, run_on_commit, cast, get_usage
):
    _, agent = site_agent("GB", pue="1.2")
    day = BASE_TIME.replace(hour=0)
    # A day of hourly factors: 100 g/kWh at night (0-11), 300 g/kWh by day (12-23): mean 200.
    load(
        run_on_commit,
        *[hourly("GB", day + timedelta(hours=h), 100.0 if h < 12 else 300.0) for h in range(24)],
    )
    # All the work at night: two GPU-hours, one of them idle.
    post_batch(
        agent.token,
        make_batch(
            [
                make_sample(
                    start=day + timedelta(hours=2),
                    seconds=3600,
                    energy_j=KWH * 0.4,
                    gpu_util_pct=90.0,
                    attribution=[{"share": 1.0, "team": "nlp", "project": "llm"}],
                ),
                make_sample(
                    start=day + timedelta(hours=3),
                    seconds=3600,
                    energy_j=KWH * 0.1,
                    gpu_util_pct=0.0,
                ),
            ]
        ),
    )
    body = get_usage(cast.member_token, start=iso(day), end=iso(day + timedelta(days=1))).json()
    t = body["totals"]
    assert t["energy_kwh"] == pytest.approx(0.5)
    assert t["facility_energy_kwh"] == pytest.approx(0.6)
    assert t["co2e_kg"] == pytest.approx(0.6 * 100 / 1000)
    assert t["co2e_market_kg"] == pytest.approx(0.06)
    assert t["avg_intensity_g_per_kwh"] == pytest.approx(100.0)
    assert t["zone_avg_intensity_g_per_kwh"] == pytest.approx(200.0)
    assert t["idle_energy_share_pct"] == pytest.approx(20.0)
    assert t["energy_per_gpu_hour_wh"] == pytest.approx(250.0)
    assert t["fallback_share_pct"] == pytest.approx(0.0)
    assert t["avg_gpu_util_pct"] == pytest.approx(45.0)
    assert t["energy_weighted_gpu_util_pct"] == pytest.approx(72.0)
    by_team = {
        r["team"]: r
        for r in get_usage(
            cast.member_token, start=iso(day), end=iso(day + timedelta(days=1)), group_by="team"
        ).json()["rows"]
    }
    assert by_team["nlp"]["co2e_kg"] == pytest.approx(0.4 * 1.2 * 0.1)
    assert by_team["nlp"]["zone_avg_intensity_g_per_kwh"] == pytest.approx(200.0)


def test_emissions_are_conserved_between_rows_usage_and_provenance(
    site_agent, post_batch, cast, get_usage, client
):
    import random

    rng = random.Random(3)
    _, fr = site_agent("FR", pue="1.1")
    _, pl = site_agent("PL", pue="1.6")
    for agent, gpu in ((fr, "GPU-fr"), (pl, "GPU-pl")):
        post_batch(
            agent.token,
            make_batch(
                [
                    make_sample(
                        gpu=gpu,
                        start=BASE_TIME + timedelta(minutes=10 * i),
                        seconds=600,
                        energy_j=rng.uniform(0, 300_000),
                        attribution=rng.choice(
                            [[], [{"share": 0.7, "team": "nlp", "project": "llm"}]]
                        ),
                    )
                    for i in range(18)
                ]
            ),
        )
    rows = list(HourlyUsage.objects.all())
    for r in rows:
        assert math.isclose(
            r.co2e_g, r.energy_j * r.pue * r.intensity_g_per_kwh / KWH, rel_tol=1e-12
        )
    start, end = iso(BASE_TIME), iso(BASE_TIME + timedelta(hours=3))
    usage = get_usage(cast.member_token, start=start, end=end, group_by="team,project").json()
    prov = client.get(
        "/api/v1/usage/provenance",
        {"start": start, "end": end},
        HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
    ).json()
    co2e_g = HourlyUsage.objects.aggregate(s=Sum("co2e_g"))["s"]
    assert usage["totals"]["co2e_kg"] == pytest.approx(co2e_g / 1000, rel=1e-12)
    assert sum(r["co2e_kg"] for r in usage["rows"]) == pytest.approx(co2e_g / 1000, rel=1e-12)
    assert prov["totals"]["co2e_kg"] == pytest.approx(co2e_g / 1000, rel=1e-12)
    assert prov["totals"]["energy_kwh"] == pytest.approx(usage["totals"]["energy_kwh"], rel=1e-12)
    assert {(c["site"], c["pue"], c["location"]["factor"]["zone"]) for c in prov["components"]} == {
        ("dc-fr", 1.1, "FR"),
        ("dc-pl", 1.6, "PL"),
    }


def test_provenance_names_energy_pue_and_factor_for_a_team(
    site_agent, post_batch, cast, client, run_on_commit
):
    _, agent = site_agent("GB", pue="1.2")
    load(run_on_commit, hourly("GB", BASE_TIME, 150.0))
    post_batch(
        agent.token,
        make_batch(
            [
                make_sample(
                    energy_j=KWH, attribution=[{"share": 0.5, "team": "nlp", "project": "llm"}]
                )
            ]
        ),
    )
    params = {"start": iso(BASE_TIME), "end": iso(BASE_TIME + timedelta(hours=1)), "team": "nlp"}
    body = client.get(
        "/api/v1/usage/provenance", params, HTTP_AUTHORIZATION=f"Bearer {cast.member_token}"
    ).json()
    (component,) = body["components"]
    assert component["energy_kwh"] == pytest.approx(0.5)
    assert component["pue"] == 1.2 and component["facility_energy_kwh"] == pytest.approx(0.6)
    factor = component["location"]["factor"]
    assert (
        factor["zone"],
        factor["g_co2e_per_kwh"],
        factor["resolution"],
        factor["basis"],
        factor["source"],
        factor["year"],
    ) == ("GB", 150.0, "hour", "location", "test grid operator", 2026)
    assert component["location"]["fallback"] is False
    assert component["location"]["co2e_kg"] == pytest.approx(0.09)
    # The outsider's organization has nothing to explain.
    outsider = client.get(
        "/api/v1/usage/provenance", params, HTTP_AUTHORIZATION=f"Bearer {cast.outsider_token}"
    )
    assert outsider.json()["components"] == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start": iso(BASE_TIME)},
        {"start": "2026-01-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
    ],
)
def test_bad_provenance_parameters_are_400(cast, client, params):
    r = client.get(
        "/api/v1/usage/provenance", params, HTTP_AUTHORIZATION=f"Bearer {cast.member_token}"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


def test_demo_gets_hourly_factors_and_a_green_contract(db):
    from ecoreport.demo.carbon import demo_carbon_seed
    from ecoreport.demo.services import demo_seed

    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    summary = demo_seed(days=2, gpus=4, now=now)
    assert demo_carbon_seed(organization=summary.organization, days=1, now=now) > 0
    rows = HourlyUsage.objects.filter(organization=summary.organization)
    assert rows.filter(intensity_resolution="hour", hour__gte=now - timedelta(days=1)).exists()
    assert not rows.filter(intensity_resolution="hour", hour__lt=now - timedelta(days=1)).exists()
    assert rows.filter(market_basis="supplier", certificate_share=0.5).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_an_own_factor_through_the_api_recomputes_without_it(cast, client, site_agent):
    # Autocommit, as in production: the recompute must not run before the factor is gone.
    from ecoreport.carbon.factors import builtin_factors_load, factor_create

    # Transactional tests run last and flush the tables between them, the built-in factors
    # that the migration loaded included: load them again (idempotent).
    builtin_factors_load()
    _, agent = site_agent("FR", pue="1.0")
    client.post(
        "/api/v1/ingest",
        data=make_batch([make_sample(energy_j=KWH)]),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {agent.token}",
    )
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(56.0)
    own = factor_create(
        organization=cast.org,
        data={
            "zone": "FR",
            "start": "2026-01-01T00:00:00Z",
            "end": "2027-01-01T00:00:00Z",
            "g_co2e_per_kwh": 100.0,
            "basis": "location",
            "year": 2026,
            "source": "our supplier",
        },
    )
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(100.0)
    response = client.delete(
        f"/api/v1/carbon-intensity/{own.pk}", HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}"
    )
    assert response.status_code == 204
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(56.0)
