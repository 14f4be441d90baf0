"""Plotly figures for the pages and the reports' HTML, built by pure functions from plain rows
(tested without a database); here rather than in ``dashboards`` because reports draw them too.
Each returns a figure as a JSON-ready dict; the page's script draws it with the plotly.js the app
serves itself."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from ecoreport.core.palette import PALETTE, UNATTRIBUTED_COLOUR

UNATTRIBUTED = "(unattributed)"

_LAYOUT: dict[str, Any] = {
    "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
    "font": {"family": "system-ui, sans-serif", "size": 13},
    "legend": {"orientation": "h", "y": -0.18},
    "plot_bgcolor": "#ffffff",
    "paper_bgcolor": "#ffffff",
    "colorway": PALETTE,
}


def _shown(name: str) -> str:
    """A team or project name as plotly text: plotly reads legends and hover text as a little
    HTML (``<b>``, entities) and hover templates as ``%{...}``; names are any text now, so both
    are escaped (plotly turns the entities back into the characters)."""
    return html.escape(name, quote=False).replace("%", "&#37;")


def _display(row: dict[str, Any], by: str) -> str:
    """What a group is called on a chart: its name where the rows carry one (``team_name``
    beside the ``team`` slug), else the group value itself."""
    return row.get(f"{by}_name") or row[by] or UNATTRIBUTED


def _fig(fig: go.Figure, title: str, y_title: str) -> dict[str, Any]:
    # The page's heading names the chart; the title stays in the figure's metadata only (for
    # exports) so that it is not said twice on screen.
    fig.update_layout(meta={"title": title}, yaxis_title=y_title, **_LAYOUT)
    fig.update_yaxes(gridcolor="#e5e5e5", rangemode="tozero")
    return fig.to_plotly_json()


def _plain(data: list[dict[str, Any]], title: str, y_title: str, **layout: Any) -> dict[str, Any]:
    """The same JSON as ``_fig`` gives, written directly. plotly's figure objects validate every
    property of every trace as it is added, which cost a page with a few dozen traces over a
    quarter of a second; these builders emit plain dicts instead (tests check that plotly
    accepts each one)."""
    return {
        "data": data,
        "layout": {
            **_LAYOUT,
            "meta": {"title": title},
            "yaxis": {"title": {"text": y_title}, "gridcolor": "#e5e5e5", "rangemode": "tozero"},
            **layout,
        },
    }


def _colour(name: str, i: int, colours: Mapping[str, str] | None) -> str:
    if colours is None:
        return PALETTE[i % len(PALETTE)]
    if name == UNATTRIBUTED:
        return UNATTRIBUTED_COLOUR
    return colours.get(name, PALETTE[i % len(PALETTE)])


def stacked_over_time(
    rows: Iterable[dict[str, Any]],
    *,
    by: str,
    metric: str,
    title: str,
    unit: str,
    order: Sequence[str | None] | None = None,
    colours: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One bar trace per group value, stacked, over period_start.

    ``order`` fixes the groups' order (groups not in it follow, biggest first). ``colours``
    (group value -> colour, from ``organizations.selectors.label_colours``) gives each group its
    own colour on every chart; unattributed work is grey. Without it, colours follow the order.
    """
    groups: dict[str, dict[datetime, float]] = {}
    shown: dict[str, str] = {}  # group -> its name on the chart (groups stay keyed by slug)
    periods: set[datetime] = set()
    for row in rows:
        name = row[by] or UNATTRIBUTED
        shown.setdefault(name, _shown(_display(row, by)))
        periods.add(row["period_start"])
        groups.setdefault(name, {})
        groups[name][row["period_start"]] = groups[name].get(row["period_start"], 0.0) + (
            row.get(metric) or 0.0
        )
    x = sorted(periods)
    x_text = [p.isoformat() for p in x]
    # Biggest groups first so the largest contributors keep the first, clearest colours.
    fixed = [g or UNATTRIBUTED for g in order or []]
    rest = sorted((g for g in groups if g not in fixed), key=lambda g: -sum(groups[g].values()))
    names = [g for g in fixed if g in groups] + rest
    data = [
        {
            "type": "bar",
            "name": shown[name],
            "x": x_text,
            "y": [groups[name].get(p, 0.0) for p in x],
            "marker": {"color": _colour(name, i, colours)},
            "hovertemplate": f"%{{x}}<br>{shown[name]}: %{{y:.2f}} {unit}<extra></extra>",
        }
        for i, name in enumerate(names)
    ]
    return _plain(data, title, unit, barmode="stack")


def lines_over_time(
    series: Sequence[tuple[str, Sequence[datetime], Sequence[float | None]]],
    *,
    title: str,
    unit: str,
    markers: Sequence[str] = (),
    x_range: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """One line a series; the series named in ``markers`` also mark their points.

    A series with a single point is drawn as a marker whatever ``markers`` says: a line of one
    point draws nothing. ``x_range`` fixes the time axis (plotly would otherwise stretch one
    point across a millisecond).
    """
    data = [
        {
            "type": "scatter",
            "name": name,
            "x": [p.isoformat() for p in x],
            "y": list(y),
            "mode": "lines+markers"
            if name in markers or sum(v is not None for v in y) == 1
            else "lines",
            "line": {
                "color": PALETTE[i % len(PALETTE)],
                "width": 2,
                "dash": "solid" if i == 0 else "dash",
            },
            "marker": {"color": PALETTE[i % len(PALETTE)], "size": 7},
        }
        for i, (name, x, y) in enumerate(series)
    ]
    out = _plain(data, title, unit)
    if x_range is not None:
        axis = out["layout"].get("xaxis", {})  # _LAYOUT's own dict: copied, not changed
        out["layout"]["xaxis"] = {
            **axis,
            "type": "date",
            "range": [m.isoformat() for m in x_range],
        }
    return out


def ranked_bars(
    rows: Sequence[dict[str, Any]], *, by: str, metric: str, title: str, unit: str
) -> dict[str, Any]:
    names = [_shown(_display(r, by)) for r in rows][::-1]
    values = [r.get(metric) or 0.0 for r in rows][::-1]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=PALETTE[0],
            hovertemplate=f"%{{y}}: %{{x:.2f}} {unit}<extra></extra>",
        )
    )
    out = _fig(fig, title, "")
    out["layout"]["xaxis"] = {"title": {"text": unit}, "gridcolor": "#e5e5e5"}
    out["layout"]["height"] = max(220, 40 + 28 * len(rows))
    return out


def utilization_heatmap(
    hosts: Sequence[str], cells: Iterable[tuple[datetime, str, float | None]], *, title: str
) -> dict[str, Any]:
    cells = list(cells)
    days = sorted({d for d, _, _ in cells})
    grid: dict[tuple[str, datetime], float | None] = {(h, d): v for d, h, v in cells}
    z = [[grid.get((h, d)) for d in days] for h in hosts]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[d.date().isoformat() for d in days],
            y=list(hosts),
            zmin=0,
            zmax=100,
            colorscale="Viridis",  # perceptually uniform and colour-blind safe
            colorbar={"title": {"text": "%"}},
            hovertemplate="%{y} on %{x}: %{z:.0f}% utilization<extra></extra>",
        )
    )
    out = _fig(fig, title, "")
    out["layout"]["height"] = max(260, 80 + 22 * len(hosts))
    return out


def savings_by_lever(
    levers: Sequence[dict[str, Any]], *, metric: str, title: str, unit: str
) -> dict[str, Any]:
    """Horizontal bars, one per savings lever in the given order (first on top). Measured levers
    and what-ifs are separate traces, told apart by colour *and* a hatch pattern so the
    difference does not rest on colour alone."""
    names = [lever["title"] for lever in levers][::-1]
    fig = go.Figure()
    for kind, colour, pattern in (("measured", PALETTE[0], ""), ("what-if", PALETTE[1], "/")):
        values = [
            (lever.get(metric) or 0.0) if lever["kind"] == kind else None for lever in levers
        ][::-1]
        fig.add_bar(
            name=kind,
            x=values,
            y=names,
            orientation="h",
            marker={"color": colour, "pattern": {"shape": pattern}},
            hovertemplate=f"%{{y}}: %{{x:.3g}} {unit}<extra>{kind}</extra>",
        )
    # Each lever has one bar; overlaying the two traces keeps the bars full height.
    fig.update_layout(barmode="overlay")
    out = _fig(fig, title, "")
    out["layout"]["xaxis"] = {"title": {"text": unit}, "gridcolor": "#e5e5e5"}
    out["layout"]["yaxis"] = {**out["layout"].get("yaxis", {}), "automargin": True}
    out["layout"]["height"] = max(260, 80 + 36 * len(levers))
    return out
