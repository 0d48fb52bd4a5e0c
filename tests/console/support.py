"""What the console's browser tests and its screenshot script share: Debian's Chromium
driven by Playwright, a real embedded host (``python -m local``) with real data, a real
dead letter and a real drift report.

Chromium is Debian's (``apt-get install -y chromium``, at ``/usr/bin/chromium``): a
browser download is impossible here, so Playwright is only ever given that executable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import REPO, RunningHost, start_host

FUNCTION_KEY = "console-function-key"
ADMIN_KEY = "console-admin-key"
KEYS_ENV = {"STOCKSTREAM_API_KEYS": FUNCTION_KEY, "STOCKSTREAM_ADMIN_KEYS": ADMIN_KEY}

SKU = "SKU-1001"
LOCATIONS = ("STORE-1", "STORE-2", "WH-1")
ORDER = "order-5001"
COUNTED = {"STORE-1": 19, "STORE-2": 7, "WH-1": 110}
"""What the drift report's count session found on the shelves."""

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_executable() -> str | None:
    """Debian's Chromium, if installed."""
    for candidate in (os.environ.get("STOCKSTREAM_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if chromium_executable() is None:
        return ("Debian's Chromium is not installed (apt-get install -y chromium; .ci/run "
                "installs it, and in CI these tests must run)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make venv installs it)"
    return None


def launch_browser(playwright: Any) -> Any:
    """Debian's Chromium, headless, with the flags this machine needs (no network but
    loopback: background networking would only fail, noisily)."""
    return playwright.chromium.launch(executable_path=chromium_executable(), headless=True,
                                      args=CHROMIUM_FLAGS)


@dataclass
class ConsoleData:
    """What the seeded host holds, as the API reports it."""

    positions: dict[str, dict[str, Any]]
    reservation_version: int  # the version of STORE-1's StockReserved event


def api_client(host: RunningHost, key: str | None = ADMIN_KEY) -> httpx.Client:
    client = host.client()
    if key:
        client.headers["x-functions-key"] = key
    return client


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it returns something truthy (the pipeline is another
    process: there is nothing to await but its effects)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed(host: RunningHost) -> ConsoleData:
    """One SKU at three locations: a receipt, an order's reservation, a damaged unit,
    safety stock, and (at the stores) the order's fulfilment; then wait until the
    availability projection has caught up with every stream."""
    reservation_version = 0
    with api_client(host) as client:
        for location, quantity in zip(LOCATIONS, (24, 10, 120), strict=True):
            base = f"/api/stock/{SKU}/{location}"
            steps: list[tuple[str, str, dict[str, Any] | None]] = [
                ("POST", f"{base}/receipts", {"quantity": quantity, "reference": "ASN-88121"}),
                ("PUT", f"{base}/reservations/{ORDER}", {"quantity": 2, "channel": "web"}),
                ("POST", f"{base}/adjustments", {"delta": -1, "reason": "damaged",
                                                 "note": "dropped in the aisle"}),
                ("PUT", f"{base}/policy", {"safety_stock": 1, "oversell_buffer": 0}),
            ]
            if location != "WH-1":
                steps.append(("POST", f"{base}/reservations/{ORDER}/fulfilment", None))
            for method, path, body in steps:
                answer = client.request(method, path, json=body)
                assert answer.status_code in (200, 201), answer.text
                if location == "STORE-1" and path.endswith(ORDER) and method == "PUT":
                    reservation_version = answer.json()["version"]
        positions = {loc: client.get(f"/api/stock/{SKU}/{loc}").json() for loc in LOCATIONS}

        def caught_up() -> bool:
            rows = client.get(f"/api/availability/{SKU}").json()["locations"]
            versions = {r["location"]: r["version"] for r in rows}
            return versions == {loc: positions[loc]["version"] for loc in LOCATIONS}

        wait_for(caught_up, "the availability projection to catch up")
    return ConsoleData(positions, reservation_version)


def dead_letter(host: RunningHost, subscription: str = "availability") -> None:
    """A real dead letter: a message whose data breaks its event's schema, published to
    the host's embedded broker, which the running availability consumer dead-letters
    (``SchemaValidationFailed``), as in tests/pipeline."""
    from adapters.embedded_broker import EmbeddedBroker
    from application.ports import OutgoingMessage
    from contracts.topology import TOPIC

    with api_client(host) as client:
        events = client.get(f"/api/stock/{SKU}/STORE-2/events").json()
        received = next(e for e in events if e["type"].startswith("Stockstream.StockReceived"))
        poison = {**received, "id": f"{SKU}|STORE-2:9999",
                  "data": {**received["data"], "quantity": "lots"}}
        broker = EmbeddedBroker(host.data_dir / "broker.db")
        try:
            broker.publish(TOPIC, [OutgoingMessage(
                message_id=f"poison-{time.monotonic_ns()}", session_id=poison["subject"],
                subject=poison["type"], body=json.dumps(poison).encode(),
                application_properties={"replayTarget": "all"})])
        finally:
            broker.close()

        def dead_lettered() -> bool:
            status = client.get("/api/ops/status").json()
            return any(s["name"] == subscription and s["dead_lettered"] > 0
                       for s in status["subscriptions"])

        wait_for(dead_lettered, "the poison message to be dead-lettered")


def drift_report(host: RunningHost, tmp: Path) -> str:
    """A real drift report: a count file reconciled by ``stockstream reconcile`` (the CLI
    writes JSON, CSV and charts into the data directory's reports folder). Returns the
    session id."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    counts = tmp / "counts.csv"
    counts.write_text("sku,location,counted,counted_at,count_id\n" + "".join(
        f"{SKU},{location},{counted},{now},WEEK49-{location}\n"
        for location, counted in COUNTED.items()), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKSTREAM_")}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--data", str(host.data_dir), "reconcile", str(counts),
         "--no-hold"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    session = done.stdout.split()[1].rstrip(":")
    return session


def start_console_host(tmp: Path, *, keys: bool = True) -> RunningHost:
    return start_host(tmp, env=KEYS_ENV if keys else None)
