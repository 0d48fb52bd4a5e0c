"""Payload models of every published event type and version (the ``data`` member).

Every payload names its SKU-location and carries the position *after* the event
(``on_hand``, ``reserved``, ``available``, and since stock states ``sellable``, ``held``,
``incoming_total`` and ``in_transit``), so a consumer can set rather than add.
Unknown members are ignored when reading (tolerant reader): producers may add optional
fields without breaking anyone.

Stock states were added without a new version: every new member is
optional, and its default says what a document published before them meant — stock in
no state was sellable, nothing was held or incoming (``sellable`` absent: equal to
``on_hand``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stockstream_contract.vocabulary import (
    IDENTIFIER_PATTERN,
    MAX_NOTE_LENGTH,
    AdjustmentReason,
    AdjustmentReasonV1,
    ReleaseReason,
    StockState,
)

Identifier = Field(pattern=IDENTIFIER_PATTERN)


class Held(BaseModel):
    """On-hand stock that is not for sale, by state."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    damaged: int = Field(default=0, description="Damaged units on hand.")
    quality_control: int = Field(default=0, description="Units on hand in quality control.")


class EventData(BaseModel):
    """Members common to every Stockstream event payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Identifier
    location: str = Identifier
    on_hand: int = Field(
        description="Units on hand after this event, in every state: sellable + held."
    )
    reserved: int = Field(ge=0, description="Units held by open reservations after this event.")
    available: int = Field(
        description="Available to sell after this event: sellable - reserved - safety_stock."
    )
    sellable: int | None = Field(
        default=None,
        description="Sellable units after this event: on_hand less held. Absent from "
        "documents published before stock states, when all of on_hand was sellable.",
    )
    held: Held = Field(
        default_factory=Held,
        description="On-hand units not for sale after this event, by state.",
    )
    incoming_total: int = Field(
        default=0, ge=0, description="Units expected (incoming supply) after this event."
    )
    in_transit: int = Field(
        default=0, ge=0, description="The part of incoming_total that transfers bring."
    )


class StockItemCreatedV1(EventData):
    """The first event of a SKU-location's stream."""


class StockReceivedV1(EventData):
    """Goods were received: on hand went up by ``quantity``, in ``state``."""

    quantity: int = Field(ge=1)
    reference: str | None = Field(default=None, max_length=200)
    state: StockState = Field(default="sellable", description="The state received into.")
    incoming_remaining: int | None = Field(
        default=None,
        ge=0,
        description="When reference named an open incoming entry: what it still expects "
        "after this receipt (0: closed). Absent or null otherwise.",
    )


class StockAdjustedV1(EventData):
    """On hand was corrected by ``delta`` for a reason (deprecated: see v2).

    Published, derived from v2, during the deprecation period; v2 reason codes outside
    this set appear here as ``other``.
    """

    delta: int
    reason: AdjustmentReasonV1


class StockAdjustedV2(EventData):
    """On hand was corrected by ``delta``, with a reason code and an optional note."""

    delta: int
    reason_code: AdjustmentReason
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH)
    state: StockState = Field(default="sellable", description="The state corrected.")


class StockReservedV1(EventData):
    """An order's reservation was set to ``quantity`` (it was ``previous_quantity``)."""

    order_id: str = Identifier
    quantity: int = Field(ge=1)
    previous_quantity: int = Field(ge=0)
    channel: str = Identifier
    expires_at: AwareDatetime | None = None


class ReservationReleasedV1(EventData):
    """A reservation was cancelled or expired; its ``quantity`` is available again."""

    order_id: str = Identifier
    quantity: int = Field(ge=1)
    reason: ReleaseReason


class ReservationFulfilledV1(EventData):
    """An order shipped ``quantity`` units; its reservation closed."""

    order_id: str = Identifier
    quantity: int = Field(ge=1)


class StockCountedV1(EventData):
    """A physical count set on hand; ``delta`` is the correction applied."""

    count_id: str = Identifier
    counted: int = Field(ge=0)
    previous_on_hand: int
    delta: int
    counted_at: AwareDatetime
    superseded: bool = Field(
        default=False,
        description="True when a count taken later was already applied: this one is "
        "recorded and changes nothing (delta 0).",
    )
    state: StockState = Field(
        default="sellable",
        description="The state counted; counted, previous_on_hand and delta are its units.",
    )


class StockPolicyChangedV1(EventData):
    """Safety stock and oversell buffer were set."""

    safety_stock: int = Field(ge=0)
    oversell_buffer: int = Field(ge=0)


class StockStateMovedV1(EventData):
    """``quantity`` units moved from one state to another; on hand is unchanged."""

    quantity: int = Field(ge=1)
    from_state: StockState
    to_state: StockState
    reason: str | None = Field(default=None, max_length=200)


class StockIncomingSetV1(EventData):
    """The expected receipt ``reference`` was set to ``quantity`` due at ``expected_at``."""

    reference: str = Identifier
    quantity: int = Field(ge=0, description="Units now expected; 0: cancelled or closed.")
    previous_quantity: int = Field(ge=0)
    expected_at: AwareDatetime
    transfer_from: str | None = Field(
        default=None,
        pattern=IDENTIFIER_PATTERN,
        description="The source location when the entry belongs to a transfer (the "
        "reference is the transfer id).",
    )


class StockTransferShippedV1(EventData):
    """A transfer took ``quantity`` sellable units out of this location to ``to_location``."""

    transfer_id: str = Identifier
    quantity: int = Field(ge=1)
    to_location: str = Identifier


class StockTransferReceivedV1(EventData):
    """A transfer's receipt added ``quantity`` sellable units here; its incoming closed."""

    transfer_id: str = Identifier
    quantity: int = Field(ge=1)
    from_location: str = Identifier
    incoming_closed: int = Field(ge=0, description="What the incoming entry expected.")


class StockTransitLostV1(EventData):
    """A transfer closed: ``quantity`` units it shipped here never arrived (lost)."""

    transfer_id: str = Identifier
    quantity: int = Field(ge=0)
    received: int = Field(ge=0, description="What the transfer's receipt brought here.")
    from_location: str = Identifier
    incoming_closed: int = Field(ge=0, description="What the incoming entry still expected.")


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 structured-mode envelope every event travels in."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="{sku}|{location}:{version} ({kind}:{id}:{version} for a "
                    "process's event, e.g. an order's); also the Service Bus MessageId.")
    type: str = Field(pattern=r"^Stockstream\.[A-Za-z]+\.v[0-9]+$")
    source: str
    subject: str = Field(description="{sku}|{location} ({kind}:{id} for a process's "
                         "event); also the Service Bus SessionId.")
    time: datetime = Field(description="When the event occurred (UTC).")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    sequence: int = Field(ge=1, description="The stream version of this event.")
    producer: str
    data: dict[str, object]


# ------------------------------------------------------------------ order events
#
# An order is a process with a stream of its own (``order:{order_id}``); its events are
# published on the same topic, in sessions of their own (``contracts.processes``). They
# carry no SKU-location or position: stock consumers skip them. Each names its order.


class OrderLineData(BaseModel):
    """A line as the client sent it: exactly one of ``location`` / ``location_group``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Identifier
    location: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    location_group: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    quantity: int = Field(ge=1)


class OrderGroupData(BaseModel):
    """A location group as the order used it when it was placed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    locations: list[str]
    strategy: str


class OrderFulfilmentLineData(BaseModel):
    """A hold to ship, and how many of its units."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Identifier
    location: str = Identifier
    quantity: int = Field(ge=0)


class OrderEventData(BaseModel):
    """Members common to every order event payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: str = Identifier


class OrderCreatedV1(OrderEventData):
    """The first event of an order's stream."""


class OrderPlacedV1(OrderEventData):
    """Intent: attempt ``attempt`` to hold the order's lines as sent."""

    attempt: int = Field(ge=1)
    channel: str
    mode: Literal["all_or_nothing", "partial"]
    ttl_seconds: int | None = None
    expires_at: AwareDatetime | None = None
    lines: list[OrderLineData]
    groups: dict[str, OrderGroupData] = Field(default_factory=dict)


class OrderSourcedV1(OrderEventData):
    """Each line's location (as sent, or chosen from its group; null: none could hold it)."""

    attempt: int = Field(ge=1)
    locations: list[str | None]
    available: list[int | None]


class OrderLineStep(OrderEventData):
    """Members of a step on one SKU-location's hold."""

    attempt: int = Field(ge=1)
    sku: str = Identifier
    location: str = Identifier


class OrderLineHeldV1(OrderLineStep):
    """Step: the order's hold was taken on its SKU-location (the reservation keyed by
    the order id)."""

    quantity: int = Field(ge=1)
    expires_at: AwareDatetime | None = None


class OrderLineRefusedV1(OrderLineStep):
    """Step: the SKU-location could not hold the order's summed quantity there."""

    quantity: int = Field(ge=1)
    available: int


class OrderLineReleasedV1(OrderLineStep):
    """Step: the order's hold on the SKU-location is released."""

    reason: str


class OrderLineFulfilledV1(OrderLineStep):
    """Step: the order's hold on the SKU-location shipped ``quantity`` and closed."""

    quantity: int = Field(ge=0)


class OrderLineRescheduledV1(OrderLineStep):
    """Step: the hold's expiry was set to the order's."""

    expires_at: AwareDatetime | None = None


class OrderReleaseRequestedV1(OrderEventData):
    """Intent: release every hold of the order (``cancelled`` or ``expired``)."""

    reason: str


class OrderFulfilmentRequestedV1(OrderEventData):
    """Intent: ship these holds."""

    lines: list[OrderFulfilmentLineData]


class OrderRescheduledV1(OrderEventData):
    """Intent: the order's ``ttl_seconds`` changed; its holds expire at ``expires_at``."""

    ttl_seconds: int | None = None
    expires_at: AwareDatetime | None = None


class OrderConcludedV1(OrderEventData):
    """Outcome: the work under way ended with ``status``."""

    status: Literal["held", "partially_held", "failed", "released", "fulfilled"]


# --------------------------------------------------------------- transfer events
#
# A transfer is a process with a stream of its own (``transfer:{transfer_id}``), published
# as orders are, in sessions ``transfer:{transfer_id}``. Its ``TransferRequested`` names
# the SKU and the two locations; every event names its transfer. The units themselves move
# on the locations' stock streams (``StockTransferShipped``, ``StockIncomingSet``,
# ``StockTransferReceived``, ``StockTransitLost``): these events say what the transfer
# decided and which of its steps are done, so a consumer can follow a transfer without
# joining stock sessions.


class TransferEventData(BaseModel):
    """Members common to every transfer event payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    transfer_id: str = Identifier


class TransferCreatedV1(TransferEventData):
    """The first event of a transfer's stream."""


class TransferRequestedV1(TransferEventData):
    """Intent: move ``quantity`` units of ``sku`` from one location to the other."""

    sku: str = Identifier
    from_location: str = Identifier
    to_location: str = Identifier
    quantity: int = Field(ge=1)
    expected_at: AwareDatetime | None = Field(
        default=None, description="When the units are due at the destination, if the "
        "request said (else the shipment's time, see TransferShipmentRequested).")


class TransferShipmentRequestedV1(TransferEventData):
    """Intent: ship; the units are due at the destination at ``expected_at``."""

    expected_at: AwareDatetime


class TransferShipmentTakenV1(TransferEventData):
    """Step: the source location took ``quantity`` sellable units (shipped)."""

    quantity: int = Field(ge=1)


class TransferShipmentRefusedV1(TransferEventData):
    """Step: the source could spare only ``available`` units; the transfer stays requested."""

    available: int


class TransferIncomingAddedV1(TransferEventData):
    """Step: the destination expects the shipped units; the transfer is shipped."""

    quantity: int = Field(ge=1)
    expected_at: AwareDatetime


class TransferReceiptRequestedV1(TransferEventData):
    """Intent: the destination received ``quantity`` of the shipped units."""

    quantity: int = Field(ge=1)


class TransferReceiptAddedV1(TransferEventData):
    """Step: the destination added ``quantity`` sellable units; the transfer is received."""

    quantity: int = Field(ge=1)


class TransferCloseRequestedV1(TransferEventData):
    """Intent: close; ``lost`` units (shipped, never received) are lost in transit."""

    lost: int = Field(ge=0)


class TransferLossRecordedV1(TransferEventData):
    """Step: the destination recorded ``quantity`` units lost in transit; the transfer is
    closed."""

    quantity: int = Field(ge=0)


class TransferCancelledV1(TransferEventData):
    """Outcome: the transfer was cancelled before shipment."""
