"""The operations console in Debian's Chromium (Playwright), against the real embedded
host with real data: the tasks an operator comes for, by mouse, by keyboard alone and
at phone width.

One host (with function and admin keys, pipeline worker included) for the module, one
browser for the session, a fresh tab (and so a fresh session storage) per test.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.console.support import (
    COUNTED,
    FUNCTION_KEY,
    LOCATIONS,
    ORDER,
    SKU,
    ConsoleData,
    api_client,
    dead_letter,
    drift_report,
)
from tests.e2e.conftest import RunningHost

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or, in CI, fail) with the reason
    expect = None

CONSOLE = "/api/console/"


def settled(page: Any) -> None:
    """Wait until the view has its data (no region is still loading)."""
    expect(page.locator("main h1")).to_have_count(1)
    expect(page.locator("main [aria-busy]")).to_have_count(0)


def cell(row: Any, label: str) -> Any:
    return row.locator(f'[data-label="{label}"]')


def figure(page: Any, term: str, within: Any = None) -> Any:
    """The value of a figure (``dl.figures``) by its exact term (``within`` a part)."""
    return (within or page).locator("dl.figures > div").filter(
        has=page.locator("dt", has_text=re.compile(f"^{re.escape(term)}$"))).locator("dd")


def tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the focused element matches ``selector`` (fails after ``limit``)."""
    for _ in range(limit):
        if page.evaluate("s => !!document.activeElement?.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab")


def assert_focus_is_visible(page: Any) -> None:
    style = page.evaluate("""() => {
        const s = getComputedStyle(document.activeElement);
        return {style: s.outlineStyle, width: parseFloat(s.outlineWidth)};
    }""")
    assert style["style"] != "none" and style["width"] >= 2, style


# ------------------------------------------------------------------- stock


def test_looking_up_a_sku_shows_every_location_with_the_stream_beside_the_projection(
        page: Any, data: ConsoleData) -> None:
    page.goto("/")  # the embedded host sends / to the console
    expect(page).to_have_url(re.compile(r"/api/console/$"))
    page.get_by_label("SKU", exact=True).fill(SKU)
    page.get_by_role("button", name="Look up").click()

    expect(page).to_have_url(re.compile(rf"#/stock/{SKU}$"))
    settled(page)
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(len(LOCATIONS))
    for location in LOCATIONS:
        position = data.positions[location]
        row = rows.filter(has=page.get_by_role("link", name=f"{location}: history"))
        expect(cell(row, "On hand")).to_have_text(str(position["on_hand"]))
        expect(cell(row, "Reserved")).to_have_text(str(position["reserved"]))
        expect(cell(row, "Available (stream)")).to_have_text(str(position["available"]))
        expect(cell(row, "Available (projection)")).to_have_text(str(position["available"]))
        expect(cell(row, "Version stream / projection")).to_have_text(
            f"{position['version']} / {position['version']}")
        expect(cell(row, "Projection")).to_have_text("in step")
    total = sum(p["available"] for p in data.positions.values())
    expect(page.locator(".summary")).to_contain_text(f"{total} available")


def test_the_history_finds_the_event_that_changed_availability(
        page: Any, data: ConsoleData) -> None:
    page.goto(f"{CONSOLE}#/stock/{SKU}")
    page.get_by_role("link", name="STORE-1: history").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"{SKU} at STORE-1")
    settled(page)
    expect(page.locator(".chart canvas").first).to_be_visible()  # the timeline is drawn
    expect(page.locator(".chart")).to_contain_text("Available")  # with its legend
    reserved = page.locator(f"#event-{data.reservation_version}")
    fulfilled = page.locator("tbody tr").filter(
        has=page.locator('[data-label="Event"]', has_text="Reservation fulfilled"))
    expect(fulfilled).to_be_visible()

    page.get_by_label("Show only the events that changed availability").check()
    expect(fulfilled).to_be_hidden()  # fulfilment moves on hand and reserved, not available
    expect(reserved).to_be_visible()
    expect(cell(reserved, "Event")).to_have_text("Reserved")
    expect(cell(reserved, "Order or count")).to_have_text(f"order {ORDER}")
    expect(cell(reserved, "Change in available")).to_have_text("-2")
    expect(cell(reserved, "Details")).to_contain_text("channel web")
    expect(cell(reserved, "Time").locator("time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    adjusted = page.locator("tbody tr").filter(
        has=page.locator('[data-label="Event"]', has_text="Adjusted"))
    expect(cell(adjusted, "Reason")).to_have_text("damaged")


def test_a_deep_link_opens_the_view_it_names(page: Any, data: ConsoleData) -> None:
    page.goto(f"{CONSOLE}#/stock/{SKU}/WH-1")

    expect(page.get_by_role("heading", level=1)).to_have_text(f"{SKU} at WH-1")
    settled(page)
    position = data.positions["WH-1"]
    expect(figure(page, "On hand")).to_have_text(str(position["on_hand"]))
    expect(figure(page, "Reserved")).to_have_text(str(position["reserved"]))
    expect(figure(page, "Available")).to_have_text(str(position["available"]))
    expect(figure(page, "Version")).to_have_text(str(position["version"]))
    expect(page.get_by_role("table", name=re.compile("Open reservations"))).to_contain_text(ORDER)
    stock = page.get_by_role("link", name="Stock", exact=True)
    expect(stock).to_have_attribute("aria-current", "page")


def test_an_api_error_is_shown_in_words(page: Any, console_host: RunningHost,
                                        data: ConsoleData) -> None:
    with api_client(console_host) as client:
        problem = client.get("/api/availability/not a sku").json()
    assert problem["status"] == 422

    page.goto(f"{CONSOLE}#/stock/not%20a%20sku")

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(problem["title"])
    expect(alert).to_contain_text(problem["detail"])


def test_a_key_that_is_not_enough_is_explained_and_another_can_be_entered(
        keyless_page: Any, console_host: RunningHost) -> None:
    page = keyless_page
    page.goto(f"{CONSOLE}#/pipeline")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Unauthorized")
    expect(alert).to_contain_text("a valid x-functions-key header is required")
    alert.get_by_label("API key").fill(FUNCTION_KEY)
    alert.get_by_role("button", name="Use this key").click()

    expect(page.get_by_role("heading", name="Subscriptions")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('stockstream.key')") == FUNCTION_KEY


# ---------------------------------------------------------------- pipeline


def test_a_dead_letter_is_replayed_only_after_confirming(
        page: Any, console_host: RunningHost, data: ConsoleData) -> None:
    dead_letter(console_host)
    replays = "POST /api/ops/deadletters/availability/replay"
    page.goto(f"{CONSOLE}#/pipeline")
    settled(page)
    expect(page.locator(".health")).to_contain_text("dead-lettered")
    replay = page.get_by_role("button", name="Replay the dead letters of availability")
    expect(replay).to_be_enabled()

    logged = len(console_host.log())
    replay.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("to the subscription availability only")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert replays not in console_host.log()[logged:]  # cancelled: nothing sent

    # The host is the module's: a test run before this one (in random order) may have
    # left a dead letter of its own, which the replay sends too.
    with api_client(console_host) as client:
        waiting = next(s["dead_lettered"] for s in client.get("/api/ops/status").json()[
            "subscriptions"] if s["name"] == "availability")
    replay.click()
    dialog.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-outcome")).to_have_text(
        "Replayed 1 message to availability." if waiting == 1
        else f"Replayed {waiting} messages to availability.")
    console_host.wait_for_log(f"{replays} 200")


def test_a_function_key_cannot_replay_and_the_console_says_why(
        keyless_page: Any, console_host: RunningHost, data: ConsoleData) -> None:
    page = keyless_page
    page.goto(CONSOLE)
    page.evaluate(f"sessionStorage.setItem('stockstream.key', '{FUNCTION_KEY}')")
    dead_letter(console_host)
    page.goto(f"{CONSOLE}#/pipeline")
    settled(page)
    page.get_by_role("button", name="Replay the dead letters of availability").click()
    page.get_by_role("dialog").get_by_role("button", name="Replay").click()

    alert = page.locator("#replay-outcome").get_by_role("alert")
    expect(alert).to_contain_text("needs an admin-level key")


def test_figures_the_host_cannot_measure_read_not_measured_never_healthy(
        page: Any, console_host: RunningHost) -> None:
    """What an Azure deployment answers while a Service Bus subscription has a backlog
    (its lag cannot be read) and no projection ran on the answering instance."""
    status = {
        "outbox": {"depth": None, "oldest_age_seconds": None},
        "subscriptions": [{"name": "availability", "active": 0, "dead_lettered": 0,
                           "lag_seconds": None}],
        "projections": [{"name": "availability", "position": 12, "lag_seconds": None}],
        "unmeasured": [
            {"field": "outbox.depth", "reason": "no view of the outbox"},
            {"field": "subscriptions[availability].lag_seconds",
             "reason": "the broker does not report it"},
            {"field": "projections[availability].lag_seconds", "reason": "none applied"}],
    }
    page.route("**/api/ops/status", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(status)))
    page.goto(f"{CONSOLE}#/pipeline")
    settled(page)

    health = page.locator(".health")
    expect(health).to_contain_text("3 figures are not measured")
    expect(health).not_to_contain_text("Healthy")
    expect(page.get_by_text("not measured", exact=True)).to_have_count(3)
    table = page.get_by_role("table", name="Figures this host cannot measure")
    expect(table).to_contain_text("subscriptions[availability].lag_seconds")
    expect(table).to_contain_text("the broker does not report it")


# ------------------------------------------------------------------- drift


@pytest.fixture(scope="module")
def report(console_host: RunningHost, data: ConsoleData,
           tmp_path_factory: pytest.TempPathFactory) -> str:
    return drift_report(console_host, tmp_path_factory.mktemp("counts"))


def test_the_latest_drift_report_is_shown_with_its_charts(
        page: Any, data: ConsoleData, report: str) -> None:
    drifts = {loc: COUNTED[loc] - data.positions[loc]["on_hand"] for loc in LOCATIONS}
    page.goto(f"{CONSOLE}#/drift")
    settled(page)

    section = page.locator("section.report").first
    expect(section.get_by_role("heading", level=2)).to_have_text(f"Session {report}")
    expect(figure(page, "Absolute drift", section)).to_have_text(
        str(sum(abs(d) for d in drifts.values())))
    largest = section.locator("tbody tr").first
    worst = max(LOCATIONS, key=lambda loc: abs(drifts[loc]))
    expect(cell(largest, "SKU-location")).to_have_text(f"{SKU} at {worst}")
    expect(cell(largest, "Drift")).to_have_text(f"{drifts[worst]:+d}")
    images = page.locator("figure.report-chart img")
    expect(images).to_have_count(2)  # drift over time, and this session's distribution
    for index in range(2):
        expect(images.nth(index)).to_have_attribute("src", re.compile("^blob:"))
        assert images.nth(index).evaluate("img => img.decode().then(() => img.naturalWidth)") > 0


# ---------------------------------------------------------------- keyboard


def test_the_main_task_can_be_done_by_keyboard_alone(
        keyless_page: Any, data: ConsoleData) -> None:
    page = keyless_page
    page.goto(CONSOLE)
    expect(page.get_by_label("SKU", exact=True)).to_be_focused()
    page.keyboard.type(SKU)
    page.keyboard.press("Enter")  # submits the form

    # Keys are configured and this tab has none: the problem says so, with a key form.
    expect(page.get_by_role("alert")).to_contain_text("This host needs a key")
    tab_to(page, ".problem input[name=key]")
    page.keyboard.type(FUNCTION_KEY)
    page.keyboard.press("Enter")

    expect(page.locator("table tbody tr")).to_have_count(len(LOCATIONS))
    tab_to(page, 'a[aria-label="STORE-1: history"]')
    assert_focus_is_visible(page)
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_have_text(f"{SKU} at STORE-1")
    settled(page)
    tab_to(page, "#only-changes")
    assert_focus_is_visible(page)
    page.keyboard.press("Space")
    expect(page.locator(f"#event-{data.reservation_version}")).to_be_visible()
    expect(page.locator("tbody tr").filter(has_text="Reservation fulfilled")).to_be_hidden()


# ------------------------------------------------------------------- phone


def test_every_page_reads_at_375_pixels(phone: Any, report: str) -> None:
    for hash_ in ("#/", f"#/stock/{SKU}", f"#/stock/{SKU}/STORE-1", "#/pipeline", "#/drift"):
        phone.goto(f"{CONSOLE}{hash_}")
        settled(phone)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{hash_} is {width} px wide: it scrolls sideways"
        tables = phone.locator("table.cards")
        for index in range(tables.count()):
            # Tables become cards: the header row is hidden, each cell says what it is.
            first = tables.nth(index).locator("tbody td").first
            label = first.evaluate("td => getComputedStyle(td, '::before').content")
            assert label.strip('"') == first.get_attribute("data-label"), hash_

