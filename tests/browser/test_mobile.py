"""On a 390 px phone screen the navigation fits: every link is on screen and reachable, and no
page is wider than the screen."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]

PAGES = ["/", "/fleet/", "/teams/nlp/", "/reports/", "/targets/", "/savings/", "/carbon/"]


def test_the_navigation_fits_a_390_px_screen(signed_in, live_server):
    page = signed_in
    page.set_viewport_size({"width": 390, "height": 844})
    for path in PAGES:
        page.goto(f"{live_server.url}{path}")
        links = page.locator("nav[aria-label=Main] > ul > li > a, nav summary")
        assert links.count() >= 6, path
        for i in range(links.count()):
            box = links.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
                path,
                links.nth(i).inner_text(),
                box,
            )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    # The teams menu opens within the screen too.
    page.goto(f"{live_server.url}/")
    page.click("nav summary")
    menu = page.locator("details.menu ul").bounding_box()
    assert menu is not None and menu["x"] + menu["width"] <= 390
    assert page.js_errors == []
