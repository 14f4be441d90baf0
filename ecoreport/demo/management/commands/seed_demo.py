import time

from django.core.management.base import BaseCommand, CommandError

from ecoreport.demo.carbon import demo_carbon_aware_hint, demo_carbon_seed
from ecoreport.demo.services import demo_seed
from ecoreport.organizations.models import Organization


class Command(BaseCommand):
    help = "Create (or re-create) the 'demo' organization with realistic history."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--days",
            type=int,
            default=160,
            help="days of history (default 160: covers the last complete quarter)",
        )
        parser.add_argument("--gpus", type=int, default=16, help="number of GPUs (default 16)")
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args, days: int, gpus: int, seed: int, **options):  # type: ignore[no-untyped-def]
        if not 1 <= days <= 800:
            raise CommandError("--days must be between 1 and 800.")
        if not 1 <= gpus <= 512:
            raise CommandError("--gpus must be between 1 and 512.")
        began = time.monotonic()

        def carbon(organization: Organization) -> None:
            # Hourly grid factors over the whole history and a green contract for one site,
            # loaded before the rollup so that it applies them.
            demo_carbon_seed(organization=organization, days=days)
            self.stdout.write(
                f"  hourly grid factors for {days} days and a green-tariff contract loaded"
            )

        summary = demo_seed(
            days=days, gpus=gpus, seed=seed, progress=self.stdout.write, before_rollup=carbon
        )
        self.stdout.write(
            f"Seeded {summary.samples:,} samples and {summary.hours:,} hourly rollups in "
            f"{time.monotonic() - began:.1f} s."
        )
        # The Carbon Aware SDK-shaped API answers from the factors just loaded: say what.
        self.stdout.write(demo_carbon_aware_hint(organization=summary.organization))
        if summary.login_created:
            self.stdout.write(self.style.SUCCESS("Sign in as demo / demo (admin of 'demo')."))
        if summary.metrics_token:
            self.stdout.write(
                "Prometheus can scrape /metrics with the viewer 'prometheus': Authorization: "
                f"Bearer {summary.metrics_token}  (docs/integrations.md)"
            )
        else:
            self.stdout.write("DEBUG is off: no demo login was created.")
