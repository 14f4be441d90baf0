"""The OpenAPI schema is the behaviour: Schemathesis generates requests for every operation of
``/api/schema/`` against the live gunicorn + worker stack and fails on a 5xx, on a response that
does not match its documented schema, and on a status code the schema does not list.

It runs on PostgreSQL only (CI's first pass): the schema and the views are the same in the
embedded configuration, and a second fuzzing run on SQLite would double the cost for nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_hourly

pytestmark = [pytest.mark.e2e]

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Bounded: about 2 minutes on CI's two cores; raise it locally to fuzz harder.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
# What "the schema and the behaviour disagree" means here: a 5xx, a status, content type, body
# or header the schema does not document, an undeclared method that is not a 405, and a request
# the schema says is invalid that is not refused (negative_data_rejection: request bodies keep
# to the schema's JSON types, ecoreport.core.api.StrictSerializer, instead of DRF's coercion of
# ``"source": 0`` to "0" or ``"email_alerts": 0`` to false).
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "unsupported_method",
        "negative_data_rejection",
    ]
)


@pytest.fixture
def _unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fuzzing sends thousands of requests a minute; 429s would hide the answers under test.
    monkeypatch.setenv("API_THROTTLE_RATE", "1000000/min")
    monkeypatch.setenv("INGEST_THROTTLE_RATE", "1000000/min")


def _seed() -> dict[str, str]:
    from django.utils import timezone

    from ecoreport.carbon.sites import site_create
    from ecoreport.codecarbon.services import token_issue
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.models import Project, Team
    from ecoreport.organizations.services import (
        api_token_issue,
        membership_ensure,
        organization_create,
    )

    org = organization_create(slug="fuzz", name="Fuzz")
    owner = membership_ensure(organization=org, username="fuzzer", role="owner")
    site = site_create(
        organization=org, slug="dc1", name="DC 1", grid_zone="FR", pue="1.3", provider=""
    )
    team = Team.objects.create(organization=org, slug="fuzz-team")
    project = Project.objects.create(organization=org, slug="fuzz-project", team=team)
    # Hourly factors from the current hour, so the best window and the Carbon Aware SDK routes
    # answer 200s (their documented examples name FR) and not only "no hourly data".
    first = timezone.now().replace(minute=0, second=0, microsecond=0)
    load_hourly("FR", first, [40.0 + (h * 7) % 30 for h in range(48)], source="fuzz grid")
    return {
        "ECOREPORT_CODECARBON_TOKEN": token_issue(team=team, project=project, site=site)[1],
        "ECOREPORT_API_TOKEN": api_token_issue(membership=owner),
        "ECOREPORT_AGENT_TOKEN": agent_token_issue(
            host=host_ensure(organization=org, hostname="fuzz-node")
        ),
    }


def _run(stack: Any, tokens: dict[str, str], tmp_path: Path) -> tuple[int, str, dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            f"{stack.url}/api/schema/",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "12",
            # One worker: with two threads, CPython 3.11's AST constructor raised "recursion depth
            # mismatch" inside Schemathesis's coverage phase (an internal error, not our answer).
            "--workers",
            "1",
            "--no-color",
            # Same seed, no example database: the run is repeatable and writes nothing here.
            "--generation-database",
            "none",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        env={**os.environ, **tokens},
        cwd=tmp_path,  # its caches land in the test's folder, not the checkout
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(report.read_text()) if report.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, summary


def test_every_operation_answers_as_its_schema_says(_unthrottled, live_stack, tmp_path):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("Schemathesis runs against the PostgreSQL stack (CI's first pass)")
    rc, output, summary = _run(live_stack, _seed(), tmp_path)
    assert rc == 0, output[-12000:]
    # A run that tested nothing would pass too: every operation must have been exercised.
    operations = summary["operations"]
    assert operations["tested"] == operations["selected"] >= 39, operations
    assert summary["test_cases"]["generated"] >= 39 * 5, summary["test_cases"]
