"""The ``StockItem`` aggregate: the stock of one SKU at one location.

Decide apart from evolve. Each public command checks its invariants against the current
state and either refuses (a :mod:`domain.errors` exception, nothing recorded), decides
that the command already took effect (no event), or triggers events. Each event's
``apply`` only mutates state and cannot fail, because it runs again on every replay.

Every event carries the SKU, the location and the position *after* it (on hand,
reserved, available), so a consumer can apply "at version V the position is X" as an
absolute, idempotent state transition without holding the stream.

Topics are explicit (``stockstream:StockReserved``), never module paths, so this module
can move without breaking stored streams. An event's schema version is its
``class_version``; stored older versions are upcast on read (see ``Adjusted``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from eventsourcing.domain import Aggregate

from domain.errors import (
    CountAlreadyRecorded,
    IdempotencyKeyReused,
    InsufficientOnHand,
    InsufficientStock,
    InvalidQuantity,
    InvalidRequest,
    ReservationClosed,
    UnknownReservation,
)
from domain.identifiers import require_identifier, require_quantity, stream_name, stream_uuid

ADJUSTMENT_REASONS = (
    "damaged", "expired", "theft", "shrinkage", "found", "returned", "correction", "other",
)
"""Reason codes of an adjustment (a closed set; ``StockAdjusted`` v2)."""
AdjustmentReason = Literal[
    "damaged", "expired", "theft", "shrinkage", "found", "returned", "correction", "other",
]
MAX_NOTE_LENGTH = 500
RELEASE_REASONS = ("cancelled", "expired")
ReleaseReason = Literal["cancelled", "expired"]

#: How many closed reservations, idempotency keys and count ids a stream remembers.
#: Enough to absorb any realistic client retry window; bounded so the state (and its
#: snapshot) stays small on a busy SKU-location.
REMEMBERED = 1000

MAX_QUANTITY = 1_000_000_000
"""Quantities above this are refused: no shelf holds a billion units, a typo does."""


@dataclass(frozen=True)
class Reservation:
    """An open reservation: an order holds ``quantity`` units here until fulfilled or released."""

    order_id: str
    quantity: int
    channel: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Position:
    """What a channel may rely on for one SKU-location at one stream version."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    safety_stock: int
    oversell_buffer: int
    version: int
    reservations: tuple[Reservation, ...] = ()
    open_reservations: int = 0
    """How many reservations are open; ``reservations`` may list only some of them."""

    @property
    def available(self) -> int:
        """Available to sell: on hand less reserved less safety stock (may be negative)."""
        return self.on_hand - self.reserved - self.safety_stock

    @classmethod
    def empty(cls, sku: str, location: str) -> Position:
        """The position of a SKU-location that has never had an event: all zeros."""
        stream_name(sku, location)  # validates both identifiers
        return cls(sku, location, 0, 0, 0, 0, 0)


def on_hand_at(events: Iterable[StockItem.Event], moment: datetime) -> int:
    """On hand as a stream said at ``moment``: the position of its last event at or before
    it (events carry the position after them), 0 before the first. ``events`` oldest first."""
    on_hand = 0
    for event in events:
        if event.timestamp > moment:
            break
        on_hand = event.on_hand
    return on_hand


def _require_aware(kind: str, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidRequest(f"{kind} must be a timestamp with a time zone", field=kind)
    return value


def _remember(memory: dict[str, str], key: str, value: str) -> None:
    memory[key] = value
    while len(memory) > REMEMBERED:
        del memory[next(iter(memory))]


class StockItem(Aggregate):
    """Stock of one SKU at one location, as an event stream ``{sku}|{location}``."""

    TOPIC = "stockstream:StockItem"
    class_version = 2
    """The snapshot state's version: v2 added the running ``reserved`` figure."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A v1 snapshot has no ``reserved``: it is the sum of the open reservations."""
        state["reserved"] = sum(int(r["quantity"]) for r in state["reservations"].values())

    class Event(Aggregate.Event):
        """Every event names its SKU-location and the position after it."""

        TOPIC = "stockstream:StockItem.Event"
        sku: str
        location: str
        on_hand: int
        reserved: int
        available: int

    class Created(Event, Aggregate.Created):
        """The stream's first event (wire type ``StockItemCreated``)."""

        TOPIC = "stockstream:StockItemCreated"

    class Received(Event):
        """A receipt of goods increased on hand (wire type ``StockReceived``)."""

        TOPIC = "stockstream:StockReceived"
        quantity: int
        reference: str | None
        idempotency_key: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.on_hand += self.quantity
            if self.idempotency_key is not None:
                _remember(aggregate.idempotency_keys, self.idempotency_key,
                          StockItem.receipt_fingerprint(self.quantity, self.reference))

    class Adjusted(Event):
        """On hand was corrected by a delta for a reason code, with an optional note
        (wire type ``StockAdjusted``).

        Version 2 replaced v1's ``reason`` (five words) with ``reason_code`` from a larger
        closed set plus a free-text ``note``. Stored v1 events are upcast on read.
        """

        TOPIC = "stockstream:StockAdjusted"
        class_version = 2
        delta: int
        reason_code: str
        note: str | None
        idempotency_key: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason_code"] = state.pop("reason")
            state["note"] = None

        def apply(self, aggregate: Any) -> None:
            aggregate.on_hand += self.delta
            if self.idempotency_key is not None:
                _remember(aggregate.idempotency_keys, self.idempotency_key,
                          StockItem.adjustment_fingerprint(self.delta, self.reason_code,
                                                           self.note))

    class Reserved(Event):
        """An order's reservation was set to ``quantity`` (wire type ``StockReserved``)."""

        TOPIC = "stockstream:StockReserved"
        order_id: str
        quantity: int
        previous_quantity: int
        channel: str
        expires_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            current = aggregate.reservations.get(self.order_id)
            aggregate.reserved += self.quantity - (current["quantity"] if current else 0)
            # A new dict, never an update in place: copies of the aggregate share entries.
            aggregate.reservations[self.order_id] = {
                "quantity": self.quantity,
                "channel": self.channel,
                "expires_at": self.expires_at,
            }

    class Released(Event):
        """A reservation was cancelled or expired (wire type ``ReservationReleased``)."""

        TOPIC = "stockstream:ReservationReleased"
        order_id: str
        quantity: int
        reason: str

        def apply(self, aggregate: Any) -> None:
            closed = aggregate.reservations.pop(self.order_id, None)
            if closed is not None:
                aggregate.reserved -= closed["quantity"]
            _remember(aggregate.closed_reservations, self.order_id, self.reason)

    class Fulfilled(Event):
        """An order shipped ``quantity`` units and its reservation closed
        (wire type ``ReservationFulfilled``); any unshipped remainder returns to stock."""

        TOPIC = "stockstream:ReservationFulfilled"
        order_id: str
        quantity: int

        def apply(self, aggregate: Any) -> None:
            closed = aggregate.reservations.pop(self.order_id, None)
            if closed is not None:
                aggregate.reserved -= closed["quantity"]
            aggregate.on_hand -= self.quantity
            _remember(aggregate.closed_reservations, self.order_id, "fulfilled")

    class Counted(Event):
        """A physical count set on hand absolutely (wire type ``StockCounted``).

        ``previous_on_hand`` is what the stream said at ``counted_at``; ``delta`` is the
        correction, applied now so that movements after the count stay on top of it.
        """

        TOPIC = "stockstream:StockCounted"
        count_id: str
        counted: int
        previous_on_hand: int
        delta: int
        counted_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.on_hand += self.delta
            _remember(aggregate.recorded_counts, self.count_id,
                      StockItem.count_fingerprint(self.counted, self.counted_at))

    class PolicyChanged(Event):
        """Safety stock and oversell buffer were set (wire type ``StockPolicyChanged``)."""

        TOPIC = "stockstream:StockPolicyChanged"
        safety_stock: int
        oversell_buffer: int

        def apply(self, aggregate: Any) -> None:
            aggregate.safety_stock = self.safety_stock
            aggregate.oversell_buffer = self.oversell_buffer

    class Snapshot(Aggregate.Snapshot):  # type: ignore[valid-type,misc]
        TOPIC = "stockstream:StockItem.Snapshot"

    # Declared for type checkers; the state is set in __init__ and by events.
    sku: str
    location: str
    on_hand: int
    reserved: int
    """Units held by open reservations: kept as a running figure (summing thousands of
    open reservations on every command would make a flash sale's hot SKU slow)."""
    safety_stock: int
    oversell_buffer: int
    reservations: dict[str, dict[str, Any]]
    closed_reservations: dict[str, str]
    idempotency_keys: dict[str, str]
    recorded_counts: dict[str, str]

    def __init__(self, sku: str, location: str) -> None:
        self.sku = sku
        self.location = location
        self.on_hand = 0
        self.reserved = 0
        self.safety_stock = 0
        self.oversell_buffer = 0
        self.reservations = {}
        self.closed_reservations = {}
        self.idempotency_keys = {}
        self.recorded_counts = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> StockItem:
        """A copy whose state can be mutated without touching this one.

        Much faster than the generic deep copy (the store copies an aggregate per command):
        every attribute is immutable but the dicts and the pending list, whose entries are
        never changed in place (events replace a reservation's dict, never update it), so
        copying the containers is enough.
        """
        clone = object.__new__(type(self))
        for name, value in vars(self).items():
            clone.__dict__[name] = value.copy() if isinstance(value, dict | list) else value
        return clone

    # ----------------------------------------------------------------- creation

    @classmethod
    def create(cls, sku: str, location: str) -> StockItem:
        """Start the stream of a SKU-location; raises ``InvalidIdentifier``."""
        stream_name(sku, location)
        return cls._create(
            cls.Created,
            id=stream_uuid(sku, location),
            sku=sku,
            location=location,
            on_hand=0,
            reserved=0,
            available=0,
        )

    # ------------------------------------------------------------------ derived

    @property
    def available(self) -> int:
        """Available to sell: on hand less reserved less safety stock."""
        return self.on_hand - self.reserved - self.safety_stock

    @property
    def stream(self) -> str:
        return stream_name(self.sku, self.location)

    def position(self, only: Iterable[str] | None = None) -> Position:
        """The position a channel reads: figures, version and open reservations.

        ``only`` limits the listed reservations to those order ids (a command's answer
        lists what it concerns, not every open reservation of a hot SKU).
        """
        if only is None:
            listed = sorted(self.reservations)
        else:
            listed = sorted(o for o in set(only) if o in self.reservations)
        return Position(
            sku=self.sku,
            location=self.location,
            on_hand=self.on_hand,
            reserved=self.reserved,
            safety_stock=self.safety_stock,
            oversell_buffer=self.oversell_buffer,
            version=self.version,
            reservations=tuple(self._reservation(o) for o in listed),
            open_reservations=len(self.reservations),
        )

    def _reservation(self, order_id: str) -> Reservation:
        r = self.reservations[order_id]
        return Reservation(order_id, int(r["quantity"]), str(r["channel"]), r["expires_at"])

    def reservation(self, order_id: str) -> Reservation | None:
        return self._reservation(order_id) if order_id in self.reservations else None

    def outcome_of(self, order_id: str) -> str | None:
        """How a closed reservation ended (fulfilled, cancelled, expired), if remembered."""
        return self.closed_reservations.get(order_id)

    # ----------------------------------------------------------------- commands

    def receive(
        self, quantity: int, reference: str | None = None, idempotency_key: str | None = None
    ) -> None:
        """Record a receipt of ``quantity`` ≥ 1 units; a repeated idempotency key is a no-op."""
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        if reference is not None and (not isinstance(reference, str) or len(reference) > 200):
            raise InvalidRequest("reference must be text of at most 200 characters",
                                 field="reference")
        if self._already_done(idempotency_key, self.receipt_fingerprint(quantity, reference)):
            return
        self._trigger(self.Received, on_hand=self.on_hand + quantity, quantity=quantity,
                      reference=reference, idempotency_key=idempotency_key)

    def adjust(
        self,
        delta: int,
        reason: str,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> None:
        """Correct on hand by a non-zero ``delta`` for a reason code (and an optional note);
        refuses to go below zero."""
        require_quantity("delta", delta)
        if delta == 0:
            raise InvalidRequest("delta must not be zero", field="delta")
        self._check_bounds("delta", abs(delta))
        if reason not in ADJUSTMENT_REASONS:
            raise InvalidRequest(
                f"reason must be one of {', '.join(ADJUSTMENT_REASONS)}; got {reason!r}",
                field="reason",
            )
        if note is not None and (
            not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH or not note.isprintable()
        ):
            raise InvalidRequest(
                f"note must be printable text of at most {MAX_NOTE_LENGTH} characters",
                field="note",
            )
        fingerprint = self.adjustment_fingerprint(delta, reason, note)
        if self._already_done(idempotency_key, fingerprint):
            return
        if self.on_hand + delta < 0:
            raise InsufficientOnHand(delta=delta, on_hand=self.on_hand)
        self._trigger(self.Adjusted, on_hand=self.on_hand + delta, delta=delta,
                      reason_code=reason, note=note, idempotency_key=idempotency_key)

    def set_policy(self, safety_stock: int, oversell_buffer: int) -> None:
        """Set safety stock and oversell buffer (both ≥ 0); the same values again is a no-op."""
        require_quantity("safety_stock", safety_stock, minimum=0)
        require_quantity("oversell_buffer", oversell_buffer, minimum=0)
        self._check_bounds("safety_stock", safety_stock)
        self._check_bounds("oversell_buffer", oversell_buffer)
        if (safety_stock, oversell_buffer) == (self.safety_stock, self.oversell_buffer):
            return
        self._trigger(self.PolicyChanged, safety_stock=safety_stock,
                      oversell_buffer=oversell_buffer,
                      available=self.on_hand - self.reserved - safety_stock)

    def reserve(
        self,
        order_id: str,
        quantity: int,
        channel: str,
        expires_at: datetime | None = None,
    ) -> None:
        """Set the order's reservation to ``quantity`` (absolute, not added).

        Creating or increasing a reservation must fit:
        ``reserved after ≤ on hand − safety stock + oversell buffer``; decreasing always fits.
        The same quantity and channel again is a no-op (an earlier expiry stays).
        """
        require_identifier("order_id", order_id)
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        require_identifier("channel", channel)
        if expires_at is not None:
            _require_aware("expires_at", expires_at)
        outcome = self.outcome_of(order_id)
        if outcome is not None:
            raise ReservationClosed(order_id, outcome)
        current = self.reservation(order_id)
        previous = current.quantity if current else 0
        if current is not None and current.quantity == quantity and current.channel == channel:
            return
        if quantity > previous:
            reservable = self.on_hand - self.safety_stock + self.oversell_buffer - (
                self.reserved - previous
            )
            if quantity > reservable:
                raise InsufficientStock(
                    requested=quantity, available=self.available, reservable=max(reservable, 0)
                )
        self._trigger(self.Reserved, reserved=self.reserved - previous + quantity,
                      order_id=order_id, quantity=quantity, previous_quantity=previous,
                      channel=channel,
                      expires_at=expires_at if expires_at is not None else (
                          current.expires_at if current else None))

    def release(self, order_id: str, reason: str = "cancelled") -> None:
        """Release an open reservation; releasing a closed one again is a no-op.

        Raises ``UnknownReservation`` if the order never reserved here.
        """
        require_identifier("order_id", order_id)
        if reason not in RELEASE_REASONS:
            raise InvalidRequest(f"reason must be one of {', '.join(RELEASE_REASONS)}",
                                 field="reason")
        current = self.reservation(order_id)
        if current is None:
            if self.outcome_of(order_id) is not None:
                return
            raise UnknownReservation(order_id)
        self._trigger(self.Released, reserved=self.reserved - current.quantity,
                      order_id=order_id, quantity=current.quantity, reason=reason)

    def fulfil(self, order_id: str, quantity: int | None = None) -> None:
        """Ship ``quantity`` (default: all reserved) of an open reservation and close it.

        Any remainder returns to available. Repeating a fulfilment is a no-op; fulfilling a
        released reservation raises ``ReservationClosed``.
        """
        require_identifier("order_id", order_id)
        current = self.reservation(order_id)
        if current is None:
            outcome = self.outcome_of(order_id)
            if outcome == "fulfilled":
                return
            if outcome is not None:
                raise ReservationClosed(order_id, outcome)
            raise UnknownReservation(order_id)
        shipped = current.quantity if quantity is None else quantity
        require_quantity("quantity", shipped, minimum=1)
        if shipped > current.quantity:
            raise InvalidRequest(
                f"cannot fulfil {shipped}: the reservation holds {current.quantity}",
                field="quantity",
            )
        self._trigger(self.Fulfilled, on_hand=self.on_hand - shipped,
                      reserved=self.reserved - current.quantity,
                      order_id=order_id, quantity=shipped)

    def record_count(
        self,
        count_id: str,
        counted: int,
        counted_at: datetime,
        on_hand_at_count: int | None = None,
    ) -> None:
        """Set on hand from a physical count taken at ``counted_at``.

        ``on_hand_at_count`` is what the stream said at ``counted_at`` (the application
        service folds it from the stream); the correction ``counted − on_hand_at_count`` is
        applied now, so movements recorded after the count stay on top of it. A count id
        already recorded with the same figures is a no-op; with others, an error.
        """
        require_identifier("count_id", count_id)
        require_quantity("counted", counted, minimum=0)
        self._check_bounds("counted", counted)
        _require_aware("counted_at", counted_at)
        seen = self.recorded_counts.get(count_id)
        if seen is not None:
            if seen == self.count_fingerprint(counted, counted_at):
                return
            raise CountAlreadyRecorded(count_id)
        before = self.on_hand if on_hand_at_count is None else on_hand_at_count
        delta = counted - before
        self._trigger(self.Counted, on_hand=self.on_hand + delta, count_id=count_id,
                      counted=counted, previous_on_hand=before, delta=delta,
                      counted_at=counted_at)

    def expire_overdue(self, now: datetime) -> int:
        """Release every reservation whose expiry is at or before ``now``; returns how many."""
        _require_aware("now", now)
        overdue = [
            order_id
            for order_id, r in sorted(self.reservations.items())
            if r["expires_at"] is not None and r["expires_at"] <= now
        ]
        for order_id in overdue:
            self.release(order_id, reason="expired")
        return len(overdue)

    @staticmethod
    def expiry(now: datetime, ttl_seconds: int | None) -> datetime | None:
        """The expiry of a reservation made at ``now`` for ``ttl_seconds`` (None: no expiry)."""
        if ttl_seconds is None:
            return None
        require_quantity("ttl_seconds", ttl_seconds, minimum=1)
        if ttl_seconds > 366 * 24 * 3600:
            raise InvalidRequest("ttl_seconds must be at most a year", field="ttl_seconds")
        return now + timedelta(seconds=ttl_seconds)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def receipt_fingerprint(quantity: int, reference: str | None) -> str:
        return f"receipt:{quantity}:{reference or ''}"

    @staticmethod
    def adjustment_fingerprint(delta: int, reason: str, note: str | None = None) -> str:
        return f"adjustment:{delta}:{reason}:{note or ''}"

    @staticmethod
    def count_fingerprint(counted: int, counted_at: datetime) -> str:
        return f"count:{counted}:{counted_at.astimezone(UTC).isoformat()}"

    @staticmethod
    def _check_bounds(kind: str, value: int) -> None:
        if value > MAX_QUANTITY:
            raise InvalidQuantity(f"{kind} must be at most {MAX_QUANTITY}", field=kind)

    def _already_done(self, key: str | None, fingerprint: str) -> bool:
        if key is None:
            return False
        if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
            raise InvalidRequest("an idempotency key must be 1 to 200 printable characters",
                                 field="idempotency_key")
        seen = self.idempotency_keys.get(key)
        if seen is None:
            return False
        if seen != fingerprint:
            raise IdempotencyKeyReused(key)
        return True

    def _trigger(self, event_class: type[Aggregate.Event], **fields: Any) -> None:
        """Trigger an event carrying the SKU-location and the position after it.

        Callers pass whichever of ``on_hand``/``reserved``/``available`` the event changes;
        the rest are computed from the current state with those overrides.
        """
        on_hand = fields.pop("on_hand", self.on_hand)
        reserved = fields.pop("reserved", self.reserved)
        available = fields.pop("available", on_hand - reserved - self.safety_stock)
        self.trigger_event(
            event_class,
            sku=self.sku,
            location=self.location,
            on_hand=on_hand,
            reserved=reserved,
            available=available,
            **fields,
        )
