"""Settings (/manage/): organization admins manage sites, carbon factors, agent tokens, members
and API tokens from the app. Members get a 403, outsiders find none of acme's objects, and
every write lands in the database through the same services as the API."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.factors import factor_create
from ecoreport.carbon.instruments import market_instrument_create
from ecoreport.carbon.models import CarbonIntensity, MarketInstrument, SitePue
from ecoreport.carbon.sites import site_create
from ecoreport.fleet.models import AgentCredential, Host, Site
from ecoreport.fleet.services import agent_token_issue, host_ensure
from ecoreport.organizations.models import ApiToken, Membership
from ecoreport.organizations.services import invitation_create, membership_ensure
from tests.conftest import make_batch, make_sample

pytestmark = pytest.mark.django_db

KWH_J = 3_600_000.0


@pytest.fixture
def paris(cast):
    return site_create(
        organization=cast.org, slug="paris", name="Paris DC", grid_zone="FR", pue="1.25"
    )


@pytest.fixture
def owner_client(client, cast):
    client.force_login(cast.owner.user)
    return client


def _text(response) -> str:
    return response.content.decode()


# --- who may open what ---------------------------------------------------------------------

PAGES = [
    "/manage/",
    "/manage/sites/",
    "/manage/factors/",
    "/manage/factors/?zone=FR",
    "/manage/agents/",
    "/manage/codecarbon/",
    "/manage/members/",
    "/manage/api-tokens/",
]


@pytest.mark.parametrize("path", PAGES)
def test_admins_open_every_settings_page(owner_client, path):
    assert owner_client.get(path).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/manage/")


@pytest.mark.parametrize("path", PAGES)
def test_members_below_admin_are_refused(client, cast, path):
    client.force_login(cast.member.user)
    assert client.get(path).status_code == 403


def test_users_without_an_organization_see_nothing(client, db):
    user = get_user_model().objects.create_user("drifter", password="x")
    client.force_login(user)
    assert client.get("/manage/").status_code == 404


def test_settings_link_is_shown_to_admins_only(client, cast):
    client.force_login(cast.owner.user)
    assert 'href="/manage/"' in _text(client.get("/targets/"))
    client.force_login(cast.member.user)
    assert 'href="/manage/"' not in _text(client.get("/targets/"))


def test_members_cannot_write_through_the_forms(client, cast, paris):
    client.force_login(cast.member.user)
    posts = [
        ("/manage/sites/", {"name": "Sneaky", "grid_zone": "FR", "pue": "1.1"}),
        (f"/manage/sites/{paris.pk}/", {"name": "Renamed", "grid_zone": "FR", "pue": "1.25"}),
        (f"/manage/sites/{paris.pk}/pue", {"pue": "2", "valid_from": "2026-01-01"}),
        ("/manage/agents/", {"hostname": "gpu-x"}),
        ("/manage/members/", {"email": "mo@example.com", "role": "owner"}),
        (f"/manage/members/{cast.member.pk}/role", {"role": "owner"}),
        ("/manage/api-tokens/", {}),
    ]
    for path, data in posts:
        assert client.post(path, data).status_code == 403, path
    assert list(Site.objects.values_list("name", flat=True)) == ["Paris DC"]
    assert SitePue.objects.count() == 1
    assert not Host.objects.exists()
    cast.member.refresh_from_db()
    assert cast.member.role == "member"
    assert ApiToken.objects.filter(membership=cast.member).count() == 1


@pytest.fixture
def acme_objects(cast, paris):
    host = host_ensure(organization=cast.org, hostname="gpu-acme", site=paris)
    agent_token_issue(host=host)
    instrument = market_instrument_create(
        site=paris,
        kind="supplier",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        intensity_g_per_kwh=20.0,
        source="acme contract",
        year=2026,
    )
    factor = factor_create(
        organization=cast.org,
        data={
            "zone": "FR",
            "start": "2026-01-01T00:00:00Z",
            "end": "2027-01-01T00:00:00Z",
            "g_co2e_per_kwh": 50,
            "basis": "location",
            "source": "acme meter",
            "year": 2026,
        },
    )
    return {
        "site": paris,
        "credential": AgentCredential.objects.get(host=host),
        "instrument": instrument,
        "factor": factor,
        "api_token": ApiToken.objects.get(membership=cast.member),
    }


def test_an_outsider_cannot_see_or_touch_acme_objects_by_id(client, cast, acme_objects):
    o = acme_objects
    client.force_login(cast.outsider.user)  # an owner, of globex
    site, credential = o["site"], o["credential"]
    assert client.get(f"/manage/sites/{site.pk}/").status_code == 404
    writes = [
        (f"/manage/sites/{site.pk}/", {"name": "Pwned", "grid_zone": "FR", "pue": "3"}),
        (f"/manage/sites/{site.pk}/pue", {"pue": "3", "valid_from": "2026-01-01"}),
        (f"/manage/sites/{site.pk}/instruments/{o['instrument'].pk}/delete", {}),
        (f"/manage/factors/{o['factor'].pk}/delete", {}),
        (f"/manage/agents/{credential.pk}/revoke", {}),
        (f"/manage/members/{cast.member.pk}/role", {"role": "viewer"}),
        (f"/manage/members/{cast.member.pk}/remove", {}),
        (f"/manage/api-tokens/{o['api_token'].pk}/revoke", {}),
    ]
    for path, data in writes:
        assert client.post(path, data).status_code == 404, path
    site.refresh_from_db()
    assert (site.name, site.pue) == ("Paris DC", Decimal("1.250"))
    assert SitePue.objects.filter(site=site).count() == 1
    assert MarketInstrument.objects.filter(pk=o["instrument"].pk).exists()
    assert CarbonIntensity.objects.filter(pk=o["factor"].pk).exists()
    credential.refresh_from_db()
    assert credential.revoked_at is None
    assert Membership.objects.get(pk=cast.member.pk).role == "member"
    assert ApiToken.objects.get(pk=o["api_token"].pk).revoked_at is None
    # Nor do acme's objects show up in the outsider's own lists.
    for path in ("/manage/sites/", "/manage/agents/", "/manage/members/", "/manage/api-tokens/"):
        page = _text(client.get(path))
        for secret in ("Paris DC", "gpu-acme", "olivia", credential.key_prefix):
            assert secret not in page, (path, secret)
    assert "acme meter" not in _text(client.get("/manage/factors/?zone=FR"))


def test_a_globex_site_cannot_be_chosen_for_an_acme_agent(owner_client, cast):
    theirs = site_create(organization=cast.other_org, slug="berlin", name="Berlin", grid_zone="DE")
    response = owner_client.post("/manage/agents/", {"hostname": "gpu-1", "site": theirs.pk})
    assert response.status_code == 200
    assert "Select a valid choice" in _text(response)
    assert not Host.objects.exists()


def test_forms_need_the_csrf_token(cast):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.owner.user)
    response = client.post("/manage/sites/", {"name": "No token", "grid_zone": "FR", "pue": "1.2"})
    assert response.status_code == 403
    assert not Site.objects.exists()


# --- index -------------------------------------------------------------------------------------


def test_index_links_every_section_with_counts(owner_client, acme_objects):
    page = _text(owner_client.get("/manage/"))
    for href in ("sites/", "factors/", "agents/", "members/", "api-tokens/"):
        assert f'href="/manage/{href}"' in page
    assert "1 site with 1 host" in page
    assert "1 active token" in page
    assert "2 members" in page
    assert "1 factor of your own" in page


# --- sites ---------------------------------------------------------------------------------------


def test_admin_creates_a_site(owner_client, cast):
    response = owner_client.post(
        "/manage/sites/",
        {"name": "Paris DC", "grid_zone": "fr", "pue": "1.2", "provider": "own"},
    )
    site = Site.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/manage/sites/{site.pk}/"
    assert (site.organization, site.slug, site.grid_zone, site.pue, site.provider) == (
        cast.org,
        "paris-dc",  # from the name
        "FR",  # the known zone's spelling
        Decimal("1.200"),
        "own",
    )
    assert list(SitePue.objects.values_list("pue", flat=True)) == [Decimal("1.200")]
    assert "Created site “Paris DC”" in _text(owner_client.get(response["Location"]))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "X", "grid_zone": "ZZ", "pue": "1.2"}, "No carbon-intensity factor is known"),
        ({"name": "X", "grid_zone": "F R", "pue": "1.2"}, "is malformed"),
        ({"name": "X", "grid_zone": "FR", "pue": "0.95"}, "below 1.0"),
        ({"name": "X", "grid_zone": "FR", "pue": "6"}, "above 5.0"),
        ({"name": "X", "grid_zone": "FR", "pue": "lots"}, "Enter a number"),
        ({"name": "X", "slug": "Bad Slug", "grid_zone": "FR", "pue": "1.2"}, "lowercase"),
        ({"name": "", "grid_zone": "FR", "pue": "1.2"}, "This field is required"),
        ({"name": "Paris", "slug": "paris", "grid_zone": "FR", "pue": "1.2"}, "already exists"),
    ],
)
def test_invalid_sites_are_explained_and_not_saved(owner_client, paris, data, error):
    response = owner_client.post("/manage/sites/", data)
    assert response.status_code == 200
    page = _text(response).replace("&#x27;", "'")
    assert "Not saved" in page and error in page
    assert list(Site.objects.values_list("slug", flat=True)) == ["paris"]


def test_site_list_shows_zone_pue_provider_and_host_count(owner_client, cast, paris):
    for name in ("gpu-1", "gpu-2"):
        host_ensure(organization=cast.org, hostname=name, site=paris)
    page = _text(owner_client.get("/manage/sites/"))
    row = page[page.index("Paris DC") :]
    row = row[: row.index("</tr>")]
    for cell in ("FR", "1.250", "—", '<td class="n">2</td>'):
        assert cell in row
    assert "paris" not in row  # the slug is for URLs and the API, not beside the name


def test_admin_edits_a_site(owner_client, paris):
    response = owner_client.post(
        f"/manage/sites/{paris.pk}/",
        {"name": "Paris Nord", "grid_zone": "DE", "pue": "1.25", "provider": "equinix"},
    )
    assert response.status_code == 302
    paris.refresh_from_db()
    assert (paris.name, paris.grid_zone, paris.provider, paris.slug) == (
        "Paris Nord",
        "DE",
        "equinix",
        "paris",
    )
    assert SitePue.objects.filter(site=paris).count() == 1  # same PUE: no new period


def test_a_site_keeps_a_zone_that_has_no_factor_yet(owner_client, cast):
    site = site_create(organization=cast.org, slug="lab", name="Lab", grid_zone="XX-LAB")
    response = owner_client.post(
        f"/manage/sites/{site.pk}/", {"name": "Lab 2", "grid_zone": "XX-LAB", "pue": "1.58"}
    )
    assert response.status_code == 302
    site.refresh_from_db()
    assert (site.name, site.grid_zone) == ("Lab 2", "XX-LAB")


@pytest.fixture
def measured(cast, paris, make_agent, post_batch):
    """One kWh of IT energy at paris (FR, PUE 1.25) on 2026-11-27 10:00 UTC."""
    agent = make_agent(cast.org, "node-paris", site=paris)
    batch = make_batch([make_sample(energy_j=KWH_J, seconds=3600)], power_limit_w=1500.0)
    assert post_batch(agent.token, batch).status_code == 200
    row = HourlyUsage.objects.get()
    assert row.co2e_g == pytest.approx(1.25 * 56.0)  # Ember 2023 France, carried forward
    return row


def test_a_pue_period_added_on_the_page_recomputes_emissions(
    owner_client, paris, measured, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            f"/manage/sites/{paris.pk}/pue",
            {"pue": "2.0", "valid_from": "2026-01-01", "source": "meter audit"},
        )
    assert response.status_code == 302
    assert list(SitePue.objects.filter(site=paris).values_list("pue", "source")) == [
        (Decimal("1.250"), "initial value"),
        (Decimal("2.000"), "meter audit"),
    ]
    row = HourlyUsage.objects.get()
    assert row.pue == 2.0
    assert row.co2e_g == pytest.approx(2.0 * 56.0)
    page = _text(owner_client.get(f"/manage/sites/{paris.pk}/"))
    assert "2026-01-01 00:00" in page and "meter audit" in page


def test_invalid_pue_period_is_explained(owner_client, paris):
    response = owner_client.post(
        f"/manage/sites/{paris.pk}/pue", {"pue": "0.8", "valid_from": "2026-01-01"}
    )
    assert response.status_code == 200
    assert "below 1.0" in _text(response)
    assert SitePue.objects.filter(site=paris).count() == 1


def test_admin_adds_and_removes_market_instruments(
    owner_client, paris, measured, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            f"/manage/sites/{paris.pk}/instruments",
            {
                "kind": "certificate",
                "valid_from": "2026-01-01",
                "covered_pct": "50",
                "source": "GO registry",
                "year": "2026",
            },
        )
    assert response.status_code == 302
    instrument = MarketInstrument.objects.get()
    assert (instrument.kind, instrument.covered_share, instrument.site) == (
        "certificate",
        0.5,
        paris,
    )
    assert HourlyUsage.objects.get().co2e_market_g == pytest.approx(0.5 * 1.25 * 56.0)
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(f"/manage/sites/{paris.pk}/instruments/{instrument.pk}/delete")
    assert not MarketInstrument.objects.exists()
    assert HourlyUsage.objects.get().co2e_market_g == pytest.approx(1.25 * 56.0)


def test_a_certificate_without_coverage_is_refused(owner_client, paris):
    response = owner_client.post(
        f"/manage/sites/{paris.pk}/instruments",
        {"kind": "certificate", "valid_from": "2026-01-01", "source": "GO", "year": "2026"},
    )
    assert response.status_code == 200
    assert "covered_share" in _text(response)
    assert not MarketInstrument.objects.exists()


# --- carbon factors --------------------------------------------------------------------------


def test_admin_adds_an_own_annual_factor_and_emissions_follow(
    owner_client, cast, measured, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            "/manage/factors/",
            {
                "zone": "FR",
                "resolution": "year",
                "day": "2026-06-15",
                "g_co2e_per_kwh": "100",
                "basis": "location",
                "scope": "lifecycle",
                "source": "RTE 2026",
            },
        )
    assert response.status_code == 302 and response["Location"] == "/manage/factors/?zone=FR"
    factor = CarbonIntensity.objects.get(organization=cast.org)
    assert (factor.zone, factor.resolution, factor.start, factor.end, factor.year) == (
        "FR",
        "year",
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        2026,
    )
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(1.25 * 100.0)
    assert "RTE 2026" in _text(owner_client.get(response["Location"]))


def test_an_hourly_factor_covers_the_given_hour(owner_client, cast):
    owner_client.post(
        "/manage/factors/",
        {
            "zone": "FR",
            "resolution": "hour",
            "day": "2026-11-27",
            "hour": "10",
            "g_co2e_per_kwh": "31.5",
            "basis": "location",
            "scope": "lifecycle",
            "source": "RTE eco2mix",
        },
    )
    factor = CarbonIntensity.objects.get(organization=cast.org)
    assert (factor.resolution, factor.start, factor.end) == (
        "hour",
        datetime(2026, 11, 27, 10, tzinfo=UTC),
        datetime(2026, 11, 27, 11, tzinfo=UTC),
    )


FACTOR = {
    "zone": "FR",
    "resolution": "month",
    "day": "2026-03-10",
    "g_co2e_per_kwh": "40",
    "basis": "location",
    "scope": "lifecycle",
    "source": "RTE",
}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"g_co2e_per_kwh": "2500"}, "above 2000"),
        ({"g_co2e_per_kwh": "-1"}, "negative"),
        ({"zone": "F R"}, "malformed"),
        ({"source": ""}, "This field is required"),
        ({"resolution": "hour"}, "Give the hour"),
        ({"year": "1800"}, "out of range"),
    ],
)
def test_invalid_factors_are_explained_and_not_saved(owner_client, cast, change, error):
    response = owner_client.post("/manage/factors/", {**FACTOR, **change})
    assert response.status_code == 200
    assert error in _text(response).replace("&#x27;", "'")
    assert not CarbonIntensity.objects.filter(organization=cast.org).exists()


def test_a_factor_overlapping_an_own_one_is_refused(owner_client, cast):
    assert owner_client.post("/manage/factors/", FACTOR).status_code == 302
    response = owner_client.post("/manage/factors/", {**FACTOR, "g_co2e_per_kwh": "41"})
    assert response.status_code == 200 and "overlaps stored factor" in _text(response)
    assert CarbonIntensity.objects.filter(organization=cast.org).count() == 1


def _csv(text: str, name: str = "factors.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


CSV_GOOD = (
    "zone,start,end,g_co2e_per_kwh,basis,source,year\n"
    "FR,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z,52.0,location,RTE 2025,2025\n"
    "FR,2025-06-01T13:00:00Z,2025-06-01T14:00:00Z,31.5,location,RTE eco2mix,2025\n"
)
CSV_BAD_LINES = (
    "zone,start,end,g_co2e_per_kwh,basis,source,year\n"
    "DE,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z,350,location,UBA,2025\n"
    "DE,2025-01-01T00:00:00Z,2025-01-01T02:00:00Z,350,location,UBA,2025\n"
    "DE,2025-02-01T00:00:00Z,2025-03-01T00:00:00Z,9000,location,UBA,2025\n"
)


def test_a_csv_upload_imports_own_factors(owner_client, cast):
    response = owner_client.post("/manage/factors/import", {"file": _csv(CSV_GOOD)})
    assert response.status_code == 302
    own = CarbonIntensity.objects.filter(organization=cast.org).order_by("resolution")
    assert [(f.resolution, f.intensity_g_per_kwh) for f in own] == [("hour", 31.5), ("year", 52.0)]
    assert "Imported 2 new and 0 replaced" in _text(owner_client.get(response["Location"]))


def test_a_csv_with_bad_lines_shows_each_line_and_loads_nothing(owner_client, cast):
    response = owner_client.post("/manage/factors/import", {"file": _csv(CSV_BAD_LINES)})
    assert response.status_code == 200
    page = _text(response)
    assert "Nothing was imported" in page
    assert "Line 3: the period must be one whole UTC hour" in page
    assert "Line 4: g_co2e_per_kwh 9000.0 is above 2000" in page
    assert not CarbonIntensity.objects.filter(organization=cast.org).exists()


def test_a_csv_with_bad_lines_can_load_the_good_ones(owner_client, cast):
    response = owner_client.post(
        "/manage/factors/import", {"file": _csv(CSV_BAD_LINES), "skip_bad": "on"}
    )
    assert response.status_code == 200
    assert "Imported 1 new and 0 replaced" in _text(response)
    assert CarbonIntensity.objects.filter(organization=cast.org).count() == 1


def test_a_csv_upload_can_replace_own_factors(owner_client, cast):
    owner_client.post("/manage/factors/import", {"file": _csv(CSV_GOOD)})
    changed = CSV_GOOD.replace("52.0", "48.0")
    refused = owner_client.post("/manage/factors/import", {"file": _csv(changed)})
    assert "overlaps stored factor" in _text(refused)
    owner_client.post("/manage/factors/import", {"file": _csv(changed), "replace": "on"})
    assert (
        CarbonIntensity.objects.get(organization=cast.org, resolution="year").intensity_g_per_kwh
        == 48.0
    )


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"zone,start\nFR,2025\n", "header lacks column(s)"),
        ("zone,start\n".encode("utf-16"), "not UTF-8"),
    ],
)
def test_unreadable_csv_files_are_explained(owner_client, cast, content, error):
    upload = SimpleUploadedFile("f.csv", content, content_type="text/csv")
    response = owner_client.post("/manage/factors/import", {"file": upload})
    assert response.status_code == 200 and error in _text(response)
    assert not CarbonIntensity.objects.filter(organization=cast.org).exists()


def test_admin_removes_an_own_factor_but_not_a_shared_one(owner_client, cast):
    owner_client.post("/manage/factors/", FACTOR)
    own = CarbonIntensity.objects.get(organization=cast.org)
    shared = CarbonIntensity.objects.filter(organization__isnull=True, zone="FR").first()
    assert owner_client.post(f"/manage/factors/{shared.pk}/delete").status_code == 404
    assert owner_client.post(f"/manage/factors/{own.pk}/delete").status_code == 302
    assert not CarbonIntensity.objects.filter(pk=own.pk).exists()
    assert CarbonIntensity.objects.filter(pk=shared.pk).exists()


def test_factors_of_a_zone_are_paged(owner_client, cast):
    CarbonIntensity.objects.bulk_create(
        CarbonIntensity(
            organization=cast.org,
            zone="XX",
            resolution="hour",
            start=datetime(2026, 1, 1, h, tzinfo=UTC),
            end=datetime(2026, 1, 1, h + 1, tzinfo=UTC),
            intensity_g_per_kwh=100 + h,
            source=f"hour {h}",
            year=2026,
        )
        for h in range(23)
    )
    CarbonIntensity.objects.bulk_create(
        CarbonIntensity(
            organization=cast.org,
            zone="XX",
            resolution="month",
            start=datetime(2026, m, 1, tzinfo=UTC),
            end=datetime(2026, m + 1, 1, tzinfo=UTC),
            intensity_g_per_kwh=200,
            source=f"month {m}",
            year=2026,
        )
        for m in range(1, 12)
    )
    CarbonIntensity.objects.bulk_create(
        CarbonIntensity(
            organization=cast.org,
            zone="XX",
            resolution="year",
            start=datetime(y, 1, 1, tzinfo=UTC),
            end=datetime(y + 1, 1, 1, tzinfo=UTC),
            intensity_g_per_kwh=300,
            source=f"year {y}",
            year=y,
        )
        for y in range(2000, 2020)
    )
    first = _text(owner_client.get("/manage/factors/?zone=XX"))
    assert "Page 1 of 2 (54 in all)" in first
    assert first.count("<td>yours</td>") == 50
    second = _text(owner_client.get("/manage/factors/?zone=XX&page=2"))
    assert second.count("<td>yours</td>") == 4


# --- agent tokens ----------------------------------------------------------------------------


def test_an_issued_agent_token_is_shown_once_works_and_can_be_revoked(
    owner_client, client, cast, paris
):
    response = owner_client.post("/manage/agents/", {"hostname": "gpu-node-07", "site": paris.pk})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = _text(response)
    token = page.split('id="agent-token" class="secret" type="text" readonly value="')[1]
    token = token.split('"')[0]
    assert token.startswith("era_")
    assert "ecoreport-agent check --server http://testserver --token-file" in page
    host = Host.objects.get(organization=cast.org, hostname="gpu-node-07")
    assert host.site == paris
    credential = AgentCredential.objects.get(host=host)
    assert token.startswith(credential.key_prefix) and token not in credential.key_hash

    listing = _text(owner_client.get("/manage/agents/"))
    assert credential.key_prefix in listing and token not in listing
    assert "gpu-node-07" in listing

    ping = Client().get("/api/v1/agent/ping", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert ping.status_code == 200
    assert ping.json() == {"organization": "acme", "host": "gpu-node-07"}

    revoked = owner_client.post(f"/manage/agents/{credential.pk}/revoke")
    assert revoked.status_code == 302
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert (
        Client().get("/api/v1/agent/ping", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    )
    assert "revoked" in _text(owner_client.get("/manage/agents/"))


@pytest.mark.parametrize("hostname", ["gpu node", "gpu/01", "-gpu", ""])
def test_an_agent_token_needs_a_host_name(owner_client, hostname):
    response = owner_client.post("/manage/agents/", {"hostname": hostname})
    assert response.status_code == 200 and "Not saved" in _text(response)
    assert not Host.objects.exists() and not AgentCredential.objects.exists()


def test_a_second_token_for_a_known_host_keeps_the_first(owner_client, cast, paris):
    owner_client.post("/manage/agents/", {"hostname": "gpu-1", "site": paris.pk})
    owner_client.post("/manage/agents/", {"hostname": "gpu-1"})
    host = Host.objects.get()
    assert host.site == paris  # no site chosen: the host keeps its own
    assert AgentCredential.objects.filter(host=host, revoked_at__isnull=True).count() == 2


# --- members -------------------------------------------------------------------------------------


# Adding people is an invitation they accept: tests/security/test_invitations.py.


def test_an_existing_members_address_is_not_invited_again(owner_client, cast):
    cast.member.user.email = "mo@example.com"
    cast.member.user.save()
    response = owner_client.post("/manage/members/", {"email": "MO@example.com", "role": "admin"})
    assert "A member already uses mo@example.com" in _text(response)
    assert Membership.objects.get(pk=cast.member.pk).role == "member"


def test_admin_changes_a_role(owner_client, cast):
    response = owner_client.post(f"/manage/members/{cast.member.pk}/role", {"role": "admin"})
    assert response.status_code == 302
    assert Membership.objects.get(pk=cast.member.pk).role == "admin"
    assert "mo is now admin" in _text(owner_client.get("/manage/members/"))


def test_the_last_owner_cannot_step_down(owner_client, cast):
    response = owner_client.post(f"/manage/members/{cast.owner.pk}/role", {"role": "admin"})
    assert response.status_code == 302
    assert "last owner" in _text(owner_client.get("/manage/members/"))
    assert Membership.objects.get(pk=cast.owner.pk).role == "owner"


def test_an_owner_can_step_down_once_there_is_another(owner_client, cast):
    owner_client.post(f"/manage/members/{cast.member.pk}/role", {"role": "owner"})
    owner_client.post(f"/manage/members/{cast.owner.pk}/role", {"role": "admin"})
    roles = dict(Membership.objects.for_org(cast.org).values_list("user__username", "role"))
    assert roles == {"olivia": "admin", "mo": "owner"}


def test_nobody_locks_themselves_out(owner_client, cast):
    owner_client.post(f"/manage/members/{cast.member.pk}/role", {"role": "owner"})
    response = owner_client.post(f"/manage/members/{cast.owner.pk}/role", {"role": "member"})
    assert response.status_code == 302
    assert "cannot take away your own admin role" in _text(owner_client.get("/manage/members/"))
    owner_client.post(f"/manage/members/{cast.owner.pk}/remove")
    assert "cannot remove yourself" in _text(owner_client.get("/manage/members/"))
    assert Membership.objects.get(pk=cast.owner.pk).role == "owner"


def test_admins_who_are_not_owners_cannot_touch_owners(client, cast):
    admin = membership_ensure(organization=cast.org, username="ann", role="admin")
    client.force_login(admin.user)
    client.post(f"/manage/members/{cast.owner.pk}/role", {"role": "viewer"})
    client.post(f"/manage/members/{cast.owner.pk}/remove")
    client.post(f"/manage/members/{cast.member.pk}/role", {"role": "owner"})
    assert "Only an owner" in _text(client.get("/manage/members/"))
    roles = dict(Membership.objects.for_org(cast.org).values_list("user__username", "role"))
    assert roles == {"olivia": "owner", "mo": "member", "ann": "admin"}
    # ...but they manage everyone below owner.
    client.post(f"/manage/members/{cast.member.pk}/role", {"role": "viewer"})
    assert Membership.objects.get(pk=cast.member.pk).role == "viewer"


def test_a_removed_member_loses_access_and_api_tokens(owner_client, cast, get_usage):
    assert get_usage(cast.member_token).status_code == 200
    response = owner_client.post(f"/manage/members/{cast.member.pk}/remove")
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=cast.member.pk).exists()
    assert get_usage(cast.member_token).status_code == 401


# --- API tokens ----------------------------------------------------------------------------------


def test_an_api_token_is_shown_once_works_and_can_be_revoked(owner_client, cast, get_usage):
    response = owner_client.post("/manage/api-tokens/")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = _text(response)
    token = page.split('id="api-token" class="secret" type="text" readonly value="')[1].split('"')[
        0
    ]
    assert token.startswith("eru_")
    assert get_usage(token).status_code == 200
    issued = ApiToken.objects.get(membership=cast.owner, key_prefix=token[:10])
    assert token not in _text(owner_client.get("/manage/api-tokens/"))
    owner_client.post(f"/manage/api-tokens/{issued.pk}/revoke")
    assert get_usage(token).status_code == 401
    # Revoking someone else's token is allowed too: it removes access, it grants none.
    other = ApiToken.objects.get(membership=cast.member)
    owner_client.post(f"/manage/api-tokens/{other.pk}/revoke")
    assert get_usage(cast.member_token).status_code == 401


# --- query counts --------------------------------------------------------------------------


def _fill(cast):
    """Eight sites with two hosts and tokens each, and eight more members: a page whose query
    count grew with its rows would blow the pinned numbers."""
    for i in range(8):
        site = site_create(
            organization=cast.org, slug=f"dc-{i}", name=f"DC {i}", grid_zone="FR", pue="1.3"
        )
        for j in range(2):
            host = host_ensure(organization=cast.org, hostname=f"gpu-{i}-{j}", site=site)
            agent_token_issue(host=host)
        membership_ensure(organization=cast.org, username=f"user-{i}", role="viewer")
        invitation_create(
            acting=cast.owner, email=f"new-{i}@example.com", role="member", link_base="http://t"
        )


@pytest.mark.parametrize(
    ("path", "max_queries"),
    [
        ("/manage/", 13),
        ("/manage/sites/", 9),
        ("/manage/factors/?zone=FR", 12),
        ("/manage/agents/", 11),
        # 8 before the page listed pending invitations: one more query, fixed (_fill adds 8).
        ("/manage/members/", 9),
        ("/manage/api-tokens/", 9),
    ],
)
def test_list_pages_use_a_fixed_number_of_queries(
    owner_client, cast, django_assert_max_num_queries, path, max_queries
):
    _fill(cast)
    with django_assert_max_num_queries(max_queries):
        response = owner_client.get(path)
    assert response.status_code == 200
