from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ecoreport.carbon.factors import factors_import_csv


class Command(BaseCommand):
    help = (
        "Load carbon-intensity factors (any resolution) from a CSV with the columns "
        "zone,start,end,g_co2e_per_kwh,basis,source,year[,scope]. A file with bad rows loads "
        "nothing unless --skip-bad."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--skip-bad", action="store_true", help="load the good rows, report the bad"
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="update stored factors with the same zone, basis and period instead of refusing",
        )

    def handle(self, *args, file: Path, skip_bad: bool, replace: bool, **options):  # type: ignore[no-untyped-def]
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        result = factors_import_csv(text=text, skip_bad=skip_bad, replace=replace)
        for line, message in result.errors:
            self.stderr.write(f"{file}:{line}: {message}")
        if result.errors and not skip_bad:
            raise CommandError(
                f"{len(result.errors)} bad row(s); nothing was loaded. Fix them, or pass --skip-bad "
                "to load the others."
            )
        self.stdout.write(
            f"Loaded {result.created} factor(s), replaced {result.replaced}, skipped {result.skipped}."
        )
