"""Random command sequences against StockItem, checked against a simple model.

The model says, for every command, what a caller may rely on: that it is refused (and
with which error), that it already took effect (no event), or what it changes. The
aggregate must agree at every step: refuse exactly when the model says so, with the
model's error type, and never otherwise; and its figures, reservations and remembered
outcomes must be the model's after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
from domain.errors import (
    CountAlreadyRecorded,
    DomainError,
    FulfilmentConflict,
    IdempotencyKeyReused,
    InsufficientOnHand,
    InsufficientStock,
    InvalidQuantity,
    InvalidRequest,
    ReservationClosed,
    UnknownReservation,
)
from tests.events import from_snapshot, only, stock_events

ORDERS = st.sampled_from([f"order-{n}" for n in range(3)])
FEW = st.integers(0, 3) | st.integers(0, 12)
"""Quantities, small ones (the edges: 0, 1, exactly what is held) more often."""
KEYS = st.sampled_from([f"key-{n}" for n in range(4)])
COUNTS = st.sampled_from([f"count-{n}" for n in range(3)])
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


MAPPER = mapper()


Outcome = type[DomainError] | Callable[[], None] | None
"""What the model expects of a command: refused with this error type, accepted with this
change to the model, or None: it already took effect, so nothing happens."""


@dataclass
class Model:
    """The stock of one SKU-location, said as simply as possible."""

    on_hand: int = 0
    safety_stock: int = 0
    oversell_buffer: int = 0
    reservations: dict[str, tuple[int, str, datetime | None]] = field(default_factory=dict)
    """Open reservations: quantity, channel, expiry."""
    closed: dict[str, str] = field(default_factory=dict)
    """How each closed reservation ended: cancelled, expired or fulfilled:{quantity}."""
    keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """What each idempotency key was used for."""
    counts: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """What each count recorded: (counted, counted_at), and the state where states are kept."""
    last_counted_at: datetime | None = None

    @property
    def reserved(self) -> int:
        return sum(quantity for quantity, _, _ in self.reservations.values())

    @property
    def reservable(self) -> int:
        """What all reservations together may hold."""
        return self.on_hand - self.safety_stock + self.oversell_buffer


class StockItemMachine(RuleBasedStateMachine):
    """Drives one aggregate and the model side by side; every stored event goes through
    the real serialisation."""

    def __init__(self) -> None:
        super().__init__()
        self.item = StockItem.create("SKU-1", "STORE-1")
        self.model = Model()
        self.now = START
        self.stored: list[Any] = []
        self.snapshot: Any = None
        self.memos: dict[str, str] = {}
        """What the store would recall: the memos of every stored event."""
        self._store()

    def recall(self, memo: str) -> str | None:
        return self.memos.get(memo)

    def _store(self) -> list[StockItem.Event]:
        events = stock_events(self.item)
        self.stored.extend(MAPPER.to_stored_event(e) for e in events)
        for event in events:
            self.memos.update(event.memos())
        if events:
            # The event's declared position is the state after applying it.
            last = events[-1]
            assert (last.on_hand, last.reserved, last.available) == (
                self.item.on_hand,
                self.item.reserved,
                self.item.available,
            )
        return events

    def _check(self, command: Callable[[], Any], decide: Callable[[], Outcome],
               *, repeat: bool = False) -> list[Any]:
        """Run ``command`` and hold it to what ``decide`` (the model) expects; with
        ``repeat``, run it again after it took effect: a repeat changes nothing."""
        expected = decide()
        before = self.item.version
        try:
            command()
        except DomainError as refused:
            assert isinstance(expected, type), f"refused ({refused!r}); the model accepts it"
            assert type(refused) is expected, f"refused with {refused!r}, not {expected}"
            assert self.item.pending_events == [], "a refused command left events behind"
            assert self.item.version == before
            return []
        assert not isinstance(expected, type), f"accepted; the model refuses ({expected})"
        events = self._store()
        if expected is None:
            assert events == [], "a command that already took effect emitted again"
            return events
        assert events, "an accepted command emitted nothing"
        expected()
        if repeat:
            self._check(command, decide)
        return events

    @initialize(quantity=st.integers(0, 50))
    def opening_stock(self, quantity: int) -> None:
        if quantity:
            self.receive(quantity, None, None)

    @rule(quantity=st.integers(-2, 30), reference=st.none() | st.sampled_from(["PO-1", "PO-2"]),
          key=st.none() | KEYS)
    def receive(self, quantity: int, reference: str | None, key: str | None) -> None:
        model = self.model

        def decide() -> Outcome:
            if quantity < 1:
                return InvalidQuantity
            used_for = ("receipt", quantity, reference)
            if key is not None and key in model.keys:
                return None if model.keys[key] == used_for else IdempotencyKeyReused

            def receive() -> None:
                model.on_hand += quantity
                if key is not None:
                    model.keys[key] = used_for

            return receive

        self._check(
            lambda: self.item.receive(quantity, reference, key, self.recall),
            decide, repeat=key is not None,
        )

    @rule(delta=st.integers(-30, 30), reason=st.sampled_from(["damaged", "found", "bogus"]),
          note=st.none() | st.sampled_from(["dented", "recount"]), key=st.none() | KEYS)
    def adjust(self, delta: int, reason: str, note: str | None, key: str | None) -> None:
        model = self.model

        def decide() -> Outcome:
            if delta == 0 or reason == "bogus":
                return InvalidRequest
            used_for = ("adjustment", delta, reason, note)
            if key is not None and key in model.keys:
                return None if model.keys[key] == used_for else IdempotencyKeyReused
            if model.on_hand + delta < 0:
                return InsufficientOnHand

            def adjust() -> None:
                model.on_hand += delta
                if key is not None:
                    model.keys[key] = used_for

            return adjust

        self._check(
            lambda: self.item.adjust(delta, reason, key, note, self.recall),
            decide, repeat=key is not None,
        )

    @rule(safety=st.integers(-1, 10), buffer=st.integers(-1, 5))
    def set_policy(self, safety: int, buffer: int) -> None:
        model = self.model

        def decide() -> Outcome:
            if safety < 0 or buffer < 0:
                return InvalidQuantity
            if (safety, buffer) == (model.safety_stock, model.oversell_buffer):
                return None

            def set_policy() -> None:
                model.safety_stock, model.oversell_buffer = safety, buffer

            return set_policy

        self._check(lambda: self.item.set_policy(safety, buffer), decide, repeat=True)

    @rule(order=ORDERS, quantity=FEW, channel=st.sampled_from(["pos", "web"]),
          ttl=st.none() | st.integers(1, 600))
    def reserve(self, order: str, quantity: int, channel: str, ttl: int | None) -> None:
        self._reserve(order, quantity, channel, ttl)

    def _reserve(self, order: str, quantity: int, channel: str, ttl: int | None) -> list[Any]:
        model = self.model
        expires_at = StockItem.expiry(self.now, ttl)

        def decide() -> Outcome:
            if quantity < 1:
                return InvalidQuantity
            if order in model.closed:
                return ReservationClosed
            current = model.reservations.get(order)
            held = current[0] if current else 0
            if current is not None and current[:2] == (quantity, channel):
                return None
            if quantity > held and model.reserved - held + quantity > model.reservable:
                return InsufficientStock

            def reserve() -> None:
                kept = current[2] if current else None
                model.reservations[order] = (quantity, channel, expires_at or kept)

            return reserve

        return self._check(
            lambda: self.item.reserve(order, quantity, channel, expires_at, self.recall),
            decide, repeat=True,
        )

    @rule(order=ORDERS)
    def release(self, order: str) -> None:
        model = self.model

        def decide() -> Outcome:
            if order in model.reservations:

                def release() -> None:
                    del model.reservations[order]
                    model.closed[order] = "cancelled"

                return release
            if order not in model.closed:
                return UnknownReservation
            return ReservationClosed if model.closed[order].startswith("fulfilled") else None

        self._check(lambda: self.item.release(order, recall=self.recall), decide, repeat=True)

    @rule(order=ORDERS, quantity=st.none() | FEW)
    def fulfil(self, order: str, quantity: int | None) -> None:
        model = self.model

        def decide() -> Outcome:
            if order in model.reservations:
                held = model.reservations[order][0]
                shipped = held if quantity is None else quantity
                if shipped < 1:
                    return InvalidQuantity
                if shipped > held:
                    return InvalidRequest

                def fulfil() -> None:
                    del model.reservations[order]
                    model.on_hand -= shipped
                    model.closed[order] = f"fulfilled:{shipped}"

                return fulfil
            if order not in model.closed:
                return UnknownReservation
            outcome = model.closed[order]
            if not outcome.startswith("fulfilled"):
                return ReservationClosed
            return None if quantity in (None, int(outcome.split(":")[1])) else FulfilmentConflict

        self._check(lambda: self.item.fulfil(order, quantity, self.recall), decide, repeat=True)

    @rule(count=COUNTS, counted=st.integers(-1, 40), back=st.sampled_from([0, 0, 30, 600]))
    def count(self, count: str, counted: int, back: int) -> None:
        model = self.model
        counted_at = self.now - timedelta(seconds=back)

        def decide() -> Outcome:
            if counted < 0:
                return InvalidQuantity
            if count in model.counts:
                return None if model.counts[count] == (counted, counted_at) else (
                    CountAlreadyRecorded)

            def record() -> None:
                model.counts[count] = (counted, counted_at)
                if model.last_counted_at is None or counted_at >= model.last_counted_at:
                    model.on_hand = counted  # no movements after it: the machine's clock
                    model.last_counted_at = counted_at  # runs ahead of the events' stamps
                # else: taken before the latest applied count, so superseded

            return record

        self._check(
            lambda: self.item.record_count(count, counted, counted_at, recall=self.recall),
            decide, repeat=True,
        )

    @rule(seconds=st.integers(1, 900))
    def time_passes_and_overdue_reservations_expire(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        model = self.model
        overdue = sorted(
            order for order, (_, _, expires_at) in model.reservations.items()
            if expires_at is not None and expires_at <= self.now
        )
        expired = self.item.expire_overdue(self.now)
        released = only(self._store(), StockItem.Released)
        assert expired == len(overdue)
        assert [(e.order_id, e.reason) for e in released] == [(o, "expired") for o in overdue]
        for order in overdue:
            del model.reservations[order]
            model.closed[order] = "expired"

    @rule()
    def take_snapshot(self) -> None:
        self.snapshot = MAPPER.to_stored_event(StockItem.Snapshot.take(self.item))

    @invariant()
    def the_aggregate_agrees_with_the_model(self) -> None:
        item, model = self.item, self.model
        assert (item.on_hand, item.reserved, item.safety_stock, item.oversell_buffer) == (
            model.on_hand, model.reserved, model.safety_stock, model.oversell_buffer)
        assert {
            order: (r.quantity, r.channel, r.expires_at) for r in item.position().reservations
            for order in [r.order_id]
        } == model.reservations
        for n in range(3):
            order = f"order-{n}"
            assert item.outcome_of(order, self.recall) == model.closed.get(order)
        assert item.last_counted_at == model.last_counted_at

    @invariant()
    def the_expiry_floor_is_the_earliest_open_expiry(self) -> None:
        expiries = [e for _, _, e in self.model.reservations.values() if e is not None]
        assert self.item.expiry_floor == min(expiries, default=None)

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
        snapshot = from_snapshot(MAPPER, self.snapshot)
        later = [
            MAPPER.to_domain_event(s)
            for s in self.stored
            if s.originator_version > snapshot.version
        ]
        rebuilt = project_aggregate(snapshot, later)
        assert rebuilt is not None
        assert rebuilt.position() == self.item.position()


class ReservationsNeverOversell(StockItemMachine):
    """The fit invariant, checked on every successful reservation increase."""

    @rule(order=ORDERS, quantity=st.integers(1, 12))
    def reserve_checked(self, order: str, quantity: int) -> None:
        previous = self.item.reservation(order)
        held = previous.quantity if previous else 0
        emitted = self._reserve(order, quantity, "web", None)
        if emitted and quantity > held:
            item = self.item
            assert item.reserved <= item.on_hand - item.safety_stock + item.oversell_buffer


MACHINE = settings(stateful_step_count=40, deadline=None)
"""As many examples as the profile says (hypothesis' default: 100; fewer under
``make mutation``, which runs these once per mutant)."""
TestStockItemMachine = StockItemMachine.TestCase
TestStockItemMachine.settings = MACHINE
TestReservationsNeverOversell = ReservationsNeverOversell.TestCase
TestReservationsNeverOversell.settings = MACHINE
