"""Site writes: a site's name, grid zone and PUE.

``Site`` is fleet's row (hosts belong to sites), but its zone and PUE are carbon's concepts: the
zone is checked like a factor's, the PUE keeps its history in ``SitePue``, and a zone
correction asks for the site's emissions to be recomputed. Errors are ``CarbonInputError``s.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import transaction

from ecoreport.carbon.importer import FactorError, parse_zone
from ecoreport.carbon.pue import site_pue_initial, site_pue_set
from ecoreport.carbon.recompute import recompute_enqueue
from ecoreport.carbon.validation import CarbonInputError, pue_validate
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization


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
