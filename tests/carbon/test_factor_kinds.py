"""The three kinds of factor and their fallbacks: marginal signals stay out of reported
emissions, periods apply to whole hours only, and a zone's market factor of one year is carried
forward to later years (flagged) but never back to earlier ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ecoreport.accounting.models import HourlyUsage
from ecoreport.carbon.factors import factors_import, factors_import_csv
from ecoreport.carbon.instruments import market_instrument_create
from ecoreport.carbon.models import CarbonIntensity
from ecoreport.carbon.pue import site_pue_set
from ecoreport.carbon.validation import CarbonInputError
from tests.conftest import BASE_TIME, iso
from tests.conftest import make_batch as _make_batch
from tests.conftest import make_sample as _make_sample

pytestmark = pytest.mark.django_db

KWH = 3_600_000.0
DE_2023_G_PER_KWH = 381.0  # the built-in annual location factor of DE (Ember 2023)


def make_batch(samples: list[dict]) -> dict:
    return _make_batch(samples, power_limit_w=1500.0)


def hour_sample(start: datetime, kwh: float = 1.0) -> dict:
    return _make_sample(start=start, seconds=3600, energy_j=kwh * KWH)


def _api(client, method: str, token: str, url: str, data: dict | None = None):
    return getattr(client, method)(
        url, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


# --- marginal ------------------------------------------------------------------------------------


def test_marginal_basis_is_imported_and_listed_but_no_emission_uses_it(
    site_agent, post_batch, run_on_commit, cast, client
):
    _, agent = site_agent("DE", pue="1.0")
    post_batch(agent.token, make_batch([hour_sample(BASE_TIME)]))
    before = HourlyUsage.objects.values_list(
        "co2e_g", "co2e_market_g", "intensity_factor_id", "market_basis"
    ).get()
    result = run_on_commit(
        factors_import,
        records=[
            (
                2,
                {
                    "zone": "DE",
                    "start": iso(BASE_TIME),
                    "end": iso(BASE_TIME + timedelta(hours=1)),
                    "g_co2e_per_kwh": 700,
                    "basis": "marginal",
                    "source": "marginal test signal",
                    "year": 2026,
                },
            )
        ],
    )
    assert not result.errors and result.created == 1
    after = HourlyUsage.objects.values_list(
        "co2e_g", "co2e_market_g", "intensity_factor_id", "market_basis"
    ).get()
    assert after == before
    assert after[0] == pytest.approx(DE_2023_G_PER_KWH)
    listed = _api(client, "get", cast.owner_token, "/api/v1/carbon-intensity?basis=marginal")
    assert [(f["zone"], f["basis"], f["g_co2e_per_kwh"]) for f in listed.json()["results"]] == [
        ("DE", "marginal", 700.0)
    ]


def test_own_marginal_factor_through_the_api(cast, client):
    body = {
        "zone": "DE",
        "start": "2026-11-27T10:00:00Z",
        "end": "2026-11-27T11:00:00Z",
        "g_co2e_per_kwh": 650,
        "basis": "marginal",
        "source": "our marginal model",
        "year": 2026,
    }
    r = _api(client, "post", cast.owner_token, "/api/v1/carbon-intensity", body)
    assert r.status_code == 201, r.json()
    assert r.json()["basis"] == "marginal" and r.json()["own"] is True
    r = _api(client, "post", cast.owner_token, "/api/v1/carbon-intensity", {**body, "basis": "avg"})
    assert r.status_code == 400
    assert "'location', 'market' or 'marginal'" in r.json()["error"]["message"]


def test_watttime_rows_stored_as_location_become_marginal_on_upgrade(
    site_agent, post_batch, run_on_commit, django_capture_on_commit_callbacks
):
    """Migration 0003: the rows WattTime's client stored as location factors become marginal,
    and the hours that used them are recomputed from grid averages."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("ecoreport.carbon.migrations.0003_marginal_basis")
    _, agent = site_agent("US-CAL-CISO", pue="1.0")
    CarbonIntensity.objects.create(
        zone="US-CAL-CISO",
        resolution="hour",
        start=BASE_TIME,
        end=BASE_TIME + timedelta(hours=1),
        intensity_g_per_kwh=900.0,
        basis="location",
        source="WattTime v3 co2_moer (marginal, lb/MWh converted)",
        year=2026,
        scope="direct",
    )
    post_batch(agent.token, make_batch([hour_sample(BASE_TIME)]))
    assert HourlyUsage.objects.get().co2e_g == pytest.approx(900.0)  # the defect being undone
    with django_capture_on_commit_callbacks(execute=True):
        migration.reclassify(apps, None)
    assert CarbonIntensity.objects.get(source__startswith="WattTime").basis == "marginal"
    row = HourlyUsage.objects.get()
    assert row.intensity_resolution == "world" and row.intensity_fallback is True
    assert row.co2e_g == pytest.approx(
        CarbonIntensity.objects.get(zone="WORLD", resolution="year").intensity_g_per_kwh
    )


# --- whole hours -------------------------------------------------------------------------------

HALF_PAST = BASE_TIME + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("pue", {"pue": "1.4", "valid_from": iso(HALF_PAST)}, "valid_from"),
        (
            "instruments",
            {
                "kind": "supplier",
                "valid_from": iso(HALF_PAST),
                "intensity_g_per_kwh": 20,
                "source": "contract",
                "year": 2026,
            },
            "valid_from",
        ),
        (
            "instruments",
            {
                "kind": "certificate",
                "valid_from": iso(BASE_TIME),
                "valid_to": iso(BASE_TIME + timedelta(hours=2, seconds=1)),
                "covered_share": 0.5,
                "source": "GO registry",
                "year": 2026,
            },
            "valid_to",
        ),
    ],
)
def test_a_period_boundary_inside_an_hour_is_a_400_that_names_the_field(
    cast, client, site_agent, path, body, field
):
    site, _ = site_agent("DE")
    r = _api(client, "post", cast.owner_token, f"/api/v1/sites/{site.slug}/{path}", body)
    assert r.status_code == 400, r.json()
    error = r.json()["error"]
    assert "is not on a whole UTC hour" in error["message"]
    assert field in error["details"]
    assert not site.market_instruments.exists()
    assert not site.pue_periods.filter(valid_from__gt=BASE_TIME - timedelta(days=1)).exists()


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-27T10:30:00Z", "2026-11-27T11:30:00Z"),
        ("2026-11-27T10:00:00Z", "2026-11-27T10:30:00Z"),
        ("2026-11-27T10:00:00+05:30", "2026-11-27T11:00:00+05:30"),
    ],
)
def test_a_factor_over_part_of_an_hour_is_a_row_error_and_an_api_400(cast, client, start, end):
    row = {
        "zone": "DE",
        "start": start,
        "end": end,
        "g_co2e_per_kwh": 300,
        "basis": "location",
        "source": "x",
        "year": 2026,
    }
    result = factors_import_csv(
        text="zone,start,end,g_co2e_per_kwh,basis,source,year\n"
        + ",".join(str(row[k]) for k in ("zone", "start", "end", "g_co2e_per_kwh"))
        + ",location,x,2026\n"
    )
    assert result.errors and result.errors[0][0] == 2
    assert "one whole UTC hour" in result.errors[0][1]
    r = _api(client, "post", cast.owner_token, "/api/v1/carbon-intensity", row)
    assert r.status_code == 400 and "one whole UTC hour" in r.json()["error"]["message"]


def test_an_hour_given_in_another_offset_is_accepted_on_the_utc_hour(site_agent):
    site, _ = site_agent("DE")
    ist = datetime(2026, 11, 27, 15, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Kolkata")
    )
    assert ist.minute == 0  # 21:00 in India is 15:30 UTC: not whole in UTC
    with pytest.raises(CarbonInputError, match="not on a whole UTC hour"):
        site_pue_set(site=site, pue="1.3", valid_from=ist)
    whole = datetime(2026, 11, 27, 15, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Kolkata")
    )
    period = site_pue_set(site=site, pue="1.3", valid_from=whole)
    assert period.valid_from == datetime(2026, 11, 27, 15, tzinfo=UTC)
    inst = market_instrument_create(
        site=site,
        kind="residual",
        valid_from=whole,
        valid_to=whole + timedelta(hours=3),
        intensity_g_per_kwh=500.0,
        source="residual mix",
        year=2026,
    )
    assert inst.valid_from == datetime(2026, 11, 27, 15, tzinfo=UTC)


# --- market factor years --------------------------------------------------------------------------

Y2024, Y2025, Y2026 = (datetime(y, 6, 1, 12, tzinfo=UTC) for y in (2024, 2025, 2026))
MARKET_2025_G_PER_KWH = 550.0


@pytest.fixture
def market_2025(site_agent, post_batch, run_on_commit, settings):
    """A DE site with an hour of 1 kWh in 2024, 2025 and 2026; DE's market factor for 2025 only."""
    settings.INGEST_MAX_SAMPLE_AGE_DAYS = 3650  # mid-2024 is older than the default bound
    site, agent = site_agent("DE", pue="1.0")
    post_batch(agent.token, make_batch([hour_sample(h) for h in (Y2024, Y2025, Y2026)]))
    result = run_on_commit(
        factors_import,
        records=[
            (
                2,
                {
                    "zone": "DE",
                    "start": "2025-01-01",
                    "end": "2026-01-01",
                    "g_co2e_per_kwh": MARKET_2025_G_PER_KWH,
                    "basis": "market",
                    "source": "AIB residual mix 2025 (test)",
                    "year": 2025,
                },
            )
        ],
    )
    assert not result.errors
    return site


def test_a_later_years_market_factor_is_not_borrowed_by_an_earlier_year(market_2025):
    row = HourlyUsage.objects.get(hour=Y2024)
    assert row.market_basis == "location" and row.market_factor_id is None
    assert row.co2e_market_g == pytest.approx(row.co2e_g)
    assert row.co2e_market_g == pytest.approx(DE_2023_G_PER_KWH)


def test_an_earlier_years_market_factor_is_carried_forward_and_flagged(market_2025):
    rows = {r.hour: r for r in HourlyUsage.objects.all()}
    assert (rows[Y2025].market_basis, rows[Y2025].co2e_market_g) == (
        "zone",
        pytest.approx(MARKET_2025_G_PER_KWH),
    )
    assert (rows[Y2026].market_basis, rows[Y2026].co2e_market_g) == (
        "zone-prior",
        pytest.approx(MARKET_2025_G_PER_KWH),
    )
    assert rows[Y2026].market_factor_id == rows[Y2025].market_factor_id
    # Location-based is untouched either way (dual reporting).
    assert {round(r.co2e_g, 6) for r in rows.values()} == {DE_2023_G_PER_KWH}


def test_provenance_says_which_years_market_factor_applied_as_a_fallback(market_2025, cast, client):
    markets = {}
    for hour in (Y2024, Y2025, Y2026):
        r = client.get(
            "/api/v1/usage/provenance",
            {"start": iso(hour), "end": iso(hour + timedelta(hours=1))},
            HTTP_AUTHORIZATION=f"Bearer {cast.member_token}",
        )
        assert r.status_code == 200, r.json()
        (component,) = r.json()["components"]
        market = component["market"]
        markets[hour.year] = (market["basis"], market["fallback"], market["fallback_note"])
    assert markets == {
        2024: ("location", False, None),
        2025: ("zone", False, None),
        2026: ("zone-prior", True, "market factor of 2025 applied to 2026 (fallback)"),
    }


def test_report_market_factor_table_flags_the_carried_forward_factor(market_2025, cast):
    from ecoreport.core.periods import CalendarPeriod as ReportPeriod
    from ecoreport.reports.content import build
    from ecoreport.reports.tables import render_csv, report_tables

    content = build(
        organization=cast.org,
        team=None,
        period=ReportPeriod("year", 2026, 1),
        generated_at=datetime(2027, 1, 2, tzinfo=UTC),
    )
    market = content["methodology"]["market"]
    assert [(m["basis"], m["fallback"], m["fallback_note"]) for m in market] == [
        ("zone-prior", True, "market factor of 2025 applied to 2026 (fallback)")
    ]
    table = next(t for t in report_tables(content) if t.name == "market_factors")
    assert "Fallback applied" in [c.label for c in table.columns]
    assert b"market factor of 2025 applied to 2026 (fallback)" in render_csv(content)


def test_demo_has_marginal_signals_that_the_best_window_uses_and_no_row_uses(db):
    from ecoreport.demo.carbon import demo_carbon_seed
    from ecoreport.demo.services import demo_seed
    from ecoreport.savings.windows import best_window

    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    summary = demo_seed(days=2, gpus=4, now=now)
    demo_carbon_seed(organization=summary.organization, days=1, now=now)
    marginal = CarbonIntensity.objects.filter(organization=summary.organization, basis="marginal")
    assert marginal.filter(start__gte=now, is_forecast=True).count() == 48
    answer = best_window(summary.organization, zone="FR", duration_h=3, within_h=24, now=now)
    assert answer["basis"] == "marginal" and answer["saving_g_per_kwh"] > 0
    ids = set(marginal.values_list("pk", flat=True))
    used = HourlyUsage.objects.filter(organization=summary.organization)
    assert not used.filter(intensity_factor_id__in=ids).exists()
    assert not used.filter(market_factor_id__in=ids).exists()


def test_upgrade_recomputes_hours_that_borrowed_a_later_years_market_factor(
    market_2025, django_capture_on_commit_callbacks
):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("ecoreport.carbon.migrations.0003_marginal_basis")
    factor = CarbonIntensity.objects.get(basis="market")
    # As the previous release stored it: 2024 borrowed the 2025 factor.
    HourlyUsage.objects.filter(hour=Y2024).update(
        market_basis="zone", market_factor=factor, co2e_market_g=MARKET_2025_G_PER_KWH
    )
    with django_capture_on_commit_callbacks(execute=True):
        migration.reclassify(apps, None)
    row = HourlyUsage.objects.get(hour=Y2024)
    assert (row.market_basis, row.market_factor_id) == ("location", None)
    assert row.co2e_market_g == pytest.approx(DE_2023_G_PER_KWH)


@pytest.mark.parametrize(
    ("basis", "valid"), [("location", True), ("market", True), ("marginal", True), ("avg", False)]
)
def test_manage_factor_form_offers_the_three_kinds(basis, valid):
    from ecoreport.dashboards.manage.forms import FactorForm

    form = FactorForm(
        data={
            "zone": "DE",
            "resolution": "hour",
            "day": "2026-11-27",
            "hour": 10,
            "g_co2e_per_kwh": 600,
            "basis": basis,
            "scope": "direct",
            "source": "signal",
        }
    )
    assert form.is_valid() is valid, form.errors
    if valid:
        record = form.record()
        assert (record["basis"], record["start"], record["end"]) == (
            basis,
            "2026-11-27T10:00:00+00:00",
            "2026-11-27T11:00:00+00:00",
        )
