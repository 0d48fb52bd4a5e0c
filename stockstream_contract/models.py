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
    id: str = Field(description="{sku}|{location}:{version}; also the Service Bus MessageId.")
    type: str = Field(pattern=r"^Stockstream\.[A-Za-z]+\.v[0-9]+$")
    source: str
    subject: str = Field(description="{sku}|{location}; also the Service Bus SessionId.")
    time: datetime = Field(description="When the event occurred (UTC).")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    sequence: int = Field(ge=1, description="The stream version of this event.")
    producer: str
    data: dict[str, object]
