"""A live stack for end-to-end tests: gunicorn and a Celery worker as real processes, sharing
the test database (PostgreSQL or an SQLite file) and the broker (Redis or the filesystem)."""

from __future__ import annotations

import gzip
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

    def ingest(self, token: str, batch: dict[str, Any]) -> tuple[int, Any]:
        """POSTs an ingest batch as the agent sends it (gzip JSON)."""
        return self.request(
            "POST",
            "/api/v1/ingest",
            token=token,
            body=gzip.compress(json.dumps(batch).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )


def _wait_http(
    url: str, proc: subprocess.Popen, log: Path, timeout: float = 60, *, degraded_ok: bool = False
) -> None:
    """Until /healthz answers 200 (or any HTTP status with ``degraded_ok``: a broker outage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"web server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            if degraded_ok:
                return
            time.sleep(0.2)
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


class Processes:
    """Starts web and worker processes on the test database; stops whatever is left at the end.

    Fault tests use it directly to start processes with their own environment (a Redis URL
    where nothing listens), several of them, or to kill one.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "DEBUG": "1",
            "ECOREPORT_VAR_DIR": str(tmp_path / "var"),
            "CELERY_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[subprocess.Popen] = []
        self._count = 0

    def _log(self, name: str) -> Path:
        self._count += 1
        return self.tmp_path / f"{name}-{self._count}.log"

    def worker(
        self, *, env: dict[str, str] | None = None, queues: tuple[str, ...] = ()
    ) -> tuple[subprocess.Popen, Path]:
        """A worker of every queue, or of ``queues`` (kinds: "rollups", "reports", "alerts")."""
        env = env or self.env
        log = self._log("worker")
        only = (
            ["-Q", ",".join(f"{env['CELERY_QUEUE']}.{kind}" for kind in queues)] if queues else []
        )
        with log.open("wb") as out:
            proc = subprocess.Popen(
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
                    # Without -Q: the default queue and the rollups, reports and alerts queues
                    # named after it (settings.TASK_QUEUES).
                    *only,
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        _wait_log(log, "ready", proc)
        return proc, log

    def web(
        self,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        threads: int = 4,
        degraded_ok: bool = False,
    ) -> tuple[subprocess.Popen, Path, str]:
        env = env or self.env
        log = self._log("web")
        port = _free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "ecoreport.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, proc, log, degraded_ok=degraded_ok)
        return proc, log, url

    def call_task(self, name: str, *, env: dict[str, str] | None = None) -> None:
        """Sends task ``name`` to the workers as beat would (``celery call``: routed to its
        queue by ``CELERY_TASK_ROUTES``)."""
        env = env or self.env
        subprocess.run(
            [str(BIN / "celery"), "-A", "ecoreport", "call", name],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(transactional_db: Any, tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()
        # Django's test teardown flushes or drops the database these processes used.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def live_stack(processes: Processes) -> Stack:
    _, worker_log = processes.worker()
    _, web_log, url = processes.web()
    return Stack(url=url, env=processes.env, worker_log=worker_log, web_log=web_log)
