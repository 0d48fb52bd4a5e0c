"""A flash sale over HTTP: more buyers than stock, all at once, on one SKU-location."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.conftest import RunningHost

CLIENTS = 64
STOCK = 40


def test_64_clients_racing_for_40_units_get_exactly_40_reservations(host: RunningHost):
    base = "/api/stock/HOT-SKU/STORE-RACE"
    with host.client() as c:
        assert c.post(f"{base}/receipts", json={"quantity": STOCK}).status_code == 200
    start = threading.Barrier(CLIENTS)

    def buy(n: int) -> tuple[int, str]:
        with host.client() as c:  # one connection per client, as separate tills would
            c.get("/api/openapi.json")  # connect before the race starts
            start.wait()
            answer = c.put(f"{base}/reservations/order-{n}",
                           json={"quantity": 1, "channel": "web"})
            code = answer.json().get("type", "") if answer.status_code >= 400 else ""
            return answer.status_code, str(code).rsplit(":", 1)[-1]

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(buy, range(CLIENTS)))

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: STOCK, 409: CLIENTS - STOCK}, statuses
    assert {code for status, code in results if status == 409} == {"insufficient-stock"}
    with host.client() as c:
        position = c.get(base).json()
        assert (position["reserved"], position["available"]) == (STOCK, 0)
        assert len(position["reservations"]) == STOCK
        _await_projection(c, "HOT-SKU", "STORE-RACE", position["version"])
        availability = c.get("/api/availability/HOT-SKU").json()
        row = next(r for r in availability["locations"] if r["location"] == "STORE-RACE")
        assert (row["reserved"], row["available"]) == (STOCK, 0)


def _await_projection(c: httpx.Client, sku: str, location: str, version: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = c.get(f"/api/availability/{sku}")
        if answer.status_code == 200 and any(
                r["location"] == location and r["version"] >= version
                for r in answer.json()["locations"]):
            return
        time.sleep(0.05)
    raise AssertionError("the availability projection did not catch up")
