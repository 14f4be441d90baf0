"""Screenshot of a dashboard page for the README, from a running demo (``make demo``).

    .venv/bin/python scripts/screenshot.py                      # the first team's page
    .venv/bin/python scripts/screenshot.py --path /savings/ --out docs/img/savings.png

Signs in as demo/demo with Debian's chromium (Playwright), waits until every chart on the page
is drawn, and writes a full-page PNG.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys

from playwright.sync_api import sync_playwright


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--path", help="page to capture (default: the first team in the Teams menu)")
    p.add_argument("--out", default="docs/img/team-dashboard.png")
    p.add_argument("--width", type=int, default=1280)
    args = p.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{args.url}/accounts/login/")
        page.fill("#id_username", "demo")
        page.fill("#id_password", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/$"))
        path = args.path or page.locator("a[href^='/teams/']").first.get_attribute("href")
        page.goto(f"{args.url}{path}")
        count = page.locator("[data-figure]").count()
        # A locator wait, not wait_for_function: the app's CSP refuses evaluated strings.
        for i in range(count):
            page.locator("[data-figure]").nth(i).and_(page.locator("[data-drawn=true]")).wait_for(
                timeout=30_000
            )
        page.locator("#live[data-live-at]").or_(page.locator("h1")).first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    if errors:
        print("JavaScript errors:", *errors, sep="\n", file=sys.stderr)
        return 1
    print(f"{path}: {count} charts drawn, written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
