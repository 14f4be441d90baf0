"""``manage.py generate_report --org SLUG [--team SLUG] --period 2026-Q3 --format pdf,html,csv
--out DIR``: issue (or reuse) the report and write the chosen formats to DIR."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ecoreport.core.periods import PeriodError, parse_complete_period
from ecoreport.organizations.models import Organization, Team
from ecoreport.reports.models import FORMATS, Report, ReportFile
from ecoreport.reports.services import report_generate


class Command(BaseCommand):
    help = "Generate an organization's or team's sustainability report and write its files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--team", default="", help="team slug (default: whole organization)")
        parser.add_argument("--period", required=True, help="2026-Q3, 2026-07 or 2026")
        parser.add_argument(
            "--format",
            default="pdf,html,csv",
            help=f"comma list of {', '.join(FORMATS)} (default pdf,html,csv)",
        )
        parser.add_argument("--out", default=".", help="directory to write the files to")

    def handle(self, *args: Any, **options: Any) -> None:
        formats = [f.strip().lower() for f in options["format"].split(",") if f.strip()]
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise CommandError(
                f"Unknown format {', '.join(unknown) or '(none)'}; use {', '.join(FORMATS)}."
            )
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organization {options['org']!r}.")
        team = None
        if options["team"]:
            team = Team.objects.for_org(org).filter(slug=options["team"]).first()
            if team is None:
                raise CommandError(f"No team {options['team']!r} in {org.slug}.")
        try:
            period = parse_complete_period(options["period"], now=timezone.now())
        except PeriodError as error:
            raise CommandError(str(error)) from None
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()

        def progress(step: str) -> None:
            self.stdout.write(f"[{time.monotonic() - began:6.1f}s] {step}")
            self.stdout.flush()

        report = report_generate(
            organization=org,
            team=team,
            period=period,
            trigger=Report.Trigger.COMMAND,
            progress=progress,
        )
        if report.status != Report.Status.ISSUED:
            raise CommandError(
                f"Report {report.pk} is {report.status}: {report.error or 'another process is building it'}"
            )
        for fmt in formats:
            file = ReportFile.objects.get(report=report, format=fmt)
            path = out / f"{report.filename_stem}.{fmt}"
            path.write_bytes(bytes(file.content))
            self.stdout.write(
                f"wrote {path} ({file.size_bytes:,} bytes, sha256 {file.sha256[:16]}…)"
            )
        if report.change_note:
            self.stdout.write(report.change_note)
        self.stdout.write(
            self.style.SUCCESS(
                f"{org.slug} {period.label} version {report.version} in {time.monotonic() - began:.1f}s"
            )
        )
