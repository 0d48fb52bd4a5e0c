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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from eventsourcing.domain import Aggregate

from domain.errors import (
    CountAlreadyRecorded,
    FulfilmentConflict,
    IdempotencyKeyReused,
    InsufficientOnHand,
    InsufficientStock,
    InvalidQuantity,
    InvalidRequest,
    ReservationClosed,
    UnknownReservation,
)
from domain.identifiers import require_identifier, require_quantity, stream_name, stream_uuid

AdjustmentReason = Literal[
    "damaged", "expired", "theft", "shrinkage", "found", "returned", "correction", "other",
]
"""Reason codes of an adjustment (a closed set; ``StockAdjusted`` v2). The wire contract
(``contracts.events``) and the HTTP request models use this one declaration."""
ADJUSTMENT_REASONS: tuple[str, ...] = get_args(AdjustmentReason)
AdjustmentReasonV1 = Literal["damaged", "shrinkage", "found", "correction", "other"]
"""The five reason words of ``StockAdjusted`` v1 (events stored before v2, and the
deprecated wire version published beside v2)."""
ADJUSTMENT_REASONS_V1: tuple[str, ...] = get_args(AdjustmentReasonV1)
MAX_NOTE_LENGTH = 500
ReleaseReason = Literal["cancelled", "expired"]
RELEASE_REASONS: tuple[str, ...] = get_args(ReleaseReason)
MAX_TTL_SECONDS = 366 * 24 * 3600
"""The longest a reservation may be held (a year, leap days included)."""

Recall = Callable[[str], "str | None"]
"""What a stream recorded under a memo (see :meth:`StockItem.Event.memos`) within the
idempotency window, or None. The aggregate remembers no ids itself: a hot SKU-location
sees thousands of orders a day, and its state (and snapshot) must not grow with them. The
store keeps the memos beside the events, written in the same atomic write, and the
command service hands the aggregate this lookup."""


CountOutcome = Literal["recorded", "superseded", "already-recorded"]
"""What :meth:`StockItem.record_count` decided: the count corrects on hand (``recorded``),
is older than the latest applied count and changes nothing (``superseded``; still an
event), or its count id was already recorded with the same figures
(``already-recorded``: a repeat, no event)."""


def nothing_recalled(memo: str) -> str | None:
    """The recall of a stream with no memos (a new stream, or a test of one decision)."""
    return None


EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9000, 1, 1, tzinfo=UTC)
"""Timestamps outside these bounds are refused: no count or expiry is that far out, and
arithmetic on ``datetime.min``/``max`` overflows."""

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


def movements_after(events: Iterable[StockItem.Event], moment: datetime) -> int:
    """The net change to on hand of the movements (receipts, adjustments, fulfilments)
    recorded after ``moment``; counts are not movements. ``events`` in any order."""
    return sum(e.movement for e in events if e.timestamp > moment)


def require_timestamp(kind: str, value: Any) -> datetime:
    """Return ``value`` if it is a timezone-aware timestamp within the sane bounds."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidRequest(f"{kind} must be a timestamp with a time zone", field=kind)
    try:
        inside = EARLIEST_TIMESTAMP <= value < LATEST_TIMESTAMP
    except OverflowError:  # a UTC offset pushing the moment past datetime's range
        inside = False
    if not inside:
        raise InvalidRequest(
            f"{kind} must be between {EARLIEST_TIMESTAMP.year} and {LATEST_TIMESTAMP.year}",
            field=kind,
        )
    return value


class StockItem(Aggregate):
    """Stock of one SKU at one location, as an event stream ``{sku}|{location}``."""

    TOPIC = "stockstream:StockItem"
    class_version = 3
    """The snapshot state's version: v2 added the running ``reserved`` figure; v3 moved the
    remembered ids out of the state (the store's memos) and added ``last_counted_at``."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A v1 snapshot has no ``reserved``: it is the sum of the open reservations."""
        state["reserved"] = sum(int(r["quantity"]) for r in state["reservations"].values())

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A v2 snapshot remembered ids in its state (the store's memos hold them now) and
        had no ``last_counted_at``: it is the latest ``counted_at`` it remembered."""
        for name in ("closed_reservations", "idempotency_keys"):
            state.pop(name, None)
        counts = state.pop("recorded_counts", None) or {}
        moments = [datetime.fromisoformat(f.split(":", 2)[2]) for f in counts.values()]
        state["last_counted_at"] = max(moments) if moments else None

    class Event(Aggregate.Event):
        """Every event names its SKU-location and the position after it."""

        TOPIC = "stockstream:StockItem.Event"
        sku: str
        location: str
        on_hand: int
        reserved: int
        available: int

        def memos(self) -> tuple[tuple[str, str], ...]:
            """What this event makes a repeat recognisable by, as (memo, value) pairs:
            an idempotency key, a closed order, a count id. The store keeps them for the
            idempotency window, in the same atomic write as the event."""
            return ()

        @property
        def movement(self) -> int:
            """How much this event moved on hand (counts set it, so they are not movements)."""
            return 0

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

        def memos(self) -> tuple[tuple[str, str], ...]:
            if self.idempotency_key is None:
                return ()
            return ((StockItem.key_memo(self.idempotency_key),
                     StockItem.receipt_fingerprint(self.quantity, self.reference)),)

        @property
        def movement(self) -> int:
            return self.quantity

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

        def memos(self) -> tuple[tuple[str, str], ...]:
            if self.idempotency_key is None:
                return ()
            return ((StockItem.key_memo(self.idempotency_key),
                     StockItem.adjustment_fingerprint(self.delta, self.reason_code,
                                                      self.note)),)

        @property
        def movement(self) -> int:
            return self.delta

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

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.order_memo(self.order_id), self.reason),)

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

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.order_memo(self.order_id), f"fulfilled:{self.quantity}"),)

        @property
        def movement(self) -> int:
            return -self.quantity

    class Counted(Event):
        """A physical count set on hand absolutely (wire type ``StockCounted``).

        On hand after counts is the figure of the count with the latest ``counted_at``
        plus every movement recorded after that moment. So ``previous_on_hand`` is on hand
        less the movements recorded after ``counted_at`` (what the stream says the shelf
        held then), and ``delta`` the correction, applied now. A count taken before the
        latest applied one is ``superseded``: recorded, with delta 0, changing nothing.

        Version 2 added ``superseded``; stored v1 counts were all applied.
        """

        TOPIC = "stockstream:StockCounted"
        class_version = 2
        count_id: str
        counted: int
        previous_on_hand: int
        delta: int
        counted_at: datetime
        superseded: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["superseded"] = False

        def apply(self, aggregate: Any) -> None:
            aggregate.on_hand += self.delta
            if not self.superseded:
                aggregate.last_counted_at = self.counted_at

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.count_memo(self.count_id),
                     StockItem.count_fingerprint(self.counted, self.counted_at)),)

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
    last_counted_at: datetime | None
    """When the latest applied count was taken: an older count is superseded."""

    def __init__(self, sku: str, location: str) -> None:
        self.sku = sku
        self.location = location
        self.on_hand = 0
        self.reserved = 0
        self.safety_stock = 0
        self.oversell_buffer = 0
        self.reservations = {}
        self.last_counted_at = None

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

    def outcome_of(self, order_id: str, recall: Recall = nothing_recalled) -> str | None:
        """How a closed reservation ended within the idempotency window: ``cancelled``,
        ``expired`` or ``fulfilled:{quantity}``; None for an open or unknown one."""
        if order_id in self.reservations:
            return None
        return self._recalled(self.order_memo(order_id), recall)

    # ----------------------------------------------------------------- commands

    def receive(
        self,
        quantity: int,
        reference: str | None = None,
        idempotency_key: str | None = None,
        recall: Recall = nothing_recalled,
    ) -> None:
        """Record a receipt of ``quantity`` ≥ 1 units; a repeated idempotency key is a no-op."""
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        if reference is not None and (not isinstance(reference, str) or len(reference) > 200):
            raise InvalidRequest("reference must be text of at most 200 characters",
                                 field="reference")
        if self._already_done(idempotency_key, self.receipt_fingerprint(quantity, reference),
                              recall):
            return
        self._trigger(self.Received, on_hand=self.on_hand + quantity, quantity=quantity,
                      reference=reference, idempotency_key=idempotency_key)

    def adjust(
        self,
        delta: int,
        reason: str,
        idempotency_key: str | None = None,
        note: str | None = None,
        recall: Recall = nothing_recalled,
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
        if self._already_done(idempotency_key, fingerprint, recall):
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
        recall: Recall = nothing_recalled,
        *,
        reopen: bool = False,
    ) -> None:
        """Set the order's reservation to ``quantity`` (absolute, not added).

        Creating or increasing a reservation must fit:
        ``reserved after ≤ on hand − safety stock + oversell buffer``; decreasing always fits.
        The same quantity and channel again is a no-op (an earlier expiry stays). A
        reservation closed within the idempotency window is never opened again, except
        with ``reopen`` one that was released (cancelled or expired), never a fulfilled
        one: an order placed again after it failed (DESIGN §5.2) holds again under its id.
        """
        require_identifier("order_id", order_id)
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        require_identifier("channel", channel)
        if expires_at is not None:
            require_timestamp("expires_at", expires_at)
        outcome = self.outcome_of(order_id, recall)
        if outcome is not None and not (reopen and _outcome_word(outcome) != "fulfilled"):
            raise ReservationClosed(order_id, _outcome_word(outcome))
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

    def reschedule(
        self, order_id: str, expires_at: datetime | None, recall: Recall = nothing_recalled
    ) -> None:
        """Set the expiry of an open reservation (None: it never expires), keeping its
        quantity and channel: an order's ``ttl_seconds`` changed (DESIGN §5.2). Recorded
        as a ``Reserved`` of the same quantity; the same expiry again is a no-op.

        Raises ``UnknownReservation`` for an order that never reserved here and
        ``ReservationClosed`` for a released or fulfilled one.
        """
        require_identifier("order_id", order_id)
        if expires_at is not None:
            require_timestamp("expires_at", expires_at)
        current = self.reservation(order_id)
        if current is None:
            outcome = self.outcome_of(order_id, recall)
            if outcome is None:
                raise UnknownReservation(order_id)
            raise ReservationClosed(order_id, _outcome_word(outcome))
        if current.expires_at == expires_at:
            return
        self._trigger(self.Reserved, order_id=order_id, quantity=current.quantity,
                      previous_quantity=current.quantity, channel=current.channel,
                      expires_at=expires_at)

    def release(
        self, order_id: str, reason: str = "cancelled", recall: Recall = nothing_recalled
    ) -> None:
        """Release an open reservation; releasing a released one again is a no-op.

        Raises ``ReservationClosed`` if it was fulfilled (the goods shipped: cancelling
        cannot bring them back) and ``UnknownReservation`` if the order never reserved here.
        """
        require_identifier("order_id", order_id)
        if reason not in RELEASE_REASONS:
            raise InvalidRequest(f"reason must be one of {', '.join(RELEASE_REASONS)}",
                                 field="reason")
        current = self.reservation(order_id)
        if current is None:
            outcome = self.outcome_of(order_id, recall)
            if outcome is None:
                raise UnknownReservation(order_id)
            if _outcome_word(outcome) == "fulfilled":
                raise ReservationClosed(order_id, "fulfilled")
            return
        self._trigger(self.Released, reserved=self.reserved - current.quantity,
                      order_id=order_id, quantity=current.quantity, reason=reason)

    def fulfil(
        self, order_id: str, quantity: int | None = None, recall: Recall = nothing_recalled
    ) -> None:
        """Ship ``quantity`` (default: all reserved) of an open reservation and close it.

        Any remainder returns to available. Repeating a fulfilment without a quantity or
        with the one shipped is a no-op, with another raises ``FulfilmentConflict``;
        fulfilling a released reservation raises ``ReservationClosed``.
        """
        require_identifier("order_id", order_id)
        current = self.reservation(order_id)
        if current is None:
            outcome = self.outcome_of(order_id, recall)
            if outcome is None:
                raise UnknownReservation(order_id)
            if _outcome_word(outcome) != "fulfilled":
                raise ReservationClosed(order_id, outcome)
            shipped_before = int(outcome.partition(":")[2] or 0)
            if quantity is not None and quantity != shipped_before:
                raise FulfilmentConflict(order_id, fulfilled=shipped_before, requested=quantity)
            return
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
        movements_since: int = 0,
        recall: Recall = nothing_recalled,
    ) -> CountOutcome:
        """Set on hand from a physical count taken at ``counted_at``; returns what it
        decided (:data:`CountOutcome`).

        On hand becomes ``counted`` plus ``movements_since``: the net movement recorded
        after ``counted_at`` (the service sums it with :func:`movements_after`), so sales
        rung up after the count stay on top of it, and two counts of one moment agree
        instead of correcting twice. A count taken before the latest applied one is
        recorded as superseded and changes nothing. A count id already recorded with the
        same figures is a no-op (``already-recorded``); with others, an error
        (``CountAlreadyRecorded``). Whether a count was already recorded is this method's
        answer alone: callers ask it, they do not infer it from the events.
        """
        require_identifier("count_id", count_id)
        require_quantity("counted", counted, minimum=0)
        self._check_bounds("counted", counted)
        require_timestamp("counted_at", counted_at)
        require_quantity("movements_since", movements_since)
        seen = self._recalled(self.count_memo(count_id), recall)
        if seen is not None:
            if seen == self.count_fingerprint(counted, counted_at):
                return "already-recorded"
            raise CountAlreadyRecorded(count_id)
        if self.last_counted_at is not None and counted_at < self.last_counted_at:
            self._trigger(self.Counted, count_id=count_id, counted=counted,
                          previous_on_hand=self.on_hand, delta=0, counted_at=counted_at,
                          superseded=True)
            return "superseded"
        before = self.on_hand - movements_since
        delta = counted - before
        self._trigger(self.Counted, on_hand=self.on_hand + delta, count_id=count_id,
                      counted=counted, previous_on_hand=before, delta=delta,
                      counted_at=counted_at, superseded=False)
        return "recorded"

    def expire_overdue(self, now: datetime) -> int:
        """Release every reservation whose expiry is at or before ``now``; returns how many."""
        require_timestamp("now", now)
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
        if ttl_seconds > MAX_TTL_SECONDS:
            raise InvalidRequest("ttl_seconds must be at most a year", field="ttl_seconds")
        return now + timedelta(seconds=ttl_seconds)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def key_memo(idempotency_key: str) -> str:
        """The memo of a receipt's or adjustment's idempotency key."""
        return f"key:{idempotency_key}"

    @staticmethod
    def order_memo(order_id: str) -> str:
        """The memo of a closed reservation: its outcome."""
        return f"order:{order_id}"

    @staticmethod
    def count_memo(count_id: str) -> str:
        """The memo of a recorded count: its figures."""
        return f"count:{count_id}"

    @staticmethod
    def receipt_fingerprint(quantity: int, reference: str | None) -> str:
        return f"receipt:{quantity}:{reference or ''}"

    @staticmethod
    def adjustment_fingerprint(delta: int, reason: str, note: str | None = None) -> str:
        return f"adjustment:{delta}:{reason}:{note or ''}"

    @staticmethod
    def count_fingerprint(counted: int, counted_at: datetime) -> str:
        # counted_at is bounded (require_timestamp), so converting to UTC cannot overflow.
        return f"count:{counted}:{counted_at.astimezone(UTC).isoformat()}"

    @staticmethod
    def _check_bounds(kind: str, value: int) -> None:
        if value > MAX_QUANTITY:
            raise InvalidQuantity(f"{kind} must be at most {MAX_QUANTITY}", field=kind)

    def _already_done(self, key: str | None, fingerprint: str, recall: Recall) -> bool:
        if key is None:
            return False
        if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
            raise InvalidRequest("an idempotency key must be 1 to 200 printable characters",
                                 field="idempotency_key")
        seen = self._recalled(self.key_memo(key), recall)
        if seen is None:
            return False
        if seen != fingerprint:
            raise IdempotencyKeyReused(key)
        return True

    def _recalled(self, memo: str, recall: Recall) -> str | None:
        """What this decision's own pending events, or else the stream within the window,
        recorded under ``memo``."""
        for event in reversed(self.pending_events):
            for name, value in cast(StockItem.Event, event).memos():
                if name == memo:
                    return value
        return recall(memo)

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


def _outcome_word(outcome: str) -> str:
    """``fulfilled`` of ``fulfilled:{quantity}``; other outcomes are words already."""
    return outcome.partition(":")[0]
