"""Live grid-intensity providers: Electricity Maps, WattTime v3, UK National Grid (NESO).

Off by default: a zone is fetched only when ``CARBON_PROVIDER_ZONES`` lists it and the
provider's credentials are set. Base URLs are settings, so tests point the clients at a local
HTTP server that speaks each format; nothing here reaches the internet on its own.

Each client returns hourly values in g CO2e/kWh. Sub-hourly data (UK half-hours, WattTime
5 minutes) is averaged into the UTC hour it starts in; where an hour has both actual and
forecast points, the actuals alone make its value. Stored as shared hourly factors of the
client's basis: grid averages (Electricity Maps, NESO) as ``location``, WattTime's marginal
rate as ``marginal`` (timing decisions only, never reported emissions). An hour already stored
from the same provider is updated when its value changed (a forecast replaced by the actual),
and the recompute runs for the hours that changed.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from ecoreport.carbon.emissions import lbs_per_mwh_to_g_per_kwh
from ecoreport.carbon.models import MAX_INTENSITY_G_PER_KWH, Basis, CarbonIntensity
from ecoreport.core import http
from ecoreport.core.errors import DomainError

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 60.0


class ProviderError(DomainError, RuntimeError):
    """The provider refused or kept failing; the next scheduled fetch tries again."""

    code = "provider_unavailable"
    status_code = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HourValue:
    hour: datetime
    g_per_kwh: float
    is_forecast: bool = False


def _parse_time(raw: str) -> datetime:
    raw = raw.strip()
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _hourly(points: list[tuple[datetime, float, bool]]) -> list[HourValue]:
    """Average sub-hourly points into the hour they start in.

    An hour with any actual point is the mean of its actual points alone: a forecast of the
    same hour (Electricity Maps' forecast overlapping its history, a half-hour not yet
    measured) never dilutes a measurement. Only an hour with no actual point is a forecast.
    """
    buckets: dict[datetime, list[tuple[float, bool]]] = defaultdict(list)
    for moment, value, forecast in points:
        buckets[moment.replace(minute=0, second=0, microsecond=0)].append((value, forecast))
    out = []
    for hour, vals in sorted(buckets.items()):
        actuals = [v for v, forecast in vals if not forecast]
        chosen = actuals or [v for v, _ in vals]
        out.append(HourValue(hour, sum(chosen) / len(chosen), not actuals))
    return out


class HttpClient:
    """GET JSON from a provider through the backend's one HTTP client (``core.http``): 429 and
    5xx are retried (Retry-After honoured, as seconds or an HTTP-date, capped), connection
    errors back off exponentially, other 4xx fail at once."""

    def __init__(
        self,
        *,
        retries: int | None = None,
        timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retries = settings.CARBON_PROVIDER_RETRIES if retries is None else retries
        self.timeout_s = timeout_s or settings.CARBON_PROVIDER_TIMEOUT_S
        self.client = http.HttpClient(
            retries=self.retries,
            timeout_s=self.timeout_s,
            max_wait_s=MAX_RETRY_AFTER_S,
            sleep=sleep,
        )

    def get_json(self, url: str, headers: dict[str, str] | None = None) -> Any:
        try:
            response = self.client.request(
                "GET", url, headers={"Accept": "application/json", **(headers or {})}
            )
        except http.Unreachable as exc:
            raise ProviderError(f"{_safe(url)} unreachable: {exc}") from None
        status = response.status
        if status in http.RETRY_STATUSES:
            raise ProviderError(f"{_safe(url)} answered {status} after {response.tries} tries")
        if not 200 <= status < 300:
            raise ProviderError(f"{_safe(url)} answered {status}", status=status)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProviderError(f"{_safe(url)} answered something that is not JSON") from None


def _safe(url: str) -> str:
    """The URL without its query string (which can carry credentials) for logs and errors."""
    return url.split("?", 1)[0]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- clients -------------------------------------------------------------------------------------


class ElectricityMaps:
    name = "electricitymaps"
    source = "Electricity Maps API v3 (carbon-intensity history, lifecycle)"
    basis = Basis.LOCATION

    def __init__(self, http: HttpClient, *, base_url: str, token: str) -> None:
        self.http, self.base_url, self.token = http, base_url.rstrip("/"), token

    def fetch(self, *, zone: str, start: datetime, end: datetime) -> list[HourValue]:
        headers = {"auth-token": self.token}
        query = urllib.parse.urlencode({"zone": zone})
        body = self.http.get_json(f"{self.base_url}/v3/carbon-intensity/history?{query}", headers)
        points = [
            (_parse_time(p["datetime"]), float(p["carbonIntensity"]), False)
            for p in body.get("history", [])
            if p.get("carbonIntensity") is not None
        ]
        try:
            forecast = self.http.get_json(
                f"{self.base_url}/v3/carbon-intensity/forecast?{query}", headers
            )
            points += [
                (_parse_time(p["datetime"]), float(p["carbonIntensity"]), True)
                for p in forecast.get("forecast", [])
                if p.get("carbonIntensity") is not None
            ]
        except ProviderError as exc:  # forecasts need a higher plan; history is what matters
            log.info(
                "carbon.provider.no_forecast provider=%s zone=%s error=%s", self.name, zone, exc
            )
        return _hourly(points)


class WattTime:
    """WattTime v3: ``/login`` with HTTP Basic gives a bearer token (30 min); the ``co2_moer``
    signal is a *marginal* rate in lb CO2/MWh, converted to g/kWh (x 0.45359237). Stored as
    basis ``marginal``: it says which hour is cleaner to add load in, not what the grid's
    average kWh emitted, so it never enters location- or market-based emissions."""

    name = "watttime"
    source = "WattTime v3 co2_moer (marginal, lb/MWh converted)"
    basis = Basis.MARGINAL

    def __init__(self, http: HttpClient, *, base_url: str, username: str, password: str) -> None:
        self.http, self.base_url = http, base_url.rstrip("/")
        self.username, self.password = username, password
        self._token: str | None = None

    def _login(self) -> str:
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        body = self.http.get_json(f"{self.base_url}/login", {"Authorization": f"Basic {basic}"})
        token = body.get("token")
        if not token:
            raise ProviderError("WattTime login returned no token")
        return str(token)

    def fetch(self, *, zone: str, start: datetime, end: datetime) -> list[HourValue]:
        if self._token is None:
            self._token = self._login()
        query = urllib.parse.urlencode(
            {"region": zone, "start": _iso(start), "end": _iso(end), "signal_type": "co2_moer"}
        )
        url = f"{self.base_url}/v3/historical?{query}"
        try:
            body = self.http.get_json(url, {"Authorization": f"Bearer {self._token}"})
        except ProviderError as exc:
            if exc.status != 401:
                raise
            self._token = self._login()  # tokens expire after 30 minutes: log in again, once
            body = self.http.get_json(url, {"Authorization": f"Bearer {self._token}"})
        units = (body.get("meta") or {}).get("units", "lbs_co2_per_mwh")
        if "lb" not in units:
            raise ProviderError(f"WattTime answered units {units!r}; expected lbs_co2_per_mwh")
        points = [
            (_parse_time(p["point_time"]), lbs_per_mwh_to_g_per_kwh(float(p["value"])), False)
            for p in body.get("data", [])
            if p.get("value") is not None
        ]
        return _hourly(points)


class UkGrid:
    """carbonintensity.org.uk: half-hourly GB intensity, ``actual`` when known else
    ``forecast``; no authentication."""

    name = "ukgrid"
    source = "NESO Carbon Intensity API (GB, half-hourly)"
    basis = Basis.LOCATION

    def __init__(self, http: HttpClient, *, base_url: str) -> None:
        self.http, self.base_url = http, base_url.rstrip("/")

    def fetch(self, *, zone: str, start: datetime, end: datetime) -> list[HourValue]:
        fmt = "%Y-%m-%dT%H:%MZ"
        body = self.http.get_json(f"{self.base_url}/intensity/{start:{fmt}}/{end:{fmt}}")
        points = []
        for p in body.get("data", []):
            intensity = p.get("intensity") or {}
            actual, forecast = intensity.get("actual"), intensity.get("forecast")
            if actual is None and forecast is None:
                continue
            value = float(actual if actual is not None else forecast)  # type: ignore[arg-type]
            points.append((_parse_time(p["from"]), value, actual is None))
        return _hourly(points)


# --- storing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderZone:
    provider: str
    zone: str  # our zone code (the factor table's)
    remote: str  # the provider's code for it


def configured_zones() -> list[ProviderZone]:
    out = []
    for entry in settings.CARBON_PROVIDER_ZONES:
        provider, _, rest = entry.partition(":")
        zone, _, remote = rest.partition("@")
        if provider and zone:
            out.append(ProviderZone(provider.strip(), zone.strip(), (remote or zone).strip()))
    return out


def client_for(provider: str, http: HttpClient) -> Any:
    if provider == "electricitymaps" and settings.ELECTRICITYMAPS_TOKEN:
        return ElectricityMaps(
            http, base_url=settings.ELECTRICITYMAPS_BASE_URL, token=settings.ELECTRICITYMAPS_TOKEN
        )
    if provider == "watttime" and settings.WATTTIME_USERNAME and settings.WATTTIME_PASSWORD:
        return WattTime(
            http,
            base_url=settings.WATTTIME_BASE_URL,
            username=settings.WATTTIME_USERNAME,
            password=settings.WATTTIME_PASSWORD,
        )
    if provider == "ukgrid":
        return UkGrid(http, base_url=settings.UKGRID_BASE_URL)
    return None  # unknown provider or no credentials: stays off


@transaction.atomic
def provider_factors_store(
    *, zone: str, source: str, values: list[HourValue], basis: str = "location"
) -> int:
    """Upsert shared hourly factors of ``basis`` for ``zone``; returns how many hours changed.

    Marginal signals change no reported emission, so storing them enqueues no recompute."""
    from ecoreport.carbon.recompute import recompute_enqueue

    values = [v for v in values if 0 <= v.g_per_kwh <= MAX_INTENSITY_G_PER_KWH]
    if not values:
        return 0
    existing = {
        f.start.astimezone(UTC): f
        for f in CarbonIntensity.objects.filter(
            organization__isnull=True,
            zone=zone,
            basis=basis,
            resolution="hour",
            start__gte=values[0].hour,
            start__lte=values[-1].hour,
        )
    }
    changed: list[datetime] = []
    create: list[CarbonIntensity] = []
    for v in values:
        current = existing.get(v.hour)
        if current is None:
            create.append(
                CarbonIntensity(
                    zone=zone,
                    resolution="hour",
                    start=v.hour,
                    end=v.hour + timedelta(hours=1),
                    intensity_g_per_kwh=v.g_per_kwh,
                    basis=basis,
                    source=source,
                    year=v.hour.year,
                    scope="lifecycle" if "Electricity Maps" in source else "direct",
                    is_forecast=v.is_forecast,
                )
            )
            changed.append(v.hour)
        # Actuals replace forecasts; a provider corrects its own figures. A factor loaded from a
        # file by a person is left alone.
        elif (current.is_forecast or current.source == source) and (
            current.intensity_g_per_kwh,
            current.is_forecast,
        ) != (v.g_per_kwh, v.is_forecast):
            CarbonIntensity.objects.filter(pk=current.pk).update(
                intensity_g_per_kwh=v.g_per_kwh, is_forecast=v.is_forecast, source=source
            )
            changed.append(v.hour)
    CarbonIntensity.objects.bulk_create(create)
    if changed and basis != Basis.MARGINAL:
        recompute_enqueue(start=min(changed), end=max(changed) + timedelta(hours=1), zone=zone)
    return len(changed)


def providers_fetch(*, now: datetime | None = None, http: HttpClient | None = None) -> int:
    """Fetch every configured zone; one failing provider does not stop the others."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=settings.CARBON_PROVIDER_LOOKBACK_H)
    http = http or HttpClient()
    changed = 0
    clients: dict[str, Any] = {}
    for pz in configured_zones():
        client = clients.setdefault(pz.provider, client_for(pz.provider, http))
        if client is None:
            log.warning(
                "carbon.provider.disabled provider=%s zone=%s (no credentials)",
                pz.provider,
                pz.zone,
            )
            continue
        try:
            values = client.fetch(zone=pz.remote, start=start, end=now)
        except ProviderError as exc:
            log.warning(
                "carbon.provider.failed provider=%s zone=%s error=%s", pz.provider, pz.zone, exc
            )
            continue
        n = provider_factors_store(
            zone=pz.zone, source=client.source, values=values, basis=client.basis
        )
        log.info(
            "carbon.provider.fetched provider=%s zone=%s hours=%d changed=%d",
            pz.provider,
            pz.zone,
            len(values),
            n,
        )
        changed += n
    return changed
