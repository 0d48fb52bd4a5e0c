"""Transfers between locations: the application side (docs/stock-states.md, "Transfers").

:class:`Transfers` requests, ships, receives, closes and cancels transfers. A transfer is
a process (:mod:`domain.transfer`) driven by the one process-manager loop
(:class:`~application.processes.ProcessDriver`), as orders are: each command's intent is
recorded on the transfer's stream first, then each step is asked of a location's stock
stream through the ordinary stock commands (:class:`StockCommands`: ``ship_transfer``,
``expect_transfer``, ``receive_transfer``, ``record_transit_loss``, each idempotent by the
transfer id), and its result recorded after. Every command first drives unfinished work
on the transfer to its end, so the next request for a transfer finishes what a crash
left; :meth:`Transfers.sweep` does it for transfers nobody asks about.

Answers a caller may rely on:

* ``request`` returns :class:`TransferAnswer` (``created``: 201; else 200) or raises
  ``TransferConflict`` (409, another request under this id) or a 422 refusal with
  nothing recorded.
* ``ship`` raises ``InsufficientStock`` (409, with ``available``) when the source cannot
  spare the units: the refusal is recorded on the transfer, which stays ``requested``.
* ``receive``, ``close`` and ``cancel``: a repeat records nothing; a command the status
  does not allow raises ``TransferStatusConflict`` (409, with ``transfer_status``); a receipt
  with another quantity ``TransferConflict``; an unknown id ``UnknownTransfer`` (404).
* ``StoreUnavailable`` / ``ConcurrencyConflict`` (503): the transfer may be part way; it
  is due for the sweep, and the same request again completes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.commands import RetryPolicy, StockCommands
from application.ports import Clock, ProcessStreams
from application.processes import STALL_AFTER, ProcessDriver, ProcessHandler, Record, no_crash
from domain.errors import (
    IncomingConflict,
    InsufficientSellable,
    InsufficientStock,
    UnknownTransfer,
)
from domain.identifiers import require_identifier
from domain.transfer import (
    CANCELLED,
    REQUESTED,
    Transfer,
    TransferRequest,
    TransferStep,
    TransferView,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferAnswer:
    """A request's answer: the transfer, and whether this request created it."""

    transfer: TransferView
    created: bool


class TransferSteps(ProcessHandler[Transfer, TransferStep]):
    """How a transfer's steps are done: through the stock commands, keyed by the
    transfer id, so each is idempotent and the locations' streams, the projection and
    downstream consumers see the transfer's movements as stock events."""

    def __init__(self, commands: StockCommands) -> None:
        self.commands = commands

    def next_step(self, process: Transfer) -> TransferStep | None:
        return process.next_step()

    def perform(self, process: Transfer, step: TransferStep) -> Record[Transfer]:
        c = self.commands
        if step.kind == "ship":
            try:
                c.ship_transfer(step.sku, step.from_location, step.transfer_id,
                                step.quantity, step.to_location)
            except InsufficientStock as refusal:
                available = refusal.available
                return lambda transfer: transfer.record_refused(step, available)
            return lambda transfer: transfer.record_shipped(step)
        if step.kind == "expect":
            assert step.expected_at is not None
            c.expect_transfer(step.sku, step.to_location, step.transfer_id, step.quantity,
                              step.expected_at, step.from_location)
            return lambda transfer: transfer.record_expected(step)
        if step.kind == "receive":
            c.receive_transfer(step.sku, step.to_location, step.transfer_id, step.quantity,
                               step.shipped, step.from_location)
            return lambda transfer: transfer.record_received(step)
        c.record_transit_loss(step.sku, step.to_location, step.transfer_id, step.quantity,
                              step.from_location)
        return lambda transfer: transfer.record_lost(step)

    def wants(self, process: Transfer, step: TransferStep) -> bool:
        return process.wants(step)

    def undo(self, process: Transfer, step: TransferStep) -> None:
        # Only a shipment that raced a cancel is unwanted, and a stock stream has no
        # command to take a shipment back: the units stay shipped at the source under
        # the transfer id (its memo), visible in the source's events, and say so here.
        log.error("transfer %s was cancelled while another driver shipped it; the "
                  "source's shipment stands under the transfer id", process.transfer_id)

    def wake(self, process: Transfer, now: datetime) -> None:
        """Nothing about a transfer is decided by time alone."""

    def wake_at(self, process: Transfer, now: datetime) -> datetime | None:
        return process.wake_at(now)


class Transfers:
    """Transfers between locations, on any store behind the ports."""

    def __init__(
        self,
        transfers: ProcessStreams[Transfer],
        commands: StockCommands,
        clock: Clock,
        *,
        stall_after: timedelta = STALL_AFTER,
        retry: RetryPolicy | None = None,
        crash_point: Callable[[str], None] = no_crash,
    ) -> None:
        self.transfers = transfers
        self.commands = commands
        self.clock = clock
        self.driver: ProcessDriver[Transfer, TransferStep] = ProcessDriver(
            transfers, TransferSteps(commands), clock, stall_after=stall_after, retry=retry,
            crash_point=crash_point)

    def request(self, request: TransferRequest) -> TransferAnswer:
        """Record a transfer's request (or answer the same request again)."""
        created = False

        def decide(transfer: Transfer | None) -> Transfer:
            nonlocal created
            created = transfer is None
            if created:
                self._refuse_a_clients_entry(request)
            transfer = transfer or Transfer.create(request.transfer_id)
            transfer.place(request)
            return transfer

        transfer = self.driver.run(request.transfer_id, decide)
        assert transfer is not None
        return TransferAnswer(transfer.view(), created)

    def ship(self, transfer_id: str) -> TransferView:
        """Ship: the source's sellable units out, the destination's incoming in."""
        decided = False

        def ship(transfer: Transfer) -> None:
            nonlocal decided
            transfer.request_shipment(self.clock.now())
            decided = bool(transfer.pending_events)

        transfer = self._run(transfer_id, ship)
        if decided and transfer.status == REQUESTED and transfer.refused_available is not None:
            available = transfer.refused_available
            raise InsufficientSellable(action="ship", requested=transfer.quantity,
                                       available=available, free=max(available, 0))
        return transfer.view()

    def receive(self, transfer_id: str, quantity: int) -> TransferView:
        """The transfer's one receipt at the destination."""
        return self._run(transfer_id, lambda t: t.request_receipt(quantity)).view()

    def close(self, transfer_id: str) -> TransferView:
        """Close: what was shipped and never received is recorded as lost in transit."""
        return self._run(transfer_id, lambda t: t.request_close()).view()

    def cancel(self, transfer_id: str) -> TransferView:
        """Cancel a transfer not yet shipped."""
        return self._run(transfer_id, lambda t: t.cancel()).view()

    def get(self, transfer_id: str) -> TransferView:
        """The transfer, after driving any unfinished work on it to its end."""
        return self._run(transfer_id, None).view()

    def sweep(self, limit: int = 100) -> int:
        """Drive every transfer a crash left part way to its end; how many."""
        return self.driver.sweep(limit)

    def refuse_reference(self, sku: str, location: str, reference: str) -> None:
        """Raise ``IncomingConflict`` (409) when ``reference`` is the id of a transfer
        (not cancelled) of ``sku`` to ``location``: its incoming entry is the transfer's,
        before shipment too, and a client's entry under it would keep the transfer from
        adding its own. (The stock stream refuses it on its own once the entry exists.)"""
        transfer = self.transfers.get(reference)
        if (transfer is not None and transfer.status != CANCELLED
                and (transfer.sku, transfer.to_location) == (sku, location)):
            raise IncomingConflict(reference, f"it is transfer {reference}'s "
                                   f"({transfer.status}); it changes only with the transfer")

    def _refuse_a_clients_entry(self, request: TransferRequest) -> None:
        """A new transfer whose id is the reference of a client's open entry at the
        destination could never add its own: ``IncomingConflict`` (409), nothing recorded."""
        item = self.commands.store.get(request.sku, request.to_location)
        entry = None if item is None else item.incoming.get(request.transfer_id)
        if entry is not None and entry["transfer_from"] is None:
            raise IncomingConflict(request.transfer_id, "the destination expects a "
                                   "client's receipt under this reference")

    def _run(self, transfer_id: str, act: Callable[[Transfer], None] | None) -> Transfer:
        require_identifier("transfer_id", transfer_id)

        def decide(transfer: Transfer | None) -> Transfer:
            if transfer is None:
                raise UnknownTransfer(transfer_id)
            if act is not None:
                act(transfer)
            return transfer

        transfer = self.driver.run(transfer_id, decide)
        assert transfer is not None
        return transfer
