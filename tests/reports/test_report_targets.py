"""Target compliance in a report is evaluated for the report's own period from the rollups,
whether or not the hourly evaluation ever ran."""

from __future__ import annotations

import csv
import io

import pytest

from ecoreport.core.periods import parse_period
from ecoreport.policies.models import TargetEvaluation
from ecoreport.policies.services import target_create
from ecoreport.reports import services
from ecoreport.reports.models import ReportFile
from ecoreport.reports.targets import verdict
from tests.reports.conftest import Q3_END, Q3_START

pytestmark = pytest.mark.django_db

Q3 = parse_period("2026-Q3")


def _targets(report):
    data = bytes(ReportFile.objects.get(report=report, format="csv").content).decode()
    out: dict[str, list[dict[str, str]]] = {}
    for r in csv.DictReader(io.StringIO(data)):
        if r["table"] == "targets":
            out.setdefault(r["row"], []).append(r)
    return out


def _cells(rows, column):
    return [r["value"] for r in rows if r["column"] == column]


@pytest.mark.parametrize(
    ("status", "final", "expected"),
    [
        ("on_track", True, "pass"),
        ("breached", True, "fail"),
        ("on_track", False, "on track"),
        ("at_risk", False, "at risk"),
        ("breached", False, "fail"),
        ("no_data", True, "no data"),
    ],
)
def test_verdict(status, final, expected):
    assert verdict(status, final=final) == expected


def test_targets_without_stored_evaluations_get_a_value_and_a_verdict(
    cast, q3_data, get_usage, after_q3
):
    energy_kwh = get_usage(
        cast.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat()
    ).json()["totals"]["energy_kwh"]
    assert energy_kwh > 0
    common = {"metric": "energy_kwh", "comparator": "at_most", "period": "quarter"}
    target_create(organization=cast.org, name="Energy cap (generous)", threshold=100.0, **common)
    target_create(
        organization=cast.org, name="Energy cap (tight)", threshold=energy_kwh / 2, **common
    )
    target_create(
        organization=cast.org,
        name="Monthly cap",
        metric="energy_kwh",
        comparator="at_most",
        period="month",
        threshold=100.0,
    )
    assert not TargetEvaluation.objects.exists()  # the hourly evaluation never ran

    report = services.report_generate(organization=cast.org, period=Q3)
    rows = _targets(report)
    generous, tight = rows["Energy cap (generous)"], rows["Energy cap (tight)"]
    assert [float(v) for v in _cells(generous, "value")] == [pytest.approx(energy_kwh, rel=1e-12)]
    assert _cells(generous, "result") == ["pass"]
    assert _cells(generous, "target_period") == ["2026-Q3"]
    assert _cells(tight, "result") == ["fail"]
    assert [float(v) for v in _cells(tight, "threshold")] == [pytest.approx(energy_kwh / 2)]
    # A monthly target in a quarterly report: each of its months, August alone measured.
    monthly = rows["Monthly cap"]
    assert _cells(monthly, "target_period") == ["2026-07", "2026-08", "2026-09"]
    assert _cells(monthly, "result") == ["no data", "pass", "no data"]
    assert float(_cells(monthly, "value")[1]) == pytest.approx(energy_kwh, rel=1e-12)

    html = bytes(ReportFile.objects.get(report=report, format="html").content).decode()
    assert "not evaluated" not in html
    assert not TargetEvaluation.objects.exists()  # the report evaluates; it stores nothing
    # People read labels; the CSV keeps the keys auditors filter on.
    compliance = html[html.index("Target compliance") :]
    compliance = compliance[: compliance.index("</table>")]
    assert "<td>Organization</td><td>IT energy</td><td>2026-Q3</td><td>at most</td>" in compliance
    for stored in ("at_most", "energy_kwh", ">org<"):
        assert stored not in compliance
    assert _cells(generous, "comparator") == ["at_most"]
    assert _cells(generous, "metric") == ["energy_kwh"]
    assert _cells(generous, "scope") == ["org"]


def test_a_team_report_evaluates_the_teams_target_on_the_teams_usage(
    cast, q3_data, get_usage, after_q3
):
    from ecoreport.organizations.models import Team

    nlp = Team.objects.get(organization=cast.org, slug="nlp")
    rows = get_usage(
        cast.member_token, start=Q3_START.isoformat(), end=Q3_END.isoformat(), group_by="team"
    ).json()["rows"]
    nlp_kwh = next(r for r in rows if r["team"] == "nlp")["energy_kwh"]
    target_create(
        organization=cast.org,
        name="NLP cap",
        scope_kind="team",
        team=nlp,
        metric="energy_kwh",
        comparator="at_most",
        period="quarter",
        threshold=nlp_kwh * 0.99,
    )
    report = services.report_generate(organization=cast.org, team=nlp, period=Q3)
    nlp_rows = _targets(report)["NLP cap"]
    assert float(_cells(nlp_rows, "value")[0]) == pytest.approx(nlp_kwh, rel=1e-12)
    assert _cells(nlp_rows, "result") == ["fail"]
