"""One organization's metrics in the Prometheus exposition formats.

Each scrape builds its own ``CollectorRegistry`` with collectors bound to the caller's
organization: prometheus-client's global registry (and its process metrics) would be shared by
every organization a web process serves, and by whichever process happened to answer.

The counters are sums over rolled-up hours, read from the database on every scrape, so they
are the same whichever web process answers and survive restarts of the app. They only grow as
hours are rolled up, except where a factor change recomputes emissions or a team, project or
site is deleted (its energy moves to the "" label); ``rate()`` and ``increase()`` treat such
a drop as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ecoreport.metrics.selectors import gpu_readings, target_states, totals_for_org
from ecoreport.organizations.models import Organization

TOTAL_LABELS = ("team", "project", "site")
GPU_LABELS = ("host", "gpu", "uuid")

# Every family /metrics serves, by the name a PromQL query uses (a counter's with ``_total``);
# the Grafana dashboard's test holds its queries to this list.
SERIES = (
    "ecoreport_energy_joules_total",
    "ecoreport_facility_energy_joules_total",
    "ecoreport_emissions_grams_total",
    "ecoreport_gpu_power_watts",
    "ecoreport_gpu_utilization_ratio",
    "ecoreport_host_last_sample_timestamp_seconds",
    "ecoreport_target_status",
)


class EnergyCollector(Collector):
    """IT energy, facility energy and emissions (location and market) rolled up so far."""

    def __init__(self, organization: Organization, *, now: datetime) -> None:
        self.organization = organization
        self.now = now

    def collect(self) -> Iterator[Metric]:
        energy = CounterMetricFamily(
            "ecoreport_energy_joules",
            "IT energy measured by the GPUs, summed over the rolled-up hours.",
            labels=TOTAL_LABELS,
            unit="joules",
        )
        facility = CounterMetricFamily(
            "ecoreport_facility_energy_joules",
            "Facility energy (IT energy x the site's PUE), summed over the rolled-up hours.",
            labels=TOTAL_LABELS,
            unit="joules",
        )
        emissions = CounterMetricFamily(
            "ecoreport_emissions_grams",
            "CO2e of the facility energy, location- or market-based (GHG Protocol Scope 2).",
            labels=(*TOTAL_LABELS, "basis"),
            unit="grams",
        )
        for total in totals_for_org(self.organization, now=self.now):
            labels = [total.team, total.project, total.site]
            energy.add_metric(labels, total.energy_j)
            facility.add_metric(labels, total.facility_energy_j)
            emissions.add_metric([*labels, "location"], total.co2e_g)
            emissions.add_metric([*labels, "market"], total.co2e_market_g)
        yield from (energy, facility, emissions)


class FleetCollector(Collector):
    """Each GPU's power and utilization from its latest sample, and each host's last sample."""

    def __init__(self, organization: Organization, *, now: datetime) -> None:
        self.organization = organization
        self.now = now

    def collect(self) -> Iterator[Metric]:
        power = GaugeMetricFamily(
            "ecoreport_gpu_power_watts",
            "Average power of the GPU's latest sample (energy / duration); absent when that "
            "sample ended more than 15 minutes ago.",
            labels=GPU_LABELS,
            unit="watts",
        )
        utilization = GaugeMetricFamily(
            "ecoreport_gpu_utilization_ratio",
            "GPU utilization of the latest sample, 0-1; absent like the power.",
            labels=GPU_LABELS,
            unit="ratio",
        )
        last_sample = GaugeMetricFamily(
            "ecoreport_host_last_sample_timestamp_seconds",
            "End of the host's newest GPU sample, Unix time.",
            labels=("host",),
            unit="seconds",
        )
        newest: dict[str, datetime] = {}
        for reading in gpu_readings(self.organization, now=self.now):
            labels = [reading.host, str(reading.index), reading.uuid]
            if reading.power_w is not None:
                power.add_metric(labels, reading.power_w)
            if reading.utilization_ratio is not None:
                utilization.add_metric(labels, reading.utilization_ratio)
            end = reading.last_sample_end
            if end is not None and (reading.host not in newest or end > newest[reading.host]):
                newest[reading.host] = end
        for host, end in newest.items():
            last_sample.add_metric([host], end.timestamp())
        yield from (power, utilization, last_sample)


class TargetCollector(Collector):
    def __init__(self, organization: Organization) -> None:
        self.organization = organization

    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "ecoreport_target_status",
            "Latest evaluation of each active target: 0 on track, 1 at risk, 2 breached.",
            labels=("target", "target_id", "metric"),
        )
        for state in target_states(self.organization):
            status.add_metric([state.name, str(state.target_id), state.metric], state.status_value)
        yield status


def registry_for(organization: Organization, *, now: datetime) -> CollectorRegistry:
    """A registry of this organization's collectors alone, for one scrape."""
    # auto_describe off: registering must not run the collectors' queries; they run once, when
    # the registry is rendered.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EnergyCollector(organization, now=now))
    registry.register(FleetCollector(organization, now=now))
    registry.register(TargetCollector(organization))
    return registry


def metrics_render(organization: Organization, *, now: datetime, accept: str) -> tuple[bytes, str]:
    """The organization's metrics and their content type: the text format 0.0.4 to any client
    that accepts it (Prometheus does, beside OpenMetrics), OpenMetrics to one that asks for
    nothing else.

    Text rather than OpenMetrics for Prometheus, although it lists OpenMetrics first: the same
    series, and prometheus-client writes them about three times faster (for 1,000 GPUs ~14 ms
    against ~40 ms of a 200 ms budget; benchmarks/README.md, "/metrics").
    """
    registry = registry_for(organization, now=now)
    offered = {part.split(";")[0].strip() for part in accept.split(",")}
    if not accept.strip() or {"text/plain", "text/*", "*/*"} & offered:
        return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
