"""What the pages read. Every query starts from the caller's organization and aggregates in the
database over HourlyUsage; Python only shapes the few rows that come back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import HourlyUsage
from ecoreport.dashboards.periods import Period
from ecoreport.fleet.models import Gpu, Host, Site
from ecoreport.organizations.models import Organization, Project, Team


@dataclass(frozen=True)
class Scope:
    """Organization-wide, or one team, or one project."""

    organization: Organization
    team: Team | None = None
    project: Project | None = None

    def usage(self) -> QuerySet[HourlyUsage]:
        qs = HourlyUsage.objects.for_org(self.organization)
        if self.team is not None:
            qs = qs.filter(team=self.team)
        if self.project is not None:
            qs = qs.filter(project=self.project)
        return qs


def _window(scope: Scope, period: Period) -> QuerySet[HourlyUsage]:
    return scope.usage().filter(hour__gte=period.start, hour__lt=period.end)


def totals(scope: Scope, period: Period) -> dict[str, Any]:
    return usage.usage_metrics(_window(scope, period).aggregate(**usage._SUMS))


def headline(scope: Scope, period: Period) -> dict[str, Any]:
    """Totals for the period and the change against the period before, per metric."""
    now, before = totals(scope, period), totals(scope, period.previous)
    change: dict[str, float | None] = {}
    for key, value in now.items():
        prev = before.get(key)
        change[key] = (value - prev) / prev * 100.0 if value is not None and prev else None
    idle = now.get("idle_energy_kwh") or 0.0
    energy = now.get("energy_kwh") or 0.0
    now.setdefault("idle_energy_share_pct", idle / energy * 100.0 if energy else None)
    return {"current": now, "previous": before, "change_pct": change}


def series(scope: Scope, period: Period, *, by: str) -> list[dict[str, Any]]:
    """Rows of (period_start, group value, metrics) at the period's granularity."""
    field = usage.GROUP_FIELDS[by]
    qs = _window(scope, period)
    granularity = period.granularity
    rows = (
        qs.annotate(period=usage._period_expr(granularity))
        .values("period", field)
        .annotate(**usage._SUMS)
        .order_by("period", field)
    )
    return [{"period_start": r["period"], by: r[field], **usage.usage_metrics(r)} for r in rows]


def series_total(scope: Scope, period: Period) -> list[dict[str, Any]]:
    rows = (
        _window(scope, period)
        .annotate(period=usage._period_expr(period.granularity))
        .values("period")
        .annotate(**usage._SUMS)
        .order_by("period")
    )
    return [{"period_start": r["period"], **usage.usage_metrics(r)} for r in rows]


def ranked(scope: Scope, period: Period, *, by: str) -> list[dict[str, Any]]:
    field = usage.GROUP_FIELDS[by]
    rows = _window(scope, period).values(field).annotate(**usage._SUMS).order_by("-energy_j")
    out = []
    for r in rows:
        metrics = usage.usage_metrics(r)
        energy = metrics.get("energy_kwh") or 0.0
        metrics["idle_energy_share_pct"] = (
            (metrics.get("idle_energy_kwh") or 0.0) / energy * 100.0 if energy else None
        )
        out.append({by: r[field], **metrics})
    return out


def heatmap(scope: Scope, period: Period, *, limit_hosts: int = 40) -> dict[str, Any]:
    """Average GPU utilization per host and day (hosts with the most energy first)."""
    window = _window(scope, period)
    hosts = list(
        window.values("host__hostname")
        .annotate(e=Sum("energy_j"))
        .order_by("-e")
        .values_list("host__hostname", flat=True)[:limit_hosts]
    )
    rows = (
        window.filter(host__hostname__in=hosts)
        .annotate(period=usage._period_expr("day"))
        .values("period", "host__hostname")
        .annotate(**usage._SUMS)
        .order_by("period")
    )
    return {
        "hosts": hosts,
        "cells": [
            (r["period"], r["host__hostname"], usage.usage_metrics(r)["avg_gpu_util_pct"])
            for r in rows
        ],
    }


def fleet_state(
    organization: Organization,
    *,
    now: datetime | None = None,
    stale_after: timedelta = timedelta(minutes=10),
) -> dict[str, Any]:
    """Sites, hosts and GPUs with their last hour: power, utilization, idle or not, silent."""
    now = now or timezone.now()
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    recent = {
        r["gpu_id"]: r
        for r in HourlyUsage.objects.for_org(organization)
        .filter(hour__gte=last_hour)
        .values("gpu_id")
        .annotate(**usage._SUMS)
    }
    gpus = []
    for gpu in (
        Gpu.objects.for_org(organization)
        .select_related("host", "host__site")
        .order_by("host__hostname", "index")
    ):
        r = recent.get(gpu.pk)
        metrics = usage.usage_metrics(r) if r else {}
        seconds = (r or {}).get("gpu_seconds") or 0.0
        power_w = (r["energy_j"] / seconds) if r and seconds else None
        gpus.append(
            {
                "gpu": gpu,
                "power_w": power_w,
                "util_pct": metrics.get("avg_gpu_util_pct"),
                # Idle: nine tenths of its last-hour energy was drawn with no process on it.
                "idle": r is not None
                and (r["idle_energy_j"] or 0) >= 0.9 * (r["energy_j"] or 0) > 0,
                "silent": gpu.last_seen_at is None or now - gpu.last_seen_at > stale_after,
            }
        )
    hosts = list(
        Host.objects.for_org(organization).select_related("site").annotate(gpu_count=Count("gpus"))
    )
    silent_hosts = [
        h
        for h in hosts
        if h.gpu_count and (h.last_seen_at is None or now - h.last_seen_at > stale_after)
    ]
    return {
        "sites": list(Site.objects.for_org(organization).annotate(host_count=Count("hosts"))),
        "hosts": hosts,
        "gpus": gpus,
        "idle_now": [g for g in gpus if g["idle"] and not g["silent"]],
        "silent_hosts": silent_hosts,
    }


def teams_of(organization: Organization) -> QuerySet[Team]:
    return Team.objects.for_org(organization).order_by("slug")


def projects_of(organization: Organization, team: Team | None = None) -> QuerySet[Project]:
    qs = Project.objects.for_org(organization)
    if team is not None:
        qs = qs.filter(team=team)
    return qs.order_by("slug")


def targets_glance(scope: Scope) -> list[dict[str, Any]]:
    """Active targets of the scope (the whole organization's on the overview) with status."""
    from ecoreport.policies.calc import METRICS
    from ecoreport.policies.models import Target

    qs = (
        Target.objects.for_org(scope.organization)
        .filter(is_active=True)
        .select_related("team", "project")
    )
    if scope.team is not None:
        qs = qs.filter(team=scope.team)
    elif scope.project is not None:
        qs = qs.filter(project=scope.project)
    from ecoreport.policies.models import TargetEvaluation

    latest = TargetEvaluation.objects.filter(target=OuterRef("pk")).order_by("-evaluated_at", "-id")
    qs = qs.annotate(
        latest_value=Subquery(latest.values("value")[:1]),
        latest_forecast=Subquery(latest.values("forecast_value")[:1]),
        latest_threshold=Subquery(latest.values("threshold_value")[:1]),
    )
    # One query whatever the number of targets: the latest evaluation comes as subqueries.
    return [
        {
            "target": t,
            "evaluation": {
                "value": t.latest_value,
                "forecast_value": t.latest_forecast,
                "threshold_value": t.latest_threshold,
            },
            "unit": METRICS[t.metric].unit,
        }
        for t in qs.order_by("name")
    ]
