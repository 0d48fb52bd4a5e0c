"""The ``Transfer`` process: units moving from one location to another.

There is no transaction across the two locations' streams, so a transfer is a process
with a stream of its own, ``transfer:{transfer_id}``, driven by the same process-manager
loop as orders (:mod:`application.processes`). The stream records

* its **intent**: ``Requested`` (SKU, from, to, quantity, expected time), then each
  command on it (``ShipmentRequested``, ``ReceiptRequested``, ``CloseRequested``) before
  anything is asked of a stock stream, and ``Cancelled``;
* each **step** it asked of a stock stream and what came of it: ``ShipmentTaken`` /
  ``ShipmentRefused`` at the source, ``IncomingAdded`` at the destination (the transfer's
  incoming entry, reference = transfer id), ``ReceiptAdded`` and ``LossRecorded`` at the
  destination.

Every step is one of the stock item's transfer commands, each idempotent by the transfer
id (``StockItem.ship_transfer``, ``expect_transfer``, ``receive_transfer``,
``record_transit_loss``), so doing one again after a crash changes nothing; what to do
next is the pure function :meth:`Transfer.next_step` of the recorded state. A transfer
killed between the source's step and the destination's leaves a stream that says so, and
whoever drives it next (the next request for it, or the sweep) does the destination's step.

Statuses a client sees: ``requested`` → ``shipped`` → ``received`` → ``closed``, or
``cancelled`` before shipment. ``shipping``, ``receiving`` and ``closing`` mean work under
way; the service drives a transfer to rest before it answers, so a client only sees them
when a step could not be done (the store was unavailable) and the sweep is due to finish it.

Decide apart from evolve, as in ``StockItem`` and ``Order``: the public methods validate
and decide (possibly that nothing is to be recorded); each event's ``apply`` only sets
state and cannot fail. Units are conserved: ``shipped = received + lost + in_transit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidRequest, TransferConflict, TransferStatusConflict
from domain.identifiers import STOCKSTREAM_NAMESPACE, require_identifier, require_quantity
from domain.stock_item import MAX_QUANTITY, require_timestamp

KIND = "transfer"
"""The kind of process (its streams' prefix, its key in the process index)."""

NEW = "new"
REQUESTED, SHIPPED, RECEIVED, CLOSED, CANCELLED = (
    "requested", "shipped", "received", "closed", "cancelled")
SHIPPING, RECEIVING, CLOSING = "shipping", "receiving", "closing"
"""Work under way: the intent is recorded, the stock streams' steps are not all done."""
AT_REST = (REQUESTED, SHIPPED, RECEIVED, CLOSED, CANCELLED)
UNDER_WAY = (SHIPPING, RECEIVING, CLOSING)


def transfer_stream_name(transfer_id: str) -> str:
    """The stream of a transfer (and its Service Bus session)."""
    return f"{KIND}:{require_identifier('transfer_id', transfer_id)}"


def transfer_uuid(transfer_id: str) -> UUID:
    """The aggregate id ``eventsourcing`` stores the transfer's stream under."""
    return uuid5(STOCKSTREAM_NAMESPACE, transfer_stream_name(transfer_id))


@dataclass(frozen=True)
class TransferRequest:
    """A validated ``PUT /api/transfers/{transfer_id}``."""

    transfer_id: str
    sku: str
    from_location: str
    to_location: str
    quantity: int
    expected_at: datetime | None

    @classmethod
    def of(cls, transfer_id: Any, sku: Any, from_location: Any, to_location: Any,
           quantity: Any, expected_at: Any = None) -> TransferRequest:
        """Validate a request: identifiers by the domain's rule, two distinct locations,
        ``1 ≤ quantity ≤ MAX_QUANTITY``, ``expected_at`` aware if given. Raises
        ``InvalidIdentifier`` / ``InvalidQuantity`` / ``InvalidRequest`` (422)."""
        require_identifier("transfer_id", transfer_id)
        require_identifier("sku", sku)
        require_identifier("from_location", from_location)
        require_identifier("to_location", to_location)
        if from_location == to_location:
            raise InvalidRequest("a transfer goes to another location", field="to_location")
        require_quantity("quantity", quantity, minimum=1)
        if quantity > MAX_QUANTITY:
            raise InvalidRequest(f"quantity must be at most {MAX_QUANTITY}", field="quantity")
        if expected_at is not None:
            require_timestamp("expected_at", expected_at)
        return cls(transfer_id, sku, from_location, to_location, quantity, expected_at)


@dataclass(frozen=True)
class TransferStep:
    """One thing the transfer asks of a stock stream, idempotent by the transfer id.

    ``ship`` (the source takes ``quantity`` sellable units), ``expect`` (the destination's
    incoming entry of ``quantity`` due at ``expected_at``), ``receive`` (the destination
    adds ``quantity`` sellable units of ``shipped``), ``lose`` (the destination records
    ``quantity`` lost in transit).
    """

    kind: Literal["ship", "expect", "receive", "lose"]
    transfer_id: str
    sku: str
    from_location: str
    to_location: str
    quantity: int
    shipped: int = 0
    expected_at: datetime | None = None


@dataclass(frozen=True)
class TransferView:
    """What a client sees of a transfer (the §5.3 transfer shape, plus ``in_transit``
    and ``expected_at``)."""

    transfer_id: str
    sku: str
    from_location: str
    to_location: str
    quantity: int
    shipped: int
    received: int
    lost: int
    status: str
    expected_at: datetime | None
    version: int

    @property
    def in_transit(self) -> int:
        return self.shipped - self.received - self.lost


class Transfer(Aggregate):
    """A transfer of one SKU between two locations, as a process with its own stream."""

    TOPIC = "stockstream:Transfer"

    class Event(Aggregate.Event):
        TOPIC = "stockstream:Transfer.Event"

    class Created(Event, Aggregate.Created):
        """The transfer's stream began (``TransferCreated``)."""

        TOPIC = "stockstream:TransferCreated"
        transfer_id: str

    class Requested(Event):
        """Intent: move ``quantity`` of ``sku`` from one location to the other
        (``TransferRequested``)."""

        TOPIC = "stockstream:TransferRequested"
        sku: str
        from_location: str
        to_location: str
        quantity: int
        expected_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.sku = self.sku
            aggregate.from_location = self.from_location
            aggregate.to_location = self.to_location
            aggregate.quantity = self.quantity
            aggregate.expected_at = self.expected_at
            aggregate.status = REQUESTED

    class ShipmentRequested(Event):
        """Intent: ship; the units are due at the destination at ``expected_at`` (the
        requested time, or the shipment's) (``TransferShipmentRequested``)."""

        TOPIC = "stockstream:TransferShipmentRequested"
        expected_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.status = SHIPPING
            aggregate.due_at = self.expected_at
            aggregate.refused_available = None

    class ShipmentTaken(Event):
        """Step: the source took ``quantity`` sellable units (``TransferShipmentTaken``)."""

        TOPIC = "stockstream:TransferShipmentTaken"
        quantity: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = SHIPPING
            aggregate.shipped = self.quantity

    class ShipmentRefused(Event):
        """Step: the source had only ``available`` units to ship; the transfer stays
        requested (``TransferShipmentRefused``)."""

        TOPIC = "stockstream:TransferShipmentRefused"
        available: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = REQUESTED
            aggregate.refused_available = self.available

    class IncomingAdded(Event):
        """Step: the destination expects the shipped units (its incoming entry under the
        transfer id); the transfer is shipped (``TransferIncomingAdded``)."""

        TOPIC = "stockstream:TransferIncomingAdded"
        quantity: int
        expected_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.expecting = True
            aggregate.status = SHIPPED

    class ReceiptRequested(Event):
        """Intent: the destination received ``quantity`` (``TransferReceiptRequested``)."""

        TOPIC = "stockstream:TransferReceiptRequested"
        quantity: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = RECEIVING
            aggregate.to_receive = self.quantity

    class ReceiptAdded(Event):
        """Step: the destination added ``quantity`` sellable units and closed the
        transfer's incoming entry (``TransferReceiptAdded``)."""

        TOPIC = "stockstream:TransferReceiptAdded"
        quantity: int

        def apply(self, aggregate: Any) -> None:
            aggregate.received = self.quantity
            aggregate.to_receive = None
            aggregate.status = RECEIVED

    class CloseRequested(Event):
        """Intent: close; ``lost`` units (shipped, never received) are lost in transit
        (``TransferCloseRequested``)."""

        TOPIC = "stockstream:TransferCloseRequested"
        lost: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = CLOSING
            aggregate.to_lose = self.lost

    class LossRecorded(Event):
        """Step: the destination recorded ``quantity`` lost in transit; the transfer is
        closed (``TransferLossRecorded``)."""

        TOPIC = "stockstream:TransferLossRecorded"
        quantity: int

        def apply(self, aggregate: Any) -> None:
            aggregate.lost = self.quantity
            aggregate.to_lose = None
            aggregate.status = CLOSED

    class Cancelled(Event):
        """The transfer was cancelled before shipment (``TransferCancelled``)."""

        TOPIC = "stockstream:TransferCancelled"

        def apply(self, aggregate: Any) -> None:
            aggregate.status = CANCELLED

    # Declared for type checkers; set in __init__ and by events.
    transfer_id: str
    sku: str
    from_location: str
    to_location: str
    quantity: int
    expected_at: datetime | None
    status: str
    due_at: datetime | None
    shipped: int
    expecting: bool
    received: int
    lost: int
    to_receive: int | None
    to_lose: int | None
    refused_available: int | None

    def __init__(self, transfer_id: str) -> None:
        self.transfer_id = transfer_id
        self.sku = self.from_location = self.to_location = ""
        self.quantity = 0
        self.expected_at = None
        self.status = NEW
        self.due_at = None
        self.shipped = 0
        self.expecting = False
        self.received = 0
        self.lost = 0
        self.to_receive = None
        self.to_lose = None
        self.refused_available = None

    @classmethod
    def create(cls, transfer_id: str) -> Transfer:
        """Start a transfer's stream (its ``Created`` is saved with its ``Requested``)."""
        return cls._create(cls.Created, id=transfer_uuid(transfer_id), transfer_id=transfer_id)

    # ------------------------------------------------------------------ reading

    @property
    def request(self) -> TransferRequest:
        return TransferRequest(self.transfer_id, self.sku, self.from_location,
                               self.to_location, self.quantity, self.expected_at)

    @property
    def in_transit(self) -> int:
        return self.shipped - self.received - self.lost

    def view(self) -> TransferView:
        return TransferView(self.transfer_id, self.sku, self.from_location, self.to_location,
                            self.quantity, self.shipped, self.received, self.lost,
                            self.status, self.due_at or self.expected_at, self.version)

    def next_step(self) -> TransferStep | None:
        """What the transfer asks of a stock stream next (None: at rest). Pure."""
        def step(kind: Any, quantity: int, **more: Any) -> TransferStep:
            return TransferStep(kind, self.transfer_id, self.sku, self.from_location,
                                self.to_location, quantity, **more)

        if self.status == SHIPPING:
            if self.shipped == 0:
                return step("ship", self.quantity)
            if not self.expecting:
                return step("expect", self.shipped, expected_at=self.due_at)
        if self.status == RECEIVING and self.to_receive is not None:
            return step("receive", self.to_receive, shipped=self.shipped)
        if self.status == CLOSING and self.to_lose is not None:
            return step("lose", self.to_lose, shipped=self.shipped)
        return None

    def wake_at(self, now: datetime) -> datetime | None:
        """Now while a step is left (the driver adds the stall time); else never."""
        return now if self.next_step() is not None else None

    # ---------------------------------------------------------------- commands

    def place(self, request: TransferRequest) -> None:
        """Record the request; the same request again records nothing, another raises
        ``TransferConflict`` (naming the transfer's status)."""
        if self.status != NEW:
            if request != self.request:
                raise TransferConflict(self.transfer_id, f"it is {self.status} with another "
                                       "request", transfer_status=self.status)
            return
        self.trigger_event(self.Requested, sku=request.sku,
                           from_location=request.from_location,
                           to_location=request.to_location, quantity=request.quantity,
                           expected_at=request.expected_at)

    def request_shipment(self, now: datetime) -> None:
        """Decide to ship (due at the requested time, or ``now``). Once shipped (or
        received, or closed) a repeat records nothing; a cancelled transfer raises
        ``TransferStatusConflict``."""
        require_timestamp("now", now)
        if self.status == CANCELLED:
            raise TransferStatusConflict(self.transfer_id, self.status, "ship")
        if self.status != REQUESTED:
            return
        self.trigger_event(self.ShipmentRequested, expected_at=self.expected_at or now)

    def request_receipt(self, quantity: int) -> None:
        """Decide the one receipt (``1 ≤ quantity ≤ shipped``). The same quantity again
        records nothing; another raises ``TransferConflict``; before shipment, after a
        cancel or a close without receipt, ``TransferStatusConflict``."""
        require_quantity("quantity", quantity, minimum=1)
        if self.status in (RECEIVED, CLOSED) and self.received:
            if quantity != self.received:
                raise TransferConflict(self.transfer_id, f"it received {self.received} "
                                       f"already, not {quantity}", transfer_status=self.status,
                                       received=self.received)
            return
        if self.status != SHIPPED:
            raise TransferStatusConflict(self.transfer_id, self.status, "receive")
        if quantity > self.shipped:
            raise InvalidRequest(f"cannot receive {quantity}: the transfer shipped "
                                 f"{self.shipped}", field="quantity")
        self.trigger_event(self.ReceiptRequested, quantity=quantity)

    def request_close(self) -> None:
        """Decide to close: what was shipped and not received is lost in transit. A
        closed transfer records nothing; one not shipped raises ``TransferStatusConflict``."""
        if self.status == CLOSED:
            return
        if self.status not in (SHIPPED, RECEIVED):
            raise TransferStatusConflict(self.transfer_id, self.status, "close")
        self.trigger_event(self.CloseRequested, lost=self.shipped - self.received)

    def cancel(self) -> None:
        """Cancel before shipment; a repeat records nothing; after shipment
        ``TransferStatusConflict``."""
        if self.status == CANCELLED:
            return
        if self.status != REQUESTED:
            raise TransferStatusConflict(self.transfer_id, self.status, "cancel")
        self.trigger_event(self.Cancelled)

    # Each record_* is the decision on a step's result. A step that is no longer the
    # next one (a stale driver's, or a repeat recorded already) records nothing.

    def record_shipped(self, step: TransferStep) -> None:
        if self._expects(step, "ship"):
            self.trigger_event(self.ShipmentTaken, quantity=step.quantity)

    def record_refused(self, step: TransferStep, available: int) -> None:
        if self._expects(step, "ship"):
            self.trigger_event(self.ShipmentRefused, available=available)

    def record_expected(self, step: TransferStep) -> None:
        if self._expects(step, "expect"):
            assert step.expected_at is not None
            self.trigger_event(self.IncomingAdded, quantity=step.quantity,
                               expected_at=step.expected_at)

    def record_received(self, step: TransferStep) -> None:
        if self._expects(step, "receive"):
            self.trigger_event(self.ReceiptAdded, quantity=step.quantity)

    def record_lost(self, step: TransferStep) -> None:
        if self._expects(step, "lose"):
            self.trigger_event(self.LossRecorded, quantity=step.quantity)

    def wants(self, step: TransferStep) -> bool:
        """Whether this transfer (reloaded after a lost race) still wants what ``step``
        did: every step but a shipment is wanted once decided; a shipment is wanted
        unless the transfer has been cancelled since."""
        return not (step.kind == "ship" and self.status == CANCELLED)

    def _expects(self, step: TransferStep, kind: str) -> bool:
        return step.kind == kind and self.next_step() == step
