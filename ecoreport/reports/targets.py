"""Target compliance in a report: each target evaluated for the report's own period from the
rollups, whether or not the hourly evaluation ran (a target created after the fact, a worker
that was down, or an installation without beat still gets a real value and verdict).

The evaluation is the policies app's own (``policies.evaluation``: same metric, threshold, baseline
and forecast rules as the hourly job), run "as of" the end of the report's period, so a report
of an ended period reads the same whenever it is generated. A target whose period kind differs
from the report's is evaluated for each of its periods that overlap the report's: a monthly
target in a quarterly report gives three rows; a yearly target gives its year to date at the
report's end, with its forecast.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q

from ecoreport.core.periods import (
    CalendarPeriod,
    parse_period_label,
    period_label,
    period_shift,
    period_start,
)
from ecoreport.organizations.models import Organization, Team

# The hourly job's own evaluation of one period; it reads the rollups and writes nothing.
from ecoreport.policies.evaluation import evaluate_period
from ecoreport.policies.models import Target, TargetEvaluation

# Verdicts printed in the report. A period that has ended passes or fails; one still running
# at the report's end is "on track" or "at risk" (or already failed: a cumulative figure past an
# "at most" limit can only grow).
PASS, FAIL, NO_DATA = "pass", "fail", "no data"


def verdict(status: str, *, final: bool) -> str:
    if status == "no_data":
        return NO_DATA
    if status == "breached":
        return FAIL
    if final:
        return PASS if status == "on_track" else FAIL
    return "on track" if status == "on_track" else "at risk"


def _scope_label(target: Target) -> str:
    """The scope as the pages say it (templates/dashboards/_target_scope.html)."""
    if target.scope_kind == Target.Scope.TEAM and target.team is not None:
        return f"Team {target.team.name or target.team.slug}"
    if target.scope_kind == Target.Scope.PROJECT and target.project is not None:
        return f"Project {target.project.name or target.project.slug}"
    return "Organization"


def _target_periods(target: Any, period: CalendarPeriod) -> list[datetime]:
    """Starts of the target's periods that overlap the report's period."""
    if target.period_label:
        start = parse_period_label(target.period, target.period_label)
        end = period_shift(target.period, start, 1)
        return [start] if start < period.end and end > period.start else []
    starts = []
    start = period_start(target.period, period.start)
    while start < period.end:
        starts.append(start)
        start = period_shift(target.period, start, 1)
    return starts


def report_targets(
    organization: Organization, team: Team | None, period: CalendarPeriod, *, generated_at: datetime
) -> dict[str, Any]:
    targets = Target.objects.for_org(organization).select_related("team", "project")
    if team is not None:
        targets = targets.filter(
            Q(team=team) | Q(project__team=team) | Q(scope_kind=Target.Scope.ORG)
        )
    as_of = min(period.end, generated_at)
    rows = []
    for target in targets.order_by("name", "id"):
        stored = list(
            TargetEvaluation.objects.for_org(organization)
            .filter(target=target, period_start__lt=period.end, period_end__gt=period.start)
            .order_by("evaluated_at", "id")
            .values("evaluated_at", "status")
        )
        if not stored and not target.is_active:
            continue
        history: list[dict[str, Any]] = []
        for e in stored:
            if not history or history[-1]["status"] != e["status"]:
                history.append({"at": e["evaluated_at"].isoformat(), "status": e["status"]})
        for start in _target_periods(target, period):
            result = evaluate_period(target, start=start, now=as_of)
            rows.append(
                {
                    "name": target.name,
                    "scope": target.scope,
                    "scope_label": _scope_label(target),
                    "metric": target.metric,
                    "comparator": target.comparator,
                    "period": target.period,
                    "target_period": period_label(target.period, start),
                    "threshold": result["threshold_value"],
                    "baseline": result["baseline_value"],
                    "value": result["value"],
                    "forecast": None if result["final"] else result["forecast_value"],
                    "status": result["status"],
                    "result": verdict(result["status"], final=result["final"]),
                    "final": result["final"],
                    "note": result["note"],
                    "evaluated_as_of": as_of.isoformat(),
                    "evaluations": len(stored),
                    "history": history[-12:],
                }
            )
    return {"available": True, "evaluated_as_of": as_of.isoformat(), "rows": rows}
