"""Concurrent ingest on PostgreSQL: whatever the interleaving, every sample is counted once.

These tests post from several threads at once, each with its own database connection, so they
need real row locks and a database that commits (``transactional_db``). SQLite serialises
writers with its database lock (``transaction_mode=IMMEDIATE``), which leaves nothing to race.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from ecoreport.telemetry.models import EnergySample, IngestBatch, SampleShare
from tests.conftest import BASE_TIME, make_batch, make_sample

pytestmark = [
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"],
        reason="needs PostgreSQL: concurrent writers and row locks (SQLite serialises writers)",
    ),
    pytest.mark.django_db(transaction=True),
]

THREADS = 6
TWO_TEAMS = [
    {"share": 0.5, "team": "nlp", "project": "llm"},
    {"share": 0.25, "team": "vision", "project": "det", "user": "bob"},
]


def _race(bodies: list[bytes], token: str) -> list[tuple[int, dict[str, Any]]]:
    """Posts each body from its own thread, all released at once; returns (status, answer)."""
    barrier = threading.Barrier(len(bodies))
    answers: list[Any] = [None] * len(bodies)

    def post(i: int) -> None:
        try:
            client = Client()
            barrier.wait()
            response = client.post(
                "/api/v1/ingest",
                data=bodies[i],
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
            answers[i] = (response.status_code, response.json())
        except Exception as error:  # reported by the assertion below
            answers[i] = (0, {"exception": repr(error)})
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(a is not None for a in answers), "a thread did not finish"
    return answers


def _samples(first: int, count: int, gpus: int = 2) -> list[dict[str, Any]]:
    """Samples number first..first+count-1, spread over ``gpus`` GPUs, 10 s apart per GPU."""
    return [
        make_sample(
            gpu=f"GPU-{n % gpus}",
            start=BASE_TIME + timedelta(seconds=10 * (n // gpus)),
            attribution=TWO_TEAMS if n % 3 else [],
        )
        for n in range(first, first + count)
    ]


def _shares_per_sample(n: int) -> int:
    # Two attributed shares and the unattributed remainder; one idle share without attribution.
    return 3 if n % 3 else 1


@pytest.fixture(autouse=True)
def _configured_throttle_rates() -> None:
    """The configured ingest rate, whatever an earlier test left in DRF's class attribute.

    (Six posts of one agent within a second must not meet a test's '2/min'.)
    """
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES


@pytest.fixture
def warmed(agent: Any, post_batch: Callable[..., Any]) -> Any:
    """Registers the GPUs and labels first, so the race is about samples, not inventory."""
    post_batch(
        agent.token,
        make_batch(
            [
                make_sample(
                    gpu="GPU-0", start=BASE_TIME - timedelta(hours=1), attribution=TWO_TEAMS
                ),
                make_sample(gpu="GPU-1", start=BASE_TIME - timedelta(hours=1)),
            ]
        ),
    )
    return agent


def test_same_batch_posted_concurrently_is_stored_once(warmed: Any) -> None:
    body = json.dumps(make_batch(_samples(0, 60))).encode()
    answers = _race([body] * THREADS, warmed.token)
    assert [status for status, _ in answers] == [200] * THREADS, answers
    # Every twin gets the one answer: the first stored it, the others replayed it.
    assert len({json.dumps(a, sort_keys=True) for _, a in answers}) == 1
    assert answers[0][1]["accepted"] == 60
    assert answers[0][1]["duplicates"] == 0
    assert IngestBatch.objects.count() == 2  # the warm-up batch and this one
    assert EnergySample.objects.count() == 2 + 60
    assert SampleShare.objects.count() == 4 + sum(_shares_per_sample(n) for n in range(60))


def test_overlapping_batches_posted_concurrently_count_each_sample_once(warmed: Any) -> None:
    # Batch k carries samples 10k .. 10k+29: each sample is in up to three batches, and each
    # batch lists its samples in its own random order (the ingest sorts them, so the batches'
    # index locks are taken in one order and cannot deadlock).
    rng = random.Random(5)
    bodies = []
    for k in range(THREADS):
        samples = _samples(10 * k, 30)
        rng.shuffle(samples)
        bodies.append(json.dumps(make_batch(samples)).encode())
    answers = _race(bodies, warmed.token)
    assert [status for status, _ in answers] == [200] * THREADS, answers
    distinct = 10 * (THREADS - 1) + 30
    assert sum(a["accepted"] for _, a in answers) == distinct
    assert sum(a["duplicates"] for _, a in answers) == 30 * THREADS - distinct
    assert all(a["rejected"] == [] for _, a in answers)
    assert EnergySample.objects.count() == 2 + distinct
    # Shares belong to the samples that were really inserted, once each.
    expected_shares = 4 + sum(_shares_per_sample(n) for n in range(distinct))
    assert SampleShare.objects.count() == expected_shares
    per_sample = {s.pk: s.shares.count() for s in EnergySample.objects.all()}
    assert set(per_sample.values()) <= {1, 3}


def test_resent_samples_under_new_batch_ids_race_with_the_original(warmed: Any) -> None:
    samples = _samples(100, 40)
    bodies = [json.dumps(make_batch(samples)).encode() for _ in range(THREADS)]  # new ids
    answers = _race(bodies, warmed.token)
    assert [status for status, _ in answers] == [200] * THREADS, answers
    assert sorted(a["accepted"] for _, a in answers) == [0] * (THREADS - 1) + [40]
    assert all(a["accepted"] + a["duplicates"] == 40 for _, a in answers)
    assert EnergySample.objects.count() == 2 + 40
    assert IngestBatch.objects.count() == 1 + THREADS


def _shifted(offset_s: float, count: int = 30) -> list[dict[str, Any]]:
    """``count`` back-to-back 10 s samples of GPU-0 from BASE_TIME + 1 h + offset_s."""
    origin = BASE_TIME + timedelta(hours=1, seconds=offset_s)
    return [
        make_sample(gpu="GPU-0", start=origin + timedelta(seconds=10 * n), energy_j=3000.0)
        for n in range(count)
    ]


def test_racing_batches_with_overlapping_samples_let_exactly_one_win(warmed: Any) -> None:
    # Six batches cover the same 300 s of GPU-0, each shifted by 0-5 s: every sample of one
    # overlaps samples of all the others, and none is an exact duplicate of another batch's.
    bodies = [json.dumps(make_batch(_shifted(k))).encode() for k in range(THREADS)]
    answers = _race(bodies, warmed.token)
    assert [status for status, _ in answers] == [200] * THREADS, answers
    winners = [a for _, a in answers if a["accepted"]]
    assert len(winners) == 1, answers
    assert winners[0]["accepted"] == 30
    losers = [a for _, a in answers if not a["accepted"]]
    assert all(len(a["rejected"]) == 30 and a["duplicates"] == 0 for a in losers)
    assert {r["field"] for a in losers for r in a["rejected"]} == {"start"}
    # The stored intervals of GPU-0 are disjoint and carry exactly one batch's energy.
    intervals = list(
        EnergySample.objects.filter(gpu__uuid="GPU-0", start__gte=BASE_TIME)
        .order_by("start")
        .values_list("start", "end", "energy_j")
    )
    assert len(intervals) == 30
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))
    assert sum(e for _, _, e in intervals) == 30 * 3000.0


def test_racing_batches_that_overlap_in_part_store_only_disjoint_intervals(warmed: Any) -> None:
    # Batch k starts at 10k s + 5 s·(k odd): even batches are aligned with each other (their
    # common samples are duplicates), odd ones overlap the even ones by half an interval.
    bodies = [
        json.dumps(make_batch(_shifted(100 * k + 5 * (k % 2), count=20))).encode()
        for k in range(THREADS)
    ]
    answers = _race(bodies, warmed.token)
    assert [status for status, _ in answers] == [200] * THREADS, answers
    intervals = list(
        EnergySample.objects.filter(gpu__uuid="GPU-0", start__gte=BASE_TIME)
        .order_by("start")
        .values_list("start", "end")
    )
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))
    # Every sample is accounted for once: stored, a duplicate or refused as an overlap.
    assert sum(a["accepted"] for _, a in answers) == len(intervals)
    assert sum(a["accepted"] + a["duplicates"] + len(a["rejected"]) for _, a in answers) == (
        20 * THREADS
    )
    assert SampleShare.objects.filter(sample__start__gte=BASE_TIME).count() == len(intervals)
