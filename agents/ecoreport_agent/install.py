"""``ecoreport-agent install-systemd``: everything the service needs on a GPU server, in one
command: the ``ecoreport`` system user, ``/etc/ecoreport/token`` (0640, root:ecoreport), the
config file, the unit with ``ExecStart`` pointing at this very installation, then
``systemctl daemon-reload`` and ``enable --now``.

``--root`` writes the files under another directory (packaging, and the tests, which also put
``useradd``/``systemctl`` recorders first on PATH). Nothing is overwritten without ``--force``
except the unit, which belongs to the package; an existing token or config is kept.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

UNIT_NAME = "ecoreport-agent.service"
UNIT_TEMPLATE = Path(__file__).with_name(UNIT_NAME)
_EXEC_START = "ExecStart=/usr/local/bin/ecoreport-agent run"


class InstallError(Exception):
    """What stops the install, said so that the operator knows what to do."""


@dataclass
class InstallPlan:
    server: str
    token: str
    root: Path = Path("/")
    user: str = "ecoreport"
    executable: str = ""
    start: bool = True
    force: bool = False

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def agent_executable() -> str:
    """The ``ecoreport-agent`` script of this installation (the venv's, not whatever is first on
    root's PATH), so the unit starts the agent that was just installed."""
    beside = Path(sys.executable).with_name("ecoreport-agent")
    if beside.exists():
        return str(beside)
    found = shutil.which("ecoreport-agent")
    if found:
        return str(Path(found).resolve())
    raise InstallError(
        "Cannot find the ecoreport-agent script of this installation; pass --executable PATH."
    )


def unit_text(executable: str) -> str:
    text = UNIT_TEMPLATE.read_text()
    if _EXEC_START not in text:  # the packaged unit changed: never write a unit without it
        raise InstallError(f"The packaged unit {UNIT_TEMPLATE} has no {_EXEC_START!r} line.")
    return text.replace(_EXEC_START, f"ExecStart={executable} run")


def config_text(plan: InstallPlan) -> str:
    return (
        "# Written by `ecoreport-agent install-systemd`; see docs/agent.md for every key.\n"
        "[agent]\n"
        f"server = {plan.server}\n"
        "token_file = /etc/ecoreport/token\n"
        "spool = /var/lib/ecoreport/spool.db\n"
    )


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InstallError(f"{command[0]} is not installed: {what} needs it.") from None
    if done.returncode != 0:
        raise InstallError(
            f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
        )


def _ensure_user(plan: InstallPlan, say: Callable[[str], None]) -> None:
    try:
        pwd.getpwnam(plan.user)
        say(f"user {plan.user} exists")
        return
    except KeyError:
        pass
    _run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/ecoreport",
            "--shell",
            "/usr/sbin/nologin",
            plan.user,
        ],
        "creating the service user",
    )
    say(f"created system user {plan.user}")


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _write(path: Path, text: str, *, mode: int, group: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)  # the umask does not narrow it
    gid = _group_id(group) if group else None
    if gid is not None and os.geteuid() == 0:
        os.chown(tmp, 0, gid)
    os.replace(tmp, path)


def install_systemd(plan: InstallPlan, say: Callable[[str], None] = print) -> None:
    """Install and (unless ``plan.start`` is false) start the service. Raises InstallError."""
    if not plan.server.startswith(("https://", "http://")):
        raise InstallError(f"--server must be an http(s) URL, not {plan.server!r}.")
    token = plan.token.strip()
    if not token or any(c.isspace() for c in token):
        raise InstallError("The token is empty or has spaces in it: pass the token alone.")
    if plan.root == Path("/") and os.geteuid() != 0:
        raise InstallError("install-systemd writes /etc and runs systemctl: run it with sudo.")
    executable = plan.executable or agent_executable()
    _ensure_user(plan, say)
    token_path = plan.path("/etc/ecoreport/token")
    if token_path.exists() and not plan.force:
        say(f"kept the existing {token_path} (--force replaces it)")
    else:
        _write(token_path, token + "\n", mode=0o640, group=plan.user)
        say(f"wrote {token_path} (0640, root:{plan.user})")
    config_path = plan.path("/etc/ecoreport/agent.conf")
    if config_path.exists() and not plan.force:
        say(f"kept the existing {config_path} (--force replaces it)")
    else:
        _write(config_path, config_text(plan), mode=0o644)
        say(f"wrote {config_path} (server {plan.server})")
    unit_path = plan.path(f"/etc/systemd/system/{UNIT_NAME}")
    _write(unit_path, unit_text(executable), mode=0o644)
    say(f"wrote {unit_path} (ExecStart={executable} run)")
    if not plan.start:
        say("not started (--no-start): systemctl enable --now ecoreport-agent")
        return
    _run(["systemctl", "daemon-reload"], "loading the unit")
    _run(["systemctl", "enable", "--now", UNIT_NAME], "starting the service")
    say("started: journalctl -u ecoreport-agent -f; ecoreport-agent status")
