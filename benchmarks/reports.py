"""Quarterly report benchmark: an organization's report for N GPUs over a whole quarter, on
PostgreSQL, including every format (PDF, HTML, CSV, XLSX).

    .venv/bin/python benchmarks/reports.py                 # 1,000 GPUs x 2,208 h = 2.2 M rows
    .venv/bin/python benchmarks/reports.py --gpus 100      # quick run (~220 k rows)

What it does:

1. drops and recreates its own database (``ecoreport_bench_reports``) and migrates it;
2. creates an organization with 8 teams, 24 projects, 3 sites and ``--gpus`` GPUs (8 per host);
3. fills HourlyUsage for 2026-Q3 (one row per GPU and hour, ``--gpus`` x 2,208 rows) with one
   ``INSERT ... SELECT`` over ``generate_series`` in PostgreSQL (energy, utilization, idle share,
   teams and projects that vary by GPU and hour, PUE and location/market intensities by site),
   then ANALYZE;
4. in a fresh child process (so that set-up memory does not count) times
   ``report_generate`` for the organization and 2026-Q3 and reads its peak RSS (ru_maxrss);
5. checks that the report's IT energy equals ``usage_for_org`` for the same period.

Goals (issue 8): under 20 s including the PDF, peak memory under 1 GB, for 1,000 GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "ecoreport_bench_reports"
PERIOD = "2026-Q3"


def _db_url(base: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + DB


def setup(base_url: str, gpus: int) -> None:
    import psycopg

    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    env = {**os.environ, "DATABASE_URL": _db_url(base_url)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ["DATABASE_URL"] = _db_url(base_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecoreport.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from ecoreport.accounting.models import HourlyUsage
    from ecoreport.fleet.models import Gpu, Host, Site
    from ecoreport.organizations.models import Organization, Project, Team

    began = time.monotonic()
    org = Organization.objects.create(slug="bench", name="Benchmark AI")
    teams = Team.objects.bulk_create(
        [Team(organization=org, slug=f"team-{i}", name=f"Team {i}") for i in range(8)]
    )
    Project.objects.bulk_create(
        [
            Project(organization=org, slug=f"project-{i}", name=f"Project {i}", team=teams[i % 8])
            for i in range(24)
        ]
    )
    sites = [
        Site.objects.create(organization=org, slug=slug, name=slug, grid_zone=zone, pue=pue)
        for slug, zone, pue in (
            ("paris", "FR", 1.2),
            ("virginia", "US-MIDA-PJM", 1.4),
            ("dublin", "IE", 1.3),
        )
    ]
    hosts = Host.objects.bulk_create(
        [
            Host(organization=org, hostname=f"gpu-node-{h:04d}", site=sites[h % 3])
            for h in range((gpus + 7) // 8)
        ]
    )
    Gpu.objects.bulk_create(
        [
            Gpu(
                organization=org,
                host=hosts[g // 8],
                uuid=f"GPU-{g:06d}",
                index=g % 8,
                name="NVIDIA H100 80GB HBM3",
            )
            for g in range(gpus)
        ]
    )
    # Every concrete, non-null column gets a value: Django's field defaults are not database
    # defaults, so the INSERT names them all.
    values = {
        "organization_id": str(org.pk),
        "hour": "h.hour",
        "gpu_id": "g.id",
        "host_id": "g.host_id",
        "site_id": "s.id",
        "team_id": f"(SELECT id FROM organizations_team WHERE organization_id = {org.pk} ORDER BY id "
        "OFFSET ((g.id + h.n / 24) % 9) LIMIT 1)",
        "project_id": f"(SELECT id FROM organizations_project WHERE organization_id = {org.pk} ORDER BY id "
        "OFFSET ((g.id * 7 + h.n / 48) % 25) LIMIT 1)",
        "energy_j": "e.energy_j",
        "idle_energy_j": "e.energy_j * e.idle",
        "unattributed_energy_j": "e.energy_j * e.idle",
        "gpu_seconds": "3600",
        "util_seconds": "3600",
        "util_x_seconds": "3600 * e.util",
        "util_x_energy_j": "e.energy_j * e.util",
        "util_energy_j": "e.energy_j",
        "sample_count": "360",
        "facility_energy_j": "e.energy_j * s.pue",
        "co2e_g": "e.energy_j * s.pue / 3600000.0 * e.intensity",
        "co2e_market_g": "e.energy_j * s.pue / 3600000.0 * e.intensity * 0.8",
        "pue": "s.pue",
        "intensity_g_per_kwh": "e.intensity",
        "intensity_resolution": "'year'",
        "intensity_fallback": "false",
        "market_intensity_g_per_kwh": "e.intensity * 0.8",
        "market_basis": "'location'",
        "certificate_share": "0.2",
        "emissions_computed_at": "now()",
    }
    fields = [f for f in HourlyUsage._meta.concrete_fields if not f.primary_key]
    columns, exprs = [], []
    for field in fields:
        if field.column in values:
            columns.append(field.column)
            exprs.append(values[field.column])
        elif not field.null:
            columns.append(field.column)
            exprs.append(repr(field.get_default()).replace('"', "'"))
    # team_id NULL about 1 in 9 (OFFSET past the 8 teams): unattributed energy, as in real fleets.
    sql = f"""
        INSERT INTO {HourlyUsage._meta.db_table} ({", ".join(columns)})
        SELECT {", ".join(exprs)}
        FROM (SELECT id, host_id FROM fleet_gpu WHERE organization_id = {org.pk}) g
        JOIN fleet_host hh ON hh.id = g.host_id
        JOIN (SELECT id, pue::float AS pue, grid_zone FROM fleet_site) s ON s.id = hh.site_id
        CROSS JOIN (SELECT n, TIMESTAMPTZ '2026-07-01 00:00+00' + n * INTERVAL '1 hour' AS hour
                    FROM generate_series(0, 2207) n) h
        CROSS JOIN LATERAL (SELECT
            (150 + 500 * ((g.id * 37 + h.n) % 100) / 100.0) * 3600 AS energy_j,
            ((g.id + h.n) % 10) / 20.0 AS idle,
            20 + ((g.id * 13 + h.n * 7) % 80) AS util,
            CASE s.grid_zone WHEN 'FR' THEN 40 + (h.n % 24) * 2 WHEN 'IE' THEN 250 + (h.n % 24) * 5
                 ELSE 350 + (h.n % 24) * 3 END AS intensity) e
    """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        rows = cursor.rowcount
        cursor.execute(f"ANALYZE {HourlyUsage._meta.db_table}")
    print(f"set-up: {gpus:,} GPUs, {rows:,} hourly rows in {time.monotonic() - began:.1f} s")


def measure(base_url: str) -> None:
    os.environ["DATABASE_URL"] = _db_url(base_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecoreport.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    from ecoreport.accounting.selectors import UsageQuery, usage_for_org
    from ecoreport.core.periods import parse_period
    from ecoreport.organizations.models import Organization
    from ecoreport.reports.models import Report, ReportFile
    from ecoreport.reports.services import report_generate

    org = Organization.objects.get(slug="bench")
    period = parse_period(PERIOD)
    marks: list[tuple[str, float]] = []
    began = time.monotonic()

    def progress(step: str) -> None:
        marks.append((step, time.monotonic()))

    Report.objects.filter(organization=org).delete()
    report = report_generate(organization=org, period=period, progress=progress)
    progress("done")
    total = time.monotonic() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    api = usage_for_org(organization=org, query=UsageQuery(start=period.start, end=period.end))[
        "totals"
    ]
    files = {f.format: f.size_bytes for f in ReportFile.objects.filter(report=report)}
    print(
        json.dumps(
            {
                "status": report.status,
                "seconds": round(total, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "energy_kwh_report": report.headline["energy_kwh"],
                "energy_kwh_api": api["energy_kwh"],
                "agree": abs(report.headline["energy_kwh"] - api["energy_kwh"])
                <= 1e-9 * api["energy_kwh"],
                "file_bytes": files,
                "steps_s": {
                    name: round(marks[i + 1][1] - t, 2) for i, (name, t) in enumerate(marks[:-1])
                },
            },
            indent=1,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ecoreport"),
    )
    parser.add_argument(
        "--skip-setup", action="store_true", help="reuse the data of the previous run"
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.database_url)
        return
    if not args.skip_setup:
        setup(args.database_url, args.gpus)
    # A fresh process: the peak RSS is the report's, not the set-up's.
    subprocess.run(
        [sys.executable, __file__, "--measure", "--database-url", args.database_url], check=True
    )
    print("goals: < 20 s including the PDF, peak RSS < 1,024 MB (1,000 GPUs)")


if __name__ == "__main__":
    main()
