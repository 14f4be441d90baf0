"""/metrics benchmark: one organization's Prometheus scrape, served by gunicorn on PostgreSQL, for
1,000 GPUs with a year of rolled-up hours and an hour of 10 s samples per GPU.

    .venv/bin/python benchmarks/metrics.py             # build the data set (minutes), measure
    .venv/bin/python benchmarks/metrics.py --reuse     # measure again on the data set kept
    .venv/bin/python benchmarks/metrics.py --gpus 80 --days 30 --db-name ecoreport_bench_metrics_small

What it does:

1. unless ``--reuse`` finds a complete data set, builds the dashboard benchmark's (its own
   database, ``ecoreport_bench_metrics``; see ``benchmarks/dashboards.py``: 10 teams, 30
   projects, 3 sites, 125 hosts x 8 GPUs, a year of HourlyUsage, HourlyJobUsage and
   HourlySummary from a simulated fleet, a few evaluated targets), then adds the last hour of
   raw samples, one every 10 s per GPU (``INSERT ... SELECT`` over ``generate_series``), so
   each GPU's latest-sample lookup meets a realistic raw table;
2. issues an API token to the data set's member and starts gunicorn (DEBUG off, 2 workers x 1
   thread for 2 cores, as the dashboard benchmark);
3. sends ``--warmup`` and then ``--requests`` scrapes of ``GET /metrics`` with the token over a
   keep-alive connection, with Prometheus' own Accept header (it gets the text format), timing
   each from sending the request to reading the whole body, and the CPU time of the web workers
   and their PostgreSQL backends over the timed scrapes (from /proc);
4. checks every answer: 200, and its ``sum(ecoreport_energy_joules_total)`` equals a direct SQL
   sum over HourlyUsage, one power series per GPU, no series with a job label;
5. prints p50/p95/max (goal, issue 15: within 200 ms at 1,000 GPUs) of the scrapes after the
   warm-up, the first scrape's time (the cache of the closed hours' sums emptied first, so it
   sums a year of summary rows as one scrape per ``METRICS_CLOSED_HOURS_CACHE_S`` does), the
   series count and body size, and each query's time in-process (test client, same database).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import types
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboards
from ingest import (
    ROOT,
    cpu_seconds,
    db_url,
    free_port,
    gunicorn_start,
    gunicorn_stop,
    percentile,
    server_pids,
)

GOAL_MS = 200.0
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
SAMPLES_PER_GPU = 360  # an hour at the agent's 10 s interval


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument("--db-name", default="ecoreport_bench_metrics")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--gpus", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--reuse", action="store_true", help="keep a complete data set from before")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    return p.parse_args()


def samples_add(url: str) -> int:
    """The last hour of 10 s samples for every GPU, ending now (the latest is fresh)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM telemetry_energysample")
        rows = conn.execute(
            """
            INSERT INTO telemetry_energysample
                (organization_id, gpu_id, host_id, start, "end", duration_s, energy_j, method,
                 split, gpu_util_pct, mem_util_pct, mem_used_mib, power_max_w, temperature_c,
                 received_at)
            SELECT g.organization_id, g.id, g.host_id,
                   date_trunc('second', now()) - (n + 1) * INTERVAL '10 seconds',
                   date_trunc('second', now()) - n * INTERVAL '10 seconds',
                   10, 10 * (150 + (g.id * 37 + n) %% 500), 'counter', 'single',
                   (g.id * 13 + n * 7) %% 100, 40, 30000, 600, 60, now()
            FROM fleet_gpu g CROSS JOIN generate_series(0, %s) n
            """,
            [SAMPLES_PER_GPU - 1],
        ).rowcount
        conn.execute("VACUUM (ANALYZE) telemetry_energysample")
    return rows


def token_issue() -> str:
    from ecoreport.organizations.models import Membership
    from ecoreport.organizations.services import api_token_issue

    membership = Membership.objects.get(user__username=dashboards.USERNAME)
    return api_token_issue(membership=membership)


def check(text: str, want_j: float, gpus: int) -> str | None:
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    energy = sum(s.value for s in families["ecoreport_energy_joules"].samples)
    if abs(energy - want_j) > 1e-9 * want_j:
        return f"energy {energy} J, SQL says {want_j} J"
    power = len(families["ecoreport_gpu_power_watts"].samples)
    if power != gpus:
        return f"{power} power series for {gpus} GPUs"
    if any("job" in s.labels or "job_id" in s.labels for f in families.values() for s in f.samples):
        return "a series has a job label"
    return None


def queries_in_process(token: str) -> list[dict]:
    """The queries one scrape runs and their times (test client, same database)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")  # warm
    with CaptureQueriesContext(connection) as captured:
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    return [
        {"ms": float(q["time"]) * 1000, "sql": q["sql"][:140]} for q in captured.captured_queries
    ]


def main() -> None:
    args = parse_args()
    url = db_url(args.admin_url, args.db_name)
    build_args = dashboards.parse_args(
        [
            "--admin-url",
            args.admin_url,
            "--db-name",
            args.db_name,
            "--gpus",
            str(args.gpus),
            "--days",
            str(args.days),
        ]
    )
    meta = dashboards.reusable(build_args, url) if args.reuse else None
    if meta is None:
        meta = dashboards.build(build_args, url)
    else:
        dashboards.django_setup(url, ROOT)
        print(f"reusing the data set built {meta['generated_at'][:16]}", flush=True)
    t = time.perf_counter()
    samples = samples_add(url)
    print(f"raw samples: {samples:,} ({time.perf_counter() - t:.1f} s)", flush=True)
    sizes = dashboards.sizes(url)
    summary_rows = sizes["accounting_hourlysummary"]["rows_estimate"]
    with psycopg.connect(url) as conn:
        want_j = conn.execute("SELECT sum(energy_j) FROM accounting_hourlyusage").fetchone()[0]
        gpus = conn.execute("SELECT count(*) FROM fleet_gpu").fetchone()[0]
    token = token_issue()
    port = free_port()
    log = ROOT / "var" / "bench-metrics-gunicorn.log"
    log.parent.mkdir(exist_ok=True)
    server_args = types.SimpleNamespace(
        redis_url=args.redis_url, workers=args.workers, threads=args.threads, code=ROOT
    )
    print(
        f"{gpus:,} GPUs, ~{summary_rows:,} summary rows; gunicorn {args.workers} x "
        f"{args.threads} on port {port}; load {dashboards.load_avg()}",
        flush=True,
    )
    # An empty cache: the first scrape sums the closed hours (METRICS_CLOSED_HOURS_CACHE_S),
    # as one in every few dozen does in production.
    redis.Redis.from_url(args.redis_url).flushdb()
    server = gunicorn_start(server_args, url, port, log)
    times: list[float] = []
    first_ms = 0.0
    size = series = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Accept": PROMETHEUS_ACCEPT}
        cpu_before: dict[int, float] = {}
        pids: set[int] = set()
        for i in range(args.warmup + args.requests):
            if i == args.warmup:
                # CPU of the web workers and their database backends over the timed scrapes:
                # what a scrape costs whatever else the (shared) machine is doing.
                workers, backends = server_pids(url, args.db_name, server.pid)
                pids = workers | backends
                cpu_before = cpu_seconds(pids)
            t0 = time.perf_counter()
            conn.request("GET", "/metrics", headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - t0
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {body[:300]!r}")
            text = body.decode()
            problem = check(text, want_j, gpus)
            if problem:
                raise SystemExit(f"wrong answer: {problem}")
            if i == 0:
                first_ms = elapsed * 1000
            if i >= args.warmup:
                times.append(elapsed * 1000)
            size = len(body)
            series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        cpu_after = cpu_seconds(pids)
        cpu_ms = sum(cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after) * 1000
    finally:
        gunicorn_stop(server)
    queries = queries_in_process(token)
    figures = {
        "gpus": gpus,
        "summary_rows": summary_rows,
        "raw_samples": samples,
        "first_scrape_ms": round(first_ms, 1),
        "requests": len(times),
        "p50_ms": round(percentile(times, 0.5), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "max_ms": round(max(times), 1),
        "goal_p95_ms": GOAL_MS,
        "server_cpu_ms_per_scrape": round(cpu_ms / len(times), 1),
        "series": series,
        "body_kb": round(size / 1024, 1),
        "queries": queries,
        "load_avg_end": dashboards.load_avg(),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
