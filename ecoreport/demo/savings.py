"""The demo sites' electricity prices, for the savings calculator to show."""

from __future__ import annotations

from ecoreport.fleet.models import Site
from ecoreport.savings.services import site_price_set

# Demo figures in one currency (prices in different currencies do not add up in a scope's cost):
# roughly what a datacenter pays per kWh at each demo site, for the calculator to show.
DEMO_PRICES_EUR = {"paris-dc": "0.16", "iowa-gcp": "0.08", "warsaw-dc": "0.19"}


def site_prices_demo_set(*, sites: list[Site]) -> None:
    for site in sites:
        if site.slug in DEMO_PRICES_EUR:
            site_price_set(
                site=site,
                price_per_kwh=DEMO_PRICES_EUR[site.slug],
                currency="EUR",
                source="demo figure",
            )
