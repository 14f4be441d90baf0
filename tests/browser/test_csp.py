"""The Content-Security-Policy (no inline script or style, nothing from elsewhere) breaks no page:
the dashboards, the targets page, the API docs and the settings draw without a CSP violation."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_pages_work_under_the_content_security_policy(signed_in, live_server, cast):
    page = signed_in
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    response = page.goto(f"{live_server.url}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("[data-figure='energy-by-team'][data-drawn='true']", timeout=15_000)
    page.goto(f"{live_server.url}/teams/nlp/")
    page.wait_for_selector("[data-figure='energy-over-time'][data-drawn='true']", timeout=15_000)
    page.goto(f"{live_server.url}/targets/")
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=15_000)
    assert violations == []
    assert page.js_errors == []
