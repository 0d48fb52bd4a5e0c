"""Random interleavings of orders, line routes, receipts, expiry and crashes, on SQLite.

After every step, for every SKU-location, reserved equals the sum of its open holds and
never exceeds on hand (no oversell); every order at rest holds exactly what its stream
says (the summed quantity of the lines it chose there, nothing elsewhere), so an
all-or-nothing order that answered holds all its lines or none; a failed, released or
fulfilled order holds nothing; and the same request again records nothing.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from application.processes import STALL_AFTER
from domain.errors import (
    OrderClosed,
    OrderConflict,
    OrderShort,
    ReservationClosed,
    UnknownOrder,
    UnknownReservation,
)
from tests.orders.conftest import World, open_world

SKUS = ("A", "B")
LOCATIONS = ("S1", "S2")
STREAMS = [(s, loc) for s in SKUS for loc in LOCATIONS]
ORDERS = st.sampled_from([f"o-{n}" for n in range(4)])
POINTS = ("after-intent", "before-step", "after-step", "after-record")


class Crash(Exception):
    pass


@st.composite
def carts(draw: st.DrawFn) -> list[dict[str, Any]]:
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        sku = draw(st.sampled_from(SKUS))
        quantity = draw(st.integers(1, 3))
        where = draw(st.sampled_from([*LOCATIONS, "g-priority", "g-most"]))
        key = "location_group" if where.startswith("g-") else "location"
        lines.append({"sku": sku, key: where, "quantity": quantity})
    return lines


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="order-machine-")
        self.world: World = open_world(Path(self.directory))
        self.world.groups.define("g-priority", ["S1", "S2"], "priority")
        self.world.groups.define("g-most", ["S2", "S1"], "most_available")
        self.orders = self.world.orders()
        self.requests: dict[str, tuple[list[dict[str, Any]], str, int | None]] = {}
        self.touched: set[str] = set()
        """Orders a line route changed behind their back (they may hold some lines)."""

    def teardown(self) -> None:
        self.world.stock.close()
        self.world.processes.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ rules

    @rule(sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS),
          quantity=st.integers(1, 4))
    def receive(self, sku: str, location: str, quantity: int) -> None:
        self.world.commands.receive(sku, location, quantity)

    @rule(order_id=ORDERS, cart=carts(), mode=st.sampled_from(["all_or_nothing", "partial"]),
          ttl=st.sampled_from([None, 60]))
    def place(self, order_id: str, cart: list[dict[str, Any]], mode: str,
              ttl: int | None) -> None:
        with contextlib.suppress(OrderShort, OrderConflict, OrderClosed):
            self.orders.place(order_id, "web", cart, mode, ttl)
        self._remember_request(order_id)

    def _remember_request(self, order_id: str) -> None:
        """The request the order records (its latest attempt's), for ``repeat``."""
        order = self.world.processes.orders.get(order_id)
        if order is not None:
            self.requests[order_id] = (
                [{k: v for k, v in ln.items() if v is not None} for ln in order.lines],
                order.mode, order.ttl_seconds)

    @rule(order_id=ORDERS)
    def repeat(self, order_id: str) -> None:
        if order_id not in self.requests:
            return
        order = self.world.processes.orders.get(order_id)
        assert order is not None
        if order.status not in ("held", "partially_held") or order_id in self.touched:
            return
        cart, mode, ttl = self.requests[order_id]
        stock_before = self.world.stock.max_position()
        version = order.version
        answer = self.orders.place(order_id, "web", cart, mode, ttl)
        assert not answer.created
        after = self.world.processes.orders.get(order_id)
        assert after is not None and after.version == version
        assert self.world.stock.max_position() == stock_before

    @rule(order_id=ORDERS, cart=carts(), point=st.sampled_from(POINTS),
          hit=st.integers(1, 4))
    def place_and_crash(self, order_id: str, cart: list[dict[str, Any]], point: str,
                        hit: int) -> None:
        hits: Counter[str] = Counter()

        def crash_point(name: str) -> None:
            hits[name] += 1
            if name == point and hits[name] == hit:
                raise Crash(name)

        with contextlib.suppress(Crash, OrderShort, OrderConflict, OrderClosed):
            self.world.orders(crash_point=crash_point).place(order_id, "web", cart)
        self._remember_request(order_id)  # a failed order placed again: a new request

    @rule(order_id=ORDERS)
    def release(self, order_id: str) -> None:
        with contextlib.suppress(UnknownOrder, OrderClosed):
            self.orders.release(order_id)

    @rule(order_id=ORDERS)
    def fulfil(self, order_id: str) -> None:
        with contextlib.suppress(UnknownOrder, OrderClosed):
            self.orders.fulfil(order_id)

    @rule(order_id=ORDERS, stream=st.sampled_from(STREAMS))
    def release_one_line_through_its_route(self, order_id: str,
                                           stream: tuple[str, str]) -> None:
        try:
            self.world.commands.release(*stream, order_id)
        except (UnknownReservation, ReservationClosed):
            return
        self.touched.add(order_id)

    @rule()
    def time_passes_and_sweeps_run(self) -> None:
        self.world.clock.advance(max(61, STALL_AFTER.total_seconds()))
        for stream in STREAMS:
            self.world.commands.expire_overdue(*stream)
        self.world.orders().sweep()

    # ------------------------------------------------------------- invariants

    @invariant()
    def no_stream_is_oversold(self) -> None:
        for sku, location in STREAMS:
            item = self.world.stock.get(sku, location)
            if item is None:
                continue
            assert item.reserved == sum(int(r["quantity"]) for r in item.reservations.values())
            assert item.reserved <= item.on_hand

    @invariant()
    def every_order_at_rest_holds_exactly_what_it_says(self) -> None:
        reservations = {}
        for sku, location in STREAMS:
            item = self.world.stock.get(sku, location)
            reservations[sku, location] = dict(item.reservations) if item else {}
        for order_id in self.requests:
            if order_id in self.touched:
                continue
            order = self.world.processes.orders.get(order_id)
            assert order is not None
            if order.status in ("placing", "releasing", "fulfilling"):
                continue  # a crash interrupted it: the sweep ends it
            holding = {key: r[order_id]["quantity"] for key, r in reservations.items()
                       if order_id in r}
            if order.status in ("failed", "released", "fulfilled"):
                assert holding == {}, (order_id, order.status, holding)
                continue
            summed: Counter[tuple[str, str]] = Counter()
            for line, chosen in zip(order.lines, order.line_locations, strict=True):
                if chosen is not None:
                    summed[line["sku"], chosen] += line["quantity"]
            held = {(h["sku"], h["location"]): h["quantity"]
                    for h in order.holds.values() if h["state"] == "held"}
            assert holding == held, (order_id, holding, held)
            for key, quantity in held.items():
                assert quantity == summed[key]
            if order.mode == "all_or_nothing":
                assert held == dict(summed) and None not in order.line_locations


OrderMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_orders_against_line_routes_expiry_and_crashes = OrderMachine.TestCase
