from django.core.management.base import BaseCommand, CommandError

from ecoreport.fleet.services import FleetInputError, agent_token_issue, host_ensure, site_by_slug
from ecoreport.organizations.models import Organization, Project, Team


class Command(BaseCommand):
    help = "Issue an agent token bound to a host (created if needed); prints the token alone."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--org", required=True)
        parser.add_argument("--host", required=True, help="hostname of the GPU server")
        parser.add_argument("--site", help="slug of an existing site")
        parser.add_argument(
            "--team", help="default team for unattributed energy (created if needed)"
        )
        parser.add_argument(
            "--project", help="default project for unattributed energy (created if needed)"
        )

    def handle(self, *args, org, host, site, team, project, **options):  # type: ignore[no-untyped-def]
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization {org!r}.")
        site_obj = None
        if site:
            try:
                site_obj = site_by_slug(organization=organization, slug=site)
            except FleetInputError as exc:
                raise CommandError(str(exc)) from None
        team_obj = (
            Team.objects.get_or_create(
                organization=organization, slug=team, defaults={"name": team}
            )[0]
            if team
            else None
        )
        project_obj = (
            Project.objects.get_or_create(
                organization=organization,
                slug=project,
                defaults={"name": project, "team": team_obj},
            )[0]
            if project
            else None
        )
        host_obj = host_ensure(
            organization=organization,
            hostname=host,
            site=site_obj,
            default_team=team_obj,
            default_project=project_obj,
        )
        self.stdout.write(agent_token_issue(host=host_obj))
