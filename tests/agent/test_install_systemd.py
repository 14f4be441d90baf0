"""``ecoreport-agent install-systemd`` does all the README's steps in one command: the service
user, the token and config files, the unit pointing at this installation, daemon-reload and
enable --now. Run container-free: files under --root, and the two system tools it calls
(useradd, systemctl) replaced on PATH by recorders; the agent itself runs for real."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from agent_fakes import agent_env
from ecoreport_agent.config import resolve

TOKEN = "eco_agent_0123456789abcdef"


@pytest.fixture
def system(tmp_path: Path):
    """A root directory, a token file, and PATH recorders for useradd and systemctl."""
    root = tmp_path / "root"
    root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("useradd", "systemctl"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        script.chmod(0o755)
    token = tmp_path / "token.txt"
    token.write_text(TOKEN + "\n")
    env = {**agent_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return root, token, log, env


def install(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "ecoreport_agent", "install-systemd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_command_installs_and_starts_the_service(system):
    root, token, log, env = system
    done = install(
        env,
        "--server",
        "https://eco.example.com",
        "--token-file",
        str(token),
        "--root",
        str(root),
        "--user",
        "ecoreport-test-nobody",
    )
    assert done.returncode == 0, done.stderr
    secret = root / "etc/ecoreport/token"
    assert secret.read_text() == TOKEN + "\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640
    conf = root / "etc/ecoreport/agent.conf"
    settings = resolve({"config": str(conf)}, environ={})
    assert settings.server == "https://eco.example.com"
    assert settings.token_file == "/etc/ecoreport/token"
    assert settings.spool == "/var/lib/ecoreport/spool.db"
    unit = (root / "etc/systemd/system/ecoreport-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program, command = exec_start.split("=", 1)[1].split()
    assert command == "run" and os.path.isabs(program)
    # ExecStart is this installation's agent, and it runs.
    version = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("ecoreport-agent ")
    assert "User=ecoreport" in unit and "AmbientCapabilities=CAP_SYS_PTRACE" in unit
    assert log.read_text().splitlines() == [
        "useradd --system --no-create-home --home-dir /var/lib/ecoreport --shell "
        "/usr/sbin/nologin ecoreport-test-nobody",
        "systemctl daemon-reload",
        "systemctl enable --now ecoreport-agent.service",
    ]


def test_a_second_run_keeps_the_token_unless_forced(system):
    root, token, log, env = system
    base = ["--server", "https://eco.example.com", "--root", str(root), "--no-start"]
    assert install(env, *base, "--token-file", str(token)).returncode == 0
    token.write_text("eco_agent_new\n")
    again = install(env, *base, "--token-file", str(token))
    assert again.returncode == 0 and "kept the existing" in again.stdout
    assert (root / "etc/ecoreport/token").read_text() == TOKEN + "\n"
    forced = install(env, *base, "--token-file", str(token), "--force")
    assert forced.returncode == 0
    assert (root / "etc/ecoreport/token").read_text() == "eco_agent_new\n"
    assert "systemctl" not in log.read_text()  # --no-start


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--server", "eco.example.com", "--token-stdin"], TOKEN, "must be an http(s) URL"),
        (["--server", "https://eco", "--token-stdin"], "  \n", "token is empty"),
        (["--server", "https://eco", "--token-stdin"], "two words", "token is empty or has"),
        (["--server", "https://eco", "--token-file", "/no/such/file"], "", "Cannot read"),
    ],
)
def test_bad_input_stops_with_a_clear_message(system, args, stdin, message):
    root, _, log, env = system
    done = subprocess.run(
        [sys.executable, "-m", "ecoreport_agent", "install-systemd", "--root", str(root), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and message in done.stderr
    assert not (root / "etc").exists() and not log.exists()


def test_a_failing_systemctl_is_reported(system):
    root, token, _, env = system
    (Path(env["PATH"].split(os.pathsep)[0]) / "systemctl").write_text(
        "#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n"
    )
    done = install(env, "--server", "https://eco", "--token-file", str(token), "--root", str(root))
    assert done.returncode == 1 and "Failed to connect to bus" in done.stderr
