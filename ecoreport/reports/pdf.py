"""The PDF report: reportlab for layout, matplotlib (Agg, no display) for charts. Pure Python
wheels; no browser at run time."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from ecoreport.core.palette import PALETTE
from ecoreport.reports import fonts
from ecoreport.reports.tables import (
    UNATTRIBUTED,
    Table,
    comparison_sentence,
    fmt,
    fmt_change,
    report_tables,
)


def _chart_png(draw: Any, *, width_in: float = 7.0, height_in: float = 2.6) -> io.BytesIO:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # The family list makes matplotlib fall back glyph by glyph (CJK names). It is set for the
    # drawing alone: ticks are made at draw time from rcParams, so a per-Text font would miss them.
    with matplotlib.rc_context({"font.family": fonts.chart_families()}):
        # A Figure without pyplot: nothing global, safe in a long-lived worker.
        fig = Figure(figsize=(width_in, height_in), dpi=150)
        ax = fig.add_subplot(1, 1, 1)
        draw(ax)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    buffer.seek(0)
    return buffer


def _charts(content: dict[str, Any]) -> list[tuple[str, io.BytesIO, float]]:
    charts: list[tuple[str, io.BytesIO, float]] = []
    daily = content["daily"]
    x = [datetime.fromisoformat(r["period_start"]) for r in daily]
    emissions = content["meta"]["emissions_available"]

    def energy(ax: Any) -> None:
        ax.plot(
            x, [r["energy_kwh"] for r in daily], color=PALETTE[0], linewidth=1.4, label="IT energy"
        )
        if emissions:
            ax.plot(
                x,
                [r["facility_energy_kwh"] for r in daily],
                color=PALETTE[1],
                linewidth=1.4,
                linestyle="--",
                label="Facility energy",
            )
        ax.set_ylabel("kWh", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, frameon=False, loc="lower left")
        ax.figure.autofmt_xdate(rotation=0, ha="center")

    charts.append(("Energy over time", _chart_png(energy), 2.6))
    if emissions:

        def co2(ax: Any) -> None:
            ax.plot(
                x,
                [r["co2e_kg"] for r in daily],
                color=PALETTE[2],
                linewidth=1.4,
                label="Location-based",
            )
            ax.plot(
                x,
                [r["co2e_market_kg"] for r in daily],
                color=PALETTE[3],
                linewidth=1.4,
                linestyle="--",
                label="Market-based",
            )
            ax.set_ylabel("kg CO2e", fontsize=8)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7, frameon=False, loc="lower left")

        charts.append(("Emissions over time", _chart_png(co2), 2.6))
    teams = content["by_team"][:12][::-1]
    if teams:

        def by_team(ax: Any) -> None:
            # Names, not slugs; "$" would start matplotlib's mathtext.
            names = [
                fonts.chart_text(r.get("team_name") or r["team"] or UNATTRIBUTED).replace(
                    "$", r"\$"
                )
                for r in teams
            ]
            ax.barh(names, [r["energy_kwh"] for r in teams], color=PALETTE[0])
            ax.set_xlabel("IT energy (kWh)", fontsize=8)
            ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)

        height = max(1.6, 0.5 + 0.22 * len(teams))
        charts.append(("IT energy by team", _chart_png(by_team, height_in=height), height))
    if content.get("intensity"):
        rows = content["intensity"]

        def intensity(ax: Any) -> None:
            labels = [
                fonts.chart_text(f"{r['site']}\n({r['zone']})").replace("$", r"\$") for r in rows
            ]
            pos = range(len(rows))
            ax.bar(
                [p - 0.2 for p in pos],
                [r["experienced_g_per_kwh"] or 0 for r in rows],
                0.4,
                color=PALETTE[0],
                label="Experienced",
            )
            ax.bar(
                [p + 0.2 for p in pos],
                [r["zone_average_g_per_kwh"] or 0 for r in rows],
                0.4,
                color=PALETTE[1],
                label="Zone average",
            )
            ax.set_xticks(list(pos), labels)
            ax.set_ylabel("g CO2e/kWh", fontsize=8)
            ax.legend(fontsize=7, frameon=False)

        charts.append(
            ("Carbon intensity experienced against the zone average", _chart_png(intensity), 2.6)
        )
    return charts


def render_pdf(
    content: dict[str, Any],
    *,
    version: int | None = None,
    change_note: str = "",
    compress: bool = True,
) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import (
        Image,
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        TableStyle,
    )
    from reportlab.platypus import Table as RlTable

    meta = content["meta"]
    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9, leading=12)
    small = ParagraphStyle(
        "small", parent=body, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444")
    )
    cell = ParagraphStyle("cell", parent=body, fontSize=7, leading=8.5)
    card = ParagraphStyle("card", parent=cell, leading=16)
    cell_r = ParagraphStyle("cellr", parent=cell, alignment=TA_RIGHT)
    head = ParagraphStyle("head", parent=cell, fontName="Helvetica-Bold")
    head_r = ParagraphStyle("headr", parent=head, alignment=TA_RIGHT)
    h1 = ParagraphStyle("h1", parent=styles["Title"], fontSize=20, leading=24, alignment=0)
    h2 = ParagraphStyle(
        "h2",
        parent=styles["Heading2"],
        fontSize=13,
        leading=16,
        spaceBefore=10,
        textColor=colors.HexColor("#006B4F"),
    )
    h3 = ParagraphStyle("h3", parent=styles["Heading3"], fontSize=10, leading=12, spaceBefore=6)
    tables = {t.name: t for t in report_tables(content)}
    width = A4[0] - 3 * cm

    # Escaped, and each run that Helvetica lacks set in a face that has it (fonts.py).
    esc = fonts.markup

    def table(t: Table, *, col_widths: list[float] | None = None) -> Any:
        numeric = [c.digits is not None for c in t.columns]
        data = [
            [
                Paragraph(esc(c.heading), head_r if n and i else head)
                for i, (c, n) in enumerate(zip(t.columns, numeric, strict=True))
            ]
        ]
        for row in t.formatted():
            data.append(
                [Paragraph(esc(v), cell_r if numeric[i] and i else cell) for i, v in enumerate(row)]
            )
        if len(data) == 1:
            return Paragraph("No rows in this period.", small)
        rl = RlTable(data, colWidths=col_widths, repeatRows=1, hAlign="LEFT")
        rl.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEF4F1")),
                    ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#DDDDDD")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("TOPPADDING", (0, 0), (-1, -1), 2),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ]
            )
        )
        return rl

    def widths(t: Table, first: float) -> list[float]:
        rest = (width - first) / (len(t.columns) - 1)
        return [first] + [rest] * (len(t.columns) - 1)

    story: list[Any] = [
        Paragraph(f"Sustainability report {esc(meta['period'])}", h1),
        Paragraph(
            f"<b>{esc(meta['organization_name'])}</b> · {esc(meta['scope'])}"
            + (f" · version {version}" if version else ""),
            body,
        ),
        Paragraph(
            f"Period {meta['start'][:10]} to {meta['end'][:10]} (UTC, end exclusive) · "
            f"generated {meta['generated_at'][:16].replace('T', ' ')} UTC",
            small,
        ),
        Spacer(1, 8),
    ]
    if change_note:
        story.append(Paragraph(f"<b>What changed:</b> {esc(change_note)}", body))
    if not content["has_data"]:
        story.append(
            Paragraph(
                f"<b>No data:</b> nothing was measured for this scope in {esc(meta['period'])}. "
                "The figures below are zero.",
                body,
            )
        )
    if not meta["emissions_available"]:
        story.append(
            Paragraph("Emissions are not available: carbon accounting is not set up.", body)
        )
    story.append(Paragraph("Headline figures", h2))
    cards = [
        Paragraph(
            f"{esc(h['label'])}<br/><font size=13><b>{fmt(h['value'], h['digits'])}</b></font> "
            f"{esc(h['unit'])}<br/><font size=6.5 color='#555555'>vs {meta['previous_period']}: "
            f"{fmt_change(h['change_previous_pct'], h.get('previous_comparable', True))} · vs "
            f"{meta['year_before_period']}: "
            f"{fmt_change(h['change_last_year_pct'], h.get('last_year_comparable', True))}</font>",
            card,
        )
        for h in content["headline"]
    ]
    grid = [cards[i : i + 4] + [""] * (4 - len(cards[i : i + 4])) for i in range(0, len(cards), 4)]
    cards_table = RlTable(grid, colWidths=[width / 4] * 4, hAlign="LEFT")
    cards_table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.25, colors.HexColor("#CCCCCC")),
                ("INNERGRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#CCCCCC")),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    story += [
        cards_table,
        Spacer(1, 6),
        table(
            tables["headline"],
            col_widths=[w * cm for w in (3.6, 1.5, 1.8, 1.8, 1.5, 2.1, 1.8, 1.5, 2.1)],
        ),
    ]
    comparisons = content.get("comparisons") or {}
    if "coverage" in tables:
        story.append(Paragraph("Coverage of the compared periods", h3))
        story.append(Paragraph(esc(comparison_sentence(comparisons)), small))
        story.append(table(tables["coverage"], col_widths=widths(tables["coverage"], 1.8 * cm)))

    if content["has_data"]:
        charts = _charts(content)
        story.append(Paragraph("Energy and emissions", h2))
        for title, png, height_in in charts[:2]:
            story.append(
                KeepTogether(
                    [Paragraph(title, h3), Image(png, width=width, height=width * height_in / 7.0)]
                )
            )
        story.append(Paragraph("By team", h3))
        for _title, png, height_in in charts[2:3]:
            story.append(Image(png, width=width, height=width * height_in / 7.0))
        story.append(table(tables["by_team"], col_widths=widths(tables["by_team"], 3.2 * cm)))
        story.append(Paragraph("By project", h3))
        story.append(table(tables["by_project"], col_widths=widths(tables["by_project"], 3.2 * cm)))
        if "intensity" in tables:
            story.append(Paragraph("Carbon intensity experienced", h2))
            story.append(
                Paragraph(
                    "Experienced: location-based emissions divided by facility energy (each hour "
                    "weighted by the energy used in it). Zone average: the grid's mean over every "
                    "hour of the period.",
                    small,
                )
            )
            for _title, png, height_in in charts[3:]:
                story.append(Image(png, width=width, height=width * height_in / 7.0))
            story.append(
                table(tables["intensity"], col_widths=widths(tables["intensity"], 3.0 * cm))
            )

    story.append(Paragraph("Target compliance", h2))
    if "targets" in tables:
        story.append(
            Paragraph(
                "Each target evaluated for its periods within this report's, from the hourly "
                "figures, as of the end of the report's period. A period that has ended passes "
                "or fails; one still running reads on track or at risk.",
                small,
            )
        )
        story.append(
            table(
                tables["targets"],
                col_widths=[
                    2.7 * cm,
                    2.0 * cm,
                    2.6 * cm,
                    1.4 * cm,
                    1.6 * cm,
                    1.5 * cm,
                    1.5 * cm,
                    1.4 * cm,
                    width - 14.7 * cm,
                ],
            )
        )
    else:
        available = (content.get("targets") or {}).get("available")
        story.append(
            Paragraph(
                "No policy targets cover this scope and period."
                if available
                else "Not available: policy targets are not set up.",
                small,
            )
        )
    story.append(Paragraph("Top recommendations", h2))
    if "recommendations" in tables:
        story.append(
            table(
                tables["recommendations"], col_widths=[4 * cm, 2.2 * cm, 2.2 * cm, width - 8.4 * cm]
            )
        )
    else:
        story.append(Paragraph("Not available for this report.", small))

    method = content.get("methodology") or {}
    story.append(Paragraph("Methodology", h2))
    formulas = [
        [Paragraph(f"<b>{esc(f['name'])}</b>", cell), Paragraph(esc(f["formula"]), cell)]
        for f in method.get("formulas", [])
    ]
    ft = RlTable(formulas, colWidths=[3.4 * cm, width - 3.4 * cm], hAlign="LEFT")
    ft.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#DDDDDD"))]))
    story.append(ft)
    for name, title, first in (
        ("pue", "PUE used", 2.6),
        ("factors", "Location-based grid factors", 2.8),
        ("market_factors", "Market-based factors", 2.0),
    ):
        if name in tables:
            story += [
                Paragraph(title, h3),
                table(tables[name], col_widths=widths(tables[name], first * cm)),
            ]
    fb = method.get("fallbacks") or {}
    if fb:
        story.append(
            Paragraph(
                f"Fallbacks: {fb['world_average_share_pct']:.1f}% of IT energy used the world-average "
                f"factor (the zone had none of its own; the usage API's fallback_share_pct); "
                f"{fb['no_site_share_pct']:.1f}% of IT energy came from hosts at no site (default PUE).",
                small,
            )
        )
    story.append(
        Paragraph(
            "Scope 2 dual reporting per the GHG Protocol. The factors are those stored with each "
            "hourly figure; an issued report keeps them even if the factor table changes later.",
            small,
        )
    )

    dq = content.get("data_quality") or {}
    story.append(Paragraph("Data quality", h2))
    story.append(Paragraph("Assessed for the organization's whole fleet.", small))
    story.append(table(tables["data_quality"], col_widths=[9 * cm, 3 * cm, width - 12 * cm]))
    story += [
        Paragraph("Measured (counter) against estimated (power integration) energy", h3),
        table(tables["energy_by_method"], col_widths=widths(tables["energy_by_method"], 6 * cm)),
    ]
    if dq.get("gaps"):
        story.append(
            Paragraph(
                "Longest gaps: "
                + "; ".join(
                    f"{g['start'][:16].replace('T', ' ')} to {g['end'][:16].replace('T', ' ')} ({g['hours']} h)"
                    for g in dq["gaps"][:5]
                ),
                small,
            )
        )
    if dq.get("hosts_stopped"):
        story.append(
            Paragraph(
                "Hosts that stopped reporting: "
                + ", ".join(
                    f"{esc(h['host'])} (last {h['last_hour'][:16].replace('T', ' ')})"
                    for h in dq["hosts_stopped"][:10]
                ),
                small,
            )
        )

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#666666"))
        fonts.draw_string(
            canvas,
            1.5 * cm,
            1 * cm,
            f"EcoReport · {meta['organization_name']} · {meta['scope']} · {meta['period']}"
            + (f" · v{version}" if version else ""),
            size=7,
        )
        canvas.drawRightString(A4[0] - 1.5 * cm, 1 * cm, f"page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.6 * cm,
        title=f"Sustainability report {meta['period']}",
        author="EcoReport",
        subject=f"{meta['organization_name']} {meta['scope']}",
        pageCompression=1 if compress else 0,
        invariant=1,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
