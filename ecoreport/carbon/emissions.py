"""Emissions arithmetic and unit conversions: pure functions, no database.

Units are in the names. Energy is carried in joules internally (what the agents measure) and
shown in kWh; mass in grams internally and shown in kg; intensities in g CO2e per kWh.
"""

from __future__ import annotations

S_PER_HOUR = 3600.0
J_PER_WH = 3600.0
J_PER_KWH = 3_600_000.0
J_PER_MWH = 3_600_000_000.0
KWH_PER_MWH = 1000.0
G_PER_KG = 1000.0
G_PER_T = 1_000_000.0
# 1 lb = 453.59237 g (international avoirdupois pound); lb/MWh -> g/kWh divides by 1,000.
G_PER_LB = 453.59237
LB_PER_MWH_TO_G_PER_KWH = G_PER_LB / KWH_PER_MWH  # 0.45359237


def j_to_wh(energy_j: float) -> float:
    return energy_j / J_PER_WH


def j_to_kwh(energy_j: float) -> float:
    return energy_j / J_PER_KWH


def j_to_mwh(energy_j: float) -> float:
    return energy_j / J_PER_MWH


def kwh_to_j(energy_kwh: float) -> float:
    return energy_kwh * J_PER_KWH


def mwh_to_kwh(energy_mwh: float) -> float:
    return energy_mwh * KWH_PER_MWH


def g_to_kg(mass_g: float) -> float:
    return mass_g / G_PER_KG


def g_to_t(mass_g: float) -> float:
    return mass_g / G_PER_T


def t_to_g(mass_t: float) -> float:
    return mass_t * G_PER_T


def lbs_per_mwh_to_g_per_kwh(value_lbs_per_mwh: float) -> float:
    """WattTime and US eGRID publish lb CO2 per MWh."""
    return value_lbs_per_mwh * LB_PER_MWH_TO_G_PER_KWH


def kg_per_kwh_to_g_per_kwh(value_kg_per_kwh: float) -> float:
    return value_kg_per_kwh * G_PER_KG


def t_per_kwh_to_g_per_kwh(value_t_per_kwh: float) -> float:
    return value_t_per_kwh * G_PER_T


def facility_energy_j(*, it_energy_j: float, pue: float) -> float:
    """Facility energy = IT energy x PUE (PUE >= 1 by definition)."""
    if pue < 1.0:
        raise ValueError(f"PUE {pue} is below 1.0")
    return it_energy_j * pue


def co2e_g(*, energy_j: float, intensity_g_per_kwh: float) -> float:
    """CO2e (g) = energy (kWh) x intensity (g/kWh)."""
    return energy_j / J_PER_KWH * intensity_g_per_kwh


def market_intensity_g_per_kwh(*, base_g_per_kwh: float, certificate_share: float) -> float:
    """Certificates cover ``certificate_share`` of consumption at 0 g/kWh; the rest carries the
    supplier, residual-mix or (absent both) location-based factor."""
    share = min(max(certificate_share, 0.0), 1.0)
    return base_g_per_kwh * (1.0 - share)


def footprint_kg(*, it_energy_kwh: float, pue: float, intensity_g_per_kwh: float) -> float:
    """The whole method in one line, for published cases: kWh x PUE x g/kWh -> kg."""
    return g_to_kg(
        co2e_g(
            energy_j=facility_energy_j(it_energy_j=kwh_to_j(it_energy_kwh), pue=pue),
            intensity_g_per_kwh=intensity_g_per_kwh,
        )
    )
