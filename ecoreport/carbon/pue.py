"""Writes of a site's PUE over time: dated periods, each recomputing the hours it covers."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import transaction

from ecoreport.carbon.models import SINCE_EVER, SitePue
from ecoreport.carbon.recompute import recompute_enqueue
from ecoreport.carbon.validation import CarbonInputError, pue_validate, whole_hour
from ecoreport.fleet.models import Site


def site_pue_initial(*, site: Site) -> SitePue:
    """The period of the value the site had all along, before any dated change."""
    return SitePue.objects.create(
        organization_id=site.organization_id,
        site=site,
        valid_from=SINCE_EVER,
        pue=site.pue,
        source="initial value",
    )


@transaction.atomic
def site_pue_set(
    *, site: Site, pue: object, valid_from: datetime, source: str = "", now: datetime | None = None
) -> SitePue:
    """The site's PUE from ``valid_from`` (UTC hour) until its next period; recomputes them."""
    value = pue_validate(pue)
    if valid_from.tzinfo is None:
        raise CarbonInputError("valid_from needs a UTC offset")
    valid_from = whole_hour(valid_from, "valid_from")
    if not SitePue.objects.filter(site=site).exists():
        # The value the site had all along holds before the first dated change.
        site_pue_initial(site=site)
    period, _ = SitePue.objects.update_or_create(
        site=site,
        valid_from=valid_from,
        defaults={"organization_id": site.organization_id, "pue": value, "source": source},
    )
    following = (
        SitePue.objects.filter(site=site, valid_from__gt=valid_from).order_by("valid_from").first()
    )
    current = (
        SitePue.objects.filter(site=site, valid_from__lte=now or datetime.now(UTC))
        .order_by("-valid_from")
        .first()
    )
    if current is not None and current.pue != site.pue:
        Site.objects.filter(pk=site.pk).update(pue=current.pue)
        site.pue = current.pue
    recompute_enqueue(
        start=valid_from,
        end=following.valid_from if following else None,
        site_ids=[site.pk],
        organization_id=site.organization_id,
    )
    return period
