"""Pages. Thin: pick the organization and period, call selectors, hand rows to figures and
templates. Every table can be downloaded as CSV with ``?download=<table>``."""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from ecoreport.core import figures
from ecoreport.core.db import reads_from_replica
from ecoreport.core.spreadsheets import spreadsheet_row
from ecoreport.dashboards import selectors as sel
from ecoreport.dashboards.periods import GROUPINGS, PRESETS, Period, PeriodError, parse_period
from ecoreport.organizations.models import Membership, Project, Role, Team
from ecoreport.organizations.selectors import current_membership


def _period(request: HttpRequest) -> tuple[Period, str | None]:
    try:
        return parse_period(request.GET.dict(), now=timezone.now()), None
    except PeriodError as error:
        return parse_period({}, now=timezone.now()), str(error)


def _csv(filename: str, rows: list[dict[str, Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    writer = csv.writer(response)
    if rows:
        columns = list(rows[0].keys())
        writer.writerow(spreadsheet_row(columns))
        for row in rows:
            writer.writerow(spreadsheet_row("" if row[c] is None else row[c] for c in columns))
    return response


def _page(
    request: HttpRequest,
    template: str,
    *,
    membership: Membership,
    period: Period,
    error: str | None,
    tables: dict[str, Callable[[], list[dict[str, Any]]]],
    context: dict[str, Any],
) -> HttpResponse:
    wanted = request.GET.get("download")
    if wanted:
        if wanted not in tables:
            raise Http404("No such table.")
        return _csv(f"{wanted}-{period.start:%Y%m%d}-{period.end:%Y%m%d}", tables[wanted]())
    query = request.GET.copy()
    query.pop("download", None)
    base_context = {
        "membership": membership,
        "organization": membership.organization,
        "is_admin": membership.has_role(Role.ADMIN),
        "period": period,
        "period_error": error,
        "presets": PRESETS,
        "groupings": GROUPINGS,
        "query": query.urlencode(),
        "teams_nav": sel.teams_of(membership.organization),
    }
    return render(request, template, {**base_context, **context})


def _csv_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


@login_required
@reads_from_replica
def overview(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    period, error = _period(request)
    scope = sel.Scope(membership.organization)
    by_team = sel.breakdown(scope, period, by="team", intensity=False)
    teams, over_time = by_team.ranked, by_team.series
    return _page(
        request,
        "dashboards/overview.html",
        membership=membership,
        period=period,
        error=error,
        tables={"teams": lambda: _csv_rows(teams)},
        context={
            "headline": sel.headline(scope, period),
            "teams": teams,
            "targets_glance": sel.targets_glance(scope),
            "figures": {
                "energy-by-team": figures.stacked_over_time(
                    over_time,
                    by="team",
                    metric="energy_kwh",
                    title="Energy by team",
                    unit="kWh",
                    order=[r["team"] for r in teams],
                ),
                "emissions-by-team": figures.stacked_over_time(
                    over_time,
                    by="team",
                    metric="co2e_kg",
                    title="Emissions by team (location-based)",
                    unit="kg CO2e",
                    order=[r["team"] for r in teams],
                ),
            },
        },
    )


def _scope_page(
    request: HttpRequest, *, team: Team | None, project: Project | None, membership: Membership
) -> HttpResponse:
    period, error = _period(request)
    scope = sel.Scope(membership.organization, team=team, project=project)
    # A team's work is split by project; a project's by site (its hosts are in the CSV).
    by = "project" if team is not None else "site"
    split = sel.breakdown(scope, period, by=by)
    over_time, breakdown = split.series, split.ranked
    util_rows = split.over_time
    util_x = [r["period_start"] for r in util_rows]
    intensity = split.intensity
    intensity_x = [r["period_start"] for r in intensity]
    jobs = sel.biggest_jobs(scope, period)
    return _page(
        request,
        "dashboards/scope.html",
        membership=membership,
        period=period,
        error=error,
        tables={
            "breakdown": lambda: _csv_rows(breakdown),
            # Only for the download: per-host sums read HourlyUsage, the page does not.
            "hosts": lambda: _csv_rows(sel.ranked(scope, period, by="host")),
            "jobs": lambda: jobs,
        },
        context={
            "team": team,
            "project": project,
            "subject": team or project,
            "by": by,
            "headline": sel.headline(scope, period),
            "targets_glance": sel.targets_glance(scope),
            "breakdown": breakdown,
            "jobs": jobs,
            "projects": sel.projects_of(membership.organization, team) if team else [],
            "figures": {
                "energy-over-time": figures.stacked_over_time(
                    over_time,
                    by=by,
                    metric="energy_kwh",
                    title=f"Energy by {by}",
                    unit="kWh",
                    order=[r[by] for r in breakdown],
                ),
                "emissions-over-time": figures.stacked_over_time(
                    over_time,
                    by=by,
                    metric="co2e_kg",
                    title=f"Emissions by {by} (location-based)",
                    unit="kg CO2e",
                    order=[r[by] for r in breakdown],
                ),
                "intensity": figures.lines_over_time(
                    [
                        (
                            "Experienced by this work",
                            intensity_x,
                            [r["experienced_g_per_kwh"] for r in intensity],
                        ),
                        (
                            "Grid average of the same zones",
                            intensity_x,
                            [r["zone_avg_g_per_kwh"] for r in intensity],
                        ),
                    ],
                    title="Carbon intensity experienced against the zone average",
                    unit="g CO2e/kWh",
                ),
                "utilization": figures.lines_over_time(
                    [
                        ("GPU utilization", util_x, [r["avg_gpu_util_pct"] for r in util_rows]),
                        (
                            "Idle energy share",
                            util_x,
                            [
                                ((r["idle_energy_kwh"] or 0) / r["energy_kwh"] * 100)
                                if r["energy_kwh"]
                                else None
                                for r in util_rows
                            ],
                        ),
                    ],
                    title="Utilization and idle energy",
                    unit="%",
                ),
            },
        },
    )


@login_required
@reads_from_replica
def team(request: HttpRequest, slug: str) -> HttpResponse:
    membership = current_membership(request)
    subject = get_object_or_404(Team.objects.for_org(membership.organization), slug=slug)
    return _scope_page(request, team=subject, project=None, membership=membership)


@login_required
@reads_from_replica
def project(request: HttpRequest, slug: str) -> HttpResponse:
    membership = current_membership(request)
    subject = get_object_or_404(Project.objects.for_org(membership.organization), slug=slug)
    return _scope_page(request, team=None, project=subject, membership=membership)


@login_required
@reads_from_replica
def fleet(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    period, error = _period(request)
    state = sel.fleet_state(membership.organization)
    heat = sel.heatmap(sel.Scope(membership.organization), period)
    gpu_rows = [
        {
            "host": g["gpu"].host.hostname,
            "index": g["gpu"].index,
            "uuid": g["gpu"].uuid,
            "model": g["gpu"].name,
            "site": g["gpu"].host.site.name if g["gpu"].host.site else None,
            "power_w": g["power_w"],
            "util_pct": g["util_pct"],
            "idle": g["idle"],
            "last_seen_at": g["gpu"].last_seen_at,
        }
        for g in state["gpus"]
    ]
    return _page(
        request,
        "dashboards/fleet.html",
        membership=membership,
        period=period,
        error=error,
        tables={"gpus": lambda: gpu_rows},
        context={
            "state": state,
            "claim_window_minutes": settings.INGEST_GPU_CLAIM_WINDOW_MINUTES,
            "gpu_rows": gpu_rows,
            "figures": {
                "heatmap": figures.utilization_heatmap(
                    heat["hosts"], heat["cells"], title="Daily GPU utilization by host"
                ),
            },
        },
    )
