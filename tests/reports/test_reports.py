"""Reports: the numbers in every format equal the usage API; issued reports are immutable; late
data makes a new version; only members download; the beat issues once per quarter."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import CommandError, call_command
from django.db.models import F
from pypdf import PdfReader

from ecoreport.accounting.models import HourlyUsage
from ecoreport.core.periods import parse_period
from ecoreport.organizations.models import Team
from ecoreport.reports import services
from ecoreport.reports.content import HAS_EMISSIONS
from ecoreport.reports.models import ImmutableReportError, Report, ReportFile
from ecoreport.reports.tables import fmt
from tests.reports.conftest import Q3_END, Q3_START, q3_batch

UTC = UTC
pytestmark = pytest.mark.django_db

Q3 = parse_period("2026-Q3")


def _csv_values(data: bytes, table: str) -> dict[tuple[str, str], float]:
    out = {}
    for row in csv.DictReader(io.StringIO(data.decode())):
        if row["table"] == table:
            with contextlib.suppress(ValueError):  # text cells (names, statuses)
                out[(row["row"], row["column"])] = float(row["value"])
    return out


def _pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _file(report: Report, fmt_name: str) -> bytes:
    return bytes(ReportFile.objects.get(report=report, format=fmt_name).content)


def test_totals_in_every_format_equal_the_usage_api(cast, q3_data, get_usage, after_q3):
    api = get_usage(cast.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat()).json()[
        "totals"
    ]
    assert api["energy_kwh"] > 0
    report = services.report_generate(organization=cast.org, period=Q3)
    assert report.status == Report.Status.ISSUED and report.version == 1

    headline = _csv_values(_file(report, "csv"), "headline")
    keys = ["energy_kwh", "gpu_hours"] + (
        ["facility_energy_kwh", "co2e_kg", "co2e_market_kg"]
        if HAS_EMISSIONS and "co2e_kg" in api
        else []
    )
    labels = {
        "energy_kwh": "IT energy",
        "gpu_hours": "GPU-hours",
        "facility_energy_kwh": "Facility energy (IT x PUE)",
        "co2e_kg": "Emissions, location-based",
        "co2e_market_kg": "Emissions, market-based",
    }
    html = _file(report, "html").decode()
    pdf = _pdf_text(_file(report, "pdf"))
    for key in keys:
        assert math.isclose(headline[(labels[key], "value")], api[key], rel_tol=1e-12), key
        assert fmt(api[key]) in html, key
        assert fmt(api[key]) in pdf, key
    # Per team too: the CSV's team rows are the API's grouped rows.
    by_team = get_usage(
        cast.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat(), group_by="team"
    ).json()["rows"]
    csv_teams = _csv_values(_file(report, "csv"), "by_team")
    for row in by_team:
        name = row["team"] or "(unattributed)"
        assert math.isclose(csv_teams[(name, "energy_kwh")], row["energy_kwh"], rel_tol=1e-12)
        assert fmt(row["energy_kwh"]) in pdf
    assert "Methodology" in pdf and "Data quality" in pdf and "Target compliance" in pdf
    assert "plotly" in html.lower() and 'data-figure="energy-by-team"' in html
    assert "cdn" not in html.split("<script>")[0].lower()  # self-contained: no external script


def test_team_report_equals_the_teams_usage_row(cast, q3_data, get_usage, after_q3):
    nlp = Team.objects.get(organization=cast.org, slug="nlp")
    rows = get_usage(
        cast.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat(), group_by="team"
    ).json()["rows"]
    expected = next(r for r in rows if r["team"] == "nlp")
    report = services.report_generate(organization=cast.org, team=nlp, period=Q3)
    headline = _csv_values(_file(report, "csv"), "headline")
    assert math.isclose(headline[("IT energy", "value")], expected["energy_kwh"], rel_tol=1e-12)
    assert fmt(expected["energy_kwh"]) in _pdf_text(_file(report, "pdf"))


def test_issued_report_does_not_change_when_factors_change(cast, q3_data, after_q3):
    report = services.report_generate(organization=cast.org, period=Q3)
    before = {f.format: (f.sha256, bytes(f.content)) for f in report.files.all()}
    snapshot = report.factor_snapshot
    if HAS_EMISSIONS:
        # What emissions_recompute does after a factor or PUE change: rewrite the hours' figures.
        HourlyUsage.objects.update(co2e_g=F("co2e_g") * 3 + 1000, intensity_g_per_kwh=999.0)
    again = services.report_generate(organization=cast.org, period=Q3)
    assert again.pk == report.pk and again.version == 1  # measurements unchanged: same report
    report.refresh_from_db()
    assert {f.format: (f.sha256, bytes(f.content)) for f in report.files.all()} == before
    assert report.factor_snapshot == snapshot
    with pytest.raises(ImmutableReportError):
        report.change_note = "edited"
        report.save()
    with pytest.raises(ImmutableReportError):
        file = report.files.first()
        file.content = b"tampered"
        file.save()


def test_late_data_makes_version_two_with_a_change_note(
    cast, q3_data, post_batch, after_q3, django_capture_on_commit_callbacks
):
    cast.owner.user.email = "olivia@example.com"
    cast.owner.user.save()
    v1 = services.report_generate(organization=cast.org, period=Q3, trigger=Report.Trigger.SCHEDULE)
    v1_pdf = _file(v1, "pdf")
    mail.outbox.clear()
    assert services.reports_reissue_late() == []  # nothing new yet

    response = post_batch(q3_data.token, q3_batch(day=20, minutes=12, energy_j=38_000.0))
    assert response.json()["accepted"] == 24
    with django_capture_on_commit_callbacks(execute=True):  # the e-mail goes after commit
        reissued = services.reports_reissue_late()
    assert [r.version for r in reissued] == [2]
    v2 = reissued[0]
    assert v2.trigger == Report.Trigger.LATE_DATA and v2.status == Report.Status.ISSUED
    assert "replaces version 1" in v2.change_note and "IT energy:" in v2.change_note
    assert "GPU-hours: 1.00 → 1.40 h" in v2.change_note  # 24 more GPU-minutes
    assert v2.data_totals["energy_j"] > v1.data_totals["energy_j"]
    assert _file(v1, "pdf") == v1_pdf  # version 1 stays as issued
    assert "What changed" in _pdf_text(_file(v2, "pdf"))
    assert "replaces version 1" in _file(v2, "html").decode()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["olivia@example.com"]
    assert f"/reports/{v2.pk}/" in mail.outbox[0].body and "IT energy" in mail.outbox[0].body
    assert services.reports_reissue_late() == []  # once per change


def test_only_members_can_see_and_download(cast, q3_data, client, get_report_api, after_q3):
    report = services.report_generate(organization=cast.org, period=Q3)
    listed = get_report_api(cast.member_token).json()["results"]
    assert [r["id"] for r in listed] == [report.pk]
    assert {f["format"] for f in listed[0]["files"]} == {"pdf", "html", "csv", "xlsx"}
    for fmt_name, prefix in (
        ("pdf", b"%PDF"),
        ("html", b"<!doctype html>"),
        ("csv", b"organization,"),
        ("xlsx", b"PK"),
    ):
        response = get_report_api(cast.member_token, f"/{report.pk}/download/{fmt_name}")
        assert response.status_code == 200
        assert response.content.startswith(prefix)
        assert (
            response["X-Content-SHA256"]
            == ReportFile.objects.get(report=report, format=fmt_name).sha256
        )
    # A download client that asks for the file's type gets the file, not a 406.
    response = client.get(
        f"/api/v1/reports/{report.pk}/download/pdf",
        HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
        HTTP_ACCEPT="application/pdf",
    )
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    # The outsider's organization has no such report: 404, not 403 (nothing hints it exists).
    assert get_report_api(cast.outsider_token).json()["results"] == []
    assert get_report_api(cast.outsider_token, f"/{report.pk}").status_code == 404
    assert get_report_api(cast.outsider_token, f"/{report.pk}/download/pdf").status_code == 404
    assert client.get(f"/api/v1/reports/{report.pk}/download/pdf").status_code in (401, 403)
    # Pages: members list and download; the outsider gets 404.
    client.force_login(cast.member.user)
    page = client.get("/reports/")
    assert page.status_code == 200 and f"/reports/{report.pk}/pdf" in page.content.decode()
    assert client.get(f"/reports/{report.pk}/pdf").content.startswith(b"%PDF")
    assert client.get(f"/reports/{report.pk}/").status_code == 200
    client.force_login(cast.outsider.user)
    assert client.get(f"/reports/{report.pk}/pdf").status_code == 404
    assert client.get(f"/reports/{report.pk}/").status_code == 404


def test_create_on_demand_builds_once_and_reuses(
    cast, q3_data, client, after_q3, django_capture_on_commit_callbacks
):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {cast.member_token}"}
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(
            "/api/v1/reports", {"period": "2026-Q3"}, content_type="application/json", **headers
        )
    assert first.status_code == 202, first.content
    body = first.json()
    # The eager test worker has built it; the status endpoint says issued.
    status = client.get(f"/api/v1/reports/{body['id']}", **headers).json()
    assert status["status"] == "issued" and status["version"] == 1
    again = client.post(
        "/api/v1/reports", {"period": "2026-Q3"}, content_type="application/json", **headers
    )
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    team = client.post(
        "/api/v1/reports",
        {"period": "2026-Q3", "team": "nlp"},
        content_type="application/json",
        **headers,
    )
    assert team.status_code == 202 and team.json()["team"] == "nlp"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"period": "2026-Q5"}, "invalid_period"),
        ({"period": "Q3"}, "invalid_period"),
        ({"period": "2027-Q1"}, "invalid_period"),
        ({"period": "2026-Q4"}, "invalid_period"),
        ({"period": "2026-Q3", "team": "nope"}, "unknown_team"),
        ({}, "invalid"),
    ],
)
def test_bad_requests_get_a_clear_error(cast, client, after_q3, payload, code):
    response = client.post(
        "/api/v1/reports",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not Report.objects.exists()


def test_unknown_format_and_not_ready(cast, q3_data, get_report_api, after_q3):
    report = services.report_generate(organization=cast.org, period=Q3)
    response = get_report_api(cast.member_token, f"/{report.pk}/download/docx")
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_format"
    pending = Report.objects.create(
        organization=cast.org,
        period="2026-Q2",
        period_start=Q3_START - timedelta(days=91),
        period_end=Q3_START,
        version=1,
    )
    response = get_report_api(cast.member_token, f"/{pending.pk}/download/pdf")
    assert response.status_code == 409


def test_a_period_without_data_makes_a_report_that_says_so(cast, after_q3):
    report = services.report_generate(organization=cast.org, period=parse_period("2026-Q2"))
    assert report.status == Report.Status.ISSUED
    assert "No data" in _pdf_text(_file(report, "pdf"))
    assert "No data" in _file(report, "html").decode()
    assert _csv_values(_file(report, "csv"), "headline")[("IT energy", "value")] == 0.0


def test_beat_issues_each_organizations_report_once_per_quarter(
    cast, make_agent, post_batch, settings
):
    settings.REPORT_ISSUE_DELAY_DAYS = 7
    post_batch(make_agent(cast.org).token, q3_batch())
    post_batch(make_agent(cast.other_org, hostname="globex-01").token, q3_batch(minutes=6))
    from ecoreport.reports.tasks import issue_due
    from ecoreport.schedules import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["reports-issue-due"]
    assert entry["task"] == issue_due.name and entry["options"]["expires"]
    with time_machine.travel(datetime(2026, 10, 5, 6, 30, tzinfo=UTC), tick=False):
        assert issue_due() == 0  # too early: late samples may still arrive
    with time_machine.travel(datetime(2026, 10, 8, 6, 30, tzinfo=UTC), tick=False):
        assert issue_due() == 2
    for day in (9, 10, 30):
        with time_machine.travel(datetime(2026, 10, day, 6, 30, tzinfo=UTC), tick=False):
            assert issue_due() == 0
    reports = Report.objects.order_by("organization__slug")
    assert [(r.organization.slug, r.period, r.version, r.trigger) for r in reports] == [
        ("acme", "2026-Q3", 1, "schedule"),
        ("globex", "2026-Q3", 1, "schedule"),
    ]
    with time_machine.travel(datetime(2027, 1, 8, 6, 30, tzinfo=UTC), tick=False):
        assert issue_due() == 0  # Q4 had no data: nothing to issue


def test_generate_report_command(cast, q3_data, tmp_path, after_q3):
    out = io.StringIO()
    call_command(
        "generate_report",
        "--org",
        "acme",
        "--period",
        "2026-Q3",
        "--format",
        "pdf,html,csv,xlsx",
        "--out",
        str(tmp_path),
        stdout=out,
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ecoreport-acme-2026-Q3-v1.{f}" for f in ("csv", "html", "pdf", "xlsx")]
    assert "rendering pdf" in out.getvalue() and "version 1" in out.getvalue()
    call_command(
        "generate_report",
        "--org",
        "acme",
        "--team",
        "nlp",
        "--period",
        "2026-Q3",
        "--out",
        str(tmp_path),
        stdout=io.StringIO(),
    )
    assert (tmp_path / "ecoreport-acme-nlp-2026-Q3-v1.pdf").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--period", "2026-Q3"], "No organization"),
        (["--org", "acme", "--team", "nope", "--period", "2026-Q3"], "No team"),
        (["--org", "acme", "--period", "2026-Q9"], "not a period"),
        (["--org", "acme", "--period", "2030-Q1"], "future"),
        (["--org", "acme", "--period", "2026-Q3", "--format", "pdf,docx"], "Unknown format"),
    ],
)
def test_generate_report_command_bad_input(cast, tmp_path, after_q3, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("generate_report", *args, "--out", str(tmp_path), stdout=io.StringIO())
