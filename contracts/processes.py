"""Process streams on the wire: which process kinds are published, and how.

A process (an order, a transfer) is an aggregate with a stream of its own. Its
events are published on the stock topic, each kind in sessions of its own:

- session id ``{kind}:{id}`` (``order:ORD-1``), the CloudEvents ``subject``;
- message id and CloudEvents ``id`` ``{kind}:{id}:{version}``;
- type ``Stockstream.<Name>.v<N>`` with its schema in the registry, ``data`` naming the
  process by its id field (``order_id``, ``transfer_id``);
- application properties ``type``, ``process`` (the kind), ``processId``, ``sequence``
  and ``replayTarget``, and no ``sku`` / ``location``: a subscription filtering on those,
  or on stock types, never sees them. Stock consumers skip them (``is_process_type``).

:data:`PROCESS_KINDS` is the one registry: a new kind of process is published by one
:class:`ProcessKind` entry (its name, the field of its ``Created`` event that names it,
and its event types) and ``make schemas``.

Location groups are not published: a group is configuration that sourcing reads, and
every order records the definitions it used in its ``OrderPlaced`` (``groups``), which is
what a downstream team needs to explain an order's choice of location.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import Aggregate

from contracts.cloudevents import WIRE_TYPES, WireType, cloudevent_document
from contracts.events import (
    OrderConcludedV1,
    OrderCreatedV1,
    OrderFulfilmentRequestedV1,
    OrderLineFulfilledV1,
    OrderLineHeldV1,
    OrderLineRefusedV1,
    OrderLineReleasedV1,
    OrderLineRescheduledV1,
    OrderPlacedV1,
    OrderReleaseRequestedV1,
    OrderRescheduledV1,
    OrderSourcedV1,
    TransferCancelledV1,
    TransferCloseRequestedV1,
    TransferCreatedV1,
    TransferIncomingAddedV1,
    TransferLossRecordedV1,
    TransferReceiptAddedV1,
    TransferReceiptRequestedV1,
    TransferRequestedV1,
    TransferShipmentRefusedV1,
    TransferShipmentRequestedV1,
    TransferShipmentTakenV1,
)
from domain.order import Order
from domain.transfer import KIND as TRANSFER_KIND
from domain.transfer import Transfer


@dataclass(frozen=True)
class ProcessKind:
    """One kind of process stream that is published."""

    name: str
    """The kind, the prefix of its session and message ids (``order``)."""
    id_field: str
    """The attribute of the process (and the member of every payload) that names it."""
    aggregate: type[Aggregate]
    wire_types: tuple[WireType, ...]

    def session_id(self, key: str) -> str:
        return f"{self.name}:{key}"

    def event_id(self, key: str, version: int) -> str:
        return f"{self.name}:{key}:{version}"


ORDER = ProcessKind("order", "order_id", Order, (
    WireType("OrderCreated", 1, OrderCreatedV1, Order.Created),
    WireType("OrderPlaced", 1, OrderPlacedV1, Order.Placed),
    WireType("OrderSourced", 1, OrderSourcedV1, Order.Sourced),
    WireType("OrderLineHeld", 1, OrderLineHeldV1, Order.Held),
    WireType("OrderLineRefused", 1, OrderLineRefusedV1, Order.Refused),
    WireType("OrderLineReleased", 1, OrderLineReleasedV1, Order.Released),
    WireType("OrderLineFulfilled", 1, OrderLineFulfilledV1, Order.Fulfilled),
    WireType("OrderLineRescheduled", 1, OrderLineRescheduledV1, Order.HoldRescheduled),
    WireType("OrderReleaseRequested", 1, OrderReleaseRequestedV1, Order.ReleaseRequested),
    WireType("OrderFulfilmentRequested", 1, OrderFulfilmentRequestedV1,
             Order.FulfilmentRequested),
    WireType("OrderRescheduled", 1, OrderRescheduledV1, Order.Rescheduled),
    WireType("OrderConcluded", 1, OrderConcludedV1, Order.Concluded),
))

TRANSFER = ProcessKind(TRANSFER_KIND, "transfer_id", Transfer, (
    WireType("TransferCreated", 1, TransferCreatedV1, Transfer.Created),
    WireType("TransferRequested", 1, TransferRequestedV1, Transfer.Requested),
    WireType("TransferShipmentRequested", 1, TransferShipmentRequestedV1,
             Transfer.ShipmentRequested),
    WireType("TransferShipmentTaken", 1, TransferShipmentTakenV1, Transfer.ShipmentTaken),
    WireType("TransferShipmentRefused", 1, TransferShipmentRefusedV1,
             Transfer.ShipmentRefused),
    WireType("TransferIncomingAdded", 1, TransferIncomingAddedV1, Transfer.IncomingAdded),
    WireType("TransferReceiptRequested", 1, TransferReceiptRequestedV1,
             Transfer.ReceiptRequested),
    WireType("TransferReceiptAdded", 1, TransferReceiptAddedV1, Transfer.ReceiptAdded),
    WireType("TransferCloseRequested", 1, TransferCloseRequestedV1, Transfer.CloseRequested),
    WireType("TransferLossRecorded", 1, TransferLossRecordedV1, Transfer.LossRecorded),
    WireType("TransferCancelled", 1, TransferCancelledV1, Transfer.Cancelled),
))

PROCESS_KINDS: tuple[ProcessKind, ...] = (ORDER, TRANSFER)
"""Every published kind of process (a new kind plugs in with one entry)."""

PROCESS_WIRE_TYPES: tuple[WireType, ...] = tuple(
    w for kind in PROCESS_KINDS for w in kind.wire_types)

PUBLISHED_WIRE_TYPES: tuple[WireType, ...] = (*WIRE_TYPES, *PROCESS_WIRE_TYPES)
"""Every type the topic carries: what the registry and AsyncAPI are generated from."""

_WIRE_OF = {w.domain_class: (kind, w) for kind in PROCESS_KINDS for w in kind.wire_types}
_PROCESS_TYPES = {w.type for w in PROCESS_WIRE_TYPES}


def is_process_type(cloudevents_type: str) -> bool:
    """Whether a CloudEvents ``type`` is a process's (not a stock event)."""
    return cloudevents_type in _PROCESS_TYPES


@dataclass(frozen=True)
class ProcessEvent:
    """A stored process event with the id of its process (which only its stream's
    ``Created`` carries), ready to be published."""

    kind: ProcessKind
    key: str
    event: Any

    @property
    def wire(self) -> WireType:
        return _WIRE_OF[type(self.event)][1]


def kind_of_event(event: object) -> ProcessKind:
    """The kind of a published process event (``KeyError`` for any other event)."""
    return _WIRE_OF[type(event)][0]


def is_published(event: object) -> bool:
    """Whether a process event's type is published (a kind in :data:`PROCESS_KINDS`)."""
    return type(event) in _WIRE_OF


def process_cloudevent(published: ProcessEvent) -> dict[str, Any]:
    """The CloudEvents document of a process event (deterministic, as for stock)."""
    event, kind = published.event, published.kind
    return cloudevent_document(
        published.wire, {**vars(event), kind.id_field: published.key},
        kind.event_id(published.key, event.originator_version),
        kind.session_id(published.key), event)
