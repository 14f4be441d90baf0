"""``GET /metrics``: the caller's organization in the Prometheus text format, read back with
prometheus-client's own parser.

The cast: an owner of Acme, whose fleet has two teams, two sites and a shared GPU, and an
outsider from Globex whose fleet must never appear in Acme's scrape (nor Acme's in Globex's).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from ecoreport.metrics.exposition import SERIES
from ecoreport.policies.services import target_create, target_evaluate
from tests.conftest import make_batch, make_sample
from tests.factories import SiteFactory


def scrape(client: Any, token: str | None, **headers: Any) -> Any:
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get("/metrics", **headers)


def samples_of(response: Any) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from a text-format answer."""
    assert response.status_code == 200, response.content
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def usage_total_j(client: Any, token: str, **params: Any) -> dict[str, float]:
    answer = client.get(
        "/api/v1/usage",
        {"start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z", **params},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 200, answer.content
    return answer.json()["totals"]


@pytest.fixture
def fleet(cast: Any, make_agent: Any, post_batch: Any) -> dict[str, Any]:
    """Acme: node-a at paris (a GPU shared by nlp and vision, and an idle one), node-b at
    dublin (nlp, many jobs); Globex: its own node. Samples end a minute ago, so the GPUs'
    gauges are fresh."""
    paris = SiteFactory(organization=cast.org, slug="paris", grid_zone="FR")
    dublin = SiteFactory(organization=cast.org, slug="dublin", grid_zone="IE")
    node_a = make_agent(cast.org, "node-a", site=paris)
    node_b = make_agent(cast.org, "node-b", site=dublin)
    globex = make_agent(
        cast.other_org, "globex-node", site=SiteFactory(organization=cast.other_org)
    )
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=11)
    shared = [
        {"share": 0.75, "team": "nlp", "project": "llm", "job_id": "j-1"},
        {"share": 0.25, "team": "vision", "project": "detector", "job_id": "j-2"},
    ]
    for i in range(6):
        at = start + timedelta(minutes=i)
        batch_a = [
            make_sample(gpu="GPU-A0", start=at, seconds=60, energy_j=24000.0, attribution=shared),
            make_sample(gpu="GPU-A1", start=at, seconds=60, energy_j=3000.0, gpu_util_pct=0.0),
        ]
        assert post_batch(node_a.token, make_batch(batch_a)).status_code == 200
        # A new job id every minute: jobs must not become series.
        job = [{"share": 1.0, "team": "nlp", "project": "llm", "job_id": f"sweep-{i}"}]
        batch_b = [
            make_sample(gpu="GPU-B0", start=at, seconds=60, energy_j=30000.0, attribution=job)
        ]
        assert post_batch(node_b.token, make_batch(batch_b)).status_code == 200
        other = [make_sample(gpu="GPU-X0", start=at, seconds=60, energy_j=12000.0)]
        assert post_batch(globex.token, make_batch(other)).status_code == 200
    return {"start": start}


def test_metrics_needs_an_api_token(client, cast, agent):
    missing = scrape(client, None)
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="api"'
    assert missing.json()["error"]["code"] == "not_authenticated"
    assert "API token" in missing.json()["error"]["message"]
    bad = scrape(client, "eru_not-a-real-token")
    assert bad.status_code == 401
    assert bad.json()["error"]["message"] == "Invalid or revoked API token."
    # An agent token is for ingest; it is not an API token and reads nothing here.
    assert scrape(client, agent.token).status_code == 401


def test_a_revoked_token_is_refused(client, cast):
    from ecoreport.organizations.models import ApiToken

    assert scrape(client, cast.owner_token).status_code == 200
    ApiToken.objects.filter(membership=cast.owner).update(revoked_at=timezone.now())
    assert scrape(client, cast.owner_token).status_code == 401


def test_an_organization_without_data_serves_empty_families(client, cast):
    response = scrape(client, cast.member_token)
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name for f in text_string_to_metric_families(response.content.decode())}
    # Counters are named without _total by the parser; every family is declared.
    assert {name.removesuffix("_total") for name in SERIES} == families
    assert samples_of(response) == {}


def test_energy_counters_equal_the_usage_api_by_team_project_and_site(client, cast, fleet):
    found = samples_of(scrape(client, cast.owner_token))
    energy = found["ecoreport_energy_joules_total"]
    assert sum(energy.values()) == pytest.approx(
        usage_total_j(client, cast.owner_token)["energy_kwh"] * 3.6e6
    )
    labels = {dict(k)["team"] + "/" + dict(k)["project"] + "@" + dict(k)["site"] for k in energy}
    # GPU-A1 was idle with no default team: its energy is charged to no team ("").
    assert labels == {"nlp/llm@paris", "vision/detector@paris", "/@paris", "nlp/llm@dublin"}
    key = (("project", "llm"), ("site", "dublin"), ("team", "nlp"))
    assert energy[key] == pytest.approx(6 * 30000.0)
    key = (("project", "detector"), ("site", "paris"), ("team", "vision"))
    assert energy[key] == pytest.approx(6 * 24000.0 * 0.25)

    by_team = client.get(
        "/api/v1/usage",
        {"start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z", "group_by": "team"},
        HTTP_AUTHORIZATION=f"Bearer {cast.owner_token}",
    ).json()["rows"]
    for row in by_team:
        team = row["team"] or ""
        ours = sum(v for k, v in energy.items() if dict(k)["team"] == team)
        assert ours == pytest.approx(row["energy_kwh"] * 3.6e6)
        ours = sum(
            v
            for k, v in found["ecoreport_facility_energy_joules_total"].items()
            if dict(k)["team"] == team
        )
        assert ours == pytest.approx(row["facility_energy_kwh"] * 3.6e6)


def test_emissions_have_a_location_and_a_market_series(client, cast, fleet):
    found = samples_of(scrape(client, cast.owner_token))
    emissions = found["ecoreport_emissions_grams_total"]
    assert {dict(k)["basis"] for k in emissions} == {"location", "market"}
    totals = usage_total_j(client, cast.owner_token)
    location = sum(v for k, v in emissions.items() if dict(k)["basis"] == "location")
    market = sum(v for k, v in emissions.items() if dict(k)["basis"] == "market")
    assert location == pytest.approx(totals["co2e_kg"] * 1000.0)
    assert market == pytest.approx(totals["co2e_market_kg"] * 1000.0)
    assert location > 0


def test_jobs_do_not_become_series(client, cast, fleet):
    found = samples_of(scrape(client, cast.owner_token))
    every_label = {name for series in found.values() for key in series for name, _ in key}
    assert "job" not in every_label and "job_id" not in every_label
    # Six jobs ran on node-b: still one series for (nlp, llm, dublin).
    dublin = [k for k in found["ecoreport_energy_joules_total"] if ("site", "dublin") in k]
    assert len(dublin) == 1


def test_gpu_gauges_come_from_each_gpus_latest_sample(client, cast, fleet):
    found = samples_of(scrape(client, cast.owner_token))
    power = {
        dict(k)["uuid"]: (dict(k)["host"], dict(k)["gpu"], v)
        for k, v in found["ecoreport_gpu_power_watts"].items()
    }
    assert power == {
        "GPU-A0": ("node-a", "0", pytest.approx(400.0)),
        "GPU-A1": ("node-a", "1", pytest.approx(50.0)),
        "GPU-B0": ("node-b", "0", pytest.approx(500.0)),
    }
    util = {dict(k)["uuid"]: v for k, v in found["ecoreport_gpu_utilization_ratio"].items()}
    assert util == {"GPU-A0": 0.8, "GPU-A1": 0.0, "GPU-B0": 0.8}
    last = {
        dict(k)["host"]: v for k, v in found["ecoreport_host_last_sample_timestamp_seconds"].items()
    }
    expected = (fleet["start"] + timedelta(minutes=6)).timestamp()
    assert last == {"node-a": expected, "node-b": expected}


def test_a_gpu_silent_for_a_while_keeps_only_its_hosts_last_sample_time(
    client, cast, make_agent, post_batch
):
    quiet = make_agent(cast.org, "node-quiet")
    old = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    assert (
        post_batch(
            quiet.token, make_batch([make_sample(gpu="GPU-Q0", start=old, seconds=60)])
        ).status_code
        == 200
    )
    found = samples_of(scrape(client, cast.owner_token))
    assert "ecoreport_gpu_power_watts" not in found
    assert "ecoreport_gpu_utilization_ratio" not in found
    assert found["ecoreport_host_last_sample_timestamp_seconds"] == {
        (("host", "node-quiet"),): (old + timedelta(seconds=60)).timestamp()
    }


def test_no_other_organizations_series_ever(client, cast, fleet):
    ours = samples_of(scrape(client, cast.owner_token))
    theirs = samples_of(scrape(client, cast.outsider_token))

    def hosts(found: dict) -> set[str]:
        gauges = ("ecoreport_gpu_power_watts", "ecoreport_host_last_sample_timestamp_seconds")
        return {dict(k)["host"] for s in gauges for k in found[s]}

    assert hosts(ours) == {"node-a", "node-b"}
    assert hosts(theirs) == {"globex-node"}
    assert sum(theirs["ecoreport_energy_joules_total"].values()) == pytest.approx(6 * 12000.0)
    assert sum(ours["ecoreport_energy_joules_total"].values()) == pytest.approx(
        6 * (27000.0 + 30000.0)
    )
    assert not {"paris", "dublin"} & {
        dict(k)["site"] for k in theirs["ecoreport_energy_joules_total"]
    }


@pytest.mark.parametrize(
    ("threshold_kwh", "status", "value"),
    [(1000.0, "on_track", 0.0), (0.000001, "breached", 2.0)],
)
def test_target_status_is_served_as_a_number(client, cast, fleet, threshold_kwh, status, value):
    target = target_create(
        organization=cast.org,
        name="Quarterly energy",
        metric="energy_kwh",
        comparator="at_most",
        threshold=threshold_kwh,
        period="quarter",
    )
    target_create(
        organization=cast.other_org,
        name="Globex energy",
        metric="energy_kwh",
        comparator="at_most",
        threshold=1.0,
        period="quarter",
    )
    target_evaluate(target=target)
    target.refresh_from_db()
    assert target.status == status
    found = samples_of(scrape(client, cast.owner_token))
    assert found["ecoreport_target_status"] == {
        (
            ("metric", "energy_kwh"),
            ("target", "Quarterly energy"),
            ("target_id", str(target.pk)),
        ): value
    }


def test_prometheus_gets_the_text_format(client, cast, fleet):
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    response = scrape(client, cast.owner_token, HTTP_ACCEPT=accept)
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert samples_of(response) == samples_of(scrape(client, cast.owner_token))


def test_openmetrics_to_a_client_that_asks_for_nothing_else(client, cast, fleet):
    accept = "application/openmetrics-text;version=1.0.0"
    response = scrape(client, cast.owner_token, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}
    assert families["ecoreport_energy_joules"].type == "counter"
    assert families["ecoreport_energy_joules"].unit == "joules"
    assert families["ecoreport_gpu_power_watts"].unit == "watts"


def test_closed_hours_are_cached_and_a_late_change_arrives_when_the_cache_expires(
    client, cast, make_agent, post_batch
):
    from django.core.cache import cache

    node = make_agent(cast.org, "node-late", site=SiteFactory(organization=cast.org))
    now = timezone.now().replace(microsecond=0)
    closed = now - timedelta(days=3)
    batch = [
        make_sample(gpu="GPU-L0", start=closed, seconds=600, energy_j=60000.0),
        make_sample(gpu="GPU-L0", start=now - timedelta(minutes=20), seconds=600, energy_j=9000.0),
    ]
    assert post_batch(node.token, make_batch(batch)).status_code == 200

    def scraped_j() -> float:
        return sum(
            samples_of(scrape(client, cast.owner_token))["ecoreport_energy_joules_total"].values()
        )

    assert scraped_j() == pytest.approx(69000.0)
    assert usage_total_j(client, cast.owner_token)["energy_kwh"] * 3.6e6 == pytest.approx(69000.0)

    # An agent's spool replayed days late: the closed hour's sum is the cached one for now ...
    late = [
        make_sample(
            gpu="GPU-L0", start=closed + timedelta(minutes=10), seconds=600, energy_j=6000.0
        )
    ]
    assert post_batch(node.token, make_batch(late)).status_code == 200
    assert scraped_j() == pytest.approx(69000.0)
    # ... and new hours still count at once.
    recent = [
        make_sample(gpu="GPU-L0", start=now - timedelta(minutes=10), seconds=600, energy_j=3000.0)
    ]
    assert post_batch(node.token, make_batch(recent)).status_code == 200
    assert scraped_j() == pytest.approx(72000.0)
    # Once the entry is gone (its METRICS_CLOSED_HOURS_CACHE_S expired; Redis keeps that clock,
    # so the test removes it), the counters equal the usage API again.
    cache.clear()
    assert scraped_j() == pytest.approx(78000.0)
    assert usage_total_j(client, cast.owner_token)["energy_kwh"] * 3.6e6 == pytest.approx(78000.0)


def test_without_the_cache_a_closed_hours_change_counts_at_once(
    client, cast, make_agent, post_batch, settings
):
    settings.METRICS_CLOSED_HOURS_CACHE_S = 0
    node = make_agent(cast.org, "node-late")
    closed = timezone.now().replace(microsecond=0) - timedelta(days=5)
    for energy_j, start in ((60000.0, closed), (6000.0, closed + timedelta(minutes=10))):
        batch = make_batch([make_sample(gpu="GPU-L0", start=start, seconds=600, energy_j=energy_j)])
        assert post_batch(node.token, batch).status_code == 200
        energy = samples_of(scrape(client, cast.owner_token))["ecoreport_energy_joules_total"]
        assert sum(energy.values()) == pytest.approx(
            usage_total_j(client, cast.owner_token)["energy_kwh"] * 3.6e6
        )
    assert sum(energy.values()) == pytest.approx(66000.0)
