"""The tables of a report, shaped once from the content for every format: formatted cells for
the PDF and HTML, raw numbers for the CSV and XLSX (full precision, so auditors can re-add)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecoreport.core.spreadsheets import spreadsheet_cell, spreadsheet_row
from ecoreport.policies import calc

UNATTRIBUTED = "(unattributed)"


def _shown(row: dict[str, Any], key: str) -> str:
    """A team or project as a person reads it: its name (``team_name``; reports issued before
    names were kept in the content have only the slug), else the slug."""
    return row.get(f"{key}_name") or row[key] or UNATTRIBUTED


def fmt(value: Any, digits: int | None = None) -> str:
    """A cell as text. With ``digits`` (a numeric column) every number has exactly that many
    decimals, whether the database summed it to an int or a float: one column never reads
    "35,328" beside "35,328.00". Without (a text column) an int is an identifier such as a
    year, shown without a thousands separator ("2026", not "2,026")."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if digits is not None:
            return f"{value:,.{digits}f}"
        return str(value) if isinstance(value, int) else f"{value:,.2f}"
    return str(value)


def fmt_change(value: float | None, comparable: bool = True) -> str:
    if not comparable:
        return NOT_COMPARABLE
    return "—" if value is None else f"{value:+,.1f}%"


NOT_COMPARABLE = "not comparable"


def comparison_text(comparable: bool | None) -> str:
    if comparable is None:  # content built before coverage was stated
        return "—"
    return "comparable" if comparable else NOT_COMPARABLE


def comparison_sentence(comparisons: dict[str, Any]) -> str:
    """The coverage rule and, for each comparison that fails it, why (PDF and HTML)."""
    rule = (
        f"A change is shown only when both periods had data in at least "
        f"{comparisons['min_coverage_pct']:g}% of their hours and from at least "
        f"{comparisons['min_coverage_pct']:g}% of the GPUs known then; otherwise it is marked "
        f"{NOT_COMPARABLE}."
    )
    reasons = [
        f"vs {c['period']}: {NOT_COMPARABLE}, {c['reason']}."
        for c in (comparisons["previous"], comparisons["year_before"])
        if not c["comparable"]
    ]
    return " ".join([rule, *dict.fromkeys(reasons)])


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str = ""
    digits: int | None = 2  # None: text
    # The cell as people read it (a label for a stored key), from the row; None, or a None
    # answer, shows the value itself. The CSV and XLSX write the value.
    shown: Callable[[dict[str, Any]], Any] | None = None

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]

    def formatted(self) -> list[list[str]]:
        # A row may fix its own decimals (one column of counts and measures).
        return [
            [
                fmt(_shown_value(row, c), None if c.digits is None else row.get("digits", c.digits))
                for c in self.columns
            ]
            for row in self.rows
        ]


def _shown_value(row: dict[str, Any], column: Column) -> Any:
    shown = column.shown(row) if column.shown is not None else None
    return row.get(column.key) if shown is None else shown


def _usage_columns(first: Column, emissions: bool) -> list[Column]:
    cols = [first, Column("energy_kwh", "IT energy", "kWh")]
    if emissions:
        cols += [
            Column("facility_energy_kwh", "Facility energy", "kWh"),
            Column("co2e_kg", "CO2e location", "kg"),
            Column("co2e_market_kg", "CO2e market", "kg"),
        ]
    cols += [
        Column("gpu_hours", "GPU-hours", "h"),
        Column("avg_gpu_util_pct", "Utilization", "%", 1),
        Column("idle_energy_share_pct", "Idle share", "%", 1),
    ]
    return cols


def report_tables(content: dict[str, Any]) -> list[Table]:
    emissions = bool(content["meta"].get("emissions_available"))
    headline_rows = [
        {
            "metric": h["label"],
            "key": h["key"],
            "unit": h["unit"],
            "value": h["value"],
            "previous": h["previous"],
            "last_year": h["last_year"],
            "change_previous_pct": h["change_previous_pct"],
            "change_last_year_pct": h["change_last_year_pct"],
            # Reports issued before coverage was stated have no flag: read as they were.
            "previous_comparison": comparison_text(h.get("previous_comparable")),
            "last_year_comparison": comparison_text(h.get("last_year_comparable")),
        }
        for h in content["headline"]
    ]
    meta = content["meta"]
    tables = [
        Table(
            "headline",
            "Headline figures",
            [
                Column("metric", "Metric", digits=None),
                Column("unit", "Unit", digits=None),
                Column("value", meta["period"]),
                Column("previous", meta["previous_period"]),
                Column("change_previous_pct", "Change", "%", 1),
                Column("previous_comparison", "Comparison", digits=None),
                Column("last_year", meta["year_before_period"]),
                Column("change_last_year_pct", "Change", "%", 1),
                Column("last_year_comparison", "Comparison", digits=None),
            ],
            headline_rows,
        ),
        Table(
            "by_team",
            "Energy and emissions by team",
            _usage_columns(Column("team", "Team", digits=None), emissions),
            [{**r, "team": _shown(r, "team")} for r in content.get("by_team", [])],
        ),
        Table(
            "by_project",
            "Energy and emissions by project",
            _usage_columns(Column("project", "Project", digits=None), emissions),
            [{**r, "project": _shown(r, "project")} for r in content.get("by_project", [])],
        ),
        Table(
            "over_time",
            "Over time",
            _usage_columns(Column("period_start", "Start (UTC)", digits=None), emissions),
            [{**r, "period_start": r["period_start"][:10]} for r in content.get("daily", [])],
        ),
    ]
    comparisons = content.get("comparisons") or {}
    if comparisons.get("coverage"):
        verdicts = {
            comparisons["previous"]["period"]: comparisons["previous"]["comparable"],
            comparisons["year_before"]["period"]: comparisons["year_before"]["comparable"],
        }
        tables.append(
            Table(
                "coverage",
                "Coverage of the compared periods (organization's fleet)",
                [
                    Column("period", "Period", digits=None),
                    Column("role", "Role", digits=None),
                    Column("hours_with_data", "Hours with data", "h", 0),
                    Column("hours_in_period", "Hours in period", "h", 0),
                    Column("hours_with_data_pct", "Hours with data", "%", 1),
                    Column("gpus_reporting", "GPUs reporting", "GPUs", 0),
                    Column("gpus_known", "GPUs known then", "GPUs", 0),
                    Column("gpus_reporting_pct", "GPUs reporting", "%", 1),
                    Column("comparison", "Comparison", digits=None),
                ],
                [
                    {
                        **c,
                        "comparison": comparison_text(verdicts[c["period"]])
                        if c["role"] != "this period"
                        else "—",
                    }
                    for c in comparisons["coverage"]
                ],
            )
        )
    if content.get("intensity"):
        tables.append(
            Table(
                "intensity",
                "Carbon intensity experienced against the zone average",
                [
                    Column("site", "Site", digits=None),
                    Column("zone", "Zone", digits=None),
                    Column("facility_energy_kwh", "Facility energy", "kWh"),
                    Column("co2e_kg", "CO2e location", "kg"),
                    Column("experienced_g_per_kwh", "Experienced", "g/kWh", 1),
                    Column("zone_average_g_per_kwh", "Zone average", "g/kWh", 1),
                ],
                content["intensity"],
            )
        )
    targets = content.get("targets") or {}
    if targets.get("rows"):
        tables.append(
            Table(
                "targets",
                "Target compliance",
                [
                    Column("name", "Target", digits=None),
                    # People read names (the PDF and HTML); the CSV and XLSX keep the keys.
                    Column("scope", "Scope", digits=None, shown=lambda r: r.get("scope_label")),
                    Column(
                        "metric",
                        "Metric",
                        digits=None,
                        shown=lambda r: calc.metric_label(r["metric"]),
                    ),
                    Column("target_period", "Period", digits=None),
                    Column(
                        "comparator",
                        "Rule",
                        digits=None,
                        shown=lambda r: calc.COMPARATOR_LABELS.get(r["comparator"]),
                    ),
                    Column("threshold", "Limit"),
                    Column("value", "Value"),
                    Column("result", "Result", digits=None),
                    Column("history_text", "Hourly status history", digits=None),
                ],
                [
                    {
                        # Issued before the report evaluated targets itself: the stored status.
                        "target_period": "—",
                        "result": calc.STATUS_LABELS.get(r.get("status", ""), r.get("status")),
                        **r,
                        "history_text": " → ".join(
                            calc.STATUS_LABELS.get(h["status"], h["status"]) for h in r["history"]
                        )
                        or "—",
                    }
                    for r in targets["rows"]
                ],
            )
        )
    recs = content.get("recommendations") or {}
    if recs.get("rows"):
        tables.append(
            Table(
                "recommendations",
                "Top recommendations",
                [
                    Column("title", "Recommendation", digits=None),
                    Column("energy_kwh", "Energy saved", "kWh"),
                    Column("co2e_kg", "CO2e saved", "kg"),
                    Column("detail", "Detail", digits=None),
                ],
                recs["rows"],
            )
        )
    method = content.get("methodology") or {}
    if method.get("pue"):
        tables.append(
            Table(
                "pue",
                "PUE used",
                [
                    Column("site", "Site", digits=None),
                    Column("pue", "PUE", digits=3),
                    Column("it_energy_kwh", "IT energy", "kWh"),
                    Column("first_hour", "From (UTC)", digits=None),
                    Column("last_hour", "To (UTC)", digits=None),
                    Column("source", "Source", digits=None),
                ],
                [
                    {**r, "first_hour": r["first_hour"][:16], "last_hour": r["last_hour"][:16]}
                    for r in method["pue"]
                ],
            )
        )
    if method.get("factors"):
        tables.append(
            Table(
                "factors",
                "Location-based grid factors used",
                [
                    Column("zone", "Zone", digits=None),
                    Column("resolution", "Resolution", digits=None),
                    Column("source", "Source", digits=None),
                    Column("year", "Year", digits=None),
                    Column("weighted_g_per_kwh", "Weighted", "g/kWh", 1),
                    Column("energy_share_pct", "IT energy share", "%", 1),
                    Column("fallback", "Fallback", digits=None),
                ],
                method["factors"],
            )
        )
    if method.get("market"):
        tables.append(
            Table(
                "market_factors",
                "Market-based factors used",
                [
                    Column("basis", "Basis", digits=None),
                    Column("source", "Source", digits=None),
                    Column("weighted_g_per_kwh", "Weighted", "g/kWh", 1),
                    Column("energy_share_pct", "IT energy share", "%", 1),
                    Column("fallback", "Fallback", digits=None),
                    Column("fallback_note", "Fallback applied", digits=None),
                ],
                method["market"],
            )
        )
    fallbacks = method.get("fallbacks") or {}
    if fallbacks:
        tables.append(
            Table(
                "fallbacks",
                "Fallbacks",
                [
                    Column("item", "Fallback", digits=None),
                    Column("share_pct", "Share of IT energy", "%", 1),
                ],
                [
                    {
                        "item": "world-average factor (zone had none)",
                        "share_pct": fallbacks["world_average_share_pct"],
                    },
                    {
                        "item": "host at no site (default PUE)",
                        "share_pct": fallbacks["no_site_share_pct"],
                    },
                ],
            )
        )
    dq = content.get("data_quality") or {}
    if dq:
        tables.append(
            Table(
                "data_quality",
                "Data quality",
                [
                    Column("item", "Item", digits=None),
                    Column("value", "Value"),
                    Column("unit", "Unit", digits=None),
                ],
                [
                    # One column of counts and measures: each row says its decimals.
                    {"item": "GPUs known", "value": dq["gpus_known"], "unit": "GPUs", "digits": 0},
                    {
                        "item": "GPUs reporting",
                        "value": dq["gpus_reporting"],
                        "unit": "GPUs",
                        "digits": 0,
                    },
                    {
                        "item": "Expected GPU-hours (GPUs known x hours in period)",
                        "value": dq["expected_gpu_hours"],
                        "unit": "h",
                    },
                    {"item": "Measured GPU-hours", "value": dq["measured_gpu_hours"], "unit": "h"},
                    {"item": "Coverage", "value": dq["coverage_pct"], "unit": "%", "digits": 1},
                    {
                        "item": "Hours with data",
                        "value": dq["hours_with_data"],
                        "unit": f"of {dq['hours_in_period']}",
                        "digits": 0,
                    },
                    {
                        "item": "Hours with no data from any GPU",
                        "value": dq["hours_in_period"] - dq["hours_with_data"],
                        "unit": "h",
                        "digits": 0,
                    },
                    {
                        "item": "Hosts that stopped reporting",
                        "value": dq["hosts_stopped_count"],
                        "unit": "hosts",
                        "digits": 0,
                    },
                ],
            )
        )
        tables.append(
            Table(
                "energy_by_method",
                "Measured (counter) against estimated (power integration) energy",
                [
                    Column("method", "Method", digits=None),
                    Column("energy_kwh", "IT energy", "kWh"),
                    Column("share_pct", "Share", "%", 1),
                ],
                dq["energy_by_method"],
            )
        )
    return tables


def render_csv(content: dict[str, Any]) -> bytes:
    """Tidy rows: one value per line, named by table, row key and column, with its unit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    meta = content["meta"]
    writer.writerow(["organization", "scope", "period", "table", "row", "column", "unit", "value"])
    scope = meta["team"] or "organization"
    for table in report_tables(content):
        key_col = table.columns[0]
        for row in table.rows:
            for col in table.columns[1:]:
                value = row.get(col.key)
                if value is None:
                    value = ""
                elif isinstance(value, float):
                    value = repr(value)  # a number, written in full; never neutralised
                else:
                    value = spreadsheet_cell(value)
                labels = [
                    meta["organization"],
                    scope,
                    meta["period"],
                    table.name,
                    row.get(key_col.key),
                    col.key,
                    col.unit,
                ]
                writer.writerow([*spreadsheet_row(labels), value])
    return out.getvalue().encode("utf-8")


def render_xlsx(content: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    info = wb.active
    info.title = "about"
    meta = content["meta"]
    for key in ("organization_name", "scope", "period", "start", "end", "generated_at"):
        info.append(spreadsheet_row([key, meta[key]]))
    for table in report_tables(content):
        ws = wb.create_sheet(table.name[:31])
        ws.append(spreadsheet_row(c.heading for c in table.columns))
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            ws.append(spreadsheet_row(row.get(c.key) for c in table.columns))
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
