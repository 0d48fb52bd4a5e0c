"""Random command sequences with stock states, incoming supply and transfers.

``StockStatesMachine`` extends the StockItem machine (every rule and invariant of
``test_stock_item_properties`` still runs) with receipts, adjustments and counts per
state, moves between states, expected receipts, shipments and the destination's transfer
steps, against a model that says what each command does. ``TransfersConserveUnits``
drives transfers between two locations step by step, repeating steps as a process does
after a crash, and checks that no unit appears or vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domain import StockItem
from domain.errors import (
    CountAlreadyRecorded,
    IdempotencyKeyReused,
    InsufficientInState,
    InsufficientOnHand,
    InsufficientSellable,
    InsufficientStock,
    InvalidQuantity,
    InvalidRequest,
    TransferConflict,
)
from domain.promise import available_to_promise
from tests.events import stock_events
from tests.unit.test_stock_item_properties import (
    COUNTS,
    KEYS,
    MACHINE,
    Model,
    Outcome,
    StockItemMachine,
)

STATES = st.sampled_from(["sellable", "damaged", "quality_control"])
REFERENCES = st.sampled_from(["PO-1", "PO-2"])
OUTBOUND = st.sampled_from([f"out-{n}" for n in range(3)])
INBOUND = st.sampled_from([f"in-{n}" for n in range(3)])
EDGE = st.none() | st.sampled_from([-1, 0, 1])
"""Half the time a quantity is taken at the edge of what a command may take (one less,
exactly, one more), where a wrong limit shows; else as drawn."""


@dataclass
class StatesModel(Model):
    """``on_hand`` of the base model is the sellable stock here; the held states and
    incoming beside it."""

    damaged: int = 0
    quality_control: int = 0
    incoming: dict[str, tuple[int, datetime, str | None]] = field(default_factory=dict)
    held_counted_at: dict[str, datetime] = field(default_factory=dict)
    shipped: dict[str, int] = field(default_factory=dict)
    inbound: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The destination's memo of each inbound transfer: (received, q) or (closed, r, l)."""

    def units(self, state: str) -> int:
        return self.on_hand if state == "sellable" else int(getattr(self, state))

    def add(self, state: str, quantity: int) -> None:
        if state == "sellable":
            self.on_hand += quantity
        else:
            setattr(self, state, getattr(self, state) + quantity)


class StockStatesMachine(StockItemMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = StatesModel()

    # --------------------------------------------------- commands taking a state

    @rule(quantity=st.integers(-2, 30), reference=st.none() | REFERENCES,
          key=st.none() | KEYS, state=STATES)
    def receive(self, quantity: int, reference: str | None, key: str | None,
                state: str = "sellable") -> None:
        model = self.model
        assert isinstance(model, StatesModel)

        def decide() -> Outcome:
            if quantity < 1:
                return InvalidQuantity
            used_for = ("receipt", quantity, reference, state)
            if key is not None and key in model.keys:
                return None if model.keys[key] == used_for else IdempotencyKeyReused

            def receive() -> None:
                model.add(state, quantity)
                if reference in model.incoming:
                    expected, at, owner = model.incoming[reference]
                    if expected <= quantity:
                        del model.incoming[reference]
                    else:
                        model.incoming[reference] = (expected - quantity, at, owner)
                if key is not None:
                    model.keys[key] = used_for

            return receive

        self._check(
            lambda: self.item.receive(quantity, reference, key, self.recall, state=state),
            decide, repeat=key is not None,
        )

    @rule(delta=st.integers(-30, 30), reason=st.sampled_from(["damaged", "found", "bogus"]),
          note=st.none() | st.sampled_from(["dented", "recount"]), key=st.none() | KEYS,
          state=STATES)
    def adjust(self, delta: int, reason: str, note: str | None, key: str | None,
               state: str = "sellable") -> None:
        model = self.model
        assert isinstance(model, StatesModel)

        def decide() -> Outcome:
            if delta == 0 or reason == "bogus":
                return InvalidRequest
            used_for = ("adjustment", delta, reason, note, state)
            if key is not None and key in model.keys:
                return None if model.keys[key] == used_for else IdempotencyKeyReused
            if model.units(state) + delta < 0:
                return InsufficientOnHand

            def adjust() -> None:
                model.add(state, delta)
                if key is not None:
                    model.keys[key] = used_for

            return adjust

        self._check(
            lambda: self.item.adjust(delta, reason, key, note, self.recall, state=state),
            decide, repeat=key is not None,
        )

    @rule(count=COUNTS, counted=st.integers(-1, 40), back=st.sampled_from([0, 0, 30, 600]),
          state=STATES)
    def count(self, count: str, counted: int, back: int, state: str = "sellable") -> None:
        model = self.model
        assert isinstance(model, StatesModel)
        counted_at = self.now - timedelta(seconds=back)

        def decide() -> Outcome:
            if counted < 0:
                return InvalidQuantity
            if count in model.counts:
                return None if model.counts[count] == (counted, counted_at, state) else (
                    CountAlreadyRecorded)

            def record() -> None:
                model.counts[count] = (counted, counted_at, state)
                latest = (model.last_counted_at if state == "sellable"
                          else model.held_counted_at.get(state))
                if latest is None or counted_at >= latest:
                    model.add(state, counted - model.units(state))
                    if state == "sellable":
                        model.last_counted_at = counted_at
                    else:
                        model.held_counted_at[state] = counted_at

            return record

        self._check(
            lambda: self.item.record_count(count, counted, counted_at, recall=self.recall,
                                           state=state),
            decide, repeat=True,
        )

    # --------------------------------------------------------------- moves

    @rule(quantity=st.integers(0, 12), edge=EDGE, source=STATES, to=STATES,
          key=st.none() | KEYS)
    def move(self, quantity: int, edge: int | None, source: str, to: str,
             key: str | None) -> None:
        target = to
        model = self.model
        assert isinstance(model, StatesModel)
        if edge is not None:
            limit = (model.on_hand - model.reserved if source == "sellable"
                     else model.units(source))
            quantity = max(0, limit + edge)

        def decide() -> Outcome:
            if quantity < 1:
                return InvalidQuantity
            if source == target:
                return InvalidRequest
            used_for = ("move", quantity, source, target)
            if key is not None and key in model.keys:
                return None if model.keys[key] == used_for else IdempotencyKeyReused
            if source == "sellable" and quantity > model.on_hand - model.reserved:
                return InsufficientSellable  # an insufficient-stock refusal
            if source != "sellable" and quantity > model.units(source):
                return InsufficientInState  # an insufficient-on-hand refusal

            def move() -> None:
                model.add(source, -quantity)
                model.add(target, quantity)
                if key is not None:
                    model.keys[key] = used_for

            return move

        emitted = self._check(
            lambda: self.item.move(quantity, source, target, None, key, self.recall),
            decide, repeat=key is not None,
        )
        if emitted and source == "sellable":
            assert self.item.sellable >= self.item.reserved, "a move took reserved units"

    # ------------------------------------------------------------ incoming

    @rule(reference=REFERENCES, quantity=st.integers(-1, 20), days=st.integers(-2, 20),
          hour=st.integers(0, 23))
    def set_incoming(self, reference: str, quantity: int, days: int, hour: int) -> None:
        model = self.model
        assert isinstance(model, StatesModel)
        expected_at = datetime.combine(self.now.date() + timedelta(days=days), time(hour),
                                       tzinfo=UTC)

        def decide() -> Outcome:
            if quantity < 0:
                return InvalidQuantity
            current = model.incoming.get(reference)
            if current == (quantity, expected_at, None) or (current is None and quantity == 0):
                return None

            def set_incoming() -> None:
                if quantity == 0:
                    del model.incoming[reference]
                else:
                    model.incoming[reference] = (quantity, expected_at, None)

            return set_incoming

        self._check(lambda: self.item.set_incoming(reference, quantity, expected_at), decide,
                    repeat=True)

    # ----------------------------------------------------------- transfers

    @rule(transfer=OUTBOUND, quantity=st.integers(0, 12), edge=EDGE)
    def ship(self, transfer: str, quantity: int, edge: int | None) -> None:
        model = self.model
        assert isinstance(model, StatesModel)
        if edge is not None:
            quantity = max(0, model.on_hand - model.reserved - model.safety_stock + edge)

        def decide() -> Outcome:
            if quantity < 1:
                return InvalidQuantity
            if transfer in model.shipped:
                return None if model.shipped[transfer] == quantity else TransferConflict
            if quantity > model.on_hand - model.reserved - model.safety_stock:
                return InsufficientSellable

            def ship() -> None:
                model.on_hand -= quantity
                model.shipped[transfer] = quantity

            return ship

        emitted = self._check(
            lambda: self.item.ship_transfer(transfer, quantity, "STORE-9", self.recall),
            decide, repeat=True)
        if emitted:
            assert self.item.available >= 0, "a shipment took what was not available"

    @rule(transfer=INBOUND, quantity=st.integers(1, 12), days=st.integers(-1, 5))
    def expect_transfer(self, transfer: str, quantity: int, days: int) -> None:
        model = self.model
        assert isinstance(model, StatesModel)
        expected_at = self.now + timedelta(days=days)

        def decide() -> Outcome:
            if transfer in model.inbound:
                return None
            if model.incoming.get(transfer) == (quantity, expected_at, "DC-9"):
                return None

            def expect() -> None:
                model.incoming[transfer] = (quantity, expected_at, "DC-9")

            return expect

        self._check(lambda: self.item.expect_transfer(transfer, quantity, expected_at, "DC-9",
                                                      self.recall), decide, repeat=True)

    @rule(transfer=INBOUND, quantity=st.integers(0, 14))
    def receive_transfer(self, transfer: str, quantity: int) -> None:
        model = self.model
        assert isinstance(model, StatesModel)
        entry = model.incoming.get(transfer)
        shipped = entry[0] if entry else 12

        def decide() -> Outcome:
            if quantity < 1:
                return InvalidQuantity
            if quantity > shipped:
                return InvalidRequest
            memo = model.inbound.get(transfer)
            if memo is not None:
                return None if int(memo[1]) == quantity else TransferConflict

            def receive() -> None:
                model.on_hand += quantity
                model.incoming.pop(transfer, None)
                model.inbound[transfer] = ("received", str(quantity))

            return receive

        self._check(lambda: self.item.receive_transfer(transfer, quantity, shipped, "DC-9",
                                                       self.recall), decide, repeat=True)

    @rule(transfer=INBOUND, lost=st.integers(-1, 5))
    def close_transfer(self, transfer: str, lost: int) -> None:
        model = self.model
        assert isinstance(model, StatesModel)

        def decide() -> Outcome:
            if lost < 0:
                return InvalidQuantity
            memo = model.inbound.get(transfer)
            if memo is not None and memo[0] == "closed":
                return None if int(memo[2]) == lost else TransferConflict
            if lost == 0 and transfer not in model.incoming:
                return None
            received = memo[1] if memo is not None else "0"

            def close() -> None:
                model.incoming.pop(transfer, None)
                model.inbound[transfer] = ("closed", received, str(lost))

            return close

        self._check(lambda: self.item.record_transit_loss(transfer, lost, "DC-9",
                                                          self.recall), decide, repeat=True)

    # ----------------------------------------------------------- invariants

    @invariant()
    def the_aggregate_agrees_with_the_model(self) -> None:
        item, model = self.item, self.model
        assert isinstance(model, StatesModel)
        assert (item.sellable, item.damaged, item.quality_control) == (
            model.on_hand, model.damaged, model.quality_control)
        assert (item.reserved, item.safety_stock, item.oversell_buffer) == (
            model.reserved, model.safety_stock, model.oversell_buffer)
        assert {
            r.order_id: (r.quantity, r.channel, r.expires_at)
            for r in item.position().reservations
        } == model.reservations
        for n in range(3):
            order = f"order-{n}"
            assert item.outcome_of(order, self.recall) == model.closed.get(order)
        assert item.last_counted_at == model.last_counted_at
        assert item.held_counted_at == model.held_counted_at
        assert {e.reference: (e.quantity, e.expected_at, e.transfer_from)
                for e in item.position().incoming} == model.incoming

    @invariant()
    def on_hand_is_the_sum_of_the_states_and_none_is_negative(self) -> None:
        """No state goes below zero, except sellable by a fulfilment of a reservation that
        the oversell buffer let past zero: overselling is a policy, never an accident."""
        from tests.unit.test_stock_item_properties import MAPPER

        item = self.item
        assert item.on_hand == item.sellable + item.damaged + item.quality_control
        assert min(item.damaged, item.quality_control) >= 0
        before = 0
        for stored in self.stored:
            event: Any = MAPPER.to_domain_event(stored)
            if isinstance(event, StockItem.Snapshot):
                continue
            if event.sellable < min(before, 0):
                assert isinstance(event, StockItem.Fulfilled), f"{event} oversold"
            before = event.sellable
        position = item.position()
        assert (position.on_hand, position.sellable, position.available) == (
            item.on_hand, item.sellable, item.available)

    @invariant()
    def available_is_on_hand_less_reserved_less_safety_stock(self) -> None:
        """Replaces the base machine's rule: available is sellable less reserved less
        safety stock (on hand less them only while nothing is held)."""
        item = self.item
        assert item.available == item.sellable - item.reserved - item.safety_stock

    @invariant()
    def atp_follows_the_rule_every_day_and_never_decreases(self) -> None:
        model = self.model
        assert isinstance(model, StatesModel)
        promise = available_to_promise(self.item.position(), self.now, 21)
        base = model.on_hand - model.reserved - model.safety_stock
        for d, day in enumerate(promise.days):
            assert day.date == self.now.date() + timedelta(days=d)
            end = datetime.combine(day.date + timedelta(days=1), time(0), tzinfo=UTC)
            due = sum(q for q, at, _ in model.incoming.values() if at < end)
            assert day.available_to_promise == base + due
        figures = [d.available_to_promise for d in promise.days]
        assert figures == sorted(figures)

    @invariant()
    def the_last_event_declares_the_position_after_it(self) -> None:
        if len(self.stored) < 2:
            return
        from tests.unit.test_stock_item_properties import MAPPER

        last: Any = MAPPER.to_domain_event(self.stored[-1])
        if last.originator_version != self.item.version:
            return
        position = self.item.position()
        assert (last.on_hand, last.sellable, last.damaged, last.quality_control,
                last.reserved, last.available, last.incoming_total, last.in_transit) == (
            position.on_hand, position.sellable, position.damaged, position.quality_control,
            position.reserved, position.available, position.incoming_total,
            position.in_transit)


# --------------------------------------------------------------------- transfers


class TransfersConserveUnits(RuleBasedStateMachine):
    """Transfers between a DC and a store, driven one step at a time in the order a
    transfer process takes them (ship at the source, expect at the destination, receive
    once, close), any step repeated at any time as after a crash, with sales and
    receipts going on at both ends."""

    def __init__(self) -> None:
        super().__init__()
        self.source = StockItem.create("SKU-1", "DC-1")
        self.source.receive(60)
        self.destination = StockItem.create("SKU-1", "STORE-1")
        self.destination.receive(5)
        self.memos: dict[str, dict[str, str]] = {"DC-1": {}, "STORE-1": {}}
        self.outside = 0
        """Units that came in or went out other than by transfer (receipts, sales)."""
        self.total = 65
        self.transfers: dict[str, dict[str, int]] = {}
        """Per transfer: shipped, received, lost (as the process would record them)."""
        self.now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
        self._save()

    def _save(self) -> list[StockItem.Event]:
        events: list[StockItem.Event] = []
        for item in (self.source, self.destination):
            for event in stock_events(item):
                self.memos[item.location].update(event.memos())
                events.append(event)
        return events

    def recall(self, location: str) -> Any:
        return self.memos[location].get

    @rule(transfer=st.sampled_from(["t-1", "t-2", "t-3"]), quantity=st.integers(1, 25))
    def ship(self, transfer: str, quantity: int) -> None:
        state = self.transfers.get(transfer)
        quantity = state["shipped"] if state else quantity  # a repeat ships the same
        try:
            self.source.ship_transfer(transfer, quantity, "STORE-1", self.recall("DC-1"))
        except InsufficientStock:
            assert state is None
            return
        emitted = self._save()
        if state is not None:
            assert emitted == [], "a repeated shipment emitted again"
            return
        assert self.source.available >= 0
        self.transfers[transfer] = {"shipped": quantity, "received": 0, "lost": 0,
                                    "closed": 0}

    @rule(transfer=st.sampled_from(["t-1", "t-2", "t-3"]))
    def expect(self, transfer: str) -> None:
        state = self.transfers.get(transfer)
        if state is None:
            return
        self.destination.expect_transfer(transfer, state["shipped"], self.now, "DC-1",
                                         self.recall("STORE-1"))
        self._save()

    @rule(transfer=st.sampled_from(["t-1", "t-2", "t-3"]), part=st.integers(0, 100))
    def receive(self, transfer: str, part: int) -> None:
        state = self.transfers.get(transfer)
        if state is None or (state["closed"] and not state["received"]):
            return
        quantity = state["received"] or max(1, state["shipped"] * part // 100)
        self.destination.receive_transfer(transfer, quantity, state["shipped"], "DC-1",
                                          self.recall("STORE-1"))
        emitted = self._save()
        assert (emitted == []) == bool(state["received"]), "a repeat emitted, or a first did not"
        state["received"] = quantity

    @rule(transfer=st.sampled_from(["t-1", "t-2", "t-3"]))
    def close(self, transfer: str) -> None:
        state = self.transfers.get(transfer)
        if state is None:
            return
        lost = state["shipped"] - state["received"]
        self.destination.record_transit_loss(transfer, lost, "DC-1", self.recall("STORE-1"))
        self._save()
        state["lost"], state["closed"] = lost, 1

    @rule(quantity=st.integers(1, 10), at_source=st.booleans())
    def trade(self, quantity: int, at_source: bool) -> None:
        item = self.source if at_source else self.destination
        if item.available >= quantity:
            item.adjust(-quantity, "shrinkage")
            self.outside -= quantity
        else:
            item.receive(quantity)
            self.outside += quantity
        self._save()

    @invariant()
    def shipped_is_received_plus_lost_plus_in_transit(self) -> None:
        in_transit = 0
        for state in self.transfers.values():
            left = state["shipped"] - state["received"] - state["lost"]
            assert left >= 0
            in_transit += left
        lost = sum(s["lost"] for s in self.transfers.values())
        assert (self.source.on_hand + self.destination.on_hand + in_transit + lost
                == self.total + self.outside)

    @invariant()
    def the_destination_expects_what_is_shipped_and_not_received_or_closed(self) -> None:
        expected = {e.reference: e.quantity for e in self.destination.position().incoming}
        for transfer, quantity in expected.items():
            state = self.transfers[transfer]
            assert not state["received"] and not state["closed"]
            assert quantity == state["shipped"]
        assert self.destination.position().in_transit == sum(expected.values())


TestStockStatesMachine = StockStatesMachine.TestCase
TestStockStatesMachine.settings = MACHINE
TestTransfersConserveUnits = TransfersConserveUnits.TestCase
TestTransfersConserveUnits.settings = settings(
    max_examples=min(60, settings().max_examples), stateful_step_count=40, deadline=None
)
