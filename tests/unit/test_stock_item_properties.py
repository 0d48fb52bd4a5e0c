"""Random command sequences against StockItem: the invariants hold after every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain import StockItem
from domain.errors import DomainError

ORDERS = st.sampled_from([f"order-{n}" for n in range(6)])
KEYS = st.sampled_from([f"key-{n}" for n in range(4)])
COUNTS = st.sampled_from([f"count-{n}" for n in range(3)])
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


MAPPER = mapper()


class StockItemMachine(RuleBasedStateMachine):
    """Drives one aggregate; every stored event goes through the real serialisation."""

    def __init__(self) -> None:
        super().__init__()
        self.item = StockItem.create("SKU-1", "STORE-1")
        self.now = START
        self.stored: list[Any] = []
        self.snapshot: Any = None
        self.memos: dict[str, str] = {}
        """What the store would recall: the memos of every stored event."""
        self._store()

    def recall(self, memo: str) -> str | None:
        return self.memos.get(memo)

    def _store(self) -> list[Any]:
        events = self.item.collect_events()
        self.stored.extend(MAPPER.to_stored_event(e) for e in events)
        for event in events:
            self.memos.update(event.memos())
        for event in events:
            # The event's declared position is the state after applying it.
            assert event.on_hand >= -10**9
        if events:
            last = events[-1]
            assert (last.on_hand, last.reserved, last.available) == (
                self.item.on_hand,
                self.item.reserved,
                self.item.available,
            )
        return events

    def _attempt(self, command: Any) -> list[Any]:
        before = self.item.version
        try:
            command()
        except DomainError:
            assert self.item.pending_events == [], "a refused command left events behind"
            assert self.item.version == before
            return []
        return self._store()

    def _repeat_emits_nothing(self, command: Any) -> None:
        emitted = self._attempt(command)
        if emitted:
            assert self._attempt(command) == [], "repeating a command emitted again"

    @initialize(quantity=st.integers(0, 50))
    def opening_stock(self, quantity: int) -> None:
        if quantity:
            self._attempt(lambda: self.item.receive(quantity))

    @rule(quantity=st.integers(-2, 30), key=st.none() | KEYS)
    def receive(self, quantity: int, key: str | None) -> None:
        command = lambda: self.item.receive(quantity, idempotency_key=key,  # noqa: E731
                                             recall=self.recall)
        if key is None:
            self._attempt(command)
        else:
            self._repeat_emits_nothing(command)

    @rule(delta=st.integers(-30, 30), reason=st.sampled_from(["damaged", "found", "bogus"]),
          key=st.none() | KEYS)
    def adjust(self, delta: int, reason: str, key: str | None) -> None:
        on_hand = self.item.on_hand
        emitted = self._attempt(lambda: self.item.adjust(delta, reason, idempotency_key=key,
                                                          recall=self.recall))
        if emitted:
            assert on_hand + delta >= 0, "an adjustment took on hand below zero"

    @rule(safety=st.integers(-1, 10), buffer=st.integers(0, 5))
    def set_policy(self, safety: int, buffer: int) -> None:
        self._repeat_emits_nothing(lambda: self.item.set_policy(safety, buffer))

    @rule(order=ORDERS, quantity=st.integers(0, 25), channel=st.sampled_from(["pos", "web"]),
          ttl=st.none() | st.integers(1, 600))
    def reserve(self, order: str, quantity: int, channel: str, ttl: int | None) -> None:
        expires_at = StockItem.expiry(self.now, ttl)
        self._repeat_emits_nothing(
            lambda: self.item.reserve(order, quantity, channel, expires_at, self.recall)
        )

    @rule(order=ORDERS)
    def release(self, order: str) -> None:
        self._repeat_emits_nothing(lambda: self.item.release(order, recall=self.recall))

    @rule(order=ORDERS, quantity=st.none() | st.integers(1, 25))
    def fulfil(self, order: str, quantity: int | None) -> None:
        self._repeat_emits_nothing(lambda: self.item.fulfil(order, quantity, self.recall))

    @rule(count=COUNTS, counted=st.integers(0, 40))
    def count(self, count: str, counted: int) -> None:
        self._repeat_emits_nothing(
            lambda: self.item.record_count(count, counted, self.now, recall=self.recall))

    @rule(seconds=st.integers(1, 900))
    def time_passes_and_overdue_reservations_expire(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._attempt(lambda: self.item.expire_overdue(self.now))
        assert all(
            r["expires_at"] is None or r["expires_at"] > self.now
            for r in self.item.reservations.values()
        )

    @rule()
    def take_snapshot(self) -> None:
        self.snapshot = MAPPER.to_stored_event(StockItem.Snapshot.take(self.item))

    @invariant()
    def reserved_is_the_sum_of_open_reservations(self) -> None:
        assert self.item.reserved == sum(r["quantity"] for r in self.item.reservations.values())

    @invariant()
    def available_is_on_hand_less_reserved_less_safety_stock(self) -> None:
        item = self.item
        assert item.available == item.on_hand - item.reserved - item.safety_stock

    @invariant()
    def rebuilding_from_the_stored_events_gives_the_same_state(self) -> None:
        events = [MAPPER.to_domain_event(s) for s in self.stored]
        rebuilt = project_aggregate(None, events)
        assert rebuilt is not None
        assert rebuilt.position() == self.item.position()
        assert vars(rebuilt) == vars(self.item)

    @invariant()
    def rebuilding_from_a_snapshot_and_later_events_gives_the_same_state(self) -> None:
        if self.snapshot is None:
            return
        snapshot = MAPPER.to_domain_event(self.snapshot)
        later = [
            MAPPER.to_domain_event(s)
            for s in self.stored
            if s.originator_version > snapshot.originator_version
        ]
        rebuilt = project_aggregate(snapshot.mutate(None), later)
        assert rebuilt is not None
        assert rebuilt.position() == self.item.position()



class ReservationsNeverOversell(StockItemMachine):
    """The fit invariant, checked on every successful reservation increase."""

    @rule(order=ORDERS, quantity=st.integers(1, 25))
    def reserve_checked(self, order: str, quantity: int) -> None:
        previous = self.item.reservation(order)
        held = previous.quantity if previous else 0
        emitted = self._attempt(
            lambda: self.item.reserve(order, quantity, "web", recall=self.recall))
        if emitted and quantity > held:
            item = self.item
            assert item.reserved <= item.on_hand - item.safety_stock + item.oversell_buffer


TestStockItemMachine = StockItemMachine.TestCase
TestStockItemMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestReservationsNeverOversell = ReservationsNeverOversell.TestCase
TestReservationsNeverOversell.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
