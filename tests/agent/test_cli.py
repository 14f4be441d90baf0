"""The command line and the real agent process: config precedence, check, status, signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_fakes import agent_env
from ecoreport_agent.config import ConfigError, resolve
from ecoreport_agent.simulate import SimGpu


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecoreport_agent", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        agent_cmd(*args),
        env=env or agent_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- configuration --------------------------------------------------------------------------


@pytest.fixture
def conf(tmp_path: Path) -> str:
    path = tmp_path / "agent.conf"
    path.write_text(
        "[agent]\n"
        "server = http://from-file\n"
        "interval = 30\n"
        "spool = /from/file.db\n"
        "log-level = debug\n"
        "token_file = /from/file/token\n"
    )
    return str(path)


@pytest.mark.parametrize(
    ("flags", "env", "field", "expected", "source"),
    [
        (
            {"server": "http://flag"},
            {"ECOREPORT_SERVER": "http://env"},
            "server",
            "http://flag",
            "flag",
        ),
        ({}, {"ECOREPORT_SERVER": "http://env"}, "server", "http://env", "env"),
        ({}, {}, "server", "http://from-file", "file"),
        ({"interval": "1"}, {"ECOREPORT_INTERVAL": "20"}, "interval", 1.0, "flag"),
        ({}, {"ECOREPORT_INTERVAL": "20"}, "interval", 20.0, "env"),
        ({}, {}, "interval", 30.0, "file"),
        ({}, {}, "batch_size", 1000, "default"),
        ({}, {"ECOREPORT_SIMULATE": "4"}, "simulate", 4, "env"),
        ({}, {}, "log_level", "DEBUG", "file"),
        ({"log_level": "warning"}, {}, "log_level", "WARNING", "flag"),
    ],
)
def test_flag_beats_environment_beats_config_file_beats_default(
    conf, flags, env, field, expected, source
):
    settings = resolve(flags, env, conf)
    assert getattr(settings, field) == expected
    assert settings.sources[field] == source


def test_token_comes_from_the_more_specific_of_token_and_token_file(tmp_path, conf):
    token_file = tmp_path / "token"
    token_file.write_text("from-file-token\n")
    env = {"ECOREPORT_TOKEN": "env-token"}
    assert resolve({}, env, conf).resolved_token() == "env-token"  # env beats the file's path
    flags = {"token_file": str(token_file)}
    assert resolve(flags, env, conf).resolved_token() == "from-file-token"  # flag beats env
    assert resolve({"token": "flag-token"}, {}, conf).resolved_token() == "flag-token"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"interval": "0.5"}, "at least 1 s"),
        ({"interval": "7200"}, "at most 3600 s"),
        ({"interval": "ten"}, "--interval"),
        ({"simulate": "-1"}, "--simulate"),
        ({"log_level": "loud"}, "--log-level"),
    ],
)
def test_invalid_settings_are_refused_with_a_sentence(flags, message):
    with pytest.raises(ConfigError, match=message):
        resolve(flags, {}, None)


def test_unknown_key_in_config_file_is_an_error(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_text("[agent]\nsevrer = http://typo\n")
    with pytest.raises(ConfigError, match="Unknown setting 'sevrer'"):
        resolve({}, {}, str(path))


# -- check ------------------------------------------------------------------------------------


def test_check_without_nvml_exits_nonzero_and_suggests_simulate(tmp_path):
    # A pynvml whose library is missing, exactly as on a host without the NVIDIA driver.
    fake = tmp_path / "fakenvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(
        "class NVMLError(Exception):\n"
        "    def __init__(self, value):\n"
        "        self.value = value\n"
        "    def __str__(self):\n"
        "        return 'NVML Shared Library Not Found'\n"
        "def nvmlInit():\n"
        "    raise NVMLError(12)\n"
    )
    env = agent_env()
    env["PYTHONPATH"] = f"{fake}{os.pathsep}{env['PYTHONPATH']}"

    result = run_cli("check", "--server", "http://127.0.0.1:9", "--token", "t", env=env)

    assert result.returncode == 2
    assert "NVML is not available (NVML Shared Library Not Found)" in result.stderr
    assert "--simulate N" in result.stderr


def test_check_lists_gpus_methods_and_labels_and_confirms_the_token(ingest):
    result = run_cli(
        "check",
        "--simulate",
        "5",
        "--server",
        ingest.url,
        "--token",
        "good-token",
        "--hostname",
        "sim-check",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("method: counter") == 4 and out.count("method: power_integration") == 1
    assert "Tesla P100-PCIE-16GB" in out and "power limit 700 W" in out
    assert "accepts the token (organization acme, host gpu-node-07)" in out


def test_check_exits_nonzero_when_the_token_is_refused(ingest):
    result = run_cli("check", "--simulate", "1", "--server", ingest.url, "--token", "wrong")
    assert result.returncode == 4
    assert "refused the token (HTTP 401)" in result.stderr
    assert "wrong" not in result.stderr + result.stdout  # tokens never printed


def test_check_exits_nonzero_when_the_server_is_unreachable():
    result = run_cli("check", "--simulate", "1", "--server", "http://127.0.0.1:9", "--token", "t")
    assert result.returncode == 3
    assert "Cannot reach the server at http://127.0.0.1:9" in result.stderr


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/admin", "HTTP 302 redirect to /admin/login/?next=/admin/api/v1/agent/ping"),
        ("", "HTTP 200 that is not an EcoReport answer (text/html)"),
    ],
)
def test_check_refuses_a_url_that_redirects_or_answers_html_whatever_the_token(
    wrong_site, path, answer
):
    server = wrong_site.url + path
    result = run_cli("check", "--simulate", "1", "--server", server, "--token", "bogus")

    assert result.returncode == 3, result.stdout
    assert "accepts the token" not in result.stdout
    assert f"The server at {server} is not answering as EcoReport does" in result.stderr
    assert answer in result.stderr
    assert "with no path" in result.stderr
    # The redirect was reported, not followed.
    assert [p for _, p in wrong_site.requests] == [path + "/api/v1/agent/ping"]


# -- the real process -------------------------------------------------------------------------


def _rows(db_path: str) -> list[tuple]:
    if not os.path.exists(db_path):
        return []
    db = sqlite3.connect(db_path, timeout=5)
    try:
        return db.execute(
            "SELECT gpu_uuid, start_s, end_s, energy_j, counter_start_mj, counter_end_mj, payload"
            " FROM samples ORDER BY gpu_uuid, start_s"
        ).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        db.close()


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the agent")


def test_kill_9_and_restart_books_the_energy_across_the_downtime_exactly_once(tmp_path):
    spool = str(tmp_path / "spool.db")
    # Nobody listens on port 9: every sample stays in the spool, where the test can audit it.
    args = (
        "run",
        "--simulate",
        "2",
        "--seed",
        "7",
        "--hostname",
        "kill9-host",
        "--interval",
        "1",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "t",
        "--spool",
        spool,
    )
    first = subprocess.Popen(agent_cmd(*args), env=agent_env(), stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_rows(spool)) >= 6)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = time.time()
    time.sleep(2.5)  # the GPUs keep drawing power while no agent runs
    second = subprocess.Popen(agent_cmd(*args), env=agent_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: max((r[2] for r in _rows(spool)), default=0) > killed_at + 5)
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=20)
    assert second.returncode == 0
    assert "resume.booked" in stderr

    rows = _rows(spool)
    for gpu_uuid in {r[0] for r in rows}:
        samples = [r for r in rows if r[0] == gpu_uuid]
        payloads = [json.loads(r[6]) for r in samples]
        starts = [p["start"] for p in payloads]
        assert len(starts) == len(set(starts))  # nothing booked twice
        for a, b in zip(payloads, payloads[1:]):
            assert b["start"] == a["end"]  # contiguous across the kill
        for a, b in zip(samples, samples[1:]):
            assert b[4] == a[5]  # and so is the counter: each reading booked once
        downtime = [r for r in samples if r[2] - r[1] > 2.0]
        assert len(downtime) == 1 and json.loads(downtime[0][6])["attribution"] == []
        total_j = sum(r[3] for r in samples)
        assert total_j == pytest.approx((samples[-1][5] - samples[0][4]) / 1000)
        # What the simulated GPU really used over the same wall-clock span.
        index = 0 if gpu_uuid == SimGpu(7, "kill9-host", 0).uuid else 1
        sim = SimGpu(7, "kill9-host", index)
        expected = sim.energy_between(samples[0][1], samples[-1][2])
        assert total_j == pytest.approx(expected, rel=0.01)


def test_sigterm_books_the_current_interval_flushes_and_exits_zero(tmp_path, ingest):
    spool = str(tmp_path / "spool.db")
    proc = subprocess.Popen(
        agent_cmd(
            "run",
            "--simulate",
            "3",
            "--interval",
            "1",
            "--server",
            ingest.url,
            "--token-file",
            str(_token_file(tmp_path)),
            "--spool",
            spool,
            "--hostname",
            "h1",
        ),
        env=agent_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: len(ingest.state.samples) >= 6)
    time.sleep(0.4)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)

    assert proc.returncode == 0, stderr
    assert "agent.stopping signal=SIGTERM" in stderr
    status = run_cli("status", "--json", "--spool", spool)
    stats = json.loads(status.stdout)
    assert stats["pending_samples"] == 0 and stats["dead_letter"] == 0
    assert stats["last_upload"] is not None
    server = ingest.state.energy_by_gpu()
    for gpu in stats["gpus"]:
        assert server[gpu["uuid"]] == pytest.approx(gpu["energy_j"])
    last = max(ingest.state.samples.values(), key=lambda s: s["end"])
    assert last["end"][-8:-1] != "000"  # the short final interval ended at the signal


def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("good-token\n")
    return path


def test_status_reports_depth_oldest_errors_and_totals(tmp_path):
    spool = str(tmp_path / "spool.db")
    result = run_cli(
        "run",
        "--simulate",
        "2",
        "--interval",
        "1",
        "--max-cycles",
        "2",
        "--spool",
        spool,
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "t",
    )
    assert result.returncode == 0, result.stderr

    stats = json.loads(run_cli("status", "--json", "--spool", spool).stdout)
    assert stats["pending_samples"] >= 4
    assert stats["oldest_unsent"].endswith("Z")
    assert stats["last_upload"] is None
    assert "Connection refused" in stats["last_error"]
    assert stats["dead_letter"] == 0
    assert len(stats["gpus"]) == 2
    assert all(g["energy_j"] > 0 and g["method"] == "counter" for g in stats["gpus"])
    assert stats["agent"]["nvml_calls_per_interval"]["nvmlDeviceGetTotalEnergyConsumption"] > 0

    human = run_cli("status", "--spool", spool)
    assert "unsent samples:" in human.stdout and "Wh" in human.stdout


def test_status_without_a_spool_says_so(tmp_path):
    result = run_cli("status", "--spool", str(tmp_path / "missing.db"))
    assert result.returncode == 1
    assert "No spool at" in result.stderr


def test_run_without_a_server_is_a_config_error():
    result = run_cli("run", "--simulate", "1")
    assert result.returncode == 1
    assert "No server configured" in result.stderr
