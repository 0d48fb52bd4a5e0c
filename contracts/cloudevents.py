"""The pure mapping from stored domain events to CloudEvents (DESIGN §4).

``to_cloudevent`` is deterministic: the same stored event always gives the same document,
so a relay that publishes an event twice publishes the same message twice, and Service
Bus duplicate detection (on the id) absorbs the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.events import (
    CloudEvent,
    EventData,
    ReservationFulfilledV1,
    ReservationReleasedV1,
    StockAdjustedV1,
    StockCountedV1,
    StockItemCreatedV1,
    StockPolicyChangedV1,
    StockReceivedV1,
    StockReservedV1,
)
from domain.identifiers import event_id, stream_name
from domain.stock_item import StockItem

SOURCE = "urn:stockstream:inventory"
PRODUCER = "stockstream"
CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class WireType:
    """One published event type and version, and the domain event it comes from."""

    name: str
    version: int
    model: type[EventData]
    domain_class: type[StockItem.Event]

    @property
    def type(self) -> str:
        return f"Stockstream.{self.name}.v{self.version}"

    @property
    def schema_uri(self) -> str:
        return f"urn:stockstream:schemas:{self.name}:v{self.version}"


WIRE_TYPES: tuple[WireType, ...] = (
    WireType("StockItemCreated", 1, StockItemCreatedV1, StockItem.Created),
    WireType("StockReceived", 1, StockReceivedV1, StockItem.Received),
    WireType("StockAdjusted", 1, StockAdjustedV1, StockItem.Adjusted),
    WireType("StockReserved", 1, StockReservedV1, StockItem.Reserved),
    WireType("ReservationReleased", 1, ReservationReleasedV1, StockItem.Released),
    WireType("ReservationFulfilled", 1, ReservationFulfilledV1, StockItem.Fulfilled),
    WireType("StockCounted", 1, StockCountedV1, StockItem.Counted),
    WireType("StockPolicyChanged", 1, StockPolicyChangedV1, StockItem.PolicyChanged),
)
_BY_DOMAIN_CLASS = {w.domain_class: w for w in WIRE_TYPES}
_BY_TYPE = {w.type: w for w in WIRE_TYPES}


def wire_type(event: StockItem.Event) -> WireType:
    """The wire type an event is published as."""
    return _BY_DOMAIN_CLASS[type(event)]


def from_cloudevent_type(type_: str) -> WireType | None:
    """The wire type named by a CloudEvents ``type``, or None if this build does not know it."""
    return _BY_TYPE.get(type_)


def to_cloudevent(event: StockItem.Event) -> dict[str, Any]:
    """The CloudEvents JSON document (as a dict ready for ``json.dumps``) of ``event``."""
    wire = wire_type(event)
    fields = {k: v for k, v in vars(event).items() if k in wire.model.model_fields}
    data = wire.model.model_validate(fields)
    envelope = CloudEvent(
        id=event_id(event.sku, event.location, event.originator_version),
        type=wire.type,
        source=SOURCE,
        subject=stream_name(event.sku, event.location),
        time=event.timestamp,
        dataschema=wire.schema_uri,
        sequence=event.originator_version,
        producer=PRODUCER,
        data=data.model_dump(mode="json"),
    )
    return envelope.model_dump(mode="json")
