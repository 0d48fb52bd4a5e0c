"""Holds: counts and adjustments that wait for a person before anything is recorded.

Every count and every adjustment that a channel, a count file or the CLI sends passes one
gate, :class:`ApprovalGate`, so one hold policy applies whatever the route:
counts by :class:`HoldPolicy` on their drift (``STOCKSTREAM_DRIFT_HOLD_*``), adjustments by
their own thresholds (``STOCKSTREAM_ADJUSTMENT_HOLD_*``, off by default).

How a command is judged. The gate runs the command through the ordinary
:class:`~application.commands.StockCommands`, over a view of the event store whose ``save``
first shows the events about to be recorded to a *judge*. The figures judged are those of
the event the aggregate decided (a count's ``delta`` and ``previous_on_hand``, an
adjustment's ``delta`` and the on hand before it), so the stream is folded once, by the
command service, and the gate never re-decides what the aggregate decides (whether a count
id or an idempotency key was already recorded). A judged hold is stored in the
:class:`HoldStore` and nothing is written to the stream; a hold is only ever decided on the
latest state of the stream (a stale cached state is re-read first, as a conflicting save
would be).

Contracts a caller may rely on:

* **A held command records nothing on the stock stream.** The answer is :class:`Held`
  with the hold and the position as it stands.
* **One hold per command.** A count's hold id is derived from its SKU-location and count
  id; an adjustment's from its SKU-location and ``Idempotency-Key`` (random without one).
  Sending the same command again while it waits answers the same hold; with other
  figures it is refused (:class:`HoldConflict`, or ``IdempotencyKeyReused``).
* **Approval applies the held command through the ordinary command service, once.**
  Counts are idempotent by their count id, adjustments by their idempotency key (the
  client's, or ``hold:<hold_id>``), so approving twice, or after a crash half way,
  records it once. A dismissed hold records nothing, and sending that command again is
  refused (:class:`HoldDismissed`).
* **Counts are bounded in time.** ``counted_at`` at most ``STOCKSTREAM_COUNT_MAX_AGE``
  back and at most five minutes ahead (:class:`CountWindow`), checked before anything
  else, so an out-of-range timestamp is a 422 and never reaches the domain.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from application.commands import CommandResult, CountWindow, ExpectedVersion, StockCommands
from application.ports import Clock, ConcurrencyConflict, HoldStore, Recalled, StockItemStore
from domain.errors import DomainError, IdempotencyKeyReused
from domain.stock_item import SELLABLE, Position, StockItem

HeldStatus = Literal["pending", "approved", "dismissed"]
HoldKind = Literal["count", "adjustment"]

"""How far ahead of the server's clock a count may be (clock skew of a handheld)."""


# ------------------------------------------------------------------- policies


@dataclass(frozen=True)
class HoldPolicy:
    """When a change of on hand is too large to record without a person looking at it.

    A change is held when ``|units| > units`` or, with a positive on hand before it,
    ``|percent| > percent``. ``None`` switches a limit off; both ``None``: never hold.
    """

    units: int | None = None
    percent: float | None = None

    @property
    def active(self) -> bool:
        return self.units is not None or self.percent is not None

    def reason(self, units: int, percent: float | None, what: str = "drift") -> str | None:
        """Why a change of ``units`` (``percent`` of on hand) must be held, or None."""
        if self.units is not None and abs(units) > self.units:
            return f"{what} of {units:+d} units exceeds {self.units}"
        if self.percent is not None and percent is not None and abs(percent) > self.percent:
            return f"{what} of {percent:+.1f}% exceeds {self.percent:g}%"
        return None


def drift_percent(units: int, on_hand_before: int) -> float | None:
    """A change relative to the on hand before it; None when that was zero."""
    if on_hand_before <= 0:
        return None
    return 100.0 * units / on_hand_before


# ---------------------------------------------------------------------- holds


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def count_hold_id(sku: str, location: str, count_id: str) -> str:
    """The hold id of a count: the same count held twice is one hold."""
    return f"count-{_digest('count', sku, location, count_id)}"


def adjustment_hold_id(sku: str, location: str, idempotency_key: str | None) -> str:
    """The hold id of an adjustment: derived from its idempotency key, else new."""
    if idempotency_key is None:
        return f"adj-{uuid.uuid4().hex[:20]}"
    return f"adj-{_digest('adjustment', sku, location, idempotency_key)}"


@dataclass(frozen=True)
class HeldCount:
    """A count waiting for approval, with the figures that made it wait."""

    kind: ClassVar[HoldKind] = "count"

    sku: str
    location: str
    count_id: str
    counted: int
    counted_at: datetime
    on_hand_at_count: int
    drift_units: int
    drift_percent: float | None
    reason: str
    session_id: str
    held_at: datetime
    status: HeldStatus = "pending"
    resolved_at: datetime | None = None
    applied_delta: int | None = None
    state: str = SELLABLE
    """The state counted (holds stored before stock states counted sellable)."""

    @property
    def hold_id(self) -> str:
        return count_hold_id(self.sku, self.location, self.count_id)

    def same_count(self, counted: int, counted_at: datetime, state: str = SELLABLE) -> bool:
        return (self.counted, self.counted_at, self.state) == (counted, counted_at, state)


@dataclass(frozen=True)
class HeldAdjustment:
    """An adjustment waiting for approval. ``reason`` says why it waits; the adjustment's
    own reason code is ``adjustment_reason``."""

    kind: ClassVar[HoldKind] = "adjustment"

    hold_id: str
    sku: str
    location: str
    delta: int
    adjustment_reason: str
    note: str | None
    idempotency_key: str | None
    on_hand_before: int
    percent: float | None
    reason: str
    held_at: datetime
    status: HeldStatus = "pending"
    resolved_at: datetime | None = None
    applied_delta: int | None = None
    state: str = SELLABLE
    """The state corrected (holds stored before stock states corrected sellable)."""

    def same_adjustment(self, delta: int, reason: str, note: str | None,
                        state: str = SELLABLE) -> bool:
        return (self.delta, self.adjustment_reason, self.note, self.state) == (
            delta, reason, note, state)

    @property
    def approval_key(self) -> str:
        """The idempotency key approval records it with (so approving twice is once)."""
        return self.idempotency_key or f"hold:{self.hold_id}"


Hold = HeldCount | HeldAdjustment

_TIMES = ("counted_at", "held_at", "resolved_at")


def hold_record(hold: Hold, time_text: Callable[[datetime], str]) -> dict[str, Any]:
    """A hold as JSON-ready fields (times through ``time_text``), for the stores."""
    record: dict[str, Any] = {"hold_id": hold.hold_id, "command": hold.kind}
    for f in fields(hold):
        value = getattr(hold, f.name)
        record[f.name] = time_text(value) if isinstance(value, datetime) else value
    return record


def hold_of_record(record: Mapping[str, Any], parse_time: Callable[[str], datetime]) -> Hold:
    """The hold a :func:`hold_record` describes (a record without ``command`` is a count,
    as stored before adjustments could be held)."""
    kind = HeldAdjustment if record.get("command") == "adjustment" else HeldCount
    values: dict[str, Any] = {}
    for f in fields(kind):
        value = record.get(f.name)
        if f.name in _TIMES and value is not None:
            value = parse_time(str(value))
        values[f.name] = value
    for name, default in (("status", "pending"), ("state", SELLABLE)):
        values[name] = values[name] or default
    return kind(**values)


# ------------------------------------------------------------------- refusals


class HoldConflict(DomainError):
    """The count id is held for approval with other figures."""

    code = "hold-conflict"

    def __init__(self, hold: Hold) -> None:
        super().__init__(f"this command is already held for approval ({hold.hold_id}) with "
                         "other figures", hold_id=hold.hold_id)


class HoldDismissed(DomainError):
    """The command was held and an approver dismissed it; it will not be recorded."""

    code = "hold-dismissed"

    def __init__(self, hold: Hold) -> None:
        super().__init__(f"this command was held for approval ({hold.hold_id}) and "
                         "dismissed by an approver; it is not recorded", hold_id=hold.hold_id)


class HoldResolved(DomainError):
    """Approval of a dismissed hold, or dismissal of an approved one."""

    code = "hold-resolved"

    def __init__(self, hold: Hold) -> None:
        super().__init__(f"hold {hold.hold_id} was already {hold.status}",
                         hold_id=hold.hold_id, hold_status=hold.status)


class UnknownHold(DomainError):
    """No hold has this id, and no pending hold this count id."""

    code = "no-held-count"

    def __init__(self, target: str) -> None:
        super().__init__(f"nothing held for approval is called {target!r}", hold_id=target)


# -------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Held:
    """A command held for approval: nothing was recorded on the stream."""

    hold: Hold
    position: Position
    repeated: bool = False
    """The same command was already held (this answer is a repeat)."""


@dataclass(frozen=True)
class Approval:
    """What approving a hold did: the command's result through the ordinary service."""

    hold: Hold
    result: CommandResult | None
    outcome: Literal["applied", "unchanged", "rejected"]
    repeated: bool = False
    """The hold was already approved before this call."""
    refusal: str | None = None


Decision = CommandResult | Held


class _Withheld(Exception):
    """Raised by the judged store's ``save`` instead of recording (held, or a dry run)."""

    def __init__(self, hold: Hold | None, current: StockItem | None) -> None:
        super().__init__("withheld")
        self.hold = hold
        self.current = current


Judge = Callable[[list[StockItem.Event]], Hold | None]


class _JudgedStore(StockItemStore):
    """The event store as a gated command sees it: reads pass through; a save is first
    shown to the judge, and a held one (or any, in a dry run) raises instead."""

    def __init__(self, store: StockItemStore, judge: Judge, *, dry_run: bool = False) -> None:
        self._store = store
        self._judge = judge
        self._dry_run = dry_run

    def get(self, sku: str, location: str, *, fresh: bool = True) -> StockItem | None:
        return self._store.get(sku, location, fresh=fresh)

    def events(self, sku: str, location: str, *, after: int = 0,
               limit: int | None = None) -> list[StockItem.Event]:
        return self._store.events(sku, location, after=after, limit=limit)

    def events_since(self, sku: str, location: str, moment: datetime, *,
                     version: int) -> list[StockItem.Event]:
        return self._store.events_since(sku, location, moment, version=version)

    def recall(self, sku: str, location: str, memo: str) -> Recalled | None:
        return self._store.recall(sku, location, memo)

    def stream_keys(self) -> Iterator[tuple[str, str]]:
        return self._store.stream_keys()

    def save(self, item: StockItem) -> list[StockItem.Event]:
        pending: list[StockItem.Event] = list(item.pending_events)  # type: ignore[arg-type]
        hold = self._judge(pending)
        if hold is None and not self._dry_run:
            return self._store.save(item)
        # Decide only on the latest state: a stale cached copy is read again first, as a
        # conflicting save would make the command service do.
        current = self._store.get(item.sku, item.location, fresh=True)
        base = pending[0].originator_version - 1 if pending else item.version
        if (0 if current is None else current.version) != base:
            raise ConcurrencyConflict(f"stream {item.stream} moved on")
        raise _Withheld(hold, current)


# ------------------------------------------------------------------- the gate


class ApprovalGate:
    """Counts and adjustments, held for approval when the policy says so (see the module
    docstring); approval and dismissal of what was held."""

    def __init__(
        self,
        commands: StockCommands,
        clock: Clock,
        holds: HoldStore,
        counts: HoldPolicy | None = None,
        adjustments: HoldPolicy | None = None,
        window: CountWindow | None = None,
    ) -> None:
        self.commands = commands
        self.clock = clock
        self.holds = holds
        self.counts = counts or HoldPolicy()
        self.adjustments = adjustments or HoldPolicy()
        self.window = window or commands.count_window

    # ----------------------------------------------------------------- counts

    def record_count(self, sku: str, location: str, count_id: str, counted: int,
                     counted_at: datetime, *, policy: HoldPolicy | None = None,
                     session_id: str = "", dry_run: bool = False,
                     state: str = SELLABLE,
                     expected: ExpectedVersion | None = None) -> Decision:
        """Record a physical count, or hold it (see the module docstring).

        Raises ``InvalidRequest`` for a ``counted_at`` outside the window, the domain's
        refusals, :class:`HoldConflict` and :class:`HoldDismissed`. With ``dry_run``
        nothing is written anywhere (neither stream nor hold): the command is decided,
        refused or not, and the answer is an empty :class:`CommandResult`, or a
        :class:`Held` whose hold was not stored.
        """
        now = self.clock.now()
        self.window.check(counted_at, now)
        existing = self.holds.find(sku, location, count_id)
        if existing is not None:
            if not existing.same_count(counted, counted_at, state):
                raise HoldConflict(existing)
            if existing.status == "pending":
                return Held(existing, self._position(sku, location), repeated=True)
            if existing.status == "dismissed":
                raise HoldDismissed(existing)
            # Approved: recorded by the approval, so this is a repeat (the aggregate says).
        policy = policy or self.counts
        if existing is not None or not policy.active:
            if dry_run:
                return self._dry(sku, location, lambda c: c.record_count(
                    sku, location, count_id, counted, counted_at, state=state,
                    expected=expected),
                    lambda events: None)
            return self.commands.record_count(sku, location, count_id, counted, counted_at,
                                              state=state, expected=expected)

        def judge(events: list[StockItem.Event]) -> Hold | None:
            event = next((e for e in events if isinstance(e, StockItem.Counted)
                          and e.count_id == count_id), None)
            if event is None:
                return None
            percent = drift_percent(event.delta, event.previous_on_hand)
            why = policy.reason(event.delta, percent)
            if why is None:
                return None
            return HeldCount(sku, location, count_id, counted, counted_at,
                             event.previous_on_hand, event.delta, percent, why, session_id,
                             now, state=state)

        def command(commands: StockCommands) -> CommandResult:
            return commands.record_count(sku, location, count_id, counted, counted_at,
                                         state=state, expected=expected)

        if dry_run:
            return self._dry(sku, location, command, judge)
        return self._gated(sku, location, command, judge)

    # ------------------------------------------------------------ adjustments

    def adjust(self, sku: str, location: str, delta: int, reason: str,
               idempotency_key: str | None = None, note: str | None = None, *,
               policy: HoldPolicy | None = None, state: str = SELLABLE,
               expected: ExpectedVersion | None = None) -> Decision:
        """Record an adjustment, or hold it (see the module docstring).

        Raises the domain's refusals (``IdempotencyKeyReused`` also when the key is held
        for another adjustment) and :class:`HoldDismissed`.
        """
        if idempotency_key is not None:
            existing = self.holds.get(adjustment_hold_id(sku, location, idempotency_key))
            if isinstance(existing, HeldAdjustment):
                if not existing.same_adjustment(delta, reason, note, state):
                    raise IdempotencyKeyReused(idempotency_key)
                if existing.status == "pending":
                    return Held(existing, self._position(sku, location), repeated=True)
                if existing.status == "dismissed":
                    raise HoldDismissed(existing)
                return self.commands.adjust(sku, location, delta, reason, idempotency_key,
                                            note, state=state, expected=expected)
        policy = policy or self.adjustments
        if not policy.active:
            return self.commands.adjust(sku, location, delta, reason, idempotency_key, note,
                                        state=state, expected=expected)
        now = self.clock.now()

        def judge(events: list[StockItem.Event]) -> Hold | None:
            event = next((e for e in events if isinstance(e, StockItem.Adjusted)), None)
            if event is None:
                return None
            before = event.on_hand - event.delta
            percent = drift_percent(event.delta, before)
            why = policy.reason(event.delta, percent, "adjustment")
            if why is None:
                return None
            return HeldAdjustment(adjustment_hold_id(sku, location, idempotency_key), sku,
                                  location, delta, reason, note, idempotency_key, before,
                                  percent, why, now, state=state)

        return self._gated(sku, location, lambda commands: commands.adjust(
            sku, location, delta, reason, idempotency_key, note, state=state,
            expected=expected), judge)

    # ------------------------------------------------------------- approvals

    def approve(self, hold_id: str) -> Approval:
        """Apply a held command through the ordinary command service.

        A pending hold is marked approved first (so a dismissal racing it loses), then
        applied; if the command is refused now (a domain error: e.g. on hand would go
        below zero), the hold goes back to pending and the refusal is raised. Approving
        an approved hold applies it again, which records nothing unless the first approval
        stopped half way. Raises :class:`UnknownHold`, :class:`HoldResolved` (dismissed).
        """
        hold = self.holds.get(hold_id)
        if hold is None:
            raise UnknownHold(hold_id)
        claimed = False
        if hold.status == "pending":
            approved = replace(hold, status="approved", resolved_at=self.clock.now())
            if self.holds.resolve(approved, "pending"):
                hold, claimed = approved, True
            else:
                hold = self.holds.get(hold_id) or hold
        if hold.status == "dismissed":
            raise HoldResolved(hold)
        try:
            result = self._apply(hold)
        except DomainError:
            if claimed:
                self.holds.resolve(replace(hold, status="pending", resolved_at=None),
                                   "approved")
            raise
        delta = _delta_of(hold, result)
        if delta is not None:
            hold = replace(hold, applied_delta=delta)
            self.holds.resolve(hold, "approved")
        return Approval(hold, result, "applied" if delta is not None else "unchanged",
                        repeated=not claimed)

    def dismiss(self, hold_id: str) -> tuple[Hold, bool]:
        """Drop a pending hold without recording anything; returns it and whether it was
        already dismissed. Raises :class:`UnknownHold`, :class:`HoldResolved` (approved)."""
        hold = self.holds.get(hold_id)
        if hold is None:
            raise UnknownHold(hold_id)
        if hold.status == "pending":
            dismissed = replace(hold, status="dismissed", resolved_at=self.clock.now())
            if self.holds.resolve(dismissed, "pending"):
                return dismissed, False
            hold = self.holds.get(hold_id) or hold
        if hold.status == "approved":
            raise HoldResolved(hold)
        return hold, True

    def approve_target(self, target: str, sku: str | None = None,
                       location: str | None = None) -> list[Approval]:
        """Approve the hold ``target`` names: a hold id, or else (as before hold ids) a
        count id, whose pending holds are all approved (narrowed to a SKU and location);
        a refusal is then that hold's ``rejected`` outcome. Raises :class:`UnknownHold`
        when nothing matches."""
        if self.holds.get(target) is not None:
            return [self.approve(target)]
        approvals = []
        for hold in self.holds.matching(target, sku, location, "pending"):
            try:
                approvals.append(self.approve(hold.hold_id))
            except DomainError as error:
                approvals.append(Approval(hold, None, "rejected", refusal=error.message))
        if not approvals:
            raise UnknownHold(target)
        return approvals

    def dismiss_target(self, target: str, sku: str | None = None,
                       location: str | None = None) -> list[Hold]:
        """Dismiss the hold ``target`` names (a hold id, or else a count id's pending
        holds); raises :class:`UnknownHold` when nothing matches."""
        if self.holds.get(target) is not None:
            return [self.dismiss(target)[0]]
        dismissed = [self.dismiss(h.hold_id)[0]
                     for h in self.holds.matching(target, sku, location, "pending")]
        if not dismissed:
            raise UnknownHold(target)
        return dismissed

    # ------------------------------------------------------------ mechanics

    def _apply(self, hold: Hold) -> CommandResult:
        if isinstance(hold, HeldCount):
            return self.commands.record_count(hold.sku, hold.location, hold.count_id,
                                              hold.counted, hold.counted_at, state=hold.state)
        return self.commands.adjust(hold.sku, hold.location, hold.delta,
                                    hold.adjustment_reason, hold.approval_key, hold.note,
                                    state=hold.state)

    def _position(self, sku: str, location: str) -> Position:
        item = self.commands.store.get(sku, location)
        return Position.empty(sku, location) if item is None else item.position(only=())

    def _service(self, store: StockItemStore) -> StockCommands:
        """The ordinary command service over ``store``: same clock, retries and observers
        (the relay is woken by a gated save as by any other)."""
        service = StockCommands(store, self.clock, self.commands.retry,
                                count_window=self.window)
        service.after_commit = self.commands.after_commit
        return service

    def _gated(self, sku: str, location: str, command: Callable[[StockCommands], CommandResult],
               judge: Judge) -> Decision:
        try:
            return command(self._service(_JudgedStore(self.commands.store, judge)))
        except _Withheld as withheld:
            assert withheld.hold is not None
            hold = withheld.hold
            position = (Position.empty(sku, location) if withheld.current is None
                        else withheld.current.position(only=()))
            if self.holds.hold(hold):
                return Held(hold, position)
            # Held by a concurrent request first: that hold stands.
            return Held(self.holds.get(hold.hold_id) or hold, position, repeated=True)

    def _dry(self, sku: str, location: str, command: Callable[[StockCommands], CommandResult],
             judge: Judge) -> Decision:
        try:
            command(self._service(_JudgedStore(self.commands.store, judge, dry_run=True)))
        except _Withheld as withheld:
            if withheld.hold is not None:
                return Held(withheld.hold, Position.empty(sku, location))
        return CommandResult(sku, location, None)


def _delta_of(hold: Hold, result: CommandResult) -> int | None:
    """The change of on hand the approved command recorded (None: it recorded nothing)."""
    if isinstance(hold, HeldCount) and result.already_recorded:
        return None  # the aggregate says the count was recorded before
    for event in result.events:
        if isinstance(hold, HeldCount) and isinstance(event, StockItem.Counted) and (
                event.count_id == hold.count_id):
            return int(event.delta)
        if isinstance(hold, HeldAdjustment) and isinstance(event, StockItem.Adjusted):
            return int(event.delta)
    return None
