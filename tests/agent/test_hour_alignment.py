"""What the agent sends lines up with the UTC hours that carbon factors and PUE periods use:
downtime chunks are cut at hour boundaries, and compaction never merges across one. Compaction
also keeps idle energy idle and peak memory a peak."""

from __future__ import annotations

import pytest
from agent_fakes import spooled
from ecoreport_agent.clock import iso_utc
from ecoreport_agent.samples import split_interval
from ecoreport_agent.spool import SpoolSample

HOUR = 3600.0
T = 1_800_000_000.0  # on a UTC hour
NLP = ("llm-pretrain", "nlp", "alice", "slurm-1")


@pytest.mark.parametrize(
    ("start", "end", "edges"),
    [
        (T + 600, T + 1200, [T + 600, T + 1200]),  # inside one hour: one chunk
        (T + 3000, T + 4200, [T + 3000, T + HOUR, T + 4200]),  # 10:50-11:10
        (T + 30, T + 9030, [T + 30, T + HOUR, T + 2 * HOUR, T + 9030]),
        (T, T + 2 * HOUR, [T, T + HOUR, T + 2 * HOUR]),  # on the hours: no empty chunk
        (T + 3599.999, T + 3600.001, [T + 3599.999, T + HOUR, T + 3600.001]),
    ],
)
def test_long_interval_is_cut_at_the_hours_inside_it(start, end, edges):
    energy_mj = 123_456_789
    chunks = split_interval(start, end, energy_mj, 5_000)
    assert [c[0] for c in chunks] + [chunks[-1][1]] == edges
    assert sum(c[2] for c in chunks) == energy_mj  # whole millijoules, exact
    for s, e, mj, _, _ in chunks:
        assert abs(mj - energy_mj * (e - s) / (end - start)) < 1.0  # proportional to time
    # The counter readings chain from one chunk to the next.
    assert chunks[0][3] == 5_000 and chunks[-1][4] == 5_000 + energy_mj
    assert all(a[4] == b[3] for a, b in zip(chunks, chunks[1:]))


def test_half_of_a_10_50_to_11_10_downtime_goes_to_each_hour():
    (s0, e0, mj0, _, _), (s1, e1, mj1, _, _) = split_interval(T + 3000, T + 4200, 720_000, None)
    assert (s0, e0, s1, e1) == (T + 3000, T + HOUR, T + HOUR, T + 4200)
    assert mj0 == mj1 == 360_000


def _sample(k, *, start=T, seconds=10.0, attribution=None, mem=1000, energy=100.0):
    s0, s1 = start + k * seconds, start + (k + 1) * seconds
    payload = {
        "gpu_uuid": "GPU-a",
        "start": iso_utc(s0),
        "end": iso_utc(s1),
        "energy_j": energy,
        "method": "counter",
        "gpu_util_pct": 50.0,
        "mem_util_pct": 10.0,
        "mem_used_mib": mem,
        "power_max_w": 100.0,
        "temperature_c": 50.0,
        "attribution": attribution or [],
    }
    return SpoolSample("GPU-a", s0, s1, energy, "counter", payload)


def _labelled(share=1.0):
    return [{"share": share, "project": NLP[0], "team": NLP[1], "user": NLP[2], "job_id": NLP[3]}]


def _idle_j(rows):
    return sum(r["energy_j"] for r in rows if not r["payload"]["attribution"])


def _attributed_j(rows):
    return sum(r["energy_j"] * e["share"] for r in rows for e in r["payload"]["attribution"])


def test_compaction_keeps_idle_energy_idle(spool):
    # A GPU that goes idle between steps: idle samples (no attribution, which the backend books
    # as idle) interleaved with attributed ones.
    samples = [
        _sample(k, attribution=None if (k // 10) % 2 else _labelled(), energy=100.0 + k)
        for k in range(200)
    ]
    spool.book(samples)
    before = spooled(spool)
    spool.compact(1.0)
    after = spooled(spool)
    assert len(after) == 20  # each stretch of ten merged into one
    assert _idle_j(after) == pytest.approx(_idle_j(before), abs=1e-6)
    assert _attributed_j(after) == pytest.approx(_attributed_j(before), rel=1e-9)
    for row in after:
        shares = sum(e["share"] for e in row["payload"]["attribution"])
        assert shares in (0.0, 1.0)  # no merge left an attributed sample partly unattributed


def test_compaction_keeps_peak_memory_as_a_maximum(spool):
    spool.book([_sample(k, mem=70_000 if k == 3 else 1_000) for k in range(10)])
    spool.compact(1.0)
    (merged,) = spooled(spool)
    assert merged["payload"]["mem_used_mib"] == 70_000


def test_compaction_never_merges_across_an_hour_boundary(spool):
    # 10:50 to 11:10 in 10 s samples, plus one sample that already crosses 12:00.
    samples = [_sample(k, start=T + 3000) for k in range(120)]
    samples.append(_sample(0, start=T + 2 * HOUR - 5, seconds=10.0))
    samples.append(_sample(1, start=T + 2 * HOUR - 5, seconds=10.0))
    spool.book(samples)
    spool.compact(1.0)
    rows = spooled(spool)
    spans = [(r["start_s"], r["end_s"]) for r in rows]
    assert spans[:2] == [(T + 3000, T + HOUR), (T + HOUR, T + 4200)]
    assert (T + 2 * HOUR - 5, T + 2 * HOUR + 5) in spans  # left alone
    for s0, s1 in spans:
        crosses = int(s0 // HOUR) != int((s1 - 1e-6) // HOUR)
        assert not crosses or (s0, s1) == (T + 2 * HOUR - 5, T + 2 * HOUR + 5)
    assert sum(r["energy_j"] for r in rows) == pytest.approx(100.0 * 122)
