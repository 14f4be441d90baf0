"""The report's content: one plain, JSON-ready structure that every format renders, so the PDF,
the HTML, the CSV and the XLSX cannot disagree. ``build`` assembles it from one module per
section: ``totals`` (the sums and metrics), ``coverage`` (comparisons), ``data_quality``,
``breakdowns`` (teams, projects, time series), ``intensity``, ``targets``, ``recommendations``
and ``methodology``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ecoreport.core.periods import CalendarPeriod
from ecoreport.organizations.models import Organization, Team
from ecoreport.organizations.selectors import label_colours
from ecoreport.reports.breakdowns import breakdowns
from ecoreport.reports.coverage import comparisons as period_comparisons
from ecoreport.reports.data_quality import data_quality as fleet_data_quality
from ecoreport.reports.intensity import site_intensity
from ecoreport.reports.methodology import methodology
from ecoreport.reports.recommendations import recommendations_section
from ecoreport.reports.targets import report_targets
from ecoreport.reports.totals import HAS_EMISSIONS, SUMS, change_pct, metrics, scope_usage, window

TOP_GROUPS = 12  # teams/projects named in charts; tables list all

# (key, label, unit, digits): the headline table, in order.
HEADLINE = [
    ("energy_kwh", "IT energy", "kWh", 2),
    ("facility_energy_kwh", "Facility energy (IT x PUE)", "kWh", 2),
    ("co2e_kg", "Emissions, location-based", "kg CO2e", 2),
    ("co2e_market_kg", "Emissions, market-based", "kg CO2e", 2),
    ("gpu_hours", "GPU-hours", "h", 2),
    ("avg_gpu_util_pct", "Average GPU utilization", "%", 1),
    ("idle_energy_share_pct", "Idle energy share", "%", 1),
]
# Shown after IT energy where CodeCarbon trackers reported CPU or RAM energy in the period.
HEADLINE_COMPONENTS = [
    ("gpu_energy_kwh", "IT energy: GPUs", "kWh", 2),
    ("cpu_energy_kwh", "IT energy: CPUs (CodeCarbon)", "kWh", 2),
    ("ram_energy_kwh", "IT energy: RAM (CodeCarbon)", "kWh", 2),
]


def headline_rows(current: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """The headline table's rows: the components of IT energy only where there are any beside
    the GPUs (agent-only periods keep the table they always had)."""
    if not (current.get("cpu_energy_kwh") or current.get("ram_energy_kwh")):
        return HEADLINE
    return [HEADLINE[0], *HEADLINE_COMPONENTS, *HEADLINE[1:]]


def build(
    *,
    organization: Organization,
    team: Team | None,
    period: CalendarPeriod,
    generated_at: datetime,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    qs = scope_usage(organization, team)
    rows = window(qs, period.start, period.end)
    progress("totals")
    current_sums = rows.aggregate(**SUMS)
    current = metrics(current_sums)
    previous = metrics(window(qs, period.previous.start, period.previous.end).aggregate(**SUMS))
    last_year = metrics(
        window(qs, period.year_before.start, period.year_before.end).aggregate(**SUMS)
    )
    has_data = bool(current["gpu_hours"] or current["energy_kwh"])
    progress("data quality and coverage of the compared periods")
    data_quality = fleet_data_quality(organization, period)
    comparisons = period_comparisons(organization, period, data_quality)
    vs_previous = comparisons["previous"]["comparable"]
    vs_last_year = comparisons["year_before"]["comparable"]
    headline = [
        {
            "key": key,
            "label": label,
            "unit": unit,
            "digits": digits,
            "value": current.get(key),
            "previous": previous.get(key),
            "last_year": last_year.get(key),
            # A change against a partly measured period is not printed: it measures the gap.
            "change_previous_pct": change_pct(current.get(key), previous.get(key))
            if vs_previous
            else None,
            "change_last_year_pct": change_pct(current.get(key), last_year.get(key))
            if vs_last_year
            else None,
            "previous_comparable": vs_previous,
            "last_year_comparable": vs_last_year,
        }
        for key, label, unit, digits in headline_rows(current)
    ]
    content: dict[str, Any] = {
        "meta": {
            "organization": organization.slug,
            "organization_name": organization.name,
            "team": team.slug if team else None,
            "scope": f"Team {team.name or team.slug}" if team else "Whole organization",
            "period": period.label,
            "period_kind": period.kind,
            "previous_period": period.previous.label,
            "year_before_period": period.year_before.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "generated_at": generated_at.isoformat(),
            "emissions_available": HAS_EMISSIONS,
        },
        "has_data": has_data,
        "totals": current,
        "headline": headline,
        "comparisons": comparisons,
    }
    if not has_data:
        content.update(
            by_team=[],
            by_project=[],
            monthly_by_team=[],
            daily=[],
            intensity=[],
            targets=report_targets(organization, team, period, generated_at=generated_at),
            recommendations={"available": False, "rows": []},
            methodology=methodology(rows.none(), organization),
            data_quality=data_quality,
        )
        return content
    progress("teams, projects and time series")
    content.update(breakdowns(rows, period))
    # Each team's colour on the charts: the same as on the pages (creation order).
    content["colours"] = {"team": label_colours(organization, "team")}
    progress("carbon intensity")
    content["intensity"] = site_intensity(rows, organization, period)
    progress("targets and recommendations")
    content["targets"] = report_targets(organization, team, period, generated_at=generated_at)
    content["recommendations"] = recommendations_section(organization, team, period)
    progress("methodology")
    content["methodology"] = methodology(rows, organization, current_sums)
    content["data_quality"] = data_quality
    return content
