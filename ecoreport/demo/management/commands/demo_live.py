import time
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from ecoreport.demo.live import LiveFleet
from ecoreport.demo.services import DEMO_SLUG
from ecoreport.organizations.models import Organization


class Command(BaseCommand):
    help = (
        "Keep every seeded demo host reporting live from where its history stops (one process "
        "for all of them), until stopped."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--interval", type=float, default=10.0, help="seconds per sample")
        parser.add_argument(
            "--exclude", action="append", default=[], help="a host a real agent feeds (repeat)"
        )
        parser.add_argument("--cycles", type=int, default=0, help="stop after N (0: never)")

    def handle(self, *args, interval: float, exclude: list[str], cycles: int, **options):  # type: ignore[no-untyped-def]
        if not 1 <= interval <= 3600:
            raise CommandError("--interval must be between 1 and 3600 seconds.")
        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        if organization is None:
            raise CommandError("No demo organization: run `manage.py seed_demo` first.")
        fleet = LiveFleet(organization, step_s=interval, now=datetime.now(UTC), exclude=exclude)
        self.stdout.write(
            f"Simulating {len(fleet.hosts)} hosts, {len(fleet.states)} GPUs live every "
            f"{interval:g} s."
        )
        n = 0
        try:
            while True:
                accepted = fleet.tick(datetime.now(UTC))
                n += 1
                if n == 1 or n % 60 == 0:
                    self.stdout.write(f"  cycle {n}: {accepted} samples")
                if cycles and n >= cycles:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return
