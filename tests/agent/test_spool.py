"""Spool: continuity across restarts, compaction under a size bound, batch bookkeeping."""

from __future__ import annotations

import logging

import pytest
from agent_fakes import DictLabels, FakeGpu, FakeNvml, make_agent, spooled
from ecoreport_agent.clock import parse_iso_utc
from ecoreport_agent.spool import Spool, SpoolSample

NLP = ("llm-pretrain", "nlp", "alice", "slurm-1")
VISION = ("detector-v2", "vision", "dana", "slurm-2")


def test_restart_books_the_counter_advance_across_the_downtime_once(clock, spool, caplog):
    gpu = FakeGpu("GPU-a", power_w=250.0)
    fake = FakeNvml(clock, [gpu])
    first_counter = gpu.energy_mj
    make_agent(fake=fake, spool=spool, clock=clock).run(max_cycles=3)
    # The process dies without stopping (kill -9); the GPU keeps drawing 250 W for 2.5 hours.
    clock.advance(9000.0)

    with caplog.at_level(logging.INFO, logger="ecoreport_agent"):
        make_agent(fake=fake, spool=spool, clock=clock).run(max_cycles=3)

    samples = spooled(spool)
    downtime = [s for s in samples if s["end_s"] - s["start_s"] > 11]
    # Cut at the UTC hours inside the downtime (the first agent started on an hour), not into
    # equal parts: each chunk lies in one hour, and its energy is its share of the time.
    assert [round(s["end_s"] - s["start_s"]) for s in downtime] == [3570, 3600, 1830]
    assert [s["end_s"] % 3600 for s in downtime[:-1]] == [0.0, 0.0]
    for s in downtime:
        assert s["energy_j"] == pytest.approx(250.0 * (s["end_s"] - s["start_s"]), abs=0.002)
    assert all(s["payload"]["attribution"] == [] for s in downtime)
    for before, after in zip(samples, samples[1:]):
        assert after["payload"]["start"] == before["payload"]["end"]
        assert after["counter_start_mj"] == before["counter_end_mj"]
    total = sum(s["energy_j"] for s in samples)
    assert total == pytest.approx((gpu.energy_mj - first_counter) / 1000)
    assert total == pytest.approx(250.0 * (30 + 9000 + 30), rel=1e-9)
    assert "resume.booked uuid=GPU-a" in caplog.text


def test_restart_right_after_a_booked_interval_books_nothing_twice(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=250.0)
    fake = FakeNvml(clock, [gpu])
    make_agent(fake=fake, spool=spool, clock=clock).run(max_cycles=2)
    make_agent(fake=fake, spool=spool, clock=clock).run(max_cycles=2)

    samples = spooled(spool)
    starts = [s["payload"]["start"] for s in samples]
    assert len(starts) == len(set(starts)) == 4
    assert sum(s["energy_j"] for s in samples) == pytest.approx(250.0 * 40)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("reboot", "reason=reboot"),
        ("driver_reload", "reason=counter_reset"),
    ],
)
def test_restart_cannot_book_the_downtime_after_a_reboot_or_driver_reload(
    clock, spool, caplog, change, reason
):
    gpu = FakeGpu("GPU-a", power_w=250.0)
    fake = FakeNvml(clock, [gpu])
    make_agent(fake=fake, spool=spool, clock=clock, boot_id="boot-a").run(max_cycles=3)
    clock.advance(600.0)
    boot_id = "boot-a"
    if change == "reboot":
        boot_id = "boot-b"
    else:
        gpu.energy_mj = 5_000.0

    with caplog.at_level(logging.WARNING, logger="ecoreport_agent"):
        make_agent(fake=fake, spool=spool, clock=clock, boot_id=boot_id).run(max_cycles=2)

    samples = spooled(spool)
    assert all(s["end_s"] - s["start_s"] <= 10.0 for s in samples)  # nothing invented
    assert len(samples) == 5
    assert reason in caplog.text
    starts = [s["start_s"] for s in samples]
    assert starts == sorted(starts) and starts[3] - starts[2] > 600  # a gap, honestly left


def _samples(n, *, gpu="GPU-a", start=1_800_000_000.0, seconds=10.0, energy=1234.567, labels=None):
    from ecoreport_agent.clock import iso_utc

    out = []
    for k in range(n):
        s0, s1 = start + k * seconds, start + (k + 1) * seconds
        attribution = []
        for share, lab in labels(k) if labels else []:
            attribution.append(
                {
                    "share": share,
                    "project": lab[0],
                    "team": lab[1],
                    "user": lab[2],
                    "job_id": lab[3],
                }
            )
        payload = {
            "gpu_uuid": gpu,
            "start": iso_utc(s0),
            "end": iso_utc(s1),
            "energy_j": energy + k,
            "method": "counter",
            "gpu_util_pct": float(k % 100),
            "mem_util_pct": 10.0,
            "mem_used_mib": 1000 + k,
            "power_max_w": 100.0 + k,
            "temperature_c": 50.0,
            "attribution": attribution,
        }
        out.append(SpoolSample(gpu, s0, s1, energy + k, "counter", payload))
    return out


def _attributed(samples):
    totals: dict = {}
    for s in samples:
        for e in s["payload"]["attribution"]:
            key = (e["project"], e["team"])
            totals[key] = totals.get(key, 0.0) + e["share"] * s["energy_j"]
    return totals


def test_compaction_merges_old_samples_and_conserves_energy_per_gpu_and_label(spool):
    def labels(k):
        # Blocks, not alternating samples: idle samples merge only with idle ones.
        if k < 200:
            return []
        if k % 2:
            return [(1.0, NLP)]
        return [(0.6, NLP), (0.4, VISION)]

    spool.book(_samples(1000, labels=labels) + _samples(1000, gpu="GPU-b", energy=10.0))
    before = spooled(spool)
    energy_before = {g["uuid"]: g["pending_energy_j"] for g in spool.stats()["gpus"]}
    bytes_before = spool.used_bytes()

    considered, left = spool.compact(0.5)

    after = spooled(spool)
    assert considered == 1000 and left < 10
    assert len(after) == 2000 - considered + left
    energy_after = {g["uuid"]: g["pending_energy_j"] for g in spool.stats()["gpus"]}
    assert energy_after == pytest.approx(energy_before, abs=1e-6)
    assert _attributed(after) == pytest.approx(_attributed(before), rel=1e-5)
    assert spool.used_bytes() < 0.6 * bytes_before
    for s in after:
        payload = s["payload"]
        duration = parse_iso_utc(payload["end"]) - parse_iso_utc(payload["start"])
        assert 0 < duration <= 3600
        assert sum(e["share"] for e in payload["attribution"]) <= 1.0
    for gpu in ("GPU-a", "GPU-b"):
        rows = [s for s in after if s["gpu_uuid"] == gpu]
        for x, y in zip(rows, rows[1:]):
            assert y["payload"]["start"] == x["payload"]["end"]
    merged = next(s for s in after if s["end_s"] - s["start_s"] > 10)
    assert merged["payload"]["power_max_w"] == max(
        s["payload"]["power_max_w"]
        for s in before
        if s["gpu_uuid"] == merged["gpu_uuid"]
        and merged["start_s"] <= s["start_s"] < merged["end_s"]
    )


def test_compaction_merges_samples_of_one_split_only_and_keeps_it(spool):
    """A merged sample says one split that is true of all its energy: runs of one split merge,
    a change of split (or an old sample without one) starts a new run."""
    splits = ["even"] * 4 + ["utilization"] * 3 + [None] * 2 + ["even"] * 2
    samples = _samples(len(splits), labels=lambda k: [(1.0, NLP)])
    for sample, split in zip(samples, splits):
        if split is not None:
            sample.payload["split"] = split
    spool.book(samples)

    spool.compact(1.0)

    after = spooled(spool)
    assert [(s["payload"].get("split"), round(s["end_s"] - s["start_s"])) for s in after] == [
        ("even", 40),
        ("utilization", 30),
        (None, 20),
        ("even", 20),
    ]
    assert sum(s["energy_j"] for s in after) == pytest.approx(sum(s.energy_j for s in samples))


def test_compaction_leaves_samples_already_handed_to_a_batch_alone(spool):
    spool.book(_samples(20))
    batch = spool.next_batch(5)
    assert batch is not None
    spool.compact(1.0)
    rows = spooled(spool)
    assert len([r for r in rows if r["batch_id"] == batch.batch_id]) == 5
    again = spool.next_batch(5)
    assert again is not None and again.batch_id == batch.batch_id  # same id on retry
    assert again.payloads == batch.payloads


def test_agent_keeps_the_spool_under_its_bound_during_a_long_outage_without_losing_energy(
    clock, spool, caplog
):
    gpus = [FakeGpu("GPU-a", power_w=300.0, pids=[1]), FakeGpu("GPU-b", power_w=120.0)]
    agent = make_agent(
        fake=FakeNvml(clock, gpus),
        spool=spool,
        clock=clock,
        labels=DictLabels({1: NLP}),
        server="http://127.0.0.1:9",  # nobody listens: a long outage
        spool_max_bytes=200_000,
    )

    with caplog.at_level(logging.WARNING, logger="ecoreport_agent"):
        agent.run(max_cycles=1000)  # 2.8 hours, ~900 KB of samples unbounded

    assert "spool.compacted" in caplog.text
    assert spool.used_bytes() < 200_000
    stats = spool.stats()
    totals = {g["uuid"]: g["pending_energy_j"] for g in stats["gpus"]}
    assert totals["GPU-a"] == pytest.approx(300.0 * 10_000)
    assert totals["GPU-b"] == pytest.approx(120.0 * 10_000)
    attributed = _attributed(spooled(spool, "GPU-a"))
    assert attributed[("llm-pretrain", "nlp")] == pytest.approx(300.0 * 10_000, rel=1e-5)


def test_book_writes_samples_and_reading_in_one_transaction(spool):
    from ecoreport_agent.spool import Reading

    class Boom(Exception):
        pass

    samples = _samples(3)
    reading = Reading("GPU-a", "counter", 42, 1.0, 2.0, "boot")
    original = spool._insert_samples

    def failing_insert(db, rows, **kw):
        original(db, rows, **kw)
        raise Boom  # dies after the samples, before the reading

    spool._insert_samples = failing_insert  # type: ignore[method-assign]
    with pytest.raises(Boom):
        spool.book(samples, [reading])
    spool._insert_samples = original  # type: ignore[method-assign]
    assert spooled(spool) == [] and spool.reading("GPU-a") is None
    spool.book(samples, [reading])
    assert len(spooled(spool)) == 3 and spool.reading("GPU-a") == reading


def test_spool_survives_reopening(tmp_path):
    path = str(tmp_path / "s.db")
    first = Spool(path)
    first.book(_samples(4))
    first.close()
    second = Spool(path)
    assert second.pending_count() == 4
    assert second.used_bytes() > 4 * 200
    assert second.stats()["gpus"][0]["samples"] == 4
