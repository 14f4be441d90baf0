"""Which PUE and which factors apply to a site in a given hour.

Location-based: the zone's hourly factor, else its calendar-month factor, else its calendar-year
factor (the year covering the hour, else the nearest year the zone has), else the world average
(a *fallback*: the zone has no factor of its own). At each level an organization's own factor
is preferred over a shared one. Only ``location`` (grid-average) factors take part.

Market-based (GHG Protocol Scope 2): the site's supplier-specific factor, else its residual mix,
else a market-basis factor of the zone (e.g. a published national residual mix), else the
location-based factor; certificates then cover their share of consumption at 0 g/kWh. A zone's
annual market factor of an earlier year is carried forward to later years, flagged
(``market_basis`` "zone-prior"); a later year's factor is never used for an earlier year (then
the location-based factor applies): a residual mix is published after its year, never before.

Marginal factors (``marginal``, e.g. WattTime's co2_moer) never enter either: they are timing
signals, carried as ``SiteHourFactors.marginal_g_per_kwh`` (hourly rows only) for the timing
lever, and read by the best window, and nothing else.

Everything here reads; resolution happens in Python over a handful of candidate rows per zone,
so a rollup of many hours costs a few queries, not one per hour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q

from ecoreport.carbon.emissions import market_intensity_g_per_kwh
from ecoreport.carbon.models import (
    WORLD_ZONE,
    CarbonIntensity,
    InstrumentKind,
    MarketInstrument,
    SitePue,
)
from ecoreport.fleet.models import Site

NO_SITE = 0  # rows of hosts that are placed at no site
# market_basis of an hour whose zone market factor is the annual factor of an earlier year
# (the fallback the provenance and the report flag); fits HourlyUsage.market_basis (10 chars).
MARKET_ZONE_PRIOR_YEAR = "zone-prior"


@dataclass(frozen=True)
class ResolvedFactor:
    factor_id: int | None
    intensity_g_per_kwh: float
    resolution: str  # hour | month | year | world
    fallback: bool


@dataclass(frozen=True)
class SiteHourFactors:
    """Everything the rollup writes onto a (site, hour)'s rows, and compares on recompute."""

    pue: float
    intensity_g_per_kwh: float
    factor_id: int | None
    resolution: str
    fallback: bool
    market_intensity_g_per_kwh: float
    market_basis: str  # supplier | residual | zone | zone-prior | location
    market_instrument_id: int | None
    market_factor_id: int | None
    certificate_share: float
    # The zone's hourly marginal rate, a timing signal only: never stored with the emissions,
    # never part of a reported figure.
    marginal_g_per_kwh: float | None = None


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    out = []
    moment = start
    while moment < end:
        out.append(moment)
        moment += timedelta(hours=1)
    return out


class _ZoneFactors:
    """Candidate factors of one zone and basis, indexed for per-hour lookup."""

    def __init__(self, rows: list[CarbonIntensity]) -> None:
        # Own factors sort after shared ones, so they overwrite them in the dicts below.
        rows = sorted(rows, key=lambda r: (r.organization_id is not None, r.start))
        self.hours: dict[datetime, CarbonIntensity] = {}
        self.months: dict[tuple[int, int], CarbonIntensity] = {}
        self.years: dict[int, CarbonIntensity] = {}
        self.also: _ZoneFactors | None = None  # another basis's rows, loaded in the same query
        for row in rows:
            start = row.start.astimezone(UTC)
            if row.resolution == "hour":
                self.hours[start] = row
            elif row.resolution == "month":
                self.months[(start.year, start.month)] = row
            else:
                self.years[start.year] = row

    def lookup(
        self, hour: datetime, *, nearest_year: bool, later_years: bool = True
    ) -> tuple[CarbonIntensity, str] | None:
        """The most specific row for ``hour``. ``nearest_year``: without a row of the hour's
        own year, the latest earlier year's, else (only with ``later_years``) the earliest
        later year's; resolution "year" either way (the row's own start says which year)."""
        if (row := self.hours.get(hour)) is not None:
            return row, "hour"
        if (row := self.months.get((hour.year, hour.month))) is not None:
            return row, "month"
        if (row := self.years.get(hour.year)) is not None:
            return row, "year"
        if nearest_year and self.years:
            # Annual data lags a year or two: carry the latest earlier year forward (or, before
            # the first year the zone has and where allowed, its earliest). The factor's own
            # year stays visible.
            earlier = [y for y in self.years if y < hour.year]
            if earlier:
                return self.years[max(earlier)], "year"
            if later_years:
                return self.years[min(self.years)], "year"
        return None


def _load_zone_factors(
    *,
    zones: Iterable[str],
    basis: str,
    start: datetime,
    end: datetime,
    organization_id: int | None,
    also: str | None = None,
) -> dict[str, _ZoneFactors]:
    """Candidate factors of ``basis`` per zone; with ``also``, that basis's rows ride along in
    the same query (``also_by_zone``), so a second kind costs no second query."""
    zones = set(zones)
    bases = [basis] if also is None else [basis, also]
    qs = CarbonIntensity.objects.filter(zone__in=zones, basis__in=bases)
    qs = qs.filter(Q(organization__isnull=True) | Q(organization_id=organization_id))
    # Hour and month rows only where they overlap the range; every year row (a handful per zone)
    # because the nearest year may lie outside it.
    qs = qs.filter(Q(resolution="year") | Q(start__lt=end, end__gt=start)).only(
        "id", "organization_id", "zone", "resolution", "start", "intensity_g_per_kwh", "basis"
    )
    by_zone: dict[str, list[CarbonIntensity]] = defaultdict(list)
    also_rows: dict[str, list[CarbonIntensity]] = defaultdict(list)
    for row in qs:
        (by_zone if row.basis == basis else also_rows)[row.zone].append(row)
    out = {zone: _ZoneFactors(by_zone.get(zone, [])) for zone in zones}
    for zone, loaded in out.items():
        loaded.also = _ZoneFactors(also_rows.get(zone, []))
    return out


def location_factors(
    *, zones: Iterable[str], hours: list[datetime], organization_id: int | None = None
) -> dict[tuple[str, datetime], ResolvedFactor]:
    """Location-based factor for every (zone, hour)."""
    if not hours:
        return {}
    zones = set(zones)
    loaded = _load_zone_factors(
        zones=zones | {WORLD_ZONE},
        basis="location",
        start=min(hours),
        end=max(hours) + timedelta(hours=1),
        organization_id=organization_id,
    )
    world = loaded[WORLD_ZONE]
    out: dict[tuple[str, datetime], ResolvedFactor] = {}
    for zone in zones:
        own = loaded[zone]
        for hour in hours:
            found = own.lookup(hour, nearest_year=True) if zone != WORLD_ZONE else None
            if found is not None:
                row, resolution = found
                out[(zone, hour)] = ResolvedFactor(
                    row.pk, row.intensity_g_per_kwh, resolution, False
                )
                continue
            world_found = world.lookup(hour, nearest_year=True)
            if world_found is None:
                # Only if the built-in defaults were deleted: keep figures flowing, flagged.
                out[(zone, hour)] = ResolvedFactor(
                    None, settings.CARBON_WORLD_DEFAULT_G_PER_KWH, "world", True
                )
            else:
                out[(zone, hour)] = ResolvedFactor(
                    world_found[0].pk, world_found[0].intensity_g_per_kwh, "world", True
                )
    return out


@dataclass(frozen=True)
class _SiteInfo:
    key: int
    zone: str
    pue: float


def site_hour_factors(
    *, organization_id: int, hours: Iterable[datetime], site_ids: Iterable[int] | None = None
) -> dict[tuple[int, datetime], SiteHourFactors]:
    """Factors for every (site key, hour); site key ``NO_SITE`` stands for hosts with no site.

    ``site_ids`` None means every site of the organization plus ``NO_SITE``.
    """
    hours = sorted(set(hours))
    if not hours:
        return {}
    sites_qs = Site.objects.filter(organization_id=organization_id)
    wanted = None if site_ids is None else set(site_ids)
    if wanted is not None:
        sites_qs = sites_qs.filter(pk__in=wanted - {NO_SITE})
    infos = [
        _SiteInfo(s.pk, s.grid_zone, float(s.pue)) for s in sites_qs.only("id", "grid_zone", "pue")
    ]
    if wanted is None or NO_SITE in wanted:
        infos.append(_SiteInfo(NO_SITE, WORLD_ZONE, settings.CARBON_DEFAULT_PUE))
    range_start, range_end = hours[0], hours[-1] + timedelta(hours=1)

    location = location_factors(
        zones={i.zone for i in infos}, hours=hours, organization_id=organization_id
    )
    # Marginal signals ride along with the market factors (same query): the rollup ignores
    # them, the timing lever reads them from here.
    market_zone = _load_zone_factors(
        zones={i.zone for i in infos},
        basis="market",
        start=range_start,
        end=range_end,
        organization_id=organization_id,
        also="marginal",
    )
    site_keys = [i.key for i in infos if i.key != NO_SITE]
    pue_periods: dict[int, list[SitePue]] = defaultdict(list)
    for period in SitePue.objects.filter(site_id__in=site_keys).order_by("valid_from"):
        pue_periods[period.site_id].append(period)
    instruments: dict[int, list[MarketInstrument]] = defaultdict(list)
    for inst in (
        MarketInstrument.objects.filter(site_id__in=site_keys, valid_from__lt=range_end)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=range_start))
        .order_by("valid_from", "id")
    ):
        instruments[inst.site_id].append(inst)

    out: dict[tuple[int, datetime], SiteHourFactors] = {}
    for info in infos:
        periods = pue_periods.get(info.key, [])
        insts = instruments.get(info.key, [])
        for hour in hours:
            pue = info.pue
            for period in periods:  # ordered; the last one started at or before the hour wins
                if period.valid_from <= hour:
                    pue = float(period.pue)
                else:
                    break
            loc = location[(info.zone, hour)]
            in_force = [
                i
                for i in insts
                if i.valid_from <= hour and (i.valid_to is None or i.valid_to > hour)
            ]
            supplier = [i for i in in_force if i.kind == InstrumentKind.SUPPLIER]
            residual = [i for i in in_force if i.kind == InstrumentKind.RESIDUAL]
            certificate_share = min(
                1.0,
                sum(
                    i.covered_share or 0.0 for i in in_force if i.kind == InstrumentKind.CERTIFICATE
                ),
            )
            market_instrument_id = market_factor_id = None
            if supplier:
                base, market_basis, market_instrument_id = (
                    supplier[-1].intensity_g_per_kwh or 0.0,
                    "supplier",
                    supplier[-1].pk,
                )
            elif residual:
                base, market_basis, market_instrument_id = (
                    residual[-1].intensity_g_per_kwh or 0.0,
                    "residual",
                    residual[-1].pk,
                )
            elif (
                found := market_zone[info.zone].lookup(hour, nearest_year=True, later_years=False)
            ) is not None:
                row, _resolution = found
                carried = _resolution == "year" and row.start.astimezone(UTC).year < hour.year
                base, market_basis, market_factor_id = (
                    row.intensity_g_per_kwh,
                    MARKET_ZONE_PRIOR_YEAR if carried else "zone",
                    row.pk,
                )
            else:
                base, market_basis = loc.intensity_g_per_kwh, "location"
            signals = market_zone[info.zone].also
            marginal = signals.hours.get(hour) if signals is not None else None
            out[(info.key, hour)] = SiteHourFactors(
                pue=pue,
                intensity_g_per_kwh=loc.intensity_g_per_kwh,
                factor_id=loc.factor_id,
                resolution=loc.resolution,
                fallback=loc.fallback,
                market_intensity_g_per_kwh=market_intensity_g_per_kwh(
                    base_g_per_kwh=base, certificate_share=certificate_share
                ),
                market_basis=market_basis,
                market_instrument_id=market_instrument_id,
                market_factor_id=market_factor_id,
                certificate_share=certificate_share,
                marginal_g_per_kwh=marginal.intensity_g_per_kwh if marginal is not None else None,
            )
    return out
