"""A live stack for end-to-end tests: gunicorn and a Celery worker as real processes, sharing
the test database (PostgreSQL or an SQLite file) and the broker (Redis or the filesystem)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    from django.db import connection

    conf = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf.get("PASSWORD") else "")
        return (
            f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"
        )
    return f"sqlite:///{conf['NAME']}"


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    worker_log: Path
    web_log: Path

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"web server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"web server did not answer in {timeout} s: {log.read_text()[-3000:]}")


def _wait_log(log: Path, needle: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{needle!r} not seen in {log}: {log.read_text()[-3000:]}")


@pytest.fixture
def live_stack(transactional_db: Any, tmp_path: Path) -> Iterator[Stack]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DEBUG": "1",
        "ECOREPORT_VAR_DIR": str(tmp_path / "var"),
        "CELERY_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    procs: list[subprocess.Popen] = []
    try:
        with worker_log.open("wb") as wl:
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "celery"),
                        "-A",
                        "ecoreport",
                        "worker",
                        "--pool=solo",
                        "--concurrency=1",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel=INFO",
                        "-Q",
                        env["CELERY_QUEUE"],
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=wl,
                    stderr=subprocess.STDOUT,
                )
            )
        with web_log.open("wb") as weblog:
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "gunicorn"),
                        "ecoreport.wsgi",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--workers",
                        "1",
                        "--threads",
                        "4",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=weblog,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_log(worker_log, "ready", procs[0])
        _wait_http(f"http://127.0.0.1:{port}", procs[1], web_log)
        yield Stack(url=f"http://127.0.0.1:{port}", env=env, worker_log=worker_log, web_log=web_log)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Django's test teardown flushes or drops the database these processes used.
        from django.db import connections

        connections.close_all()
