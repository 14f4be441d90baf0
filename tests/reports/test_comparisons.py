"""Comparisons against earlier periods state the coverage of both periods and are marked "not
comparable" when either falls below REPORT_COMPARISON_MIN_COVERAGE_PCT, in every format."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from pypdf import PdfReader

from ecoreport.core.periods import parse_period
from ecoreport.reports import services
from ecoreport.reports.coverage import Coverage, comparison
from ecoreport.reports.models import ReportFile
from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

KWH = 3_600_000.0
AUGUST = parse_period("2026-08")
JULY_START = datetime(2026, 7, 1, tzinfo=UTC)


def _hourly(gpu: str, start: datetime, hours: int, energy_j: float = KWH) -> list[dict]:
    return [
        make_sample(gpu=gpu, start=start + timedelta(hours=h), seconds=3600, energy_j=energy_j)
        for h in range(hours)
    ]


def _post(post_batch, agent, samples, gpus=None):
    response = post_batch(agent.token, make_batch(samples, gpus=gpus, power_limit_w=1500.0))
    assert response.status_code == 200 and response.json()["accepted"] == len(samples)


def _rows(report, fmt_name="csv"):
    data = bytes(ReportFile.objects.get(report=report, format=fmt_name).content)
    return list(csv.DictReader(io.StringIO(data.decode())))


def _cell(rows, table, row, column):
    return next(
        r["value"] for r in rows if (r["table"], r["row"], r["column"]) == (table, row, column)
    )


def _pdf(report):
    data = bytes(ReportFile.objects.get(report=report, format="pdf").content)
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


@pytest.mark.parametrize(
    ("now", "before", "comparable"),
    [
        ((744, 744, 2, 2), (744, 744, 2, 2), True),
        ((744, 670, 2, 2), (744, 744, 2, 2), True),  # 90.05 % of hours: at the bar
        ((744, 669, 2, 2), (744, 744, 2, 2), False),  # 89.9 %
        ((744, 744, 2, 2), (744, 168, 2, 2), False),  # the previous period started late
        ((744, 744, 10, 9), (744, 744, 10, 10), True),  # 90 % of GPUs
        ((744, 744, 10, 8), (744, 744, 10, 10), False),  # a fifth of the fleet was silent
        ((744, 744, 2, 2), (744, 0, 0, 0), False),  # nothing measured before
    ],
)
def test_comparison_needs_both_periods_covered(now, before, comparable):
    a = Coverage("2026-08", *now)
    b = Coverage("2026-07", *before)
    verdict = comparison(a, b, min_pct=90.0)
    assert verdict["comparable"] is comparable
    assert bool(verdict["reason"]) is not comparable


def test_a_partly_measured_previous_period_is_marked_not_comparable_in_every_format(
    cast, agent, post_batch, after_q3
):
    """August measured every hour; July only in its last week (168 of 744 hours). The change
    against July (+342.9 % of energy) says nothing about the work and is not printed."""
    _post(post_batch, agent, _hourly("GPU-0", datetime(2026, 7, 25, tzinfo=UTC), 168))
    _post(post_batch, agent, _hourly("GPU-0", AUGUST.start, 744))
    report = services.report_generate(organization=cast.org, period=AUGUST)

    rows = _rows(report)
    assert _cell(rows, "headline", "IT energy", "previous") == repr(168.0)
    assert _cell(rows, "headline", "IT energy", "change_previous_pct") == ""
    assert _cell(rows, "headline", "IT energy", "previous_comparison") == "not comparable"
    assert _cell(rows, "headline", "IT energy", "last_year_comparison") == "not comparable"
    # The coverage of both periods, as numbers an auditor can check.
    assert float(_cell(rows, "coverage", "2026-08", "hours_with_data_pct")) == 100.0
    assert float(_cell(rows, "coverage", "2026-07", "hours_with_data")) == 168
    assert float(_cell(rows, "coverage", "2026-07", "hours_with_data_pct")) == pytest.approx(
        168 / 744 * 100
    )
    assert float(_cell(rows, "coverage", "2026-07", "gpus_reporting_pct")) == 100.0
    assert _cell(rows, "coverage", "2026-07", "comparison") == "not comparable"

    reason = "2026-07 had data in 22.6% of hours and from 100.0% of the GPUs known then"
    html = bytes(ReportFile.objects.get(report=report, format="html").content).decode()
    assert "+342.9%" not in html and "vs 2026-07: not comparable" in html
    assert reason in html
    pdf = " ".join(_pdf(report).split())
    assert "+342.9%" not in pdf and "not comparable" in pdf
    assert reason in pdf


def test_fully_measured_periods_are_compared(cast, agent, post_batch, after_q3):
    _post(post_batch, agent, _hourly("GPU-0", JULY_START, 744, energy_j=KWH))
    _post(post_batch, agent, _hourly("GPU-0", AUGUST.start, 744, energy_j=1.5 * KWH))
    report = services.report_generate(organization=cast.org, period=AUGUST)
    rows = _rows(report)
    assert float(_cell(rows, "headline", "IT energy", "change_previous_pct")) == pytest.approx(50.0)
    assert _cell(rows, "headline", "IT energy", "previous_comparison") == "comparable"
    # No data a year before: that comparison alone is refused.
    assert _cell(rows, "headline", "IT energy", "last_year_comparison") == "not comparable"
    html = bytes(ReportFile.objects.get(report=report, format="html").content).decode()
    assert "vs 2026-07: +50.0%" in html
    assert "vs 2025-08: not comparable, 2025-08 has no data" in html


def test_a_silent_part_of_the_fleet_makes_a_period_not_comparable(
    cast, agent, post_batch, after_q3
):
    """July: one of two GPUs known then reported (50 %), every hour. Hours alone would pass."""
    with time_machine.travel(JULY_START + timedelta(days=9, minutes=5), tick=False):
        # The agent's inventory lists both GPUs in July; only GPU-0 sends samples.
        _post(post_batch, agent, _hourly("GPU-0", JULY_START, 216), gpus=["GPU-0", "GPU-1"])
    _post(post_batch, agent, _hourly("GPU-0", JULY_START + timedelta(hours=216), 528))
    _post(
        post_batch,
        agent,
        _hourly("GPU-0", AUGUST.start, 744) + _hourly("GPU-1", AUGUST.start, 744),
    )
    report = services.report_generate(organization=cast.org, period=AUGUST)
    rows = _rows(report)
    assert float(_cell(rows, "coverage", "2026-07", "hours_with_data_pct")) == 100.0
    assert float(_cell(rows, "coverage", "2026-07", "gpus_reporting_pct")) == 50.0
    assert _cell(rows, "headline", "IT energy", "previous_comparison") == "not comparable"


def test_the_coverage_bar_is_a_setting(cast, agent, post_batch, after_q3, settings):
    settings.REPORT_COMPARISON_MIN_COVERAGE_PCT = 20.0
    _post(post_batch, agent, _hourly("GPU-0", datetime(2026, 7, 25, tzinfo=UTC), 168))
    _post(post_batch, agent, _hourly("GPU-0", AUGUST.start, 744))
    report = services.report_generate(organization=cast.org, period=AUGUST)
    rows = _rows(report)
    assert _cell(rows, "headline", "IT energy", "previous_comparison") == "comparable"
    assert float(_cell(rows, "headline", "IT energy", "change_previous_pct")) == pytest.approx(
        (744 - 168) / 168 * 100
    )
