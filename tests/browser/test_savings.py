"""A person signs in, opens the savings calculator, sees the chart drawn, changes an assumption
and the scope, and the results change without the page reloading; the overview loads its top
recommendations after its own render. The browser reports no JavaScript error."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]

# What Chromium logs when a fetch gets a 400: the server's answer, not a JavaScript error.
BAD_REQUEST_LOG = "the server responded with a status of 400"


def _energy(page, lever):
    # The first numeric cell of the lever's row: IT energy (kWh).
    return page.locator(f"#lever-{lever} td.n").first.inner_text()


def _changes(page, lever, before):
    page.wait_for_function(
        "([lever, before]) => {"
        "  const cell = document.querySelector(`#lever-${lever} td.n`);"
        "  return cell && cell.textContent !== before; }",
        arg=[lever, before],
        timeout=15_000,
    )


def test_calculator_updates_without_a_reload(signed_in, live_server):
    page = signed_in
    page.click("nav >> text=Savings")
    page.wait_for_url("**/savings/**")
    page.wait_for_selector("#savings-chart[data-drawn='true']", timeout=15_000)
    assert page.locator("#savings-chart .main-svg").count() > 0
    # A marker that a reload or a navigation would wipe out.
    page.evaluate("window.__sameDocument = true")

    before = _energy(page, "power_capping")
    page.fill("#a-power_cap_reduction_pct", "30")
    _changes(page, "power_capping", before)
    page.wait_for_selector("#savings-chart[data-drawn='true']", timeout=15_000)
    # Twice the default reduction (15 %, McDonald et al. 2022): twice the energy saved.
    after = _energy(page, "power_capping")
    assert float(after) == pytest.approx(2 * float(before), rel=0.02)
    assert page.evaluate("window.__sameDocument") is True
    assert urlparse(page.url).path == "/savings/"
    assert parse_qs(urlparse(page.url).query)["power_cap_reduction_pct"] == ["30"]
    assert page.locator("#savings-status").inner_text() == "Results updated."
    # The table of where the assumptions come from follows: the value used, then the default.
    used = page.locator("#source-power_cap_reduction_pct td.n")
    assert [used.nth(0).inner_text(), used.nth(1).inner_text()] == ["30", "15"]
    assert "McDonald" in page.locator("#source-power_cap_reduction_pct").inner_text()
    assert (
        page.locator("a", has_text="Download CSV")
        .get_attribute("href")
        .endswith("power_cap_reduction_pct=30&download=levers")
    )

    # Enter in a field updates in place too (the form's submit is the script's).
    idle_before = _energy(page, "idle")
    page.fill("#a-idle_recoverable_pct", "50")
    page.press("#a-idle_recoverable_pct", "Enter")
    _changes(page, "idle", idle_before)
    assert page.evaluate("window.__sameDocument") is True

    # Another scope: the idle energy was unattributed, so the team has none of it.
    org_idle = _energy(page, "idle")
    page.select_option("#savings-scope", "team:nlp")
    _changes(page, "idle", org_idle)
    assert float(_energy(page, "idle")) == 0 < float(org_idle)
    assert parse_qs(urlparse(page.url).query)["scope"] == ["team:nlp"]
    # The period picker carries the calculator's state along.
    carried = page.locator("form.period input[data-carried][name='scope']")
    assert carried.get_attribute("value") == "team:nlp"
    assert page.evaluate("window.__sameDocument") is True
    assert page.js_errors == []


def test_a_bad_assumption_is_shown_next_to_its_field(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server.url}/savings/")
    page.wait_for_selector("#savings-chart[data-drawn='true']", timeout=15_000)
    before = _energy(page, "power_capping")
    page.fill("#a-power_cap_reduction_pct", "150")
    error = page.locator("#error-power_cap_reduction_pct")
    error.wait_for(state="visible", timeout=15_000)
    assert "outside the allowed range 0 to 100%" in error.inner_text()
    assert page.get_attribute("#a-power_cap_reduction_pct", "aria-invalid") == "true"
    assert "Not updated" in page.locator("#savings-status").inner_text()
    assert _energy(page, "power_capping") == before  # the last valid results stay

    page.fill("#a-power_cap_reduction_pct", "6")
    _changes(page, "power_capping", before)
    assert error.is_hidden()
    assert page.get_attribute("#a-power_cap_reduction_pct", "aria-invalid") is None
    assert [e for e in page.js_errors if BAD_REQUEST_LOG not in e] == []


def test_overview_loads_its_top_recommendations(signed_in, live_server):
    page = signed_in
    page.wait_for_selector("#recommendations[data-loaded='true']", timeout=15_000)
    items = page.locator("#recommendations ol.recommendations > li")
    assert 1 <= items.count() <= 3
    assert "kWh" in items.first.inner_text() and "kg CO₂e" in items.first.inner_text()
    page.click("#recommendations >> text=Open the savings calculator")
    page.wait_for_url("**/savings/?**")
    page.wait_for_selector("#savings-chart[data-drawn='true']", timeout=15_000)
    assert page.js_errors == []


def test_team_dashboard_loads_the_teams_top_savings(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server.url}/teams/nlp/")
    page.wait_for_selector("#recommendations[data-loaded='true']", timeout=15_000)
    link = page.locator("#recommendations a", has_text="Open the savings calculator for team nlp")
    assert "scope=team%3Anlp" in link.get_attribute("href")
    assert page.js_errors == []
