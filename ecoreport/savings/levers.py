"""The levers, one function each, over the rollup, the raw job samples and the carbon resolver.

``ecoreport.savings.selectors`` is the entry point (scope, period, ordering, recommendations);
this module computes. Every query starts from the scope (``scope.usage()``, or the caller's
organization for raw samples) and is bounded to the period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Case, F, FloatField, Max, Q, QuerySet, Sum, Value, When
from django.db.models.functions import NullIf, TruncHour

from ecoreport.accounting.models import HourlyUsage, Source
from ecoreport.accounting.scope import Scope
from ecoreport.carbon.emissions import G_PER_KG, J_PER_KWH, S_PER_HOUR
from ecoreport.carbon.models import Resolution
from ecoreport.carbon.resolver import NO_SITE, hours_between, site_hour_factors
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization
from ecoreport.savings import calc
from ecoreport.savings.assumptions import Assumptions
from ecoreport.savings.conf import default_currency, default_price_per_kwh
from ecoreport.savings.models import SitePrice
from ecoreport.telemetry.models import SampleShare

LEVER_KEYS = (
    "idle",
    "low_utilization",
    "carbon_aware_timing",
    "region",
    "precision",
    "architecture",
    "power_capping",
)
TITLES = {
    "idle": "Idle GPUs (right-sizing, auto-scaling)",
    "low_utilization": "Low utilization (GPU sharing, MIG, smaller GPUs)",
    "carbon_aware_timing": "Carbon-aware timing",
    "region": "Region selection",
    "precision": "Mixed precision",
    "architecture": "Model architecture (pruning, distillation, early exit)",
    "power_capping": "GPU power capping",
}
# The levers computed from what was measured; the others are what-ifs on the measured energy.
MEASURED = {"idle", "low_utilization", "carbon_aware_timing", "region"}
TOP = 5


# --- prices ---------------------------------------------------------------------------------


class Prices:
    """Price per facility kWh of each site; the override or the default where none is set."""

    def __init__(self, organization: Organization, assumptions: Assumptions) -> None:
        self.override = assumptions.price_per_kwh
        self.default = default_price_per_kwh()
        self.default_currency = default_currency()
        self.by_site: dict[int, tuple[float, str]] = {
            site_id: (float(price), currency)
            for site_id, price, currency in SitePrice.objects.for_org(organization).values_list(
                "site_id", "price_per_kwh", "currency"
            )
        }

    def price(self, site_id: int | None) -> float:
        if self.override is not None:
            return self.override
        found = self.by_site.get(site_id or NO_SITE)
        return found[0] if found else self.default

    def currency(self, site_ids: Iterable[int | None]) -> str | None:
        """The one currency of these sites' prices; None when they differ (no sum across them)."""
        if self.override is not None:
            return self.default_currency
        found = {
            self.by_site.get(s or NO_SITE, (0.0, self.default_currency))[1] for s in site_ids
        } or {self.default_currency}
        return found.pop() if len(found) == 1 else None

    def describe(self, site_ids: Iterable[int | None]) -> dict[str, Any]:
        return {
            "price_per_kwh": self.override,
            "site_prices": {
                str(s or "none"): self.price(s) for s in sorted({s or NO_SITE for s in site_ids})
            },
            "applies_to": "facility energy (IT x PUE)",
        }


# --- the levers -----------------------------------------------------------------------------


@dataclass
class Context:
    organization: Organization
    scope: Scope
    start: datetime
    end: datetime
    assumptions: Assumptions
    prices: Prices

    @property
    def rows(self) -> QuerySet[HourlyUsage]:
        # The levers are about GPUs the agent measures (idle time, power caps, when jobs run,
        # with their GPU time and idle state); CodeCarbon trackers' energy has neither.
        return self.scope.usage().filter(
            hour__gte=self.start, hour__lt=self.end, source=Source.AGENT
        )


_IDLE_SHARE = Case(
    When(energy_j__gt=0, then=F("idle_energy_j") / F("energy_j")),
    default=Value(0.0),
    output_field=FloatField(),
)
_SITE_SUMS = {
    "e": Sum("energy_j"),
    "f": Sum("facility_energy_j"),
    "c": Sum("co2e_g"),
    "m": Sum("co2e_market_g"),
    "idle_e": Sum("idle_energy_j"),
    # A row's idle energy carries the row's own PUE and factors: its share of the row's figures.
    "idle_f": Sum(F("facility_energy_j") * _IDLE_SHARE),
    "idle_c": Sum(F("co2e_g") * _IDLE_SHARE),
    "idle_m": Sum(F("co2e_market_g") * _IDLE_SHARE),
}


@dataclass
class Footprint:
    total: calc.Amount
    idle: calc.Amount
    work: calc.Amount  # total - idle: what the what-if levers act on
    site_ids: list[int | None]


def scope_footprint(ctx: Context) -> Footprint:
    total, idle = calc.Amount(), calc.Amount()
    site_ids: list[int | None] = []
    for rec in ctx.rows.values("site_id").annotate(**_SITE_SUMS).order_by("site_id"):
        price = ctx.prices.price(rec["site_id"])
        site_ids.append(rec["site_id"])
        total += calc.Amount(
            rec["e"] or 0.0,
            rec["f"] or 0.0,
            rec["c"] or 0.0,
            rec["m"] or 0.0,
            (rec["f"] or 0.0) / J_PER_KWH * price,
        )
        idle += calc.Amount(
            rec["idle_e"] or 0.0,
            rec["idle_f"] or 0.0,
            rec["idle_c"] or 0.0,
            rec["idle_m"] or 0.0,
            (rec["idle_f"] or 0.0) / J_PER_KWH * price,
        )
    return Footprint(total=total, idle=idle, work=total - idle, site_ids=site_ids)


def _kwh(energy_j: float) -> float:
    return energy_j / J_PER_KWH


def _lever(
    key: str,
    saving: calc.Amount,
    *,
    ctx: Context,
    site_ids: Iterable[int | None],
    assumptions: dict[str, Any],
    details: dict[str, Any],
    baseline: calc.Amount,
) -> dict[str, Any]:
    currency = ctx.prices.currency(site_ids)
    shown: dict[str, float | None] = dict(saving.shown())
    if currency is None:
        shown["cost"] = None  # prices in different currencies do not add up
    return {
        "key": key,
        "title": TITLES[key],
        "kind": "measured" if key in MEASURED else "what-if",
        **shown,
        "currency": currency,
        "share_of_scope_pct": (
            saving.co2e_g / baseline.co2e_g * 100.0 if baseline.co2e_g else None
        ),
        "assumptions": assumptions,
        "details": details,
    }


def _top_hostsidle_lever(ctx: Context) -> list[dict[str, Any]]:
    rows = (
        ctx.rows.filter(idle_energy_j__gt=0)
        .values("host__hostname")
        .annotate(idle=Sum("idle_energy_j"))
        .order_by("-idle", "host__hostname")[:TOP]
    )
    return [{"host": r["host__hostname"], "idle_energy_kwh": _kwh(r["idle"])} for r in rows]


def _top_hoursidle_lever(ctx: Context) -> list[dict[str, Any]]:
    rows = (
        ctx.rows.filter(idle_energy_j__gt=0)
        .values("hour")
        .annotate(idle=Sum("idle_energy_j"))
        .order_by("-idle", "hour")[:TOP]
    )
    return [{"hour": r["hour"], "idle_energy_kwh": _kwh(r["idle"])} for r in rows]


def idle_lever(ctx: Context, fp: Footprint) -> dict[str, Any]:
    a = ctx.assumptions
    saving = fp.idle.scaled(calc.pct(a.idle_recoverable_pct))
    return _lever(
        "idle",
        saving,
        ctx=ctx,
        site_ids=fp.site_ids,
        baseline=fp.total,
        assumptions={**a.pick("idle_recoverable_pct"), **ctx.prices.describe(fp.site_ids)},
        details={
            "measured_idle_energy_kwh": _kwh(fp.idle.energy_j),
            "idle_share_pct": fp.idle.energy_j / fp.total.energy_j * 100.0
            if fp.total.energy_j
            else None,
            "hosts": _top_hostsidle_lever(ctx),
            "hours": _top_hoursidle_lever(ctx),
        },
    )


def _shares(ctx: Context) -> QuerySet[SampleShare]:
    # Bounded by the samples' (organization, start) index: only the period's samples are read.
    qs = SampleShare.objects.filter(
        organization=ctx.organization,
        attributed=True,
        sample__organization=ctx.organization,
        sample__start__gte=ctx.start,
        sample__start__lt=ctx.end,
    )
    if ctx.scope.team is not None:
        qs = qs.filter(team=ctx.scope.team)
    if ctx.scope.project is not None:
        qs = qs.filter(project=ctx.scope.project)
    return qs


def low_utilization_lever(ctx: Context, fp: Footprint) -> dict[str, Any]:
    """Jobs (or projects, for work without a job id) whose energy-weighted GPU utilization or
    peak GPU memory use stays under the thresholds."""
    a = ctx.assumptions
    util_known = Q(sample__gpu_util_pct__isnull=False)
    cells = (
        _shares(ctx)
        .annotate(h=TruncHour("sample__start", tzinfo=UTC))
        .values("project__slug", "project__name", "job_id", "sample__host__site_id", "h")
        .annotate(
            e=Sum("energy_j"),
            util_x_e=Sum(F("energy_j") * F("sample__gpu_util_pct"), filter=util_known),
            util_e=Sum("energy_j", filter=util_known),
            mem_pct=Max(
                F("sample__mem_used_mib") * 100.0 / NullIf(F("sample__gpu__memory_total_mib"), 0),
                output_field=FloatField(),
            ),
            gpu_s=Sum(F("sample__duration_s") * F("share")),
        )
        .order_by()
    )
    jobs: dict[tuple[str | None, str], dict[str, Any]] = {}
    project_names: dict[str | None, str | None] = {None: None}  # slug -> name to show
    for c in cells:
        project_names[c["project__slug"]] = c["project__name"] or c["project__slug"]
        key = (c["project__slug"], c["job_id"])
        job = jobs.setdefault(
            key,
            {"e": 0.0, "util_x_e": 0.0, "util_e": 0.0, "mem_pct": None, "gpu_s": 0.0, "cells": []},
        )
        job["e"] += c["e"] or 0.0
        job["util_x_e"] += c["util_x_e"] or 0.0
        job["util_e"] += c["util_e"] or 0.0
        job["gpu_s"] += c["gpu_s"] or 0.0
        if c["mem_pct"] is not None:
            job["mem_pct"] = max(job["mem_pct"] or 0.0, c["mem_pct"])
        job["cells"].append((c["sample__host__site_id"], c["h"], c["e"] or 0.0))

    candidates = []
    for (project, job_id), job in jobs.items():
        util = job["util_x_e"] / job["util_e"] if job["util_e"] else None
        reasons = []
        if util is not None and util < a.low_util_threshold_pct:
            reasons.append("utilization")
        if job["mem_pct"] is not None and job["mem_pct"] < a.low_mem_threshold_pct:
            reasons.append("memory")
        if reasons and job["e"] > 0:
            candidates.append((project, job_id, job, util, reasons))

    hours = sorted({h for *_, job, _u, _r in candidates for _s, h, _e in job["cells"]})
    sites = {s or NO_SITE for *_, job, _u, _r in candidates for s, _h, _e in job["cells"]}
    factors = (
        site_hour_factors(organization_id=ctx.organization.pk, hours=hours, site_ids=sites)
        if hours
        else {}
    )
    energy_total = calc.Amount()
    listed = []
    for project, job_id, job, util, reasons in candidates:
        amount = calc.Amount()
        for site_id, hour, energy_j in job["cells"]:
            f = factors[(site_id or NO_SITE, hour)]
            amount += calc.footprint(
                energy_j=energy_j,
                pue=f.pue,
                intensity_g_per_kwh=f.intensity_g_per_kwh,
                market_intensity_g_per_kwh=f.market_intensity_g_per_kwh,
                price_per_kwh=ctx.prices.price(site_id),
            )
        energy_total += amount
        listed.append(
            {
                "project": project,
                "project_name": project_names.get(project),
                "job_id": job_id or None,
                "energy_kwh": _kwh(job["e"]),
                "gpu_hours": job["gpu_s"] / S_PER_HOUR,
                "energy_weighted_gpu_util_pct": util,
                "peak_mem_pct": job["mem_pct"],
                "reasons": reasons,
            }
        )
    listed.sort(key=lambda j: (-j["energy_kwh"], j["project"] or "", j["job_id"] or ""))
    saving = energy_total.scaled(calc.pct(a.consolidation_reduction_pct))
    return _lever(
        "low_utilization",
        saving,
        ctx=ctx,
        site_ids=sites or fp.site_ids,
        baseline=fp.total,
        assumptions={
            **a.pick(
                "low_util_threshold_pct", "low_mem_threshold_pct", "consolidation_reduction_pct"
            ),
            **ctx.prices.describe(sites),
        },
        details={
            "candidate_energy_kwh": _kwh(energy_total.energy_j),
            "candidate_count": len(listed),
            "candidates": listed[:20],
        },
    )


def site_hour_energy(
    ctx: Context,
) -> tuple[dict[int, dict[datetime, float]], dict[int, dict[datetime, float]]]:
    """IT energy per site key and hour: (all of it, the work in it, i.e. less idle energy)."""
    total: dict[int, dict[datetime, float]] = defaultdict(dict)
    work: dict[int, dict[datetime, float]] = defaultdict(dict)
    rows = ctx.rows.values("site_id", "hour").annotate(e=Sum("energy_j"), idle=Sum("idle_energy_j"))
    for rec in rows.order_by():
        key, hour = rec["site_id"] or NO_SITE, rec["hour"].astimezone(UTC)
        if rec["e"]:
            total[key][hour] = rec["e"]
        if (rec["e"] or 0.0) - (rec["idle"] or 0.0) > 0:
            work[key][hour] = rec["e"] - (rec["idle"] or 0.0)
    return total, work


def _blocks(start: datetime, end: datetime, window_h: int) -> list[list[datetime]]:
    """Consecutive blocks of ``window_h`` whole hours from the period's first hour."""
    hours = hours_between(start.astimezone(UTC).replace(minute=0, second=0, microsecond=0), end)
    return [hours[i : i + window_h] for i in range(0, len(hours), window_h)]


def timing_lever(
    ctx: Context, fp: Footprint, energy: dict[int, dict[datetime, float]]
) -> dict[str, Any]:
    """The flexible share of each block's work (idle energy is not work: it is not moved) moved
    to the block's lowest-intensity hours.

    Which hours are lowest: by the zone's marginal rate where it has one for every hour of the
    block (the emissions that added load causes), else by the location-based factors; never a
    mix within a block. The saving is then stated in reported (location- and market-based)
    terms, from the same factors the rollup uses; the marginal estimate is a detail beside it."""
    a = ctx.assumptions
    blocks = [
        b
        for b in _blocks(ctx.start, ctx.end, a.timing_window_h)
        if any(h in energy[s] for s in energy for h in b)
    ]
    all_hours = sorted({h for b in blocks for h in b})
    factors = (
        site_hour_factors(
            organization_id=ctx.organization.pk, hours=all_hours, site_ids=set(energy)
        )
        if all_hours
        else {}
    )
    zones = dict(Site.objects.for_org(ctx.organization).values_list("pk", "slug"))
    baseline, shifted = calc.Amount(), calc.Amount()
    marginal_saving_g = 0.0
    moves: list[dict[str, Any]] = []
    hourly_sites: set[int] = set()
    bases: set[str] = set()
    marginal_sites: set[int] = set()
    for site_id, by_hour in sorted(energy.items()):
        price = ctx.prices.price(site_id)
        for block in blocks:
            if not any(h in by_hour for h in block):
                continue
            signals = [factors[(site_id, hour)].marginal_g_per_kwh for hour in block]
            use_marginal = all(sig is not None for sig in signals)
            bases.add("marginal" if use_marginal else "location")
            if use_marginal:
                marginal_sites.add(site_id)
            slots = []
            for hour, sig in zip(block, signals, strict=True):
                f = factors[(site_id, hour)]
                if f.resolution == Resolution.HOUR:
                    hourly_sites.add(site_id)
                slots.append(
                    calc.Slot(
                        hour=hour,
                        energy_j=by_hour.get(hour, 0.0),
                        pue=f.pue,
                        intensity_g_per_kwh=f.intensity_g_per_kwh,
                        market_intensity_g_per_kwh=f.market_intensity_g_per_kwh,
                        price_per_kwh=price,
                        signal_g_per_kwh=sig if use_marginal else None,
                    )
                )
            shift = calc.shift_block(slots, flexible_pct=a.flexible_pct)
            baseline += shift.baseline
            shifted += shift.shifted
            if use_marginal:
                by_slot = {s.hour: s for s in slots}
                marginal_saving_g += sum(
                    s.energy_j * calc.pct(a.flexible_pct) * s.pue / J_PER_KWH * s.signal
                    for s in slots
                ) - sum(
                    e * by_slot[h].pue / J_PER_KWH * by_slot[h].signal for h, e in shift.placements
                )
            site_name = zones.get(site_id) if site_id != NO_SITE else None
            for hour, energy_j in shift.placements:
                moves.append({"site": site_name, "hour": hour, "energy_kwh": _kwh(energy_j)})
    saving = baseline - shifted
    moves.sort(key=lambda m: (-m["energy_kwh"], m["hour"]))
    return _lever(
        "carbon_aware_timing",
        saving,
        ctx=ctx,
        site_ids=list(energy),
        baseline=fp.total,
        assumptions={**a.pick("flexible_pct", "timing_window_h"), **ctx.prices.describe(energy)},
        details={
            "flexible_energy_kwh": _kwh(baseline.energy_j),
            "baseline_co2e_kg": baseline.co2e_g / G_PER_KG,
            "shifted_co2e_kg": shifted.co2e_g / G_PER_KG,
            # Without hourly factors every hour of a zone weighs the same: nothing to gain.
            "sites_with_hourly_factors": sorted(zones[s] for s in hourly_sites if s != NO_SITE),
            # What ranked the hours: "marginal", "location", or "mixed" (some sites or blocks
            # had marginal signals, others not). The saving above is location/market-based.
            "signal_basis": "mixed" if len(bases) > 1 else (bases.pop() if bases else None),
            "sites_with_marginal_signals": sorted(zones[s] for s in marginal_sites if s != NO_SITE),
            # The same move valued at the marginal rates (the emissions avoided at the margin):
            # an estimate beside the reported-basis saving, never added to it.
            "marginal_saving_co2e_kg": marginal_saving_g / G_PER_KG if marginal_sites else None,
            "chosen_hours": moves,
        },
    )


def region_lever(
    ctx: Context, fp: Footprint, energy: dict[int, dict[datetime, float]]
) -> dict[str, Any]:
    """The scope's IT energy, hour by hour, at each site of the organization instead."""
    sites = list(Site.objects.for_org(ctx.organization).only("id", "slug", "grid_zone", "pue"))
    per_hour: dict[datetime, float] = defaultdict(float)
    for by_hour in energy.values():
        for hour, e in by_hour.items():
            per_hour[hour] += e
    hours = sorted(per_hour)
    factors = (
        site_hour_factors(
            organization_id=ctx.organization.pk, hours=hours, site_ids={s.pk for s in sites}
        )
        if hours and sites
        else {}
    )
    alternatives = []
    for site in sites:
        price = ctx.prices.price(site.pk)
        there = calc.Amount()
        for hour in hours:
            f = factors[(site.pk, hour)]
            there += calc.footprint(
                energy_j=per_hour[hour],
                pue=f.pue,
                intensity_g_per_kwh=f.intensity_g_per_kwh,
                market_intensity_g_per_kwh=f.market_intensity_g_per_kwh,
                price_per_kwh=price,
            )
        saving = fp.total - there
        current_j = sum(energy.get(site.pk, {}).values())
        alternatives.append(
            {
                "site": site.slug,
                "zone": site.grid_zone,
                "current_share_pct": current_j / fp.total.energy_j * 100.0
                if fp.total.energy_j
                else None,
                "there": there.shown(),
                "saving": saving.shown(),
                "intensity_resolutions": sorted({factors[(site.pk, h)].resolution for h in hours}),
                "_saving": saving,
            }
        )
    alternatives.sort(key=lambda r: (-r["_saving"].co2e_g, r["site"]))
    best = alternatives[0] if alternatives and alternatives[0]["_saving"].co2e_g > 0 else None
    saving = best["_saving"] if best else calc.Amount()
    for row in alternatives:
        del row["_saving"]
    # Moving work keeps IT energy the same; the facility energy saved is the PUE difference.
    saving = calc.Amount(
        0.0, saving.facility_energy_j, saving.co2e_g, saving.co2e_market_g, saving.cost
    )
    best_ids = [s.pk for s in sites if best and s.slug == best["site"]]
    return _lever(
        "region",
        saving,
        ctx=ctx,
        site_ids=fp.site_ids + best_ids,
        baseline=fp.total,
        assumptions={"moved_share_pct": 100.0, **ctx.prices.describe(fp.site_ids + best_ids)},
        details={"best_site": best["site"] if best else None, "alternatives": alternatives},
    )


def top_projects(ctx: Context) -> list[dict[str, Any]]:
    rows = (
        ctx.rows.exclude(project__isnull=True)
        .values("project__slug", "project__name")
        .annotate(work=Sum(F("energy_j") - F("idle_energy_j")))
        .order_by("-work", "project__slug")[:TOP]
    )
    return [
        {
            "project": r["project__slug"],
            "project_name": r["project__name"] or r["project__slug"],
            "energy_kwh": _kwh(r["work"]),
        }
        for r in rows
        if r["work"] > 0
    ]


def what_if_lever(
    key: str,
    ctx: Context,
    fp: Footprint,
    fraction: float,
    names: tuple[str, ...],
    projects: list[dict[str, Any]],
) -> dict[str, Any]:
    return _lever(
        key,
        fp.work.scaled(fraction),
        ctx=ctx,
        site_ids=fp.site_ids,
        baseline=fp.total,
        assumptions={**ctx.assumptions.pick(*names), **ctx.prices.describe(fp.site_ids)},
        details={
            "work_energy_kwh": _kwh(fp.work.energy_j),
            "fraction_saved_pct": fraction * 100.0,
            "projects": projects,
        },
    )
