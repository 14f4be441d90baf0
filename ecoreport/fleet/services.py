"""Writes for sites, hosts and agent credentials."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ecoreport.fleet.authentication import AGENT_TOKEN_PREFIX
from ecoreport.fleet.models import AgentCredential, Host, Site
from ecoreport.organizations.models import Organization, Project, Team, hash_token, new_token


@transaction.atomic
def host_ensure(
    *,
    organization: Organization,
    hostname: str,
    site: Site | None = None,
    default_team: Team | None = None,
    default_project: Project | None = None,
) -> Host:
    host, _ = Host.objects.get_or_create(organization=organization, hostname=hostname)
    changed = []
    for attr, value in (
        ("site", site),
        ("default_team", default_team),
        ("default_project", default_project),
    ):
        if value is not None and getattr(host, f"{attr}_id") != value.pk:
            setattr(host, attr, value)
            changed.append(attr)
    if changed:
        host.save(update_fields=changed)
    return host


def agent_token_issue(*, host: Host) -> str:
    token = new_token(AGENT_TOKEN_PREFIX)
    AgentCredential.objects.create(
        organization=host.organization, host=host, key_hash=hash_token(token), key_prefix=token[:10]
    )
    return token


def agent_credential_revoke(*, credential: AgentCredential) -> None:
    AgentCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
