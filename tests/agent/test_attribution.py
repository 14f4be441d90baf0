"""Attribution: labels from the process environment, shares of a shared GPU, rounding."""

from __future__ import annotations

import os
import pwd
import random
import subprocess
import sys
import time

import pytest
from agent_fakes import DictLabels, FakeGpu, FakeNvml, make_agent, spooled
from ecoreport_agent.attribution import (
    ProcLabelSource,
    clean_label,
    labels_from_environment,
    round_shares,
)

NLP = ("llm-pretrain", "nlp", "alice", "slurm-1")
VISION = ("detector-v2", "vision", "dana", "slurm-2")


def _shares(spool):
    sample = spooled(spool)[-1]["payload"]
    return {e["team"]: e["share"] for e in sample["attribution"]}


def test_shared_gpu_is_split_by_per_process_utilization(clock, spool):
    gpu = FakeGpu("GPU-a", pids=[301, 302], process_util={301: 75, 302: 25})
    labels = DictLabels({301: NLP, 302: VISION})
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=labels)

    agent.run(max_cycles=2)

    assert _shares(spool) == {"nlp": 0.75, "vision": 0.25}
    assert {s["payload"]["split"] for s in spooled(spool)} == {"utilization"}


def test_shared_gpu_is_split_evenly_when_per_process_utilization_is_not_reported(clock, spool):
    gpu = FakeGpu("GPU-a", pids=[301, 302], process_util=None)
    labels = DictLabels({301: NLP, 302: VISION})
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=labels)

    agent.run(max_cycles=2)

    assert _shares(spool) == {"nlp": 0.5, "vision": 0.5}
    assert {s["payload"]["split"] for s in spooled(spool)} == {"even"}
    assert "process_util" in agent.gpus["GPU-a"].unsupported  # asked once, not every interval


def test_energy_with_no_process_is_left_unattributed(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=80.0, pids=[])
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock)

    agent.run(max_cycles=2)

    assert [s["payload"]["attribution"] for s in spooled(spool)] == [[], []]
    assert all("split" not in s["payload"] for s in spooled(spool))  # nothing was divided


def test_a_job_that_ends_mid_interval_gets_the_energy_of_its_part_only(clock, spool):
    gpu = FakeGpu("GPU-a", power_w=400.0, pids=[401], process_util={401: 90})
    agent = make_agent(
        fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=DictLabels({401: NLP})
    )

    def job_ends() -> None:
        gpu.pids = []
        gpu.power_w = 100.0

    clock.at(clock.mono + 15.5, job_ends)
    agent.run(max_cycles=3)

    # Second interval: polls at 11..15 s see the job at 400 W, 16..20 s see an idle 100 W GPU.
    samples = spooled(spool)
    assert samples[1]["payload"]["attribution"][0]["share"] == pytest.approx(0.8)
    assert samples[2]["payload"]["attribution"] == []
    # One process on the GPU at a time: its energy needed no dividing.
    assert [s["payload"].get("split") for s in samples] == ["single", "single", None]


def test_processes_that_take_turns_are_single_and_one_shared_tick_is_enough_for_even(clock, spool):
    gpu = FakeGpu("GPU-a", pids=[301], process_util=None)
    labels = DictLabels({301: NLP, 302: VISION})
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=labels)

    def take_turns() -> None:
        gpu.pids = [302]

    def share_once() -> None:
        gpu.pids = [301, 302]

    def alone_again() -> None:
        gpu.pids = [302]

    clock.at(clock.mono + 5.5, take_turns)
    clock.at(clock.mono + 15.5, share_once)
    clock.at(clock.mono + 16.5, alone_again)
    agent.run(max_cycles=2)

    samples = spooled(spool)
    # First interval: 301 then 302, never both at one tick; second: both at one tick, evenly.
    assert {e["team"] for e in samples[0]["payload"]["attribution"]} == {"nlp", "vision"}
    assert [s["payload"]["split"] for s in samples] == ["single", "even"]


def test_processes_with_the_same_labels_are_one_entry(clock, spool):
    gpu = FakeGpu("GPU-a", pids=[501, 502, 503, 504], process_util={})
    labels = DictLabels({pid: NLP for pid in (501, 502, 503, 504)})
    agent = make_agent(fake=FakeNvml(clock, [gpu]), spool=spool, clock=clock, labels=labels)

    agent.run(max_cycles=1)

    assert spooled(spool)[0]["payload"]["attribution"] == [
        {
            "share": 1.0,
            "project": "llm-pretrain",
            "team": "nlp",
            "user": "alice",
            "job_id": "slurm-1",
        }
    ]


@pytest.mark.parametrize(
    ("env", "unix_user", "expected"),
    [
        (
            {"ECOREPORT_PROJECT": "p", "ECOREPORT_TEAM": "t", "ECOREPORT_JOB_ID": "j"},
            "bob",
            ("p", "t", "bob", "j"),
        ),
        (
            {"SLURM_JOB_ID": "81234", "SLURM_JOB_ACCOUNT": "nlp", "SLURM_JOB_USER": "alice"},
            "root",
            (None, "nlp", "alice", "slurm-81234"),
        ),
        (
            # Explicit labels win over Slurm's.
            {
                "ECOREPORT_TEAM": "vision",
                "SLURM_JOB_ACCOUNT": "nlp",
                "ECOREPORT_JOB_ID": "k8s-7",
                "SLURM_JOB_ID": "1",
            },
            "carol",
            (None, "vision", "carol", "k8s-7"),
        ),
        ({}, None, (None, None, None, None)),
        ({"ECOREPORT_PROJECT": ""}, "dave", (None, None, "dave", None)),
    ],
)
def test_labels_from_environment(env, unix_user, expected):
    assert labels_from_environment(env, unix_user) == expected


# Each row: environment, what the agent sends (project, team, user, job_id).
ODD_LABELS = [
    ("too long", {"ECOREPORT_TEAM": "t" * 257}, (None, "t" * 200, "u", None)),
    ("NUL and escape", {"ECOREPORT_PROJECT": "a\x00b\x1b[0m"}, ("ab[0m", None, "u", None)),
    ("zero-width space kept", {"ECOREPORT_TEAM": "nlp\u200b"}, (None, "nlp\u200b", "u", None)),
    ("tabs and newlines", {"ECOREPORT_TEAM": " big\tdata\n"}, (None, "big data", "u", None)),
    ("decomposed accent to NFC", {"ECOREPORT_TEAM": "E\u0301quipe"}, (None, "Équipe", "u", None)),
    ("other scripts kept", {"ECOREPORT_TEAM": "研究チーム"}, (None, "研究チーム", "u", None)),
    (
        "invisible team falls back to Slurm's account",
        {"ECOREPORT_TEAM": "\u200b", "SLURM_JOB_ACCOUNT": "nlp"},
        (None, "nlp", "u", None),
    ),
    (
        "long job ids fit the backend's 128 characters",
        {"ECOREPORT_JOB_ID": "j" * 300, "SLURM_JOB_USER": "x" * 300},
        (None, None, "x" * 128, "j" * 128),
    ),
    ("long Slurm job id", {"SLURM_JOB_ID": "9" * 300}, (None, None, "u", "slurm-" + "9" * 122)),
]


@pytest.mark.parametrize(("case", "env", "expected"), ODD_LABELS, ids=[c[0] for c in ODD_LABELS])
def test_labels_are_cleaned_and_truncated_before_sending(case, env, expected):
    assert labels_from_environment(env, "u") == expected


def test_agent_and_backend_clean_labels_alike():
    # The agent imports nothing from the backend: the same table, checked on both sides
    # (tests/backend/test_ingest_counting.py::CLEANED).
    for raw, cleaned in [("nlp\u200b", "nlp\u200b"), ("\ud800x", "x"), ("\u200b\x00 ", None)]:
        assert clean_label(raw) == cleaned


def test_labels_are_read_from_a_real_process_environment():
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "ECOREPORT_PROJECT": "diffusion-lab",
        "SLURM_JOB_ACCOUNT": "research",
        "SLURM_JOB_ID": "4242",
        "UNRELATED_SECRET": "not-read",
    }
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        time.sleep(0.05)
        source = ProcLabelSource()
        me = pwd.getpwuid(os.getuid()).pw_name
        assert source.labels(child.pid) == ("diffusion-lab", "research", me, "slurm-4242")
        source.labels(child.pid)
        assert source.reads == 1  # cached per (pid, start time)
    finally:
        child.kill()
        child.wait()


def test_label_cache_is_keyed_by_process_start_time_so_recycled_pids_are_reread(tmp_path):
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)

    def process(start_ticks: int, project: str) -> None:
        (proc / "77" / "stat").write_text("77 (python (x)) S 1 " + "0 " * 17 + f"{start_ticks} 0\n")
        (proc / "77" / "environ").write_bytes(f"ECOREPORT_PROJECT={project}\0HOME=/x\0".encode())

    source = ProcLabelSource(proc_root=str(proc))
    process(1000, "first")
    assert source.labels(77)[0] == "first"
    process(1000, "changed-but-same-process")
    assert source.labels(77)[0] == "first"
    process(2000, "second")  # the pid was reused by a new process
    assert source.labels(77)[0] == "second"
    assert source.reads == 2


@pytest.mark.parametrize(
    "raw",
    [
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3},
        {"a": 0.1, "b": 0.2, "c": 0.7},
        {"a": 1.0000000001},
        {"a": 0.9999999, "b": 1e-9},
        {"a": 0.5, "b": 0.5},
    ],
)
def test_rounded_shares_are_in_range_and_never_sum_above_one(raw):
    shares = round_shares({(k, None, None, None): v for k, v in raw.items()})
    values = [v for _, v in shares]
    assert all(0 < v <= 1 for v in values)
    assert sum(values) <= 1.0
    assert sum(raw.values()) - sum(values) < 1e-5 * len(raw) + 1e-9


def test_rounded_shares_of_many_random_splits_never_exceed_one():
    rng = random.Random(3)
    for _ in range(2000):
        n = rng.randint(1, 12)
        weights = [rng.random() for _ in range(n)]
        total = sum(weights) / rng.uniform(0.5, 1.0)
        raw = {(str(i), None, None, None): w / total for i, w in enumerate(weights)}
        values = [v for _, v in round_shares(raw)]
        assert sum(values) <= 1.0 and all(0 < v <= 1 for v in values)
