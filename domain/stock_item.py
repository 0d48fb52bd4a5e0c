"""The ``StockItem`` aggregate: the stock of one SKU at one location.

Decide apart from evolve. Each public command checks its invariants against the current
state and either refuses (a :mod:`domain.errors` exception, nothing recorded), decides
that the command already took effect (no event), or triggers events. Each event's
``apply`` only mutates state and cannot fail, because it runs again on every replay.

Every event carries the SKU, the location and the position *after* it (on hand,
reserved, available, and the stock in each state and incoming), so a consumer can apply
"at version V the position is X" as an absolute, idempotent state transition without
holding the stream.

Stock states. On hand is split into ``sellable``, ``damaged`` and
``quality_control``; ``on_hand`` is their sum, and only sellable stock is available to
sell: ``available = sellable − reserved − safety_stock``. Receipts, adjustments and
counts act on sellable unless they name a state; moves between states keep on hand.
Incoming supply is a set of expected receipts by reference (a purchase order, or a
transfer on its way here), which available-to-promise (:mod:`domain.promise`) adds up.

Topics are explicit (``stockstream:StockReserved``), never module paths, so this module
can move without breaking stored streams. An event's schema version is its
``class_version``; stored older versions are upcast on read (see ``Adjusted``). Fields
added to an event type after it was first stored (a receipt's ``state``, the position's
``damaged``, ``quality_control``, ``incoming_total`` and ``in_transit``) have a default
that says what the older events meant — sellable stock, nothing held, nothing incoming —
and a stored event without them reads as that default, so old streams load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from eventsourcing.domain import Aggregate

from domain.errors import (
    CountAlreadyRecorded,
    FulfilmentConflict,
    IdempotencyKeyReused,
    IncomingConflict,
    InsufficientInState,
    InsufficientOnHand,
    InsufficientSellable,
    InsufficientStock,
    InvalidQuantity,
    InvalidRequest,
    ReservationClosed,
    TransferConflict,
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

SELLABLE = "sellable"
HELD_STATES = ("damaged", "quality_control")
"""States of stock that is on hand but not for sale."""
STATES = (SELLABLE, *HELD_STATES)
"""The states on-hand stock is in: on hand is their sum."""
StockState = Literal["sellable", "damaged", "quality_control"]
MAX_REASON_LENGTH = 200

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
class IncomingEntry:
    """An expected receipt: ``quantity`` units under ``reference`` due at ``expected_at``.

    ``transfer_from`` names the source location when the entry belongs to a transfer (its
    reference is the transfer id); such an entry is set and closed by the transfer only.
    """

    reference: str
    quantity: int
    expected_at: datetime
    transfer_from: str | None = None


@dataclass(frozen=True)
class Position:
    """What a channel may rely on for one SKU-location at one stream version.

    ``on_hand`` is all stock on hand, ``damaged`` and ``quality_control`` the part of it
    that is held (not for sale); the rest is ``sellable``.
    """

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
    damaged: int = 0
    quality_control: int = 0
    incoming: tuple[IncomingEntry, ...] = ()
    """Expected receipts, by ``expected_at`` then reference."""

    @property
    def sellable(self) -> int:
        """On hand less the held states."""
        return self.on_hand - self.damaged - self.quality_control

    @property
    def available(self) -> int:
        """Available to sell: sellable less reserved less safety stock (may be negative)."""
        return self.sellable - self.reserved - self.safety_stock

    @property
    def held(self) -> dict[str, int]:
        """The held states' stock: ``{damaged, quality_control}``."""
        return {"damaged": self.damaged, "quality_control": self.quality_control}

    @property
    def incoming_total(self) -> int:
        """Units expected, over every incoming entry."""
        return sum(e.quantity for e in self.incoming)

    @property
    def in_transit(self) -> int:
        """The part of ``incoming_total`` that transfers bring."""
        return sum(e.quantity for e in self.incoming if e.transfer_from is not None)

    @classmethod
    def empty(cls, sku: str, location: str) -> Position:
        """The position of a SKU-location that has never had an event: all zeros."""
        stream_name(sku, location)  # validates both identifiers
        return cls(sku, location, 0, 0, 0, 0, 0)


def movements_after(
    events: Iterable[StockItem.Event], moment: datetime, state: str = SELLABLE
) -> int:
    """The net change to ``state``'s stock (sellable by default) of the movements
    (receipts, adjustments, fulfilments, moves between states, transfers) recorded after
    ``moment``; counts are not movements. ``events`` in any order.

    On a stream that never used states every movement is a sellable one, so this is the
    net change to on hand, as it was before states existed."""
    return sum(e.movement_in(state) for e in events if e.timestamp > moment)


def require_state(kind: str, value: Any) -> str:
    """Return ``value`` if it names a stock state (:data:`STATES`)."""
    if value not in STATES:
        raise InvalidRequest(f"{kind} must be one of {', '.join(STATES)}; got {value!r}",
                             field=kind)
    return cast(str, value)


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


_CONTAINERS = (dict, list)
"""The kinds of value a copy of a ``StockItem`` copies rather than shares
(``StockItem.__deepcopy__``): every other attribute is immutable."""


class StockItem(Aggregate):
    """Stock of one SKU at one location, as an event stream ``{sku}|{location}``."""

    TOPIC = "stockstream:StockItem"
    class_version = 6
    """The snapshot state's version: v2 added the running ``reserved`` figure; v3 moved the
    remembered ids out of the state (the store's memos) and added ``last_counted_at``; v4
    split ``on_hand`` into states and added incoming supply; v5 added ``expiry_floor``;
    v6 writes the open reservations as rows (``Snapshot``)."""

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

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """Before states, all stock on hand was sellable, nothing was held or incoming,
        and the one count time was the sellable stock's."""
        state["sellable"] = state.pop("on_hand")
        state["damaged"] = 0
        state["quality_control"] = 0
        state["held_counted_at"] = {}
        state["incoming"] = {}

    @staticmethod
    def upcast_v4_v5(state: dict[str, Any]) -> None:
        """A v4 snapshot has no ``expiry_floor``: the earliest expiry of its open
        reservations."""
        state["expiry_floor"] = min(
            (r["expires_at"] for r in state["reservations"].values()
             if r["expires_at"] is not None), default=None)

    @staticmethod
    def upcast_v5_v6(state: dict[str, Any]) -> None:
        """A v5 snapshot lists the open reservations as entries by order id; v6 as rows."""
        state["reservations"] = _reservation_rows(state["reservations"])

    class Event(Aggregate.Event):
        """Every event names its SKU-location and the position after it.

        The position's later members (keyword-only, with defaults) say what an event
        stored before states meant: nothing held, nothing incoming, so all of on hand
        was sellable.
        """

        TOPIC = "stockstream:StockItem.Event"
        sku: str
        location: str
        on_hand: int
        reserved: int
        available: int
        _: KW_ONLY
        damaged: int = 0
        quality_control: int = 0
        incoming_total: int = 0
        in_transit: int = 0
        """The part of ``incoming_total`` that transfers bring."""

        @property
        def sellable(self) -> int:
            """Sellable stock after this event: on hand less the held states."""
            return self.on_hand - self.damaged - self.quality_control

        def memos(self) -> tuple[tuple[str, str], ...]:
            """What this event makes a repeat recognisable by, as (memo, value) pairs:
            an idempotency key, a closed order, a count id, a transfer's step. The store
            keeps them for the idempotency window, in the same atomic write as the event."""
            return ()

        @property
        def movement(self) -> int:
            """How much this event moved on hand (counts set it, so they are not movements;
            a move between states keeps on hand)."""
            return sum(self.movement_in(state) for state in STATES)

        def movement_in(self, state: str) -> int:
            """How much this event moved the stock in ``state`` (counts set it)."""
            return 0

    class Created(Event, Aggregate.Created):
        """The stream's first event (wire type ``StockItemCreated``)."""

        TOPIC = "stockstream:StockItemCreated"

    class Received(Event):
        """A receipt of goods increased the stock in ``state`` (wire type ``StockReceived``).

        When ``reference`` named an open incoming entry, ``incoming_remaining`` is what the
        entry still expects after this receipt (0: closed); otherwise None.
        """

        TOPIC = "stockstream:StockReceived"
        quantity: int
        reference: str | None
        idempotency_key: str | None
        state: str = SELLABLE
        incoming_remaining: int | None = None

        def apply(self, aggregate: Any) -> None:
            aggregate.add_units(self.state, self.quantity)
            if self.incoming_remaining is not None and self.reference is not None:
                aggregate.set_incoming_entry(self.reference, self.incoming_remaining)

        def memos(self) -> tuple[tuple[str, str], ...]:
            if self.idempotency_key is None:
                return ()
            return ((StockItem.key_memo(self.idempotency_key),
                     StockItem.receipt_fingerprint(self.quantity, self.reference,
                                                   self.state)),)

        def movement_in(self, state: str) -> int:
            return self.quantity if state == self.state else 0

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
        state: str = SELLABLE
        """The state corrected (events stored before states corrected sellable)."""

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason_code"] = state.pop("reason")
            state["note"] = None

        def apply(self, aggregate: Any) -> None:
            aggregate.add_units(self.state, self.delta)

        def memos(self) -> tuple[tuple[str, str], ...]:
            if self.idempotency_key is None:
                return ()
            return ((StockItem.key_memo(self.idempotency_key),
                     StockItem.adjustment_fingerprint(self.delta, self.reason_code,
                                                      self.note, self.state)),)

        def movement_in(self, state: str) -> int:
            return self.delta if state == self.state else 0

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
            aggregate._own_reservations()[self.order_id] = {
                "quantity": self.quantity,
                "channel": self.channel,
                "expires_at": self.expires_at,
            }
            _keep_expiry_floor(aggregate, current, self.expires_at)

    class Released(Event):
        """A reservation was cancelled or expired (wire type ``ReservationReleased``)."""

        TOPIC = "stockstream:ReservationReleased"
        order_id: str
        quantity: int
        reason: str

        def apply(self, aggregate: Any) -> None:
            closed = aggregate._own_reservations().pop(self.order_id, None)
            if closed is not None:
                aggregate.reserved -= closed["quantity"]
                _keep_expiry_floor(aggregate, closed, None)

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.order_memo(self.order_id), self.reason),)

    class Fulfilled(Event):
        """An order shipped ``quantity`` units and its reservation closed
        (wire type ``ReservationFulfilled``); any unshipped remainder returns to stock."""

        TOPIC = "stockstream:ReservationFulfilled"
        order_id: str
        quantity: int

        def apply(self, aggregate: Any) -> None:
            closed = aggregate._own_reservations().pop(self.order_id, None)
            if closed is not None:
                aggregate.reserved -= closed["quantity"]
                _keep_expiry_floor(aggregate, closed, None)
            aggregate.sellable -= self.quantity

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.order_memo(self.order_id), f"fulfilled:{self.quantity}"),)

        def movement_in(self, state: str) -> int:
            return -self.quantity if state == SELLABLE else 0

    class Counted(Event):
        """A physical count set the stock in ``state`` absolutely (wire type
        ``StockCounted``); sellable unless the count named another state.

        The stock of a state after counts is the figure of its count with the latest
        ``counted_at`` plus every movement of that state recorded after that moment. So
        ``previous_on_hand`` is the state's stock less those movements (what the stream
        says the shelf held then), and ``delta`` the correction, applied now. A count
        taken before the latest applied count of its state is ``superseded``: recorded,
        with delta 0, changing nothing. Each state's counts compose on their own.

        Version 2 added ``superseded``; stored v1 counts were all applied. Counts stored
        before states counted sellable stock (all of on hand then).
        """

        TOPIC = "stockstream:StockCounted"
        class_version = 2
        count_id: str
        counted: int
        previous_on_hand: int
        delta: int
        counted_at: datetime
        superseded: bool
        state: str = SELLABLE

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["superseded"] = False

        def apply(self, aggregate: Any) -> None:
            aggregate.add_units(self.state, self.delta)
            if not self.superseded:
                if self.state == SELLABLE:
                    aggregate.last_counted_at = self.counted_at
                else:
                    aggregate.held_counted_at[self.state] = self.counted_at

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.count_memo(self.count_id),
                     StockItem.count_fingerprint(self.counted, self.counted_at,
                                                 self.state)),)

    class PolicyChanged(Event):
        """Safety stock and oversell buffer were set (wire type ``StockPolicyChanged``)."""

        TOPIC = "stockstream:StockPolicyChanged"
        safety_stock: int
        oversell_buffer: int

        def apply(self, aggregate: Any) -> None:
            aggregate.safety_stock = self.safety_stock
            aggregate.oversell_buffer = self.oversell_buffer

    class StateMoved(Event):
        """``quantity`` units moved from one state to another, on hand unchanged
        (wire type ``StockStateMoved``)."""

        TOPIC = "stockstream:StockStateMoved"
        quantity: int
        from_state: str
        to_state: str
        reason: str | None
        idempotency_key: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.add_units(self.from_state, -self.quantity)
            aggregate.add_units(self.to_state, self.quantity)

        def memos(self) -> tuple[tuple[str, str], ...]:
            if self.idempotency_key is None:
                return ()
            return ((StockItem.key_memo(self.idempotency_key),
                     StockItem.move_fingerprint(self.quantity, self.from_state,
                                                self.to_state, self.reason)),)

        def movement_in(self, state: str) -> int:
            if state == self.from_state:
                return -self.quantity
            return self.quantity if state == self.to_state else 0

    class IncomingSet(Event):
        """The expected receipt ``reference`` was set to ``quantity`` due at
        ``expected_at`` (0: cancelled, or closed by its transfer); it expected
        ``previous_quantity`` before (wire type ``StockIncomingSet``).

        ``transfer_from`` names the source location when the entry belongs to a transfer
        (the reference is the transfer id). Incoming stock is not on hand: nothing moves.
        """

        TOPIC = "stockstream:StockIncomingSet"
        reference: str
        quantity: int
        previous_quantity: int
        expected_at: datetime
        transfer_from: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.set_incoming_entry(self.reference, self.quantity, self.expected_at,
                                         self.transfer_from)

    class TransferShipped(Event):
        """A transfer took ``quantity`` sellable units out of this (source) location on
        their way to ``to_location`` (wire type ``StockTransferShipped``).

        Units are conserved: they leave on hand here and are in transit, under the
        transfer's id, until the destination receives them or the transfer records the
        rest as lost (shipped = received + lost + in transit).
        """

        TOPIC = "stockstream:StockTransferShipped"
        transfer_id: str
        quantity: int
        to_location: str

        def apply(self, aggregate: Any) -> None:
            aggregate.sellable -= self.quantity

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.transfer_memo(self.transfer_id), f"shipped:{self.quantity}"),)

        def movement_in(self, state: str) -> int:
            return -self.quantity if state == SELLABLE else 0

    class TransferReceived(Event):
        """The transfer's one receipt added ``quantity`` sellable units at this
        (destination) location and closed its incoming entry, which expected
        ``incoming_closed`` (wire type ``StockTransferReceived``).

        Whatever was shipped and not received stays in transit, in the transfer, until it
        closes and records it as lost (:class:`TransitLost`).
        """

        TOPIC = "stockstream:StockTransferReceived"
        transfer_id: str
        quantity: int
        from_location: str
        incoming_closed: int

        def apply(self, aggregate: Any) -> None:
            aggregate.sellable += self.quantity
            aggregate.incoming.pop(self.transfer_id, None)

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.transfer_memo(self.transfer_id), f"received:{self.quantity}"),)

        def movement_in(self, state: str) -> int:
            return self.quantity if state == SELLABLE else 0

    class TransitLost(Event):
        """A transfer closed: ``quantity`` units it shipped to this (destination) location
        never arrived and are recorded as lost in transit; its incoming entry, if still
        open, closed (it expected ``incoming_closed``) (wire type ``StockTransitLost``).

        Lost units had left on hand at the source when shipped, so nothing moves here:
        the record closes the books (shipped = received + lost).
        """

        TOPIC = "stockstream:StockTransitLost"
        transfer_id: str
        quantity: int
        received: int
        from_location: str
        incoming_closed: int

        def apply(self, aggregate: Any) -> None:
            aggregate.incoming.pop(self.transfer_id, None)

        def memos(self) -> tuple[tuple[str, str], ...]:
            return ((StockItem.transfer_memo(self.transfer_id),
                     f"closed:{self.received}:{self.quantity}"),)

    class Snapshot(Aggregate.Snapshot):  # type: ignore[valid-type,misc]
        TOPIC = "stockstream:StockItem.Snapshot"

        @classmethod
        def take(cls, aggregate: Any) -> Any:
            """The library's snapshot, with the open reservations as rows ``[order id,
            quantity, channel, expiry in ISO 8601 or null]``. A hot SKU's snapshot lists
            thousands of reservations: rows of plain values are encoded by the JSON
            encoder alone, where entries holding datetimes called back into Python for
            each expiry; rows take about half the time to encode, less than half to
            decode, and half the bytes."""
            snapshot = super().take(aggregate)
            snapshot.state["reservations"] = _reservation_rows(aggregate.reservations)
            return snapshot

        def mutate(self, _: None) -> Any:
            """The library's reconstruction (upcasts included), the rows made entries."""
            aggregate = super().mutate(_)
            aggregate.reservations = {
                order_id: {"quantity": quantity, "channel": channel,
                           "expires_at": None if expires_at is None
                           else datetime.fromisoformat(expires_at)}
                for order_id, quantity, channel, expires_at in aggregate.reservations}
            return aggregate

    # Declared for type checkers; the state is set in __init__ and by events.
    sku: str
    location: str
    sellable: int
    damaged: int
    quality_control: int
    reserved: int
    """Units held by open reservations: kept as a running figure (summing thousands of
    open reservations on every command would make a flash sale's hot SKU slow)."""
    safety_stock: int
    oversell_buffer: int
    reservations: dict[str, dict[str, Any]]
    last_counted_at: datetime | None
    """When the latest applied count of sellable stock was taken: an older one is
    superseded."""
    held_counted_at: dict[str, datetime]
    """The same, per held state that was ever counted."""
    incoming: dict[str, dict[str, Any]]
    """Expected receipts by reference: ``quantity``, ``expected_at``, ``transfer_from``."""
    expiry_floor: datetime | None
    """The earliest expiry of an open reservation (None: none expires), kept by the
    events, so that every command's check for overdue reservations costs nothing until
    one is due, instead of sorting a hot SKU's thousands of open reservations. Older
    snapshots are upcast (``upcast_v4_v5``)."""

    def __init__(self, sku: str, location: str) -> None:
        self.sku = sku
        self.location = location
        self.sellable = 0
        self.damaged = 0
        self.quality_control = 0
        self.reserved = 0
        self.safety_stock = 0
        self.oversell_buffer = 0
        self.reservations = {}
        self.last_counted_at = None
        self.held_counted_at = {}
        self.incoming = {}
        self.expiry_floor = None

    __slots__ = ("_reservations_shared",)
    _reservations_shared: bool
    """``_reservations_shared``: True while ``reservations`` is one dict shared with a copy
    (:meth:`__deepcopy__`), and whichever of them changes it first copies it
    (:meth:`_own_reservations`). A slot, so it is not state: no snapshot, comparison
    or copy of ``vars`` sees it; unset means not shared."""

    def __deepcopy__(self, memo: dict[int, Any]) -> StockItem:
        """A copy whose state can be mutated without touching this one.

        Much faster than the generic deep copy (the store copies an aggregate per command):
        every attribute is immutable but the dicts and the pending list, whose entries are
        never changed in place (events replace a reservation's or an incoming entry's
        dict, never update it), so copying the containers is enough. The open
        reservations are not even copied but shared, copy on write: a hot SKU holds
        thousands, and the store copies the item twice per save (into its cache and out
        of it), where a group commit changes a handful.
        """
        clone = object.__new__(type(self))
        # The state copied whole at C speed, then its few containers replaced by copies
        # of their own: half the cost of building the copy one attribute at a time (the
        # store copies an item twice per command, ~3 µs a copy saved).
        state = dict(self.__dict__)
        for name, value in state.items():
            if isinstance(value, _CONTAINERS) and name != "reservations":
                state[name] = value.copy()
        clone.__dict__.update(state)
        # A mapping that goes on changing in place after the copy (the group commit's
        # journal) gives the copy a read-only view of itself as it is now.
        frozen = getattr(self.reservations, "frozen", None)
        if frozen is not None:
            clone.__dict__["reservations"] = frozen()
        self._reservations_shared = clone._reservations_shared = True
        return clone

    def _own_reservations(self) -> dict[str, dict[str, Any]]:
        """The open reservations, to be changed: copied first if a copy shares them
        (``copy``: a plain dict of this item's own, from a dict or a read-only view)."""
        if self.shares_reservations:
            self.reservations = self.reservations.copy()
            self._reservations_shared = False
        return self.reservations

    @property
    def shares_reservations(self) -> bool:
        """Whether the open reservations are shared with a copy (``__slots__``)."""
        return getattr(self, "_reservations_shared", False)

    def adopt_reservations(self, reservations: dict[str, dict[str, Any]]) -> None:
        """Hold ``reservations`` (equal to the open reservations, and this item's alone)
        as the open reservations: a caller's dict that watches the changes, such as the
        group commit's journal, made from them in one copy instead of two."""
        self.reservations = reservations
        self._reservations_shared = False

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
    def on_hand(self) -> int:
        """All stock on hand: sellable plus the held states."""
        return self.sellable + self.damaged + self.quality_control

    @property
    def available(self) -> int:
        """Available to sell: sellable less reserved less safety stock."""
        return self.sellable - self.reserved - self.safety_stock

    def units(self, state: str) -> int:
        """The stock in ``state`` (one of :data:`STATES`)."""
        return cast(int, getattr(self, state))

    def add_units(self, state: str, quantity: int) -> None:
        """Evolve: add ``quantity`` (may be negative) to ``state``'s stock."""
        setattr(self, state, cast(int, getattr(self, state)) + quantity)

    def set_incoming_entry(
        self,
        reference: str,
        quantity: int,
        expected_at: datetime | None = None,
        transfer_from: str | None = None,
    ) -> None:
        """Evolve: the entry ``reference`` now expects ``quantity`` (0 closes it); without
        ``expected_at`` the entry keeps its time and owner (a receipt reduced it)."""
        if quantity == 0:
            self.incoming.pop(reference, None)
            return
        current = self.incoming.get(reference)
        if expected_at is None:
            if current is None:
                return
            expected_at, transfer_from = current["expected_at"], current["transfer_from"]
        # A new dict, never an update in place: copies of the aggregate share entries.
        self.incoming[reference] = {
            "quantity": quantity, "expected_at": expected_at, "transfer_from": transfer_from,
        }

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
            damaged=self.damaged,
            quality_control=self.quality_control,
            incoming=self.incoming_entries(),
        )

    def incoming_entries(self) -> tuple[IncomingEntry, ...]:
        """The expected receipts, by ``expected_at`` then reference."""
        entries = (
            IncomingEntry(reference, int(e["quantity"]), e["expected_at"], e["transfer_from"])
            for reference, e in self.incoming.items()
        )
        return tuple(sorted(entries, key=lambda e: (e.expected_at, e.reference)))

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
        *,
        state: str = SELLABLE,
    ) -> None:
        """Record a receipt of ``quantity`` ≥ 1 units into ``state`` (sellable by default);
        a repeated idempotency key is a no-op.

        A ``reference`` naming an open incoming entry reduces it by the quantity received
        (closing it at 0). A transfer's entry is the transfer's to close: naming it raises
        ``IncomingConflict`` (the transfer's receipt brings those units).
        """
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        if reference is not None and (not isinstance(reference, str) or len(reference) > 200):
            raise InvalidRequest("reference must be text of at most 200 characters",
                                 field="reference")
        require_state("state", state)
        if self._already_done(idempotency_key,
                              self.receipt_fingerprint(quantity, reference, state), recall):
            return
        entry = self.incoming.get(reference) if reference is not None else None
        remaining: int | None = None
        incoming = self.incoming
        if entry is not None and reference is not None:
            if entry["transfer_from"] is not None:
                raise IncomingConflict(reference, "it belongs to a transfer, whose receipt "
                                       "brings its units; receive them through the transfer")
            remaining = max(int(entry["quantity"]) - quantity, 0)
            incoming = _with_entry(self.incoming, reference, remaining)
        self._trigger(self.Received, **{state: self.units(state) + quantity},
                      incoming=incoming, quantity=quantity, reference=reference,
                      idempotency_key=idempotency_key, state=state,
                      incoming_remaining=remaining)

    def adjust(
        self,
        delta: int,
        reason: str,
        idempotency_key: str | None = None,
        note: str | None = None,
        recall: Recall = nothing_recalled,
        *,
        state: str = SELLABLE,
    ) -> None:
        """Correct the stock in ``state`` (sellable by default) by a non-zero ``delta`` for
        a reason code (and an optional note); refuses to take it below zero
        (``InsufficientOnHand``). Moving units between states is :meth:`move`, not this."""
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
        require_state("state", state)
        fingerprint = self.adjustment_fingerprint(delta, reason, note, state)
        if self._already_done(idempotency_key, fingerprint, recall):
            return
        units = self.units(state)
        if units + delta < 0:
            # Named by its state once anything is held; before, sellable was all on hand.
            held = self.damaged or self.quality_control or state != SELLABLE
            raise InsufficientOnHand(delta=delta, on_hand=units, state=state if held else None)
        self._trigger(self.Adjusted, **{state: units + delta}, delta=delta,
                      reason_code=reason, note=note, idempotency_key=idempotency_key,
                      state=state)

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
                      available=self.sellable - self.reserved - safety_stock)

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
        ``reserved after ≤ sellable − safety stock + oversell buffer``; decreasing always
        fits. Held stock (damaged, quality control) is never reserved.
        The same quantity and channel again is a no-op (an earlier expiry stays). A
        reservation closed within the idempotency window is never opened again, except
        with ``reopen`` one that was released (cancelled or expired), never a fulfilled
        one: an order placed again after it failed holds again under its id.
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
            reservable = self.sellable - self.safety_stock + self.oversell_buffer - (
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
        quantity and channel: an order's ``ttl_seconds`` changed. Recorded
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

        The shipped units leave sellable stock; any remainder returns to available.
        Repeating a fulfilment without a quantity or with the one shipped is a no-op,
        with another raises ``FulfilmentConflict``;
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
        self._trigger(self.Fulfilled, sellable=self.sellable - shipped,
                      reserved=self.reserved - current.quantity,
                      order_id=order_id, quantity=shipped)

    def record_count(
        self,
        count_id: str,
        counted: int,
        counted_at: datetime,
        movements_since: int = 0,
        recall: Recall = nothing_recalled,
        *,
        state: str = SELLABLE,
    ) -> CountOutcome:
        """Set the stock in ``state`` (sellable by default) from a physical count taken at
        ``counted_at``; returns what it decided (:data:`CountOutcome`).

        It becomes ``counted`` plus ``movements_since``: the net movement of that state
        recorded after ``counted_at`` (the service sums it with :func:`movements_after`),
        so sales rung up after the count stay on top of it, and two counts of one moment
        agree instead of correcting twice. A count taken before the latest applied count
        of the same state is recorded as superseded and changes nothing; each state's
        counts compose on their own. A count id already recorded with the same figures is
        a no-op (``already-recorded``); with others, an error (``CountAlreadyRecorded``).
        Whether a count was already recorded is this method's answer alone: callers ask
        it, they do not infer it from the events.
        """
        require_identifier("count_id", count_id)
        require_quantity("counted", counted, minimum=0)
        self._check_bounds("counted", counted)
        require_timestamp("counted_at", counted_at)
        require_quantity("movements_since", movements_since)
        require_state("state", state)
        seen = self._recalled(self.count_memo(count_id), recall)
        if seen is not None:
            if seen == self.count_fingerprint(counted, counted_at, state):
                return "already-recorded"
            raise CountAlreadyRecorded(count_id)
        units = self.units(state)
        latest = self.last_counted_at if state == SELLABLE else self.held_counted_at.get(state)
        if latest is not None and counted_at < latest:
            self._trigger(self.Counted, count_id=count_id, counted=counted,
                          previous_on_hand=units, delta=0, counted_at=counted_at,
                          superseded=True, state=state)
            return "superseded"
        before = units - movements_since
        delta = counted - before
        self._trigger(self.Counted, **{state: units + delta}, count_id=count_id,
                      counted=counted, previous_on_hand=before, delta=delta,
                      counted_at=counted_at, superseded=False, state=state)
        return "recorded"

    # ------------------------------------------------------- states and incoming

    def move(
        self,
        quantity: int,
        from_state: str,
        to_state: str,
        reason: str | None = None,
        idempotency_key: str | None = None,
        recall: Recall = nothing_recalled,
    ) -> None:
        """Move ``quantity`` ≥ 1 units from one state to another; on hand stays.

        Units that open reservations hold never leave sellable: a move out of sellable
        takes at most ``sellable − reserved`` (``InsufficientStock``, code
        ``insufficient-stock``). Safety stock is no units of anyone's, so dented units in
        it can be put aside: available may then drop below zero by at most the safety
        stock, which is what it says (below the cushion). A move out of a held state takes
        at most what it holds (``InsufficientOnHand``). A repeated idempotency key is a
        no-op.
        """
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        require_state("from", from_state)
        require_state("to", to_state)
        if from_state == to_state:
            raise InvalidRequest("from and to must be different states", field="to")
        if reason is not None and (
            not isinstance(reason, str) or not 1 <= len(reason) <= MAX_REASON_LENGTH
            or not reason.isprintable()
        ):
            raise InvalidRequest(
                f"reason must be printable text of 1 to {MAX_REASON_LENGTH} characters",
                field="reason",
            )
        fingerprint = self.move_fingerprint(quantity, from_state, to_state, reason)
        if self._already_done(idempotency_key, fingerprint, recall):
            return
        if from_state == SELLABLE:
            free = self.sellable - self.reserved
            if quantity > free:
                raise InsufficientSellable(action="move out of sellable", requested=quantity,
                                           available=self.available, free=max(free, 0))
        elif quantity > self.units(from_state):
            raise InsufficientInState(requested=quantity, state=from_state,
                                      on_hand=self.units(from_state))
        self._trigger(self.StateMoved, **{from_state: self.units(from_state) - quantity,
                                          to_state: self.units(to_state) + quantity},
                      quantity=quantity, from_state=from_state, to_state=to_state,
                      reason=reason, idempotency_key=idempotency_key)

    def set_incoming(self, reference: str, quantity: int, expected_at: datetime) -> None:
        """Set the expected receipt ``reference`` to ``quantity`` units due at
        ``expected_at`` (absolute: 0 cancels it). The same figures again, or cancelling
        an entry that is not open, is a no-op. A transfer's entry (its reference is the
        transfer id) is the transfer's: setting it raises ``IncomingConflict``.
        """
        require_identifier("reference", reference)
        require_quantity("quantity", quantity, minimum=0)
        self._check_bounds("quantity", quantity)
        require_timestamp("expected_at", expected_at)
        current = self.incoming.get(reference)
        if current is not None and current["transfer_from"] is not None:
            raise IncomingConflict(reference, "it belongs to a transfer and changes only "
                                   "with it")
        self._set_incoming(reference, quantity, expected_at, None)

    # ------------------------------------------------------- transfers, this side

    def ship_transfer(
        self, transfer_id: str, quantity: int, to_location: str, recall: Recall = nothing_recalled
    ) -> None:
        """At the source: take ``quantity`` sellable units out for transfer ``transfer_id``.

        Needs them available (``sellable − reserved − safety_stock``): a shipment never
        takes reserved units or safety stock (``InsufficientStock``). Idempotent by the
        transfer id: a repeat with the same quantity is a no-op, with another a
        ``TransferConflict``.
        """
        require_identifier("transfer_id", transfer_id)
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        require_identifier("to_location", to_location)
        if to_location == self.location:
            raise InvalidRequest("a transfer goes to another location", field="to_location")
        seen = self._recalled(self.transfer_memo(transfer_id), recall)
        if seen is not None:
            if seen == f"shipped:{quantity}":
                return
            raise TransferConflict(transfer_id, f"already {_describe(seen)} here")
        if quantity > self.available:
            raise InsufficientSellable(action="ship", requested=quantity,
                                       available=self.available, free=max(self.available, 0))
        self._trigger(self.TransferShipped, sellable=self.sellable - quantity,
                      transfer_id=transfer_id, quantity=quantity, to_location=to_location)

    def expect_transfer(
        self,
        transfer_id: str,
        quantity: int,
        expected_at: datetime,
        from_location: str,
        recall: Recall = nothing_recalled,
    ) -> None:
        """At the destination: the transfer's incoming entry (reference = transfer id)
        expects ``quantity`` units due at ``expected_at``.

        Absolute and idempotent: the same figures again, or any call once the transfer
        was received or closed here, is a no-op (its entry must not open again). A
        client's entry under the same reference raises ``IncomingConflict``.
        """
        require_identifier("transfer_id", transfer_id)
        require_quantity("quantity", quantity, minimum=1)
        self._check_bounds("quantity", quantity)
        require_timestamp("expected_at", expected_at)
        require_identifier("from_location", from_location)
        if from_location == self.location:
            raise InvalidRequest("a transfer comes from another location",
                                 field="from_location")
        current = self.incoming.get(transfer_id)
        if current is not None and current["transfer_from"] is None:
            raise IncomingConflict(transfer_id, "a client's expected receipt has this "
                                   "reference")
        if self._recalled(self.transfer_memo(transfer_id), recall) is not None:
            return
        self._set_incoming(transfer_id, quantity, expected_at, from_location)

    def receive_transfer(
        self,
        transfer_id: str,
        quantity: int,
        shipped: int,
        from_location: str,
        recall: Recall = nothing_recalled,
    ) -> None:
        """At the destination: the transfer's one receipt adds ``quantity`` (1 ≤ quantity ≤
        ``shipped``) sellable units and closes its incoming entry.

        The rest stays in transit, in the transfer, until it closes. A repeat with the
        same quantity is a no-op; with another, or after the transfer closed without
        this receipt, a ``TransferConflict``.
        """
        require_identifier("transfer_id", transfer_id)
        require_quantity("quantity", quantity, minimum=1)
        require_quantity("shipped", shipped, minimum=1)
        self._check_bounds("shipped", shipped)
        require_identifier("from_location", from_location)
        if quantity > shipped:
            raise InvalidRequest(f"cannot receive {quantity}: the transfer shipped {shipped}",
                                 field="quantity")
        seen = self._recalled(self.transfer_memo(transfer_id), recall)
        if seen is not None:
            if _received_of(seen) == quantity:
                return
            raise TransferConflict(transfer_id, f"already {_describe(seen)} here")
        entry = self.incoming.get(transfer_id)
        if entry is not None and entry["transfer_from"] is None:
            raise IncomingConflict(transfer_id, "a client's expected receipt has this "
                                   "reference")
        self._trigger(self.TransferReceived, sellable=self.sellable + quantity,
                      incoming=_with_entry(self.incoming, transfer_id, 0),
                      transfer_id=transfer_id, quantity=quantity, from_location=from_location,
                      incoming_closed=int(entry["quantity"]) if entry else 0)

    def record_transit_loss(
        self, transfer_id: str, lost: int, from_location: str, recall: Recall = nothing_recalled
    ) -> None:
        """At the destination, when the transfer closes: ``lost`` units it shipped here
        never arrived. Records them (shipped = received + lost) and closes the transfer's
        incoming entry if no receipt did. Nothing is recorded when nothing was lost and
        the entry is closed already. A repeat is a no-op; with another figure, a
        ``TransferConflict``.
        """
        require_identifier("transfer_id", transfer_id)
        require_quantity("lost", lost, minimum=0)
        self._check_bounds("lost", lost)
        require_identifier("from_location", from_location)
        seen = self._recalled(self.transfer_memo(transfer_id), recall)
        if seen is not None and seen.startswith("closed:"):
            if int(seen.rsplit(":", 1)[1]) == lost:
                return
            raise TransferConflict(transfer_id, f"already {_describe(seen)} here")
        entry = self.incoming.get(transfer_id)
        if entry is not None and entry["transfer_from"] is None:
            raise IncomingConflict(transfer_id, "a client's expected receipt has this "
                                   "reference")
        if lost == 0 and entry is None:
            return
        self._trigger(self.TransitLost, incoming=_with_entry(self.incoming, transfer_id, 0),
                      transfer_id=transfer_id, quantity=lost,
                      received=_received_of(seen) if seen is not None else 0,
                      from_location=from_location,
                      incoming_closed=int(entry["quantity"]) if entry else 0)

    def _set_incoming(
        self, reference: str, quantity: int, expected_at: datetime, transfer_from: str | None
    ) -> None:
        current = self.incoming.get(reference)
        if current is None and quantity == 0:
            return
        if current is not None and (current["quantity"], current["expected_at"],
                                    current["transfer_from"]) == (
                quantity, expected_at, transfer_from):
            return
        self._trigger(self.IncomingSet,
                      incoming=_with_entry(self.incoming, reference, quantity, transfer_from),
                      reference=reference, quantity=quantity,
                      previous_quantity=int(current["quantity"]) if current else 0,
                      expected_at=expected_at, transfer_from=transfer_from)

    def expire_overdue(self, now: datetime) -> int:
        """Release every reservation whose expiry is at or before ``now``; returns how many."""
        require_timestamp("now", now)
        floor = self.expiry_floor
        if floor is None or floor > now:
            return 0
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
    def transfer_memo(transfer_id: str) -> str:
        """The memo of a transfer's step here: ``shipped:{q}`` at the source;
        ``received:{q}``, then ``closed:{received}:{lost}`` at the destination."""
        return f"transfer:{transfer_id}"

    # Fingerprints of sellable stock are as they were before states, so a repeat of a
    # command sent before states is still recognised; another state is named up front,
    # where free text (a reference, a note) cannot reach.

    @staticmethod
    def receipt_fingerprint(quantity: int, reference: str | None, state: str = SELLABLE) -> str:
        return f"receipt{_state_tag(state)}:{quantity}:{reference or ''}"

    @staticmethod
    def adjustment_fingerprint(
        delta: int, reason: str, note: str | None = None, state: str = SELLABLE
    ) -> str:
        return f"adjustment{_state_tag(state)}:{delta}:{reason}:{note or ''}"

    @staticmethod
    def count_fingerprint(counted: int, counted_at: datetime, state: str = SELLABLE) -> str:
        # counted_at is bounded (require_timestamp), so converting to UTC cannot overflow.
        return f"count{_state_tag(state)}:{counted}:{counted_at.astimezone(UTC).isoformat()}"

    @staticmethod
    def move_fingerprint(quantity: int, from_state: str, to_state: str,
                         reason: str | None) -> str:
        return f"move:{quantity}:{from_state}:{to_state}:{reason or ''}"

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

        Callers pass whichever of the states (``sellable``, ``damaged``,
        ``quality_control``), ``reserved``, ``available`` and ``incoming`` (the entries
        after it) the event changes; the rest are computed from the current state with
        those overrides.
        """
        sellable = fields.pop("sellable", self.sellable)
        damaged = fields.pop("damaged", self.damaged)
        quality_control = fields.pop("quality_control", self.quality_control)
        reserved = fields.pop("reserved", self.reserved)
        available = fields.pop("available", sellable - reserved - self.safety_stock)
        incoming: Mapping[str, Mapping[str, Any]] = fields.pop("incoming", self.incoming)
        incoming_total = in_transit = 0
        for entry in incoming.values():
            incoming_total += entry["quantity"]
            if entry["transfer_from"] is not None:
                in_transit += entry["quantity"]
        self.trigger_event(
            event_class,
            sku=self.sku,
            location=self.location,
            on_hand=sellable + damaged + quality_control,
            reserved=reserved,
            available=available,
            damaged=damaged,
            quality_control=quality_control,
            incoming_total=incoming_total,
            in_transit=in_transit,
            **fields,
        )


def _outcome_word(outcome: str) -> str:
    """``fulfilled`` of ``fulfilled:{quantity}``; other outcomes are words already."""
    return outcome.partition(":")[0]


def _state_tag(state: str) -> str:
    """How a fingerprint names a state: not at all for sellable (as before states)."""
    return "" if state == SELLABLE else f".{state}"


def _with_entry(
    incoming: Mapping[str, dict[str, Any]],
    reference: str,
    quantity: int,
    transfer_from: str | None = None,
) -> dict[str, dict[str, Any]]:
    """``incoming`` with the entry ``reference`` expecting ``quantity`` (0: without it),
    for the position an event declares (its ``incoming_total`` and ``in_transit``)."""
    changed = dict(incoming)
    if quantity == 0:
        changed.pop(reference, None)
    else:
        changed[reference] = {"quantity": quantity, "transfer_from": transfer_from}
    return changed


def _received_of(memo: str) -> int | None:
    """What a destination's transfer memo says was received (``received:{q}`` or
    ``closed:{received}:{lost}``); None for another memo (a source's ``shipped``)."""
    word, _, rest = memo.partition(":")
    if word == "received":
        return int(rest)
    if word == "closed":
        return int(rest.split(":")[0])
    return None


def _describe(memo: str) -> str:
    word, _, rest = memo.partition(":")
    if word == "closed":
        received, lost = rest.split(":")
        return f"closed with {received} received and {lost} lost"
    return f"{word} {rest}"


def _reservation_rows(reservations: Mapping[str, dict[str, Any]]) -> list[list[Any]]:
    """Open reservations as a snapshot writes them (v6): ``[order id, quantity, channel,
    expiry in ISO 8601 or None]``, plain values only."""
    return [[order_id, r["quantity"], r["channel"],
             None if r["expires_at"] is None else r["expires_at"].isoformat()]
            for order_id, r in reservations.items()]


def _keep_expiry_floor(aggregate: Any, replaced: dict[str, Any] | None,
                       expires_at: datetime | None) -> None:
    """Evolve ``StockItem.expiry_floor`` after a reservation changed: ``replaced`` is its
    entry before (None: it is new), ``expires_at`` its expiry now (None: none, or it
    closed). Only when the entry that held the floor moves is the floor found again
    among the open reservations, so a stream's commands cost O(1) here, amortised."""
    floor = aggregate.expiry_floor
    if replaced is not None and floor is not None and replaced["expires_at"] == floor and (
            expires_at is None or expires_at > floor):
        aggregate.expiry_floor = min(
            (r["expires_at"] for r in aggregate.reservations.values()
             if r["expires_at"] is not None), default=None)
    elif expires_at is not None and (floor is None or expires_at < floor):
        aggregate.expiry_floor = expires_at
