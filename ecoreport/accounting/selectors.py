"""Reads over HourlyUsage. Aggregation happens in the database; Python only shapes rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import F, Sum
from django.db.models.functions import TruncDay, TruncMonth, TruncQuarter

from ecoreport.accounting.models import HourlyUsage
from ecoreport.organizations.models import Organization

J_PER_KWH = 3_600_000.0

GROUP_FIELDS = {
    "team": "team__slug",
    "project": "project__slug",
    "host": "host__hostname",
    "gpu": "gpu__uuid",
}
GRANULARITIES = ("hour", "day", "month", "quarter", "total")

_SUMS = {
    "energy_j": Sum("energy_j"),
    "idle_energy_j": Sum("idle_energy_j"),
    "unattributed_energy_j": Sum("unattributed_energy_j"),
    "gpu_seconds": Sum("gpu_seconds"),
    "util_seconds": Sum("util_seconds"),
    "util_x_seconds": Sum("util_x_seconds"),
    "util_x_energy_j": Sum("util_x_energy_j"),
    "util_energy_j": Sum("util_energy_j"),
}


@dataclass(frozen=True)
class UsageQuery:
    start: datetime
    end: datetime
    group_by: tuple[str, ...] = ()
    granularity: str = "total"


def _period_expr(granularity: str) -> Any:
    if granularity == "hour":
        return F("hour")
    if granularity == "day":
        return TruncDay("hour", tzinfo=UTC)
    if granularity == "month":
        return TruncMonth("hour", tzinfo=UTC)
    if granularity == "quarter":
        return TruncQuarter("hour", tzinfo=UTC)
    raise ValueError(f"unknown granularity {granularity!r}")


def usage_metrics(sums: dict[str, float | None]) -> dict[str, float | None]:
    """Derived figures from summed rollup columns (pure; shared by rows and totals)."""
    energy_j = sums.get("energy_j") or 0.0
    gpu_seconds = sums.get("gpu_seconds") or 0.0
    util_seconds = sums.get("util_seconds") or 0.0
    util_energy_j = sums.get("util_energy_j") or 0.0
    return {
        "energy_kwh": energy_j / J_PER_KWH,
        "idle_energy_kwh": (sums.get("idle_energy_j") or 0.0) / J_PER_KWH,
        "unattributed_energy_kwh": (sums.get("unattributed_energy_j") or 0.0) / J_PER_KWH,
        "gpu_hours": gpu_seconds / 3600.0,
        "avg_gpu_util_pct": (sums.get("util_x_seconds") or 0.0) / util_seconds if util_seconds else None,
        "energy_weighted_gpu_util_pct": (
            (sums.get("util_x_energy_j") or 0.0) / util_energy_j if util_energy_j else None
        ),
    }


def usage_for_org(*, organization: Organization, query: UsageQuery) -> dict[str, Any]:
    base = HourlyUsage.objects.for_org(organization).filter(hour__gte=query.start, hour__lt=query.end)
    fields = [GROUP_FIELDS[g] for g in query.group_by]
    totals = usage_metrics(base.aggregate(**_SUMS))
    if query.granularity == "total" and not fields:
        # values() without fields would not group at all: the one row is the totals.
        return {"rows": [{"period_start": query.start, **totals}], "totals": totals}
    if query.granularity == "total":
        grouped = base.values(*fields)
    else:
        grouped = base.annotate(period=_period_expr(query.granularity)).values("period", *fields)
    rows = []
    for rec in grouped.annotate(**_SUMS).order_by():
        row: dict[str, Any] = {
            "period_start": rec["period"] if query.granularity != "total" else query.start
        }
        for name, field in zip(query.group_by, fields, strict=True):
            row[name] = rec[field]
        row.update(usage_metrics(rec))
        rows.append(row)
    rows.sort(key=lambda r: (r["period_start"], *[(r[g] is not None, r[g] or "") for g in query.group_by]))
    return {"rows": rows, "totals": totals}
