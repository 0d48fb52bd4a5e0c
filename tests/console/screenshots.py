"""Screenshots of every console page for docs/console.md, taken as the browser tests run
it: the real embedded host, the same seeded data, a real dead letter and drift report,
Debian's Chromium.

    make console-screenshots        # or: python -m tests.console.screenshots [DIR]

Writes ``console-*.png`` into DIR (default ``docs/images``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.console.support import (
    SKU,
    dead_letter,
    drift_report,
    launch_browser,
    seed,
    start_console_host,
    why_no_browser,
)
from tests.e2e.conftest import REPO

PAGES = [
    # file name, hash route, viewport width, full page
    ("console-lookup.png", "#/", 1200, False),
    ("console-stock.png", f"#/stock/{SKU}", 1200, False),
    ("console-history.png", f"#/stock/{SKU}/STORE-1", 1200, True),
    ("console-pipeline.png", "#/pipeline", 1200, False),
    ("console-drift.png", "#/drift", 1200, True),
    ("console-error.png", "#/stock/not%20a%20sku", 1200, False),
    ("console-stock-375.png", f"#/stock/{SKU}", 375, True),
    ("console-history-375.png", f"#/stock/{SKU}/STORE-1", 375, False),
]


def settle(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("main h1")).to_have_count(1)
    expect(page.locator("main [aria-busy]")).to_have_count(0)  # the view has its data
    page.wait_for_load_state("networkidle")
    page.evaluate("document.activeElement && document.activeElement.blur()")


def take(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        host = start_console_host(Path(tmp), keys=False)  # as `make serve` starts
        try:
            seed(host)
            drift_report(host, Path(tmp))
            dead_letter(host)
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                for name, route, width, full in PAGES:
                    context = browser.new_context(viewport={"width": width, "height": 800},
                                                  base_url=host.url)
                    page = context.new_page()
                    page.goto(f"/api/console/{route}")
                    settle(page)
                    page.screenshot(path=str(out / name), full_page=full)
                    written.append(out / name)
                    if name == "console-pipeline.png":  # and the confirmation it asks for
                        page.get_by_role("button",
                                         name="Replay the dead letters of availability").click()
                        page.wait_for_selector("dialog[open]")
                        page.screenshot(path=str(out / "console-replay-confirm.png"))
                        written.append(out / "console-replay-confirm.png")
                    context.close()
                browser.close()
        finally:
            host.stop()
    return written


def main(argv: list[str]) -> int:
    reason = why_no_browser()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    out = Path(argv[0]) if argv else REPO / "docs" / "images"
    for path in take(out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
