"""The self-contained HTML report: one file with plotly.js inlined (from the plotly package, no
CDN) and interactive charts built by the dashboards' figure builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from ecoreport.core import figures
from ecoreport.core.palette import PALETTE
from ecoreport.reports.tables import comparison_sentence, fmt, fmt_change, report_tables

_PLOTLY_JS: str | None = None


def _plotly_js() -> str:
    global _PLOTLY_JS
    if _PLOTLY_JS is None:
        from plotly.offline import get_plotlyjs

        # A "</script" inside the bundle would end the tag early.
        _PLOTLY_JS = get_plotlyjs().replace("</script", "<\\/script")
    return _PLOTLY_JS


def report_figures(content: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not content.get("has_data"):
        return {}
    out: dict[str, dict[str, Any]] = {}
    monthly = [
        {
            **r,
            "period_start": datetime.fromisoformat(r["period_start"]),
            "team": r["group"],
            "team_name": r.get("group_name"),
        }
        for r in content["monthly_by_team"]
    ]
    out["energy-by-team"] = figures.stacked_over_time(
        monthly,
        by="team",
        metric="energy_kwh",
        title="IT energy by team and month",
        unit="kWh",
        # Reports issued before teams had fixed colours carry none: colours by rank, as then.
        colours=content.get("colours", {}).get("team"),
    )
    daily = content["daily"]
    x = [datetime.fromisoformat(r["period_start"]) for r in daily]
    series = [("IT energy", x, [r["energy_kwh"] for r in daily])]
    if content["meta"]["emissions_available"]:
        series.append(("Facility energy", x, [r["facility_energy_kwh"] for r in daily]))
    out["energy-over-time"] = figures.lines_over_time(series, title="Energy over time", unit="kWh")
    if content["meta"]["emissions_available"]:
        out["emissions-over-time"] = figures.lines_over_time(
            [
                ("Location-based", x, [r["co2e_kg"] for r in daily]),
                ("Market-based", x, [r["co2e_market_kg"] for r in daily]),
            ],
            title="Emissions over time",
            unit="kg CO2e",
        )
        out["emissions-by-team"] = figures.ranked_bars(
            content["by_team"][:12],
            by="team",
            metric="co2e_kg",
            title="Location-based emissions by team",
            unit="kg CO2e",
        )
    out["energy-by-project"] = figures.ranked_bars(
        content["by_project"][:12],
        by="project",
        metric="energy_kwh",
        title="IT energy by project (top 12)",
        unit="kWh",
    )
    if content.get("intensity"):
        import plotly.graph_objects as go

        sites = [f"{r['site']} ({r['zone']})" for r in content["intensity"]]
        fig = go.Figure()
        fig.add_bar(
            name="Experienced",
            x=sites,
            y=[r["experienced_g_per_kwh"] for r in content["intensity"]],
            marker_color=PALETTE[0],
        )
        fig.add_bar(
            name="Zone average",
            x=sites,
            y=[r["zone_average_g_per_kwh"] for r in content["intensity"]],
            marker_color=PALETTE[1],
        )
        out["intensity"] = figures._fig(
            fig, "Carbon intensity experienced against the zone average", "g/kWh"
        )
    return out


def render_html(
    content: dict[str, Any], *, version: int | None = None, change_note: str = ""
) -> bytes:
    tables = report_tables(content)
    headline = [
        {
            **h,
            "value_text": fmt(h["value"], h["digits"]),
            "prev_text": fmt_change(h["change_previous_pct"], h.get("previous_comparable", True)),
            "year_text": fmt_change(h["change_last_year_pct"], h.get("last_year_comparable", True)),
        }
        for h in content["headline"]
    ]
    html = render_to_string(
        "reports/report.html",
        {
            "content": content,
            "meta": content["meta"],
            "version": version,
            "change_note": change_note,
            "headline": headline,
            "tables": {t.name: {"table": t, "cells": t.formatted()} for t in tables},
            "figures": report_figures(content),
            "plotly_js": mark_safe(_plotly_js()),  # noqa: S308 - the plotly package's own bundle
            "comparison_sentence": comparison_sentence(content["comparisons"])
            if content.get("comparisons")
            else "",
            "dq": content.get("data_quality") or {},
            "method": content.get("methodology") or {},
        },
    )
    return html.encode("utf-8")
