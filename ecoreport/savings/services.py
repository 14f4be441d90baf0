"""Writes for the savings app: a site's electricity price."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.utils import timezone

from ecoreport.core.errors import DomainError
from ecoreport.fleet.models import Site
from ecoreport.savings.models import SitePrice, currency_validator


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
