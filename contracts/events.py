"""Payload models of every published event type and version (the ``data`` member).

Every payload names its SKU-location and carries the position *after* the event
(``on_hand``, ``reserved``, ``available``), so a consumer can set rather than add.
Unknown members are ignored when reading (tolerant reader): producers may add optional
fields without breaking anyone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.identifiers import IDENTIFIER_PATTERN
from domain.stock_item import (
    MAX_NOTE_LENGTH,
    AdjustmentReason,
    AdjustmentReasonV1,
    ReleaseReason,
)

Identifier = Field(pattern=IDENTIFIER_PATTERN)


class EventData(BaseModel):
    """Members common to every Stockstream event payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Identifier
    location: str = Identifier
    on_hand: int = Field(description="Units on hand after this event.")
    reserved: int = Field(ge=0, description="Units held by open reservations after this event.")
    available: int = Field(
        description="Available to sell after this event: on_hand - reserved - safety_stock."
    )


class StockItemCreatedV1(EventData):
    """The first event of a SKU-location's stream."""


class StockReceivedV1(EventData):
    """Goods were received: on hand went up by ``quantity``."""

    quantity: int = Field(ge=1)
    reference: str | None = Field(default=None, max_length=200)


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


class StockPolicyChangedV1(EventData):
    """Safety stock and oversell buffer were set."""

    safety_stock: int = Field(ge=0)
    oversell_buffer: int = Field(ge=0)


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
