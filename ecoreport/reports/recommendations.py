"""The report's recommendations: the top savings levers of the savings app for the report's
scope and period, largest CO2e saving first."""

from __future__ import annotations

from typing import Any

from ecoreport.accounting.scope import Scope
from ecoreport.core.periods import CalendarPeriod
from ecoreport.organizations.models import Organization, Team
from ecoreport.savings.selectors import recommendations


def recommendations_section(
    organization: Organization, team: Team | None, period: CalendarPeriod
) -> dict[str, Any]:
    """The top savings levers of the savings app for the scope and period, largest CO2e first."""
    found = recommendations(
        organization, Scope(organization=organization, team=team), period.start, period.end
    )
    rows = []
    for rec in found[:5]:
        rows.append(
            {
                "rank": rec.get("rank"),
                "title": str(rec.get("title") or rec.get("key") or ""),
                "kind": rec.get("kind"),
                "detail": str(rec.get("sentence") or ""),
                "energy_kwh": _num(rec, "energy_kwh"),
                "co2e_kg": _num(rec, "co2e_kg"),
                "cost": _num(rec, "cost"),
                "currency": rec.get("currency"),
            }
        )
    return {"available": True, "rows": rows}


def _num(rec: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = rec.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None
