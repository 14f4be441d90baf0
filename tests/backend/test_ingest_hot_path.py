"""The ingest hot path's shortcuts (benchmarks/README.md, "Ingest") give the answers the long way
gives: job ids and users cleaned like any label, the overlap probe skipped only for GPUs that
append, a known batch id replayed without a second claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ecoreport.telemetry.models import EnergySample, IngestBatch
from ecoreport.telemetry.services import _short_label
from ecoreport.telemetry.validation import LABEL_SHORT_MAX_CHARS, clean_label
from tests.conftest import BASE_TIME, make_batch, make_sample

T = BASE_TIME

SHORT_LABELS = [
    None,
    "",
    "slurm-81234",
    "alice",
    "Alice Smith",  # a space: the long way decides
    " alice",
    "alice ",
    "a  b",
    "tab\there",
    "line\nbreak",
    "zero\u200bwidth",
    "\u200b",
    "Jos\u00e9",
    "e\u0301",  # decomposed: NFC
    "\x00nul",
    "x" * LABEL_SHORT_MAX_CHARS,
    "x" * (LABEL_SHORT_MAX_CHARS + 1),
    "y" * (LABEL_SHORT_MAX_CHARS - 1) + " z",
    "~!@#$%^&*()",
]


@pytest.mark.parametrize("value", SHORT_LABELS)
def test_short_label_is_what_cleaning_stores(value: str | None) -> None:
    assert _short_label(value) == (clean_label(value, LABEL_SHORT_MAX_CHARS) or "")


def at(seconds: float, gpu: str = "GPU-0", **kwargs: Any) -> dict[str, Any]:
    return make_sample(gpu=gpu, start=T + timedelta(seconds=seconds), **kwargs)


@pytest.mark.django_db
def test_one_gpu_appends_while_another_overlaps_an_older_stored_sample(agent, post_batch):
    # GPU-1 has [0, 10) and [100, 110) stored; a batch fills its gap with [5, 15), which only
    # the older of the two overlaps, while GPU-0 appends after its last stored sample.
    first = make_batch([at(0, "GPU-0"), at(0, "GPU-1"), at(100, "GPU-1")])
    assert post_batch(agent.token, first).json()["accepted"] == 3
    body = post_batch(
        agent.token,
        make_batch([at(10, "GPU-0"), at(5, "GPU-1"), at(100, "GPU-1"), at(20, "GPU-1")]),
    ).json()
    assert body["accepted"] == 2  # GPU-0 [10, 20) and GPU-1 [20, 30)
    assert body["duplicates"] == 1  # GPU-1 [100, 110) again
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "start")]
    assert "2026-11-27T10:00:00Z to 2026-11-27T10:00:10Z" in body["rejected"][0]["error"]
    stored = sorted(
        (gpu, (start - T).total_seconds())
        for gpu, start in EnergySample.objects.values_list("gpu__uuid", "start")
    )
    assert stored == [
        ("GPU-0", 0.0),
        ("GPU-0", 10.0),
        ("GPU-1", 0.0),
        ("GPU-1", 20.0),
        ("GPU-1", 100.0),
    ]


@pytest.mark.django_db
def test_known_batch_id_is_replayed_with_its_first_answer(agent, post_batch):
    batch = make_batch([at(0), at(0, energy_j=1.0), at(5)])
    first = post_batch(agent.token, batch).json()
    assert (first["accepted"], first["duplicates"], len(first["rejected"])) == (1, 0, 2)
    again = post_batch(agent.token, batch).json()
    assert again == first
    assert IngestBatch.objects.count() == 1
    assert EnergySample.objects.count() == 1
