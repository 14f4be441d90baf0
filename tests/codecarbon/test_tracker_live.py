"""The real CodeCarbon tracker (3.3.2, unmodified) reports into a live EcoReport: gunicorn and a
Celery worker as separate processes. EcoReport's usage for the project must equal the tracker's
own final energy within 1 %.

On a machine without a GPU the tracker models the CPU and RAM itself; that is what it reports.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import iso

pytestmark = [
    pytest.mark.e2e,
    # The issue's configuration uses save_to_api=True, which 3.3.2 calls deprecated.
    pytest.mark.filterwarnings("ignore:The save_to_\\* parameters are deprecated"),
]


def _busy(seconds: float) -> int:
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        n += sum(i * i for i in range(1000))
    return n


def _work_until_posted(deltas: int, timeout: float = 15.0) -> None:
    """CPU work until the server holds ``deltas`` of the tracker's deltas, then 1.4 s more.

    The tracker drops a final delta shorter than 1 s instead of sending it (``duration < 1`` in
    its ApiClient), and its own total would then exceed what any server received. Stopping
    1.4 s after a periodic upload (every 2 s here) makes the final delta about 1.4 s long.
    """
    from ecoreport.codecarbon.models import Emission

    deadline = time.monotonic() + timeout
    while Emission.objects.count() < deltas:
        assert time.monotonic() < deadline, "the tracker posted no deltas"
        _busy(0.05)
    _busy(1.4)


def _project_usage(stack, token: str, start: datetime) -> dict:
    status, body = stack.request(
        "GET",
        f"/api/v1/usage?start={iso(start)}&end={iso(datetime.now(UTC) + timedelta(hours=1))}"
        "&group_by=project,source",
        token=token,
    )
    assert status == 200, body
    return {(r["project"], r["source"]): r for r in body["rows"]}


def test_an_unmodified_codecarbon_tracker_reports_into_ecoreport(live_stack, tmp_path):
    from codecarbon import OfflineEmissionsTracker

    from ecoreport.carbon.sites import site_create
    from ecoreport.codecarbon.services import token_issue
    from ecoreport.organizations.models import Project, Team
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="cc-e2e", name="CodeCarbon end to end")
    site = site_create(organization=org, slug="dc-fr", name="Paris", grid_zone="FR", pue="1.2")
    team = Team.objects.create(organization=org, slug="vision", name="Vision")
    project = Project.objects.create(organization=org, slug="detector", name="Detector", team=team)
    _, cc_token = token_issue(team=team, project=project, site=site)
    api_token = api_token_issue(
        membership=membership_ensure(organization=org, username="ana", role="viewer")
    )
    began = datetime.now(UTC) - timedelta(hours=1)

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        save_to_api=True,
        save_to_file=False,
        api_endpoint=f"{live_stack.url}/api/codecarbon",
        api_key=cc_token,
        experiment_id=str(uuid.uuid4()),
        measure_power_secs=1,
        api_call_interval=2,
        output_dir=str(tmp_path),
        log_level=logging.ERROR,
    )
    tracker.start()
    _work_until_posted(2)
    tracker.stop()
    expected_kwh = tracker.final_emissions_data.energy_consumed
    assert expected_kwh > 0

    deadline = time.monotonic() + 20
    rows = _project_usage(live_stack, api_token, began)
    while time.monotonic() < deadline:
        got = rows.get(("detector", "codecarbon"), {}).get("energy_kwh", 0.0)
        if got >= expected_kwh * 0.99:
            break
        time.sleep(0.3)
        rows = _project_usage(live_stack, api_token, began)
    row = rows[("detector", "codecarbon")]
    assert row["energy_kwh"] == pytest.approx(expected_kwh, rel=0.01)
    parts = row["cpu_energy_kwh"] + row["gpu_energy_kwh"] + row["ram_energy_kwh"]
    assert parts == pytest.approx(row["energy_kwh"], rel=1e-9)
    assert row["ram_energy_kwh"] > 0
    # EcoReport's own factors: the site's PUE, whatever the tracker assumed.
    assert row["facility_energy_kwh"] == pytest.approx(row["energy_kwh"] * 1.2, rel=1e-9)
    assert set(rows) == {("detector", "codecarbon")}
    assert "rollup.done" in live_stack.worker_log.read_text()
