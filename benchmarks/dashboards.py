"""Dashboard benchmark: the organization overview, a team page and a project page rendered by
gunicorn on PostgreSQL with one year of hourly data for 1,000 GPUs.

    .venv/bin/python benchmarks/dashboards.py            # build the data set (minutes), measure
    .venv/bin/python benchmarks/dashboards.py --reuse    # measure again on the data set kept
    .venv/bin/python benchmarks/dashboards.py --gpus 80 --days 60 --db-name ecoreport_bench_dash_small
    .venv/bin/python benchmarks/dashboards.py --reuse --explain team:90d  # EXPLAIN ANALYZE only

What it does:

1. unless ``--reuse`` finds a complete data set (the ``bench_meta`` table is written last), drops
   and recreates its own database (``ecoreport_bench_dashboards``), migrates it, and creates an
   organization with 10 teams, 30 projects, 3 sites in 3 grid zones (FR and US on the built-in
   annual factors; DE with hourly factors; a certificate share at one site, a residual-mix
   contract at another, a PUE change at the third), 125 hosts x 8 GPUs, a member who can sign
   in, and a few targets with evaluations;
2. simulates the fleet hour by hour: hosts are grouped in pods of up to 8 (64 GPUs) that are
   allocated to one project for 2-7 days at a time; each allocation splits its GPUs into lanes of
   1-64 GPUs that run jobs lasting hours to days with gaps between them (about 180 jobs run at
   any moment; 4 % are not attributed to anyone); utilization follows each job's own level, with a
   daily and weekly pattern for interactive work; idle GPUs draw idle power and are charged to
   the host's default team/project, if any. Rows are streamed with COPY (psycopg ``cursor.copy``)
   into HourlyUsage (one row per GPU x hour x team/project, emissions columns from the app's own
   resolver ``site_hour_factors``) and HourlyJobUsage (one row per job x hour x site), with the
   secondary indexes dropped during the load and rebuilt after it; then HourlySummary is rebuilt
   with ``summary_rebuild`` month by month and the tables are vacuumed and analyzed;
3. starts gunicorn (``ecoreport.wsgi`` via ``benchmarks/ingest.py``'s launcher: DEBUG off, a
   secret, the same DATABASE_URL, Redis as cache; 2 workers x 1 thread for 2 cores), signs in
   through ``/accounts/login/`` with a keep-alive ``http.client`` connection (cookies and CSRF
   token handled like a browser), then requests ``/`` , ``/teams/<biggest team>/`` and
   ``/projects/<its biggest project>/`` for each period preset (``--warmup`` rounds, then
   ``--requests`` rounds, every page x period once per round), timing each from sending the
   request to reading the whole body;
4. checks every answer: 200, and the headline "IT energy" and location-based emissions equal a
   direct SQL sum over HourlyUsage for the same window and scope (to the shown precision);
5. prints p50/p95/max per page and period (goal: p95 < 300 ms for the overview and team page)
   and, for the page x period cells over the goal, the queries the page runs with their times and
   ``EXPLAIN (ANALYZE, BUFFERS)`` plans (in-process test client, same database; plans in
   ``var/bench-dashboards-explain.txt``).
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import types
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (
    ROOT,
    database_recreate,
    db_url,
    django_setup,
    free_port,
    gunicorn_start,
    gunicorn_stop,
    percentile,
)

GOAL_P95_MS = 300.0
GPUS_PER_HOST = 8
HOSTS_PER_POD = 8
USERNAME = "bench-viewer"
PASSWORD = "bench-dashboards-Pa55word"
PRESETS = ["7d", "30d", "90d", "month", "last-month", "quarter", "last-quarter"]
# (slug, name, projects); the first is the largest by design, but the biggest team is read back
# from the data.
TEAMS = [
    ("llm", "Large language models", 6),
    ("vision", "Vision", 4),
    ("research", "Research", 4),
    ("speech", "Speech", 3),
    ("recsys", "Recommendations", 3),
    ("platform", "ML platform", 2),
    ("robotics", "Robotics", 2),
    ("bio", "Biology", 2),
    ("search", "Search", 2),
    ("safety", "Safety", 2),
]
# (slug, name, grid zone, PUE, share of hosts, UTC offset of the local working day)
SITES = [
    ("paris", "Paris PA2", "FR", "1.25", 0.32, 1),
    ("frankfurt", "Frankfurt FR4", "DE", "1.35", 0.40, 1),
    ("ashburn", "Ashburn DC2", "US", "1.45", 0.28, -5),
]
IDLE_W = 70.0
BUSY_SPAN_W = 6.1  # W per % utilization above idle: 100 % -> 680 W (H100 SXM, 700 W limit)
LANE_SIZES = [(1, 6.0), (2, 4.0), (4, 4.0), (8, 4.0), (16, 1.5), (32, 0.7), (64, 0.3)]

USAGE_COLUMNS = [
    "gpu_id",
    "host_id",
    "site_id",
    "organization_id",
    "hour",
    "team_id",
    "project_id",
    "energy_j",
    "idle_energy_j",
    "unattributed_energy_j",
    "util_x_energy_j",
    "util_energy_j",
    "facility_energy_j",
    "co2e_g",
    "co2e_market_g",
    "gpu_seconds",
    "util_seconds",
    "util_x_seconds",
    "sample_count",
    "pue",
    "intensity_g_per_kwh",
    "intensity_factor_id",
    "intensity_resolution",
    "intensity_fallback",
    "market_intensity_g_per_kwh",
    "market_basis",
    "market_instrument_id",
    "market_factor_id",
    "certificate_share",
    "emissions_computed_at",
    # All of it the agents' GPU energy (CodeCarbon's dimensions, issue 15).
    "agent_energy_j",
    "component",
    "source",
]
JOB_COLUMNS = [
    "organization_id",
    "hour",
    "site_id",
    "team_id",
    "project_id",
    "job_id",
    "user_name",
    "energy_j",
    "gpu_seconds",
    "util_seconds",
    "util_x_seconds",
    "gpu_count",
    "facility_energy_j",
    "co2e_g",
    "co2e_market_g",
    "component",
    "source",
]
BIG_TABLES = ["accounting_hourlyusage", "accounting_hourlyjobusage", "accounting_hourlysummary"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL allowed to create databases",
    )
    p.add_argument("--db-name", default="ecoreport_bench_dashboards")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--gpus", type=int, default=1000)
    p.add_argument("--days", type=int, default=365, help="days of hourly data, ending now")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data set of a previous complete run (load it only when missing)",
    )
    p.add_argument("--load-only", action="store_true", help="build the data set, measure nothing")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2 cores)")
    p.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    p.add_argument("--requests", type=int, default=30, help="timed requests per page x period")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument(
        "--periods",
        default=",".join([*PRESETS, "365d"]),
        help="period presets, comma-separated; 365d = a custom one-year window (not a preset)",
    )
    p.add_argument("--pages", default="overview,team,project")
    p.add_argument(
        "--explain",
        action="append",
        default=[],
        metavar="PAGE:PERIOD",
        help="only EXPLAIN ANALYZE the queries of this page x period (repeatable), no gunicorn",
    )
    p.add_argument(
        "--explain-ms", type=float, default=10.0, help="explain queries slower than this"
    )
    p.add_argument("--no-explain", action="store_true", help="skip EXPLAIN of slow cells")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    # argv: benchmarks/metrics.py builds the same data set with its own options.
    return p.parse_args(argv)


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --- data set ----------------------------------------------------------------------------------


@dataclass
class Job:
    start: int  # seconds from the first hour of the data set
    end: int
    job_id: str  # "" when the work is not attributed (no job row, host defaults)
    user: str
    team: str  # COPY text: an id or \N
    project: str
    util: float
    interactive: bool


@dataclass
class Lane:
    gpus: list[tuple[str, float]]  # (COPY prefix "gpu\thost\tsite\torg\t", power multiplier)
    gm_sum: float
    jobs: list[Job] = field(default_factory=list)
    cursor: int = 0


@dataclass
class Allocation:
    start_h: int
    end_h: int
    lanes: list[Lane]


@dataclass
class Pod:
    site: int  # index in SITES
    default_key: str  # "team\tproject" of the pod's hosts' defaults (COPY text)
    allocations: list[Allocation] = field(default_factory=list)
    cursor: int = 0


def reusable(args: argparse.Namespace, url: str) -> dict | None:
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        found = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [args.db_name]
        ).fetchone()
    if not found:
        return None
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('bench_meta')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT value FROM bench_meta WHERE key = 'load'").fetchone()
    return row[0] if row else None


def setup_entities(args: argparse.Namespace, start: datetime, end: datetime) -> dict:
    """Organization, teams, projects, sites with factors, hosts, GPUs, a member. Returns ids."""
    from django.contrib.auth import get_user_model

    from ecoreport.carbon.models import CarbonIntensity, MarketInstrument, SitePue
    from ecoreport.carbon.sites import site_create
    from ecoreport.fleet.models import Gpu, Host
    from ecoreport.organizations.models import Project, Role, Team
    from ecoreport.organizations.services import membership_ensure, organization_create

    rng = random.Random(args.seed)
    org = organization_create(slug="bench", name="Benchmark AI")
    teams, projects = [], []
    for slug, name, n_projects in TEAMS:
        team = Team.objects.create(organization=org, slug=slug, name=name)
        teams.append(team)
        for i in range(n_projects):
            projects.append(
                Project.objects.create(
                    organization=org, slug=f"{slug}-{i + 1}", name=f"{name} {i + 1}", team=team
                )
            )
    sites = [
        site_create(organization=org, slug=slug, name=name, grid_zone=zone, pue=pue)
        for slug, name, zone, pue, _, _ in SITES
    ]
    # Paris buys certificates for half its consumption; Ashburn has a residual-mix contract;
    # Frankfurt's PUE improves mid-year and its grid has hourly factors.
    MarketInstrument.objects.create(
        organization=org,
        site=sites[0],
        kind="certificate",
        valid_from=start - timedelta(days=30),
        covered_share=0.5,
        source="Guarantees of origin (benchmark)",
        year=start.year,
    )
    MarketInstrument.objects.create(
        organization=org,
        site=sites[2],
        kind="residual",
        valid_from=start - timedelta(days=30),
        intensity_g_per_kwh=420.0,
        source="Residual mix (benchmark)",
        year=start.year,
    )
    SitePue.objects.create(
        organization=org,
        site=sites[1],
        valid_from=start + (end - start) * 0.55,
        pue="1.300",
        source="cooling retrofit (benchmark)",
    )
    hourly = []
    moment = start - timedelta(days=1)
    while moment < end + timedelta(days=2):
        h = moment.hour
        season = 1.0 + 0.15 * math.cos((moment.timetuple().tm_yday - 15) / 365.0 * 2 * math.pi)
        solar = 1.0 - 0.25 * math.exp(-(((h + 1) % 24 - 13) ** 2) / 18.0)
        hourly.append(
            CarbonIntensity(
                zone="DE",
                resolution="hour",
                start=moment,
                end=moment + timedelta(hours=1),
                intensity_g_per_kwh=round(381.0 * season * solar * rng.uniform(0.9, 1.1), 1),
                basis="location",
                source="benchmark: synthetic hourly DE factors",
                year=moment.year,
            )
        )
        moment += timedelta(hours=1)
    CarbonIntensity.objects.bulk_create(hourly, batch_size=5000)

    n_hosts = (args.gpus + GPUS_PER_HOST - 1) // GPUS_PER_HOST
    site_of_host = []
    for i, (_, _, _, _, share, _) in enumerate(SITES):
        count = round(n_hosts * share) if i < len(SITES) - 1 else n_hosts - len(site_of_host)
        site_of_host += [i] * count
    # Pods: up to 8 consecutive hosts of one site; each pod's hosts share their defaults.
    pods_hosts: list[list[int]] = []
    for h, s in enumerate(site_of_host):
        if (
            not pods_hosts
            or len(pods_hosts[-1]) == HOSTS_PER_POD
            or site_of_host[pods_hosts[-1][0]] != s
        ):
            pods_hosts.append([])
        pods_hosts[-1].append(h)
    pod_defaults = []
    for _ in pods_hosts:
        roll = rng.random()
        team = rng.choice(teams) if roll < 0.7 else None
        project = None
        if team is not None and roll < 0.35:
            project = rng.choice([p for p in projects if p.team_id == team.pk])
        pod_defaults.append((team, project))
    hosts = []
    for p, members in enumerate(pods_hosts):
        team, project = pod_defaults[p]
        for h in members:
            hosts.append(
                Host(
                    organization=org,
                    hostname=f"{SITES[site_of_host[h]][0][:3]}-gpu-{h:04d}",
                    site=sites[site_of_host[h]],
                    default_team=team,
                    default_project=project,
                    agent_version="1.4.2",
                    last_seen_at=end,
                )
            )
    Host.objects.bulk_create(hosts)
    gpus = Gpu.objects.bulk_create(
        [
            Gpu(
                organization=org,
                host=hosts[g // GPUS_PER_HOST],
                uuid=f"GPU-{rng.getrandbits(64):016x}-{g:05d}",
                index=g % GPUS_PER_HOST,
                name="NVIDIA H100 80GB HBM3",
                memory_total_mib=81559,
                power_limit_w=700.0,
                last_seen_at=end,
            )
            for g in range(args.gpus)
        ]
    )
    membership = membership_ensure(organization=org, username=USERNAME, role=Role.MEMBER)
    user = get_user_model().objects.get(pk=membership.user_id)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return {
        "org": org.pk,
        "teams": {t.pk: t.slug for t in teams},
        "projects": [(p.pk, p.team_id) for p in projects],
        "sites": [s.pk for s in sites],
        "pods": [
            {
                "hosts": [hosts[h].pk for h in members],
                "gpus": [
                    g.pk for h in members for g in gpus[h * GPUS_PER_HOST : (h + 1) * GPUS_PER_HOST]
                ],
                "site": site_of_host[members[0]],
                "team": pod_defaults[p][0].pk if pod_defaults[p][0] else None,
                "project": pod_defaults[p][1].pk if pod_defaults[p][1] else None,
            }
            for p, members in enumerate(pods_hosts)
        ],
    }


def nullable(value: int | None) -> str:
    return r"\N" if value is None else str(value)


def schedule(args: argparse.Namespace, ids: dict, hours: int) -> tuple[list[Pod], int]:
    """Allocations, lanes and jobs for every pod over the whole range (~100 k jobs)."""
    rng = random.Random(args.seed + 1)
    org = ids["org"]
    team_slugs = ids["teams"]
    users = {t: [f"{slug}-user{i}" for i in range(1, 9)] for t, slug in team_slugs.items()}
    # Project popularity: the first team's projects weigh most, then a random spread.
    first_team = next(iter(team_slugs))
    weights = [
        (3.0 if team_id == first_team else 1.0) * rng.uniform(0.4, 2.0)
        for _, team_id in ids["projects"]
    ]
    pods, job_counter = [], 0
    for spec in ids["pods"]:
        site = spec["site"]
        gpu_prefixes = []
        for i, gpu_id in enumerate(spec["gpus"]):
            host_id = spec["hosts"][i // GPUS_PER_HOST]
            gpu_prefixes.append(
                (f"{gpu_id}\t{host_id}\t{ids['sites'][site]}\t{org}\t", rng.gauss(1.0, 0.03))
            )
        pod = Pod(site=site, default_key=f"{nullable(spec['team'])}\t{nullable(spec['project'])}")
        h = 0
        while h < hours:
            end_h = min(hours, h + rng.randint(48, 168))
            project_id, team_id = rng.choices(ids["projects"], weights)[0]
            # The fleet gets busier over the year: shorter gaps between jobs.
            busy = 1.4 - 0.8 * h / hours
            lanes, free = [], list(gpu_prefixes)
            while free:
                sizes = [(s, w) for s, w in LANE_SIZES if s <= len(free)]
                size = rng.choices([s for s, _ in sizes], [w for _, w in sizes])[0]
                members, free = free[:size], free[size:]
                lanes.append(Lane(gpus=members, gm_sum=sum(m for _, m in members)))
            for lane in lanes:
                interactive = len(lane.gpus) <= 2 and rng.random() < 0.6
                t = h * 3600 + rng.randint(0, 6 * 3600)
                while t < end_h * 3600:
                    hours_long = min(96.0, max(1.0, rng.lognormvariate(math.log(10.0), 1.0)))
                    if interactive:
                        hours_long = min(hours_long, 12.0)
                    stop = min(end_h * 3600, t + int(hours_long * 60) * 60)
                    job_counter += 1
                    if rng.random() < 0.04:  # work nobody labelled: host defaults, no job row
                        job = Job(t, stop, "", "", *pod.default_key.split("\t"), 0.0, False)
                    else:
                        job = Job(
                            t,
                            stop,
                            str(4_000_000 + job_counter),
                            rng.choice(users[team_id]),
                            str(team_id),
                            str(project_id),
                            rng.uniform(35.0, 97.0) if not interactive else rng.uniform(15, 60),
                            interactive,
                        )
                    if not job.job_id:
                        job.util = rng.uniform(20.0, 90.0)
                    lane.jobs.append(job)
                    gap = rng.expovariate(1.0 / (3.0 * busy)) * 3600
                    if rng.random() < 0.05:
                        gap += rng.uniform(12, 48) * 3600  # the lane sits idle a day or two
                    t = stop + int(gap / 60) * 60
            pod.allocations.append(Allocation(h, end_h, lanes))
            h = end_h
        pods.append(pod)
    return pods, job_counter


def site_factors(org_id: int, site_ids: list[int], hours: list[datetime]) -> list[list[tuple]]:
    """Per site and hour: (pue, location g/kWh / 3.6e6, market g/kWh / 3.6e6, COPY suffix)."""
    from ecoreport.carbon.resolver import site_hour_factors

    now_text = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    out = []
    resolved = site_hour_factors(organization_id=org_id, hours=hours, site_ids=site_ids)
    for site_id in site_ids:
        rows = []
        for hour in hours:
            f = resolved[(site_id, hour)]
            suffix = "\t".join(
                [
                    repr(f.pue),
                    repr(f.intensity_g_per_kwh),
                    nullable(f.factor_id),
                    f.resolution,
                    "t" if f.fallback else "f",
                    repr(f.market_intensity_g_per_kwh),
                    f.market_basis,
                    nullable(f.market_instrument_id),
                    nullable(f.market_factor_id),
                    repr(f.certificate_share),
                    now_text,
                ]
            )
            rows.append(
                (
                    f.pue,
                    f.intensity_g_per_kwh / 3_600_000.0,
                    f.market_intensity_g_per_kwh / 3_600_000.0,
                    suffix,
                )
            )
        out.append(rows)
    return out


# Local working day (0..1) by local hour, and a lighter weekend.
_DAY = [max(0.0, math.sin((h - 7) / 13.0 * math.pi)) if 7 <= h <= 20 else 0.0 for h in range(24)]


def stream_rows(args: argparse.Namespace, url: str, ids: dict, start: datetime, hours: int) -> dict:
    """Generates and COPYs HourlyUsage and HourlyJobUsage hour by hour; returns counts."""
    from ecoreport.accounting.models import HourlyJobUsage, HourlyUsage

    for model, columns in ((HourlyUsage, USAGE_COLUMNS), (HourlyJobUsage, JOB_COLUMNS)):
        concrete = {f.column for f in model._meta.concrete_fields if not f.primary_key}
        missing = concrete - set(columns)
        required = [
            f.column for f in model._meta.concrete_fields if f.column in missing and not f.null
        ]
        if required:
            raise SystemExit(
                f"{model.__name__} has columns this benchmark does not fill: {required}"
            )
        assert set(columns) <= concrete, set(columns) - concrete

    t0 = time.perf_counter()
    pods, n_jobs = schedule(args, ids, hours)
    all_hours = [start + timedelta(hours=h) for h in range(hours)]
    factors = site_factors(ids["org"], ids["sites"], all_hours)
    print(
        f"  schedule: {len(pods)} pods, {sum(len(p.allocations) for p in pods):,} allocations, "
        f"{n_jobs:,} jobs; factors for {len(ids['sites'])} sites x {hours:,} hours "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    rng = random.Random(args.seed + 2)
    org = ids["org"]
    site_ids = [str(s) for s in ids["sites"]]
    usage_rows = job_rows = 0
    concurrent_samples: list[int] = []
    t_start = last_t = time.perf_counter()
    last_rows = 0
    usage_copy = f"COPY accounting_hourlyusage ({', '.join(USAGE_COLUMNS)}) FROM STDIN"
    jobs_copy = f"COPY accounting_hourlyjobusage ({', '.join(JOB_COLUMNS)}) FROM STDIN"
    with (
        psycopg.connect(url) as conn_u,
        psycopg.connect(url) as conn_j,
        conn_u.cursor() as cur_u,
        conn_j.cursor() as cur_j,
    ):
        for conn in (conn_u, conn_j):
            # Superuser only: no foreign-key triggers for rows whose ids come from the tables.
            conn.execute("SET session_replication_role = replica")
        with cur_u.copy(usage_copy) as copy_u, cur_j.copy(jobs_copy) as copy_j:
            for h in range(hours):
                hour = all_hours[h]
                ts = hour.strftime("%Y-%m-%d %H:%M:%S+00")
                hs, he = h * 3600, h * 3600 + 3600
                weekday = hour.weekday()
                lines: list[str] = []
                jlines: list[str] = []
                running = 0
                for pod in pods:
                    allocation = pod.allocations[pod.cursor]
                    while allocation.end_h <= h:
                        pod.cursor += 1
                        allocation = pod.allocations[pod.cursor]
                    pue, lk, mk, site_suffix = factors[pod.site][h]
                    local = (hour.hour + SITES[pod.site][5]) % 24
                    daytime = _DAY[local] * (0.5 if weekday >= 5 else 1.0)
                    site_id = site_ids[pod.site]
                    for lane in allocation.lanes:
                        jobs = lane.jobs
                        while lane.cursor < len(jobs) and jobs[lane.cursor].end <= hs:
                            lane.cursor += 1
                        # (team\tproject) -> [energy, idle, unattributed, util x energy,
                        # util energy, gpu s, util s, util x s, samples], energies per unit GPU
                        parts: dict[str, list[float]] = {}
                        covered = 0
                        k = lane.cursor
                        n = len(lane.gpus)
                        while k < len(jobs) and jobs[k].start < he:
                            job = jobs[k]
                            k += 1
                            sec = min(job.end, he) - max(job.start, hs)
                            if sec <= 0:
                                continue
                            covered += sec
                            if job.interactive:
                                util = job.util * (0.3 + 0.7 * daytime) * rng.uniform(0.85, 1.15)
                            else:
                                util = job.util * rng.uniform(0.94, 1.03)
                            util = min(100.0, util)
                            energy = (IDLE_W + BUSY_SPAN_W * util) * sec
                            key = f"{job.team}\t{job.project}"
                            acc = parts.get(key)
                            if acc is None:
                                acc = parts[key] = [0.0] * 9
                            acc[0] += energy
                            if not job.job_id:
                                acc[2] += energy
                            acc[3] += util * energy
                            acc[4] += energy
                            acc[5] += sec
                            acc[6] += sec
                            acc[7] += util * sec
                            acc[8] += sec / 10
                            if job.job_id:
                                running += 1
                                e = energy * lane.gm_sum
                                fe = e * pue
                                jlines.append(
                                    f"{org}\t{ts}\t{site_id}\t{key}\t{job.job_id}\t{job.user}\t"
                                    f"{e:.1f}\t{sec * n}\t{sec * n}\t{util * sec * n:.1f}\t{n}\t"
                                    f"{fe:.1f}\t{fe * lk:.4f}\t{fe * mk:.4f}\tgpu\tagent\n"
                                )
                        idle = 3600 - covered
                        if idle > 0:
                            energy = IDLE_W * idle
                            acc = parts.get(pod.default_key)
                            if acc is None:
                                acc = parts[pod.default_key] = [0.0] * 9
                            acc[0] += energy
                            acc[1] += energy
                            acc[2] += energy
                            acc[4] += energy
                            acc[5] += idle
                            acc[6] += idle
                            acc[8] += idle / 10
                        for key, acc in parts.items():
                            e1, i1, u1, uxe1, ue1 = acc[0], acc[1], acc[2], acc[3], acc[4]
                            mid = f"{ts}\t{key}\t"
                            tail = (
                                f"\t{acc[5]:.0f}\t{acc[6]:.0f}\t{acc[7]:.1f}\t{round(acc[8])}\t"
                                f"{site_suffix}"
                            )
                            for prefix, gm in lane.gpus:
                                e = e1 * gm
                                fe = e * pue
                                lines.append(
                                    f"{prefix}{mid}{e:.1f}\t{i1 * gm:.1f}\t{u1 * gm:.1f}\t"
                                    f"{uxe1 * gm:.1f}\t{ue1 * gm:.1f}\t{fe:.1f}\t{fe * lk:.4f}\t"
                                    f"{fe * mk:.4f}{tail}\t{e:.1f}\tgpu\tagent\n"
                                )
                copy_u.write("".join(lines))
                if jlines:
                    copy_j.write("".join(jlines))
                usage_rows += len(lines)
                job_rows += len(jlines)
                if h % 24 == 12:
                    concurrent_samples.append(running)
                if (h + 1) % (24 * 30) == 0 or h == hours - 1:
                    now_t = time.perf_counter()
                    print(
                        f"  {hour:%Y-%m-%d}: {usage_rows:>11,} usage rows, {job_rows:>10,} job rows; "
                        f"{(usage_rows - last_rows) / (now_t - last_t):,.0f} usage rows/s "
                        f"(overall {usage_rows / (now_t - t_start):,.0f}/s); load {load_avg()}",
                        flush=True,
                    )
                    last_t, last_rows = now_t, usage_rows
            print("  COPY: waiting for PostgreSQL to finish ...", flush=True)
    return {
        "usage_rows": usage_rows,
        "job_rows": job_rows,
        "jobs": n_jobs,
        "concurrent_jobs_median": sorted(concurrent_samples)[len(concurrent_samples) // 2]
        if concurrent_samples
        else 0,
        "copy_s": round(time.perf_counter() - t_start, 1),
    }


def secondary_indexes(url: str, tables: list[str]) -> list[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "JOIN pg_index x ON x.indexrelid = (quote_ident(i.schemaname) || '.' || "
            "quote_ident(i.indexname))::regclass "
            "WHERE i.tablename = ANY(%s) AND NOT x.indisprimary AND NOT x.indisunique",
            [tables],
        ).fetchall()


def build(args: argparse.Namespace, url: str) -> dict:
    """Creates and fills the database; returns what bench_meta records."""
    began = time.perf_counter()
    database_recreate(args.admin_url, args.db_name)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    django_setup(url, ROOT)
    from django.db import connection, transaction

    from ecoreport.accounting.services import summary_rebuild

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=args.days)
    hours = args.days * 24
    ids = setup_entities(args, start, end)
    print(
        f"set-up: migrated, {len(ids['pods'])} pods of hosts, {args.gpus:,} GPUs "
        f"({time.perf_counter() - began:.1f} s); data from {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    tables = ["accounting_hourlyusage", "accounting_hourlyjobusage"]
    indexes = secondary_indexes(url, tables)
    with psycopg.connect(url, autocommit=True) as conn:
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
    print(f"loading (COPY, {len(indexes)} secondary indexes dropped until the end) ...", flush=True)
    counts = stream_rows(args, url, ids, start, hours)
    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            conn.execute(definition)
    index_s = time.perf_counter() - t
    print(f"  {len(indexes)} indexes rebuilt in {index_s:.1f} s", flush=True)

    t = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounting_hourlyusage")
    moment = start
    while moment < end:
        nxt = min(end, (moment.replace(day=1) + timedelta(days=32)).replace(day=1))
        t1 = time.perf_counter()
        with transaction.atomic():
            summary_rebuild(organization_id=ids["org"], start=moment, end=nxt)
        print(
            f"  summary {moment:%Y-%m-%d} .. {nxt:%Y-%m-%d}: {time.perf_counter() - t1:.1f} s",
            flush=True,
        )
        moment = nxt
    summary_s = time.perf_counter() - t

    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in BIG_TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    vacuum_s = time.perf_counter() - t
    print(f"  vacuum + analyze: {vacuum_s:.1f} s", flush=True)

    t = time.perf_counter()
    targets = targets_create(ids, end)
    print(f"  {targets} targets evaluated ({time.perf_counter() - t:.1f} s)", flush=True)

    meta = {
        "generated_at": datetime.now(UTC).isoformat(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "gpus": args.gpus,
        "days": args.days,
        "seed": args.seed,
        **counts,
        "index_rebuild_s": round(index_s, 1),
        "summary_rebuild_s": round(summary_s, 1),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "total_s": round(time.perf_counter() - began, 1),
        "load_avg_end": load_avg(),
    }
    with psycopg.connect(url, autocommit=True) as conn:
        meta["summary_rows"] = conn.execute(
            "SELECT count(*) FROM accounting_hourlysummary"
        ).fetchone()[0]
        conn.execute("CREATE TABLE bench_meta (key text PRIMARY KEY, value jsonb)")
        conn.execute("INSERT INTO bench_meta VALUES ('load', %s)", [psycopg.types.json.Jsonb(meta)])
    print(
        f"data set built in {meta['total_s']:.0f} s: {meta['usage_rows']:,} hourly usage rows, "
        f"{meta['job_rows']:,} job rows ({meta['jobs']:,} jobs, median "
        f"{meta['concurrent_jobs_median']} running), {meta['summary_rows']:,} summary rows",
        flush=True,
    )
    return meta


def targets_create(ids: dict, end: datetime) -> int:
    """A few targets (organization, biggest team, its biggest project), evaluated now, with an
    hourly history of 60 days so the "latest evaluation" lookups meet a realistic table."""
    from ecoreport.demo.policies import DEMO_TARGETS
    from ecoreport.organizations.models import Organization, Project, Team
    from ecoreport.policies.models import Target, TargetEvaluation
    from ecoreport.policies.services import target_create, target_evaluate

    org = Organization.objects.get(pk=ids["org"])
    team, project = biggest(org.pk)
    team_obj = Team.objects.get(slug=team, organization=org)
    project_obj = Project.objects.get(slug=project, organization=org)
    # The demo's two organization-wide targets, then some of the benchmark's own scopes.
    org_wide = [t for t in DEMO_TARGETS if "scope" not in t and "project" not in t][:2]
    specs = [
        *(dict(t) for t in org_wide),
        {
            "name": "Market-based emissions at most 900 t this year",
            "metric": "co2e_market_kg",
            "comparator": "at_most",
            "threshold": 900_000.0,
            "period": "year",
        },
        {
            "name": f"{team} GPU utilization at least 60%",
            "scope_kind": Target.Scope.TEAM,
            "team": team_obj,
            "metric": "avg_gpu_util_pct",
            "comparator": "at_least",
            "threshold": 60.0,
            "period": "month",
        },
        {
            "name": f"{team} facility energy -5% vs last quarter",
            "scope_kind": Target.Scope.TEAM,
            "team": team_obj,
            "metric": "facility_energy_kwh",
            "comparator": "at_most",
            "reduction_pct": 5.0,
            "baseline": "previous_period",
            "period": "quarter",
            "forecast_method": "trailing_14d",
        },
        {
            "name": f"{project} at most 450 Wh per GPU-hour",
            "scope_kind": Target.Scope.PROJECT,
            "project": project_obj,
            "metric": "energy_per_gpu_hour_wh",
            "comparator": "at_most",
            "threshold": 450.0,
            "period": "month",
        },
    ]
    history = []
    for spec in specs:
        target = target_create(organization=org, **spec)
        latest = target_evaluate(target=target, now=end)[-1]
        for h in range(1, 60 * 24):
            history.append(
                TargetEvaluation(
                    organization=org,
                    target=target,
                    evaluated_at=end - timedelta(hours=h),
                    period_start=latest.period_start,
                    period_end=latest.period_end,
                    status=latest.status,
                    value=latest.value,
                    forecast_value=latest.forecast_value,
                    forecast_method=latest.forecast_method,
                    threshold_value=latest.threshold_value,
                    baseline_value=latest.baseline_value,
                    gpu_hours=latest.gpu_hours,
                    note="benchmark history",
                )
            )
    TargetEvaluation.objects.bulk_create(history, batch_size=5000)
    return len(specs)


def biggest(org_id: int) -> tuple[str, str]:
    """The team with the most energy over the data set, and that team's biggest project."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.slug, t.id FROM accounting_hourlysummary s "
            "JOIN organizations_team t ON t.id = s.team_id WHERE s.organization_id = %s "
            "GROUP BY t.slug, t.id ORDER BY sum(s.energy_j) DESC LIMIT 1",
            [org_id],
        )
        team, team_id = cursor.fetchone()
        cursor.execute(
            "SELECT p.slug FROM accounting_hourlysummary s "
            "JOIN organizations_project p ON p.id = s.project_id "
            "WHERE s.organization_id = %s AND p.team_id = %s "
            "GROUP BY p.slug ORDER BY sum(s.energy_j) DESC LIMIT 1",
            [org_id, team_id],
        )
        return team, cursor.fetchone()[0]


def sizes(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        out = {}
        for table in BIG_TABLES:
            total, heap = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_relation_size(%s)", [table, table]
            ).fetchone()
            rows = conn.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table]
            ).fetchone()[0]
            out[table] = {
                "rows_estimate": rows,
                "total_mb": round(total / 2**20),
                "heap_mb": round(heap / 2**20),
            }
        out["database_mb"] = round(
            conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
        )
        out["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        out["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]
        out["work_mem"] = conn.execute("SHOW work_mem").fetchone()[0]
        return out


# --- measurement -------------------------------------------------------------------------------


def period_query(key: str, now: datetime) -> dict[str, str]:
    if key.endswith("d") and key not in PRESETS:  # e.g. 365d: a custom window of whole days
        last = now.date()
        first = last - timedelta(days=int(key[:-1]) - 1)
        return {"period": "custom", "start": first.isoformat(), "end": last.isoformat()}
    return {"period": key}


class Browser:
    """A keep-alive HTTP/1.1 connection with a cookie jar: what a browser sends, no more."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict, bytes]:
        head = {"Host": f"127.0.0.1:{self.port}", "User-Agent": "ecoreport-bench/1"}
        if self.cookies:
            head["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        head.update(headers or {})
        try:
            self.conn.request(method, path, body=body, headers=head)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.request(method, path, body=body, headers=head)
            resp = self.conn.getresponse()
        data = resp.read()
        for raw in resp.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return resp.status, dict(resp.headers), data

    def login(self, username: str, password: str) -> None:
        status, _, page = self.request("GET", "/accounts/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None or "csrftoken" not in self.cookies:
            raise SystemExit(f"login page: {status}, no CSRF token")
        form = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": token.group(1).decode(),
                "username": username,
                "password": password,
                "next": "/",
            }
        ).encode()
        status, headers, _ = self.request(
            "POST",
            "/accounts/login/",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"sign-in failed: {status} {headers.get('Location')}")


_HEADLINE = {
    "energy": re.compile(r'<dt>IT energy</dt><dd><span class="num">([^<]+)</span>'),
    "co2e": re.compile(r'<dt>Emissions, location-based</dt><dd><span class="num">([^<]+)</span>'),
}


class Checker:
    """The headline figures a page must show: SQL sums over HourlyUsage for the same window."""

    def __init__(self, org_id: int, scopes: dict[str, tuple[str, int | None]]) -> None:
        self.org_id = org_id
        self.scopes = scopes
        self.cache: dict[tuple, tuple[float, float]] = {}

    def expected(self, page: str, start: datetime, end: datetime) -> tuple[float, float]:
        key = (page, start, end)
        if key not in self.cache:
            from django.db import connection

            column, value = self.scopes[page]
            where = f"AND {column} = %s" if value is not None else ""
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT coalesce(sum(energy_j), 0) / 3600000.0, "
                    "coalesce(sum(co2e_g), 0) / 1000.0 FROM accounting_hourlyusage "
                    f"WHERE organization_id = %s AND hour >= %s AND hour < %s {where}",
                    [self.org_id, start, end, *([value] if value is not None else [])],
                )
                self.cache[key] = cursor.fetchone()
        return self.cache[key]

    def check(self, page: str, period: dict[str, str], body: str, moments: list[datetime]) -> str:
        """'' when the page shows the expected figures for the window at one of ``moments``."""
        from ecoreport.dashboards.periods import parse_period

        shown = {}
        for name, pattern in _HEADLINE.items():
            found = pattern.search(body)
            if found is None:
                return f"no {name} headline on the page"
            shown[name] = html.unescape(found.group(1))
        problems = []
        for moment in moments:
            window = parse_period(period, now=moment)
            energy, co2e = self.expected(page, window.start, window.end)
            problems = [
                f"{name}: page {shown[name]} vs SQL {want:,.3f}"
                for name, want in (("energy", energy), ("co2e", co2e))
                if not _close(shown[name], want)
            ]
            if not problems:
                return ""
        return "; ".join(problems)


def _close(text: str, want: float) -> bool:
    try:
        got = float(text.replace(",", ""))
    except ValueError:
        return False
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(got - want) <= 0.5 * 10**-decimals + 1e-9 * abs(want)


def measure(args: argparse.Namespace, url: str, meta: dict) -> dict:
    from django.db import connection

    from ecoreport.organizations.models import Organization

    org = Organization.objects.get(slug="bench")
    team, project = biggest(org.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM organizations_team WHERE slug = %s", [team])
        team_id = cursor.fetchone()[0]
        cursor.execute("SELECT id FROM organizations_project WHERE slug = %s", [project])
        project_id = cursor.fetchone()[0]
    paths = {"overview": "/", "team": f"/teams/{team}/", "project": f"/projects/{project}/"}
    checker = Checker(
        org.pk,
        {
            "overview": ("organization_id", None),
            "team": ("team_id", team_id),
            "project": ("project_id", project_id),
        },
    )
    pages = [p for p in args.pages.split(",") if p]
    periods = [p for p in args.periods.split(",") if p]
    cells = [(page, period) for page in pages for period in periods]
    port = free_port()
    log = ROOT / "var" / "bench-dashboards-gunicorn.log"
    server_args = types.SimpleNamespace(
        redis_url=args.redis_url, workers=args.workers, threads=args.threads, code=ROOT
    )
    print(
        f"gunicorn gthread {args.workers} workers x {args.threads} threads on port {port}; "
        f"pages {', '.join(paths[p] for p in pages)}; {args.warmup} warm-up + {args.requests} "
        f"timed rounds over {len(cells)} page x period cells; load {load_avg()}",
        flush=True,
    )
    server = gunicorn_start(server_args, url, port, log)
    times: dict[tuple[str, str], list[float]] = {c: [] for c in cells}
    sizes_kb: dict[tuple[str, str], float] = {}
    failures: dict[tuple[str, str], str] = {}
    checked = 0
    try:
        browser = Browser(port)
        browser.login(USERNAME, PASSWORD)
        for rnd in range(args.warmup + args.requests):
            for cell in cells:
                if cell in failures:
                    continue
                page, key = cell
                query = period_query(key, datetime.now(UTC))
                target = paths[page] + "?" + urllib.parse.urlencode(query)
                before = datetime.now(UTC)
                t0 = time.perf_counter()
                status, _, body = browser.request("GET", target)
                elapsed = time.perf_counter() - t0
                after = datetime.now(UTC)
                if status != 200:
                    failures[cell] = f"HTTP {status} for {target}: {body[:300]!r}"
                    continue
                text = body.decode()
                problem = checker.check(page, query, text, [before, after])
                checked += 1
                if problem:
                    failures[cell] = f"{target}: {problem}"
                    continue
                sizes_kb[cell] = len(body) / 1024
                if rnd >= args.warmup:
                    times[cell].append(elapsed * 1000)
            if rnd == args.warmup - 1 or (rnd >= args.warmup and (rnd - args.warmup + 1) % 10 == 0):
                print(
                    f"  round {rnd + 1}/{args.warmup + args.requests} done; load {load_avg()}",
                    flush=True,
                )
    finally:
        gunicorn_stop(server)
    results = []
    for cell in cells:
        page, key = cell
        values = times[cell]
        row = {
            "page": page,
            "path": paths[page],
            "period": key,
            "n": len(values),
            "error": failures.get(cell),
        }
        if values:
            row.update(
                p50_ms=round(percentile(values, 0.5), 1),
                p95_ms=round(percentile(values, 0.95), 1),
                max_ms=round(max(values), 1),
                mean_ms=round(sum(values) / len(values), 1),
                body_kb=round(sizes_kb.get(cell, 0.0), 1),
            )
        results.append(row)
    print(
        f"\n{'page':<9} {'period':<13} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'KB':>6}  goal p95 < {GOAL_P95_MS:.0f} ms"
    )
    for r in results:
        if r.get("error"):
            print(f"{r['page']:<9} {r['period']:<13} FAILED: {r['error']}")
            continue
        goal = (
            ""
            if r["page"] == "project" or r["period"] not in PRESETS
            else ("ok" if r["p95_ms"] < GOAL_P95_MS else "OVER GOAL")
        )
        print(
            f"{r['page']:<9} {r['period']:<13} {r['n']:>3} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
            f"{r['max_ms']:>8.1f} {r['body_kb']:>6.0f}  {goal}"
        )
    print(f"{checked} answers checked against SQL sums over HourlyUsage; load {load_avg()}")
    return {
        "paths": paths,
        "results": results,
        "answers_checked": checked,
        "load_avg_end": load_avg(),
    }


# --- EXPLAIN ANALYZE -------------------------------------------------------------------------------


def explain(cells: list[tuple[str, str]], threshold_ms: float) -> dict:
    """Runs each page in-process (Django test client, same database) capturing its queries;
    EXPLAIN (ANALYZE, BUFFERS) for the queries over ``threshold_ms``."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from ecoreport.organizations.models import Organization

    org = Organization.objects.get(slug="bench")
    team, project = biggest(org.pk)
    paths = {"overview": "/", "team": f"/teams/{team}/", "project": f"/projects/{project}/"}
    client = Client()
    client.force_login(get_user_model().objects.get(username=USERNAME))
    out_path = ROOT / "var" / "bench-dashboards-explain.txt"
    report: dict[str, list] = {}
    with out_path.open("w") as out:
        for page, key in cells:
            target = (
                paths[page] + "?" + urllib.parse.urlencode(period_query(key, datetime.now(UTC)))
            )
            client.get(target)  # warm
            t0 = time.perf_counter()
            with CaptureQueriesContext(connection) as captured:
                response = client.get(target)
            total_ms = (time.perf_counter() - t0) * 1000
            queries = [(float(q["time"]) * 1000, q["sql"]) for q in captured.captured_queries]
            db_ms = sum(ms for ms, _ in queries)
            print(
                f"\n== {page} {key} ({target}): HTTP {response.status_code}, {total_ms:.0f} ms "
                f"in-process, {len(queries)} queries, {db_ms:.0f} ms in the database"
            )
            out.write(f"== {page} {key} {target}: {total_ms:.0f} ms, {len(queries)} queries\n")
            cell_report = []
            for ms, sql in sorted(queries, reverse=True):
                if ms < threshold_ms:
                    break
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                    plan = "\n".join(r[0] for r in cursor.fetchall())
                short = " ".join(sql.split())[:230]
                print(f"  {ms:7.1f} ms  {short}")
                top = [
                    line.strip()
                    for line in plan.splitlines()
                    if "Scan" in line or "Execution Time" in line or "Sort Method" in line
                ][:6]
                for line in top:
                    print(f"             {line[:150]}")
                out.write(f"\n-- {ms:.1f} ms\n{sql}\n{plan}\n")
                cell_report.append({"ms": round(ms, 1), "sql": short, "plan_top": top})
            report[f"{page}:{key}"] = {
                "in_process_ms": round(total_ms, 1),
                "queries": len(queries),
                "db_ms": round(db_ms, 1),
                "slow": cell_report,
            }
    print(f"\nplans: {out_path}")
    return report


def code_version() -> dict:
    """The commit measured, and the files that differed from it (others edit the tree)."""

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": git("status", "--porcelain").splitlines(),
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    url = db_url(args.admin_url, args.db_name)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_avg()} at start; "
        f"database {args.db_name}",
        flush=True,
    )
    code = code_version()
    print(
        f"code: commit {code['commit']}, {len(code['modified'])} files differ from it", flush=True
    )
    meta = reusable(args, url) if args.reuse else None
    if meta is None:
        if args.reuse:
            print("no complete data set to reuse: building it", flush=True)
        meta = build(args, url)
    else:
        env = {**os.environ, "DATABASE_URL": url}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        django_setup(url, ROOT)
        age = datetime.now(UTC) - datetime.fromisoformat(meta["end"])
        print(
            f"reusing the data set built {meta['generated_at'][:16]} ({meta['usage_rows']:,} usage "
            f"rows, loaded in {meta['total_s']:.0f} s); its last hour ended {age.total_seconds() / 3600:.1f} h ago",
            flush=True,
        )
        if age > timedelta(days=1):
            print("  (the shortest windows now hold fewer hours of data than when it was built)")
    figures: dict = {"dataset": meta, "sizes": sizes(url)}
    s = figures["sizes"]
    print(
        "sizes: "
        + ", ".join(
            f"{t.removeprefix('accounting_')} ~{s[t]['rows_estimate']:,} rows {s[t]['total_mb']:,} MB"
            for t in BIG_TABLES
        )
        + f"; database {s['database_mb']:,} MB; PostgreSQL {s['postgres']}, shared_buffers "
        f"{s['shared_buffers']}, work_mem {s['work_mem']}",
        flush=True,
    )
    if args.explain:
        figures["explain"] = explain(
            [tuple(c.split(":", 1)) for c in args.explain], args.explain_ms
        )
    elif not args.load_only:
        figures["measurement"] = measure(args, url, meta)
        slow = [
            (r["page"], r["period"])
            for r in figures["measurement"]["results"]
            if r.get("p95_ms", 0) >= GOAL_P95_MS
        ]
        if slow and not args.no_explain:
            print(f"\n{len(slow)} cells at or over {GOAL_P95_MS:.0f} ms p95: EXPLAIN ANALYZE")
            figures["explain"] = explain(slow, args.explain_ms)
    figures["machine"] = {"cpus": os.cpu_count(), "load_avg_end": load_avg()}
    figures["code"] = code_version()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
