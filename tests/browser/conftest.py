"""Headless Chromium (Debian's package) driven by Playwright against a live server.

Skipped with a reason when Chromium is not installed, except in CI (ECOREPORT_REQUIRE_SERVICES),
where .ci/run installs it and a missing browser must fail the run instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.conftest import make_batch, make_sample

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# around it are ordinary synchronous ones.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("ECOREPORT_REQUIRE_SERVICES"):
            pytest.fail("Chromium is required in CI (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.js_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    page.on("console", lambda msg: page.js_errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


@pytest.fixture
def signed_in(page: Any, live_server: Any, cast: Any, agent: Any, post_batch: Any) -> Any:
    """Two days of hourly samples for team nlp / project llm, and the member signed in through
    the login form."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    samples = [
        make_sample(
            start=start + timedelta(hours=i),
            seconds=3600,
            energy_j=3600 * 250.0,
            attribution=[{"share": 1.0, "team": "nlp", "project": "llm"}] if i % 4 else [],
        )
        for i in range(40)
    ]
    post_batch(agent.token, make_batch(samples))
    user = cast.member.user
    user.set_password("pw-for-browser")
    user.save()
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-for-browser")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page
