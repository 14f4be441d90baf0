"""Writes for hosts and agent credentials.

Sites are fleet's rows, but writing one sets its grid zone and PUE, which are carbon's concepts
(and carbon's PUE history points at the site): site writes are ``ecoreport.carbon.sites``, so
that fleet imports no app above it.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ecoreport.core.errors import DomainError
from ecoreport.fleet.authentication import AGENT_TOKEN_PREFIX
from ecoreport.fleet.models import AgentCredential, GpuClaimConflict, Host, Site
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


def gpu_claim_conflict_record(
    *, organization: Organization, gpu_id: int, claimant: Host, samples: int, now: datetime
) -> None:
    """Count ``samples`` of GPU ``gpu_id`` refused from ``claimant`` (another host reports it)."""
    conflict, created = GpuClaimConflict.objects.get_or_create(
        gpu_id=gpu_id,
        claimant=claimant,
        defaults={
            "organization": organization,
            "first_at": now,
            "last_at": now,
            "samples_refused": samples,
        },
    )
    if not created:
        GpuClaimConflict.objects.filter(pk=conflict.pk).update(
            last_at=now, samples_refused=F("samples_refused") + samples
        )


class FleetInputError(DomainError):
    """A write refused for a reason a person can fix; the message says which."""


def site_by_slug(*, organization: Organization, slug: str) -> Site:
    """The organization's site ``slug``; a refusal naming the known ones where there is none
    (what the token commands' ``--site`` says when it is mistyped)."""
    sites = Site.objects.for_org(organization)
    site = sites.filter(slug=slug).first()
    if site is None:
        known = ", ".join(sites.values_list("slug", flat=True)) or "none"
        raise FleetInputError(f"No site {slug!r} in {organization.slug} (known: {known}).")
    return site


# What hostname(1) prints: RFC 1123 labels, dots between them. Stricter than the ingest schema
# (1-255 characters) on purpose: a person typing it gets told about a stray space or slash.
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*$")


@transaction.atomic
def host_register(
    *, organization: Organization, hostname: str, site: Site | None = None
) -> tuple[Host, str]:
    """The host (created if new, moved to ``site`` when one is given) and a new agent token for
    it. Only the token's hash is stored, so the caller shows it once."""
    hostname = hostname.strip()
    if len(hostname) > 255 or not _HOSTNAME_RE.match(hostname):
        raise FleetInputError(
            f"{hostname!r} is not a host name (letters, digits, '-', '_', dot-separated labels)."
        )
    if site is not None and site.organization_id != organization.pk:
        raise FleetInputError("That site belongs to another organization.")
    host = host_ensure(organization=organization, hostname=hostname, site=site)
    return host, agent_token_issue(host=host)
