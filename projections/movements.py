"""The movement ledger projection: units moved per SKU-location per day, and each
SKU-location's last count, which the count cadence reads (``application.cadence``).

It is fed CloudEvents from the ``availability`` subscription on both hosts: the consumer
applies each message to the availability view, then here (:func:`with_movements`). Each
SKU-location's ledger records the stream version it reflects in the same atomic write as
the figures, so the projection is idempotent (an event at or below that version is a
no-op: a redelivery, or a retry after a failure between the two projections, counts once)
and gap-proof (an event beyond the next version first reads the missing events from the
event store, as the availability projection does).

What an event records. Units moved: a receipt's quantity, a fulfilment's quantity, an
adjustment's ``|delta|``, on the (UTC) day the event occurred. Reservations move nothing
physically; count corrections are drift, not movement, and would make a drifting item
look busy. A ``StockCounted`` records its ``counted_at`` as the last count when it is the
latest one seen. Every event makes its SKU-location known to the schedule (never counted:
due now).

Rebuilding. The ledger is derived data: :meth:`MovementProjection.rebuild` replays a
commit-ordered log (the embedded host's event store) through the same version guard.
A host rebuilds once when its store says so (:meth:`MovementLedgerStore.needs_rebuild`:
a new ledger beside an existing event store, or one written by earlier versions, which
tailed the log and kept no stream versions); Cosmos DB's ledger was always fed per event
and never asks.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from application.cadence import MovementLedger
from application.ports import OutboxReader
from contracts.cloudevents import from_cloudevent_type
from domain.stock_item import StockItem

NAME = "movements"

Outcome = Literal["applied", "duplicate", "caught-up"]

History = Callable[[str, str, int, int], list[StockItem.Event]]
"""Reads a stream's events with ``after < version ≤ upto`` (sku, location, after, upto)."""

Handler = Callable[[dict[str, Any]], object]

_UNITS_FIELD: dict[type[StockItem.Event], str] = {
    StockItem.Received: "quantity",
    StockItem.Fulfilled: "quantity",
    StockItem.Adjusted: "delta",
}
"""The field whose absolute value is the units an event moved (see the module docstring)."""


def units_moved(event: StockItem.Event) -> int:
    """Physical units an event moved (see the module docstring)."""
    name = _UNITS_FIELD.get(type(event))
    return 0 if name is None else abs(int(getattr(event, name)))


@dataclass(frozen=True)
class LedgerEntry:
    """One event's part in the ledger: its stream version, the (UTC) day and units it
    moved, and the count time of a ``StockCounted``."""

    sku: str
    location: str
    version: int
    day: date
    units: int
    counted_at: datetime | None = None

    @classmethod
    def of_event(cls, event: StockItem.Event) -> LedgerEntry:
        counted_at = event.counted_at if isinstance(event, StockItem.Counted) else None
        return cls(event.sku, event.location, event.originator_version,
                   event.timestamp.astimezone(UTC).date(), units_moved(event), counted_at)

    @classmethod
    def of_cloudevent(cls, document: Mapping[str, Any]) -> LedgerEntry:
        """The entry of a published event (a validated CloudEvent document); an event type
        this build does not know moves nothing."""
        data = document["data"]
        wire = from_cloudevent_type(str(document["type"]))
        domain_class = None if wire is None else wire.domain_class
        name = None if domain_class is None else _UNITS_FIELD.get(domain_class)
        counted_at = (_time(str(data["counted_at"])) if domain_class is StockItem.Counted
                      else None)
        return cls(str(data["sku"]), str(data["location"]), int(document["sequence"]),
                   _time(str(document["time"])).astimezone(UTC).date(),
                   0 if name is None else abs(int(data[name])), counted_at)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class MovementLedgerStore(MovementLedger):
    """Storage of the movement ledger (SQLite embedded, Cosmos DB in Azure): the read side
    the schedule needs, and the version-guarded write this projection makes."""

    @abstractmethod
    def version_of(self, sku: str, location: str) -> int:
        """The stream version the SKU-location's ledger reflects (0 if none)."""

    @abstractmethod
    def apply(self, entry: LedgerEntry) -> bool:
        """Add the entry if the SKU-location's ledger is exactly at ``entry.version - 1``,
        atomically with the version; False (and nothing written) otherwise."""

    def needs_rebuild(self) -> bool:
        """True when the ledger must be rebuilt from the event store once (see the module
        docstring). A store that is only ever fed per event answers False."""
        return False

    def rebuilt(self) -> None:
        """Record that the rebuild finished (the next :meth:`needs_rebuild` is False)."""

    def close(self) -> None:
        """Release connections."""


class MovementProjection:
    """Applies events to the movement ledger, idempotently and without holes."""

    name = NAME

    def __init__(self, ledger: MovementLedgerStore, history: History) -> None:
        self.ledger = ledger
        self.history = history

    def handle(self, document: dict[str, Any]) -> Outcome:
        """Apply one CloudEvent document (already validated against the registry)."""
        return self._handle(LedgerEntry.of_cloudevent(document))

    def rebuild(self, log: OutboxReader, batch: int = 5000) -> int:
        """Apply every event of a commit-ordered log through the version guard, then
        record the rebuild; returns how many events were read. Safe to repeat and to run
        while messages are applied: what the ledger already reflects is skipped."""
        read = position = 0
        while records := log.read_after(position, batch):
            for record in records:
                self._handle(LedgerEntry.of_event(record.event))
            read += len(records)
            position = records[-1].position
        self.ledger.rebuilt()
        return read

    def _handle(self, entry: LedgerEntry) -> Outcome:
        for _ in range(8):
            # The next version is the common case, so try it first: apply() itself
            # checks the version atomically, and only a refusal needs a second look.
            if self.ledger.apply(entry):
                return "applied"
            current = self.ledger.version_of(entry.sku, entry.location)
            if entry.version <= current:
                return "duplicate"
            if entry.version > current + 1:
                self._catch_up(entry, current)
                return "caught-up"
        # Another writer kept moving the ledger; it is at or past this event by now.
        return "duplicate"

    def _catch_up(self, entry: LedgerEntry, current: int) -> None:
        for event in self.history(entry.sku, entry.location, current, entry.version):
            missing = LedgerEntry.of_event(event)
            if missing.version > self.ledger.version_of(entry.sku, entry.location):
                self.ledger.apply(missing)
        self.ledger.apply(entry)  # in case the read did not reach it yet (a no-op if it did)


def with_movements(handler: Handler, movements: MovementProjection) -> Handler:
    """The availability subscription's handler on both hosts: each message is applied with
    ``handler`` (the availability view), then to the movement ledger. Both are idempotent
    per stream version, so a redelivery after a failure between the two changes nothing in
    the one that already has it. Answers ``handler``'s outcome (the lag metric's)."""

    def handle(document: dict[str, Any]) -> object:
        outcome = handler(document)
        movements.handle(document)
        return outcome

    return handle
