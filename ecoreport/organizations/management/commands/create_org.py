from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ecoreport.organizations.models import Organization
from ecoreport.organizations.services import organization_create


class Command(BaseCommand):
    help = "Create an organization."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)

    def handle(self, *args, slug: str, name: str, **options):  # type: ignore[no-untyped-def]
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"Organization {slug!r} already exists.")
        try:
            org = organization_create(slug=slug, name=name)
        except ValidationError as error:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
            ) from None
        self.stdout.write(f"Created organization {org.slug} ({org.name}).")
