"""Writes of carbon-intensity factors: imports (files, the API, the settings pages), deletion and
the shipped annual defaults. Each change enqueues the recompute of the zone and period it
touches (``carbon.recompute``); marginal factors, timing signals only, enqueue none."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Q

from ecoreport.carbon.importer import FactorError, FactorRow, parse_factor
from ecoreport.carbon.models import (
    SINCE_EVER,
    UNTIL_EVER,
    Basis,
    CarbonIntensity,
    Resolution,
    Scope,
)
from ecoreport.carbon.recompute import recompute_enqueue
from ecoreport.carbon.validation import CarbonInputError
from ecoreport.organizations.models import Organization

BUILTIN_DEFAULTS = Path(__file__).parent / "data" / "grid-intensity.csv"


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
