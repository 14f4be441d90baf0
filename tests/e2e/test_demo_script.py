"""``make demo`` as a person runs it: it starts, keeps the agent's token off command lines, and
Ctrl-C (SIGINT to the terminal's process group) stops it with exit status 0 and no make error."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import ROOT, _free_port


def _command_lines() -> list[str]:
    """Every process's command line, as ``ps`` shows them to any user."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


def test_make_demo_hides_the_token_and_ctrl_c_ends_it_cleanly(tmp_path):
    env = {
        **os.environ,
        "ECOREPORT_VAR_DIR": str(tmp_path),
        "PORT": str(_free_port()),
        "DEMO_DAYS": "1",
        "DEMO_GPUS": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "ECOREPORT_REQUIRE_SERVICES"):
        env.pop(name, None)
    # -o: the installed .venv counts as up to date (make would reinstall after a pyproject edit).
    demo = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    output: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 240
        for line in demo.stdout:
            output.append(line)
            if "Press Ctrl-C to stop." in line or time.monotonic() > deadline:
                break
        assert "Press Ctrl-C to stop." in "".join(output), "".join(output)

        token = (tmp_path / "agent-token").read_text().strip()
        assert token.startswith("era")  # what issue_agent_token printed
        assert oct((tmp_path / "agent-token").stat().st_mode & 0o777) == "0o600"
        agents = [c for c in _command_lines() if "ecoreport-agent run" in c]
        assert agents and all(token not in c for c in agents), agents
        assert all("--token-file" in c for c in agents)

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C does
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    text = "".join(output) + rest
    assert "==> Stopping" in text
    assert "***" not in text and "Error" not in text, text  # no "make: *** [demo] Error 1"
    assert "A process stopped" not in text
    # make itself dies of the SIGINT it was sent too (as after any Ctrl-C); the script exited 0.
    assert demo.returncode in (0, -signal.SIGINT), text
