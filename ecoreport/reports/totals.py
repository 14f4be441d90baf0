"""The sums every section of a report adds up: which columns, over which rows, and the metrics
derived from them. Aggregation happens in the database over HourlyUsage (the same sums as
``/api/v1/usage``); Python shapes the few rows that come back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet, Sum

from ecoreport.accounting import selectors as usage
from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.emissions import G_PER_KG, J_PER_KWH
from ecoreport.core.periods import CalendarPeriod
from ecoreport.organizations.models import Organization, Team

_FIELDS = {f.name for f in HourlyUsage._meta.get_fields()}
# Emissions columns come from the carbon app's rollup; without them the report says so.
HAS_EMISSIONS = {"facility_energy_j", "co2e_g", "co2e_market_g"} <= _FIELDS
EMISSION_SUMS = (
    {
        "facility_energy_j": Sum("facility_energy_j"),
        "co2e_g": Sum("co2e_g"),
        "co2e_market_g": Sum("co2e_market_g"),
    }
    if HAS_EMISSIONS
    else {}
)
# Energy by component first: its sums read the energy_j column, which the sum named energy_j
# would shadow.
SUMS = {**usage.COMPONENT_SUMS, **usage._SUMS, **EMISSION_SUMS}


def metrics(sums: dict[str, Any]) -> dict[str, Any]:
    """usage_metrics (idle share on the agent's energy) plus facility energy and emissions, all
    from summed columns."""
    out = usage.usage_metrics(sums)
    if HAS_EMISSIONS:
        out["facility_energy_kwh"] = (sums.get("facility_energy_j") or 0.0) / J_PER_KWH
        out["co2e_kg"] = (sums.get("co2e_g") or 0.0) / G_PER_KG
        out["co2e_market_kg"] = (sums.get("co2e_market_g") or 0.0) / G_PER_KG
    else:
        out["facility_energy_kwh"] = out["co2e_kg"] = out["co2e_market_kg"] = None
    return out


def change_pct(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return (now - before) / before * 100.0


def scope_usage(organization: Organization, team: Team | None) -> QuerySet[HourlyUsage]:
    qs = HourlyUsage.objects.for_org(organization)
    return qs.filter(team=team) if team is not None else qs


def window(qs: QuerySet[HourlyUsage], start: datetime, end: datetime) -> QuerySet[HourlyUsage]:
    return qs.filter(hour__gte=start, hour__lt=end)


def data_totals(
    organization: Organization, team: Team | None, period: CalendarPeriod
) -> dict[str, float]:
    """Measurement totals (not factors) of the scope and period: a change here is late data."""
    sums = window(scope_usage(organization, team), period.start, period.end).aggregate(
        energy_j=Sum("energy_j"), gpu_seconds=Sum("gpu_seconds"), samples=Sum("sample_count")
    )
    return {k: float(v or 0.0) for k, v in sums.items()}
