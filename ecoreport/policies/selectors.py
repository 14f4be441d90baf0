"""Reads for targets: a scope's metrics over a window, built on the accounting rollup's own
aggregate definitions and derived metrics, so every metric the rollup learns flows in here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Min, QuerySet

from ecoreport.accounting import selectors as accounting
from ecoreport.accounting.models import HourlyUsage
from ecoreport.organizations.models import Organization
from ecoreport.policies.models import Target, TargetEvaluation


def _with_fallbacks(metrics: dict[str, Any]) -> dict[str, Any]:
    """Ratios derivable from the base figures, for a rollup that does not name them yet."""
    energy_kwh = metrics.get("energy_kwh") or 0.0
    gpu_hours = metrics.get("gpu_hours") or 0.0
    if "idle_energy_share_pct" not in metrics:
        idle = metrics.get("idle_energy_kwh") or 0.0
        metrics["idle_energy_share_pct"] = 100.0 * idle / energy_kwh if energy_kwh else None
    if "energy_per_gpu_hour_wh" not in metrics:
        metrics["energy_per_gpu_hour_wh"] = 1000.0 * energy_kwh / gpu_hours if gpu_hours else None
    return metrics


def scope_usage(target: Target) -> QuerySet[HourlyUsage]:
    qs = HourlyUsage.objects.for_org(target.organization_id)
    if target.scope_kind == Target.Scope.TEAM:
        return qs.filter(team_id=target.team_id)
    if target.scope_kind == Target.Scope.PROJECT:
        return qs.filter(project_id=target.project_id)
    return qs


def scope_metrics(target: Target, *, start: datetime, end: datetime) -> dict[str, Any] | None:
    """The derived usage metrics of the target's scope over ``[start, end)``, or None when no
    GPU reported any usage there (absence of data is not zero energy)."""
    if end <= start:
        return None
    sums = scope_usage(target).filter(hour__gte=start, hour__lt=end).aggregate(**accounting._SUMS)
    if not sums.get("gpu_seconds") and not sums.get("energy_j"):
        return None
    return _with_fallbacks(accounting.usage_metrics(sums))


def metric_value(target: Target, metrics: dict[str, Any] | None) -> tuple[float | None, str]:
    """The target's metric (per GPU-hour when normalized) and why it is missing, if it is."""
    if metrics is None:
        return None, "no usage in this window"
    if target.metric not in metrics:
        return None, f"{target.metric} is not computed by this installation yet"
    value = metrics[target.metric]
    if value is None:
        return None, f"{target.metric} is undefined for this window"
    if target.normalize_per_gpu_hour:
        gpu_hours = metrics.get("gpu_hours") or 0.0
        if not gpu_hours:
            return None, "no GPU-hours to normalize by"
        return float(value) / gpu_hours, ""
    return float(value), ""


def targets_for_org(organization: Organization) -> QuerySet[Target]:
    return Target.objects.for_org(organization).select_related("team", "project")


def evaluations_for_target(
    target: Target, *, limit: int, period_start: datetime | None = None
) -> QuerySet[TargetEvaluation]:
    """The target's evaluations, newest first; of one period when ``period_start`` is given."""
    qs = TargetEvaluation.objects.for_org(target.organization_id).filter(target=target)
    if period_start is not None:
        qs = qs.filter(period_start=period_start)
    return qs[:limit]


def scope_first_hour(target: Target) -> datetime | None:
    """The first hour the rollups hold usage of the target's scope (None: none yet)."""
    first: datetime | None = scope_usage(target).aggregate(first=Min("hour"))["first"]
    return first
