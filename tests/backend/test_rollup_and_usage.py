"""Rollups equal the raw samples; the read API shows them to members of the organization only."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from django.db.models import Sum

from ecoreport.accounting.models import HourlyUsage
from ecoreport.accounting.services import dirty_hours_rollup, hours_rollup
from ecoreport.telemetry.models import DirtyHour, EnergySample
from tests.conftest import BASE_TIME, iso, make_batch, make_sample

pytestmark = pytest.mark.django_db


def _random_batch(rng: random.Random, *, hours: int = 3, gpus: int = 3) -> dict:
    samples = []
    for g in range(gpus):
        for i in range(hours * 60):  # one-minute samples
            start = BASE_TIME + timedelta(minutes=i)
            attribution = rng.choice(
                [
                    [],
                    [{"share": 1.0, "team": "nlp", "project": "llm"}],
                    [
                        {"share": 0.6, "team": "nlp", "project": "llm"},
                        {"share": 0.3, "team": "vision", "project": "detr"},
                    ],
                    [{"share": 0.5, "project": "orphan-project"}],
                ]
            )
            samples.append(
                make_sample(
                    gpu=f"GPU-{g}",
                    start=start,
                    seconds=60,
                    energy_j=rng.uniform(0, 40_000),
                    gpu_util_pct=rng.choice([None, rng.uniform(0, 100)]),
                    attribution=attribution,
                )
            )
    return make_batch(samples)


def test_rollups_equal_the_raw_samples(agent, post_batch):
    rng = random.Random(7)
    response = post_batch(agent.token, _random_batch(rng))
    assert response.json()["accepted"] == 540
    raw = EnergySample.objects.aggregate(e=Sum("energy_j"))["e"]
    rolled = HourlyUsage.objects.aggregate(e=Sum("energy_j"))["e"]
    assert math.isclose(rolled, raw, rel_tol=1e-12)
    # Per GPU and hour as well, not only in total.
    for gpu in ("GPU-0", "GPU-1", "GPU-2"):
        for h in range(3):
            hour = BASE_TIME + timedelta(hours=h)
            raw_h = EnergySample.objects.filter(
                gpu__uuid=gpu, start__gte=hour, start__lt=hour + timedelta(hours=1)
            ).aggregate(e=Sum("energy_j"))["e"]
            rolled_h = HourlyUsage.objects.filter(gpu__uuid=gpu, hour=hour).aggregate(
                e=Sum("energy_j")
            )["e"]
            assert math.isclose(rolled_h, raw_h, rel_tol=1e-12)
    assert not DirtyHour.objects.exists()


def test_rollup_is_idempotent(agent, post_batch, django_capture_on_commit_callbacks):
    post_batch(agent.token, _random_batch(random.Random(1), hours=2))
    before = sorted(
        HourlyUsage.objects.values_list("hour", "gpu_id", "team_id", "project_id", "energy_j"),
        key=repr,
    )
    hours_rollup(
        organization_id=agent.host.organization_id,
        hours=[BASE_TIME, BASE_TIME + timedelta(hours=1)],
    )
    after = sorted(
        HourlyUsage.objects.values_list("hour", "gpu_id", "team_id", "project_id", "energy_j"),
        key=repr,
    )
    assert after == before


def test_late_sample_is_added_to_its_hour(agent, post_batch):
    post_batch(agent.token, make_batch([make_sample(start=BASE_TIME)]))
    post_batch(
        agent.token,
        make_batch([make_sample(start=BASE_TIME + timedelta(minutes=30), energy_j=1000)]),
    )
    assert HourlyUsage.objects.aggregate(e=Sum("energy_j"))["e"] == 4000.0


def test_dirty_hours_are_swept_without_the_on_commit_enqueue(agent, post_batch, monkeypatch):
    # As if the broker had been down when the batch committed.
    monkeypatch.setattr("ecoreport.telemetry.services.rollup_soon", lambda: None)
    post_batch(agent.token, make_batch([make_sample()]))
    assert not HourlyUsage.objects.exists()
    assert dirty_hours_rollup() == 1
    assert HourlyUsage.objects.get().energy_j == 3000.0


def test_idle_and_gpu_hours_are_rolled_up(agent, post_batch, cast, get_usage):
    samples = [
        make_sample(start=BASE_TIME, seconds=1800, energy_j=1800 * 100.0, gpu_util_pct=0.0),  # idle
        make_sample(
            start=BASE_TIME + timedelta(seconds=1800),
            seconds=1800,
            energy_j=1800 * 400.0,
            gpu_util_pct=90.0,
            attribution=[{"share": 1.0, "team": "nlp", "project": "llm"}],
        ),
    ]
    post_batch(agent.token, make_batch(samples))
    body = get_usage(
        cast.member_token,
        start=iso(BASE_TIME),
        end=iso(BASE_TIME + timedelta(hours=1)),
        group_by="team,project",
    ).json()
    rows = {(r["team"], r["project"]): r for r in body["rows"]}
    assert rows[("nlp", "llm")]["energy_kwh"] == pytest.approx(0.2)
    assert rows[("nlp", "llm")]["gpu_hours"] == pytest.approx(0.5)
    assert rows[("nlp", "llm")]["avg_gpu_util_pct"] == pytest.approx(90.0)
    assert rows[(None, None)]["idle_energy_kwh"] == pytest.approx(0.05)
    assert body["totals"]["energy_kwh"] == pytest.approx(0.25)
    assert body["totals"]["gpu_hours"] == pytest.approx(1.0)
    assert body["totals"]["avg_gpu_util_pct"] == pytest.approx(45.0)
    # Energy-weighted utilization leans to where the energy went.
    assert body["totals"]["energy_weighted_gpu_util_pct"] == pytest.approx(90.0 * 0.8)


@pytest.mark.parametrize(
    ("granularity", "periods"),
    [("hour", 48), ("day", 2), ("month", 1), ("quarter", 1), ("total", 1)],
)
def test_granularities(agent, post_batch, cast, get_usage, granularity, periods):
    day = BASE_TIME.replace(hour=0) - timedelta(days=1)
    samples = [
        make_sample(start=day + timedelta(hours=h), seconds=60, energy_j=30_000) for h in range(48)
    ]
    post_batch(agent.token, make_batch(samples))
    body = get_usage(
        cast.owner_token, start=iso(day), end=iso(day + timedelta(days=2)), granularity=granularity
    ).json()
    assert len(body["rows"]) == periods
    assert sum(r["energy_kwh"] for r in body["rows"]) == pytest.approx(48 * 30_000 / 3.6e6)


def test_group_by_host_and_gpu(cast, make_agent, post_batch, get_usage):
    a, b = make_agent(cast.org, "node-a"), make_agent(cast.org, "node-b")
    post_batch(a.token, make_batch([make_sample(gpu="GPU-a")]))
    post_batch(b.token, make_batch([make_sample(gpu="GPU-b", energy_j=1000)]))
    body = get_usage(
        cast.viewer_token if hasattr(cast, "viewer_token") else cast.member_token,
        start=iso(BASE_TIME),
        end=iso(BASE_TIME + timedelta(hours=1)),
        group_by="host,gpu",
    ).json()
    assert [(r["host"], r["gpu"]) for r in body["rows"]] == [
        ("node-a", "GPU-a"),
        ("node-b", "GPU-b"),
    ]


# --- tenancy: owner, member, outsider --------------------------------------------------------


def test_outsider_sees_nothing_of_another_organization(agent, post_batch, cast, get_usage):
    post_batch(agent.token, make_batch([make_sample()]))
    params = {
        "start": iso(BASE_TIME),
        "end": iso(BASE_TIME + timedelta(hours=1)),
        "group_by": "team",
    }
    for token in (cast.owner_token, cast.member_token):
        assert get_usage(token, **params).json()["totals"]["energy_kwh"] > 0
    outsider = get_usage(cast.outsider_token, **params).json()
    assert outsider["organization"] == "globex"
    assert outsider["rows"] == []
    assert outsider["totals"]["energy_kwh"] == 0
    # Asking for the other organization by name does not switch the token's organization.
    assert get_usage(cast.outsider_token, org="acme", **params).json()["organization"] == "globex"


def test_usage_without_token_is_refused(client):
    assert client.get("/api/v1/usage").status_code in (401, 403)


def test_agent_token_cannot_read_usage(agent, get_usage):
    assert get_usage(agent.token).status_code in (401, 403)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"granularity": "week"}, "granularity"),
        ({"group_by": "team,colour"}, "group_by"),
        ({"group_by": "team,team"}, "group_by"),
        ({"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "end"),
        (
            {"start": "2026-01-01T00:00:00Z", "end": "2026-11-01T00:00:00Z", "granularity": "hour"},
            "granularity",
        ),
    ],
)
def test_bad_usage_parameters_are_400(cast, get_usage, params, field):
    response = get_usage(cast.member_token, **params)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_revoked_api_token_is_refused(cast, get_usage):
    from django.utils import timezone

    from ecoreport.organizations.models import ApiToken

    ApiToken.objects.filter(membership=cast.member).update(revoked_at=timezone.now())
    assert get_usage(cast.member_token).status_code == 401


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/ingest" in schema.content and b"/api/v1/usage" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_healthz_reports_database_and_broker(client):
    body = client.get("/healthz").json()
    assert body["database"]["ok"] is True
    assert "broker" in body
