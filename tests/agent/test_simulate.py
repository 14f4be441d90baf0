"""The simulator: realistic, deterministic, consistent with its own counter and power limits."""

from __future__ import annotations

import datetime as dt

import pytest
from agent_fakes import T0, FakeClock, make_agent, spooled
from ecoreport_agent.clock import parse_iso_utc
from ecoreport_agent.simulate import (
    COUNTER_PERIOD_S,
    SimGpu,
    SimulatedLabels,
    SimulatedNvml,
    simulate_history,
    simulated_inventory,
)

START = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)


def test_history_is_deterministic_for_a_seed():
    one = list(simulate_history(3, START, START + dt.timedelta(hours=6), 600, seed=1))
    two = list(simulate_history(3, START, START + dt.timedelta(hours=6), 600, seed=1))
    other = list(simulate_history(3, START, START + dt.timedelta(hours=6), 600, seed=2))
    assert one == two
    assert one != other
    assert len(one) == 3 * 36


def test_history_looks_like_a_real_fleet_and_respects_power_limits():
    inventory = {g["uuid"]: g for g in simulated_inventory(8, seed=0)}
    samples = list(simulate_history(8, START, START + dt.timedelta(days=3), 300, seed=0))
    by_hour: dict[int, list[float]] = {}
    jobs, idle, shared = set(), 0, 0
    for s in samples:
        duration = parse_iso_utc(s["end"]) - parse_iso_utc(s["start"])
        limit = inventory[s["gpu_uuid"]]["power_limit_w"]
        assert 0 < s["energy_j"] <= 0.95 * limit * duration  # margin under the backend's check
        assert sum(e["share"] for e in s["attribution"]) <= 1.0
        jobs.update(e["job_id"] for e in s["attribution"])
        idle += not s["attribution"]
        shared += len(s["attribution"]) > 1
        # Said as the agent's booking says it: absent when idle, divided by utilization when
        # two jobs shared the GPU, single otherwise.
        if not s["attribution"]:
            assert "split" not in s
        elif len(s["attribution"]) > 1:
            assert s["split"] == "utilization"
        else:
            assert s["split"] in ("single", "utilization")
        hour = int(s["start"][11:13])
        by_hour.setdefault(hour, []).append(s["energy_j"] / duration / limit)
    assert {s["method"] for s in samples} == {"counter", "power_integration"}
    assert len(jobs) > 20  # jobs start and stop
    assert 0.1 < idle / len(samples) < 0.6  # idle periods
    assert shared > 0  # some GPUs are shared by two jobs
    day = sum(by_hour[13] + by_hour[14] + by_hour[15]) / len(
        by_hour[13] + by_hour[14] + by_hour[15]
    )
    night = sum(by_hour[1] + by_hour[2] + by_hour[3]) / len(by_hour[1] + by_hour[2] + by_hour[3])
    assert day > 1.3 * night  # a diurnal pattern
    models = {g["name"] for g in inventory.values()}
    assert {"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L4"} <= models
    teams = {e["team"] for s in samples for e in s["attribution"]}
    assert teams == {"nlp", "vision", "research"}


def test_idle_big_gpus_draw_between_sixty_and_ninety_watts():
    gpu = SimGpu(0, "sim-host", 0)  # an H100
    t = START.timestamp()
    idle = [gpu.block(b).power_w for b in range(int(t // 900), int(t // 900) + 2000)]
    idle = [p for p, b in zip(idle, range(2000)) if not gpu.block(int(t // 900) + b).jobs]
    assert idle and all(60 <= p <= 90 for p in idle)


def test_history_energy_equals_the_counter_advance():
    gpu = SimGpu(3, "h", 0)
    t0 = gpu.counter_origin(START.timestamp()) + 3600  # a window without a counter reset
    t1 = t0 + 6 * 3600
    history = list(simulate_history(1, t0, t1, 450, seed=3, host="h"))
    total = sum(s["energy_j"] for s in history)
    assert total == pytest.approx((gpu.counter_mj(t1) - gpu.counter_mj(t0)) / 1000, abs=0.01)


def test_simulated_uuids_depend_on_the_host_name_and_the_seed_and_on_nothing_else():
    uuids = {(h, s): SimGpu(s, h, 0).uuid for h in ("sim-node-01", "laptop") for s in (0, 1)}
    assert len(set(uuids.values())) == 4  # two simulators differ by --hostname or --seed
    assert SimGpu(0, "laptop", 0).uuid == uuids[("laptop", 0)]  # stable across processes
    assert SimGpu(0, "laptop", 1).uuid != uuids[("laptop", 0)]


def test_counter_is_the_same_in_every_process_and_resets_like_a_driver_reload():
    a, b = SimGpu(1, "h", 2), SimGpu(1, "h", 2)
    t = START.timestamp() + 12345.6
    a.counter_mj(t - 5000)  # a's cache is warm, b's is cold: same answer
    assert a.counter_mj(t) == b.counter_mj(t)
    origin = a.counter_origin(t) + COUNTER_PERIOD_S
    assert a.counter_mj(origin - 1) > a.counter_mj(origin + 1)
    assert a.counter_mj(origin + 1) < 1_000_000  # a few hundred joules since the "reload"


def test_agent_on_simulated_gpus_books_what_the_simulator_produced(spool):
    clock = FakeClock(wall=T0)
    sim = SimulatedNvml(5, seed=11, host="demo", clock=clock.time)
    agent = make_agent(fake=sim, spool=spool, clock=clock, labels=SimulatedLabels(sim))

    agent.run(max_cycles=180)  # half an hour

    by_uuid = {g.uuid: g for g in sim.gpus}
    for gpu_uuid, gpu in by_uuid.items():
        samples = spooled(spool, gpu_uuid)
        assert len(samples) == 180
        booked = sum(s["energy_j"] for s in samples)
        expected = gpu.energy_between(T0, T0 + 1800)
        if gpu.model.has_counter:
            assert booked == pytest.approx(expected, abs=0.01)
        else:  # the P100: trapezoid over 1 s polls of a rippling power
            assert samples[0]["payload"]["method"] == "power_integration"
            assert booked == pytest.approx(expected, rel=0.002)
    teams = {e["team"] for s in spooled(spool) for e in s["payload"]["attribution"] if e["team"]}
    assert teams  # labels come through the simulated process environment


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        list(simulate_history(1, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2)))
