from django.core.management.base import BaseCommand, CommandError

from ecoreport.organizations.models import Organization, Role
from ecoreport.organizations.services import api_token_issue, membership_ensure


class Command(BaseCommand):
    help = "Issue a read-API token for a user (created if needed); prints the token alone."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--org", required=True)
        parser.add_argument("--user", required=True)
        parser.add_argument("--role", choices=Role.values, default="viewer")

    def handle(self, *args, org: str, user: str, role: str, **options):  # type: ignore[no-untyped-def]
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(
                f"No organization {org!r}. Create it with: manage.py create_org {org} --name ..."
            )
        membership = membership_ensure(organization=organization, username=user, role=role)
        self.stdout.write(api_token_issue(membership=membership))
