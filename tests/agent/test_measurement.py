"""Measurement: counters, power integration, resets, lost GPUs, clock steps, MIG."""

from __future__ import annotations

import logging

import pytest
from agent_fakes import T0, TIMEOUT, DictLabels, FakeClock, FakeGpu, FakeNvml, make_agent, spooled
from ecoreport_agent.clock import iso_utc, parse_iso_utc

ALICE = ("llm-pretrain", "nlp", "alice", "slurm-81234")


def _durations(samples):
    return [round(s["end_s"] - s["start_s"], 3) for s in samples]


def assert_contiguous(samples):
    for before, after in zip(samples, samples[1:]):
        assert after["payload"]["start"] == before["payload"]["end"]


def assert_counter_chain(samples):
    """Each counter sample is exactly the advance between its two readings, and they chain."""
    for s in samples:
        assert s["energy_j"] == pytest.approx((s["counter_end_mj"] - s["counter_start_mj"]) / 1000)
    for before, after in zip(samples, samples[1:]):
        assert after["counter_start_mj"] == before["counter_end_mj"]


def test_steady_load_books_the_counter_delta_in_contiguous_ten_second_samples(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=350.0, pids=[101], process_util={101: 90})
    fake = FakeNvml(clock, [gpu])
    counter_at_start = gpu.energy_mj
    agent = make_agent(fake=fake, spool=spool, clock=clock, labels=DictLabels({101: ALICE}))

    agent.run(max_cycles=6)

    samples = spooled(spool)
    assert len(samples) == 6
    assert _durations(samples) == [10.0] * 6
    assert samples[0]["payload"]["start"] == iso_utc(T0) == "2027-01-15T08:00:00.000Z"
    assert_contiguous(samples)
    assert_counter_chain(samples)
    first = samples[0]["payload"]
    assert first == {
        "gpu_uuid": "GPU-a",
        "start": "2027-01-15T08:00:00.000Z",
        "end": "2027-01-15T08:00:10.000Z",
        "energy_j": 3500.0,
        "method": "counter",
        "gpu_util_pct": 80.0,
        "mem_util_pct": 40.0,
        "mem_used_mib": 20000,
        "power_max_w": 350.0,
        "temperature_c": 60.0,
        "attribution": [
            {
                "share": 1.0,
                "project": "llm-pretrain",
                "team": "nlp",
                "user": "alice",
                "job_id": "slurm-81234",
            }
        ],
        "split": "single",  # one process: its energy needed no dividing
    }
    booked = sum(s["energy_j"] for s in samples)
    assert booked == pytest.approx((gpu.energy_mj - counter_at_start) / 1000)
    assert spool.stats()["gpus"][0]["energy_j"] == pytest.approx(booked)


def test_gpu_without_counter_integrates_power_with_the_trapezoid_rule(clock, spool):
    start = clock.mono
    # A ramp from 100 W, +2 W/s: the trapezoid over 1 s polls is exact for it.
    gpu = FakeGpu("GPU-p100", has_counter=False, power_limit_w=250.0)
    gpu.power_fn = lambda mono: 100.0 + 2.0 * (mono - start)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)

    agent.run(max_cycles=3)

    samples = spooled(spool)
    assert [s["payload"]["method"] for s in samples] == ["power_integration"] * 3
    for k, s in enumerate(samples):
        t0, t1 = 10.0 * k, 10.0 * (k + 1)
        expected = 100.0 * (t1 - t0) + (t1**2 - t0**2)  # integral of 100 + 2t
        assert s["energy_j"] == pytest.approx(expected, abs=0.01)
        assert s["payload"]["power_max_w"] == pytest.approx(100.0 + 2.0 * t1)
        assert s["counter_start_mj"] is None
    assert_contiguous(samples)


def test_counter_reset_books_no_negative_or_invented_energy(clock, spool, caplog):
    gpu = FakeGpu("GPU-a", power_w=300.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)
    # Driver reload 25 s in: the counter restarts near zero.
    clock.at(clock.mono + 25.0, lambda: setattr(gpu, "energy_mj", 1000.0))

    with caplog.at_level(logging.WARNING, logger="ecoreport_agent"):
        agent.run(max_cycles=6)

    samples = spooled(spool)
    energies = [s["energy_j"] for s in samples]
    assert all(e >= 0 for e in energies)
    # Interval 3 (20-30 s) saw the reset: not booked. The others are 3000 J each.
    assert energies == pytest.approx([3000.0] * 5)
    starts = [s["start_s"] - T0 for s in samples]
    assert starts == pytest.approx([0, 10, 30, 40, 50])
    assert "gpu.counter_reset" in caplog.text


def test_failed_counter_read_is_not_a_zero_the_next_interval_covers_it(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=200.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)
    func = "nvmlDeviceGetTotalEnergyConsumption"
    clock.at(clock.mono + 15.0, lambda: gpu.failing.__setitem__(func, TIMEOUT))
    clock.at(clock.mono + 25.0, lambda: gpu.failing.pop(func))

    agent.run(max_cycles=4)

    samples = spooled(spool)
    assert _durations(samples) == [10.0, 20.0, 10.0]
    assert [s["energy_j"] for s in samples] == pytest.approx([2000.0, 4000.0, 2000.0])
    assert_contiguous(samples)
    assert_counter_chain(samples)


def test_gpu_lost_mid_run_others_continue_and_its_energy_is_booked_when_it_returns(
    clock, spool, caplog
):
    a = FakeGpu("GPU-a", power_w=300.0)
    b = FakeGpu("GPU-b", power_w=100.0)
    b_start = b.energy_mj
    agent = make_agent(fake=FakeNvml(clock, [a, b]), spool=spool, clock=clock, rediscover_s=30.0)
    clock.at(clock.mono + 25.0, lambda: setattr(b, "lost", True))
    clock.at(clock.mono + 75.0, lambda: setattr(b, "lost", False))

    with caplog.at_level(logging.INFO, logger="ecoreport_agent"):
        agent.run(max_cycles=12)

    a_samples = spooled(spool, "GPU-a")
    assert _durations(a_samples) == [10.0] * 12
    assert [s["energy_j"] for s in a_samples] == pytest.approx([3000.0] * 12)

    b_samples = spooled(spool, "GPU-b")
    assert "gpu.lost uuid=GPU-b" in caplog.text
    assert "resume.booked uuid=GPU-b" in caplog.text
    # No gap and no overlap: the advance while it was lost is one unattributed sample.
    assert_contiguous(b_samples)
    assert_counter_chain(b_samples)
    gap = [s for s in b_samples if s["end_s"] - s["start_s"] > 10.5]
    assert len(gap) == 1 and gap[0]["payload"]["attribution"] == []
    assert gap[0]["payload"]["gpu_util_pct"] is None
    assert b_samples[-1]["end_s"] == a_samples[-1]["end_s"]
    booked = sum(s["energy_j"] for s in b_samples)
    assert booked == pytest.approx((b.energy_mj - b_start) / 1000)
    assert booked == pytest.approx(100.0 * 120)


def test_gpu_that_disappears_from_the_bus_is_found_again_by_uuid(clock, spool):
    a = FakeGpu("GPU-a")
    b = FakeGpu("GPU-b")
    agent = make_agent(fake=FakeNvml(clock, [a, b]), spool=spool, clock=clock, rediscover_s=20.0)
    clock.at(clock.mono + 15.0, lambda: setattr(a, "present", False))  # hot-unplug: indices shift
    clock.at(clock.mono + 45.0, lambda: setattr(a, "present", True))

    agent.run(max_cycles=8)

    assert set(agent.gpus) == {"GPU-a", "GPU-b"}
    assert not agent.lost
    assert_contiguous(spooled(spool, "GPU-a"))
    assert _durations(spooled(spool, "GPU-b")) == [10.0] * 8


def test_a_long_outage_of_readings_is_split_into_samples_of_at_most_an_hour(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=400.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, interval_s=60.0)
    func = "nvmlDeviceGetTotalEnergyConsumption"
    clock.at(clock.mono + 90.0, lambda: gpu.failing.__setitem__(func, TIMEOUT))
    clock.at(clock.mono + 7290.0, lambda: gpu.failing.pop(func))

    agent.run(max_cycles=122)

    samples = spooled(spool)
    durations = _durations(samples)
    assert max(durations) <= 3600.0
    # 60-120 s failed ... 7260-7320 s read again: 7260 s, cut at the two UTC hours inside it.
    assert durations == [60.0, 3540.0, 3600.0, 120.0]
    assert [s["end_s"] % 3600 for s in samples[1:3]] == [0.0, 0.0]
    assert_contiguous(samples)
    assert_counter_chain(samples)
    total = sum(s["energy_j"] for s in samples)
    assert total == pytest.approx(400.0 * 122 * 60)


def test_wall_clock_stepped_back_never_reuses_a_start_and_durations_stay_monotonic(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=100.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)

    def step_back() -> None:
        clock.wall -= 3600.0

    clock.at(clock.mono + 25.0, step_back)
    agent.run(max_cycles=6)

    samples = spooled(spool)
    assert _durations(samples) == [10.0] * 6
    assert_contiguous(samples)
    starts = [s["payload"]["start"] for s in samples]
    assert len(set(starts)) == 6 and starts == sorted(starts)


def test_wall_clock_stepped_forward_leaves_a_gap_not_an_overlap(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=100.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)

    def step_forward() -> None:
        clock.wall += 600.0

    clock.at(clock.mono + 25.0, step_forward)
    agent.run(max_cycles=6)

    samples = spooled(spool)
    assert _durations(samples) == [10.0] * 6
    assert [s["energy_j"] for s in samples] == pytest.approx([1000.0] * 6)
    gaps = [
        parse_iso_utc(b["payload"]["start"]) - parse_iso_utc(a["payload"]["end"])
        for a, b in zip(samples, samples[1:])
    ]
    assert all(g >= 0 for g in gaps)
    assert max(gaps) == pytest.approx(600.0, abs=10.0)


def test_mig_processes_are_charged_to_the_physical_gpu_by_instance_size(clock, spool):
    gpu = FakeGpu(
        "GPU-mig",
        memory_mib=80_000,
        power_w=400.0,
        mig=[(40_000, [201]), (20_000, [202, 203]), (20_000, [])],
    )
    labels = DictLabels(
        {
            201: ("big", "nlp", "alice", None),
            202: ("small", "vision", "dana", None),
            203: ("small", "vision", "emre", None),
        }
    )
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=labels)

    agent.run(max_cycles=2)

    sample = spooled(spool)[-1]["payload"]
    assert sample["gpu_uuid"] == "GPU-mig" and sample["energy_j"] == pytest.approx(4000.0)
    assert sample["gpu_util_pct"] is None  # MIG-enabled GPUs do not report it
    shares = {(e["project"], e["user"]): e["share"] for e in sample["attribution"]}
    assert shares == {("big", "alice"): 0.5, ("small", "dana"): 0.125, ("small", "emre"): 0.125}


def test_first_interval_after_start_is_partial_and_boundaries_are_wall_aligned(spool):
    clock = FakeClock(wall=T0 + 3.25)
    agent = make_agent(fake=FakeNvml(clock, [FakeGpu("GPU-a")]), spool=spool, clock=clock)

    agent.run(max_cycles=2)

    samples = spooled(spool)
    assert [s["payload"]["start"] for s in samples] == [
        "2027-01-15T08:00:03.250Z",
        "2027-01-15T08:00:10.000Z",
    ]
    assert samples[-1]["payload"]["end"] == "2027-01-15T08:00:20.000Z"


def test_stop_books_the_interval_in_progress(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=500.0)
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)
    clock.at(clock.mono + 14.0, clock.stop.set)  # SIGTERM 4 s into the second interval

    agent.run()

    samples = spooled(spool)
    assert _durations(samples) == [10.0, 4.0]
    assert samples[-1]["energy_j"] == pytest.approx(2000.0)


def test_an_advance_above_the_power_limit_is_booked_up_to_it_and_the_rest_carried(clock, spool):
    # The counter jumps by 5 kJ at 25 s without the GPU drawing more (dcgm-exporter's counter
    # moves in steps of its collect interval; a counter read lags its timestamp). Booked as is,
    # 7.5 kJ in 10 s is 750 W on a 300 W GPU: the backend refuses it and the energy is lost.
    gpu = FakeGpu("GPU-a", power_w=250.0, power_limit_w=300.0)
    counter_at_start = gpu.energy_mj
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)
    clock.at(clock.mono + 25.0, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 5_000_000))

    agent.run(max_cycles=12)

    samples = spooled(spool)
    cap = 300.0 * 1.05 * 10  # POWER_CAP_FACTOR of the limit over a 10 s interval
    energies = [s["energy_j"] for s in samples]
    assert energies[:2] == pytest.approx([2500.0, 2500.0])
    # Capped while the 4,350 J carried drain at 650 J an interval, then back to the draw.
    assert energies[2:9] == pytest.approx([cap] * 7)
    assert energies[9] == pytest.approx(2500.0 + 4350.0 - 6 * 650.0)
    assert energies[10:] == pytest.approx([2500.0, 2500.0])
    assert_contiguous(samples)
    assert_counter_chain(samples)
    assert sum(energies) == pytest.approx((gpu.energy_mj - counter_at_start) / 1000)


def test_energy_carried_at_a_stop_is_booked_by_the_next_run(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=250.0, power_limit_w=300.0)
    fake = FakeNvml(clock, [gpu])
    counter_at_start = gpu.energy_mj
    clock.at(clock.mono + 15.0, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 5_000_000))
    make_agent(fake=fake, spool=spool, clock=clock).run(max_cycles=2)
    carried = (gpu.energy_mj - counter_at_start) / 1000 - sum(s["energy_j"] for s in spooled(spool))
    assert carried == pytest.approx(5000.0 - 650.0)
    clock.advance(60.0)  # stopped for a minute

    make_agent(fake=fake, spool=spool, clock=clock).run(max_cycles=1)

    samples = spooled(spool)
    assert_contiguous(samples)
    assert_counter_chain(samples)
    # The restart's resume books the minute of downtime and the carried rest, once.
    assert sum(s["energy_j"] for s in samples) == pytest.approx(
        (gpu.energy_mj - counter_at_start) / 1000
    )


def test_the_first_interval_starts_at_the_counter_reading_not_after_the_spool_write(spool):
    # Discovery reads the counter, then writes the inventory to the spool; time spent there
    # must not fall outside the first interval's label while its energy is inside.
    clock = FakeClock(wall=T0 + 9.5)
    gpu = FakeGpu("GPU-a", power_w=400.0, power_limit_w=400.0)
    fake = FakeNvml(clock, [gpu])
    agent = make_agent(fake=fake, spool=spool, clock=clock)
    upsert = agent.spool.upsert_gpus

    def slow_upsert(gpus):
        clock.advance(0.05)  # a 50 ms spool write
        upsert(gpus)

    agent.spool.upsert_gpus = slow_upsert  # type: ignore[method-assign]

    agent.run(max_cycles=2)

    first = spooled(spool)[0]
    assert first["start_s"] == pytest.approx(T0 + 9.5)
    assert first["energy_j"] == pytest.approx(400.0 * (first["end_s"] - first["start_s"]))
