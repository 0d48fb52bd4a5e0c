"""Orders and location groups: the application side (docs/orders.md).

:class:`Orders` places, releases and fulfils orders. An order is a process
(:mod:`domain.order`) driven by the process-manager loop (:mod:`application.processes`):
its intent and sourcing are recorded first, then each hold is taken one by one in a
stable order through the ordinary stock commands (:class:`StockCommands`, the
reservation keyed by the order id), each result recorded on the order's stream. On the
first refusal an all-or-nothing order releases what it holds and ends failed; a partial
one holds what it can. Every command on an order first drives unfinished work on it to
its end, so the next request for an order completes or compensates what a crash left;
:meth:`Orders.sweep` does the same for orders nobody asks about, and releases the orders
whose holds expired (the holds themselves expire with their reservations' ttl, through
the stock streams' own expiry).

Answers a caller (the HTTP layer, later) may rely on:

* ``place`` returns :class:`OrderAnswer` (``created``: this request completed the hold,
  201; else 200) or raises ``OrderShort`` (409 ``insufficient-stock`` with ``lines``)
  when the order ended failed; ``OrderConflict``, ``OrderClosed`` (409);
  ``InvalidIdentifier`` / ``InvalidQuantity`` / ``InvalidRequest`` /
  ``UnknownLocationGroup`` (422) with nothing recorded.
* ``release`` and ``fulfil`` are idempotent; ``UnknownOrder`` (404) for an order never
  placed; ``OrderClosed`` (409) for a release after fulfilment or a fulfilment after
  release.
* ``StoreUnavailable`` / ``ConcurrencyConflict`` (503): the order may be part way; it is
  due for the sweep, and the same request again completes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from application.commands import CommandResult, RetryPolicy, StockCommand, StockCommands
from application.ports import (
    AggregateStreams,
    Clock,
    ConcurrencyConflict,
    ProcessStreams,
    StockItemStore,
)
from application.processes import STALL_AFTER, ProcessDriver, ProcessHandler, Record, no_crash
from domain.errors import (
    FulfilmentConflict,
    InsufficientStock,
    OrderShort,
    ReservationClosed,
    UnknownGroup,
    UnknownLocationGroup,
    UnknownOrder,
    UnknownReservation,
)
from domain.identifiers import require_identifier
from domain.location_group import GroupDefinition, LocationGroup
from domain.order import (
    FAILED,
    HELD,
    PARTIALLY_HELD,
    PENDING,
    PLACING,
    Order,
    OrderRequest,
    OrderStep,
    OrderView,
    hold_key,
)


@dataclass(frozen=True)
class OrderAnswer:
    """A placement's answer: the order, and whether this request completed its hold."""

    order: OrderView
    created: bool


class OrderSteps(ProcessHandler[Order, OrderStep]):
    """How an order's steps are done: through the ordinary stock commands, keyed by the
    order id, so each is idempotent and every line route, projection and consumer sees
    an order's holds as the reservations they are."""

    def __init__(self, commands: StockCommands) -> None:
        self.commands = commands

    def next_step(self, process: Order) -> OrderStep | None:
        return process.next_step()

    def next_steps(self, process: Order, limit: int) -> list[OrderStep]:
        return process.next_steps(limit)

    def perform_many(self, process: Order, steps: list[OrderStep]) -> list[Record[Order]]:
        """A placement's holds as one :meth:`StockCommands.run_many`: on the embedded
        host one group commit, so a 5-line order's holds cost one fsync, not five (each
        hold still atomic on its own stream, a refusal recording nothing)."""
        if len(steps) < 2 or any(step.kind != "hold" for step in steps):
            return super().perform_many(process, steps)
        outcomes = self.commands.run_many([self._hold(step) for step in steps])
        return [self._held(process, step, outcome)
                for step, outcome in zip(steps, outcomes, strict=True)]

    def _hold(self, step: OrderStep) -> StockCommand:
        return self.commands.plan_reserve(step.sku, step.location, step.order_id,
                                          step.quantity, step.channel,
                                          expires_at=step.expires_at, reopen=step.reopen)

    def _held(self, process: Order, step: OrderStep,
              outcome: CommandResult | Exception) -> Record[Order]:
        """The record of a hold's outcome (a refusal releases what the placement must
        not keep); an unexpected error is raised, the hold to be taken again."""
        if isinstance(outcome, InsufficientStock):
            available = outcome.available
            self._release_unrecorded(process, step)
            return lambda order: order.record_refused(step, available)
        if isinstance(outcome, ReservationClosed | UnknownReservation):  # closed by a
            self._release_unrecorded(process, step)  # line route, a lost race, or expired
            return lambda order: order.record_refused(step, 0)
        if isinstance(outcome, Exception):
            raise outcome
        # A hold taken again (after a crash, or by another driver before a ttl change)
        # keeps its earlier expiry; the order's is the one that counts.
        if any(r.expires_at != step.expires_at
               for r in outcome.position_of(step.order_id).reservations):
            self.commands.reschedule(step.sku, step.location, step.order_id,
                                     step.expires_at)
        return lambda order: order.record_held(step)

    def perform(self, process: Order, step: OrderStep) -> Record[Order]:
        c = self.commands
        if step.kind == "hold":
            outcome: CommandResult | Exception
            try:
                outcome = c.run(self._hold(step))
            except (InsufficientStock, ReservationClosed, UnknownReservation) as refusal:
                outcome = refusal
            return self._held(process, step, outcome)
        if step.kind == "release":
            reason = "compensation" if process.status == PLACING else (
                process.release_reason or "cancelled")
            try:
                c.release(step.sku, step.location, step.order_id)
            except UnknownReservation:
                reason = "not-held"
            except ReservationClosed as closed:
                reason = closed.outcome
            return lambda order: order.record_released(step, reason)
        if step.kind == "fulfil":
            try:
                c.fulfil(step.sku, step.location, step.order_id, step.quantity)
            except FulfilmentConflict as conflict:  # shipped through the line route
                shipped = conflict.fulfilled
                return lambda order: order.record_fulfilled(step, shipped)
            except (ReservationClosed, UnknownReservation) as gone:
                lost = gone.outcome if isinstance(gone, ReservationClosed) else "not-held"
                return lambda order: order.record_released(step, lost)
            return lambda order: order.record_fulfilled(step, step.quantity)
        try:
            c.reschedule(step.sku, step.location, step.order_id, step.expires_at)
        except (ReservationClosed, UnknownReservation) as gone:
            lost = gone.outcome if isinstance(gone, ReservationClosed) else "not-held"
            return lambda order: order.record_released(step, lost)
        return lambda order: order.record_rescheduled(step)

    def _release_unrecorded(self, process: Order, refused: OrderStep) -> None:
        """An all-or-nothing placement refused at one hold is compensated from its record
        (the holds it records as held), and the holds after the refused one stay
        pending. The driver records several steps in one write, so a placement driven
        again after a crash may be refused at a hold it took before (closed since by a
        line route or its expiry) while holds after it, taken in the lost batch, were
        never recorded: release those too (a release of a hold never taken does
        nothing), so that no hold outlives its failed order."""
        if process.mode != "all_or_nothing":
            return  # a partial placement goes on to hold (again) every later line
        holds = process.ordered_holds()
        keys = [hold_key(h["sku"], h["location"]) for h in holds]
        for hold in holds[keys.index(refused.key) + 1:]:
            if hold["state"] != PENDING:
                continue
            with suppress(UnknownReservation, ReservationClosed):
                self.commands.release(hold["sku"], hold["location"], refused.order_id)

    def wants(self, process: Order, step: OrderStep) -> bool:
        return process.wants(step)

    def undo(self, process: Order, step: OrderStep) -> None:
        if step.kind != "hold":
            return
        with suppress(UnknownReservation, ReservationClosed):
            self.commands.release(step.sku, step.location, step.order_id)

    def wake(self, process: Order, now: datetime) -> None:
        process.expire(now)

    def wake_at(self, process: Order, now: datetime) -> datetime | None:
        return process.wake_at(now)


class Orders:
    """Orders across SKU-locations, on any store behind the ports."""

    def __init__(
        self,
        orders: ProcessStreams[Order],
        groups: AggregateStreams[LocationGroup],
        commands: StockCommands,
        stock: StockItemStore,
        clock: Clock,
        *,
        stall_after: timedelta = STALL_AFTER,
        retry: RetryPolicy | None = None,
        crash_point: Callable[[str], None] = no_crash,
    ) -> None:
        self.orders = orders
        self.groups = groups
        self.stock = stock
        self.clock = clock
        self.driver: ProcessDriver[Order, OrderStep] = ProcessDriver(
            orders, OrderSteps(commands), clock, stall_after=stall_after, retry=retry,
            crash_point=crash_point)

    def place(
        self,
        order_id: str,
        channel: str,
        lines: Sequence[Mapping[str, Any]],
        mode: str = "all_or_nothing",
        ttl_seconds: int | None = None,
    ) -> OrderAnswer:
        """Place (or repeat, or change the ttl of) an order; see the module's answers."""
        request = OrderRequest.of(order_id, channel, list(lines), mode, ttl_seconds)
        groups = self._definitions(request)
        before: list[str] = []  # the status as stored, before this request drove anything

        def decide(order: Order | None) -> Order:
            order = order or Order.create(order_id)
            order.place(request, self.clock.now(), groups, self._capacity(order_id))
            return order

        order = self.driver.run(order_id, decide, loaded=lambda stored: before.append(
            stored.status if stored is not None else "new"))
        assert order is not None
        if order.status == FAILED:
            raise OrderShort(order_id, order.short_lines())
        held = (HELD, PARTIALLY_HELD)
        return OrderAnswer(order.view(), before[0] not in held and order.status in held)

    def release(self, order_id: str) -> OrderView:
        """Release every hold of the order (a repeat records nothing)."""
        return self._command(order_id, lambda order: order.request_release())

    def fulfil(
        self, order_id: str, lines: Sequence[Mapping[str, Any]] | None = None
    ) -> OrderView:
        """Ship the named lines (default: every held line in full); the others stay held."""
        wanted = None if lines is None else list(lines)
        return self._command(order_id, lambda order: order.request_fulfilment(wanted))

    def get(self, order_id: str) -> OrderView:
        """The order, after driving any unfinished work on it to its end."""
        return self._command(order_id, None)

    def resume(self, order_id: str) -> OrderView | None:
        """Drive one order to rest (after a crash); None if it was never placed."""
        require_identifier("order_id", order_id)
        order = self.driver.run(order_id)
        return None if order is None else order.view()

    def sweep(self, limit: int = 100) -> int:
        """Drive every stalled order to its end and release expired ones; how many."""
        return self.driver.sweep(limit)

    # --------------------------------------------------------------- helpers

    def _command(self, order_id: str, act: Callable[[Order], None] | None) -> OrderView:
        require_identifier("order_id", order_id)

        def decide(order: Order | None) -> Order | None:
            if order is None:
                raise UnknownOrder(order_id)
            if act is not None:
                act(order)
            return order

        order = self.driver.run(order_id, decide)
        assert order is not None
        return order.view()

    def _definitions(self, request: OrderRequest) -> dict[str, GroupDefinition]:
        found: dict[str, GroupDefinition] = {}
        for n, line in enumerate(request.lines):
            name = line.location_group
            if name is None or name in found:
                continue
            group = self.groups.get(name)
            if group is None:
                raise UnknownLocationGroup(name, field=f"lines[{n}].location_group")
            found[name] = group.definition
        return found

    def _capacity(self, order_id: str) -> Callable[[str, str], int]:
        """How many units ``order_id`` could hold in total at a SKU-location, by the
        same rule as ``StockItem.reserve`` (overdue reservations left out, on a copy)."""

        def capacity(sku: str, location: str) -> int:
            item = self.stock.get(sku, location)
            if item is None:
                return 0
            item.expire_overdue(self.clock.now())
            own = item.reservation(order_id)
            return (item.on_hand - item.safety_stock + item.oversell_buffer
                    - (item.reserved - (own.quantity if own else 0)))

        return capacity


class LocationGroups:
    """Location groups (``PUT`` / ``GET /api/location-groups/{group}``)."""

    def __init__(self, groups: AggregateStreams[LocationGroup],
                 retry: RetryPolicy | None = None) -> None:
        self.groups = groups
        self.retry = retry or RetryPolicy()

    def define(self, group: str, locations: Sequence[str], strategy: str) -> GroupDefinition:
        """Set a group's locations and strategy; the same again records nothing.
        Raises ``InvalidIdentifier`` / ``InvalidRequest`` (422), nothing recorded."""
        GroupDefinition.of(group, list(locations), strategy)
        attempt = 0
        while True:
            current = self.groups.get(group) or LocationGroup.create(group)
            current.define(list(locations), strategy)
            if not current.pending_events:
                return current.definition
            try:
                self.groups.save(current)
                return current.definition
            except ConcurrencyConflict:
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise

    def get(self, group: str) -> GroupDefinition:
        """The group's definition; ``UnknownGroup`` (404) if it was never defined."""
        require_identifier("group", group)
        found = self.groups.get(group)
        if found is None:
            raise UnknownGroup(group)
        return found.definition
