"""Proration: a sample that crosses an hour boundary is booked to each hour by overlap, exactly.

Float sums are compared exactly where the rollup adds two parts of one share (the split is
exact by construction), and to 1e-12 where the database sums many samples in its own order.
"""

from __future__ import annotations

import importlib
import math
import random
from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from django.db.models import Sum

from ecoreport.accounting.models import HourlyJobUsage, HourlySummary, HourlyUsage
from ecoreport.accounting.services import dirty_hours_rollup, hours_rollup
from ecoreport.telemetry.models import DirtyHour, EnergySample, SampleShare
from tests.conftest import BASE_TIME, iso, make_batch, make_sample

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
H10, H11, H12 = BASE_TIME, BASE_TIME + HOUR, BASE_TIME + 2 * HOUR
CROSSING = {"start": BASE_TIME + timedelta(minutes=50), "seconds": 1200}  # 10:50-11:10


def _batch(samples):
    return make_batch(samples, power_limit_w=1500.0)


def _energy_by_hour(**filters) -> dict:
    rows = HourlyUsage.objects.filter(**filters).values("hour").annotate(e=Sum("energy_j"))
    return {r["hour"]: r["e"] for r in rows}


def _overlap_s(start: datetime, end: datetime, hour: datetime) -> float:
    return max(0.0, (min(end, hour + HOUR) - max(start, hour)).total_seconds())


def test_crossing_sample_is_split_by_overlap_into_both_hours(agent, post_batch):
    post_batch(
        agent.token,
        _batch(
            [
                make_sample(
                    **CROSSING,
                    energy_j=720_000.0,
                    gpu_util_pct=80.0,
                    attribution=[{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "j1"}],
                )
            ]
        ),
    )
    rows = {r.hour: r for r in HourlyUsage.objects.all()}
    assert set(rows) == {H10, H11}
    for row in rows.values():
        assert row.energy_j == 360_000.0
        assert row.gpu_seconds == 600.0
        assert row.util_seconds == 600.0
        assert row.util_x_seconds / row.util_seconds == 80.0
        assert row.util_x_energy_j / row.util_energy_j == 80.0
    # Counted once, in the hour it starts: sample counts still add up over hours.
    assert [rows[H10].sample_count, rows[H11].sample_count] == [1, 0]
    jobs = {j.hour: j.energy_j for j in HourlyJobUsage.objects.filter(job_id="j1")}
    assert jobs == {H10: 360_000.0, H11: 360_000.0}
    summary = {s.hour: s.energy_j for s in HourlySummary.objects.all()}
    assert summary == {H10: 360_000.0, H11: 360_000.0}


@pytest.mark.parametrize(
    ("offset_s", "seconds", "head_s"),
    [
        (0, 3600, 3600),  # a whole hour: one part
        (1800, 1800, 1800),  # ends on the boundary (end is exclusive): one part
        (3599.5, 1, 0.5),  # half a second on each side
        (0.25, 3600, 3599.75),  # an hour long, starting just after the hour
        (3000, 3600, 600),  # the longest crossing sample: most of it in the second hour
    ],
)
def test_split_follows_the_boundary(agent, post_batch, offset_s, seconds, head_s):
    energy_j = 0.1 * seconds * 7  # not a round number in binary
    start = H10 + timedelta(seconds=offset_s)
    post_batch(agent.token, _batch([make_sample(start=start, seconds=seconds, energy_j=energy_j)]))
    parts = _energy_by_hour()
    tail_s = seconds - head_s
    assert set(parts) == ({H10, H11} if tail_s else {H10})
    assert math.isclose(parts[H10], energy_j * head_s / seconds, rel_tol=1e-15)
    assert parts[H10] + parts.get(H11, 0.0) == energy_j  # exact
    seconds_by_hour = dict(HourlyUsage.objects.values_list("hour", "gpu_seconds"))
    assert seconds_by_hour[H10] == head_s
    if tail_s:
        assert seconds_by_hour[H11] == tail_s


def _random_sample_table(rng: random.Random, *, gpus: int, per_gpu: int) -> list[dict]:
    """Back-to-back samples of random length (1 ms to an hour) at random offsets, so that most
    hour boundaries are crossed somewhere, with random energies and random attributions."""
    attributions = [
        [],  # idle
        [{"share": 1.0, "team": "nlp", "project": "llm", "job_id": "j-a"}],
        [
            {"share": 0.6, "team": "nlp", "project": "llm", "job_id": "j-b"},
            {"share": 0.3, "team": "vision", "project": "detr", "job_id": "j-c"},
        ],
        [{"share": 0.5, "project": "orphan"}],  # half unattributed, not idle
    ]
    samples = []
    for g in range(gpus):
        moment = H10 + timedelta(microseconds=rng.randrange(0, 3_600_000_000))
        for _ in range(per_gpu):
            seconds = rng.choice([rng.uniform(0.001, 3600.0), rng.uniform(1, 120)])
            seconds = round(seconds, 6)
            samples.append(
                make_sample(
                    gpu=f"GPU-{g}",
                    start=moment,
                    seconds=seconds,
                    energy_j=rng.uniform(0, 1000.0) * seconds,
                    gpu_util_pct=rng.choice([None, rng.uniform(0, 100)]),
                    attribution=rng.choice(attributions),
                )
            )
            moment += timedelta(seconds=seconds) + timedelta(seconds=rng.choice([0, 0, 17.5]))
    return samples


def test_random_intervals_conserve_energy_per_gpu_and_follow_the_overlap(agent, post_batch):
    rng = random.Random(20261202)
    samples = _random_sample_table(rng, gpus=4, per_gpu=40)
    response = post_batch(agent.token, _batch(samples)).json()
    assert response["accepted"] == len(samples), response["rejected"]
    assert not DirtyHour.objects.exists()
    stored = list(EnergySample.objects.select_related("gpu"))
    crossing = [
        s for s in stored if s.start.replace(minute=0, second=0, microsecond=0) + HOUR < s.end
    ]
    assert len(crossing) >= 10  # the table really exercises the split
    expected: dict[tuple[str, datetime], Fraction] = {}
    for s in stored:
        hour = s.start.replace(minute=0, second=0, microsecond=0)
        while hour < s.end:
            overlap = Fraction(_overlap_s(s.start, s.end, hour)) / Fraction(s.duration_s)
            key = (s.gpu.uuid, hour)
            expected[key] = expected.get(key, Fraction(0)) + Fraction(s.energy_j) * overlap
            hour += HOUR
    rolled = {
        (r["gpu__uuid"], r["hour"]): r["e"]
        for r in HourlyUsage.objects.values("gpu__uuid", "hour").annotate(e=Sum("energy_j"))
    }
    assert rolled.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(rolled[key], float(value), rel_tol=1e-12, abs_tol=1e-9), key
    for gpu in {s.gpu.uuid for s in stored}:
        raw = math.fsum(s.energy_j for s in stored if s.gpu.uuid == gpu)
        total = math.fsum(v for (g, _), v in rolled.items() if g == gpu)
        assert math.isclose(total, raw, rel_tol=1e-12)
    # GPU time is split the same way: each GPU's seconds add up to its samples' durations.
    for gpu in {s.gpu.uuid for s in stored}:
        raw_s = math.fsum(s.duration_s for s in stored if s.gpu.uuid == gpu)
        rolled_s = HourlyUsage.objects.filter(gpu__uuid=gpu).aggregate(t=Sum("gpu_seconds"))["t"]
        assert math.isclose(rolled_s, raw_s, rel_tol=1e-12)
    # Counts: every share row once.
    assert HourlyUsage.objects.aggregate(n=Sum("sample_count"))["n"] == SampleShare.objects.count()


def test_each_shares_parts_add_up_to_the_share_exactly(make_agent, cast, post_batch):
    # One crossing sample per GPU, so that each HourlyUsage row holds one part of one share and
    # the two parts of a share can be compared with the share itself, bit for bit.
    rng = random.Random(13)
    samples = []
    for g in range(30):
        start = H10 + timedelta(seconds=rng.uniform(0.001, 3599.999))
        seconds = round(rng.uniform((H11 - start).total_seconds() + 0.001, 3600.0), 6)
        samples.append(
            make_sample(
                gpu=f"GPU-{g}",
                start=start,
                seconds=seconds,
                energy_j=rng.uniform(1, 1200.0) * seconds,
                attribution=[
                    {"share": 0.45, "team": "nlp", "project": "llm"},
                    {"share": 0.35, "team": "vision", "project": "detr"},
                ],
            )
        )
    host = make_agent(cast.org, "node-shares")
    assert post_batch(host.token, _batch(samples)).json()["accepted"] == 30
    checked = 0
    for share in SampleShare.objects.select_related("sample"):
        rows = HourlyUsage.objects.filter(
            gpu_id=share.sample.gpu_id, team_id=share.team_id, project_id=share.project_id
        )
        parts = {r.hour: r for r in rows}
        assert set(parts) == {H10, H11}
        assert parts[H10].energy_j + parts[H11].energy_j == share.energy_j
        for part in parts.values():
            # attributed + unattributed = measured, per GPU and hour
            expected_unattributed = 0.0 if share.attributed else part.energy_j
            assert part.unattributed_energy_j == expected_unattributed
        checked += 1
    assert checked == 90
    for g in range(30):
        sample = EnergySample.objects.get(gpu__uuid=f"GPU-{g}")
        parts = _energy_by_hour(gpu_id=sample.gpu_id)
        assert math.isclose(parts[H10] + parts[H11], sample.energy_j, rel_tol=1e-15)


def test_idle_energy_stays_idle_in_both_hours(agent, post_batch):
    post_batch(agent.token, _batch([make_sample(**CROSSING, energy_j=120_000.0, attribution=[])]))
    rows = list(HourlyUsage.objects.order_by("hour"))
    assert [r.hour for r in rows] == [H10, H11]
    for row in rows:
        assert row.energy_j == 60_000.0
        assert row.idle_energy_j == row.energy_j == row.unattributed_energy_j


def test_ingest_marks_every_hour_a_sample_overlaps(agent, post_batch, monkeypatch):
    monkeypatch.setattr("ecoreport.telemetry.services.rollup_soon", lambda: None)
    post_batch(
        agent.token,
        _batch(
            [
                make_sample(**CROSSING),
                make_sample(start=H12 + timedelta(minutes=30), seconds=1800),  # ends on 13:00
            ]
        ),
    )
    assert sorted(DirtyHour.objects.values_list("hour", flat=True)) == [H10, H11, H12]
    assert dirty_hours_rollup() == 3
    assert _energy_by_hour() == {H10: 1500.0, H11: 1500.0, H12: 3000.0}


def test_late_crossing_sample_reaches_the_already_rolled_next_hour(agent, post_batch):
    post_batch(agent.token, _batch([make_sample(start=H11 + timedelta(minutes=30))]))
    assert _energy_by_hour() == {H11: 3000.0}
    post_batch(agent.token, _batch([make_sample(**CROSSING, energy_j=1000.0)]))
    assert _energy_by_hour() == {H10: 500.0, H11: 3500.0}


def test_rolling_up_one_hour_changes_no_other(agent, post_batch, cast):
    post_batch(
        agent.token,
        _batch(
            [
                make_sample(**CROSSING, energy_j=1000.0),
                make_sample(start=H11 + timedelta(minutes=50), seconds=1200, energy_j=2000.0),
            ]
        ),
    )
    assert _energy_by_hour() == {H10: 500.0, H11: 1500.0, H12: 1000.0}
    before = sorted(HourlyUsage.objects.values_list("hour", "energy_j", "id"))
    # The middle hour alone: it reads the tail of the sample that started in hour 10 and the
    # head of the one that runs into hour 12, and touches neither neighbour's rows.
    assert hours_rollup(organization_id=cast.org.pk, hours=[H11]) == 1
    after = sorted(HourlyUsage.objects.values_list("hour", "energy_j", "id"))
    assert [r for r in after if r[0] != H11] == [r for r in before if r[0] != H11]
    assert _energy_by_hour() == {H10: 500.0, H11: 1500.0, H12: 1000.0}
    HourlyUsage.objects.all().delete()
    hours_rollup(organization_id=cast.org.pk, hours=[H12])
    assert _energy_by_hour() == {H12: 1000.0}


def test_upgrade_marks_the_hours_of_crossing_samples_for_a_rebuild(agent, post_batch, cast):
    from django.apps import apps

    migration = importlib.import_module(
        "ecoreport.accounting.migrations.0004_prorate_hour_crossing_samples"
    )
    post_batch(
        agent.token,
        _batch(
            [
                make_sample(**CROSSING, energy_j=1000.0),
                make_sample(start=H12 + timedelta(minutes=10)),  # inside hour 12: left alone
                make_sample(start=H12 + timedelta(minutes=59), seconds=60),  # 12:59-13:00
            ]
        ),
    )
    # As the rollup before proration left it: the whole sample in the hour it starts in.
    HourlyUsage.objects.filter(hour=H11).delete()
    HourlyUsage.objects.filter(hour=H10).update(energy_j=1000.0)
    migration.mark_crossing_hours(apps, None)
    assert sorted(DirtyHour.objects.values_list("hour", flat=True)) == [H10, H11]
    assert dirty_hours_rollup() == 2
    assert _energy_by_hour() == {H10: 500.0, H11: 500.0, H12: 6000.0}


def test_usage_api_by_hour_shows_the_split(agent, post_batch, cast, get_usage):
    post_batch(agent.token, _batch([make_sample(**CROSSING, energy_j=720_000.0)]))
    body = get_usage(cast.member_token, start=iso(H10), end=iso(H12), granularity="hour").json()
    by_hour = {r["period_start"]: r for r in body["rows"]}
    assert [(r["energy_kwh"], r["gpu_hours"]) for r in by_hour.values()] == [
        (0.1, 600 / 3600),
        (0.1, 600 / 3600),
    ]
    assert body["totals"]["energy_kwh"] == 0.2
