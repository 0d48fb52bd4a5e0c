"""The ``Order`` process: one reservation across many SKU-locations.

There is no transaction across streams, so an order is a process with a stream of its
own, ``order:{order_id}``, that records

* its **intent** (``Placed``: channel, mode, ttl, the lines as sent, and the location
  groups as they were defined then) and the **sourcing** of its lines (``Sourced``: the
  location chosen for each line; lines on one SKU-location are summed into one *hold*);
* each **step** it asked of a stock stream and what came of it (``Held``, ``Refused``,
  ``Released``, ``Fulfilled``, ``HoldRescheduled``);
* its **outcome** (``Concluded``: held, partially_held, failed, released, fulfilled).

Each hold is the ordinary reservation keyed by the order id on its SKU-location stream,
with the summed quantity, so every step is idempotent by the order id: performing one
again after a crash changes nothing. What to do next is the pure function
:meth:`Order.next_step` of the recorded state; so a process killed between two steps
leaves a stream that says where it was, and whoever drives it next (the next request for
it, or the sweep) does the same next step. Holds are taken one by one in a stable order
(by SKU, then location), so two orders racing for the same SKU-locations take them in
the same order.

Decide apart from evolve, as in ``StockItem``: the public methods (``place``,
``request_release``, ``request_fulfilment``, ``expire`` and the ``record_*`` of a
step's result) validate and decide, possibly deciding that nothing is to be recorded;
each event's ``apply`` only sets state and cannot fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import (
    FulfilmentConflict,
    InvalidRequest,
    OrderClosed,
    OrderConflict,
    OrderInProgress,
    ReservationClosed,
    UnknownLocationGroup,
)
from domain.identifiers import STOCKSTREAM_NAMESPACE, require_identifier, require_quantity
from domain.location_group import GroupDefinition, choose_location
from domain.stock_item import MAX_QUANTITY, StockItem, require_timestamp

MAX_LINES = 100
_ANY_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)
MODES = ("all_or_nothing", "partial")
Mode = Literal["all_or_nothing", "partial"]

PLACING, RELEASING, FULFILLING = "placing", "releasing", "fulfilling"
"""Statuses of an order with work under way (never an answer to a client: the order
service drives an order to rest before it answers)."""
HELD, PARTIALLY_HELD, FAILED, RELEASED, FULFILLED = (
    "held", "partially_held", "failed", "released", "fulfilled")
AT_REST = (HELD, PARTIALLY_HELD, FAILED, RELEASED, FULFILLED)
CLOSED = (RELEASED, FULFILLED)

# The states of one hold (one SKU-location of the order).
PENDING, HOLD_HELD, HOLD_REFUSED, HOLD_RELEASED, HOLD_FULFILLED = (
    "pending", "held", "refused", "released", "fulfilled")

Capacity = Callable[[str, str], int]
"""How many units the order could hold in total at a SKU-location: what its stream can
reserve for this order id (``on hand − safety stock + oversell buffer − reserved by
others``). The service reads it from the stream; sourcing asks only what it needs."""


def order_stream_name(order_id: str) -> str:
    """The stream of an order (and its Cosmos partition, and its Service Bus session)."""
    return f"order:{require_identifier('order_id', order_id)}"


def order_uuid(order_id: str) -> UUID:
    """The aggregate id ``eventsourcing`` stores the order's stream under."""
    return uuid5(STOCKSTREAM_NAMESPACE, order_stream_name(order_id))


def hold_key(sku: str, location: str) -> str:
    return f"{sku}|{location}"


# ---------------------------------------------------------------------- the request


@dataclass(frozen=True)
class OrderLine:
    """One line as the client sent it: a SKU, a location or a location group, a quantity."""

    sku: str
    location: str | None
    location_group: str | None
    quantity: int

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "location": self.location,
                "location_group": self.location_group, "quantity": self.quantity}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderLine:
        return cls(str(data["sku"]), data.get("location"), data.get("location_group"),
                   int(data["quantity"]))


@dataclass(frozen=True)
class OrderRequest:
    """A validated placement: what ``PUT /api/orders/{order_id}/reservation`` asks for."""

    order_id: str
    channel: str
    mode: str
    ttl_seconds: int | None
    lines: tuple[OrderLine, ...]

    @classmethod
    def of(
        cls,
        order_id: Any,
        channel: Any,
        lines: Any,
        mode: Any = "all_or_nothing",
        ttl_seconds: Any = None,
    ) -> OrderRequest:
        """Validate a placement: 1–100 lines, identifiers by the domain's
        rule, quantities ≥ 1, exactly one of ``location`` / ``location_group`` per line.

        Raises ``InvalidIdentifier``, ``InvalidQuantity`` or ``InvalidRequest`` (a 422),
        naming the field (``lines[3].quantity``).
        """
        require_identifier("order_id", order_id)
        require_identifier("channel", channel)
        if mode not in MODES:
            raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", field="mode")
        if ttl_seconds is not None:
            StockItem.expiry(_ANY_MOMENT, ttl_seconds)  # validates the ttl
        if not isinstance(lines, list | tuple) or not 1 <= len(lines) <= MAX_LINES:
            raise InvalidRequest(f"lines must be a list of 1 to {MAX_LINES} lines",
                                 field="lines")
        parsed = []
        for n, line in enumerate(lines):
            where = f"lines[{n}]"
            if not isinstance(line, Mapping):
                raise InvalidRequest("a line must be an object", field=where)
            require_identifier(f"{where}.sku", line.get("sku"))
            location, group = line.get("location"), line.get("location_group")
            if (location is None) == (group is None):
                raise InvalidRequest("a line names exactly one of location and "
                                     "location_group", field=where)
            if location is not None:
                require_identifier(f"{where}.location", location)
            else:
                require_identifier(f"{where}.location_group", group)
            quantity = require_quantity(f"{where}.quantity", line.get("quantity"), minimum=1)
            if quantity > MAX_QUANTITY:
                raise InvalidRequest(f"quantity must be at most {MAX_QUANTITY}",
                                     field=f"{where}.quantity")
            parsed.append(OrderLine(line["sku"], location, group, quantity))
        per_sku: dict[str, int] = {}
        for ln in parsed:  # whatever the sourcing, no hold can then exceed the bound
            per_sku[ln.sku] = per_sku.get(ln.sku, 0) + ln.quantity
            if per_sku[ln.sku] > MAX_QUANTITY:
                raise InvalidRequest(f"the lines of {ln.sku} add up to more than "
                                     f"{MAX_QUANTITY}", field="lines")
        return cls(order_id, channel, str(mode), ttl_seconds, tuple(parsed))

    @property
    def groups(self) -> list[str]:
        """The location groups the lines name, each once, in order of first mention."""
        return list(dict.fromkeys(ln.location_group for ln in self.lines if ln.location_group))

    def differs_only_in_ttl(self, other: OrderRequest) -> bool:
        return (self.channel, self.mode, self.lines) == (other.channel, other.mode, other.lines)


@dataclass(frozen=True)
class OrderStep:
    """One thing the order asks of a stock stream, idempotent by the order id.

    ``kind``: ``hold`` (reserve ``quantity`` until ``expires_at``; ``reopen`` when this
    is not the order's first attempt), ``release``, ``fulfil`` (ship ``quantity``) or
    ``reschedule`` (set the hold's expiry to ``expires_at``).
    """

    kind: Literal["hold", "release", "fulfil", "reschedule"]
    order_id: str
    attempt: int
    sku: str
    location: str
    quantity: int
    channel: str
    expires_at: datetime | None
    reopen: bool = False

    @property
    def key(self) -> str:
        return hold_key(self.sku, self.location)


@dataclass(frozen=True)
class OrderLineView:
    sku: str
    location: str | None
    location_group: str | None
    quantity: int
    held: int


@dataclass(frozen=True)
class OrderView:
    """What a client sees of an order (the order shape of docs/orders.md)."""

    order_id: str
    status: str
    channel: str
    mode: str
    expires_at: datetime | None
    lines: tuple[OrderLineView, ...]
    version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id, "status": self.status, "channel": self.channel,
            "mode": self.mode,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "lines": [
                {"sku": ln.sku, "location": ln.location, "quantity": ln.quantity,
                 "held": ln.held,
                 **({"location_group": ln.location_group} if ln.location_group else {})}
                for ln in self.lines
            ],
        }


# ------------------------------------------------------------------------ the process


class Order(Aggregate):
    """An order's hold across SKU-locations, as a process with its own stream."""

    TOPIC = "stockstream:Order"

    class Event(Aggregate.Event):
        TOPIC = "stockstream:Order.Event"

    class Created(Event, Aggregate.Created):
        """The order's stream began (wire type ``OrderCreated``)."""

        TOPIC = "stockstream:OrderCreated"
        order_id: str

    class Placed(Event):
        """Intent: attempt ``attempt`` to hold the lines as sent (``OrderPlaced``)."""

        TOPIC = "stockstream:OrderPlaced"
        attempt: int
        channel: str
        mode: str
        ttl_seconds: int | None
        expires_at: datetime | None
        lines: list[dict[str, Any]]
        groups: dict[str, dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            aggregate.attempt = self.attempt
            aggregate.status = PLACING
            aggregate.channel = self.channel
            aggregate.mode = self.mode
            aggregate.ttl_seconds = self.ttl_seconds
            aggregate.expires_at = self.expires_at
            aggregate.lines = [dict(line) for line in self.lines]
            aggregate.groups = {k: dict(v) for k, v in self.groups.items()}
            aggregate.line_locations = [line.get("location") for line in self.lines]
            aggregate.line_available = [None] * len(self.lines)
            aggregate.holds = {}

    class Sourced(Event):
        """Each line's location (chosen from its group, or as sent; None: no location
        of the group can hold the line, ``available`` says how much the best could).
        Lines on one SKU-location become one hold of their summed quantity
        (``OrderSourced``)."""

        TOPIC = "stockstream:OrderSourced"
        attempt: int
        locations: list[str | None]
        available: list[int | None]

        def apply(self, aggregate: Any) -> None:
            aggregate.line_locations = list(self.locations)
            aggregate.line_available = list(self.available)
            holds: dict[str, dict[str, Any]] = {}
            for line, location in zip(aggregate.lines, self.locations, strict=True):
                if location is None:
                    continue
                key = hold_key(line["sku"], location)
                before = holds.get(key, {}).get("quantity", 0)
                holds[key] = {"sku": line["sku"], "location": location,
                              "quantity": before + line["quantity"], "state": PENDING,
                              "available": None, "expires_at": None, "fulfilled": 0,
                              "to_fulfil": None}
            aggregate.holds = holds

    class Held(Event):
        """Step: the hold was taken on its SKU-location's stream (``OrderLineHeld``)."""

        TOPIC = "stockstream:OrderLineHeld"
        attempt: int
        sku: str
        location: str
        quantity: int
        expires_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate._set_hold(self.sku, self.location, state=HOLD_HELD,
                                expires_at=self.expires_at)

    class Refused(Event):
        """Step: the SKU-location could not hold the summed quantity
        (``OrderLineRefused``)."""

        TOPIC = "stockstream:OrderLineRefused"
        attempt: int
        sku: str
        location: str
        quantity: int
        available: int

        def apply(self, aggregate: Any) -> None:
            aggregate._set_hold(self.sku, self.location, state=HOLD_REFUSED,
                                available=self.available)

    class Released(Event):
        """Step: the hold is no longer held (``OrderLineReleased``; ``reason``:
        ``compensation``, ``cancelled``, ``expired``, or what the stream said)."""

        TOPIC = "stockstream:OrderLineReleased"
        attempt: int
        sku: str
        location: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate._set_hold(self.sku, self.location, state=HOLD_RELEASED, to_fulfil=None)

    class Fulfilled(Event):
        """Step: the hold shipped ``quantity`` and closed (``OrderLineFulfilled``)."""

        TOPIC = "stockstream:OrderLineFulfilled"
        attempt: int
        sku: str
        location: str
        quantity: int

        def apply(self, aggregate: Any) -> None:
            aggregate._set_hold(self.sku, self.location, state=HOLD_FULFILLED,
                                fulfilled=self.quantity, to_fulfil=None)

    class HoldRescheduled(Event):
        """Step: the hold's expiry was set to the order's (``OrderLineRescheduled``)."""

        TOPIC = "stockstream:OrderLineRescheduled"
        attempt: int
        sku: str
        location: str
        expires_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate._set_hold(self.sku, self.location, expires_at=self.expires_at)

    class ReleaseRequested(Event):
        """Intent: release every hold (``OrderReleaseRequested``; ``reason``:
        ``cancelled`` or ``expired``)."""

        TOPIC = "stockstream:OrderReleaseRequested"
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = RELEASING
            aggregate.release_reason = self.reason

    class FulfilmentRequested(Event):
        """Intent: ship these holds (``OrderFulfilmentRequested``; ``lines``:
        ``[{sku, location, quantity}]``)."""

        TOPIC = "stockstream:OrderFulfilmentRequested"
        lines: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FULFILLING
            for line in self.lines:
                aggregate._set_hold(line["sku"], line["location"], to_fulfil=line["quantity"])

    class Rescheduled(Event):
        """Intent: the order's ``ttl_seconds`` changed; its holds expire at
        ``expires_at`` (``OrderRescheduled``)."""

        TOPIC = "stockstream:OrderRescheduled"
        ttl_seconds: int | None
        expires_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.ttl_seconds = self.ttl_seconds
            aggregate.expires_at = self.expires_at

    class Concluded(Event):
        """Outcome: the work under way ended with ``status`` (``OrderConcluded``)."""

        TOPIC = "stockstream:OrderConcluded"
        status: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = self.status
            if self.status in (HELD, PARTIALLY_HELD):
                aggregate.placement_status = self.status

    # Declared for type checkers; set in __init__ and by events.
    order_id: str
    attempt: int
    status: str
    placement_status: str
    channel: str
    mode: str
    ttl_seconds: int | None
    expires_at: datetime | None
    lines: list[dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    line_locations: list[str | None]
    line_available: list[int | None]
    holds: dict[str, dict[str, Any]]
    release_reason: str | None

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.attempt = 0
        self.status = "new"
        self.placement_status = HELD
        self.channel = ""
        self.mode = "all_or_nothing"
        self.ttl_seconds = None
        self.expires_at = None
        self.lines = []
        self.groups = {}
        self.line_locations = []
        self.line_available = []
        self.holds = {}
        self.release_reason = None

    @classmethod
    def create(cls, order_id: str) -> Order:
        """Start an order's stream (its ``Created`` is saved with its first ``Placed``)."""
        return cls._create(cls.Created, id=order_uuid(order_id), order_id=order_id)

    def _set_hold(self, sku: str, location: str, **changes: Any) -> None:
        # A new dict, never an update in place: copies of the aggregate share entries.
        key = hold_key(sku, location)
        self.holds = {**self.holds, key: {**self.holds[key], **changes}}

    # ------------------------------------------------------------------ derived

    @property
    def is_new(self) -> bool:
        return self.attempt == 0

    @property
    def request(self) -> OrderRequest:
        """The request of the current attempt, as recorded."""
        return OrderRequest(self.order_id, self.channel, self.mode, self.ttl_seconds,
                            tuple(OrderLine.from_dict(ln) for ln in self.lines))

    def ordered_holds(self) -> list[dict[str, Any]]:
        """The holds in the stable order steps take them: by SKU, then location."""
        return [self.holds[k] for k in sorted(self.holds)]

    def _failing(self) -> bool:
        """An all-or-nothing placement that some line cannot be held in: compensate."""
        return self.mode == "all_or_nothing" and (
            None in self.line_locations
            or any(h["state"] == HOLD_REFUSED for h in self.holds.values())
        )

    def next_step(self) -> OrderStep | None:
        """What to ask of a stock stream next (None: the order is at rest). Pure: the
        same recorded state always gives the same step, so a crash repeats it."""
        holds = self.ordered_holds()
        if self.status == PLACING:
            if self._failing():
                return next((self._step("release", h) for h in holds
                             if h["state"] == HOLD_HELD), None)
            return next((self._step("hold", h) for h in holds if h["state"] == PENDING), None)
        if self.status == RELEASING:
            return next((self._step("release", h) for h in holds
                         if h["state"] == HOLD_HELD), None)
        if self.status == FULFILLING:
            return next((self._step("fulfil", h, h["to_fulfil"]) for h in holds
                         if h["state"] == HOLD_HELD and h["to_fulfil"]), None)
        if self.status in (HELD, PARTIALLY_HELD):
            return next((self._step("reschedule", h) for h in holds
                         if h["state"] == HOLD_HELD and h["expires_at"] != self.expires_at),
                        None)
        return None

    def next_steps(self, limit: int) -> list[OrderStep]:
        """The next steps that may be taken together (at most ``limit``): while a
        placement holds, every pending hold, since no hold depends on another's result
        (an all-or-nothing placement refused at one releases what the others took, as
        after a crash: ``OrderSteps``); otherwise :meth:`next_step` alone. Pure."""
        if self.status == PLACING and not self._failing():
            return [self._step("hold", h) for h in self.ordered_holds()
                    if h["state"] == PENDING][:limit]
        step = self.next_step()
        return [] if step is None or limit < 1 else [step]

    def _step(self, kind: Any, hold: dict[str, Any], quantity: int | None = None) -> OrderStep:
        return OrderStep(kind, self.order_id, self.attempt, hold["sku"], hold["location"],
                         quantity if quantity is not None else hold["quantity"], self.channel,
                         self.expires_at, reopen=self.attempt > 1)

    def wants(self, step: OrderStep) -> bool:
        """Whether the recorded state still wants what ``step`` did on its stream: a
        driver whose record of a hold lost a race asks this, and releases it if not."""
        if step.kind != "hold":
            return True
        hold = self.holds.get(step.key)
        if hold is None:
            return False
        if hold["state"] == HOLD_HELD:
            return True
        return hold["state"] == PENDING and self.status == PLACING and not self._failing()

    def wake_at(self, now: datetime) -> datetime | None:
        """When a sweep should look at this order: now if work is under way, at its
        expiry if it holds stock until then, else never."""
        if self.next_step() is not None or self.status in (PLACING, RELEASING, FULFILLING):
            return now
        if self.status in (HELD, PARTIALLY_HELD) and self.expires_at is not None:
            return self.expires_at
        return None

    def view(self) -> OrderView:
        """The order as a client sees it: lines as sent, each with its chosen location
        and its ``held`` quantity (its own, summing is for the check only)."""
        lines = []
        for line, location in zip(self.lines, self.line_locations, strict=True):
            hold = self.holds.get(hold_key(line["sku"], location)) if location else None
            held = line["quantity"] if hold is not None and hold["state"] == HOLD_HELD else 0
            lines.append(OrderLineView(line["sku"], location, line.get("location_group"),
                                       line["quantity"], held))
        return OrderView(self.order_id, self.status, self.channel, self.mode,
                         self.expires_at, tuple(lines), self.version)

    def short_lines(self) -> list[dict[str, Any]]:
        """The lines that could not be held, as sent, with what was available
        (``{sku, location | location_group, requested, available}``)."""
        short = []
        for n, (line, location) in enumerate(zip(self.lines, self.line_locations,
                                                 strict=True)):
            if location is None:
                short.append({"sku": line["sku"], "location_group": line["location_group"],
                              "requested": line["quantity"],
                              "available": self.line_available[n] or 0})
                continue
            hold = self.holds[hold_key(line["sku"], location)]
            if hold["state"] == HOLD_REFUSED:
                where = ({"location_group": line["location_group"]}
                         if line.get("location_group") else {"location": location})
                short.append({"sku": line["sku"], **where, "requested": line["quantity"],
                              "available": hold["available"]})
        return short

    # ---------------------------------------------------------------- decisions

    def place(
        self,
        request: OrderRequest,
        now: datetime,
        groups: Mapping[str, GroupDefinition],
        capacity: Capacity,
    ) -> None:
        """Decide a placement.

        A new order, or a failed one placed again, starts an attempt: its intent and the
        sourcing of its lines (``capacity`` is asked only then; ``groups`` must define
        every group the lines name). For an open order the same request again records
        nothing, one differing only in ``ttl_seconds`` moves the expiry, any other
        raises ``OrderConflict``. A released or fulfilled order raises ``OrderClosed``.
        """
        require_timestamp("now", now)
        if request.order_id != self.order_id:
            raise InvalidRequest("the request is for another order", field="order_id")
        if self.status in (RELEASED, RELEASING, FULFILLED):
            raise OrderClosed(self.order_id, RELEASED if self.status == RELEASING
                              else self.status)
        if not self.is_new and self.status != FAILED:
            recorded = self.request
            if not request.differs_only_in_ttl(recorded):
                raise OrderConflict(self.order_id)
            if request.ttl_seconds != recorded.ttl_seconds:
                self.trigger_event(self.Rescheduled, ttl_seconds=request.ttl_seconds,
                                   expires_at=StockItem.expiry(now, request.ttl_seconds))
            return
        definitions = {}
        for n, line in enumerate(request.lines):
            group = line.location_group
            if group is not None and group not in groups:
                raise UnknownLocationGroup(group, field=f"lines[{n}].location_group")
            if group is not None:
                definitions[group] = groups[group]
        self.trigger_event(
            self.Placed, attempt=self.attempt + 1, channel=request.channel, mode=request.mode,
            ttl_seconds=request.ttl_seconds,
            expires_at=StockItem.expiry(now, request.ttl_seconds),
            lines=[line.as_dict() for line in request.lines],
            groups={name: d.as_dict() for name, d in definitions.items()},
        )
        locations, available = source(request.lines, definitions, capacity)
        self.trigger_event(self.Sourced, attempt=self.attempt, locations=locations,
                           available=available)
        self._conclude_if_done()

    def request_release(self, reason: str = "cancelled") -> None:
        """Decide to release every hold. Releasing a released (or failed) order again
        records nothing; a fulfilled one raises ``OrderClosed``."""
        if reason not in ("cancelled", "expired"):
            raise InvalidRequest("reason must be cancelled or expired", field="reason")
        if self.status == FULFILLED:
            raise OrderClosed(self.order_id, FULFILLED)
        if self.is_new or self.status in (RELEASED, RELEASING, FAILED):
            return
        self.trigger_event(self.ReleaseRequested, reason=reason)
        self._conclude_if_done()

    def expire(self, now: datetime) -> None:
        """Release an order at rest whose holds expired by ``now`` (their streams release
        them as expired): the order then answers as released."""
        if (self.status in (HELD, PARTIALLY_HELD) and self.expires_at is not None
                and self.expires_at <= now):
            self.request_release("expired")

    def request_fulfilment(self, lines: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Decide to ship the named holds (``[{sku, location, quantity}]``, summed per
        SKU-location; default: every held line in full). The others stay held.

        A repeat of what shipped records nothing; another quantity for a shipped line
        raises ``FulfilmentConflict``; a released or failed order ``OrderClosed``; a line
        the order does not hold ``InvalidRequest``.
        """
        wanted = _fulfilment_lines(lines)
        if self.status in (RELEASED, RELEASING, FAILED):
            raise OrderClosed(self.order_id, RELEASED if self.status == RELEASING
                              else self.status)
        if self.is_new or self.status in (PLACING, FULFILLING):
            raise OrderInProgress(self.order_id, self.status)
        if wanted is None:
            wanted = {k: h["quantity"] for k, h in self.holds.items()
                      if h["state"] == HOLD_HELD}
        new: dict[str, int] = {}
        for key, quantity in wanted.items():
            hold = self.holds.get(key)
            if hold is None or hold["state"] in (PENDING, HOLD_REFUSED):
                raise InvalidRequest(f"order {self.order_id!r} holds nothing at {key}",
                                     field="lines")
            if hold["state"] == HOLD_FULFILLED:
                if quantity != hold["fulfilled"]:
                    raise FulfilmentConflict(self.order_id, fulfilled=hold["fulfilled"],
                                             requested=quantity)
                continue
            if hold["state"] == HOLD_RELEASED:
                raise ReservationClosed(self.order_id, "released")
            if quantity > hold["quantity"]:
                raise InvalidRequest(f"cannot fulfil {quantity} at {key}: the order holds "
                                     f"{hold['quantity']}", field="lines")
            new[key] = quantity
        if not new:
            return
        self.trigger_event(self.FulfilmentRequested, lines=[
            {"sku": self.holds[k]["sku"], "location": self.holds[k]["location"],
             "quantity": q} for k, q in sorted(new.items())])

    # Each record_* is the decision on a step's result. A step that is no longer the
    # next one (a stale driver's, or a repeat after a crash that was recorded already)
    # records nothing.

    def record_held(self, step: OrderStep) -> None:
        if self._expects(step, "hold"):
            self.trigger_event(self.Held, attempt=step.attempt, sku=step.sku,
                               location=step.location, quantity=step.quantity,
                               expires_at=step.expires_at)
            self._conclude_if_done()

    def record_refused(self, step: OrderStep, available: int) -> None:
        if self._expects(step, "hold"):
            self.trigger_event(self.Refused, attempt=step.attempt, sku=step.sku,
                               location=step.location, quantity=step.quantity,
                               available=available)
            self._conclude_if_done()

    def record_released(self, step: OrderStep, reason: str) -> None:
        if self._expects(step, step.kind):
            self.trigger_event(self.Released, attempt=step.attempt, sku=step.sku,
                               location=step.location, reason=reason)
            self._conclude_if_done()

    def record_fulfilled(self, step: OrderStep, quantity: int) -> None:
        if self._expects(step, "fulfil"):
            self.trigger_event(self.Fulfilled, attempt=step.attempt, sku=step.sku,
                               location=step.location, quantity=quantity)
            self._conclude_if_done()

    def record_rescheduled(self, step: OrderStep) -> None:
        if self._expects(step, "reschedule"):
            self.trigger_event(self.HoldRescheduled, attempt=step.attempt, sku=step.sku,
                               location=step.location, expires_at=step.expires_at)

    def _expects(self, step: OrderStep, kind: str) -> bool:
        return step.kind == kind and self.next_step() == step

    def _conclude_if_done(self) -> None:
        """End the work under way once no step is left: the outcome, decided here."""
        if self.status not in (PLACING, RELEASING, FULFILLING) or self.next_step() is not None:
            return
        states = [h["state"] for h in self.holds.values()]
        held = states.count(HOLD_HELD)
        if self.status == PLACING:
            if self._failing() or held == 0:
                status = FAILED
            elif held == len(states) and None not in self.line_locations:
                status = HELD
            else:
                status = PARTIALLY_HELD
        elif self.status == RELEASING:
            status = RELEASED
        elif held:
            status = self.placement_status
        else:
            status = FULFILLED if HOLD_FULFILLED in states else RELEASED
        self.trigger_event(self.Concluded, status=status)


def source(
    lines: Sequence[OrderLine], groups: Mapping[str, GroupDefinition], capacity: Capacity
) -> tuple[list[str | None], list[int | None]]:
    """The location of every line, and for a group line no location can hold, how much
    the best could (else None).

    Lines naming a location keep it; their quantities are summed per SKU-location first.
    Then each group line, in the order sent, goes to the location its group's strategy
    picks among those with room for the whole line on top of what the order already puts
    there; so two lines of one SKU are never checked against the same units.
    """
    planned: dict[tuple[str, str], int] = {}
    for line in lines:
        if line.location is not None:
            planned[line.sku, line.location] = planned.get((line.sku, line.location), 0) + (
                line.quantity)
    read: dict[tuple[str, str], int] = {}

    def room(sku: str, location: str) -> int:
        if (sku, location) not in read:
            read[sku, location] = capacity(sku, location)
        return read[sku, location] - planned.get((sku, location), 0)

    locations: list[str | None] = []
    available: list[int | None] = []
    for line in lines:
        if line.location is not None:
            locations.append(line.location)
            available.append(None)
            continue
        assert line.location_group is not None
        definition = groups[line.location_group]
        sku = line.sku
        chosen = choose_location(definition, line.quantity, partial(room, sku))
        locations.append(chosen)
        if chosen is None:
            available.append(max(0, max(room(sku, loc) for loc in definition.locations)))
        else:
            planned[sku, chosen] = planned.get((sku, chosen), 0) + line.quantity
            available.append(None)
    return locations, available


def _fulfilment_lines(lines: Sequence[Mapping[str, Any]] | None) -> dict[str, int] | None:
    """A fulfilment's lines validated and summed per SKU-location (None: all)."""
    if lines is None:
        return None
    if not isinstance(lines, list | tuple) or not 1 <= len(lines) <= MAX_LINES:
        raise InvalidRequest(f"lines must be a list of 1 to {MAX_LINES} lines", field="lines")
    wanted: dict[str, int] = {}
    for n, line in enumerate(lines):
        if not isinstance(line, Mapping):
            raise InvalidRequest("a line must be an object", field=f"lines[{n}]")
        sku = require_identifier(f"lines[{n}].sku", line.get("sku"))
        location = require_identifier(f"lines[{n}].location", line.get("location"))
        quantity = require_quantity(f"lines[{n}].quantity", line.get("quantity"), minimum=1)
        key = hold_key(sku, location)
        wanted[key] = wanted.get(key, 0) + quantity
    return wanted
