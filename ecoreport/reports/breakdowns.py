"""Where the energy went: the report's tables and series by team, by project, over time, and by
team over months, all re-added in Python from one grouped scan of the period's rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.db.models.functions import TruncDay, TruncMonth

from ecoreport.accounting.models import HourlyUsage
from ecoreport.core.periods import CalendarPeriod
from ecoreport.reports.totals import SUMS, metrics


def breakdowns(window: QuerySet[HourlyUsage], period: CalendarPeriod) -> dict[str, Any]:
    """``by_team``, ``by_project`` (largest energy first), ``daily`` (monthly for a year) and
    ``monthly_by_team`` over the rows ``window`` (the report's scope and period)."""
    trunc = (
        TruncMonth("hour", tzinfo=UTC) if period.kind == "year" else TruncDay("hour", tzinfo=UTC)
    )
    cube = _cube(window, trunc)
    by_month_team = _rollup(cube, lambda r: (_month_start(r["bucket"]), r["team__slug"] or ""))
    team_names = _names(cube, "team__slug")
    return {
        "by_team": _ranked(cube, "team__slug", "team"),
        "by_project": _ranked(cube, "project__slug", "project"),
        "daily": [
            {"period_start": k.isoformat(), **metrics(v)}
            for k, v in sorted(_rollup(cube, lambda r: r["bucket"]).items())
        ],
        "monthly_by_team": [
            {
                "period_start": month.isoformat(),
                "group": team or None,
                "group_name": team_names.get(team or None),
                **metrics(v),
            }
            for (month, team), v in sorted(by_month_team.items())
        ],
    }


def _cube(qs: QuerySet[HourlyUsage], trunc: Any) -> list[dict[str, Any]]:
    """Sums per (time bucket, team, project) in one scan: by team, by project, over time and
    by team over months are all re-additions of these few thousand rows (sums add; ratios are
    derived afterwards), so the big table is read once instead of four times."""
    rows = (
        qs.annotate(bucket=trunc)
        .values("bucket", "team__slug", "project__slug", "team__name", "project__name")
        .annotate(**SUMS)
        .order_by()
    )
    return list(rows)


def _rollup(
    cube: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, dict[str, float]]:
    out: dict[Any, dict[str, float]] = {}
    for row in cube:
        acc = out.setdefault(key(row), dict.fromkeys(SUMS, 0.0))
        for name in SUMS:
            acc[name] += row[name] or 0.0
    return out


def _names(cube: list[dict[str, Any]], field: str) -> dict[str | None, str | None]:
    """slug -> the name a person reads (the slug where the name is blank), for ``*_name``."""
    name_field = field.replace("__slug", "__name")
    return {r[field]: r[name_field] or r[field] for r in cube}


def _ranked(cube: list[dict[str, Any]], field: str, name: str) -> list[dict[str, Any]]:
    names = _names(cube, field)
    rows = [
        {name: k, f"{name}_name": names.get(k), **metrics(v)}
        for k, v in _rollup(cube, lambda r: r[field]).items()
    ]
    rows.sort(key=lambda r: (-(r["energy_kwh"] or 0.0), r[name] or ""))
    return rows


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
