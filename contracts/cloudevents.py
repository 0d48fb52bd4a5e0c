"""The pure mapping from stored domain events to CloudEvents.

``to_cloudevent`` is deterministic: the same stored event always gives the same document,
so a relay that publishes an event twice publishes the same message twice, and Service
Bus duplicate detection (on the id) absorbs the second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter

from contracts.events import (
    ReservationFulfilledV1,
    ReservationReleasedV1,
    StockAdjustedV1,
    StockAdjustedV2,
    StockCountedV1,
    StockIncomingSetV1,
    StockItemCreatedV1,
    StockPolicyChangedV1,
    StockReceivedV1,
    StockReservedV1,
    StockStateMovedV1,
    StockTransferReceivedV1,
    StockTransferShippedV1,
    StockTransitLostV1,
)
from domain.identifiers import event_id, stream_name
from domain.stock_item import ADJUSTMENT_REASONS_V1, StockItem

SOURCE = "urn:stockstream:inventory"
PRODUCER = "stockstream"
CONTENT_TYPE = "application/cloudevents+json"


Fields = dict[str, Any]


def _same(fields: Fields) -> Fields:
    return fields


@dataclass(frozen=True)
class WireType:
    """One published event type and version, and the domain event it comes from (a
    stock event here; a process's, such as an order's, in ``contracts.processes``).

    ``derive`` turns the domain event's fields into this version's: the identity for the
    current version, a down-conversion for a deprecated one still published in parallel.
    """

    name: str
    version: int
    model: type[BaseModel]
    domain_class: type[Any]
    derive: Callable[[Fields], Fields] = _same

    @property
    def type(self) -> str:
        return f"Stockstream.{self.name}.v{self.version}"

    @property
    def schema_uri(self) -> str:
        return f"urn:stockstream:schemas:{self.name}:v{self.version}"


def _adjusted_v1(fields: Fields) -> Fields:
    """v1 of a v2 adjustment: ``reason`` is the code if v1 knew it, else ``other``."""
    code = fields["reason_code"]
    return {**fields, "reason": code if code in ADJUSTMENT_REASONS_V1 else "other"}


WIRE_TYPES: tuple[WireType, ...] = (
    WireType("StockItemCreated", 1, StockItemCreatedV1, StockItem.Created),
    WireType("StockReceived", 1, StockReceivedV1, StockItem.Received),
    WireType("StockAdjusted", 1, StockAdjustedV1, StockItem.Adjusted, _adjusted_v1),
    WireType("StockAdjusted", 2, StockAdjustedV2, StockItem.Adjusted),
    WireType("StockReserved", 1, StockReservedV1, StockItem.Reserved),
    WireType("ReservationReleased", 1, ReservationReleasedV1, StockItem.Released),
    WireType("ReservationFulfilled", 1, ReservationFulfilledV1, StockItem.Fulfilled),
    WireType("StockCounted", 1, StockCountedV1, StockItem.Counted),
    WireType("StockPolicyChanged", 1, StockPolicyChangedV1, StockItem.PolicyChanged),
    WireType("StockStateMoved", 1, StockStateMovedV1, StockItem.StateMoved),
    WireType("StockIncomingSet", 1, StockIncomingSetV1, StockItem.IncomingSet),
    WireType("StockTransferShipped", 1, StockTransferShippedV1, StockItem.TransferShipped),
    WireType("StockTransferReceived", 1, StockTransferReceivedV1, StockItem.TransferReceived),
    WireType("StockTransitLost", 1, StockTransitLostV1, StockItem.TransitLost),
)
_BY_TYPE = {w.type: w for w in WIRE_TYPES}
_VERSIONS: dict[type[Any], list[WireType]] = {}
for _wire in sorted(WIRE_TYPES, key=lambda w: -w.version):
    _VERSIONS.setdefault(_wire.domain_class, []).append(_wire)


def wire_type(event: StockItem.Event) -> WireType:
    """The current (newest) wire type an event is published as."""
    return _VERSIONS[type(event)][0]


def wire_versions(event: StockItem.Event) -> list[WireType]:
    """Every wire type the event can be published as, newest first."""
    return list(_VERSIONS[type(event)])


def from_cloudevent_type(type_: str) -> WireType | None:
    """The wire type named by a CloudEvents ``type``, or None if this build does not know it."""
    return _BY_TYPE.get(type_)


def _position_after(event: StockItem.Event) -> Fields:
    """The position members added with stock states, read through the event's attributes
    (an event stored before them has none in its ``vars``, and reads as their defaults)."""
    return {
        "sellable": event.sellable,
        "held": {"damaged": event.damaged, "quality_control": event.quality_control},
        "incoming_total": event.incoming_total,
        "in_transit": event.in_transit,
    }


def to_cloudevent(event: StockItem.Event, wire: WireType | None = None) -> dict[str, Any]:
    """The CloudEvents JSON document (as a dict ready for ``json.dumps``) of ``event``,
    as its current wire type or as ``wire`` (one of ``wire_versions(event)``)."""
    wire = wire or wire_type(event)
    derived = wire.derive({**vars(event), **_position_after(event)})
    return cloudevent_document(
        wire, derived, event_id(event.sku, event.location, event.originator_version),
        stream_name(event.sku, event.location), event)


_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)
"""The envelope's ``time`` serialiser: pydantic's own, as the ``CloudEvent`` model's field
serialises it (UTC as ``Z``, microseconds only when there are some)."""


def cloudevent_document(wire: WireType, fields: Fields, id_: str, subject: str,
                        event: Any) -> dict[str, Any]:
    """The envelope of any published event (stock or process) as ``wire``: ``fields``
    validated by its model (members it does not know left out), the stored ``event``'s
    time and version as ``time`` and ``sequence``.

    The envelope is built as the ``CloudEvent`` model would dump it, without the model:
    every member is fixed by the wire type (``type`` matches its pattern by construction)
    or by the store (``sequence`` is a stream version, at least 1), so validating and
    dumping it through the model again cost the relay microseconds an event for nothing
    (with the ids no longer derived twice in ``to_message``, ~25 → ~18 µs an event,
    ``docs/performance.md``). Members in the model's order, ``time``
    through pydantic's serialiser: the bytes are the model's
    (``tests/schemas/test_envelope.py`` pins them equal for every wire type).
    """
    known = wire.model.model_fields  # once: pydantic builds this mapping on each access
    data = wire.model.model_validate({k: v for k, v in fields.items() if k in known})
    return {
        "specversion": "1.0",
        "id": id_,
        "type": wire.type,
        "source": SOURCE,
        "subject": subject,
        "time": _TIME.dump_python(event.timestamp, mode="json"),
        "datacontenttype": "application/json",
        "dataschema": wire.schema_uri,
        "sequence": event.originator_version,
        "producer": PRODUCER,
        "data": data.model_dump(mode="json"),
    }
