from django.core.management.base import BaseCommand, CommandError

from ecoreport.organizations.models import Organization
from ecoreport.policies import calc
from ecoreport.policies.services import targets_evaluate


class Command(BaseCommand):
    help = "Evaluate policy targets now (the hourly beat job does the same) and send alerts."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--org", help="only this organization's targets (its slug)")

    def handle(self, *args, org: str | None = None, **options):  # type: ignore[no-untyped-def]
        organization = None
        if org:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                raise CommandError(f"There is no organization '{org}'.")

        def progress(target, evaluation):  # type: ignore[no-untyped-def]
            label = calc.period_label(target.period, evaluation.period_start)
            value = "n/a" if evaluation.value is None else f"{evaluation.value:,.2f}"
            forecast = (
                "n/a" if evaluation.forecast_value is None else f"{evaluation.forecast_value:,.2f}"
            )
            threshold = (
                "n/a"
                if evaluation.threshold_value is None
                else f"{evaluation.threshold_value:,.2f}"
            )
            self.stdout.write(
                f"  {target.organization.slug}/{target.name} [{target.scope} {target.metric} "
                f"{label}]: {evaluation.status} (value {value}, forecast {forecast}, "
                f"threshold {threshold})"
            )

        summary = targets_evaluate(organization=organization, progress=progress)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items())) or "none"
        self.stdout.write(f"Evaluated {summary.evaluated} targets: {counts}.")
        if summary.failed:
            raise CommandError(f"{summary.failed} targets could not be evaluated; see the log.")
