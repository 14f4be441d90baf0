"""The fallback share has one definition (share of IT energy whose location factor was the
world-average fallback) and one function, read alike by the usage API and the report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.accounting.selectors import fallback_share_pct
from ecoreport.core.periods import parse_period
from ecoreport.reports import services
from ecoreport.reports.models import ReportFile
from tests.conftest import iso, make_batch, make_sample

pytestmark = pytest.mark.django_db

KWH = 3_600_000.0
HOUR = datetime(2026, 8, 4, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sums", "expected"),
    [
        ({"fallback_energy_j": 1.0, "energy_j": 4.0}, 25.0),
        ({"fallback_energy_j": 0.0, "energy_j": 4.0}, 0.0),
        ({"fallback_energy_j": 0.0, "energy_j": 0.0}, None),
        ({"energy_j": None}, None),
    ],
)
def test_fallback_share_is_fallback_it_energy_over_it_energy(sums, expected):
    assert fallback_share_pct(sums) == expected


def _csv_rows(report):
    data = bytes(ReportFile.objects.get(report=report, format="csv").content).decode()
    return list(csv.DictReader(io.StringIO(data)))


def test_api_and_report_give_the_same_fallback_share_when_pue_differs(
    cast, make_agent, post_batch, get_usage, after_q3
):
    """1 kWh at a zone without factors (PUE 2.0) and 1 kWh in France (PUE 1.0): half of the IT
    energy fell back. Weighted by facility energy it would read 66.7 %, which is what the report
    printed while the API said 50 %."""
    from ecoreport.carbon.sites import site_create

    nowhere = site_create(
        organization=cast.org, slug="dc-x", name="dc-x", grid_zone="XX-NOWHERE", pue="2.0"
    )
    fr = site_create(organization=cast.org, slug="dc-fr", name="dc-fr", grid_zone="FR", pue="1.0")
    for site, gpu in ((nowhere, "GPU-x"), (fr, "GPU-f")):
        agent = make_agent(cast.org, f"node-{site.slug}", site=site)
        body = make_batch(
            [make_sample(gpu=gpu, start=HOUR, seconds=3600, energy_j=KWH)], power_limit_w=1500.0
        )
        assert post_batch(agent.token, body).json()["accepted"] == 1

    totals = get_usage(
        cast.member_token, start=iso(HOUR), end=iso(HOUR + timedelta(hours=1))
    ).json()["totals"]
    assert totals["fallback_share_pct"] == pytest.approx(50.0)

    report = services.report_generate(organization=cast.org, period=parse_period("2026-Q3"))
    html = bytes(ReportFile.objects.get(report=report, format="html").content).decode()
    assert "50.0% of IT energy used the world-average factor" in html  # was "66.7% of facility"
    rows = _csv_rows(report)
    fallback = next(
        float(r["value"])
        for r in rows
        if r["table"] == "fallbacks" and r["row"].startswith("world-average")
    )
    assert fallback == pytest.approx(totals["fallback_share_pct"], rel=1e-12)
    # The factor rows (one fallback, one not) are shares of the same IT energy.
    shares = {
        r["row"]: float(r["value"])
        for r in rows
        if r["table"] == "factors" and r["column"] == "energy_share_pct"
    }
    assert shares == {"WORLD": pytest.approx(50.0), "FR": pytest.approx(50.0)}
