"""People read names, units and one number format: stored keys (at_most, at_risk,
idle_energy_share_pct, previous_period) and slugs stay in URLs, form values and the API."""

from __future__ import annotations

import html
import re

import pytest

from ecoreport.dashboards.templatetags.eco import label
from ecoreport.policies.models import Target
from tests.factories import GpuFactory, HostFactory, SiteFactory, TeamFactory, energy_target

pytestmark = pytest.mark.django_db

INTERNAL = [
    "at_most",
    "at_least",
    "Atmost",
    "Atleast",
    "at_risk",
    "atrisk",
    "on_track",
    "ontrack",
    "no_data",
    "nodata",
    "idle_energy_share_pct",
    "avg_gpu_util_pct",
    "previous_period",
    "same_period_last_year",
]


def visible_text(response) -> str:
    """What a person reads: the page without scripts, tags and attribute values."""
    page = re.sub(r"<script.*?</script>", " ", response.content.decode(), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture
def targets(cast):
    nlp = TeamFactory(organization=cast.org, slug="nlp", name="Language models")
    made = [
        energy_target(cast.org, name="Idle share", metric="idle_energy_share_pct", threshold=15.0),
        energy_target(
            cast.org,
            name="Utilization floor",
            scope_kind="team",
            team=nlp,
            metric="avg_gpu_util_pct",
            comparator="at_least",
            threshold=60.0,
        ),
        energy_target(
            cast.org,
            name="Less energy",
            threshold=None,
            reduction_pct=10.0,
            baseline="previous_period",
            period="quarter",
        ),
    ]
    Target.objects.filter(pk=made[1].pk).update(status="at_risk")
    Target.objects.filter(pk=made[0].pk).update(status="on_track")
    return made


@pytest.mark.parametrize("path", ["/targets/", "/"])
def test_target_pages_show_labels_not_stored_values(client, cast, targets, path):
    for membership in (cast.owner, cast.member):
        client.force_login(membership.user)
        text = visible_text(client.get(path))
        assert "Utilization floor" in text
        leaked = [word for word in INTERNAL if re.search(rf"\b{word}\b", text)]
        assert leaked == [], path
        assert "at risk" in text and "on track" in text


def test_the_targets_table_reads_as_sentences(client, cast, targets):
    client.force_login(cast.owner.user)
    text = visible_text(client.get("/targets/"))
    assert "Idle energy share At most 15.0 % Monthly on track" in text
    assert "Team Language models GPU utilization At least 60.0 % Monthly at risk" in text
    assert "IT energy At most 90 % of the previous period Quarterly not evaluated" in text
    # The form offers labels; its values stay the API's.
    page = client.get("/targets/").content.decode()
    assert '<option value="idle_energy_share_pct" >Idle energy share (%)</option>' in page
    assert '<option value="previous_period" >The previous period</option>' in page


def test_outsider_sees_none_of_it(client, cast, targets):
    client.force_login(cast.outsider.user)
    assert "Utilization floor" not in visible_text(client.get("/targets/"))


def test_the_fleet_page_names_sites_not_their_slugs(client, cast):
    site = SiteFactory(organization=cast.org, slug="paris-dc", name="Paris colocation")
    host = HostFactory(organization=cast.org, hostname="gpu-1", site=site)
    GpuFactory(organization=cast.org, host=host, uuid="GPU-1")
    client.force_login(cast.member.user)
    text = visible_text(client.get("/fleet/"))
    assert "Paris colocation" in text and "paris-dc" not in text


@pytest.mark.parametrize(
    ("value", "kind", "shown"),
    [
        ("at_most", "comparator", "at most"),
        ("at_risk", "status", "at risk"),
        ("", "status", "not evaluated"),
        (None, "status", "not evaluated"),
        ("idle_energy_share_pct", "metric", "Idle energy share"),
        ("previous_period", "baseline", "the previous period"),
        ("2025-Q4", "baseline", "2025-Q4"),
        ("quarter", "period", "quarterly"),
    ],
)
def test_label_filter(value, kind, shown):
    assert label(value, kind) == shown
