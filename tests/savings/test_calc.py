"""Pure arithmetic and input parsing: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.savings import calc
from ecoreport.savings.assumptions import AssumptionError, Assumptions, describe

H0 = datetime(2026, 11, 27, tzinfo=UTC)


def slot(h: int, energy_kwh: float, intensity: float, pue: float = 1.0) -> calc.Slot:
    return calc.Slot(
        hour=H0 + timedelta(hours=h),
        energy_j=energy_kwh * 3_600_000,
        pue=pue,
        intensity_g_per_kwh=intensity,
        market_intensity_g_per_kwh=intensity,
        price_per_kwh=0.2,
    )


def test_defaults_are_within_their_ranges_and_described():
    described = {d["name"]: d for d in describe()}
    assert set(described) == set(Assumptions().as_dict())
    for item in described.values():
        if item["default"] is not None:
            assert item["minimum"] <= item["default"] <= item["maximum"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, Assumptions()),
        ({"flexible_pct": "50"}, Assumptions(flexible_pct=50.0)),
        (
            {"timing_window_h": "12", "scope": "team:x", "period": "7d"},
            Assumptions(timing_window_h=12),
        ),
        ({"price_per_kwh": "0.2", "precision_reduction_pct": ""}, Assumptions(price_per_kwh=0.2)),
    ],
)
def test_assumptions_from_valid_params(params, expected):
    assert Assumptions.from_params(params) == expected


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"flexible_pct": "120"}, "flexible_pct", "above 100%"),
        ({"precision_already_pct": "-5"}, "precision_already_pct", "cannot be negative"),
        ({"idle_recoverable_pct": "lots"}, "idle_recoverable_pct", "not a number"),
        ({"timing_window_h": "2.5"}, "timing_window_h", "whole number"),
        ({"timing_window_h": "0"}, "timing_window_h", "outside the allowed range 1 to 168"),
        ({"power_cap_reduction_pct": "nan"}, "power_cap_reduction_pct", "not a finite number"),
        ({"price_per_kwh": "-1"}, "price_per_kwh", "outside the allowed range"),
    ],
)
def test_assumptions_from_invalid_params_name_the_field(params, field, message):
    with pytest.raises(AssumptionError) as caught:
        Assumptions.from_params(params)
    assert caught.value.field == field and message in str(caught.value)


def test_what_if_fraction_is_reduction_times_the_share_not_yet_using_it():
    assert calc.fraction_saved(reduction_pct=20) == pytest.approx(0.20)
    assert calc.fraction_saved(reduction_pct=20, already_pct=75) == pytest.approx(0.05)
    assert calc.fraction_saved(reduction_pct=30, applicable_pct=20) == pytest.approx(0.06)


def test_shift_fills_the_cleanest_hours_up_to_the_busiest_hour():
    slots = [slot(0, 2.0, 400), slot(1, 0.0, 100), slot(2, 1.0, 200), slot(3, 0.0, 50)]
    shift = calc.shift_block(slots, flexible_pct=50)
    # 1.5 kWh flexible; capacity 2 kWh an hour: hour 3 takes 1.5 kWh.
    assert shift.placements == [(H0 + timedelta(hours=3), pytest.approx(1.5 * 3_600_000))]
    assert shift.baseline.co2e_g == pytest.approx(1.0 * 400 + 0.5 * 200)
    assert shift.shifted.co2e_g == pytest.approx(1.5 * 50)
    assert shift.saving.energy_j == pytest.approx(0.0)


def test_shift_spills_into_the_next_cleanest_hour_when_one_is_full():
    slots = [slot(0, 1.0, 400), slot(1, 1.0, 300), slot(2, 0.0, 100), slot(3, 0.0, 90)]
    shift = calc.shift_block(slots, flexible_pct=100)
    assert [(h - H0, e / 3_600_000) for h, e in shift.placements] == [
        (timedelta(hours=2), pytest.approx(1.0)),
        (timedelta(hours=3), pytest.approx(1.0)),
    ]
    assert shift.saving.co2e_g == pytest.approx(700 - 190)


def test_shift_with_a_flat_profile_saves_nothing():
    shift = calc.shift_block([slot(h, 1.0, 300) for h in range(4)], flexible_pct=40)
    assert shift.saving.co2e_g == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("series", "duration", "best_index", "best_avg", "now_avg"),
    [
        ([300, 200, 100, 150, 400], 2, 2, 125.0, 250.0),
        ([100, 100, 100], 2, 0, 100.0, 100.0),  # ties: the earliest, i.e. now
        ([500, 400, 300, 200], 4, 0, 350.0, 350.0),  # only one window fits
        ([5, 9, 1, 1, 9], 1, 2, 1.0, 5.0),
    ],
)
def test_best_window_on_known_profiles(series, duration, best_index, best_avg, now_avg):
    best, now = calc.best_window(series, duration_h=duration)
    assert (best.start_index, best.avg_intensity_g_per_kwh, now.avg_intensity_g_per_kwh) == (
        best_index,
        pytest.approx(best_avg),
        pytest.approx(now_avg),
    )


def test_best_window_refuses_a_series_shorter_than_the_duration():
    with pytest.raises(ValueError, match="fewer hours"):
        calc.best_window([1.0, 2.0], duration_h=3)


def test_a_figure_a_lever_makes_worse_is_said_as_such():
    from ecoreport.savings.sentences import sentence

    lever = {
        "key": "region",
        "energy_kwh": 0.0,
        "facility_energy_kwh": -53.6,
        "co2e_kg": 383.5,
        "cost": -58.84,
        "currency": "EUR",
        "assumptions": {},
        "details": {"best_site": "paris-dc", "alternatives": [{"site": "paris-dc", "zone": "FR"}]},
    }
    assert sentence(lever) == (
        "Running this work at paris-dc (zone FR) instead would save 384 kg CO2e "
        "(for 53.6 kWh of facility energy more and 58.84 EUR more in electricity)."
    )


def test_a_saving_that_cancels_out_is_zero_not_minus_zero():
    assert str(calc.Amount(co2e_g=-0.0).shown()["co2e_kg"]) == "0.0"
