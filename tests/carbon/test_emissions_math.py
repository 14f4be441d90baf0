"""Emission arithmetic against published training-run footprints, and unit conversions.

Each published case is reproduced from its own inputs (energy, PUE, intensity) within the
rounding the paper printed.
"""

from __future__ import annotations

import pytest

from ecoreport.carbon import emissions as em

LB_PER_KG = 1 / 0.45359237

# Strubell, Ganesh & McCallum (2019), "Energy and Policy Considerations for Deep Learning in
# NLP", ACL, Table 3: average power (W) x hours x PUE 1.58 = kWh-PUE; x 0.954 lbs CO2e/kWh
# (US EPA average, 954 lbs/MWh) = lbs CO2e. Published kWh-PUE and lbs are whole numbers.
STRUBELL = [
    # model, avg power W, hours, published kWh-PUE, published lbs CO2e
    ("Transformer_big", 1515.43, 84, 201, 192),
    ("ELMo", 517.66, 336, 275, 262),
    ("NAS", 1515.43, 274_120, 656_347, 626_155),
]


@pytest.mark.parametrize(("model", "power_w", "hours", "kwh_pue", "lbs"), STRUBELL)
def test_strubell_2019_footprints_are_reproduced(model, power_w, hours, kwh_pue, lbs):
    it_kwh = power_w * hours / 1000.0
    facility_kwh = em.j_to_kwh(em.facility_energy_j(it_energy_j=em.kwh_to_j(it_kwh), pue=1.58))
    assert facility_kwh == pytest.approx(kwh_pue, abs=1.0)
    intensity = em.lbs_per_mwh_to_g_per_kwh(954.0)
    kg = em.footprint_kg(it_energy_kwh=it_kwh, pue=1.58, intensity_g_per_kwh=intensity)
    assert kg * LB_PER_KG == pytest.approx(lbs, abs=1.0)


# Patterson et al. (2021), "Carbon Emissions and Large Neural Network Training",
# arXiv:2104.10350, Table 4: total energy (MWh, PUE included) x gross tCO2e/MWh = net tCO2e
# (no offsets in these rows). Published tonnes have one decimal or none.
# Luccioni, Viguier & Ligozat (2022), "Estimating the Carbon Footprint of BLOOM":
# 433,196 kWh x 57 gCO2e/kWh (French grid) = 24.7 t (dynamic power consumption).
PUBLISHED_TONNES = [
    ("GPT-3 (Patterson 2021)", 1287.0, 429.0, 552.0, 0.5),
    ("T5 (Patterson 2021)", 85.7, 545.0, 46.7, 0.05),
    ("Switch Transformer (Patterson 2021)", 179.0, 330.0, 59.1, 0.05),
    ("BLOOM (Luccioni 2022)", 433.196, 57.0, 24.7, 0.05),
]


@pytest.mark.parametrize(
    ("case", "facility_mwh", "g_per_kwh", "tonnes", "tolerance"), PUBLISHED_TONNES
)
def test_published_large_model_footprints_are_reproduced(
    case, facility_mwh, g_per_kwh, tonnes, tolerance
):
    energy_j = em.mwh_to_kwh(facility_mwh) * em.J_PER_KWH
    grams = em.co2e_g(energy_j=energy_j, intensity_g_per_kwh=g_per_kwh)
    assert em.g_to_t(grams) == pytest.approx(tonnes, abs=tolerance)


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (em.j_to_wh, 3600.0, 1.0),
        (em.j_to_kwh, 3_600_000.0, 1.0),
        (em.j_to_mwh, 3_600_000_000.0, 1.0),
        (em.kwh_to_j, 1.0, 3_600_000.0),
        (em.mwh_to_kwh, 1.5, 1500.0),
        (em.g_to_kg, 1500.0, 1.5),
        (em.g_to_t, 2_500_000.0, 2.5),
        (em.t_to_g, 1.0, 1_000_000.0),
        # WattTime / eGRID: 1 lb/MWh = 0.45359237 g/kWh; 1,000 lb/MWh = 453.6 g/kWh.
        (em.lbs_per_mwh_to_g_per_kwh, 1000.0, 453.59237),
        (em.lbs_per_mwh_to_g_per_kwh, 1.0, 0.45359237),
        (em.kg_per_kwh_to_g_per_kwh, 0.233, 233.0),
        (em.t_per_kwh_to_g_per_kwh, 0.000233, 233.0),
    ],
)
def test_unit_conversions(fn, value, expected):
    assert fn(value) == pytest.approx(expected, rel=1e-12)


def test_nvml_millijoules_of_one_h100_hour_at_700_w():
    # NVML's counter is in mJ: 700 W for an hour is 2.52e9 mJ = 2.52e6 J = 0.7 kWh.
    energy_j = 2.52e9 / 1000.0
    assert em.j_to_kwh(energy_j) == pytest.approx(0.7)
    # At PUE 1.1 and 400 g/kWh: 0.77 kWh x 400 g/kWh = 308 g.
    assert em.co2e_g(
        energy_j=em.facility_energy_j(it_energy_j=energy_j, pue=1.1), intensity_g_per_kwh=400
    ) == pytest.approx(308.0)


def test_pue_below_one_is_refused():
    with pytest.raises(ValueError, match=r"below 1\.0"):
        em.facility_energy_j(it_energy_j=1.0, pue=0.95)


@pytest.mark.parametrize(
    ("base", "share", "expected"),
    [
        (400.0, 0.0, 400.0),
        (400.0, 0.25, 300.0),
        (400.0, 1.0, 0.0),
        (400.0, 1.7, 0.0),
        (400.0, -1, 400.0),
    ],
)
def test_certificates_cover_their_share_at_zero(base, share, expected):
    assert em.market_intensity_g_per_kwh(
        base_g_per_kwh=base, certificate_share=share
    ) == pytest.approx(expected)
