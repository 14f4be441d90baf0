"""The demo's grid factors: synthetic hourly profiles and a green-tariff contract."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from ecoreport.accounting.emissions import emissions_recompute
from ecoreport.carbon.models import WORLD_ZONE, CarbonIntensity, MarketInstrument
from ecoreport.fleet.models import Site
from ecoreport.organizations.models import Organization
from ecoreport.savings.selectors import SavingsError
from ecoreport.savings.windows import forecast_windows

_HOUR = timedelta(hours=1)
_FORECAST = timedelta(days=2)  # forecast hours loaded ahead of now


def demo_carbon_seed(
    *, organization: Organization, days: int = 7, now: datetime | None = None
) -> int:
    """For the demo: an hourly diurnal profile for each site's zone over the last ``days`` and,
    as forecasts, the next two days (the organization's own factors, labelled synthetic, so the
    best time to run has hours to rank in every zone), hourly marginal signals for the first
    zone from ``days`` ago to two days ahead (forecasts beyond now, so the best window has
    something to rank and says it used them), a green-tariff contract with certificates for the
    first site, then the emissions recomputed. Returns rows rewritten."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=days)
    sites = list(Site.objects.for_org(organization).order_by("slug"))
    annual = {
        f.zone: f.intensity_g_per_kwh
        for f in CarbonIntensity.objects.filter(
            organization__isnull=True, resolution="year", basis="location"
        )
    }
    factors = []
    for zone in sorted({s.grid_zone for s in sites}):
        mean = annual.get(zone, annual.get(WORLD_ZONE, 481.0))
        moment = start
        while moment < now + _FORECAST:
            # Cleaner around midday (solar), dirtier in the evening peak: +/-35 % around the mean.
            swing = 0.35 * math.sin((moment.hour - 9) / 24 * 2 * math.pi + math.pi)
            factors.append(
                CarbonIntensity(
                    organization=organization,
                    zone=zone,
                    resolution="hour",
                    start=moment,
                    end=moment + _HOUR,
                    intensity_g_per_kwh=round(mean * (1 + swing), 1),
                    basis="location",
                    source="EcoReport demo: synthetic diurnal profile",
                    year=moment.year,
                    scope="lifecycle",
                    is_forecast=moment >= now,
                )
            )
            moment += _HOUR
    for zone in sorted({s.grid_zone for s in sites})[:1]:
        mean = annual.get(zone, annual.get(WORLD_ZONE, 481.0))
        moment = start
        while moment < now + _FORECAST:
            # A gas plant is on the margin most hours (well above the average); overnight, when
            # wind is curtailed, the margin is cleaner. Its cleanest hours are not the average's.
            swing = 0.25 * math.sin((moment.hour - 15) / 24 * 2 * math.pi)
            factors.append(
                CarbonIntensity(
                    organization=organization,
                    zone=zone,
                    resolution="hour",
                    start=moment,
                    end=moment + _HOUR,
                    intensity_g_per_kwh=round(max(mean * 1.6, 350.0) * (1 + swing), 1),
                    basis="marginal",
                    source="EcoReport demo: synthetic marginal signal",
                    year=moment.year,
                    scope="direct",
                    is_forecast=moment >= now,
                )
            )
            moment += _HOUR
    CarbonIntensity.objects.bulk_create(factors, batch_size=2000)
    if sites:
        with_hosts = [s for s in sites if s.hosts.exists()]
        first = (with_hosts or sites)[0]
        for kind, extra in (
            ("supplier", {"intensity_g_per_kwh": 25.0}),
            ("certificate", {"covered_share": 0.5}),
        ):
            MarketInstrument.objects.create(
                organization=organization,
                site=first,
                kind=kind,
                valid_from=now - timedelta(days=365),
                source=f"EcoReport demo: {kind}",
                year=now.year,
                **extra,
            )
    return emissions_recompute(
        start=now - timedelta(days=366),
        end=now + _HOUR,
        organization_id=organization.pk,
        site_ids=[s.pk for s in sites],
    )


def demo_carbon_aware_hint(*, organization: Organization, now: datetime | None = None) -> str:
    """What a Carbon Aware SDK client would be told for the demo's first zone: the request and
    the best 3-hour start it answers (``/api/carbon-aware``, docs/integrations.md)."""
    sites = Site.objects.for_org(organization).order_by("slug")
    zones = sorted({s.grid_zone for s in sites})
    if not zones:
        return "Carbon Aware SDK API: no sites, no zones to ask about."
    request = f"/api/carbon-aware/emissions/forecasts/current?location={zones[0]}&windowSize=180"
    try:
        forecast = forecast_windows(
            organization, zone=zones[0], now=now or datetime.now(UTC), window_min=180
        )
    except SavingsError as exc:
        return f"Carbon Aware SDK API: GET {request} answers 400: {exc}"
    best = forecast.optimal[0] if forecast.optimal else None
    if best is None:
        return f"Carbon Aware SDK API: GET {request} has no 3-hour window in the forecast."
    return (
        f"Carbon Aware SDK API: GET {request} -> best start {best.start:%Y-%m-%d %H:%M} UTC at "
        f"{best.intensity_g_per_kwh:.0f} g/kWh ({forecast.basis} signal)."
    )
