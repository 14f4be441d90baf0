"""Writes of a site's market-based instruments (supplier contracts, residual mix, certificates);
each recomputes the hours it is valid for."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from ecoreport.carbon.models import MAX_INTENSITY_G_PER_KWH, InstrumentKind, MarketInstrument
from ecoreport.carbon.recompute import recompute_enqueue
from ecoreport.carbon.validation import CarbonInputError, whole_hour
from ecoreport.fleet.models import Site


@transaction.atomic
def market_instrument_create(
    *,
    site: Site,
    kind: str,
    valid_from: datetime,
    valid_to: datetime | None = None,
    intensity_g_per_kwh: float | None = None,
    covered_share: float | None = None,
    source: str,
    year: int,
) -> MarketInstrument:
    if kind not in InstrumentKind.values:
        raise CarbonInputError(f"kind {kind!r} must be one of {', '.join(InstrumentKind.values)}")
    if valid_from.tzinfo is None or (valid_to is not None and valid_to.tzinfo is None):
        raise CarbonInputError("validity dates need a UTC offset")
    valid_from = whole_hour(valid_from, "valid_from")
    if valid_to is not None:
        valid_to = whole_hour(valid_to, "valid_to")
    if valid_to is not None and valid_to <= valid_from:
        raise CarbonInputError("valid_to must be after valid_from")
    if not source.strip():
        raise CarbonInputError("source is empty: name the contract or registry")
    if kind == InstrumentKind.CERTIFICATE:
        if covered_share is None or not 0 < covered_share <= 1:
            raise CarbonInputError("a certificate needs covered_share in (0, 1]")
        intensity_g_per_kwh = None
    else:
        if intensity_g_per_kwh is None or not 0 <= intensity_g_per_kwh <= MAX_INTENSITY_G_PER_KWH:
            raise CarbonInputError(
                f"a {kind} factor needs intensity_g_per_kwh between 0 and {MAX_INTENSITY_G_PER_KWH:.0f}"
            )
        covered_share = None
    instrument = MarketInstrument.objects.create(
        organization_id=site.organization_id,
        site=site,
        kind=kind,
        valid_from=valid_from,
        valid_to=valid_to,
        intensity_g_per_kwh=intensity_g_per_kwh,
        covered_share=covered_share,
        source=source.strip(),
        year=year,
    )
    recompute_enqueue(
        start=valid_from, end=valid_to, site_ids=[site.pk], organization_id=site.organization_id
    )
    return instrument


@transaction.atomic
def market_instrument_delete(*, instrument: MarketInstrument) -> None:
    recompute_enqueue(
        start=instrument.valid_from,
        end=instrument.valid_to,
        site_ids=[instrument.site_id],
        organization_id=instrument.organization_id,
    )
    instrument.delete()
