"""API and pages for reports. Thin: validate, call a service or a selector, shape the answer.
Every lookup starts from the caller's organization, so another organization's report is a 404."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ecoreport.core.api import ApiError, FileNegotiation, StrictSerializer, validated
from ecoreport.core.enqueue import enqueue_on_commit
from ecoreport.core.periods import CalendarPeriod, last_complete_quarter, parse_complete_period
from ecoreport.organizations.api import OrgApiView
from ecoreport.organizations.models import Membership, Organization, Role, Team
from ecoreport.organizations.selectors import current_membership, teams_of
from ecoreport.reports.content import HEADLINE
from ecoreport.reports.delivery import is_subscribed, report_subscription_set
from ecoreport.reports.models import CONTENT_TYPES, FORMATS, Report, ReportFile
from ecoreport.reports.services import report_request


def reports_for_org(organization: Organization) -> Any:
    return (
        Report.objects.for_org(organization)
        .select_related("team")
        .prefetch_related("files")
        .defer("headline", "factor_snapshot", "data_totals")
        .order_by("-period_start", "team__slug", "-version", "-id")
    )


def _files(report: Report) -> list[dict[str, Any]]:
    # Only the metadata: ``content`` stays in the database until someone downloads it.
    return [
        {
            "format": f.format,
            "sha256": f.sha256,
            "size_bytes": f.size_bytes,
            "url": f"/api/v1/reports/{report.pk}/download/{f.format}",
        }
        for f in ReportFile.objects.filter(report=report)
        .only("format", "sha256", "size_bytes")
        .order_by("format")
    ]


def report_json(report: Report) -> dict[str, Any]:
    return {
        "id": report.pk,
        "period": report.period,
        "period_start": report.period_start,
        "period_end": report.period_end,
        "team": report.team.slug if report.team else None,
        "version": report.version,
        "status": report.status,
        "trigger": report.trigger,
        "change_note": report.change_note,
        "content_sha256": report.content_sha256 or None,
        "error": report.error or None,
        "created_at": report.created_at,
        "issued_at": report.issued_at,
        "files": _files(report) if report.status == Report.Status.ISSUED else [],
    }


def _team(organization: Organization, slug: str | None) -> Team | None:
    if not slug:
        return None
    team = Team.objects.for_org(organization).filter(slug=slug).first()
    if team is None:
        raise ApiError(
            f"No team {slug!r} in this organization.",
            code="unknown_team",
            details={"team": [f"unknown team {slug!r}"]},
        )
    return team


class ReportCreate(StrictSerializer):
    period = serializers.CharField(help_text="2026-Q3, 2026-07 or 2026; a period that has ended")
    team = serializers.CharField(required=False, allow_blank=True, default="")


class ReportFileOut(serializers.Serializer):
    format = serializers.ChoiceField(choices=FORMATS)
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    url = serializers.CharField()


class ReportOut(serializers.Serializer):
    """The schema of ``report_json``."""

    id = serializers.IntegerField()
    period = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    team = serializers.CharField(allow_null=True)
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Report.Status.choices)
    trigger = serializers.ChoiceField(choices=Report.Trigger.choices)
    change_note = serializers.CharField(allow_blank=True)
    content_sha256 = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    issued_at = serializers.DateTimeField(allow_null=True)
    files = ReportFileOut(many=True)


class ReportList(serializers.Serializer):
    results = ReportOut(many=True)


class _ReportApiView(OrgApiView):
    # Unthrottled, as the reports endpoints were before this base view existed; giving them
    # the API's limit would change what they answer (and the schema's 429s).
    throttle_classes: ClassVar[list[Any]] = []


class ReportListView(_ReportApiView):
    @extend_schema(
        summary="Reports of the caller's organization, newest period first",
        operation_id="v1_reports_list",
        parameters=[
            OpenApiParameter("period", str, description="2026-Q3, 2026-07 or 2026"),
            OpenApiParameter("team", str, description="a team's slug; empty: organization-wide"),
        ],
        responses=ReportList,
    )
    def get(self, request: Request) -> Response:
        qs = reports_for_org(self.organization)
        if request.query_params.get("period"):
            qs = qs.filter(period=request.query_params["period"].upper())
        if "team" in request.query_params:
            team = _team(self.organization, request.query_params["team"])
            qs = qs.filter(team=team) if team else qs.filter(team__isnull=True)
        return Response({"results": [report_json(r) for r in qs[:200]]})

    @extend_schema(
        summary="Ask for a report; answers with the issued one if the data is unchanged",
        request=ReportCreate,
        responses={
            200: OpenApiResponse(ReportOut, description="issued, and the data is unchanged"),
            202: OpenApiResponse(ReportOut, description="queued or being built"),
        },
    )
    def post(self, request: Request) -> Response:
        params = validated(ReportCreate(data=request.data), "The request is not valid.")
        period = parse_complete_period(params["period"], now=timezone.now())
        team = _team(self.organization, params["team"])
        with transaction.atomic():
            report, needs_build = report_request(
                organization=self.organization,
                team=team,
                period=period,
                trigger=Report.Trigger.ON_DEMAND,
                requested_by=request.user if request.user.is_authenticated else None,
            )
            if needs_build:
                enqueue_on_commit("reports.build", report.pk)
        code = (
            status.HTTP_202_ACCEPTED
            if report.status != Report.Status.ISSUED
            else status.HTTP_200_OK
        )
        if needs_build:
            code = status.HTTP_202_ACCEPTED
        report.refresh_from_db()
        return Response(report_json(report), status=code)


class ReportDetailView(_ReportApiView):
    @extend_schema(
        summary="One report: status, version, change note and files", responses=ReportOut
    )
    def get(self, request: Request, pk: int) -> Response:
        report = get_object_or_404(reports_for_org(self.organization), pk=pk)
        return Response(report_json(report))


REPORT_HTML_CSP = (
    "sandbox allow-scripts allow-downloads; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)


def _file_response(report: Report, fmt: str, *, inline: bool = False) -> HttpResponse:
    file = (
        ReportFile.objects.for_org(report.organization_id).filter(report=report, format=fmt).first()
    )
    if file is None:
        raise Http404("No such file.")
    response = HttpResponse(bytes(file.content), content_type=CONTENT_TYPES[fmt])
    disposition = "inline" if inline else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{report.filename_stem}.{fmt}"'
    response["ETag"] = f'"{file.sha256}"'
    response["X-Content-SHA256"] = file.sha256
    # Issued files never change; a private cache may keep them.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    if fmt == "html":
        # The self-contained report carries plotly.js and its drawing code inline, which the
        # site's policy forbids. Viewed in the browser it runs sandboxed instead: an opaque
        # origin (no cookies, no same-origin requests) that may load nothing from anywhere.
        response["Content-Security-Policy"] = REPORT_HTML_CSP
    return response


class ReportDownloadView(_ReportApiView):
    content_negotiation_class = FileNegotiation

    @extend_schema(
        summary="Download an issued report in one format (pdf, html, csv, xlsx)",
        responses={
            **{(200, CONTENT_TYPES[fmt].split(";")[0]): OpenApiTypes.BINARY for fmt in FORMATS},
            400: OpenApiResponse(description="unknown format"),
            409: OpenApiResponse(description="the report is not issued yet"),
        },
    )
    def get(self, request: Request, pk: int, fmt: str) -> HttpResponse:
        report = get_object_or_404(reports_for_org(self.organization), pk=pk)
        if fmt not in FORMATS:
            raise ApiError(
                f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.", code="unknown_format"
            )
        if report.status != Report.Status.ISSUED:
            raise ApiError(
                f"The report is {report.status}, not issued yet.",
                code="not_ready",
                status_code=status.HTTP_409_CONFLICT,
            )
        return _file_response(report, fmt)


# --- Pages ------------------------------------------------------------------------------------


def _page_context(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    return {
        "membership": membership,
        "organization": membership.organization,
        "is_admin": membership.has_role(Role.ADMIN),
        "teams_nav": teams_of(membership.organization),
        "query": "",
    }


def _period_choices(now: Any) -> list[tuple[str, str]]:
    """The complete periods the form offers: the last four quarters, three months, last year."""
    quarter = last_complete_quarter(now)
    quarters = [quarter]
    for _ in range(3):
        quarters.append(quarters[-1].previous)
    month = CalendarPeriod.containing("month", now).previous
    months = [month, month.previous, month.previous.previous]
    year = CalendarPeriod.containing("year", now).previous
    return [(p.label, p.label) for p in (*quarters, *months, year)]


class GenerateReportForm(forms.Form):
    action = forms.CharField(widget=forms.HiddenInput, initial="generate")
    period = forms.ChoiceField(label="Period", help_text="A quarter, month or year that has ended.")
    scope = forms.ChoiceField(label="Scope")
    formats = forms.MultipleChoiceField(
        label="Formats",
        choices=[(f, f.upper()) for f in FORMATS],
        initial=list(FORMATS),
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, organization: Organization, now: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["period"].choices = _period_choices(now)
        self.fields["scope"].choices = [("", "The whole organization")] + [
            (t.slug, f"Team {t.name or t.slug}") for t in teams_of(organization)
        ]
        self.fields["scope"].required = False


@login_required
def reports_page(request: HttpRequest) -> HttpResponse:
    """The reports of the organization; for admins, a form that generates one now (the build
    runs in the background, its page shows progress); for every member, a subscription to each
    issued quarterly report by e-mail."""
    membership = current_membership(request)
    organization = membership.organization
    is_admin = membership.has_role(Role.ADMIN)
    now = timezone.now()
    form = GenerateReportForm(organization=organization, now=now)
    if request.method == "POST":
        action = request.POST.get("action")
        if action in ("subscribe", "unsubscribe"):
            report_subscription_set(membership=membership, subscribed=action == "subscribe")
            return redirect("reports-page")
        if action != "generate":
            return HttpResponse("Unknown action.", status=400)
        if not is_admin:
            raise PermissionDenied("Only organization admins can generate reports.")
        form = GenerateReportForm(request.POST, organization=organization, now=now)
        if form.is_valid():
            period = parse_complete_period(form.cleaned_data["period"], now=now)
            team = _team(organization, form.cleaned_data["scope"] or None)
            with transaction.atomic():
                report, needs_build = report_request(
                    organization=organization,
                    team=team,
                    period=period,
                    trigger=Report.Trigger.ON_DEMAND,
                    requested_by=request.user,
                    formats=form.cleaned_data["formats"],
                )
                if needs_build:
                    enqueue_on_commit("reports.build", report.pk)
            return redirect("report-page", pk=report.pk)
    reports = list(reports_for_org(organization)[:200])
    return render(
        request,
        "reports/list.html",
        {
            **_page_context(request, membership),
            "reports": reports,
            "suggested_period": last_complete_quarter(now).label,
            "formats": FORMATS,
            "form": form if is_admin else None,
            "subscribed": is_subscribed(membership),
            "has_email": bool(request.user.email),
        },
        status=400 if form.errors else 200,
    )


@login_required
def report_page(request: HttpRequest, pk: int) -> HttpResponse:
    membership = current_membership(request)
    report = get_object_or_404(reports_for_org(membership.organization), pk=pk)
    versions = (
        Report.objects.for_org(membership.organization)
        .filter(period=report.period, team=report.team)
        .order_by("-version")
    )
    return render(
        request,
        "reports/detail.html",
        {
            **_page_context(request, membership),
            "report": report,
            "files": _files(report) if report.status == Report.Status.ISSUED else [],
            "versions": versions,
            "preview": headline_preview(report),
            "running": report.status in (Report.Status.PENDING, Report.Status.GENERATING),
        },
    )


@login_required
def report_status_page(request: HttpRequest, pk: int) -> JsonResponse:
    """What the report's page polls while the build runs."""
    membership = current_membership(request)
    report = get_object_or_404(reports_for_org(membership.organization), pk=pk)
    return JsonResponse(
        {
            "id": report.pk,
            "status": report.status,
            "progress": report.progress,
            "error": report.error,
        }
    )


def headline_preview(report: Report) -> list[dict[str, Any]]:
    """The issued report's headline figures, as its first table prints them."""
    if report.status != Report.Status.ISSUED:
        return []
    return [
        {"label": label, "unit": unit, "digits": digits, "value": report.headline.get(key)}
        for key, label, unit, digits in HEADLINE
        if key in report.headline
    ]


@login_required
def report_file_page(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    membership = current_membership(request)
    report = get_object_or_404(
        reports_for_org(membership.organization), pk=pk, status=Report.Status.ISSUED
    )
    if fmt not in FORMATS:
        raise Http404("Unknown format.")
    return _file_response(
        report, fmt, inline=fmt in ("html", "pdf") and request.GET.get("view") == "1"
    )
