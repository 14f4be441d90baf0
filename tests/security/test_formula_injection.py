"""CSV/XLSX formula injection: a label an agent sent (job id, team, project) that starts like a
formula is written as text in every download, and numbers stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook

from ecoreport.core.periods import parse_period
from ecoreport.core.spreadsheets import spreadsheet_cell
from ecoreport.organizations.models import Team
from ecoreport.reports import services
from ecoreport.reports.models import ReportFile
from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

EVIL = '=HYPERLINK("http://x","y")'
DAY = datetime(2026, 8, 3, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EVIL, "'" + EVIL),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("train-big", "train-big"),
        ("", ""),
        (-3.5, -3.5),
        (-7, -7),
        (None, None),
    ],
)
def test_cells_that_start_like_a_formula_become_text(value, expected):
    assert spreadsheet_cell(value) == expected


@pytest.fixture
def evil_data(cast, agent, post_batch):
    samples = [
        make_sample(
            start=DAY + timedelta(minutes=i),
            seconds=60,
            energy_j=30_000.0,
            attribution=[
                {"share": 1.0, "team": "nlp", "project": "llm", "job_id": EVIL, "user": "@ann"}
            ],
        )
        for i in range(3)
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 3


def test_dashboard_jobs_download_writes_a_formula_job_id_as_text(client, cast, evil_data):
    client.force_login(cast.member.user)
    query = "period=custom&start=2026-08-03&end=2026-08-03"
    for path in (f"/projects/llm/?{query}&download=jobs", f"/teams/nlp/?{query}&download=jobs"):
        response = client.get(path)
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.content.decode())))
        assert rows, path
        assert rows[0]["job_id"] == "'" + EVIL
        assert rows[0]["user"] == "'@ann"
        assert float(rows[0]["energy_kwh"]) > 0  # numbers are untouched
        assert not any(v.startswith(("=", "+", "@")) for row in rows for v in row.values())


def test_report_csv_and_xlsx_write_a_formula_team_name_as_text(cast, evil_data):
    from time_machine import travel

    # A team registered from an agent's label: the report's by-team table names it.
    Team.objects.filter(organization=cast.org, slug="nlp").update(slug=EVIL, name=EVIL)
    with travel(datetime(2026, 10, 20, 12, tzinfo=UTC), tick=False):
        report = services.report_generate(organization=cast.org, period=parse_period("2026-Q3"))
    data = bytes(ReportFile.objects.get(report=report, format="csv").content)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    by_team = [r for r in rows if r["table"] == "by_team"]
    assert "'" + EVIL in {r["row"] for r in by_team}
    assert not any(v.startswith("=") for r in rows for v in r.values())

    book = load_workbook(
        io.BytesIO(bytes(ReportFile.objects.get(report=report, format="xlsx").content))
    )
    cells = [c for ws in book.worksheets for row in ws.iter_rows() for c in row]
    assert "'" + EVIL in {c.value for c in cells}
    assert not any(c.data_type == "f" for c in cells)  # no formula anywhere
    numbers = [c.value for c in cells if isinstance(c.value, float)]
    assert numbers and all(isinstance(n, float) for n in numbers)
