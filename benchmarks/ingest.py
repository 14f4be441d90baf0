"""Ingest API v1 benchmark: gunicorn + PostgreSQL end to end, against a raw COPY of the same rows.

    .venv/bin/python benchmarks/ingest.py                 # default run, about 2 minutes
    .venv/bin/python benchmarks/ingest.py --help

What it does, in one run:

1. drops and recreates its own database (``ecoreport_bench_ingest``), migrates it, creates an
   organization, the teams and projects the agents name, and ``--hosts`` agent hosts with a token
   each (through the services the management commands use);
2. starts gunicorn on 127.0.0.1 with that ``DATABASE_URL``, ``REDIS_URL`` (throttle counters and
   the rollup enqueue go to Redis; no Celery worker runs, the queued rollups are dropped at the end)
   and ``INGEST_THROTTLE_RATE`` raised so that throttling never limits the benchmark;
3. **throughput**: ``--clients`` processes post pre-built gzip batches of ``--batch`` samples
   (8 GPUs per host, inventory included, 1-2 attribution entries per sample) over keep-alive
   ``http.client`` connections as fast as the server answers;
4. **latency**: the same clients offer ``--rate`` samples/s on a fixed (open-loop) schedule; a
   batch's latency is measured from the moment it was due, so a server that falls behind cannot
   hide it (no coordinated omission);
5. **raw COPY**: the same rows as the ingest stores them (the samples with their ids, and their
   share rows) are COPYed into the same tables, one transaction per batch like the ingest, from
   ``--copy-streams`` connections, with the COPY text pre-built so that only PostgreSQL is timed;
6. checks that the database holds exactly the accepted samples, prints the figures and the goals.

The clients are cheap on purpose (payloads are built and gzipped before the clock starts; a batch
costs the client one ``send`` of ~60 KB), so that on a 2-core machine the CPU goes to gunicorn and
PostgreSQL.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import io
import json
import math
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg

ROOT = Path(__file__).resolve().parent.parent
GPUS_PER_HOST = 8
INTERVAL_S = 10
TEAMS = ["nlp", "vision", "speech", "platform"]
PROJECTS = [f"project-{i}" for i in range(12)]
USERS = [f"user{i}" for i in range(20)]
POWER_LIMIT_W = 700.0

GOAL_THROUGHPUT = 20_000
GOAL_RATIO = 0.25
GOAL_P99_MS = 500.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL allowed to create databases",
    )
    p.add_argument("--db-name", default="ecoreport_bench_ingest")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    # 2 cores: two workers per core, so that one runs Python while the other waits on
    # PostgreSQL; one thread each, as threads of one worker would only contend for its GIL
    # (gthread rather than sync for HTTP keep-alive). 2x2 and 3x2 measured no better.
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (gthread)")
    p.add_argument("--hosts", type=int, default=12, help="agent hosts (one token each)")
    p.add_argument("--clients", type=int, default=6, help="client processes (one connection each)")
    p.add_argument("--batch", type=int, default=1000, help="samples per batch")
    p.add_argument("--throughput-seconds", type=float, default=20.0)
    p.add_argument(
        "--max-rate",
        type=float,
        default=36_000.0,
        help="samples/s the throughput phase pre-builds payloads for",
    )
    p.add_argument("--rate", type=float, default=10_000.0, help="offered samples/s, latency phase")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--copy-streams", type=int, default=2, help="parallel raw COPY connections")
    p.add_argument("--copy-batches", type=int, default=120, help="batches COPYed (in total)")
    p.add_argument("--warmup-batches", type=int, default=2, help="per client, not timed")
    p.add_argument("--keep-db", action="store_true", help="leave the database for inspection")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="checkout whose ecoreport/ is migrated and served (default: this one), e.g. a git "
        "worktree of an older commit, to compare before and after with the same script and venv",
    )
    return p.parse_args()


# --- database and server ----------------------------------------------------------------------


def db_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def database_recreate(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_setup(url: str, code: Path) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecoreport.settings")
    os.environ.pop("REDIS_URL", None)  # setup needs no broker
    # Ahead of the venv's editable install (a finder appended to sys.meta_path), so ``--code``
    # wins; gunicorn gets the same by running in that directory with it on PYTHONPATH.
    sys.path.insert(0, str(code))
    import django

    django.setup()


def fleet_create(n_hosts: int) -> dict:
    """Migrates, then creates the org, labels, hosts with tokens and the COPY phase's GPUs."""
    from django.core.management import call_command
    from django.db import connection

    from ecoreport.fleet.models import Gpu
    from ecoreport.fleet.services import agent_token_issue, host_ensure
    from ecoreport.organizations.models import Project, Team
    from ecoreport.organizations.services import organization_create

    call_command("migrate", verbosity=0)
    org = organization_create(slug="bench", name="Benchmark")
    teams = {s: Team.objects.create(organization=org, slug=s, name=s).pk for s in TEAMS}
    projects = {s: Project.objects.create(organization=org, slug=s, name=s).pk for s in PROJECTS}
    default_team = Team.objects.get(pk=teams["platform"])
    tokens = []
    for i in range(n_hosts):
        host = host_ensure(
            organization=org, hostname=f"gpu-node-{i:03d}", default_team=default_team
        )
        tokens.append((host.hostname, agent_token_issue(host=host)))
    # The raw COPY writes the same rows for GPUs of a host of its own, so that its natural keys
    # never meet the ingest's.
    copy_host = host_ensure(organization=org, hostname="copy-node", default_team=default_team)
    copy_gpus = [
        Gpu.objects.create(
            organization=org,
            host=copy_host,
            uuid=f"GPU-copy-{g}",
            index=g,
            power_limit_w=POWER_LIMIT_W,
        ).pk
        for g in range(GPUS_PER_HOST)
    ]
    connection.close()
    return {
        "org": org.pk,
        "teams": teams,
        "projects": projects,
        "tokens": tokens,
        "copy_host": copy_host.pk,
        "copy_gpus": copy_gpus,
        "default_team": default_team.pk,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_start(args: argparse.Namespace, url: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "INGEST_THROTTLE_RATE": "1000000/s",
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
        # Plain HTTP on loopback: with DEBUG off the app redirects http to https (301), which
        # a TLS-terminating proxy in front of it would have answered already.
        "SECURE_SSL_REDIRECT": "0",
        "PYTHONPATH": str(args.code.resolve()),
    }
    cmd = [
        str(ROOT / ".venv/bin/gunicorn"),
        "ecoreport.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(args.threads),
        "--keep-alive",
        "75",
        "--backlog",
        "256",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=args.code,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}; see {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within 60 s; see {log}")


def gunicorn_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# --- payloads -----------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def attribution_for(rng: random.Random) -> list[dict]:
    """1-2 processes on the GPU, labelled like the agent labels them (Slurm and ECOREPORT_*)."""
    parts = []
    if rng.random() < 0.6:
        shares = [round(rng.uniform(0.85, 1.0), 4)]
    else:
        first = round(rng.uniform(0.3, 0.6), 4)
        shares = [first, round(rng.uniform(0.1, 1.0 - first), 4)]
    for share in shares:
        parts.append(
            {
                "share": share,
                "project": rng.choice(PROJECTS),
                "team": rng.choice(TEAMS[:3]),
                "user": rng.choice(USERS),
                "job_id": f"slurm-{rng.randrange(10_000, 99_999)}",
            }
        )
    return parts


def samples_make(rng: random.Random, gpus: list[str], first: datetime, n: int) -> list[dict]:
    """``n`` consecutive 10 s intervals spread over ``gpus``, starting at ``first``."""
    out = []
    per_gpu = math.ceil(n / len(gpus))
    for step in range(per_gpu):
        start = first + timedelta(seconds=INTERVAL_S * step)
        end = start + timedelta(seconds=INTERVAL_S)
        s_start, s_end = iso(start), iso(end)
        for gpu in gpus:
            if len(out) == n:
                break
            util = round(rng.uniform(20, 100), 1)
            out.append(
                {
                    "gpu_uuid": gpu,
                    "start": s_start,
                    "end": s_end,
                    "energy_j": round(INTERVAL_S * rng.uniform(80, 650), 1),
                    "method": "counter",
                    "gpu_util_pct": util,
                    "mem_util_pct": round(util * 0.5, 1),
                    "mem_used_mib": rng.randrange(4000, 80000),
                    "power_max_w": round(rng.uniform(100, 690), 1),
                    "temperature_c": rng.randrange(35, 80),
                    "attribution": attribution_for(rng),
                }
            )
    return out


class HostStream:
    """Consecutive batches of one agent host: every batch new samples, a new batch id."""

    def __init__(self, hostname: str, token: str, origin: datetime, seed: int, batch: int) -> None:
        self.hostname, self.token, self.batch = hostname, token, batch
        self.gpus = [f"GPU-{hostname}-{g}" for g in range(GPUS_PER_HOST)]
        self.rng = random.Random(seed)
        self.next_start = origin
        self.inventory = [
            {
                "uuid": u,
                "index": g,
                "name": "NVIDIA H100 80GB HBM3",
                "memory_total_mib": 81559,
                "power_limit_w": POWER_LIMIT_W,
            }
            for g, u in enumerate(self.gpus)
        ]

    def next_payload(self) -> bytes:
        samples = samples_make(self.rng, self.gpus, self.next_start, self.batch)
        self.next_start += timedelta(seconds=INTERVAL_S * math.ceil(self.batch / GPUS_PER_HOST))
        body = {
            "batch_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "agent": {"hostname": self.hostname, "version": "0.1.0"},
            "gpus": self.inventory,
            "samples": samples,
        }
        # The agent's gzip level (the standard library default of gzip.compress is 9; 6 is
        # what most HTTP clients use and decompresses at the same speed).
        return gzip.compress(msgspec.json.encode(body), compresslevel=6)


# --- clients ------------------------------------------------------------------------------------


def client_main(
    cid: int,
    port: int,
    streams: list[tuple[str, str, str, int]],
    args_d: dict,
    n_through: int,
    latency_slots: list[float],
    ready: mp.Barrier,
    go: mp.Event,
    go_latency: mp.Event,
    latency_origin: mp.Value,
    out: mp.Queue,
) -> None:
    """One client process: its hosts' payloads built up front, one keep-alive connection."""
    hosts = [
        HostStream(h, t, datetime.fromisoformat(o), seed, args_d["batch"])
        for h, t, o, seed in streams
    ]
    warm = args_d["warmup"]
    payloads = [
        (hosts[i % len(hosts)].token, hosts[i % len(hosts)].next_payload())
        for i in range(warm + n_through + len(latency_slots))
    ]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(token: str, body: bytes) -> tuple[int, dict | None]:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(body)),
        }
        for attempt in range(3):
            try:
                conn.request("POST", "/api/v1/ingest", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.status == 200:
                    return 200, json.loads(data)
                return response.status, None
            except (http.client.HTTPException, OSError):
                conn.close()  # reconnects on the next request
                if attempt == 2:
                    return 0, None
        return 0, None

    stats = {
        "cid": cid,
        "ok": 0,
        "errors": {},
        "accepted": 0,
        "duplicates": 0,
        "rejected": 0,
        "through_samples": 0,
        "through_first": None,
        "through_last": None,
        "through_lat": [],
        "lat_due": [],
        "lat_service": [],
        "lat_samples": 0,
        "payload_bytes": sum(len(b) for _, b in payloads) / max(len(payloads), 1),
    }

    def book(status: int, answer: dict | None) -> None:
        if status == 200 and answer is not None:
            stats["ok"] += 1
            stats["accepted"] += answer["accepted"]
            stats["duplicates"] += answer["duplicates"]
            stats["rejected"] += len(answer["rejected"])
        else:
            stats["errors"][str(status)] = stats["errors"].get(str(status), 0) + 1

    queue = iter(payloads)
    for _ in range(warm):
        book(*post(*next(queue)))
    ready.wait()
    go.wait()
    deadline = time.monotonic() + args_d["throughput_seconds"]
    stats["through_first"] = time.time()
    for _ in range(n_through):
        if time.monotonic() >= deadline:
            break
        token, body = next(queue)
        t0 = time.perf_counter()
        status, answer = post(token, body)
        stats["through_lat"].append(time.perf_counter() - t0)
        book(status, answer)
        if status == 200:
            stats["through_samples"] += args_d["batch"]
        stats["through_last"] = time.time()
    # Payloads the throughput phase did not use are skipped; the latency ones come after them.
    queue = iter(payloads[warm + n_through :])
    ready.wait()
    go_latency.wait()
    origin = latency_origin.value
    for due_offset in latency_slots:
        due = origin + due_offset
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        token, body = next(queue)
        t0 = time.time()
        status, answer = post(token, body)
        t1 = time.time()
        book(status, answer)
        stats["lat_due"].append(t1 - due)
        stats["lat_service"].append(t1 - t0)
        if status == 200:
            stats["lat_samples"] += args_d["batch"]
    conn.close()
    out.put(stats)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- raw COPY ------------------------------------------------------------------------------------

_SAMPLE_COLS = (
    'id, organization_id, gpu_id, host_id, start, "end", duration_s, energy_j, '
    "method, gpu_util_pct, mem_util_pct, mem_used_mib, power_max_w, temperature_c, "
    "received_at"
)
_SHARE_COLS = (
    'organization_id, sample_id, team_id, project_id, job_id, "user", share, '
    "energy_j, attributed, idle"
)


def copy_text(
    fleet: dict, samples: list[dict], gpu_ids: dict[str, int], first_id: int, received: str
) -> tuple[bytes, bytes]:
    """COPY text of the rows the ingest stores for these samples: the sample and its shares."""
    org, host = fleet["org"], fleet["copy_host"]
    teams, projects = fleet["teams"], fleet["projects"]
    s_out, sh_out = io.StringIO(), io.StringIO()
    for offset, s in enumerate(samples):
        sid = first_id + offset
        s_out.write(
            f"{sid}\t{org}\t{gpu_ids[s['gpu_uuid']]}\t{host}\t{s['start']}\t{s['end']}\t"
            f"{float(INTERVAL_S)}\t{s['energy_j']}\t{s['method']}\t{s['gpu_util_pct']}\t"
            f"{s['mem_util_pct']}\t{float(s['mem_used_mib'])}\t{s['power_max_w']}\t"
            f"{float(s['temperature_c'])}\t{received}\n"
        )
        attributed_j = attributed_share = 0.0
        for part in s["attribution"]:
            e = s["energy_j"] * part["share"]
            attributed_j += e
            attributed_share += part["share"]
            sh_out.write(
                f"{org}\t{sid}\t{teams[part['team']]}\t{projects[part['project']]}\t"
                f"{part['job_id']}\t{part['user']}\t{part['share']}\t{e}\tt\tf\n"
            )
        if 1.0 - attributed_share > 1e-9 or not s["attribution"]:
            sh_out.write(
                f"{org}\t{sid}\t{fleet['default_team']}\t\\N\t\t\t"
                f"{max(1.0 - attributed_share, 0.0)}\t"
                f"{max(s['energy_j'] - attributed_j, 0.0)}\tf\t"
                f"{'f' if s['attribution'] else 't'}\n"
            )
    return s_out.getvalue().encode(), sh_out.getvalue().encode()


def copy_worker(
    url: str, chunks: list[tuple[bytes, bytes]], out: mp.Queue, ready: mp.Barrier
) -> None:
    with psycopg.connect(url) as conn:
        ready.wait()
        t0 = time.perf_counter()
        for samples, shares in chunks:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY telemetry_energysample ({_SAMPLE_COLS}) FROM STDIN") as cp:
                    cp.write(samples)
                with cur.copy(f"COPY telemetry_sampleshare ({_SHARE_COLS}) FROM STDIN") as cp:
                    cp.write(shares)
        out.put((t0, time.perf_counter()))


def raw_copy(args: argparse.Namespace, url: str, fleet: dict, start: datetime) -> dict:
    rng = random.Random(start.toordinal())
    gpus = [f"GPU-copy-{g}" for g in range(GPUS_PER_HOST)]
    gpu_ids = dict(zip(gpus, fleet["copy_gpus"], strict=True))
    n = args.copy_batches * args.batch
    with psycopg.connect(url, autocommit=True) as conn:
        # Reserves n sample ids, as the identity column would hand them out.
        first_id = conn.execute(
            "SELECT setval(pg_get_serial_sequence('telemetry_energysample', 'id'), "
            "nextval(pg_get_serial_sequence('telemetry_energysample', 'id')) + %s) - %s + 1",
            [n, n],
        ).fetchone()[0]
    received = iso(datetime.now(UTC))
    chunks: list[list[tuple[bytes, bytes]]] = [[] for _ in range(args.copy_streams)]
    share_rows = 0
    for b in range(args.copy_batches):
        samples = samples_make(rng, gpus, start, args.batch)
        start += timedelta(seconds=INTERVAL_S * math.ceil(args.batch / GPUS_PER_HOST))
        s_text, sh_text = copy_text(fleet, samples, gpu_ids, first_id + b * args.batch, received)
        share_rows += sh_text.count(b"\n")
        chunks[b % args.copy_streams].append((s_text, sh_text))
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    ready = ctx.Barrier(args.copy_streams)
    procs = [ctx.Process(target=copy_worker, args=(url, c, out, ready)) for c in chunks]
    for p in procs:
        p.start()
    spans = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
    return {"samples": n, "share_rows": share_rows, "seconds": elapsed, "rate": n / elapsed}


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    url = db_url(args.admin_url, args.db_name)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"PostgreSQL database {args.db_name}; "
        f"gunicorn gthread {args.workers} workers x {args.threads} threads; "
        f"{args.clients} client processes; batches of {args.batch} samples"
    )
    t_setup = time.perf_counter()
    database_recreate(args.admin_url, args.db_name)
    django_setup(url, args.code.resolve())
    import ecoreport

    code_rev = subprocess.run(
        ["git", "-C", str(args.code), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"code served: {Path(ecoreport.__file__).parent} ({code_rev or 'not a git checkout'})")
    fleet = fleet_create(args.hosts)
    print(
        f"setup (database, migrations, {args.hosts} hosts): {time.perf_counter() - t_setup:.1f} s"
    )

    # The raw COPY runs before (empty tables) and after the HTTP phases (a million rows more);
    # the ratio is taken against the faster of the two, so contention from other work on the
    # machine during one of them cannot flatter it.
    copy_before = raw_copy(args, url, fleet, datetime(2024, 1, 1, tzinfo=UTC))
    print(f"raw COPY before the HTTP phases: {copy_before['rate']:,.0f} samples/s")
    port = args.port or free_port()
    log = ROOT / "var" / "bench-ingest-gunicorn.log"
    server = gunicorn_start(args, url, port, log)
    try:
        figures = run_phases(args, url, port, fleet, copy_before, server.pid)
    finally:
        gunicorn_stop(server)
        try:
            import redis

            r = redis.Redis.from_url(args.redis_url)
            r.delete("celery", "unacked", "unacked_index")  # the rollups nobody consumed
        except Exception as error:
            print(f"(could not clean the Redis queue: {error})")
    figures["code"] = code_rev
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not args.keep_db:
        database_drop(args.admin_url, args.db_name)


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    """user + system CPU seconds of each live process in ``pids``."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def server_pids(url: str, db_name: str, master: int) -> tuple[set[int], set[int]]:
    """The gunicorn master and workers; the PostgreSQL backends serving the bench database."""
    workers = {master}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                workers.add(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    with psycopg.connect(url, autocommit=True) as conn:
        backends = {
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [db_name],
            )
        }
    return workers, backends


def run_phases(
    args: argparse.Namespace, url: str, port: int, fleet: dict, copy_before: dict, master: int
) -> dict:
    batch = args.batch
    # Hosts are dealt to clients; each host's samples start far enough in the past that a whole
    # run stays clear of the "end in the future" rule.
    origin = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    per_client: list[list[tuple[str, str, str, int]]] = [[] for _ in range(args.clients)]
    for i, (hostname, token) in enumerate(fleet["tokens"]):
        per_client[i % args.clients].append((hostname, token, origin.isoformat(), 1000 + i))
    if any(not c for c in per_client):
        raise SystemExit("--hosts must be at least --clients")
    n_through = math.ceil(args.max_rate * args.throughput_seconds / batch / args.clients)
    n_latency = int(args.rate * args.latency_seconds / batch)
    interval = batch / args.rate
    slots: list[list[float]] = [[] for _ in range(args.clients)]
    for i in range(n_latency):
        slots[i % args.clients].append(i * interval)

    ctx = mp.get_context("fork")
    ready = ctx.Barrier(args.clients + 1)
    go, go_latency = ctx.Event(), ctx.Event()
    out: mp.Queue = ctx.Queue()
    args_d = {
        "batch": batch,
        "warmup": args.warmup_batches,
        "throughput_seconds": args.throughput_seconds,
    }
    latency_origin = ctx.Value("d", 0.0)  # set when the throughput phase is over
    t_build = time.perf_counter()
    procs = [
        ctx.Process(
            target=client_main,
            args=(
                cid,
                port,
                per_client[cid],
                args_d,
                n_through,
                slots[cid],
                ready,
                go,
                go_latency,
                latency_origin,
                out,
            ),
        )
        for cid in range(args.clients)
    ]
    for p in procs:
        p.start()
    ready.wait()
    print(
        f"payloads built and {args.warmup_batches} warm-up batches per client sent: "
        f"{time.perf_counter() - t_build:.1f} s"
    )

    # Throughput phase.
    # CPU the server side spends in the throughput phase: a figure that other work on the
    # machine slows down less than the rate (PostgreSQL's background writers not included).
    gunicorn_pids, backend_pids = server_pids(url, args.db_name, master)
    cpu_start = cpu_seconds(gunicorn_pids | backend_pids)
    go.set()
    ready.wait()
    gunicorn_end, backend_end = server_pids(url, args.db_name, master)
    cpu_end = cpu_seconds(gunicorn_end | backend_end)
    cpu_used = {
        "gunicorn": sum(cpu_end[p] - cpu_start.get(p, 0.0) for p in gunicorn_end if p in cpu_end),
        "postgres": sum(cpu_end[p] - cpu_start.get(p, 0.0) for p in backend_end if p in cpu_end),
    }
    # Let the server settle before the fixed-rate phase.
    time.sleep(2.0)
    latency_origin.value = time.time() + 0.5
    go_latency.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()

    through_samples = sum(r["through_samples"] for r in results)
    first = min(r["through_first"] for r in results)
    last = max(r["through_last"] or first for r in results)
    through_rate = through_samples / (last - first)
    through_lat = [v for r in results for v in r["through_lat"]]
    lat_due = [v for r in results for v in r["lat_due"]]
    lat_service = [v for r in results for v in r["lat_service"]]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    accepted = sum(r["accepted"] for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    rejected = sum(r["rejected"] for r in results)

    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM telemetry_energysample WHERE host_id <> %s", [fleet["copy_host"]]
        ).fetchone()[0]
        share_rows = conn.execute(
            "SELECT count(*) FROM telemetry_sampleshare sh JOIN telemetry_energysample s "
            "ON s.id = sh.sample_id WHERE s.host_id <> %s",
            [fleet["copy_host"]],
        ).fetchone()[0]

    copy_after = raw_copy(args, url, fleet, datetime(2025, 1, 1, tzinfo=UTC))
    copy = max(copy_before, copy_after, key=lambda c: c["rate"])
    ratio = through_rate / copy["rate"]
    figures = {
        "cpus": os.cpu_count(),
        "gunicorn": {"worker_class": "gthread", "workers": args.workers, "threads": args.threads},
        "clients": args.clients,
        "batch": batch,
        "payload_gzip_bytes": round(statistics.mean(r["payload_bytes"] for r in results)),
        "throughput_samples_per_s": round(through_rate),
        "throughput_batches": len(through_lat),
        "throughput_p50_ms": round(percentile(through_lat, 0.5) * 1000, 1),
        "throughput_p99_ms": round(percentile(through_lat, 0.99) * 1000, 1),
        "offered_samples_per_s": args.rate,
        "latency_batches": len(lat_due),
        "latency_p50_ms": round(percentile(lat_due, 0.5) * 1000, 1),
        "latency_p99_ms": round(percentile(lat_due, 0.99) * 1000, 1),
        "latency_max_ms": round(max(lat_due, default=float("nan")) * 1000, 1),
        "service_p50_ms": round(percentile(lat_service, 0.5) * 1000, 1),
        "service_p99_ms": round(percentile(lat_service, 0.99) * 1000, 1),
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "errors": errors,
        "stored_samples": stored,
        "stored_share_rows": share_rows,
        "copy_samples": copy["samples"],
        "copy_share_rows": copy["share_rows"],
        "copy_streams": args.copy_streams,
        "copy_samples_per_s": round(copy["rate"]),
        "copy_before_samples_per_s": round(copy_before["rate"]),
        "copy_after_samples_per_s": round(copy_after["rate"]),
        "ratio": round(ratio, 3),
        "loadavg_end": os.getloadavg(),
        "server_cpu_ms_per_batch": {
            k: round(v * 1000 / max(through_samples / batch, 1), 1) for k, v in cpu_used.items()
        },
    }
    print()
    print(
        f"throughput (as fast as possible): {figures['throughput_samples_per_s']:>8,} samples/s "
        f"({figures['throughput_batches']} batches, batch p50 {figures['throughput_p50_ms']} ms, "
        f"p99 {figures['throughput_p99_ms']} ms)"
    )
    print(
        f"latency at {args.rate:,.0f} samples/s offered: p50 {figures['latency_p50_ms']} ms, "
        f"p99 {figures['latency_p99_ms']} ms, max {figures['latency_max_ms']} ms "
        f"({figures['latency_batches']} batches; from when each was due)"
    )
    print(
        f"raw COPY ({args.copy_streams} streams, samples + {copy['share_rows']:,} share rows): "
        f"{figures['copy_samples_per_s']:>8,} samples/s (the faster of before "
        f"{figures['copy_before_samples_per_s']:,} and after {figures['copy_after_samples_per_s']:,})"
    )
    print(f"ratio end to end / raw COPY: {ratio:.3f}")
    cpu = figures["server_cpu_ms_per_batch"]
    print(
        f"server CPU per batch of {batch} in the throughput phase: gunicorn {cpu['gunicorn']} ms, "
        f"PostgreSQL backends {cpu['postgres']} ms (ceiling on {os.cpu_count()} idle cores: "
        f"{os.cpu_count() * 1000 / max(cpu['gunicorn'] + cpu['postgres'], 1e-9) * batch:,.0f} "
        "samples/s)"
    )
    print(
        f"answers: accepted {accepted:,}, duplicates {duplicates}, rejected {rejected}, "
        f"errors {errors or 'none'}; stored {stored:,} samples, {share_rows:,} share rows; "
        f"gzip payload {figures['payload_gzip_bytes']:,} bytes"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine)")
    ok_count = stored == accepted
    print(f"stored == accepted: {ok_count}")
    print()
    goals = [
        (f"throughput >= {GOAL_THROUGHPUT:,} samples/s", through_rate >= GOAL_THROUGHPUT),
        (f"ratio >= {GOAL_RATIO}", ratio >= GOAL_RATIO),
        (
            f"p99 < {GOAL_P99_MS:.0f} ms at {args.rate:,.0f}/s",
            figures["latency_p99_ms"] < GOAL_P99_MS,
        ),
    ]
    for name, met in goals:
        print(f"goal {name}: {'met' if met else 'NOT met'}")
    if errors or not ok_count:
        print(
            "WARNING: errors or a count mismatch; the figures above are not valid", file=sys.stderr
        )
    return figures


if __name__ == "__main__":
    main()
