"""Pages. Thin: pick the organization and period, call selectors, hand rows to figures and
templates. Every table can be downloaded as CSV with ``?download=<table>``."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from ecoreport.core import figures
from ecoreport.core.db import reads_from_replica
from ecoreport.core.spreadsheets import spreadsheet_row
from ecoreport.dashboards import selectors as sel
from ecoreport.dashboards.periods import GROUPINGS, PRESETS, Period, PeriodError, parse_period
from ecoreport.fleet.models import Site
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
    colours = sel.chart_colours(membership.organization, "team")
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
                    colours=colours,
                ),
                "emissions-by-team": figures.stacked_over_time(
                    over_time,
                    by="team",
                    metric="co2e_kg",
                    title="Emissions by team (location-based)",
                    unit="kg CO2e",
                    order=[r["team"] for r in teams],
                    colours=colours,
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
    colours = sel.chart_colours(membership.organization, by)
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
                    colours=colours,
                ),
                "emissions-over-time": figures.stacked_over_time(
                    over_time,
                    by=by,
                    metric="co2e_kg",
                    title=f"Emissions by {by} (location-based)",
                    unit="kg CO2e",
                    order=[r[by] for r in breakdown],
                    colours=colours,
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
            "silent": g["silent"],
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


@login_required
@reads_from_replica
def fleet_live(request: HttpRequest) -> JsonResponse:
    """The fleet page's and the overview's live panel: power now, GPUs busy/idle/silent, and
    how long since each host's last sample. Polled by static/ecoreport/live.js."""
    membership = current_membership(request)
    live = sel.live_fleet(membership.organization)
    return JsonResponse(
        {
            **live,
            "refresh_s": settings.LIVE_REFRESH_S,
            "hosts": [
                {
                    **h,
                    "status": (
                        "reporting"
                        if not h["offline"]
                        else (
                            f"offline since {h['last_sample_at']:%Y-%m-%d %H:%M} UTC"
                            if h["last_sample_at"]
                            else "never reported"
                        )
                    ),
                }
                for h in live["hosts"]
            ],
        }
    )


@login_required
@reads_from_replica
def job(request: HttpRequest, job_id: str) -> HttpResponse:
    """A job's own page: its energy, GPU-hours, emissions, GPUs, timeline and the savings that
    apply to it. The biggest-jobs tables link here."""
    membership = current_membership(request)
    detail = sel.job_detail(membership.organization, job_id)
    if detail is None:
        raise Http404("No job with this id in your organization.")
    period, error = _period(request)
    hours = detail["hours"]
    x = [h["hour"] for h in hours]
    return _page(
        request,
        "dashboards/job.html",
        membership=membership,
        period=period,
        error=error,
        tables={"hours": lambda: hours, "gpus": lambda: detail["gpus"]},
        context={
            "job": detail,
            "figures": {
                "job-energy": figures.lines_over_time(
                    [("Energy", x, [h["energy_kwh"] for h in hours])],
                    title="Energy per hour",
                    unit="kWh",
                ),
                "job-gpus": figures.lines_over_time(
                    [("GPU-hours", x, [h["gpu_hours"] for h in hours])],
                    title="GPU time per hour",
                    unit="GPU-hours",
                ),
            },
        },
    )


@login_required
@reads_from_replica
def user(request: HttpRequest, name: str) -> HttpResponse:
    """The jobs one user (as the agent reported them: Slurm or process owner) ran in the period."""
    membership = current_membership(request)
    period, error = _period(request)
    jobs = sel.user_jobs(membership.organization, name, period)
    return _page(
        request,
        "dashboards/user.html",
        membership=membership,
        period=period,
        error=error,
        tables={"jobs": lambda: jobs},
        context={
            "user_name": name,
            "jobs": jobs,
            "totals": {
                "energy_kwh": sum(j["energy_kwh"] for j in jobs),
                "gpu_hours": sum(j["gpu_hours"] for j in jobs),
                "co2e_kg": sum(j["co2e_kg"] for j in jobs),
            },
        },
    )


CARBON_HISTORY = timedelta(days=7)
CARBON_AHEAD = timedelta(hours=48)


@login_required
@reads_from_replica
def carbon(request: HttpRequest) -> HttpResponse:
    """Each site's grid: hourly intensity of its zone over the last week and the forecast
    ahead, and the best time to run a job there (the best-window service)."""
    from ecoreport.savings.selectors import SavingsError
    from ecoreport.savings.windows import best_window

    membership = current_membership(request)
    organization = membership.organization
    now = timezone.now()
    sites = list(Site.objects.for_org(organization).order_by("name", "slug"))
    zones = sorted({s.grid_zone for s in sites})
    first = now.replace(minute=0, second=0, microsecond=0) - CARBON_HISTORY
    charts = []
    figs: dict[str, Any] = {}
    for i, zone in enumerate(zones):
        series = sel.zone_hourly_intensity(organization, zone, start=first, end=now + CARBON_AHEAD)
        lines = []
        for basis, label in (("location", "Grid average"), ("marginal", "Marginal")):
            for forecast, suffix in ((False, ""), (True, " (forecast)")):
                points = [p for p in series[basis] if p["forecast"] is forecast]
                if points:
                    lines.append(
                        (
                            f"{label}{suffix}",
                            [p["start"] for p in points],
                            [p["intensity_g_per_kwh"] for p in points],
                        )
                    )
        key = f"carbon-{i}"
        charts.append(
            {
                "zone": zone,
                "key": key,
                "sites": [s for s in sites if s.grid_zone == zone],
                "hours": sum(len(v) for v in series.values()),
                "forecast_until": max(
                    (p["start"] for v in series.values() for p in v if p["forecast"]),
                    default=None,
                ),
            }
        )
        if lines:
            figs[key] = figures.lines_over_time(
                lines, title=f"Hourly carbon intensity, {zone}", unit="g CO2e/kWh"
            )
    form = BestTimeForm(request.GET or None, zones=zones)
    answer, problem = None, None
    if form.is_bound and form.is_valid():
        try:
            answer = best_window(
                organization,
                zone=form.cleaned_data["zone"],
                duration_h=form.cleaned_data["duration_h"],
                within_h=form.cleaned_data["within_h"],
                now=now,
                energy_kwh=form.cleaned_data["energy_kwh"],
            )
        except SavingsError as error:
            problem = str(error)
    return render(
        request,
        "dashboards/carbon.html",
        {
            "membership": membership,
            "organization": organization,
            "is_admin": membership.has_role(Role.ADMIN),
            "period": None,
            "query": "",
            "teams_nav": sel.teams_of(organization),
            "charts": charts,
            "figures": figs,
            "form": form,
            "answer": answer,
            "problem": problem,
        },
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


class BestTimeForm(forms.Form):
    zone = forms.ChoiceField(label="Grid zone")
    duration_h = forms.IntegerField(
        label="Job length (hours)", min_value=1, max_value=168, initial=4
    )
    within_h = forms.IntegerField(
        label="Must finish within (hours from now)", min_value=1, max_value=168, initial=24
    )
    energy_kwh = forms.FloatField(
        label="Energy of the job (kWh, optional)", min_value=0, required=False
    )

    def __init__(self, *args: Any, zones: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["zone"].choices = [(z, z) for z in zones]


def _device_page(
    request: HttpRequest,
    membership: Membership,
    *,
    host: Any = None,
    gpu: Any = None,
) -> HttpResponse:
    period, error = _period(request)
    data = sel.device_usage(membership.organization, period, host=host, gpu=gpu)
    x = [r["period_start"] for r in data["series"]]
    subject = "GPU" if gpu is not None else "host"
    return _page(
        request,
        "dashboards/device.html",
        membership=membership,
        period=period,
        error=error,
        tables={"series": lambda: data["series"], "split": lambda: data["split"]},
        context={
            "host": host if host is not None else gpu.host,
            "gpu": gpu,
            "gpus": list(host.gpus.order_by("index")) if host is not None else [],
            "data": data,
            "subject": subject,
            "figures": {
                "device-energy": figures.lines_over_time(
                    [("Energy", x, [r["energy_kwh"] for r in data["series"]])],
                    title=f"Energy of the {subject}",
                    unit="kWh",
                ),
                "device-utilization": figures.lines_over_time(
                    [("GPU utilization", x, [r["avg_gpu_util_pct"] for r in data["series"]])],
                    title=f"Utilization of the {subject}",
                    unit="%",
                ),
            },
        },
    )


@login_required
@reads_from_replica
def host(request: HttpRequest, hostname: str) -> HttpResponse:
    """One host: its GPUs, energy and utilization over the period, who used it, its jobs."""
    from ecoreport.fleet.models import Host

    membership = current_membership(request)
    subject = get_object_or_404(
        Host.objects.for_org(membership.organization).select_related("site"), hostname=hostname
    )
    return _device_page(request, membership, host=subject)


@login_required
@reads_from_replica
def gpu(request: HttpRequest, uuid: str) -> HttpResponse:
    """One GPU: energy and utilization over the period, who used it, its jobs."""
    from ecoreport.fleet.models import Gpu

    membership = current_membership(request)
    subject = get_object_or_404(
        Gpu.objects.for_org(membership.organization).select_related("host", "host__site"),
        uuid=uuid,
    )
    return _device_page(request, membership, gpu=subject)
