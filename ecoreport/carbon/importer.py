"""Validation of carbon-intensity factor rows (CSV import, API): pure functions, no database.

A factor's period must be exactly one UTC hour, one calendar month or one calendar year; the
resolution follows from it. Two rows of the same resolution for the same zone and basis overlap
exactly when they start at the same moment, which keeps the overlap check a set lookup.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ecoreport.carbon.models import MAX_INTENSITY_G_PER_KWH, Basis, Scope
from ecoreport.core.errors import DomainError

ZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
REQUIRED_COLUMNS = ("zone", "start", "end", "g_co2e_per_kwh", "basis", "source", "year")


class FactorError(DomainError):
    pass


@dataclass(frozen=True)
class FactorRow:
    zone: str
    resolution: str
    start: datetime
    end: datetime
    intensity_g_per_kwh: float
    basis: str
    source: str
    year: int
    scope: str

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        return (self.zone, self.basis, self.resolution, self.start)


def parse_moment(raw: str, field: str) -> datetime:
    raw = (raw or "").strip()
    if not raw:
        raise FactorError(f"{field} is missing")
    try:
        if len(raw) == 10:  # a date alone: midnight UTC
            return datetime.fromisoformat(raw).replace(tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise FactorError(f"{field} {raw!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise FactorError(f"{field} {raw!r} has no UTC offset (add Z or +00:00)")
    return moment.astimezone(UTC)


def period_resolution(start: datetime, end: datetime) -> str:
    if end <= start:
        raise FactorError("end must be after start")
    if start.minute == start.second == start.microsecond == 0 and end - start == timedelta(hours=1):
        return "hour"
    midnight_first = (
        start.day == 1 and start.hour == start.minute == start.second == start.microsecond == 0
    )
    if midnight_first:
        next_month = start.replace(
            year=start.year + (start.month == 12), month=start.month % 12 + 1
        )
        if end == next_month:
            return "month"
        if start.month == 1 and end == start.replace(year=start.year + 1):
            return "year"
    raise FactorError(
        "the period must be one whole UTC hour, one calendar month or one calendar year "
        f"(got {start.isoformat()} to {end.isoformat()})"
    )


def require_whole_hour(moment: datetime, field: str) -> datetime:
    """``moment`` if it falls on a whole UTC hour, else FactorError.

    Energy is booked to UTC hours and every factor, PUE and instrument applies to whole hours:
    a boundary inside an hour would have to apply to part of that hour's energy. We refuse it
    rather than weight by overlap, so every stored period says exactly which hours it covers.
    """
    moment = moment.astimezone(UTC)
    if moment.minute or moment.second or moment.microsecond:
        whole = moment.replace(minute=0, second=0, microsecond=0)
        raise FactorError(
            f"{field} {moment.isoformat()} is not on a whole UTC hour: periods apply to whole "
            f"hours (use {whole.isoformat()} or {(whole + timedelta(hours=1)).isoformat()})"
        )
    return moment


def parse_intensity(raw: object) -> float:
    text = "" if raw is None else str(raw).strip()
    if not text:
        raise FactorError("g_co2e_per_kwh is missing")
    try:
        value = float(text)
    except ValueError:
        raise FactorError(f"g_co2e_per_kwh {text!r} is not a number") from None
    if not math.isfinite(value):
        raise FactorError(f"g_co2e_per_kwh {text!r} is not a finite number")
    if value < 0:
        raise FactorError(f"g_co2e_per_kwh {value} is negative")
    if value > MAX_INTENSITY_G_PER_KWH:
        raise FactorError(
            f"g_co2e_per_kwh {value} is above {MAX_INTENSITY_G_PER_KWH:.0f} (no grid is that "
            "dirty; is it in another unit, e.g. lb/MWh or g/MWh?)"
        )
    return value


def parse_zone(raw: object) -> str:
    zone = "" if raw is None else str(raw).strip()
    if not zone:
        raise FactorError("zone is empty")
    if not ZONE_RE.match(zone):
        raise FactorError(
            f"zone {zone!r} is malformed (a letter, then up to 63 letters, digits, '-', '_' or '.')"
        )
    return zone


def parse_factor(record: dict[str, object]) -> FactorRow:
    """One row as read from CSV or JSON; raises FactorError naming the first problem."""
    missing = [c for c in REQUIRED_COLUMNS if c not in record]
    if missing:
        raise FactorError(f"missing column(s): {', '.join(missing)}")
    zone = parse_zone(record.get("zone"))
    start = parse_moment(str(record.get("start") or ""), "start")
    end = parse_moment(str(record.get("end") or ""), "end")
    resolution = period_resolution(start, end)
    intensity = parse_intensity(record.get("g_co2e_per_kwh"))
    basis = str(record.get("basis") or "").strip().lower()
    if basis not in Basis.values:
        raise FactorError(f"basis {basis!r} must be 'location', 'market' or 'marginal'")
    source = str(record.get("source") or "").strip()
    if not source:
        raise FactorError("source is empty: every factor must name where it comes from")
    year_text = str(record.get("year") or "").strip()
    try:
        year = int(year_text)
    except ValueError:
        raise FactorError(f"year {year_text!r} is not a year") from None
    if not 1990 <= year <= 2100:
        raise FactorError(f"year {year} is out of range 1990-2100")
    scope = str(record.get("scope") or "").strip().lower() or "lifecycle"
    if scope not in Scope.values:
        raise FactorError(f"scope {scope!r} must be one of {', '.join(Scope.values)}")
    return FactorRow(zone, resolution, start, end, intensity, basis, source[:300], year, scope)
