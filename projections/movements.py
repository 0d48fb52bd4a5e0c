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

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from application.cadence import LedgerEntry
from application.ports import History, MovementLedgerStore, OutboxReader
from projections.versioned import Outcome, apply_in_order

NAME = "movements"


Handler = Callable[[dict[str, Any]], object]
Batch = Callable[[], AbstractContextManager[object]]

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
        return apply_in_order(
            entry, entry.version, self.ledger.apply,
            lambda: self.ledger.version_of(entry.sku, entry.location),
            lambda current: [LedgerEntry.of_event(event) for event in self.history(
                entry.sku, entry.location, current, entry.version)])


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


def batch_with_movements(batch: Batch, movements: MovementProjection) -> Batch:
    """The batch scope of :func:`with_movements`'s handler: ``batch`` (the availability
    view's) and the movement ledger's, so a consumer's batch costs each store one write.
    If either commit fails, the error reaches the consumer, which then settles nothing;
    the store that did commit absorbs the redelivery by its version guard."""

    @contextmanager
    def both() -> Iterator[None]:
        with batch(), movements.ledger.batch():
            yield

    return both
