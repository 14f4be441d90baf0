"""The levers against figures recomputed by hand from the fixture's measurements and factors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from ecoreport.accounting.models import HourlyUsage
from ecoreport.savings.assumptions import Assumptions
from ecoreport.savings.selectors import (
    LEVER_KEYS,
    SavingsError,
    recommendations,
    savings_for_scope,
    scope_parse,
)
from tests.savings.conftest import DAY, KWH, PROFILE_ZA, PUE_A, PUE_B, ZB_YEAR_G_PER_KWH

pytestmark = pytest.mark.django_db

START, END = DAY, DAY + timedelta(days=1)


def levers(org, scope="org", **overrides):
    assumptions = Assumptions(**overrides)
    return {
        lever["key"]: lever
        for lever in savings_for_scope(org, scope_parse(org, scope), START, END, assumptions)
    }


def test_every_lever_is_answered_in_order(cast, fleet):
    org = cast.org
    result = savings_for_scope(org, scope_parse(org, "org"), START, END, Assumptions())
    assert [lever["key"] for lever in result] == list(LEVER_KEYS)
    for lever in result:
        assert {
            "energy_kwh",
            "co2e_kg",
            "co2e_market_kg",
            "cost",
            "currency",
            "assumptions",
        } <= set(lever)


def test_idle_lever_equals_the_measured_idle_energy(cast, fleet):
    idle = levers(cast.org)["idle"]
    measured = HourlyUsage.objects.for_org(cast.org).aggregate(e=Sum("idle_energy_j"))["e"]
    assert measured == pytest.approx(1.0 * KWH)
    assert idle["energy_kwh"] == pytest.approx(measured / KWH)
    # Its emissions: the idle GPU's facility energy at the hours' own factors (10:00 and 11:00).
    expected_g = 0.5 * PUE_A * PROFILE_ZA[10] + 0.5 * PUE_A * PROFILE_ZA[11]
    assert idle["co2e_kg"] == pytest.approx(expected_g / 1000)
    assert idle["facility_energy_kwh"] == pytest.approx(1.0 * PUE_A)
    assert idle["cost"] == pytest.approx(1.0 * PUE_A * 0.15)
    assert idle["details"]["hosts"] == [{"host": "node-a", "idle_energy_kwh": pytest.approx(1.0)}]
    assert [h["hour"] for h in idle["details"]["hours"]] == [
        DAY + timedelta(hours=10),
        DAY + timedelta(hours=11),
    ]


def test_timing_lever_equals_a_recomputation_with_the_chosen_hours(cast, fleet):
    timing = levers(cast.org, flexible_pct=30.0)["carbon_aware_timing"]
    # Work at site A: 1 kWh at 10, 11 and 12 (the idle GPU is not work); 30 % of it is flexible.
    baseline_g = sum(0.3 * PUE_A * PROFILE_ZA[h] for h in (10, 11, 12))
    baseline_g += 0.3 * 0.5 * PUE_B * ZB_YEAR_G_PER_KWH  # site B, annual factor: nothing to gain
    chosen = timing["details"]["chosen_hours"]
    factor = {
        "dc-a": lambda hour: PROFILE_ZA[(hour - DAY) // timedelta(hours=1)] * PUE_A,
        "dc-b": lambda hour: ZB_YEAR_G_PER_KWH * PUE_B,
    }
    shifted_g = sum(m["energy_kwh"] * factor[m["site"]](m["hour"]) for m in chosen)
    assert timing["co2e_kg"] == pytest.approx((baseline_g - shifted_g) / 1000)
    # The cleanest hour of the day (03:00, 120 g/kWh) takes all 0.9 kWh: the busiest hour had 1 kWh.
    a_moves = [m for m in chosen if m["site"] == "dc-a"]
    assert a_moves == [
        {"site": "dc-a", "hour": DAY + timedelta(hours=3), "energy_kwh": pytest.approx(0.9)}
    ]
    assert timing["co2e_kg"] == pytest.approx(
        (sum(0.3 * PROFILE_ZA[h] for h in (10, 11, 12)) - 0.9 * PROFILE_ZA[3]) * PUE_A / 1000
    )
    assert timing["energy_kwh"] == 0.0  # the same work, at other hours
    assert timing["details"]["sites_with_hourly_factors"] == ["dc-a"]


def test_timing_respects_the_busiest_hour_as_capacity(cast, fleet):
    timing = levers(cast.org, flexible_pct=100.0)["carbon_aware_timing"]
    a_moves = {
        m["hour"]: m["energy_kwh"] for m in timing["details"]["chosen_hours"] if m["site"] == "dc-a"
    }
    # 3 kWh of work, at most 1 kWh an hour: the three cleanest hours (03:00, 04:00, 02:00).
    assert a_moves == {DAY + timedelta(hours=h): pytest.approx(1.0) for h in (2, 3, 4)}


def test_timing_picks_hours_by_the_marginal_signal_and_states_the_saving_as_reported(cast, fleet):
    from tests.savings.test_api import MARGINAL_ZA, load_marginal

    before = levers(cast.org, flexible_pct=30.0)
    assert before["carbon_aware_timing"]["details"]["signal_basis"] == "location"
    load_marginal("ZA", MARGINAL_ZA)
    after = levers(cast.org, flexible_pct=30.0)
    timing = after["carbon_aware_timing"]
    # ZA's margin is cleanest 15:00-18:00: the flexible 0.9 kWh goes there, not to 03:00;
    # among those equal hours the lower grid average breaks the tie (17:00, 380 g/kWh).
    a_moves = [m for m in timing["details"]["chosen_hours"] if m["site"] == "dc-a"]
    assert a_moves == [
        {"site": "dc-a", "hour": DAY + timedelta(hours=17), "energy_kwh": pytest.approx(0.9)}
    ]
    # The saving stays in reported terms: the location-based factors of the hours moved from
    # and to (the marginal rates only chose the hours), plus the margin's own estimate beside it.
    assert timing["co2e_kg"] == pytest.approx(
        (sum(0.3 * PROFILE_ZA[h] for h in (10, 11, 12)) - 0.9 * PROFILE_ZA[17]) * PUE_A / 1000
    )
    assert timing["details"]["marginal_saving_co2e_kg"] == pytest.approx(
        (0.3 * 3 * 600.0 - 0.9 * 300.0) * PUE_A / 1000
    )
    assert timing["details"]["signal_basis"] == "mixed"  # site B (zone ZB) has no signal
    assert timing["details"]["sites_with_marginal_signals"] == ["dc-a"]
    # Nothing measured changed: every other lever's figures are the same.
    for key in ("idle", "low_utilization", "region", "precision"):
        assert after[key]["co2e_kg"] == pytest.approx(before[key]["co2e_kg"])


def test_region_lever_equals_the_energy_times_the_other_sites_pue_and_factor(cast, fleet):
    region = levers(cast.org)["region"]
    current_kg = HourlyUsage.objects.for_org(cast.org).aggregate(c=Sum("co2e_g"))["c"] / 1000
    total_kwh = 3.0 + 1.0 + 0.5
    at_b = next(a for a in region["details"]["alternatives"] if a["site"] == "dc-b")
    assert at_b["there"]["co2e_kg"] == pytest.approx(total_kwh * PUE_B * ZB_YEAR_G_PER_KWH / 1000)
    assert at_b["there"]["facility_energy_kwh"] == pytest.approx(total_kwh * PUE_B)
    assert region["details"]["best_site"] == "dc-b"
    assert region["co2e_kg"] == pytest.approx(
        current_kg - total_kwh * PUE_B * ZB_YEAR_G_PER_KWH / 1000
    )
    # Site A at its own hours' factors for all of it: the work of site B moved there.
    at_a = next(a for a in region["details"]["alternatives"] if a["site"] == "dc-a")
    expected_a_g = sum(
        PUE_A * PROFILE_ZA[h] * kwh for h, kwh in {10: 2.0, 11: 1.5, 12: 1.0}.items()
    )
    assert at_a["there"]["co2e_kg"] == pytest.approx(expected_a_g / 1000)
    assert region["energy_kwh"] == 0.0  # the same IT energy elsewhere


def test_region_cost_uses_the_other_sites_price(cast, fleet):
    from ecoreport.savings.models import SitePrice

    SitePrice.objects.create(
        organization=cast.org, site=fleet.site_b, price_per_kwh=Decimal("0.30"), currency="EUR"
    )
    region = levers(cast.org)["region"]
    at_b = next(a for a in region["details"]["alternatives"] if a["site"] == "dc-b")
    assert at_b["there"]["cost"] == pytest.approx(4.5 * PUE_B * 0.30)


def test_low_utilization_names_the_underused_job_only(cast, fleet):
    low = levers(cast.org)["low_utilization"]
    assert [(c["project"], c["job_id"]) for c in low["details"]["candidates"]] == [
        ("tiny-eval", "j2")
    ]
    candidate = low["details"]["candidates"][0]
    assert candidate["energy_weighted_gpu_util_pct"] == pytest.approx(10.0)
    assert candidate["peak_mem_pct"] == pytest.approx(5000 / 81559 * 100)
    assert set(candidate["reasons"]) == {"utilization", "memory"}
    assert low["energy_kwh"] == pytest.approx(0.5 * 0.30)
    assert low["co2e_kg"] == pytest.approx(0.5 * 0.30 * PUE_B * ZB_YEAR_G_PER_KWH / 1000)


@pytest.mark.parametrize(
    ("key", "overrides", "base", "factor"),
    [
        ("idle", {"idle_recoverable_pct": 50.0}, {}, 0.5),
        ("precision", {"precision_reduction_pct": 40.0}, {"precision_reduction_pct": 20.0}, 2.0),
        ("precision", {"precision_already_pct": 75.0}, {}, 0.25),
        (
            "architecture",
            {"architecture_applicable_pct": 40.0},
            {"architecture_applicable_pct": 20.0},
            2.0,
        ),
        ("power_capping", {"power_cap_already_pct": 50.0}, {}, 0.5),
        ("low_utilization", {"consolidation_reduction_pct": 60.0}, {}, 2.0),
        ("carbon_aware_timing", {"flexible_pct": 15.0}, {}, 0.5),
        ("low_utilization", {"low_util_threshold_pct": 5.0, "low_mem_threshold_pct": 1.0}, {}, 0.0),
        ("carbon_aware_timing", {"flexible_pct": 0.0}, {}, 0.0),
    ],
)
def test_overridden_assumptions_change_the_answer_as_documented(
    cast, fleet, key, overrides, base, factor
):
    before = levers(cast.org, **base)[key]
    after = levers(cast.org, **{**base, **overrides})[key]
    assert before["co2e_kg"] > 0
    assert after["co2e_kg"] == pytest.approx(before["co2e_kg"] * factor)
    for name, value in overrides.items():
        assert after["assumptions"][name] == value


def test_what_if_levers_apply_to_the_work_not_the_idle_energy(cast, fleet):
    # Defaults: precision 20 %, power cap 15 % (McDonald et al. 2022), architecture 37.5 %
    # (DistilBERT's 60 % faster = 1 - 1/1.6 less time) x 20 % of the work.
    result = levers(cast.org)
    work_kwh = 3.0 + 0.5
    assert result["precision"]["energy_kwh"] == pytest.approx(work_kwh * 0.20)
    assert result["power_capping"]["energy_kwh"] == pytest.approx(work_kwh * 0.15)
    assert result["architecture"]["energy_kwh"] == pytest.approx(work_kwh * 0.375 * 0.20)
    work_g = HourlyUsage.objects.for_org(cast.org).aggregate(c=Sum("co2e_g"))["c"] - (
        0.5 * PUE_A * (PROFILE_ZA[10] + PROFILE_ZA[11])
    )
    assert result["precision"]["co2e_kg"] == pytest.approx(work_g * 0.20 / 1000)


def test_price_override_applies_to_facility_energy_everywhere(cast, fleet):
    result = levers(cast.org, price_per_kwh=1.0)
    assert result["precision"]["cost"] == pytest.approx(result["precision"]["facility_energy_kwh"])
    assert result["precision"]["currency"] == "EUR"


def test_team_scope_counts_its_own_rows_only(cast, fleet):
    nlp = levers(cast.org, "team:nlp")
    # nlp: j1 (3 kWh) and node-a's idle GPU (default team); not vision's j2.
    assert nlp["idle"]["energy_kwh"] == pytest.approx(1.0)
    assert nlp["precision"]["energy_kwh"] == pytest.approx(3.0 * 0.20)
    assert nlp["low_utilization"]["details"]["candidates"] == []
    vision = levers(cast.org, "project:tiny-eval")
    assert vision["idle"]["energy_kwh"] == 0.0
    assert vision["low_utilization"]["energy_kwh"] == pytest.approx(0.5 * 0.30)


def test_another_organization_sees_none_of_it(cast, fleet):
    other = {
        lever["key"]: lever
        for lever in savings_for_scope(
            cast.other_org, scope_parse(cast.other_org, "org"), START, END, Assumptions()
        )
    }
    assert all(lever["energy_kwh"] == 0 and lever["co2e_kg"] == 0 for lever in other.values())
    with pytest.raises(SavingsError, match="no team 'nlp'"):
        scope_parse(cast.other_org, "team:nlp")


def test_recommendations_rank_by_saving_and_say_where(cast, fleet):
    ranked = recommendations(cast.org, scope_parse(cast.org, "org"), START, END, Assumptions())
    savings = [r["co2e_kg"] for r in ranked]
    assert savings == sorted(savings, reverse=True) and all(s > 0 for s in savings)
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    by_key = {r["key"]: r["sentence"] for r in ranked}
    assert "node-a" in by_key["idle"]
    assert "j2 in tiny-eval" in by_key["low_utilization"]
    assert "2026-11-27 03:00 UTC" in by_key["carbon_aware_timing"]
    assert "dc-b" in by_key["region"]
    assert "llm" in by_key["precision"]


def test_site_price_set_replaces_the_price_and_refuses_nonsense(cast, fleet):
    from django.core.exceptions import ValidationError

    from ecoreport.savings.services import PriceError, site_price_set

    site_price_set(site=fleet.site_a, price_per_kwh="0.20", currency="eur")
    record = site_price_set(site=fleet.site_a, price_per_kwh="0.25", currency="EUR")
    assert (str(record.price_per_kwh), record.currency, record.organization_id) == (
        "0.25",
        "EUR",
        cast.org.pk,
    )
    assert levers(cast.org)["idle"]["cost"] == pytest.approx(1.0 * PUE_A * 0.25)
    with pytest.raises(PriceError):
        site_price_set(site=fleet.site_a, price_per_kwh="-1", currency="EUR")
    with pytest.raises(ValidationError):
        site_price_set(site=fleet.site_a, price_per_kwh="0.1", currency="euro")


def test_prices_in_different_currencies_are_not_added_up(cast, fleet):
    from ecoreport.savings.services import site_price_set

    site_price_set(site=fleet.site_b, price_per_kwh="0.10", currency="USD")
    result = levers(cast.org)
    assert result["precision"]["cost"] is None and result["precision"]["currency"] is None
    assert levers(cast.org, "team:nlp")["precision"]["currency"] == "EUR"  # site A only
