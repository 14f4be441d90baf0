"""GET /api/v1/savings and /api/v1/carbon/best-window: shapes, bad input, tenancy."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from tests.conftest import iso, load_hourly
from tests.savings.conftest import DAY, PROFILE_ZA

# A marginal signal for zone ZA over the fixture's 48 hours: a gas plant on the margin at
# 600 g/kWh, except 15:00-18:00 each day (300 g/kWh), when the grid average is at its highest.
MARGINAL_ZA = [300.0 if h % 24 in (15, 16, 17) else 600.0 for h in range(48)]


def load_marginal(zone: str, values: list[float]) -> None:
    load_hourly(zone, DAY, values, basis="marginal", source="test marginal signal")


pytestmark = pytest.mark.django_db

PERIOD = {"start": iso(DAY), "end": iso(DAY + timedelta(days=1))}
KEYS = [
    "idle",
    "low_utilization",
    "carbon_aware_timing",
    "region",
    "precision",
    "architecture",
    "power_capping",
]


def get(client, path, token, **params):
    return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_savings_answers_every_lever_for_a_team(client, cast, fleet):
    response = get(client, "/api/v1/savings", cast.member_token, scope="team:nlp", **PERIOD)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["scope"] == "team:nlp"
    assert [lever["key"] for lever in body["levers"]] == KEYS
    for lever in body["levers"]:
        assert {"key", "energy_kwh", "co2e_kg", "co2e_market_kg", "cost", "assumptions"} <= set(
            lever
        )
    idle = body["levers"][0]
    assert idle["energy_kwh"] == pytest.approx(1.0)
    assert body["recommendations"][0]["rank"] == 1 and body["recommendations"][0]["sentence"]


def test_overridden_assumptions_in_the_query_change_the_answer(client, cast, fleet):
    base = get(client, "/api/v1/savings", cast.member_token, **PERIOD).json()
    half = get(
        client, "/api/v1/savings", cast.member_token, idle_recoverable_pct="50", **PERIOD
    ).json()
    assert half["assumptions"]["idle_recoverable_pct"] == 50.0
    assert half["levers"][0]["energy_kwh"] == pytest.approx(base["levers"][0]["energy_kwh"] / 2)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"scope": "team:ghost"}, "scope", "no team 'ghost'"),
        ({"scope": "department:x"}, "scope", "Unknown scope"),
        ({"flexible_pct": "150"}, "flexible_pct", "above 100%"),
        ({"precision_already_pct": "-1"}, "precision_already_pct", "cannot be negative"),
        ({"timing_window_h": "-3"}, "timing_window_h", "outside the allowed range"),
        ({"start": "yesterday"}, "start", "start"),
        ({"start": iso(DAY), "end": iso(DAY - timedelta(hours=1))}, "end", "after start"),
    ],
)
def test_savings_bad_input_is_a_400_that_says_why(client, cast, fleet, params, field, message):
    response = get(client, "/api/v1/savings", cast.member_token, **{**PERIOD, **params})
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"] and field in error["details"]


def test_outsider_cannot_read_another_organizations_team(client, cast, fleet):
    response = get(client, "/api/v1/savings", cast.outsider_token, scope="team:nlp", **PERIOD)
    assert response.status_code == 400 and "no team 'nlp'" in response.json()["error"]["message"]
    own = get(client, "/api/v1/savings", cast.outsider_token, **PERIOD).json()
    assert all(lever["energy_kwh"] == 0 and lever["co2e_kg"] == 0 for lever in own["levers"])


def test_savings_needs_a_member(client, fleet):
    assert client.get("/api/v1/savings", PERIOD).status_code in (401, 403)


def test_best_window_on_a_known_hourly_profile(client, cast, zone_factors):
    with time_machine.travel(DAY + timedelta(minutes=20), tick=False):
        response = get(
            client,
            "/api/v1/carbon/best-window",
            cast.member_token,
            zone="ZA",
            duration_h=3,
            within_h=24,
            energy_kwh=10,
        )
    assert response.status_code == 200, response.json()
    body = response.json()
    averages = [sum(PROFILE_ZA[i : i + 3]) / 3 for i in range(0, 24 - 3 + 1)]
    best = min(range(len(averages)), key=averages.__getitem__)
    assert best == 2  # 02:00-05:00: 200, 120, 150
    assert body["start"].startswith("2026-11-27T02:00:00")
    assert body["avg_intensity_g_per_kwh"] == pytest.approx(averages[best])
    assert body["now"]["avg_intensity_g_per_kwh"] == pytest.approx(averages[0])
    assert body["saving_g_per_kwh"] == pytest.approx(averages[0] - averages[best])
    assert body["saving_co2e_kg"] == pytest.approx(10 * (averages[0] - averages[best]) / 1000)
    assert body["saving_pct"] == pytest.approx((averages[0] - averages[best]) / averages[0] * 100)


def test_best_window_only_looks_ahead_from_now(client, cast, zone_factors):
    with time_machine.travel(DAY + timedelta(hours=5), tick=False):
        body = get(
            client,
            "/api/v1/carbon/best-window",
            cast.member_token,
            zone="ZA",
            duration_h=1,
            within_h=24,
        ).json()
    # From 05:00 the cleanest hour within 24 h is 03:00 the next day (110 g/kWh).
    assert body["start"].startswith("2026-11-28T03:00:00")
    assert body["avg_intensity_g_per_kwh"] == pytest.approx(110.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"zone": "ZB", "duration_h": 2, "within_h": 12}, "no hourly carbon-intensity data"),
        ({"zone": "NOWHERE", "duration_h": 2, "within_h": 12}, "no hourly carbon-intensity data"),
        ({"zone": "ZA", "duration_h": 6, "within_h": 4}, "shorter than the duration"),
        ({"zone": "ZA", "duration_h": -2, "within_h": 4}, "cannot be negative"),
        ({"zone": "ZA", "duration_h": 2, "within_h": -4}, "cannot be negative"),
        ({"zone": "ZA", "duration_h": "two", "within_h": 4}, "whole number"),
        ({"zone": "ZA", "duration_h": 2, "within_h": 500}, "at most 168"),
        ({"zone": "ZA", "duration_h": 30, "within_h": 72}, "only 24 consecutive hours"),
        ({"duration_h": 2}, "zone"),
    ],
)
def test_best_window_bad_input_is_a_400_that_says_why(client, cast, zone_factors, params, message):
    with time_machine.travel(DAY + timedelta(hours=24), tick=False):
        response = get(client, "/api/v1/carbon/best-window", cast.member_token, **params)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_assumptions_endpoint_lists_defaults_and_ranges(client, cast):
    body = get(client, "/api/v1/savings/assumptions", cast.member_token).json()
    flexible = next(a for a in body["assumptions"] if a["name"] == "flexible_pct")
    assert flexible["default"] == 30.0 and flexible["maximum"] == 100


def _reported(client, cast) -> dict:
    """Every reported figure of the fixture's day: the rows, the usage API, the report."""
    from ecoreport.accounting.models import HourlyUsage
    from ecoreport.core.periods import CalendarPeriod as ReportPeriod
    from ecoreport.reports.content import build

    rows = sorted(
        HourlyUsage.objects.values_list(
            "hour", "gpu_id", "co2e_g", "co2e_market_g", "intensity_factor_id", "market_basis"
        )
    )
    usage = get(client, "/api/v1/usage", cast.member_token, **PERIOD).json()["totals"]
    report = build(
        organization=cast.org,
        team=None,
        period=ReportPeriod("month", 2026, 11),
        generated_at=DAY + timedelta(days=10),
    )
    return {
        "rows": rows,
        "usage": usage,
        "report_totals": report["totals"],
        "report_factors": report["methodology"]["factors"],
        "report_market": report["methodology"]["market"],
    }


def test_a_marginal_factor_changes_no_reported_emissions_but_changes_the_best_window(
    client, cast, fleet, django_capture_on_commit_callbacks
):
    def window() -> dict:
        with time_machine.travel(DAY + timedelta(minutes=20), tick=False):
            response = get(
                client,
                "/api/v1/carbon/best-window",
                cast.member_token,
                zone="ZA",
                duration_h=3,
                within_h=24,
            )
        assert response.status_code == 200, response.json()
        return response.json()

    before, window_before = _reported(client, cast), window()
    assert (window_before["basis"], window_before["start"][:16]) == ("location", "2026-11-27T02:00")
    with django_capture_on_commit_callbacks(execute=True):  # any recompute it enqueues runs
        load_marginal("ZA", MARGINAL_ZA)
    after, window_after = _reported(client, cast), window()
    assert after == before
    assert before["usage"]["co2e_kg"] > 0
    # The best window now follows the marginal signal: 15:00-18:00, the margin's clean hours.
    assert (window_after["basis"], window_after["start"][:16]) == ("marginal", "2026-11-27T15:00")
    assert window_after["avg_intensity_g_per_kwh"] == pytest.approx(300.0)
    assert window_after["now"]["avg_intensity_g_per_kwh"] == pytest.approx(600.0)
    assert window_after["sources"] == ["test marginal signal (2026)"]


def test_best_window_uses_average_factors_where_marginal_ones_do_not_cover_the_duration(
    client, cast, zone_factors
):
    load_marginal("ZA", MARGINAL_ZA[:2])  # two hours of marginal signal: too few for 3 h
    with time_machine.travel(DAY + timedelta(minutes=20), tick=False):
        body = get(
            client,
            "/api/v1/carbon/best-window",
            cast.member_token,
            zone="ZA",
            duration_h=3,
            within_h=24,
        ).json()
    assert (body["basis"], body["start"][:16]) == ("location", "2026-11-27T02:00")


def test_assumptions_endpoint_names_each_defaults_source_or_flags_it(client, cast):
    body = get(client, "/api/v1/savings/assumptions", cast.member_token).json()
    by_name = {a["name"]: a for a in body["assumptions"]}
    capping = by_name["power_cap_reduction_pct"]
    assert capping["default"] == 15.0 and capping["unsourced"] is None
    assert capping["source"]["where"] == "abstract"
    assert "Findings of NAACL 2022" in capping["source"]["title"]
    assert by_name["precision_reduction_pct"]["source"] is None
    assert by_name["precision_reduction_pct"]["unsourced"] == "unsourced: engineering estimate"
    for item in body["assumptions"]:
        assert (item["source"] is None) != (item["unsourced"] is None), item["name"]
        assert item["default_basis"] in {"midpoint", "source", "estimate"}


def test_savings_answer_keeps_its_shape_and_adds_the_sources_of_the_values_used(
    client, cast, fleet
):
    body = get(
        client, "/api/v1/savings", cast.member_token, power_cap_reduction_pct="20", **PERIOD
    ).json()
    # The shape consumers read is unchanged ...
    assert {
        "organization",
        "scope",
        "start",
        "end",
        "assumptions",
        "levers",
        "recommendations",
    } <= (set(body))
    assert body["assumptions"]["power_cap_reduction_pct"] == 20.0
    # ... and each input's source travels next to the value used.
    sources = body["assumption_sources"]
    assert set(sources) == set(body["assumptions"])
    capping = sources["power_cap_reduction_pct"]
    assert (capping["value"], capping["default"]) == (20.0, 15.0)
    assert "McDonald" in capping["source"]["title"]
    assert sources["flexible_pct"]["unsourced"] == "unsourced: engineering estimate"
    assert sources["flexible_pct"]["source"] is None


def test_recommendations_name_projects_by_their_name(client, cast, fleet):
    # Issue 12: a project registered from a label in another script has a digest slug; the
    # recommendations say its name, and the lever details carry it beside the slug.
    from ecoreport.organizations.models import Project

    Project.objects.filter(organization=cast.org, slug="tiny-eval").update(name="小さい評価")
    body = get(client, "/api/v1/savings", cast.member_token, scope="org", **PERIOD).json()
    levers = {lever["key"]: lever for lever in body["levers"]}
    candidates = levers["low_utilization"]["details"]["candidates"]
    assert [(c["project"], c["project_name"]) for c in candidates] == [("tiny-eval", "小さい評価")]
    projects = levers["precision"]["details"]["projects"]
    assert {(p["project"], p["project_name"]) for p in projects} == {
        ("llm", "llm"),
        ("tiny-eval", "小さい評価"),
    }
    sentences = {r["key"]: r["sentence"] for r in body["recommendations"]}
    assert "j2 in 小さい評価" in sentences["low_utilization"]
    assert "tiny-eval" not in " ".join(sentences.values())
