"""Upload against a real HTTP server on 127.0.0.1 that implements the ingest contract."""

from __future__ import annotations

import gzip
import json
import logging
import random

import pytest
from agent_fakes import FakeGpu, FakeNvml, make_agent, spooled
from ecoreport_agent import __version__
from ecoreport_agent.uploader import Uploader, http_request, retry_after_seconds


def three_gpus(clock):
    return FakeNvml(
        clock,
        [
            FakeGpu("GPU-a", power_w=300.0),
            FakeGpu("GPU-b", power_w=150.0, pids=[11]),
            FakeGpu("GPU-c", power_w=60.0, name="NVIDIA L4", power_limit_w=72.0),
        ],
    )


def booked_total(spool):
    return sum(g["energy_j"] for g in spool.stats()["gpus"])


def test_server_down_for_a_while_then_everything_arrives_exactly_once(clock, spool, ingest):
    ingest.down()
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)
    clock.at(clock.mono + 600.0, ingest.up)  # ten minutes of outage

    agent.run(max_cycles=120)  # twenty minutes in all; the backoff is capped at five
    agent.uploader.flush()

    stats = spool.stats()
    assert stats["pending_samples"] == 0 and stats["dead_letter"] == 0
    stored = ingest.state.samples
    assert len(stored) == 3 * 120
    by_gpu = ingest.state.energy_by_gpu()
    for gpu in stats["gpus"]:
        assert by_gpu[gpu["uuid"]] == pytest.approx(gpu["energy_j"])
    assert by_gpu["GPU-a"] == pytest.approx(300.0 * 1200)
    answers = ingest.state.batches.values()
    assert sum(a["duplicates"] for a in answers) == 0


def test_a_lost_acknowledgement_is_retried_with_the_same_batch_id_and_not_counted_twice(
    clock, spool, ingest
):
    ingest.state.script = ["store-then-500"]
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)

    agent.run(max_cycles=40)
    agent.uploader.flush()

    requests = ingest.state.requests
    assert requests[0]["batch_id"] == requests[1]["batch_id"]
    assert len(ingest.state.samples) == 3 * 40
    assert ingest.state.energy_by_gpu()["GPU-a"] == pytest.approx(300.0 * 400)
    assert spool.stats()["pending_samples"] == 0


class _LongestWait:
    """Full jitter at its ceiling: the backoff schedule becomes 4, 8, 16, 32 ... seconds."""

    def uniform(self, low: float, high: float) -> float:
        return high


def test_stopping_tries_one_last_upload_even_while_backing_off(clock, spool, ingest):
    ingest.down()
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)
    agent.uploader.rng = _LongestWait()
    clock.at(clock.mono + 75.0, ingest.up)  # back while the agent waits until 82 s

    agent.run(max_cycles=8)

    assert spool.stats()["pending_samples"] == 0
    assert len(ingest.state.samples) == 3 * 8


def test_stopping_does_not_retry_a_refused_token(clock, spool, ingest):
    agent = make_agent(
        fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url, token="revoked"
    )
    agent.run(max_cycles=3)
    assert len(ingest.state.requests) == 1


def test_batches_are_gzipped_json_with_the_inventory_of_every_gpu_they_mention(
    clock, spool, ingest
):
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)

    agent.run(max_cycles=2)

    request = ingest.state.requests[0]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer good-token"
    body = request["body"]
    assert set(body) == {"batch_id", "agent", "gpus", "samples"}
    assert body["agent"] == {"hostname": "gpu-node-07", "version": __version__}
    assert {g["uuid"] for g in body["gpus"]} == {s["gpu_uuid"] for s in body["samples"]}
    assert body["gpus"][0].keys() == {"uuid", "index", "name", "memory_total_mib", "power_limit_w"}
    l4 = next(g for g in body["gpus"] if g["uuid"] == "GPU-c")
    assert l4 == {
        "uuid": "GPU-c",
        "index": 2,
        "name": "NVIDIA L4",
        "memory_total_mib": 81559,
        "power_limit_w": 72.0,
    }


def test_unauthorized_keeps_measuring_and_spooling_and_logs_one_error(clock, spool, ingest, caplog):
    agent = make_agent(
        fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url, token="revoked"
    )

    with caplog.at_level(logging.WARNING, logger="ecoreport_agent"):
        agent.run(max_cycles=90)  # 15 minutes: three slow retries

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "token" in errors[0].getMessage() and "revoked" not in errors[0].getMessage()
    # At the first boundary (10 s), then every 300 s: 310 s, 610 s; not every interval.
    assert len(ingest.state.requests) == 3
    stats = spool.stats()
    assert stats["pending_samples"] == 3 * 90
    assert "token refused" in stats["last_error"]

    agent.uploader.token = "good-token"  # the operator fixed the token file and restarted
    agent.uploader.next_attempt_mono = 0.0
    agent.uploader.flush()
    assert len(ingest.state.samples) == 3 * 90


def test_429_waits_as_long_as_retry_after_says(clock, spool, ingest):
    ingest.state.script = [(429, {"Retry-After": "120"}, {"error": {"code": "throttled"}})]
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)
    sent_at: list[float] = []

    def transport(*args, **kwargs):
        sent_at.append(clock.monotonic())
        return http_request(*args, **kwargs)

    agent.uploader.transport = transport
    agent.run(max_cycles=20)

    assert sent_at[1] - sent_at[0] >= 120.0
    assert sent_at[1] - sent_at[0] <= 130.0  # at the first interval boundary after it
    assert len(ingest.state.samples) == 3 * 20


def test_413_splits_the_batch_until_the_server_takes_it(clock, spool, ingest):
    ingest.down()
    ingest.state.max_samples_per_request = 7
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)
    clock.at(clock.mono + 95.0, ingest.up)

    agent.run(max_cycles=30)
    agent.uploader.flush()

    sizes = [r["n"] for r in ingest.state.requests]
    assert max(sizes) > 7  # a batch built during the outage was too large ...
    assert spool.stats()["dead_letter"] == 0
    assert len(ingest.state.samples) == 3 * 30  # ... and everything arrived in smaller ones
    assert agent.uploader.batch_size <= 7


def test_400_moves_the_batch_to_dead_letter_instead_of_retrying_forever(
    clock, spool, ingest, caplog
):
    error = {"error": {"code": "malformed", "detail": "samples[0].start: not a datetime"}}
    ingest.state.script = [(400, {}, error)]
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)

    with caplog.at_level(logging.ERROR, logger="ecoreport_agent"):
        agent.run(max_cycles=5)

    stats = spool.stats()
    first_batch = ingest.state.requests[0]["n"]
    assert stats["dead_letter"] == first_batch
    reason = spool.db.execute("SELECT reason FROM dead_letter").fetchone()[0]
    assert "malformed" in reason and "not a datetime" in reason
    assert len(ingest.state.samples) == 3 * 5 - first_batch
    assert "upload.malformed" in caplog.text


def test_rejected_samples_go_to_dead_letter_with_the_servers_reason(clock, spool, ingest):
    gpu = FakeGpu("GPU-a", power_w=300.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, server=ingest.url)
    # A glitching counter: +10 MJ in a 10 s interval, above what 700 W allows.
    clock.at(clock.mono + 25.0, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 10_000_000_000))

    agent.run(max_cycles=5)

    stats = spool.stats()
    assert stats["dead_letter"] == 1 and stats["pending_samples"] == 0
    row = spool.db.execute("SELECT reason, payload FROM dead_letter").fetchone()
    assert row[0] == "energy_j: above power limit"
    assert json.loads(row[1])["start"].endswith("08:00:20.000Z")
    assert len(ingest.state.samples) == 4


def test_backoff_is_exponential_with_full_jitter_and_capped(spool):
    now = [0.0]
    uploader = Uploader(
        spool=spool,
        server="http://127.0.0.1:9",
        token="t",
        hostname="h",
        monotonic=lambda: now[0],
        rng=random.Random(5),
        backoff_base_s=2.0,
        backoff_cap_s=300.0,
    )
    delays = [uploader._backoff() for _ in range(12)]
    for n, delay in enumerate(delays, start=1):
        assert 0 <= delay <= min(300.0, 2.0 * 2**n)
    assert max(delays[8:]) > 100  # it does grow
    assert len(set(delays)) == len(delays)  # jittered


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Thu, 15 Jan 2027 08:02:00 GMT", 120.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(header, expected):
    from agent_fakes import T0

    assert retry_after_seconds(header, T0) == expected


def test_gzip_body_is_what_the_server_decodes(clock, spool, ingest):
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=None)
    agent.run(max_cycles=1)
    uploader = Uploader(spool=spool, server=ingest.url, token="good-token", hostname="h")
    batch = spool.next_batch(10)
    body = json.loads(gzip.decompress(uploader._body(batch)))
    assert [s["gpu_uuid"] for s in body["samples"]] == sorted(
        s["payload"]["gpu_uuid"] for s in spooled(spool)
    ) or len(body["samples"]) == 3
    assert body["batch_id"] == batch.batch_id


def test_a_poison_batch_is_dead_lettered_and_the_next_batches_go_on(clock, spool, ingest, caplog):
    ingest.state.poison_first_status = 500
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)

    with caplog.at_level(logging.WARNING, logger="ecoreport_agent"):
        agent.run(max_cycles=200)
        agent.uploader.flush()

    (poisoned,) = ingest.state.poisoned
    tries = [r for r in ingest.state.requests if r["batch_id"] == poisoned]
    # Five tries in a row, then set aside; one more once another batch was accepted.
    assert len(tries) == agent.uploader.max_batch_tries + 1
    stats = spool.stats()
    assert stats["dead_letter"] == tries[0]["n"]
    assert stats["pending_samples"] == 0
    assert len(ingest.state.samples) == 3 * 200 - tries[0]["n"]  # nothing else lost
    reason = spool.db.execute("SELECT DISTINCT reason FROM dead_letter").fetchall()
    assert reason == [
        ('HTTP 500 6 times, while the server accepted other batches: {"code": "server_error"}',)
    ]
    assert f"batch {poisoned} dead-lettered" in stats["last_error"]
    assert "upload.suspect" in caplog.text and "upload.poison" in caplog.text
    assert agent.uploader.suspects == []


def test_a_backend_failing_every_batch_dead_letters_nothing(clock, spool, ingest):
    error = {"error": {"code": "server_error"}}
    ingest.state.script = [(500, {}, error)] * 14  # nothing gets through for 14 requests
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)

    agent.run(max_cycles=400)
    agent.uploader.flush()
    agent.uploader.flush()

    stats = spool.stats()
    assert stats["dead_letter"] == 0 and stats["pending_samples"] == 0
    assert len(ingest.state.samples) == 3 * 400
    assert agent.uploader.suspects == []


def test_503_waits_at_least_retry_after_and_never_counts_as_poison(clock, spool, ingest):
    busy = (503, {"Retry-After": "120"}, {"error": {"code": "unavailable"}})
    ingest.state.script = [busy]
    agent = make_agent(fake=three_gpus(clock), spool=spool, clock=clock, server=ingest.url)
    agent.run(max_cycles=1)
    assert len(ingest.state.requests) == 1
    assert agent.uploader.next_attempt_mono - clock.monotonic() > 100  # jitter alone: < 4 s

    ingest.state.script = [busy] * 8
    agent.run(max_cycles=200)
    agent.uploader.flush()

    assert agent.uploader.suspects == []
    assert spool.stats()["dead_letter"] == 0
    assert len(ingest.state.samples) == 3 * 201


@pytest.mark.parametrize("path", ["/admin", ""])
def test_a_redirect_or_an_html_page_acknowledges_nothing_and_the_samples_stay_spooled(
    clock, spool, wrong_site, path
):
    agent = make_agent(
        fake=three_gpus(clock), spool=spool, clock=clock, server=wrong_site.url + path
    )

    agent.run(max_cycles=12)
    agent.uploader.flush()

    stats = spool.stats()
    assert stats["pending_samples"] == 3 * 12 and stats["dead_letter"] == 0
    assert booked_total(spool) > 0
    assert {m for m, _ in wrong_site.requests} == {"POST"}  # no POST turned into a GET
    expected = "HTTP 302 redirect to /admin/login/" if path else "HTTP 200 that is not"
    assert stats["last_error"].startswith(expected)
