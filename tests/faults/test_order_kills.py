"""The embedded host SIGKILLed at random moments of order placement, over real sockets.

Clients place carts of 2–5 lines over 10 scarce SKU-locations (some lines on the same
SKU, some from a location group) and release some of what they got, while the host
(``python -m local``, its pipeline worker included) is killed outright after a random
delay and started again on the same data directory, ``STOCKSTREAM_FAULT_KILLS`` times
(50 in ``make faults``, 4 in ``make test``). A kill interrupts placements at whatever
step they were: the order stream then says where each was. Nobody asks for those orders
again; after the last restart, within the stall time plus one sweep interval (1 s here):

* no order is left in progress: each is at rest (held, failed, released, ...);
* no hold belongs to an order that is not holding: each stream's open reservations are
  exactly the holds of the orders that are held;
* zero oversell: no stored event of any stream ever recorded more reserved than on hand,
  and a fold of the stored events gives each stream's position.

Which orders a kill interrupted (found "placing" on their stream before the restart) is
counted, so a run whose kills never landed inside a placement fails rather than passes.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.process_streams import SQLiteProcessStore
from application.processes import STALL_AFTER
from domain.order import AT_REST, HELD, HOLD_HELD, PARTIALLY_HELD, PLACING, Order
from tests.e2e.conftest import RunningHost, start_host
from tests.e2e.test_orders import cart, ln, receive
from tests.faults.test_flash_sale_races import fold

KILLS = int(os.environ.get("STOCKSTREAM_FAULT_KILLS", "4"))
CLIENTS = 8
LOCATIONS = ("K1", "K2")
SKUS = [f"KILL-{n}" for n in range(5)]
PAIRS = [(s, loc) for s in SKUS for loc in LOCATIONS]
UNITS = 12
"""Scarce: early carts are held (kills land among holds), later ones short (kills land
among compensations too)."""
GROUP = "KILL-GROUP"
SWEEP_SECONDS = 1
HOST_ENV = {"STOCKSTREAM_ORDER_SWEEP_INTERVAL": str(SWEEP_SECONDS)}


class Placing:
    """Clients placing (and releasing) carts until the host goes away under them."""

    def __init__(self, host: RunningHost, kill: int, rng: random.Random) -> None:
        self.host, self.kill = host, kill
        self.seeds = [rng.randrange(1 << 30) for _ in range(CLIENTS)]
        self.attempted: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.threads = [threading.Thread(target=self._shop, args=(n,)) for n in range(CLIENTS)]

    def _shop(self, client: int) -> None:
        rng = random.Random(self.seeds[client])
        with self.host.client() as c:
            for n in range(10_000):
                order_id = f"k{self.kill}-{client}-{n}"
                self.attempted.append(order_id)
                lines = []
                for _ in range(rng.randint(2, 5)):
                    sku = rng.choice(SKUS)
                    if rng.random() < 0.3:
                        lines.append(ln(sku, GROUP, rng.randint(1, 2), group=True))
                    else:
                        lines.append(ln(sku, rng.choice(LOCATIONS), rng.randint(1, 2)))
                try:
                    answer = c.put(f"/api/orders/{order_id}/reservation", json=cart(*lines))
                    self.statuses[answer.status_code] += 1
                    if answer.status_code == 201 and rng.random() < 0.5:
                        done = c.delete(f"/api/orders/{order_id}/reservation")
                        self.statuses[done.status_code] += 1
                except httpx.TransportError:
                    return  # the host was killed under this client

    def __enter__(self) -> Placing:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self.threads:
            thread.join(60)


def orders_at(data: Path, order_ids: list[str]) -> dict[str, Order]:
    """The orders as their streams record them, read beside the host without driving them
    (a ``GET`` of an order would drive it to rest, and this suite wants the sweep to)."""
    store = SQLiteProcessStore(data / "processes.db")
    try:
        found = {order_id: store.orders.get(order_id) for order_id in order_ids}
    finally:
        store.close()
    return {order_id: order for order_id, order in found.items() if order is not None}


def holding(order: Order) -> dict[tuple[str, str], int]:
    """The units an order's stream records as held, per SKU-location (lines summed)."""
    return {(h["sku"], h["location"]): h["quantity"] for h in order.ordered_holds()
            if h["state"] == HOLD_HELD}


def test_sigkills_during_placement_leave_no_order_in_progress_and_no_stray_hold(
        tmp_path: Path, reliability: Any) -> None:
    rng = random.Random(1515)
    host = start_host(tmp_path, env=HOST_ENV)
    data = host.data_dir
    with host.client() as c:
        for sku, location in PAIRS:
            receive(c, sku, location, UNITS)
        assert c.put(f"/api/location-groups/{GROUP}", json={
            "locations": list(LOCATIONS), "strategy": "most_available"}).status_code == 200

    attempted: list[str] = []
    statuses: Counter[int] = Counter()
    interrupted: Counter[str] = Counter()
    for kill in range(KILLS):
        with Placing(host, kill, rng) as placing:
            time.sleep(rng.uniform(0.2, 1.2))
            host.process.send_signal(signal.SIGKILL)
            host.process.wait(10)
        attempted += placing.attempted
        statuses += placing.statuses
        for order in orders_at(data, placing.attempted).values():
            if order.status not in AT_REST:
                interrupted[order.status] += 1
                interrupted["with holds taken"] += bool(holding(order))
        host = start_host(tmp_path, env=HOST_ENV)

    try:
        # The sweep alone drives them (nobody asks): within the stall time and an interval
        # (and slack for a loaded machine; the time taken is in the reliability table).
        restarted = time.monotonic()
        deadline = restarted + STALL_AFTER.total_seconds() + SWEEP_SECONDS + 20
        while True:
            orders = orders_at(data, attempted)
            busy = [o for o in orders.values() if o.status not in AT_REST]
            if not busy:
                break
            assert time.monotonic() < deadline, (busy[:3], host.log())
            time.sleep(0.2)
        recovered_after = time.monotonic() - restarted

        stock = SQLiteStockItems(data / "events.db")
        histories = {pair: stock.events(*pair) for pair in PAIRS}
        worst = max(e.reserved - e.on_hand for events in histories.values() for e in events)
        reliability.record("host SIGKILLed during order placement", kills=KILLS,
                           orders=len(orders), interrupted=sum(
                               interrupted[s] for s in (PLACING, "releasing", "fulfilling")),
                           seconds_to_rest=round(recovered_after),
                           server_errors=sum(n for s, n in statuses.items() if s >= 500),
                           units_oversold=max(worst, 0))
        assert all(status < 500 for status in statuses), statuses
        assert statuses[201] > 0 and statuses[409] > 0, statuses
        assert interrupted[PLACING] > 0, "no kill landed inside a placement"
        assert all(order.next_step() is None for order in orders.values())

        expected: dict[tuple[str, str], dict[str, int]] = {pair: {} for pair in PAIRS}
        for order_id, order in orders.items():
            if order.status not in (HELD, PARTIALLY_HELD):  # failed, released: nothing
                assert not holding(order), (order_id, order.status, holding(order))
            for pair, units in holding(order).items():
                expected[pair][order_id] = units
        try:
            for (sku, location), events in histories.items():
                assert all(e.reserved <= e.on_hand for e in events), (sku, location)
                on_hand, reserved, holds = fold(events)
                assert holds == expected[(sku, location)], (sku, location)
                assert reserved <= on_hand == UNITS
                item = stock.get(sku, location)
                assert item is not None
                assert (item.on_hand, item.reserved) == (on_hand, reserved)
        finally:
            stock.close()
    finally:
        assert host.stop() == 0, host.log()

