"""Fixtures of the console's browser tests: one Chromium per session, one embedded host
with real data per module, a fresh browser context (so a fresh session storage) per test.

Without Debian's Chromium the browser tests are skipped, with the reason, except in CI
(``CI`` set), where they must run: there a missing browser fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.support import (
    ADMIN_KEY,
    ConsoleData,
    launch_browser,
    seed,
    start_console_host,
    why_no_browser,
)
from tests.e2e.conftest import RunningHost


def _require_browser() -> None:
    reason = why_no_browser()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        running = launch_browser(playwright)
        yield running
        running.close()


@pytest.fixture(scope="module")
def console_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """The real embedded host (``python -m local``, pipeline worker included) with keys
    of both levels, as a shared deployment would run."""
    _require_browser()
    running = start_console_host(tmp_path_factory.mktemp("console"))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def data(console_host: RunningHost) -> ConsoleData:
    return seed(console_host)


class PageErrors(list[str]):
    """Uncaught script errors of a page: a test fails on any."""


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


def new_page(browser: Any, host: RunningHost, errors: PageErrors, *, key: str | None,
             width: int = 1280, height: int = 900) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height},
                                  base_url=host.url)
    if key:  # as if the operator had entered it once in this tab
        context.add_init_script(f"sessionStorage.setItem('stockstream.key', {key!r});")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


@pytest.fixture
def page(browser: Any, console_host: RunningHost, data: ConsoleData,
         page_errors: PageErrors) -> Iterator[Any]:
    """A page whose tab already holds the admin key."""
    opened = new_page(browser, console_host, page_errors, key=ADMIN_KEY)
    yield opened
    opened.context.close()
    assert not page_errors, page_errors


@pytest.fixture
def keyless_page(browser: Any, console_host: RunningHost, data: ConsoleData,
                 page_errors: PageErrors) -> Iterator[Any]:
    """A page whose tab holds no key yet (the operator has to enter it)."""
    opened = new_page(browser, console_host, page_errors, key=None)
    yield opened
    opened.context.close()
    assert not page_errors, page_errors


@pytest.fixture
def phone(browser: Any, console_host: RunningHost, data: ConsoleData,
          page_errors: PageErrors) -> Iterator[Any]:
    """A 375 px wide page (a phone), holding the admin key."""
    opened = new_page(browser, console_host, page_errors, key=ADMIN_KEY, width=375,
                      height=812)
    yield opened
    opened.context.close()
    assert not page_errors, page_errors

