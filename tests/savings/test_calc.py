"""Pure arithmetic and input parsing: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.savings import calc
from ecoreport.savings.assumptions import (
    SPECS,
    UNSOURCED,
    AssumptionError,
    Assumptions,
    Basis,
    describe,
)

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


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_assumption_has_a_located_source_or_the_unsourced_flag(name):
    spec = SPECS[name]
    item = next(d for d in describe() if d["name"] == name)
    assert spec.rationale.strip(), name
    if spec.source is None:
        assert item["unsourced"] == UNSOURCED and item["source"] is None
        assert spec.provenance == UNSOURCED
        # A default said to be the source's figure needs a source.
        assert spec.basis != Basis.SOURCE, name
    else:
        assert item["unsourced"] is None
        for part in ("title", "short", "where", "figure"):
            assert item["source"][part].strip(), (name, part)
        assert spec.source.where in spec.provenance
    if spec.typical is not None:
        # The typical range says where its ends come from; "the sources" is not an answer.
        assert spec.typical_basis, name
        assert spec.minimum <= spec.typical[0] <= spec.typical[1] <= spec.maximum


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.basis == Basis.MIDPOINT))
def test_a_default_said_to_be_the_middle_of_its_range_is_the_middle(name):
    spec = SPECS[name]
    assert spec.typical is not None
    assert getattr(Assumptions(), name) == pytest.approx(sum(spec.typical) / 2)


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.basis != Basis.MIDPOINT))
def test_a_default_that_is_not_the_middle_does_not_claim_to_be(name):
    spec = SPECS[name]
    middle = sum(spec.typical) / 2 if spec.typical else None
    if middle is not None and getattr(Assumptions(), name) != pytest.approx(middle):
        assert "the middle of the typical range" not in spec.rationale, name


def test_no_default_claims_to_be_the_middle_in_general():
    # The class once said every default was "the middle of the ranges"; most were not.
    assert "middle of the ranges" not in (Assumptions.__doc__ or "")


def test_the_architecture_default_is_distilberts_speedup_as_time_saved():
    # Sanh et al. 2019: "60 % faster" at inference, i.e. 1/1.6 of the time: 37.5 % less time,
    # not 60 % less energy.
    assert Assumptions().architecture_reduction_pct == pytest.approx((1 - 1 / 1.6) * 100)
    spec = SPECS["architecture_reduction_pct"]
    assert spec.source is not None and "DistilBERT" in spec.source.title
    assert "60 % faster" in spec.source.figure
    assert spec.typical is not None and spec.typical[1] < 60  # 60 % was the speed-up, misread


def test_the_power_cap_default_is_mcdonald_et_al_not_zeus():
    spec = SPECS["power_cap_reduction_pct"]
    assert Assumptions().power_cap_reduction_pct == 15.0
    assert spec.source is not None
    assert "Great Power, Great Responsibility" in spec.source.title
    assert "NAACL 2022" in spec.source.title and "15 %" in spec.source.figure
    # Zeus tunes batch size and power limit together: named only to say it is not the source.
    assert "Zeus" not in spec.source.title and "together" in spec.rationale


def test_mixed_precision_has_no_energy_source():
    # NVIDIA's and Micikevicius et al.'s figures are speedups, not energy.
    assert SPECS["precision_reduction_pct"].source is None
    assert "speedups" in SPECS["precision_reduction_pct"].rationale


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


def _docs_rows() -> dict[str, list[str]]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "savings.md").read_text()
    section = text.split("## Where the defaults come from", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_docs_table_matches_each_assumptions_default_and_source(name):
    spec = SPECS[name]
    row = _docs_rows()[name]
    _name, default, typical, _figure, where, basis = row
    assert default == ("each site's price" if spec.default is None else f"{spec.default:g}")
    assert typical == (f"{spec.typical[0]:g}\u2013{spec.typical[1]:g}" if spec.typical else "—")
    if spec.source is None:
        assert where == f"*{UNSOURCED}*"
    else:
        assert where == f"{spec.source.short}: {spec.source.where}"
    assert basis.startswith(spec.basis.value)


@pytest.mark.parametrize(
    ("key", "assumptions", "says"),
    [
        (
            "power_capping",
            {"power_cap_reduction_pct": 15.0, "power_cap_already_pct": 0.0},
            "15% of its energy, for somewhat longer runs; McDonald et al. 2022",
        ),
        (
            "power_capping",
            {"power_cap_reduction_pct": 8.0, "power_cap_already_pct": 0.0},
            "8% of its energy, for somewhat longer runs; your figure)",
        ),
        (
            "architecture",
            {"architecture_reduction_pct": 37.5, "architecture_applicable_pct": 20.0},
            "at a 37.5% reduction (Sanh et al. 2019 (DistilBERT)).",
        ),
        (
            "precision",
            {"precision_reduction_pct": 20.0, "precision_already_pct": 0.0},
            "at a 20% reduction (an unsourced engineering estimate).",
        ),
    ],
)
def test_a_what_if_sentence_says_whose_figure_the_reduction_is(key, assumptions, says):
    from ecoreport.savings.sentences import sentence

    lever = {
        "key": key,
        "energy_kwh": 1.0,
        "co2e_kg": 0.5,
        "assumptions": assumptions,
        "details": {"projects": []},
    }
    assert says in sentence(lever)
