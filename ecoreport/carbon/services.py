"""Writes: factors, PUE periods, market instruments, sites; and the recompute they trigger.

Every change that alters what applies to past hours enqueues ``carbon.recompute_emissions``
on commit for exactly the zone or site and period it touches. The recompute resolves the
factors again for the hours that have usage there and rewrites only the (site, hour) rows
whose PUE or factors actually differ: a new hourly factor rewrites that hour and nothing else.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from ecoreport.carbon.importer import FactorError, FactorRow, parse_factor, require_whole_hour
from ecoreport.carbon.models import (
    FACTORS_VERSION_KEY,
    MAX_INTENSITY_G_PER_KWH,
    WORLD_ZONE,
    Basis,
    CarbonIntensity,
    InstrumentKind,
    MarketInstrument,
    Resolution,
    Scope,
    SitePue,
)
from ecoreport.core.errors import DomainError
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization

log = logging.getLogger(__name__)

# The first PUE period of a site reaches back before any measurement could exist.
SINCE_EVER = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL_EVER = datetime(2200, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
BUILTIN_DEFAULTS = Path(__file__).parent / "data" / "grid-intensity.csv"


class CarbonInputError(DomainError):
    """A write refused for a reason a person can fix; the message says which (and ``field``,
    where one input is at fault)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- recompute ---------------------------------------------------------------------------------


def recompute_enqueue(
    *,
    start: datetime | None,
    end: datetime | None,
    zone: str | None = None,
    site_ids: Iterable[int] | None = None,
    organization_id: int | None = None,
) -> None:
    from ecoreport.carbon.tasks import recompute_emissions

    kwargs = {
        "start": (start or SINCE_EVER).isoformat(),
        "end": (end or UNTIL_EVER).isoformat(),
        "zone": zone,
        "site_ids": sorted(site_ids) if site_ids is not None else None,
        "organization_id": organization_id,
    }

    def after_commit() -> None:
        factors_changed()
        recompute_emissions.delay(**kwargs)

    transaction.on_commit(after_commit)


def factors_changed() -> None:
    """Move the factors' version on, so caches keyed by it are no longer read."""
    if not cache.add(FACTORS_VERSION_KEY, 1, timeout=None):
        try:
            cache.incr(FACTORS_VERSION_KEY)
        except ValueError:  # evicted between add and incr
            cache.add(FACTORS_VERSION_KEY, 1, timeout=None)


def emissions_recompute(
    *,
    start: datetime,
    end: datetime,
    zone: str | None = None,
    site_ids: Iterable[int] | None = None,
    organization_id: int | None = None,
) -> int:
    """Rewrite the emissions of rows in [start, end) whose resolved PUE or factors changed.

    Targets: the given sites, or every site in ``zone`` (every site and site-less host for the
    WORLD zone, whose factor stands in for any zone without one). Returns rows rewritten.
    """
    from ecoreport.accounting.models import HourlyUsage
    from ecoreport.accounting.services import emissions_apply
    from ecoreport.carbon.resolver import NO_SITE, site_hour_factors

    targets: dict[int, set[int]] = defaultdict(set)  # organization -> site keys
    sites = Site.objects.all()
    if organization_id is not None:
        sites = sites.filter(organization_id=organization_id)
    if site_ids is not None:
        sites = sites.filter(pk__in=list(site_ids))
    elif zone is not None and zone != WORLD_ZONE:
        sites = sites.filter(grid_zone=zone)
    for org_id, site_id in sites.values_list("organization_id", "pk"):
        targets[org_id].add(site_id)
    if site_ids is None and zone == WORLD_ZONE:
        orgs = Organization.objects.all()
        if organization_id is not None:
            orgs = orgs.filter(pk=organization_id)
        for org_id in orgs.values_list("pk", flat=True):
            targets[org_id].add(NO_SITE)

    stored_fields = [
        "site_id",
        "hour",
        "pue",
        "intensity_g_per_kwh",
        "intensity_factor_id",
        "intensity_resolution",
        "intensity_fallback",
        "market_intensity_g_per_kwh",
        "market_basis",
        "market_instrument_id",
        "market_factor_id",
        "certificate_share",
        "emissions_computed_at",
    ]
    rewritten = 0
    for org_id, keys in sorted(targets.items()):
        real_sites = [k for k in keys if k != NO_SITE]
        site_filter = Q(site_id__in=real_sites)
        if NO_SITE in keys:
            site_filter |= Q(site__isnull=True)
        stored: dict[tuple[int, datetime], set[tuple]] = defaultdict(set)
        rows = (
            HourlyUsage.objects.filter(organization_id=org_id, hour__gte=start, hour__lt=end)
            .filter(site_filter)
            .values_list(*stored_fields)
            .distinct()
            .order_by()
        )
        for row in rows:
            stored[(row[0] or NO_SITE, row[1])].add(tuple(row[2:]))
        if not stored:
            continue
        resolved = site_hour_factors(
            organization_id=org_id, hours={h for _, h in stored}, site_ids=keys
        )
        changed: dict[datetime, dict] = defaultdict(dict)
        for (site_key, hour), values in stored.items():
            want = resolved[(site_key, hour)]
            want_tuple = (
                want.pue,
                want.intensity_g_per_kwh,
                want.factor_id,
                want.resolution,
                want.fallback,
                want.market_intensity_g_per_kwh,
                want.market_basis,
                want.market_instrument_id,
                want.market_factor_id,
                want.certificate_share,
            )
            if len(values) != 1 or any(v[:-1] != want_tuple or v[-1] is None for v in values):
                changed[hour][site_key] = want
        # Consecutive hours with the same per-site factors share one UPDATE: an annual factor
        # change over a quarter is one statement, an hourly one a statement per hour.
        run_start: datetime | None = None
        run_end: datetime | None = None
        run_sites: dict = {}
        for hour in sorted(changed):
            per_site = changed[hour]
            if run_start is not None and run_end == hour and per_site == run_sites:
                run_end = hour + _HOUR
                continue
            if run_start is not None and run_end is not None:
                rewritten += emissions_apply(
                    organization_id=org_id, start=run_start, end=run_end, per_site=run_sites
                )
            run_start, run_end, run_sites = hour, hour + _HOUR, per_site
        if run_start is not None and run_end is not None:
            rewritten += emissions_apply(
                organization_id=org_id, start=run_start, end=run_end, per_site=run_sites
            )
        log.info(
            "carbon.recompute org=%s hours_changed=%d rows=%d", org_id, len(changed), rewritten
        )
    return rewritten


# --- factors -------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    created: int = 0
    replaced: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0


def factors_import(
    *,
    records: Iterable[tuple[int, dict[str, object]]],
    skip_bad: bool = False,
    replace: bool = False,
    organization: Organization | None = None,
) -> ImportResult:
    """Validate every (line, record); load all of them or, with errors, none (unless skip_bad).

    Overlap: two rows of one resolution for the same zone and basis may not share a period,
    neither within the file nor with a stored factor of the same owner (``replace`` updates the
    stored one instead). A finer row over a coarser one is normal: the finer one wins.
    """
    result = ImportResult()
    parsed: list[tuple[int, FactorRow]] = []
    seen: dict[tuple, int] = {}
    for line, record in records:
        try:
            row = parse_factor(record)
        except FactorError as exc:
            result.errors.append((line, str(exc)))
            continue
        if row.key in seen:
            result.errors.append(
                (
                    line,
                    f"overlaps line {seen[row.key]}: same zone {row.zone}, basis {row.basis} and "
                    f"{row.resolution} starting {row.start.isoformat()}",
                )
            )
            continue
        seen[row.key] = line
        parsed.append((line, row))

    existing: dict[tuple, CarbonIntensity] = {}
    zones = {row.zone for _, row in parsed}
    if zones:
        owner = Q(organization=organization) if organization else Q(organization__isnull=True)
        for factor in CarbonIntensity.objects.filter(owner, zone__in=zones):
            existing[
                (factor.zone, factor.basis, factor.resolution, factor.start.astimezone(UTC))
            ] = factor
    to_create: list[CarbonIntensity] = []
    to_update: list[CarbonIntensity] = []
    for line, row in parsed:
        current = existing.get(row.key)
        if current is not None and not replace:
            result.errors.append(
                (
                    line,
                    f"overlaps stored factor #{current.pk} ({row.zone} {row.basis} "
                    f"{row.resolution} from {row.start.isoformat()}); use --replace to update it",
                )
            )
            continue
        if current is not None:
            current.intensity_g_per_kwh = row.intensity_g_per_kwh
            current.source, current.year, current.scope = row.source, row.year, row.scope
            current.is_forecast = False
            to_update.append(current)
        else:
            to_create.append(_factor_from_row(row, organization))
    result.skipped = len(result.errors)
    if result.errors and not skip_bad:
        return result
    with transaction.atomic():
        CarbonIntensity.objects.bulk_create(to_create, batch_size=2000)
        CarbonIntensity.objects.bulk_update(
            to_update,
            ["intensity_g_per_kwh", "source", "year", "scope", "is_forecast"],
            batch_size=2000,
        )
        _enqueue_for_factors(to_create + to_update, organization)
    result.created, result.replaced = len(to_create), len(to_update)
    return result


def _factor_from_row(row: FactorRow, organization: Organization | None) -> CarbonIntensity:
    return CarbonIntensity(
        organization=organization,
        zone=row.zone,
        resolution=row.resolution,
        start=row.start,
        end=row.end,
        intensity_g_per_kwh=row.intensity_g_per_kwh,
        basis=row.basis,
        source=row.source,
        year=row.year,
        scope=row.scope,
    )


def _enqueue_for_factors(factors: list[CarbonIntensity], organization: Organization | None) -> None:
    spans: dict[str, tuple[datetime, datetime]] = {}
    for f in factors:
        if f.basis == Basis.MARGINAL:
            continue  # a timing signal: no reported emission depends on it
        lo, hi = spans.get(f.zone, (f.start, f.end))
        spans[f.zone] = (min(lo, f.start), max(hi, f.end))
        if f.resolution == Resolution.YEAR:
            # A year factor may stand in for other years too (nearest year): recompute widely;
            # rows whose resolved factor did not change are left alone anyway.
            spans[f.zone] = (SINCE_EVER, UNTIL_EVER)
    for zone, (lo, hi) in spans.items():
        recompute_enqueue(
            start=lo, end=hi, zone=zone, organization_id=organization.pk if organization else None
        )


def factors_import_csv(
    *,
    text: str,
    skip_bad: bool = False,
    replace: bool = False,
    organization: Organization | None = None,
) -> ImportResult:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [
        c
        for c in ("zone", "start", "end", "g_co2e_per_kwh", "basis", "source", "year")
        if c not in header
    ]
    if missing:
        return ImportResult(errors=[(1, f"header lacks column(s): {', '.join(missing)}")])
    # Line numbers as an editor shows them: the header is line 1.
    records = ((reader.line_num, dict(rec)) for rec in reader)
    return factors_import(
        records=records, skip_bad=skip_bad, replace=replace, organization=organization
    )


def factor_create(*, organization: Organization, data: dict[str, object]) -> CarbonIntensity:
    result = factors_import(records=[(1, data)], organization=organization)
    if result.errors:
        raise CarbonInputError(result.errors[0][1])
    zone = str(data["zone"]).strip()
    return CarbonIntensity.objects.filter(organization=organization, zone=zone).latest("id")


@transaction.atomic
def factor_delete(*, factor: CarbonIntensity) -> None:
    """Delete the factor; the recompute runs once the deletion has committed, so it resolves
    the rows without it."""
    span = (
        (SINCE_EVER, UNTIL_EVER)
        if factor.resolution == Resolution.YEAR
        else (factor.start, factor.end)
    )
    zone, organization_id = factor.zone, factor.organization_id
    factor.delete()
    recompute_enqueue(start=span[0], end=span[1], zone=zone, organization_id=organization_id)


def builtin_factors_load(*, path: Path = BUILTIN_DEFAULTS, model: Any = CarbonIntensity) -> int:
    """Annual location-based defaults from the shipped reference file (run by a migration)."""
    created = 0
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            year = int(rec["year"])
            scope = rec["scope"] if rec["scope"] in Scope.values else Scope.LIFECYCLE
            _, made = model.objects.get_or_create(
                organization=None,
                zone=rec["zone"],
                basis=Basis.LOCATION,
                resolution=Resolution.YEAR,
                start=datetime(year, 1, 1, tzinfo=UTC),
                defaults={
                    "end": datetime(year + 1, 1, 1, tzinfo=UTC),
                    "intensity_g_per_kwh": float(rec["g_co2e_per_kwh"]),
                    "source": rec["source"],
                    "year": year,
                    "scope": scope,
                },
            )
            created += made
    return created


# --- sites, PUE, instruments ---------------------------------------------------------------------


def _whole_hour(moment: datetime, field: str) -> datetime:
    try:
        return require_whole_hour(moment, field)
    except FactorError as exc:
        raise CarbonInputError(str(exc), field=field) from None


def _parse_pue(value: object) -> Decimal:
    try:
        pue = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise CarbonInputError(f"PUE {value!r} is not a number") from None
    if not pue.is_finite() or pue < 1:
        raise CarbonInputError(
            f"PUE {value} is below 1.0: facility energy cannot be less than IT energy"
        )
    if pue > 5:
        raise CarbonInputError(f"PUE {value} is above 5.0; that is not a datacenter figure")
    return pue.quantize(Decimal("0.001"))


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
    from ecoreport.carbon.importer import parse_zone

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
        pue=_parse_pue(pue),
        provider=provider,
    )
    SitePue.objects.create(
        organization=organization,
        site=site,
        valid_from=SINCE_EVER,
        pue=site.pue,
        source="initial value",
    )
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
    from ecoreport.carbon.importer import parse_zone

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
    if pue is not None and _parse_pue(pue) != site.pue:
        moment = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
        site_pue_set(site=site, pue=pue, valid_from=moment)
    return site


@transaction.atomic
def site_pue_set(
    *, site: Site, pue: object, valid_from: datetime, source: str = "", now: datetime | None = None
) -> SitePue:
    """The site's PUE from ``valid_from`` (UTC hour) until its next period; recomputes them."""
    value = _parse_pue(pue)
    if valid_from.tzinfo is None:
        raise CarbonInputError("valid_from needs a UTC offset")
    valid_from = _whole_hour(valid_from, "valid_from")
    if not SitePue.objects.filter(site=site).exists():
        # The value the site had all along holds before the first dated change.
        SitePue.objects.create(
            organization_id=site.organization_id,
            site=site,
            valid_from=SINCE_EVER,
            pue=site.pue,
            source="initial value",
        )
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
    valid_from = _whole_hour(valid_from, "valid_from")
    if valid_to is not None:
        valid_to = _whole_hour(valid_to, "valid_to")
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


def pue_validate(value: object) -> Decimal:
    """The PUE as it would be stored, or CarbonInputError: the settings pages check a form with
    the same rule the API's writes apply, rather than a copy of it."""
    return _parse_pue(value)
