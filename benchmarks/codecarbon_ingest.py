"""CodeCarbon-compatible ingest benchmark: how long ``POST /api/codecarbon/emissions`` takes,
gunicorn + PostgreSQL end to end, against the tracker's 2 s client timeout.

    .venv/bin/python benchmarks/codecarbon_ingest.py           # about a minute
    .venv/bin/python benchmarks/codecarbon_ingest.py --help

CodeCarbon 3.x posts each delta once, with ``timeout=2`` and no retry or session: a request that
takes longer loses the interval on the client side. So the figure that matters is the tail of
the latency, with a new connection per request as ``requests.post`` makes it.

1. recreates its own database (``ecoreport_bench_codecarbon``), migrates it, creates an
   organization, a site and ``--trackers`` tokens, each with a run (through the services the
   management command and ``POST /runs`` use);
2. starts gunicorn as ``benchmarks/ingest.py`` does (no Celery worker: the rollups each request
   enqueues go to Redis and are dropped at the end);
3. ``--trackers`` client threads post ``--deltas`` deltas each, one new connection per request,
   as fast as the server answers (a tracker posts every 2 minutes by default: this is hundreds
   of trackers' worth of load);
4. checks that the database holds exactly the posted deltas and their hour parts, and prints
   the latency percentiles and the throughput.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as bench  # noqa: E402 - the sibling benchmark's database and server helpers

CLIENT_TIMEOUT_S = 2.0  # CodeCarbon's ApiClient


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL allowed to create databases",
    )
    p.add_argument("--db-name", default="ecoreport_bench_codecarbon")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    p.add_argument("--trackers", type=int, default=8, help="client threads, one run each")
    p.add_argument("--deltas", type=int, default=150, help="deltas each tracker posts")
    p.add_argument("--keep-db", action="store_true", help="leave the database for inspection")
    p.add_argument("--code", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return p.parse_args()


def trackers_create(n: int) -> list[tuple[str, str]]:
    """(token, run id) per tracker."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from ecoreport.carbon.sites import site_create
    from ecoreport.codecarbon.services import run_create, token_issue
    from ecoreport.organizations.models import Project, Team
    from ecoreport.organizations.services import organization_create

    call_command("migrate", verbosity=0)
    org = organization_create(slug="bench", name="Benchmark")
    site = site_create(organization=org, slug="paris", name="Paris", grid_zone="FR", pue="1.2")
    team = Team.objects.create(organization=org, slug="ml", name="ML")
    project = Project.objects.create(organization=org, slug="train", name="train", team=team)
    out = []
    for _ in range(n):
        token, raw = token_issue(team=team, project=project, site=site)
        run = run_create(
            token=token, experiment_id=uuid.uuid4(), started_at=timezone.now(), client={}
        )
        out.append((raw, str(run.run_id)))
    connection.close()
    return out


def bodies(run_id: str, n: int, start: datetime) -> list[bytes]:
    """Deltas of 120 s as CodeCarbon 3.3.2 sends them, ending at consecutive instants in the
    recent past (a few cross an hour boundary, as real ones do)."""
    out = []
    for i in range(1, n + 1):
        end = start + timedelta(seconds=120 * i)
        body = {
            "timestamp": end.isoformat(),
            "run_id": run_id,
            "duration": 120,
            "emissions_sum": 1.2e-4,
            "emissions_rate": 1e-6,
            "cpu_power": 95.0,
            "gpu_power": 280.0,
            "ram_power": 24.0,
            "cpu_energy": 0.00317,
            "gpu_energy": 0.00933,
            "ram_energy": 0.0008,
            "energy_consumed": 0.0133,
            "cpu_utilization_percent": 55.0,
            "gpu_utilization_percent": 90.0,
            "ram_utilization_percent": 30.0,
            "wue": 0.0,
        }
        out.append(json.dumps(body).encode())
    return out


def post_all(port: int, token: str, payloads: list[bytes], latencies: list[float]) -> None:
    for payload in payloads:
        began = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "POST",
            "/api/codecarbon/emissions",
            body=payload,
            headers={"Content-Type": "application/json", "x-api-token": token},
        )
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 201:
            raise SystemExit(f"/emissions answered {response.status}")
        latencies.append(time.perf_counter() - began)


def main() -> None:
    args = parse_args()
    url = bench.db_url(args.admin_url, args.db_name)
    bench.database_recreate(args.admin_url, args.db_name)
    bench.django_setup(url, args.code.resolve())
    trackers = trackers_create(args.trackers)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(
        seconds=120 * args.deltas + 3600
    )
    payloads = [bodies(run_id, args.deltas, start) for _, run_id in trackers]
    port = bench.free_port()
    log = ROOT / "var" / "bench-codecarbon-gunicorn.log"
    log.parent.mkdir(exist_ok=True)
    proc = bench.gunicorn_start(args, url, port, log)
    try:
        per_thread: list[list[float]] = [[] for _ in trackers]
        threads = [
            threading.Thread(target=post_all, args=(port, token, p, lat))
            for (token, _), p, lat in zip(trackers, payloads, per_thread, strict=True)
        ]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    finally:
        bench.gunicorn_stop(proc)

    from django.db.models import Count

    from ecoreport.codecarbon.models import Emission, EnergyPart

    stored = Emission.objects.count()
    parts = EnergyPart.objects.aggregate(n=Count("id"))["n"]
    posted = args.trackers * args.deltas
    latencies = sorted(x for lat in per_thread for x in lat)

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        f"{args.trackers} trackers x {args.deltas} deltas, gunicorn {args.workers}x{args.threads}"
    )
    print(f"stored {stored} of {posted} deltas, {parts} hour parts")
    print(f"throughput {posted / elapsed:.0f} deltas/s over {elapsed:.1f} s")
    print(
        f"latency ms: p50 {pct(0.5):.1f}  p95 {pct(0.95):.1f}  p99 {pct(0.99):.1f}  "
        f"max {1000 * latencies[-1]:.1f}  mean {1000 * statistics.fmean(latencies):.1f}"
    )
    over = sum(1 for x in latencies if x >= CLIENT_TIMEOUT_S)
    print(f"requests at or over CodeCarbon's 2 s timeout: {over}")
    from django.db import connection

    connection.close()
    if not args.keep_db:
        bench.database_drop(args.admin_url, args.db_name)
    if stored != posted:
        raise SystemExit("stored deltas differ from those posted")


if __name__ == "__main__":
    main()
