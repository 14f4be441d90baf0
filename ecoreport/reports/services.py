"""Writes: request a report, build and issue it, issue the quarter's reports on schedule, and
re-issue when late data changes a period that was already reported.

Lifecycle: ``pending`` (row claimed with its version number) → ``generating`` (one worker won
the conditional UPDATE) → ``issued`` (files stored with their sha256; the row is frozen) or
``failed``. A report is never edited after issue: new data means version + 1 with a change note.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from ecoreport.accounting.models import HourlyUsage
from ecoreport.core.db import replica_reads
from ecoreport.core.periods import CalendarPeriod, last_complete_quarter, parse_period
from ecoreport.organizations.models import Membership, Organization, Role, Team
from ecoreport.reports import content as report_content
from ecoreport.reports.delivery import report_deliveries_create
from ecoreport.reports.models import FORMATS, Report, ReportFile
from ecoreport.reports.tables import fmt, render_csv, render_xlsx
from ecoreport.reports.totals import change_pct, data_totals

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def render(
    content: dict[str, Any], *, fmt_name: str, version: int | None = None, change_note: str = ""
) -> bytes:
    if fmt_name == "pdf":
        from ecoreport.reports.pdf import render_pdf

        return render_pdf(content, version=version, change_note=change_note)
    if fmt_name == "html":
        from ecoreport.reports.html import render_html

        return render_html(content, version=version, change_note=change_note)
    if fmt_name == "csv":
        return render_csv(content)
    if fmt_name == "xlsx":
        return render_xlsx(content)
    raise ValueError(f"unknown format {fmt_name!r}")


def _scope_reports(organization: Organization, team: Team | None, period: str) -> Any:
    qs = Report.objects.for_org(organization).filter(period=period)
    return qs.filter(team=team) if team is not None else qs.filter(team__isnull=True)


def latest_issued(organization: Organization, team: Team | None, period: str) -> Report | None:
    return (
        _scope_reports(organization, team, period)
        .filter(status=Report.Status.ISSUED)
        .order_by("-version")
        .first()
    )


def totals_differ(a: dict[str, float], b: dict[str, float]) -> bool:
    for key in ("energy_j", "gpu_seconds", "samples"):
        x, y = float(a.get(key) or 0.0), float(b.get(key) or 0.0)
        if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6):
            return True
    return False


def report_request(
    *,
    organization: Organization,
    team: Team | None = None,
    period: CalendarPeriod,
    trigger: str = Report.Trigger.ON_DEMAND,
    requested_by: Any = None,
    formats: list[str] | None = None,
) -> tuple[Report, bool]:
    """The report to answer with: a build already under way, the latest issued version if the
    data has not changed since (and it has the ``formats`` asked for; default all), or a new
    pending version. Returns (report, needs_build)."""
    wanted = [f for f in FORMATS if f in (formats or FORMATS)]
    scope = _scope_reports(organization, team, period.label)
    running = scope.filter(status__in=[Report.Status.PENDING, Report.Status.GENERATING]).first()
    if running is not None:
        return running, False
    latest = latest_issued(organization, team, period.label)
    totals = data_totals(organization, team, period)
    if (
        latest is not None
        and not totals_differ(totals, latest.data_totals)
        and set(wanted) <= set(latest.files.values_list("format", flat=True))
    ):
        return latest, False
    failed = scope.filter(status=Report.Status.FAILED).order_by("-version").first()
    if failed is not None and (latest is None or failed.version > latest.version):
        # Retry in place: a failed build issued nothing, so its version number is still free.
        Report.objects.filter(pk=failed.pk).update(
            status=Report.Status.PENDING,
            error="",
            trigger=trigger,
            requested_by=requested_by,
            formats=wanted,
        )
        failed.refresh_from_db()
        return failed, True
    version = (scope.aggregate(v=Max("version"))["v"] or 0) + 1
    try:
        with transaction.atomic():
            report = Report.objects.create(
                organization=organization,
                team=team,
                period=period.label,
                period_start=period.start,
                period_end=period.end,
                version=version,
                trigger=trigger,
                requested_by=requested_by,
                formats=wanted,
            )
    except IntegrityError:
        # Another request claimed this version first; answer with theirs.
        return scope.get(version=version), False
    log.info(
        "report.requested org=%s team=%s period=%s version=%s trigger=%s",
        organization.slug,
        team.slug if team else "-",
        period.label,
        version,
        trigger,
    )
    return report, True


def _change_note(previous: Report, headline: dict[str, Any], totals: dict[str, float]) -> str:
    parts = []
    labels = {k: (label, unit, digits) for k, label, unit, digits in report_content.HEADLINE}
    for key, (label, unit, digits) in labels.items():
        before, after = previous.headline.get(key), headline.get(key)
        if before is None and after is None:
            continue
        if (
            before is not None
            and after is not None
            and math.isclose(before, after, rel_tol=1e-9, abs_tol=10**-digits / 2)
        ):
            continue
        change = change_pct(after, before)
        parts.append(
            f"{label}: {fmt(before, digits)} → {fmt(after, digits)} {unit}"
            + (f" ({change:+.2f}%)" if change is not None else "")
        )
    new_samples = int(totals.get("samples", 0) - previous.data_totals.get("samples", 0))
    issued = previous.issued_at.strftime("%Y-%m-%d") if previous.issued_at else "?"
    note = (
        f"Version {previous.version + 1} replaces version {previous.version} (issued {issued}): "
        f"measurements for the period changed after issue ({new_samples:+,} sample records)."
    )
    return note + (" " + "; ".join(parts) + "." if parts else " The printed figures are unchanged.")


def content_sha256(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _recorded(progress: Progress, *, report_id: int) -> Progress:
    """``progress`` that also writes the step on the report, which its page shows while the
    build runs."""

    def tell(step: str) -> None:
        Report.objects.filter(pk=report_id).update(progress=step[:200])
        progress(step)

    return tell


def report_build(
    *, report_id: int, now: datetime | None = None, progress: Progress = _quiet
) -> Report | None:
    """Build, render and issue a pending report. Idempotent: a report another worker claimed,
    or one that is gone, is left alone."""
    claimed = Report.objects.filter(pk=report_id, status=Report.Status.PENDING).update(
        status=Report.Status.GENERATING
    )
    if not claimed:
        return None
    report = Report.objects.select_related("organization", "team").get(pk=report_id)
    now = now or timezone.now()
    period = parse_period(report.period)
    progress = _recorded(progress, report_id=report_id)
    try:
        progress(f"reading data for {report.period}")
        with replica_reads():  # a past period's data: the replica's lag does not matter
            content = report_content.build(
                organization=report.organization,
                team=report.team,
                period=period,
                generated_at=now,
                progress=progress,
            )
            totals = data_totals(report.organization, report.team, period)
        headline = {h["key"]: h["value"] for h in content["headline"]}
        previous = (
            _scope_reports(report.organization, report.team, report.period)
            .filter(status=Report.Status.ISSUED, version__lt=report.version)
            .order_by("-version")
            .first()
        )
        note = _change_note(previous, headline, totals) if previous else ""
        files = {}
        for name in _formats(report):
            progress(f"rendering {name}")
            files[name] = render(content, fmt_name=name, version=report.version, change_note=note)
    except Exception as error:
        Report.objects.filter(pk=report_id).update(
            status=Report.Status.FAILED, error=f"{type(error).__name__}: {error}"
        )
        log.exception("report.failed report_id=%s", report_id)
        raise
    method = content.get("methodology") or {}
    with transaction.atomic():
        for name, data in files.items():
            ReportFile.objects.create(
                organization=report.organization, report=report, format=name, content=data
            )
        report.status = Report.Status.ISSUED
        report.issued_at = now
        report.data_totals = totals
        report.headline = headline
        report.factor_snapshot = {
            k: method.get(k) for k in ("pue", "factors", "market", "fallbacks")
        }
        report.content_sha256 = content_sha256(content)
        report.change_note = note
        report.error = ""
        report.progress = ""
        report.save()
        if report.trigger in (Report.Trigger.SCHEDULE, Report.Trigger.LATE_DATA):
            transaction.on_commit(lambda: report_notify(report=report))
            report_deliveries_create(report=report)
    log.info(
        "report.issued report_id=%s org=%s period=%s version=%s sha256=%s",
        report.pk,
        report.organization.slug,
        report.period,
        report.version,
        report.content_sha256[:12],
    )
    return report


def _formats(report: Report) -> list[str]:
    """The formats asked for, in the standard order; all of them when none were named."""
    return [f for f in FORMATS if f in (report.formats or FORMATS)]


def report_generate(
    *,
    organization: Organization,
    team: Team | None = None,
    period: CalendarPeriod,
    trigger: str = Report.Trigger.ON_DEMAND,
    requested_by: Any = None,
    now: datetime | None = None,
    progress: Progress = _quiet,
) -> Report:
    """Request and build in this process (command, beat task): the up-to-date issued report."""
    report, needs_build = report_request(
        organization=organization,
        team=team,
        period=period,
        trigger=trigger,
        requested_by=requested_by,
    )
    if needs_build:
        built = report_build(report_id=report.pk, now=now, progress=progress)
        if built is not None:
            return built
    report.refresh_from_db()
    return report


def admin_emails(organization: Organization) -> list[str]:
    members = Membership.objects.for_org(organization).filter(role__in=[Role.ADMIN, Role.OWNER])
    return sorted({m.user.email for m in members.select_related("user") if m.user.email})


def report_link(report: Report) -> str:
    return f"{settings.REPORT_LINK_BASE_URL.rstrip('/')}/reports/{report.pk}/?org={report.organization.slug}"


def report_notify(*, report: Report) -> int:
    recipients = admin_emails(report.organization)
    if not recipients:
        return 0
    scope = f" ({report.scope_label})" if report.team_id else ""
    subject = f"[EcoReport] {report.organization.name}: sustainability report {report.period}{scope} v{report.version}"
    lines = [
        f"The {report.period} sustainability report of {report.organization.name}{scope} is issued "
        f"(version {report.version}).",
        "",
        f"Open or download it: {report_link(report)}",
    ]
    if report.change_note:
        lines += ["", "What changed:", report.change_note]
    sent = send_mail(subject, "\n".join(lines), None, recipients, fail_silently=True)
    log.info("report.notified report_id=%s recipients=%s", report.pk, len(recipients))
    return sent


def _orgs_with_data(period: CalendarPeriod) -> Iterable[Organization]:
    with_data = HourlyUsage.objects.filter(hour__gte=period.start, hour__lt=period.end).values(
        "organization_id"
    )
    return Organization.objects.filter(pk__in=with_data).order_by("slug")


def report_issue_due(*, now: datetime | None = None, progress: Progress = _quiet) -> list[Report]:
    """Each organization's report of the last complete quarter, once, ``REPORT_ISSUE_DELAY_DAYS``
    after it ended (late samples from agents that were offline have had time to arrive)."""
    now = now or timezone.now()
    period = last_complete_quarter(now)
    if now < period.end + timedelta(days=settings.REPORT_ISSUE_DELAY_DAYS):
        return []
    issued = []
    for org in _orgs_with_data(period):
        if _scope_reports(org, None, period.label).exists():
            continue  # issued (or being issued) already; late data is the other task's job
        try:
            issued.append(
                report_generate(
                    organization=org,
                    period=period,
                    trigger=Report.Trigger.SCHEDULE,
                    now=now,
                    progress=progress,
                )
            )
        except Exception:
            log.exception("report.schedule_failed org=%s period=%s", org.slug, period.label)
    return issued


def reports_reissue_late(*, now: datetime | None = None) -> list[Report]:
    """A new version of every recently issued report whose period's measurements changed."""
    now = now or timezone.now()
    window_start = now - timedelta(days=settings.REPORT_LATE_DATA_WINDOW_DAYS)
    newest = (
        Report.objects.filter(status=Report.Status.ISSUED, period_end__gte=window_start)
        .values("organization_id", "team_id", "period")
        .annotate(v=Max("version"))
    )
    out = []
    for row in newest:
        report = Report.objects.select_related("organization", "team").get(
            Q(team_id=row["team_id"]) if row["team_id"] else Q(team__isnull=True),
            organization_id=row["organization_id"],
            period=row["period"],
            version=row["v"],
        )
        period = parse_period(report.period)
        totals = data_totals(report.organization, report.team, period)
        if not totals_differ(totals, report.data_totals):
            continue
        try:
            out.append(
                report_generate(
                    organization=report.organization,
                    team=report.team,
                    period=period,
                    trigger=Report.Trigger.LATE_DATA,
                    now=now,
                )
            )
        except Exception:
            log.exception("report.reissue_failed report_id=%s", report.pk)
    return out
