"""Orders over real sockets against the embedded host (``python -m local``): every answer
of docs/orders.md, and carts racing for scarce stock."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.clock import ManualClock
from application.commands import StockCommands
from application.processes import STALL_AFTER
from tests.e2e.conftest import RunningHost, start_host
from tests.orders.conftest import open_world
from tests.orders.test_order_recovery import FAILING, Crash, CrashingCommands, stock_up


def receive(c: httpx.Client, sku: str, location: str, quantity: int) -> None:
    answer = c.post(f"/api/stock/{sku}/{location}/receipts", json={"quantity": quantity})
    assert answer.status_code == 200, answer.text


def events(c: httpx.Client, sku: str, location: str) -> list[Any]:
    answer = c.get(f"/api/stock/{sku}/{location}/events")
    assert answer.status_code == 200
    return list(answer.json())


def position(c: httpx.Client, sku: str, location: str) -> dict[str, Any]:
    answer = c.get(f"/api/stock/{sku}/{location}")
    assert answer.status_code == 200
    return dict(answer.json())


def code(answer: httpx.Response) -> str:
    assert answer.headers["content-type"].startswith("application/problem+json")
    return str(answer.json()["type"]).rsplit(":", 1)[-1]


def cart(*lines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"channel": "web", "lines": list(lines), **extra}


def ln(sku: str, where: str, quantity: int, *, group: bool = False) -> dict[str, Any]:
    return {"sku": sku, "location_group" if group else "location": where,
            "quantity": quantity}


def test_an_order_across_two_sku_locations_and_every_answer_of_the_contract(
        host: RunningHost):
    with host.client() as c:
        receive(c, "E2E-A", "S1", 5)
        receive(c, "E2E-B", "S2", 5)
        url = "/api/orders/E2E-1/reservation"
        body = cart(ln("E2E-A", "S1", 2), ln("E2E-B", "S2", 3))
        first = c.put(url, json=body)
        assert first.status_code == 201, first.text
        assert first.headers["location"] == url
        assert first.json()["status"] == "held"
        assert [(x["location"], x["held"]) for x in first.json()["lines"]] == [
            ("S1", 2), ("S2", 3)]
        before = (events(c, "E2E-A", "S1"), events(c, "E2E-B", "S2"))
        assert "StockReserved" in before[0][-1]["type"]

        again = c.put(url, json=body)  # the same request again: 200, no new events
        assert (again.status_code, again.json()) == (200, first.json())
        assert (events(c, "E2E-A", "S1"), events(c, "E2E-B", "S2")) == before
        assert c.get(url).json() == first.json()

        conflict = c.put(url, json=cart(ln("E2E-A", "S1", 1)))
        assert (conflict.status_code, code(conflict)) == (409, "order-conflict")

        shipped = c.post("/api/orders/E2E-1/fulfilment")
        assert (shipped.status_code, shipped.json()["status"]) == (200, "fulfilled")
        after = (events(c, "E2E-A", "S1"), events(c, "E2E-B", "S2"))
        assert c.post("/api/orders/E2E-1/fulfilment").status_code == 200  # idempotent
        assert (events(c, "E2E-A", "S1"), events(c, "E2E-B", "S2")) == after
        closed = c.delete(url)
        assert (closed.status_code, code(closed)) == (409, "order-closed")
        assert position(c, "E2E-A", "S1")["on_hand"] == 3

        unknown = c.get("/api/orders/NEVER/reservation")
        assert (unknown.status_code, code(unknown)) == (404, "unknown-order")
        assert c.delete("/api/orders/NEVER/reservation").status_code == 404
        for bad in (cart(ln("E2E-A", "S1", 0)),
                    cart(*[ln(f"E2E-{n}", "S1", 1) for n in range(101)]),
                    cart({"sku": "E2E-A", "quantity": 1}),
                    cart({"sku": "E2E-A", "location": "S1", "location_group": "G",
                          "quantity": 1}),
                    cart(ln("E2E-A", "NO-GROUP", 1, group=True)),
                    cart(ln("bad sku", "S1", 1))):
            answer = c.put("/api/orders/E2E-BAD/reservation", json=bad)
            assert answer.status_code == 422, answer.text
        assert c.get("/api/orders/E2E-BAD/reservation").status_code == 404
        assert c.get("/api/orders/bad%20id/reservation").status_code == 422


def test_all_or_nothing_leaves_nothing_held_partial_holds_what_it_can(host: RunningHost):
    with host.client() as c:
        receive(c, "E2E-C", "S1", 4)
        receive(c, "E2E-D", "S1", 1)
        short = c.put("/api/orders/E2E-2/reservation",
                      json=cart(ln("E2E-C", "S1", 3), ln("E2E-D", "S1", 2)))
        assert (short.status_code, code(short)) == (409, "insufficient-stock")
        assert short.json()["lines"] == [
            {"sku": "E2E-D", "location": "S1", "requested": 2, "available": 1}]
        assert position(c, "E2E-C", "S1")["reserved"] == 0
        assert position(c, "E2E-D", "S1")["reserved"] == 0
        assert c.get("/api/orders/E2E-2/reservation").json()["status"] == "failed"

        partial = c.put("/api/orders/E2E-3/reservation",
                        json=cart(ln("E2E-C", "S1", 3), ln("E2E-D", "S1", 2), mode="partial"))
        assert partial.status_code == 201, partial.text
        assert partial.json()["status"] == "partially_held"
        assert [x["held"] for x in partial.json()["lines"]] == [3, 0]

        released = c.delete("/api/orders/E2E-3/reservation")
        assert (released.status_code, released.json()["status"]) == (200, "released")
        after = events(c, "E2E-C", "S1")
        assert c.delete("/api/orders/E2E-3/reservation").status_code == 200  # idempotent
        assert events(c, "E2E-C", "S1") == after
        assert position(c, "E2E-C", "S1")["reserved"] == 0
        late = c.post("/api/orders/E2E-3/fulfilment")
        assert (late.status_code, code(late)) == (409, "order-closed")


def test_location_groups_source_by_priority_and_most_available(host: RunningHost):
    with host.client() as c:
        receive(c, "E2E-G", "G1", 1)
        receive(c, "E2E-G", "G2", 8)
        receive(c, "E2E-G", "G3", 4)
        prio = c.put("/api/location-groups/E2E-PRIO",
                     json={"locations": ["G1", "G3", "G2"], "strategy": "priority"})
        assert prio.status_code == 200, prio.text
        most = c.put("/api/location-groups/E2E-MOST",
                     json={"locations": ["G1", "G3", "G2"], "strategy": "most_available"})
        assert c.get("/api/location-groups/E2E-MOST").json() == most.json()
        assert c.get("/api/location-groups/E2E-NONE").status_code == 404
        bad = c.put("/api/location-groups/E2E-BAD", json={"locations": [], "strategy": "x"})
        assert bad.status_code == 422

        by_priority = c.put("/api/orders/E2E-4/reservation",
                            json=cart(ln("E2E-G", "E2E-PRIO", 2, group=True)))
        assert by_priority.status_code == 201, by_priority.text
        assert by_priority.json()["lines"][0]["location"] == "G3"
        by_most = c.put("/api/orders/E2E-5/reservation",
                        json=cart(ln("E2E-G", "E2E-MOST", 2, group=True)))
        assert by_most.json()["lines"][0]["location"] == "G2"

        version = position(c, "E2E-G", "G2")["version"]
        deadline = time.monotonic() + 30
        while True:
            answer = c.get("/api/availability/E2E-G", params={"location_group": "E2E-PRIO"})
            rows = {r["location"]: r for r in answer.json()["locations"]}
            if rows.get("G2", {}).get("version", 0) >= version:
                break
            assert time.monotonic() < deadline, "the projection did not catch up"
            time.sleep(0.05)
        assert set(rows) == {"G1", "G3", "G2"}
        assert answer.json()["on_hand"] == 13
        east = c.put("/api/location-groups/E2E-TWO",
                     json={"locations": ["G1", "G3"], "strategy": "priority"})
        assert east.status_code == 200
        two = c.get("/api/availability/E2E-G", params={"location_group": "E2E-TWO"}).json()
        assert ({r["location"] for r in two["locations"]}, two["on_hand"]) == ({"G1", "G3"}, 5)


CLIENTS = 32
SKUS = [f"RACE-{n}" for n in range(4)]
LOCATIONS = ["R1", "R2"]
UNITS = 4


def test_racing_carts_never_oversell_and_all_or_nothing_holds_all_or_none(host: RunningHost):
    pairs = [(s, loc) for s in SKUS for loc in LOCATIONS]
    with host.client() as c:
        for sku, location in pairs:
            receive(c, sku, location, UNITS)
        c.put("/api/location-groups/RACE-GROUP",
              json={"locations": LOCATIONS, "strategy": "most_available"})
    start = threading.Barrier(CLIENTS + 1)
    done = threading.Event()
    oversold: list[dict[str, Any]] = []
    observations = Counter[str]()

    def observe() -> None:
        with host.client() as c:
            start.wait()
            while not done.is_set():
                for sku, location in pairs:
                    p = position(c, sku, location)
                    observations["reads"] += 1
                    held = sum(r["quantity"] for r in p["reservations"])
                    if held > p["on_hand"] or p["reserved"] > p["on_hand"]:
                        oversold.append(p)

    def shop(n: int) -> list[tuple[str, int, dict[str, Any]]]:
        rng = random.Random(n)
        placed = []
        with host.client() as c:
            c.get("/api/openapi.json")  # connect before the race starts
            start.wait()
            for k in range(3):
                lines = []
                for sku in rng.sample(SKUS, rng.randint(1, 3)):
                    if rng.random() < 0.3:
                        lines.append(ln(sku, "RACE-GROUP", rng.randint(1, 2), group=True))
                    else:
                        lines.append(ln(sku, rng.choice(LOCATIONS), rng.randint(1, 2)))
                order_id = f"race-{n}-{k}"
                answer = c.put(f"/api/orders/{order_id}/reservation", json=cart(*lines))
                assert answer.status_code in (201, 409), answer.text
                placed.append((order_id, answer.status_code, answer.json()))
                if answer.status_code == 201 and rng.random() < 0.3:
                    assert c.delete(f"/api/orders/{order_id}/reservation").status_code == 200
                elif answer.status_code == 201 and rng.random() < 0.3:
                    assert c.post(f"/api/orders/{order_id}/fulfilment").status_code == 200
        return placed

    observer = threading.Thread(target=observe)
    observer.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for rs in pool.map(shop, range(CLIENTS)) for r in rs]
    done.set()
    observer.join()

    assert not oversold, oversold[:3]
    assert observations["reads"] > 0
    statuses = Counter(status for _, status, _ in results)
    assert statuses[201] > 0 and statuses[409] > 0, statuses
    with host.client() as c:
        holders: Counter[str] = Counter()
        for sku, location in pairs:
            p = position(c, sku, location)
            assert p["reserved"] <= p["on_hand"]
            assert sum(r["quantity"] for r in p["reservations"]) == p["reserved"]
            for r in p["reservations"]:
                holders[r["order_id"]] += r["quantity"]
        for order_id, status, body in results:
            order = c.get(f"/api/orders/{order_id}/reservation").json()
            if status == 409:
                assert code_of(body) == "insufficient-stock"
                assert order["status"] == "failed"
                assert holders[order_id] == 0, order_id  # none of a failed order's lines
            else:
                assert body["status"] == "held"
                assert all(x["held"] == x["quantity"] for x in body["lines"])
                if order["status"] == "held":  # every line still held, none released
                    assert holders[order_id] == sum(x["quantity"] for x in body["lines"])
                else:
                    assert order["status"] in ("released", "fulfilled")
                    assert holders[order_id] == 0


def code_of(body: dict[str, Any]) -> str:
    return str(body["type"]).rsplit(":", 1)[-1]


def test_an_order_a_crash_left_part_way_is_compensated_by_the_workers_sweep(
        tmp_path: Path):
    """A placement killed after its first hold (its stream says "placing"), then the host
    started with a 1 s sweep: within STALL_AFTER plus an interval the hold is released
    and the order failed, without any request for it."""
    data = tmp_path / "data"
    data.mkdir()
    world = open_world(data)
    world.clock = ManualClock(datetime.now(UTC))
    world.commands = StockCommands(world.stock, world.clock)
    stock_up(world)
    crashing = CrashingCommands(world, "reserve", 2, "before")
    with pytest.raises(Crash):
        world.orders(crashing).place("CRASHED", "web", FAILING)
    assert world.reserved("A", "S1") == {"CRASHED": 2}
    world.stock.close()
    world.processes.close()

    host = start_host(tmp_path, env={"STOCKSTREAM_ORDER_SWEEP_INTERVAL": "1"})
    try:
        with host.client() as c:
            deadline = time.monotonic() + STALL_AFTER.total_seconds() + 30
            while position(c, "A", "S1")["reserved"]:
                assert time.monotonic() < deadline, host.log()
                time.sleep(0.2)
            order = c.get("/api/orders/CRASHED/reservation").json()
            assert order["status"] == "failed"
            # The worker logs once its sweep returns, a moment after the order's last save.
            while "order sweep drove 1 orders" not in host.log():
                assert time.monotonic() < deadline, host.log()
                time.sleep(0.05)
            assert all(position(c, sku, "S1")["reserved"] == 0 for sku in ("A", "B", "C"))
    finally:
        assert host.stop() == 0, host.log()
