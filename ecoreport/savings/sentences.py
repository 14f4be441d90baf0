"""One sentence per lever that says what to do and where (hosts, projects, hours): pure, from the
lever dicts ``savings_for_scope`` returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ecoreport.savings.assumptions import SPECS


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return f"? {unit}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 1:
        return f"{value:,.1f} {unit}"
    return f"{value:.3g} {unit}"


def _figure_basis(name: str, value: float) -> str:
    """Whose figure a what-if reduction is: the user's own, a named source's, or an estimate."""
    spec = SPECS[name]
    if value != spec.default:
        return "your figure"
    if spec.source is None:
        return "an unsourced engineering estimate"
    return spec.source.short


def _saved(lever: dict[str, Any]) -> str:
    """What the lever saves; a figure it makes worse (moving work to a site with a higher PUE or
    price) is said as such rather than as a negative saving."""
    saved = [_num(lever["co2e_kg"], "kg CO2e")]
    worse = []
    energy, energy_unit = lever["energy_kwh"], "kWh"
    if energy == 0 and lever.get("facility_energy_kwh"):
        energy, energy_unit = lever["facility_energy_kwh"], "kWh of facility energy"
    if energy > 0:
        saved.append(_num(energy, energy_unit))
    elif energy < 0:
        worse.append(f"{_num(-energy, energy_unit)} more")
    cost, currency = lever.get("cost"), lever.get("currency")
    if cost and currency and cost > 0:
        saved.append(f"{cost:,.2f} {currency}")
    elif cost and currency:
        worse.append(f"{-cost:,.2f} {currency} more in electricity")
    text = ", ".join(saved)
    return f"{text} (for {' and '.join(worse)})" if worse else text


def _hour(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:00} UTC"


def _names(items: list[str], limit: int = 3) -> str:
    items = [i for i in items if i]
    if not items:
        return ""
    shown = items[:limit]
    more = len(items) - len(shown)
    text = ", ".join(shown)
    return f"{text} and {more} more" if more > 0 else text


def sentence(lever: dict[str, Any]) -> str:
    key, d, a = lever["key"], lever["details"], lever["assumptions"]
    saved = _saved(lever)
    if key == "idle":
        hosts = _names([f"{h['host']} ({_num(h['idle_energy_kwh'], 'kWh')})" for h in d["hosts"]])
        hours = _names([_hour(h["hour"]) for h in d["hours"]], limit=2)
        return (
            f"Idle GPUs drew {_num(d['measured_idle_energy_kwh'], 'kWh')}, most of it on {hosts}"
            f"{f', worst around {hours}' if hours else ''}; scaling in or powering down idle GPUs "
            f"would save {saved}."
        )
    if key == "low_utilization":
        jobs = _names(
            [
                f"{c['job_id'] or 'untracked jobs'} in "
                f"{c.get('project_name') or c['project'] or 'no project'}"
                for c in d["candidates"]
            ]
        )
        return (
            f"{d['candidate_count']} jobs ran under {a['low_util_threshold_pct']:g}% GPU "
            f"utilization or {a['low_mem_threshold_pct']:g}% memory (largest: {jobs}); sharing "
            f"GPUs, MIG slices or smaller GPUs would save {saved}."
        )
    if key == "carbon_aware_timing":
        hours = _names([_hour(m["hour"]) for m in d["chosen_hours"]], limit=2)
        return (
            f"Starting {a['flexible_pct']:g}% of the work in the cleanest hours of each "
            f"{a['timing_window_h']}-hour window (such as {hours}) would save {saved}."
        )
    if key == "region":
        best = next((r for r in d["alternatives"] if r["site"] == d["best_site"]), None)
        if best is None:
            return "No other site of the organization would run this work with less CO2e."
        return (
            f"Running this work at {best['site']} (zone {best['zone']}) instead would save {saved}."
        )
    projects = _names([p.get("project_name") or p["project"] for p in d.get("projects", [])])
    where = f" (most energy: {projects})" if projects else ""
    if key == "precision":
        return (
            f"Mixed precision (BF16/FP16 training, INT8 inference) on the "
            f"{100 - a['precision_already_pct']:g}% of the work not using it yet{where} would "
            f"save about {saved} at a {a['precision_reduction_pct']:g}% reduction "
            f"({_figure_basis('precision_reduction_pct', a['precision_reduction_pct'])})."
        )
    if key == "architecture":
        return (
            f"A smaller model (pruning, distillation, early exit) for "
            f"{a['architecture_applicable_pct']:g}% of the work{where} would save about {saved} "
            f"at a {a['architecture_reduction_pct']:g}% reduction "
            f"({_figure_basis('architecture_reduction_pct', a['architecture_reduction_pct'])})."
        )
    if key == "power_capping":
        return (
            f"Capping GPU power on the {100 - a['power_cap_already_pct']:g}% of the work not "
            f"capped yet{where} would save about {saved} "
            f"({a['power_cap_reduction_pct']:g}% of its energy, for somewhat longer runs; "
            f"{_figure_basis('power_cap_reduction_pct', a['power_cap_reduction_pct'])})."
        )
    raise ValueError(f"unknown lever {key!r}")
