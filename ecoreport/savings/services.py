"""Writes for the savings app: a site's electricity price."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.utils import timezone

from ecoreport.core.errors import DomainError
from ecoreport.fleet.models import Site
from ecoreport.savings.models import SitePrice, currency_validator

# Demo figures in one currency (prices in different currencies do not add up in a scope's cost):
# roughly what a datacenter pays per kWh at each demo site, for the calculator to show.
DEMO_PRICES_EUR = {"paris-dc": "0.16", "iowa-gcp": "0.08", "warsaw-dc": "0.19"}


class PriceError(DomainError):
    pass


def site_price_set(
    *, site: Site, price_per_kwh: object, currency: str, source: str = ""
) -> SitePrice:
    """Set (or replace) the price per facility kWh of ``site``."""
    try:
        price = Decimal(str(price_per_kwh))
    except InvalidOperation:
        raise PriceError(f"{price_per_kwh!r} is not a price") from None
    if not price.is_finite() or price < 0:
        raise PriceError("a price must be a finite number, zero or more")
    currency = currency.strip().upper()
    currency_validator(currency)
    record, _ = SitePrice.objects.update_or_create(
        site=site,
        defaults={
            "organization_id": site.organization_id,
            "price_per_kwh": price,
            "currency": currency,
            "source": source,
            "updated_at": timezone.now(),
        },
    )
    return record


def site_prices_demo_set(*, sites: list[Site]) -> None:
    for site in sites:
        if site.slug in DEMO_PRICES_EUR:
            site_price_set(
                site=site,
                price_per_kwh=DEMO_PRICES_EUR[site.slug],
                currency="EUR",
                source="demo figure",
            )
