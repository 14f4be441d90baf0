from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The live stack (gunicorn + a Celery worker) for the real tracker's test.
from tests.e2e.conftest import live_stack, processes  # noqa: F401 - the fixtures, re-exported

CAPTURE = Path(__file__).with_name("data") / "codecarbon-3.3.2-capture.jsonl"
EXPERIMENT = "11111111-2222-3333-4444-555555555555"


def captured() -> list[dict[str, Any]]:
    """The requests an unmodified CodeCarbon 3.3.2 tracker sent (path, headers, JSON body)."""
    lines = CAPTURE.read_text().splitlines()
    return [{**(r := json.loads(line)), "body": json.loads(r["body"])} for line in lines]


@dataclass
class Tracker:
    site: Any
    team: Any
    project: Any
    token: Any
    raw: str


@pytest.fixture
def make_tracker(cast: Any) -> Callable[..., Tracker]:
    from ecoreport.carbon.sites import site_create
    from ecoreport.codecarbon.services import token_issue
    from tests.factories import ProjectFactory, TeamFactory

    def make(*, org: Any = None, exclude_gpu: bool = False, zone: str = "FR") -> Tracker:
        org = org or cast.org
        site = site_create(
            organization=org, slug=f"dc-{zone.lower()}", name="DC", grid_zone=zone, pue="1.25"
        )
        team = TeamFactory(organization=org, slug="nlp")
        project = ProjectFactory(organization=org, slug="llm", team=team)
        token, raw = token_issue(team=team, project=project, site=site, exclude_gpu=exclude_gpu)
        return Tracker(site=site, team=team, project=project, token=token, raw=raw)

    return make


@pytest.fixture
def tracker(make_tracker: Callable[..., Tracker]) -> Tracker:
    return make_tracker()


@pytest.fixture
def post_cc(client: Any, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST a JSON body to /api/codecarbon/<path> as a tracker does; what the request enqueued
    on commit (the rollup) runs before it returns, as a worker would."""

    def post(path: str, body: Any, token: str | None, *, raw: bytes | None = None) -> Any:
        headers = {"HTTP_X_API_TOKEN": token} if token is not None else {}
        data = raw if raw is not None else json.dumps(body)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                f"/api/codecarbon/{path}", data=data, content_type="application/json", **headers
            )

    return post


@pytest.fixture
def start_run(post_cc: Callable[..., Any]) -> Callable[..., str]:
    def start(token: str, experiment_id: str = EXPERIMENT) -> str:
        body = {**captured()[0]["body"], "experiment_id": experiment_id}
        response = post_cc("runs", body, token)
        assert response.status_code == 201, response.content
        return response.json()["id"]

    return start
