"""The savings calculator page, its JSON updates and the "top recommendations" fragment: the
owner, the member, the outsider and the anonymous visitor; numbers checked against the measured
fleet of tests/savings/conftest.py."""

from __future__ import annotations

import csv
import io
import re
from html import unescape

import pytest

from ecoreport.core import figures
from tests.savings import conftest as savings_conftest

pytestmark = pytest.mark.django_db

# The savings app's small fleet with known numbers (sites, grid factors, jobs, an idle GPU).
fleet = savings_conftest.fleet
zone_factors = savings_conftest.zone_factors

# The fleet's day, as the period picker's custom dates (both inclusive).
DAY = {"period": "custom", "start": "2026-11-27", "end": "2026-11-27"}
# The fleet: 3 kWh of job j1 (team nlp) and 1 kWh idle at site A, 0.5 kWh of job j2 at site B.
ORG_KWH, IDLE_KWH = 4.5, 1.0
NLP_KWH, NLP_IDLE_KWH = 4.0, 1.0
KEYS = [
    "idle",
    "low_utilization",
    "carbon_aware_timing",
    "region",
    "precision",
    "architecture",
    "power_capping",
]


def _login(client, membership):
    client.force_login(membership.user)
    return client


def _levers(response):
    return {lever["key"]: lever for lever in response.context["levers"]}


def _row(html, key):
    """The cells of one lever's row of the results table, as text."""
    row = re.search(rf'<tr id="lever-{key}".*?</tr>', html, re.S)
    assert row is not None, key
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)


# --- who sees what ----------------------------------------------------------------------------


def test_owner_and_member_see_the_calculator_with_every_assumption(client, cast, fleet):
    from ecoreport.savings.assumptions import SPECS

    for membership in (cast.owner, cast.member):
        response = _login(client, membership).get("/savings/", DAY)
        assert response.status_code == 200
        html = response.content.decode()
        assert "Savings calculator" in html and "Acme AI" in html
        for name in SPECS:
            assert f'name="{name}"' in html, name
            assert f'id="help-{name}"' in html, name
        # Units and ranges next to the inputs.
        assert "Work that may start later (%)" in html
        assert "Window to shift work within (h)" in html
        assert "Electricity price for every site (EUR/kWh)" in html
        assert "allowed 1 to 168 h; typical 12 to 48 h" in html
        # Every scope of the organization, and only those.
        for value in ("org", "team:nlp", "team:vision", "project:llm", "project:tiny-eval"):
            assert f'value="{value}"' in html, value
        assert [lever["key"] for lever in response.context["levers"]] == KEYS


def test_outsider_sees_only_their_own_organization(client, cast, fleet):
    response = _login(client, cast.outsider).get("/savings/", {**DAY, "org": "acme"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme AI" not in html and "nlp" not in html and "tiny-eval" not in html
    assert all(lever["energy_kwh"] == 0 for lever in response.context["levers"])


@pytest.mark.parametrize("path", ["/savings/", "/savings/results.json", "/savings/top/"])
@pytest.mark.parametrize("scope", ["team:nlp", "project:llm", "team:ghost", "department:x"])
def test_a_scope_outside_the_organization_is_404_without_a_hint(client, cast, fleet, path, scope):
    response = _login(client, cast.outsider).get(path, {**DAY, "scope": scope})
    assert response.status_code == 404
    assert b"Acme" not in response.content
    assert b"kWh" not in response.content


@pytest.mark.parametrize("path", ["/savings/", "/savings/top/"])
def test_anonymous_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_anonymous_json_is_a_401_the_script_can_explain(client):
    response = client.get("/savings/results.json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- the numbers ------------------------------------------------------------------------------


def test_power_capping_saves_the_stated_share_of_the_measured_work(client, cast, fleet):
    _login(client, cast.member)
    default = client.get("/savings/", DAY)
    capping = _levers(default)["power_capping"]
    # The default is McDonald et al. 2022's 15 % (it was 12 %, a figure no cited source states).
    assert capping["energy_kwh"] == pytest.approx(0.15 * (ORG_KWH - IDLE_KWH))
    assert _row(default.content.decode(), "power_capping")[1] == "0.53"

    changed = client.get("/savings/", {**DAY, "power_cap_reduction_pct": "20"})
    more = _levers(changed)["power_capping"]
    assert more["energy_kwh"] == pytest.approx(0.20 * (ORG_KWH - IDLE_KWH))
    assert more["co2e_kg"] == pytest.approx(capping["co2e_kg"] * 20 / 15)
    assert more["co2e_kg"] > 0
    # The table shows it, with the unit in the header; the form keeps the typed value.
    html = changed.content.decode()
    assert "IT energy (kWh)" in html and "CO₂e, location-based (kg)" in html
    assert _row(html, "power_capping")[1] == "0.70"
    field = re.search(r'<input id="a-power_cap_reduction_pct"[^>]*>', html)
    assert field is not None and 'value="20"' in field.group(0)


def test_half_already_capped_halves_the_saving(client, cast, fleet):
    response = _login(client, cast.member).get(
        "/savings/", {**DAY, "power_cap_reduction_pct": "20", "power_cap_already_pct": "50"}
    )
    assert _levers(response)["power_capping"]["energy_kwh"] == pytest.approx(
        0.20 * 0.5 * (ORG_KWH - IDLE_KWH)
    )


def test_idle_lever_follows_the_recoverable_share(client, cast, fleet):
    _login(client, cast.member)
    assert _levers(client.get("/savings/", DAY))["idle"]["energy_kwh"] == pytest.approx(IDLE_KWH)
    half = client.get("/savings/", {**DAY, "idle_recoverable_pct": "50"})
    assert _levers(half)["idle"]["energy_kwh"] == pytest.approx(IDLE_KWH / 2)


def test_a_team_scope_counts_only_the_teams_work(client, cast, fleet):
    response = _login(client, cast.member).get("/savings/", {**DAY, "scope": "team:nlp"})
    assert response.status_code == 200
    assert _levers(response)["power_capping"]["energy_kwh"] == pytest.approx(
        0.15 * (NLP_KWH - NLP_IDLE_KWH)
    )
    assert 'value="team:nlp" selected' in response.content.decode()


def test_recommendations_are_ranked_by_co2e_saved(client, cast, fleet):
    response = _login(client, cast.member).get("/savings/", DAY)
    ranked = response.context["recommendations"]
    assert ranked and [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    assert [r["co2e_kg"] for r in ranked] == sorted((r["co2e_kg"] for r in ranked), reverse=True)
    assert ranked[0]["sentence"] in response.content.decode()


# --- the JSON the page's script fetches -------------------------------------------------------


def test_json_results_follow_the_assumptions_and_give_a_shareable_query(client, cast, fleet):
    response = _login(client, cast.member).get(
        "/savings/results.json", {**DAY, "scope": "org", "power_cap_reduction_pct": "20"}
    )
    assert response.status_code == 200
    body = response.json()
    levers = {lever["key"]: lever for lever in body["levers"]}
    assert list(levers) == KEYS
    assert levers["power_capping"]["energy_kwh"] == pytest.approx(0.20 * (ORG_KWH - IDLE_KWH))
    assert "details" not in levers["idle"]
    assert body["assumptions"]["power_cap_reduction_pct"] == 20
    # Only what differs from the defaults, plus the period: the URL the page puts in the bar.
    assert body["query"] == (
        "period=custom&start=2026-11-27&end=2026-11-27&power_cap_reduction_pct=20"
    )
    assert _row(body["html"], "power_capping")[1] == "0.70"
    assert "download=levers" in body["html"]
    assert body["figure"]["data"][0]["type"] == "bar"
    assert body["chart"]["unit"] == "kg CO₂e"
    assert [r["rank"] for r in body["recommendations"]][:1] == [1]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"flexible_pct": "150"}, "flexible_pct", "outside the allowed range 0 to 100%"),
        ({"precision_already_pct": "-1"}, "precision_already_pct", "cannot be negative"),
        ({"timing_window_h": "2.5"}, "timing_window_h", "not a whole number"),
        ({"price_per_kwh": "cheap"}, "price_per_kwh", "not a number"),
    ],
)
def test_a_bad_assumption_is_explained_next_to_its_field(
    client, cast, fleet, params, field, message
):
    _login(client, cast.member)
    page = client.get("/savings/", {**DAY, **params})
    assert page.status_code == 400
    html = page.content.decode()
    shown = re.search(rf'<span id="error-{field}" class="field-error">(.*?)</span>', html)
    assert shown is not None and message in unescape(shown.group(1))
    assert 'role="alert"' in html
    # What was typed stays in the field, to be corrected, and the field says it is invalid.
    field_html = re.search(rf'<input id="a-{field}"[^>]*>', html)
    assert field_html is not None
    assert f'value="{params[field]}"' in field_html.group(0)
    assert 'aria-invalid="true"' in field_html.group(0)

    answer = client.get("/savings/results.json", {**DAY, **params})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["details"]) == {field} and message in error["details"][field]

    fragment = client.get("/savings/top/", {**DAY, **params})
    assert fragment.status_code == 400 and message in fragment.content.decode()


def test_every_bad_field_is_reported_at_once(client, cast, fleet):
    answer = _login(client, cast.member).get(
        "/savings/results.json", {**DAY, "flexible_pct": "x", "timing_window_h": "0"}
    )
    assert set(answer.json()["error"]["details"]) == {"flexible_pct", "timing_window_h"}


def test_a_period_longer_than_the_savings_engine_answers_is_explained(client, cast, fleet):
    response = _login(client, cast.member).get(
        "/savings/", {"period": "custom", "start": "2025-01-01", "end": "2026-11-27"}
    )
    assert response.status_code == 400
    assert "at most 400 days" in response.content.decode()


# --- CSV --------------------------------------------------------------------------------------


def test_lever_table_downloads_as_csv_with_the_assumptions_used(client, cast, fleet):
    response = _login(client, cast.member).get(
        "/savings/", {**DAY, "power_cap_reduction_pct": "20", "download": "levers"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="levers-20261127-20261128.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["lever"] for r in rows] == KEYS
    capping = rows[KEYS.index("power_capping")]
    assert float(capping["energy_kwh"]) == pytest.approx(0.7)
    assert capping["kind"] == "what-if" and capping["currency"] == "EUR"
    assert capping["assumptions"] == "power_cap_reduction_pct=20; power_cap_already_pct=0"
    assert capping["assumption_sources"] == (
        "power_cap_reduction_pct: J. McDonald, B. Li, N. Frey, D. Tiwari, V. Gadepally, S. Samsi, "
        "Great Power, Great Responsibility: Recommendations for Reducing Energy for Training "
        "Language Models, Findings of NAACL 2022, abstract; "
        "power_cap_already_pct: unsourced: engineering estimate"
    )
    assert capping["recommendation"].startswith("Capping GPU power")


def test_no_csv_for_invalid_inputs(client, cast, fleet):
    response = _login(client, cast.member).get(
        "/savings/", {**DAY, "flexible_pct": "101", "download": "levers"}
    )
    assert response.status_code == 400
    assert "outside the allowed range" in response.content.decode()


# --- the dashboards' fragment -----------------------------------------------------------------


def test_top_recommendations_fragment_has_three_with_savings_and_links(client, cast, fleet):
    response = _login(client, cast.member).get("/savings/top/", {**DAY, "scope": "team:nlp"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # a fragment, not a page
    assert html.count('<li data-lever="') == 3
    assert html.count(" kWh</strong> of IT energy") == 3
    assert html.count(" kg CO₂e</strong>") == 3
    link = "/savings/?period=custom&amp;start=2026-11-27&amp;end=2026-11-27&amp;scope=team%3Anlp"
    assert f'href="{link}#lever-' in html
    assert "Open the savings calculator for team nlp" in html


def test_top_recommendations_for_a_scope_without_measurements(client, cast, fleet):
    response = _login(client, cast.member).get(
        "/savings/top/", {"period": "custom", "start": "2026-01-01", "end": "2026-01-02"}
    )
    assert response.status_code == 200
    assert "No savings found" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/", "/savings/top/?scope=org&amp;"),
        ("/teams/nlp/", "/savings/top/?scope=team:nlp&amp;"),
        ("/projects/llm/", "/savings/top/?scope=project:llm&amp;"),
    ],
)
def test_dashboards_leave_a_place_for_the_recommendations(client, cast, fleet, path, fragment):
    response = _login(client, cast.member).get(path, DAY)
    html = response.content.decode()
    assert f'data-fragment="{fragment}' in html
    assert "Open the savings calculator</a>" in html  # without JavaScript


# --- cost of a page ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "max_queries"),
    # The savings engine reads ~26 (levers, rollup, raw samples, carbon resolver); the page adds
    # the session, the membership and the scope choices.
    [("/savings/", 33), ("/savings/results.json", 30), ("/savings/top/", 30)],
)
def test_calculator_query_counts_are_pinned(
    client, cast, fleet, django_assert_max_num_queries, path, max_queries
):
    _login(client, cast.member)
    with django_assert_max_num_queries(max_queries):
        assert client.get(path, DAY).status_code == 200


# --- the figure -------------------------------------------------------------------------------


def test_savings_figure_has_one_bar_per_lever_and_tells_kinds_apart_without_colour():
    levers = [
        {"title": "Idle", "kind": "measured", "co2e_kg": 2.0},
        {"title": "Capping", "kind": "what-if", "co2e_kg": 0.5},
        {"title": "Region", "kind": "measured", "co2e_kg": None},
    ]
    fig = figures.savings_by_lever(levers, metric="co2e_kg", title="Saved", unit="kg CO₂e")
    measured, what_if = fig["data"]
    # First lever on top: plotly draws the first category at the bottom.
    assert measured["y"] == ["Region", "Capping", "Idle"]
    assert measured["x"] == [0.0, None, 2.0]
    assert what_if["x"] == [None, 0.5, None]
    assert measured["marker"]["color"] in figures.PALETTE
    assert what_if["marker"]["pattern"]["shape"] == "/"
    assert measured["marker"]["pattern"]["shape"] == ""
    assert fig["layout"]["xaxis"]["title"]["text"] == "kg CO₂e"
    assert fig["layout"]["height"] >= 260


# --- where the assumptions come from ------------------------------------------------------------


def _source_row(html, name):
    row = re.search(rf'<tr id="source-{name}"[^>]*>.*?</tr>', html, re.S)
    assert row is not None, name
    return row.group(0)


def test_the_calculator_shows_each_assumptions_source_or_its_unsourced_flag(client, cast, fleet):
    from ecoreport.savings.assumptions import SPECS, UNSOURCED

    response = _login(client, cast.member).get(
        "/savings/", {**DAY, "architecture_reduction_pct": "25"}
    )
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert "Where the assumptions come from" in html
    for name, spec in SPECS.items():
        row = _source_row(html, name)
        if spec.source is None:
            assert UNSOURCED in row and 'data-unsourced="true"' in row, name
        else:
            assert spec.source.figure in row and spec.source.where in row, name
            assert "data-unsourced" not in row, name
        # Next to the input as well.
        help_text = re.search(rf'<small id="help-{name}"[^>]*>.*?</small>', html, re.S)
        assert help_text is not None
        expected = f"Source: {spec.source.short}" if spec.source else "Unsourced: engineering"
        assert expected in help_text.group(0), name
    # The value used is the typed one, the default beside it.
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _source_row(html, "architecture_reduction_pct"))
    assert cells[:2] == ["<strong>25</strong>", "37.5"]
    assert "60 % faster" in cells[2] and "DistilBERT" in cells[3] and "abstract" in cells[3]


def test_the_json_update_carries_the_sources_table_with_the_value_used(client, cast, fleet):
    body = (
        _login(client, cast.member)
        .get("/savings/results.json", {**DAY, "power_cap_reduction_pct": "20"})
        .json()
    )
    html = unescape(body["html"])
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _source_row(html, "power_cap_reduction_pct"))
    assert cells[:2] == ["<strong>20</strong>", "15"]
    assert "Great Power, Great Responsibility" in cells[3]
    assert body["assumption_sources"]["power_cap_reduction_pct"]["value"] == 20
