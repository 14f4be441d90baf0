"""import_carbon_intensity (all or nothing, errors by line), and the sites and factors API."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ecoreport.carbon.models import CarbonIntensity, SitePue

pytestmark = pytest.mark.django_db

HEADER = "zone,start,end,g_co2e_per_kwh,basis,source,year,scope\n"
GOOD = [
    "FR,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z,52.1,location,RTE eco2mix 2026,2026,direct",
    "FR,2026-11-01,2026-12-01,61.0,location,RTE eco2mix monthly,2026,direct",
    "FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,48.5,location,RTE eco2mix hourly,2026,",
    "DE,2026-01-01,2027-01-01,410,market,AIB residual mix 2026,2026,",
]


def _run(tmp_path, lines, *flags):
    path = tmp_path / "factors.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n")
    out, err = StringIO(), StringIO()
    call_command("import_carbon_intensity", str(path), *flags, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _shared_count() -> int:
    return CarbonIntensity.objects.filter(organization__isnull=True).count()


def test_good_file_loads_every_resolution_finer_over_coarser(tmp_path):
    before = _shared_count()
    out, _ = _run(tmp_path, GOOD)
    assert "Loaded 4 factor(s)" in out
    assert _shared_count() == before + 4
    assert set(
        CarbonIntensity.objects.filter(zone="FR", source__startswith="RTE").values_list(
            "resolution", flat=True
        )
    ) == {"year", "month", "hour"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,-5,location,x,2026,", "negative"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,,location,x,2026,", "missing"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,2500,location,x,2026,", "above 2000"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,abc,location,x,2026,", "not a number"),
        (",2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,location,x,2026,", "zone is empty"),
        ("F R!,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,location,x,2026,", "malformed"),
        ("FR,2026-11-27T10:00:00,2026-11-27T11:00:00Z,50,location,x,2026,", "UTC offset"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T10:30:00Z,50,location,x,2026,", "one whole UTC hour"),
        (
            "FR,2026-11-27T10:00:00Z,2026-11-27T09:00:00Z,50,location,x,2026,",
            "end must be after start",
        ),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,grid,x,2026,", "basis"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,location,,2026,", "source is empty"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,location,x,26,", "year"),
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,location,x,2026,upstream", "scope"),
        # Same resolution, zone and basis as GOOD's hourly row (line 4): an overlap.
        ("FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,50,location,x,2026,", "overlaps line 4"),
    ],
)
def test_a_bad_row_is_named_by_line_and_nothing_is_loaded(tmp_path, line, message):
    before = _shared_count()
    with pytest.raises(CommandError, match="nothing was loaded"):
        _run(tmp_path, [*GOOD, line])
    path = tmp_path / "factors.csv"
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_carbon_intensity", str(path), stderr=err)
    assert f"{path}:6: " in err.getvalue() and message in err.getvalue()
    assert _shared_count() == before


def test_skip_bad_loads_the_good_rows_and_reports_the_bad(tmp_path):
    before = _shared_count()
    out, err = _run(
        tmp_path,
        [*GOOD, "FR,2026-11-27T12:00:00Z,2026-11-27T13:00:00Z,-1,location,x,2026,"],
        "--skip-bad",
    )
    assert "Loaded 4 factor(s)" in out and "skipped 1" in out and ":6: " in err
    assert _shared_count() == before + 4


def test_overlap_with_a_stored_factor_is_refused_unless_replace(tmp_path):
    _run(tmp_path, GOOD)
    with pytest.raises(CommandError):
        _run(
            tmp_path, ["FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,70,location,correction,2026,"]
        )
    out, _ = _run(
        tmp_path,
        ["FR,2026-11-27T10:00:00Z,2026-11-27T11:00:00Z,70,location,correction,2026,"],
        "--replace",
    )
    assert "replaced 1" in out
    assert CarbonIntensity.objects.get(zone="FR", resolution="hour").intensity_g_per_kwh == 70


def test_missing_columns_and_unreadable_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("zone,value\nFR,50\n")
    with pytest.raises(CommandError):
        call_command("import_carbon_intensity", str(path), stderr=StringIO())
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_carbon_intensity", str(tmp_path / "missing.csv"))


def test_builtin_defaults_are_loaded_with_sources():
    world = CarbonIntensity.objects.get(zone="WORLD", organization__isnull=True)
    assert (world.intensity_g_per_kwh, world.year, world.resolution) == (481.0, 2023, "year")
    assert "Ember" in world.source
    assert (
        CarbonIntensity.objects.filter(organization__isnull=True, resolution="year").count() >= 16
    )


# --- API -------------------------------------------------------------------------------------------


def _api(client, method, token, url, data=None):
    fn = getattr(client, method)
    kwargs = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if data is not None and method != "get":
        return fn(url, data=data, content_type="application/json", **kwargs)
    return fn(url, data or {}, **kwargs)


def test_admins_create_sites_members_read_outsiders_see_nothing(cast, client):
    body = {"slug": "paris", "name": "Paris DC", "grid_zone": "FR", "pue": "1.20"}
    assert _api(client, "post", cast.member_token, "/api/v1/sites", body).status_code == 403
    created = _api(client, "post", cast.owner_token, "/api/v1/sites", body)
    assert created.status_code == 201, created.json()
    assert created.json()["pue"] == "1.200" and created.json()["grid_zone"] == "FR"
    listed = _api(client, "get", cast.member_token, "/api/v1/sites").json()["results"]
    assert [s["slug"] for s in listed] == ["paris"]
    assert _api(client, "get", cast.outsider_token, "/api/v1/sites").json()["results"] == []
    assert _api(client, "get", cast.outsider_token, "/api/v1/sites/paris").status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"slug": "x", "grid_zone": "FR", "pue": "0.95"}, "below 1.0"),
        ({"slug": "x", "grid_zone": "not a zone"}, "malformed"),
        ({"slug": "Bad Slug", "grid_zone": "FR"}, "slug"),
    ],
)
def test_bad_sites_are_400(cast, client, body, fragment):
    r = _api(client, "post", cast.owner_token, "/api/v1/sites", body)
    assert r.status_code == 400
    assert fragment in str(r.json()["error"])


def test_pue_periods_through_the_api(cast, client, django_capture_on_commit_callbacks):
    _api(
        client,
        "post",
        cast.owner_token,
        "/api/v1/sites",
        {"slug": "p", "grid_zone": "FR", "pue": "1.3"},
    )
    with django_capture_on_commit_callbacks(execute=True):
        r = _api(
            client,
            "post",
            cast.owner_token,
            "/api/v1/sites/p/pue",
            {"pue": "1.150", "valid_from": "2026-07-01T00:00:00Z", "source": "meter audit"},
        )
    assert r.status_code == 201
    bad = _api(
        client,
        "post",
        cast.owner_token,
        "/api/v1/sites/p/pue",
        {"pue": "0.9", "valid_from": "2026-08-01T00:00:00Z"},
    )
    assert bad.status_code == 400
    periods = _api(client, "get", cast.member_token, "/api/v1/sites/p/pue").json()["results"]
    assert [p["pue"] for p in periods] == ["1.300", "1.150"]
    assert SitePue.objects.count() == 2


def test_factors_api_lists_shared_and_own_and_guards_writes(cast, client):
    listed = _api(
        client, "get", cast.member_token, "/api/v1/carbon-intensity", {"zone": "FR"}
    ).json()
    assert listed["count"] == 1 and listed["results"][0]["own"] is False
    factor = {
        "zone": "FR",
        "start": "2026-11-27T10:00:00Z",
        "end": "2026-11-27T11:00:00Z",
        "g_co2e_per_kwh": 40,
        "source": "our meter",
        "year": 2026,
    }
    assert (
        _api(client, "post", cast.member_token, "/api/v1/carbon-intensity", factor).status_code
        == 403
    )
    created = _api(client, "post", cast.owner_token, "/api/v1/carbon-intensity", factor)
    assert created.status_code == 201 and created.json()["own"] is True
    # The outsider sees shared factors only, never acme's own.
    outsider = _api(
        client, "get", cast.outsider_token, "/api/v1/carbon-intensity", {"zone": "FR"}
    ).json()
    assert [f["own"] for f in outsider["results"]] == [False]
    assert (
        _api(
            client, "get", cast.outsider_token, f"/api/v1/carbon-intensity/{created.json()['id']}"
        ).status_code
        == 404
    )
    bad = _api(
        client,
        "post",
        cast.owner_token,
        "/api/v1/carbon-intensity",
        {**factor, "g_co2e_per_kwh": 5000},
    )
    assert bad.status_code == 400 and "above 2000" in bad.json()["error"]["message"]
    shared_id = listed["results"][0]["id"]
    assert (
        _api(
            client, "delete", cast.owner_token, f"/api/v1/carbon-intensity/{shared_id}"
        ).status_code
        == 403
    )
    assert (
        _api(
            client, "delete", cast.owner_token, f"/api/v1/carbon-intensity/{created.json()['id']}"
        ).status_code
        == 204
    )


def test_issue_agent_token_places_a_host_at_an_existing_site(cast):
    from ecoreport.carbon.sites import site_create
    from ecoreport.fleet.models import Host

    site_create(
        organization=cast.org, slug="iowa", name="Iowa", grid_zone="GCP-us-central1", pue="1.1"
    )
    call_command(
        "issue_agent_token", "--org", "acme", "--host", "gpu-9", "--site", "iowa", stdout=StringIO()
    )
    assert Host.objects.get(hostname="gpu-9").site.slug == "iowa"
    with pytest.raises(CommandError, match="No site"):
        call_command(
            "issue_agent_token",
            "--org",
            "acme",
            "--host",
            "gpu-9",
            "--site",
            "nowhere",
            stdout=StringIO(),
        )
