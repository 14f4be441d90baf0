"""Writes for sites, hosts and agent credentials.

A site's grid zone and PUE are carbon's concepts: their checks and the PUE history live in
``ecoreport.carbon`` (``validation``, ``pue``), and a change that alters past emissions asks
for their recompute there (``carbon.recompute``). Site writes raise ``CarbonInputError``, as
they did when they lived in carbon, so the API's and the settings pages' answers stay the same.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from ecoreport.carbon.importer import FactorError, parse_zone
from ecoreport.carbon.pue import site_pue_initial, site_pue_set
from ecoreport.carbon.recompute import recompute_enqueue
from ecoreport.carbon.validation import CarbonInputError, pue_validate
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


class FleetInputError(ValueError):
    """A write refused for a reason a person can fix; the message says which."""


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


@transaction.atomic
def site_create(
    *,
    organization: Organization,
    slug: str,
    name: str,
    grid_zone: str,
    pue: object = "1.58",
    provider: str = "",
) -> Site:
    try:
        zone = parse_zone(grid_zone)
    except FactorError as exc:
        raise CarbonInputError(str(exc)) from None
    if Site.objects.for_org(organization).filter(slug=slug).exists():
        raise CarbonInputError(f"A site {slug!r} already exists.")
    site = Site.objects.create(
        organization=organization,
        slug=slug,
        name=name or slug,
        grid_zone=zone,
        pue=pue_validate(pue),
        provider=provider,
    )
    site_pue_initial(site=site)
    return site


@transaction.atomic
def site_update(
    *,
    site: Site,
    name: str | None = None,
    grid_zone: str | None = None,
    provider: str | None = None,
    pue: object = None,
    now: datetime | None = None,
) -> Site:
    """Name and provider change nothing else. A new grid zone is a correction: every hour of
    the site is recomputed. A new PUE applies from the current hour (use ``site_pue_set`` for
    another date)."""
    changed = []
    if name is not None and name != site.name:
        site.name = name
        changed.append("name")
    if provider is not None and provider != site.provider:
        site.provider = provider
        changed.append("provider")
    if grid_zone is not None and grid_zone != site.grid_zone:
        try:
            site.grid_zone = parse_zone(grid_zone)
        except FactorError as exc:
            raise CarbonInputError(str(exc)) from None
        changed.append("grid_zone")
        recompute_enqueue(
            start=None, end=None, site_ids=[site.pk], organization_id=site.organization_id
        )
    if changed:
        site.save(update_fields=changed)
    if pue is not None and pue_validate(pue) != site.pue:
        moment = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
        site_pue_set(site=site, pue=pue, valid_from=moment)
    return site
