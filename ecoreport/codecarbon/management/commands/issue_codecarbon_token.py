from django.core.management.base import BaseCommand, CommandError

from ecoreport.codecarbon.services import token_issue
from ecoreport.fleet.services import FleetInputError, site_by_slug
from ecoreport.organizations.models import Organization, Project, Team


class Command(BaseCommand):
    help = (
        "Issue a token for CodeCarbon trackers (their api_key) bound to a team, project and "
        "site; prints the token alone."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--org", required=True)
        parser.add_argument("--team", required=True, help="team slug (created if needed)")
        parser.add_argument("--project", required=True, help="project slug (created if needed)")
        parser.add_argument(
            "--site", required=True, help="slug of an existing site: its grid zone and PUE apply"
        )
        parser.add_argument(
            "--exclude-gpu",
            action="store_true",
            help="ignore the trackers' GPU energy: an EcoReport agent already measures these GPUs",
        )

    def handle(self, *args, org, team, project, site, exclude_gpu, **options):  # type: ignore[no-untyped-def]
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization {org!r}.")
        try:
            site_obj = site_by_slug(organization=organization, slug=site)
        except FleetInputError as exc:
            raise CommandError(str(exc)) from None
        team_obj = Team.objects.get_or_create(
            organization=organization, slug=team, defaults={"name": team}
        )[0]
        project_obj = Project.objects.get_or_create(
            organization=organization, slug=project, defaults={"name": project, "team": team_obj}
        )[0]
        _, raw = token_issue(
            team=team_obj, project=project_obj, site=site_obj, exclude_gpu=exclude_gpu
        )
        self.stdout.write(raw)
