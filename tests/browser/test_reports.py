"""An admin generates a report from /reports/ in the browser: the form, the report's page with
its progress, then its headline figures and files once the build (a task) has run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ecoreport.core.periods import CalendarPeriod
from ecoreport.reports.models import Report

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_an_admin_generates_a_report_from_the_page(page, live_server, cast, agent, post_batch):
    from tests.conftest import make_batch, make_sample

    month = CalendarPeriod.containing("month", timezone.now()).previous
    start = month.start + timedelta(days=3)
    samples = [
        make_sample(start=start + timedelta(hours=i), seconds=3600, energy_j=3600 * 200.0)
        for i in range(6)
    ]
    assert post_batch(agent.token, make_batch(samples)).json()["accepted"] == 6
    user = cast.owner.user
    user.set_password("pw-for-browser")
    user.save()
    page.goto(f"{live_server.url}/accounts/login/?next=/reports/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-for-browser")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/reports/")

    page.select_option("#id_period", month.label)
    for box in page.locator("input[name=formats]").all():
        if box.get_attribute("value") not in ("pdf", "csv"):
            box.uncheck()
    page.click("#generate-report button[type=submit]")
    page.wait_for_url("**/reports/*/")
    # Tasks run in-process in this suite, so the build is done by the time the page loads; the
    # page then shows the preview and the files asked for.
    report = Report.objects.get(organization=cast.org)
    assert page.url.endswith(f"/reports/{report.pk}/")
    page.wait_for_selector("#preview-title", timeout=15_000)
    assert "1.2" in page.locator(".cards").inner_text()  # 6 h x 200 W = 1.2 kWh
    formats = page.locator("#files-title + table tbody th").all_inner_texts()
    assert formats == ["CSV", "PDF"]
    assert page.js_errors == []


def test_a_pending_report_page_follows_the_build(page, live_server, cast, signed_in):
    month = CalendarPeriod.containing("month", timezone.now()).previous
    from ecoreport.reports.services import report_build, report_request

    report, _ = report_request(organization=cast.org, period=month)
    page.goto(f"{live_server.url}/reports/{report.pk}/")
    assert page.locator("#report-progress").is_visible()
    report_build(report_id=report.pk)
    # Without a reload by the test: the page polls its status and reloads itself when issued.
    page.wait_for_selector("#preview-title", timeout=15_000)
    assert page.locator("#report-progress").count() == 0
    assert page.js_errors == []
