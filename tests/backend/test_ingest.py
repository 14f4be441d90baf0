"""Ingest API v1: the contract in shared DESIGN.md, bad input first."""

from __future__ import annotations

import gzip
import json
import math
from datetime import timedelta

import pytest
from django.utils import timezone

from ecoreport.fleet.models import Gpu
from ecoreport.fleet.services import agent_credential_revoke
from ecoreport.organizations.models import Project, Team
from ecoreport.telemetry.models import EnergySample, IngestBatch, SampleShare
from tests.conftest import BASE_TIME, iso, make_batch, make_sample
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_valid_batch_is_stored_and_answered(agent, post_batch):
    batch = make_batch([make_sample(start=BASE_TIME + timedelta(seconds=10 * i)) for i in range(5)])
    response = post_batch(agent.token, batch)
    assert response.status_code == 200
    assert response.json() == {
        "batch_id": batch["batch_id"],
        "accepted": 5,
        "duplicates": 0,
        "rejected": [],
    }
    assert EnergySample.objects.count() == 5
    gpu = Gpu.objects.get()
    assert (gpu.uuid, gpu.host_id, gpu.power_limit_w) == ("GPU-0", agent.host.pk, 700.0)


def test_split_is_stored_and_an_agent_without_it_is_accepted_unchanged(agent, post_batch):
    """``split`` (how the agent divided the energy among the GPU's processes) is optional: an
    agent that predates it sends none and gets the same answer, its samples stored blank."""
    shared = [{"share": 0.5, "team": "a"}, {"share": 0.5, "team": "b"}]
    samples = [
        make_sample(start=BASE_TIME, attribution=[{"share": 1.0, "team": "a"}], split="single"),
        make_sample(start=BASE_TIME + timedelta(seconds=10), attribution=shared, split="even"),
        make_sample(
            start=BASE_TIME + timedelta(seconds=20), attribution=shared, split="utilization"
        ),
        make_sample(start=BASE_TIME + timedelta(seconds=30), attribution=shared),  # old agent
        make_sample(start=BASE_TIME + timedelta(seconds=40), split=None),  # explicit null
    ]
    batch = make_batch(samples)
    response = post_batch(agent.token, batch)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "batch_id": batch["batch_id"],
        "accepted": 5,
        "duplicates": 0,
        "rejected": [],
    }
    stored = list(EnergySample.objects.order_by("start").values_list("split", "method"))
    assert stored == [
        ("single", "counter"),
        ("even", "counter"),
        ("utilization", "counter"),
        ("", "counter"),
        ("", "counter"),
    ]
    # The shares are the same whatever the split says: it describes them, it changes nothing.
    assert SampleShare.objects.count() == 1 + 2 + 2 + 2 + 1


def test_gzip_body_is_accepted(agent, post_batch):
    response = post_batch(agent.token, make_batch([make_sample()]), compress=True)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


# Each row: what is wrong with the sample, the field the answer must name.
IMPLAUSIBLE = [
    ("negative energy", {"energy_j": -1.0}, "energy_j"),
    ("energy above the power limit", {"energy_j": 700.0 * 10 * 1.2}, "energy_j"),
    ("start equal to end", {"seconds": 0}, "end"),
    ("end before start", {"seconds": -10}, "end"),
    ("interval over an hour", {"seconds": 3601, "energy_j": 10.0}, "end"),
    ("share above 1", {"attribution": [{"share": 1.5, "team": "nlp"}]}, "attribution[0].share"),
    ("share of 0", {"attribution": [{"share": 0.0, "team": "nlp"}]}, "attribution[0].share"),
    ("negative share", {"attribution": [{"share": -0.2, "team": "nlp"}]}, "attribution[0].share"),
    (
        "shares summing over 1",
        {"attribution": [{"share": 0.6, "team": "a"}, {"share": 0.5, "team": "b"}]},
        "attribution",
    ),
    ("utilization over 100", {"gpu_util_pct": 140.0}, "gpu_util_pct"),
]


@pytest.mark.parametrize(("case", "change", "field"), IMPLAUSIBLE, ids=[c[0] for c in IMPLAUSIBLE])
def test_implausible_sample_is_rejected_alone(agent, post_batch, case, change, field):
    good = make_sample(start=BASE_TIME)
    bad = make_sample(start=BASE_TIME + timedelta(seconds=10), **change)
    response = post_batch(agent.token, make_batch([good, bad]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, field)]
    assert body["rejected"][0]["error"]
    assert EnergySample.objects.count() == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_energy_is_rejected_alone(agent, post_batch, literal):
    batch = make_batch([make_sample(), make_sample(start=BASE_TIME + timedelta(seconds=10))])
    raw = json.dumps(batch).replace('"energy_j": 3000.0', f'"energy_j": {literal}', 1)
    # Only the first sample carries the non-finite value.
    assert raw.count(literal) == 1
    response = post_batch(agent.token, None, raw=raw.encode())
    assert response.status_code == 200, response.content
    assert response.json()["rejected"] == [
        {"index": 0, "field": "energy_j", "error": "must be a finite number"}
    ]
    assert EnergySample.objects.count() == 1


def test_far_future_end_is_rejected(agent, post_batch):
    soon = timezone.now() + timedelta(minutes=10)
    response = post_batch(agent.token, make_batch([make_sample(start=soon)]))
    assert response.json()["rejected"][0]["field"] == "end"


def test_unknown_gpu_without_inventory_is_rejected(agent, post_batch):
    batch = make_batch([make_sample(gpu="GPU-unknown")], gpus=[])
    body = post_batch(agent.token, batch).json()
    assert body["accepted"] == 0
    assert body["rejected"] == [
        {"index": 0, "field": "gpu_uuid", "error": "unknown GPU: list it in 'gpus'"}
    ]


def test_known_gpu_needs_no_inventory_in_later_batches(agent, post_batch):
    post_batch(agent.token, make_batch([make_sample()]))
    later = make_batch([make_sample(start=BASE_TIME + timedelta(seconds=10))], gpus=[])
    assert post_batch(agent.token, later).json()["accepted"] == 1


MALFORMED = [
    ("not json", b"{not json"),
    ("empty body", b""),
    ("array instead of object", b"[]"),
    (
        "missing samples",
        json.dumps(
            {"batch_id": "3f6c1c1e-8f0e-4c8e-9d7a-1f3c2b5a9e10", "agent": {"hostname": "h"}}
        ).encode(),
    ),
    (
        "bad batch id",
        json.dumps({"batch_id": "nope", "agent": {"hostname": "h"}, "samples": []}).encode(),
    ),
]


@pytest.mark.parametrize(("case", "raw"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_body_is_400_and_stores_nothing(agent, post_batch, case, raw):
    response = post_batch(agent.token, None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
    assert EnergySample.objects.count() == 0
    assert IngestBatch.objects.count() == 0


WRONG_TYPES = [
    ("energy as string", {"energy_j": "3000"}),
    ("start without timezone", {"start": "2026-11-27T10:00:00"}),
    ("unknown method", {"method": "guess"}),
    ("unknown split", {"split": "guess"}),
    ("split not a string", {"split": 1}),
    ("attribution not a list", {"attribution": {"share": 1}}),
    ("missing energy", {"energy_j": None}),
]


@pytest.mark.parametrize(("case", "change"), WRONG_TYPES, ids=[c[0] for c in WRONG_TYPES])
def test_wrong_types_fail_the_whole_batch(agent, post_batch, case, change):
    good = make_sample()
    bad = make_sample(start=BASE_TIME + timedelta(seconds=10))
    for key, value in change.items():
        if value is None:
            bad.pop(key)
        else:
            bad[key] = value
    response = post_batch(agent.token, make_batch([good, bad]))
    assert response.status_code == 400
    assert "samples[1]" in response.json()["error"]["message"]
    assert EnergySample.objects.count() == 0


def test_truncated_gzip_is_400(agent, post_batch):
    data = gzip.compress(json.dumps(make_batch([make_sample()])).encode())[:-8]
    response = post_batch(agent.token, None, raw=data, compress=False)
    assert response.status_code == 400
    # Labelled as gzip but cut short: still a 400, with nothing stored.
    client = post_batch.__closure__[0].cell_contents
    response = client.post(
        "/api/v1/ingest",
        data=data,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {agent.token}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 400
    assert EnergySample.objects.count() == 0


def test_oversized_body_is_413(agent, post_batch, settings):
    settings.INGEST_MAX_BODY_BYTES = 1000
    response = post_batch(agent.token, make_batch([make_sample() for _ in range(20)]))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_gzip_bomb_is_413(agent, post_batch, settings):
    settings.INGEST_MAX_DECOMPRESSED_BYTES = 10_000
    padding = make_batch([make_sample()])
    padding["agent"]["version"] = "x" * 20  # keeps the shape valid
    raw = json.dumps(padding).encode() + b" " * 50_000
    response = post_batch(agent.token, None, raw=gzip.compress(raw), compress=False)
    assert response.status_code == 400  # not labelled gzip: it is not JSON
    client_response = post_batch(agent.token, None, raw=raw, compress=True)
    assert client_response.status_code == 413


@pytest.mark.parametrize(
    "header", ["", "Bearer ", "Bearer era_not-a-real-token", "Basic dXNlcjpwYXNz"]
)
def test_bad_token_is_401(client, header):
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post("/api/v1/ingest", data=b"{}", content_type="application/json", **kwargs)
    assert response.status_code == 401
    assert "error" in response.json()


def test_revoked_token_is_401(agent, post_batch):
    agent_credential_revoke(credential=agent.host.credentials.get())
    assert post_batch(agent.token, make_batch([make_sample()])).status_code == 401
    assert EnergySample.objects.count() == 0


def test_user_api_token_cannot_ingest(cast, post_batch):
    assert post_batch(cast.owner_token, make_batch([make_sample()])).status_code == 401


def test_throttled_agent_gets_429_with_retry_after(agent, post_batch, settings):
    from rest_framework.throttling import SimpleRateThrottle

    original_rates = SimpleRateThrottle.THROTTLE_RATES
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ingest": "2/min", "api": "1000/min"},
    }
    from rest_framework.settings import api_settings

    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        statuses = [
            post_batch(
                agent.token, make_batch([make_sample(start=BASE_TIME + timedelta(seconds=10 * i))])
            )
            for i in range(3)
        ]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert int(statuses[2]["Retry-After"]) > 0
        assert EnergySample.objects.count() == 2
    finally:
        # The class attribute was bound at import: put the original back, or every later test
        # in this process would be throttled at 2/min.
        SimpleRateThrottle.THROTTLE_RATES = original_rates
        api_settings.reload()


def test_token_of_another_org_writes_to_its_own_org_only(cast, make_agent, post_batch):
    ours = make_agent(cast.org, "node-a")
    theirs = make_agent(cast.other_org, "node-b")
    post_batch(ours.token, make_batch([make_sample(gpu="GPU-shared")]))
    post_batch(theirs.token, make_batch([make_sample(gpu="GPU-shared")]))
    # Same GPU UUID and start in two organizations: two GPUs, two samples, no cross-talk.
    assert Gpu.objects.filter(uuid="GPU-shared").count() == 2
    assert EnergySample.objects.filter(organization=cast.org).count() == 1
    assert EnergySample.objects.filter(organization=cast.other_org).count() == 1


# --- idempotency ---------------------------------------------------------------------------


def test_same_batch_twice_is_counted_once_and_replays_the_answer(agent, post_batch):
    batch = make_batch(
        [make_sample(), make_sample(energy_j=-5, start=BASE_TIME + timedelta(seconds=10))]
    )
    first = post_batch(agent.token, batch).json()
    second = post_batch(agent.token, batch).json()
    assert second == first
    assert first["accepted"] == 1
    assert EnergySample.objects.count() == 1


def test_same_samples_under_a_new_batch_id_are_duplicates(agent, post_batch):
    samples = [make_sample(start=BASE_TIME + timedelta(seconds=10 * i)) for i in range(3)]
    post_batch(agent.token, make_batch(samples))
    again = post_batch(
        agent.token, make_batch([*samples, make_sample(start=BASE_TIME + timedelta(seconds=30))])
    )
    assert again.json()["accepted"] == 1
    assert again.json()["duplicates"] == 3
    assert EnergySample.objects.count() == 4


def test_duplicate_inside_one_batch_is_counted_once(agent, post_batch):
    body = post_batch(agent.token, make_batch([make_sample(), make_sample()])).json()
    assert (body["accepted"], body["duplicates"]) == (1, 1)


# --- attribution ------------------------------------------------------------------------------


def test_unknown_labels_are_registered_on_first_sight(agent, post_batch, cast):
    attribution = [
        {
            "share": 0.7,
            "team": "NLP Research",
            "project": "llm-pretrain",
            "user": "alice",
            "job_id": "slurm-1",
        }
    ]
    post_batch(agent.token, make_batch([make_sample(attribution=attribution)]))
    team = Team.objects.get(organization=cast.org)
    assert (team.slug, team.auto_created) == ("nlp-research", True)
    assert Project.objects.get(organization=cast.org).slug == "llm-pretrain"
    assert not Team.objects.filter(organization=cast.other_org).exists()


def test_shares_sum_to_the_sample_energy(agent, post_batch):
    attribution = [
        {"share": 0.1, "team": "a"},
        {"share": 0.2, "team": "b"},
        {"share": 0.3, "team": "c"},
    ]
    post_batch(agent.token, make_batch([make_sample(energy_j=3333.3, attribution=attribution)]))
    shares = list(SampleShare.objects.order_by("id"))
    assert [s.attributed for s in shares] == [True, True, True, False]
    assert not shares[-1].idle  # processes ran: the remainder is unattributed, not idle
    assert math.isclose(sum(s.energy_j for s in shares), 3333.3, rel_tol=0, abs_tol=1e-9)
    assert math.isclose(shares[-1].share, 0.4, abs_tol=1e-12)


def test_unattributed_energy_goes_to_the_hosts_default_team(cast, make_agent, post_batch):
    default_team = TeamFactory(organization=cast.org, slug="platform")
    agent = make_agent(cast.org, "node-x", default_team=default_team)
    post_batch(agent.token, make_batch([make_sample(attribution=[])]))
    share = SampleShare.objects.get()
    assert (share.team_id, share.attributed, share.idle, share.energy_j) == (
        default_team.pk,
        False,
        True,
        3000.0,
    )


def test_inventory_moves_a_gpu_to_the_host_that_reports_it(cast, make_agent, post_batch):
    first, second = make_agent(cast.org, "node-1"), make_agent(cast.org, "node-2")
    post_batch(first.token, make_batch([make_sample(gpu="GPU-m")]))
    # node-1 stopped listing it longer ago than the claim window (test_gpu_claims.py: before
    # that, node-2's samples of it are refused and it stays).
    Gpu.objects.filter(uuid="GPU-m").update(last_seen_at=timezone.now() - timedelta(minutes=20))
    post_batch(
        second.token, make_batch([make_sample(gpu="GPU-m", start=BASE_TIME + timedelta(hours=1))])
    )
    assert Gpu.objects.get(uuid="GPU-m").host.hostname == "node-2"


def test_ingest_uses_a_fixed_number_of_queries(
    agent, post_batch, client, django_assert_max_num_queries
):
    def batch(n: int, offset: int) -> dict:
        return make_batch(
            [
                make_sample(
                    gpu=f"GPU-{i % 4}",
                    start=BASE_TIME + timedelta(seconds=10 * (i // 4) + offset),
                    attribution=[{"share": 0.5, "team": f"t{i % 3}", "project": "p"}],
                )
                for i in range(n)
            ]
        )

    post_batch(agent.token, batch(8, 0))  # registers GPUs and labels
    # Bulk statements only: PostgreSQL takes each table in one statement, SQLite in chunks of
    # its bound-variable limit. A query per sample would be 400 or more.
    with django_assert_max_num_queries(30):
        # The plain client: the rollup scheduled on commit is not part of the request.
        response = client.post(
            "/api/v1/ingest",
            data=json.dumps(batch(400, 40_000)),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {agent.token}",
        )
    assert response.json()["accepted"] == 400


def test_agent_ping_names_org_and_host(agent, client):
    response = client.get("/api/v1/agent/ping", HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    assert response.json() == {"organization": "acme", "host": "gpu-node-01"}


def test_timestamps_with_offsets_are_stored_as_utc(agent, post_batch):
    sample = make_sample()
    sample["start"] = "2026-11-27T12:00:00+02:00"
    sample["end"] = "2026-11-27T12:00:10+02:00"
    post_batch(agent.token, make_batch([sample]))
    assert iso(EnergySample.objects.get().start) == iso(BASE_TIME)


def test_agent_token_use_is_recorded_at_most_every_few_minutes(client, agent):
    from ecoreport.fleet.models import AgentCredential

    auth = {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}
    assert client.get("/api/v1/agent/ping", **auth).status_code == 200
    credential = AgentCredential.objects.get(host=agent.host)
    first = credential.last_used_at
    assert first is not None
    assert client.get("/api/v1/agent/ping", **auth).status_code == 200
    credential.refresh_from_db()
    assert credential.last_used_at == first
