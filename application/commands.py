"""Command services: load a stream, let the aggregate decide, save, retry on conflict.

Every channel command goes through :class:`StockCommands`. It is safe to share between
threads and cheap to call: commands on one stream in one process are serialised by a
striped lock (so a hot SKU does not burn its time in conflict retries), while a
conflict with another process is retried a bounded number of times with full jitter,
re-reading the stream each time. Overdue reservations are expired before every
decision, so a command never counts stock that an expired reservation still holds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import weakref
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, cast

from application.ports import (
    Clock,
    ConcurrencyConflict,
    MultiStreamSave,
    Recalled,
    StockItemStore,
    StoreError,
)
from domain.errors import DomainError, InvalidRequest, PreconditionFailed
from domain.identifiers import stream_name
from domain.stock_item import (
    SELLABLE,
    CountOutcome,
    Position,
    Recall,
    StockItem,
    movements_after,
    require_state,
    require_timestamp,
)

log = logging.getLogger(__name__)

COUNT_CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a count's ``counted_at`` may be before it is refused."""
COUNT_MAX_AGE = timedelta(days=7)
"""How old a count may be by default (``STOCKSTREAM_COUNT_MAX_AGE``): a count dated a
year back is a typo, and would put a year of movements on top of its figure."""

Decision = Callable[[StockItem, Recall], None]


@dataclass(frozen=True)
class CountWindow:
    """The moments a count may claim to have been taken at, relative to now: at most
    ``max_age`` back (``STOCKSTREAM_COUNT_MAX_AGE``) and ``max_ahead`` ahead. Every count,
    whatever its route, is checked here before anything else."""

    max_age: timedelta = COUNT_MAX_AGE
    max_ahead: timedelta = COUNT_CLOCK_SKEW

    def refusal(self, counted_at: Any, now: datetime) -> str | None:
        """Why ``counted_at`` is refused at ``now``, or None.

        Safe for any aware datetime, including year 1 and year 9999 with any offset
        (aware subtraction never builds an out-of-range datetime).
        """
        if not isinstance(counted_at, datetime) or counted_at.utcoffset() is None:
            return "counted_at must be a timestamp with a time zone"
        age = now - counted_at
        if age > self.max_age:
            return (f"counted_at must be at most {_span(self.max_age)} ago "
                    "(STOCKSTREAM_COUNT_MAX_AGE)")
        if -age > self.max_ahead:
            return f"counted_at must not be more than {_span(self.max_ahead)} ahead of now"
        return None

    def check(self, counted_at: Any, now: datetime) -> None:
        """Raise ``InvalidRequest`` (field ``counted_at``) if it is refused."""
        why = self.refusal(counted_at, now)
        if why is not None:
            raise InvalidRequest(why, field="counted_at")


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class ExpectedVersion:
    """What a conditional write expects of its stream (HTTP ``If-Match``): one of
    ``versions``, or with ``versions`` None any version but 0 (the stream exists).
    ``ExpectedVersion((0,))`` expects the stream not to exist yet."""

    versions: frozenset[int] | None = None

    @classmethod
    def exists(cls) -> ExpectedVersion:
        return cls(None)

    @classmethod
    def at(cls, *versions: int) -> ExpectedVersion:
        return cls(frozenset(versions))

    def holds(self, version: int) -> bool:
        return version > 0 if self.versions is None else version in self.versions

    def __str__(self) -> str:
        if self.versions is None:
            return "any existing version"
        return " or ".join(str(v) for v in sorted(self.versions))


class _StaleState(Exception):
    """A memo is newer than the state being decided on: decide again on a fresh read."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, jittered retry of optimistic-concurrency conflicts between processes."""

    attempts: int = 12
    base_delay: float = 0.002
    max_delay: float = 0.1

    max_group_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff: uniform in [0, min(max, base·2^attempt)]."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def group_delay(self, attempt: int, round_trip: float) -> float:
        """The pause before a coalesced group's next attempt: full jitter over
        ``round_trip·2^attempt`` (at most ``max_group_delay``), where ``round_trip`` is
        what the lost attempt took (its read and its write). Scaled by the store's own
        round trip, the writers of a hot stream spread out over a few of its round trips
        whatever the store's latency, instead of colliding again at once."""
        span = max(self.base_delay, round_trip) * 2**attempt
        return random.uniform(0, min(self.max_group_delay, span))


@dataclass(frozen=True)
class CommandResult:
    """What a command did: the state after it and the events it recorded (maybe none).

    The position is built on demand: listing every open reservation of a hot SKU costs
    more than the command itself, and most callers want only the figures and the
    reservation they touched (:meth:`position_of`).
    """

    sku: str
    location: str
    item: StockItem | None
    events: list[StockItem.Event] = field(default_factory=list)
    already_recorded: bool = False
    """A count only: the aggregate answered that this count id was already recorded with
    these figures (a repeat; nothing recorded for it). Callers ask this; they never infer
    it from ``events``."""

    @property
    def changed(self) -> bool:
        return bool(self.events)

    @property
    def position(self) -> Position:
        """The full position, every open reservation listed."""
        if self.item is None:
            return Position.empty(self.sku, self.location)
        return self.item.position()

    def position_of(self, *order_ids: str) -> Position:
        """The position listing only these orders' reservations (none: figures only)."""
        if self.item is None:
            return Position.empty(self.sku, self.location)
        return self.item.position(only=order_ids)


@dataclass(frozen=True, eq=False)
class StockCommand:
    """One channel command on one stream, planned but not run: what it decides, the
    version it expects, and how its result is finished (a count says whether it was
    already recorded). :meth:`StockCommands.run` runs one; :meth:`StockCommands.run_many`
    runs many as one group. The ``plan_*`` methods build them, and check what can be
    checked before a stream is read (a count's time), raising as the command would."""

    sku: str
    location: str
    decide: Decision
    expected: ExpectedVersion | None = None
    finish: Callable[[CommandResult], CommandResult] | None = None
    memos: tuple[str, ...] = ()
    """Memos its decision will ask for (a hint): a group reads them all at once."""

    def finished(self, result: CommandResult) -> CommandResult:
        return result if self.finish is None else self.finish(result)


BATCH_LANES = 32
"""Streams of one :meth:`StockCommands.run_many` served side by side on a store without
group commit (Cosmos DB), each stream's commands one after another."""

MAX_GROUP = 512
"""Most commands one group commit decides and writes together: bounds a group's
transaction and the wait of the commands that queue behind it."""


class _Wake:
    """The wake-up of one command's caller: a bare lock, held from the start, that
    :meth:`set` releases and :meth:`wait` acquires (then releases again, so it stays set).

    A ``threading.Event`` per command did the same through a ``Condition``: its creation,
    its ``wait`` (a lock of its own per waiter, the condition's lock taken and given
    back twice) and its ``set`` (``notify_all``) are Python code run under the
    interpreter lock for every command of every group, by the leader while the whole
    queue waits for it. Here each is one or two calls of the lock's C methods. A command
    may be set twice (woken to lead, then answered by its own group): releasing an
    unlocked lock raises, atomically, so the second ``set`` changes nothing."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        # Not contextlib.suppress: building a context manager costs more than the release.
        try:  # noqa: SIM105
            self._lock.release()
        except RuntimeError:  # already set
            pass

    def wait(self) -> None:
        self._lock.acquire()
        self.set()


_NOBODY_WAITS = _Wake()
"""The ``wake`` of every command queued with ``on_done``: no thread waits on it, and the
group commit never sets it (one each would cost its lock for nothing)."""


@dataclass(eq=False)
class _Command:
    """One command waiting for a group commit, and once done its outcome."""

    sku: str
    location: str
    decide: Decision
    expected: ExpectedVersion | None
    memos: tuple[str, ...] = ()
    result: CommandResult | None = None
    error: BaseException | None = None
    done: bool = False
    wake: _Wake = field(default_factory=_Wake)
    """Set when the command is done, or when its caller is to lead the next group."""
    on_done: Callable[[_Command], Callable[[], None] | None] | None = None
    """A command queued without a waiting thread (:meth:`_GroupCommit.submit`): called,
    on the thread that committed it, once it is done. It never leads a group. It may
    return a wake-up, which the group commit calls once its whole group is answered,
    once however many of the group's commands returned it (one wake-up of an event
    loop per group, :class:`_LoopInbox`)."""


class _GroupCommit:
    """Leader/follower group commit: the first caller to find no commit under way leads;
    it takes every command queued so far (its own included), has them decided and written
    together (:meth:`StockCommands._commit_group`), wakes each of their callers with its
    outcome, and hands the lead to the caller of the oldest command still queued. So
    while one group's fsync runs, the next group gathers, and a busy store writes many
    commands per fsync without any timer: a caller alone is written at once. Each caller
    is woken once (its own event), never by a broadcast to every waiter.

    ``per_stream``: each stream has a queue and a leader of its own, so a group holds one
    stream's commands and streams never wait for each other (Cosmos DB, where one save is
    one transactional batch in one stream's partition). Otherwise one queue for all."""

    def __init__(self, commit: Callable[[list[_Command]], None], *,
                 per_stream: bool = False) -> None:
        self._commit = commit
        self.per_stream = per_stream
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._queues: dict[str, list[_Command]] = {}
        """The commands queued per lane (one lane, "", unless per stream); a lane is
        listed while a group of it is under way, and only then."""

    def absorb(self, group: list[_Command]) -> None:
        """Move the commands queued behind ``group`` (its lane's, up to ``MAX_GROUP`` in
        all) to its end, in order: a group retried after a conflict takes along what
        arrived meanwhile, so one successful write answers them too. Their callers are
        woken with the group's."""
        if not self.per_stream:
            return  # one lane for every stream: the group would not stay one stream's
        lane = self._lane(group[0])
        with self._lock:
            queue = self._queues.get(lane)
            if queue:
                taken = queue[:max(0, MAX_GROUP - len(group))]
                del queue[:len(taken)]
                group.extend(taken)

    def queued(self) -> int:
        """How many commands wait for a group, in every lane (for tests and metrics)."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def _lane(self, command: _Command) -> str:
        return stream_name(command.sku, command.location) if self.per_stream else ""

    def run(self, command: _Command) -> CommandResult:
        self.run_many([command])
        if command.error is not None:
            raise command.error
        assert command.result is not None
        return command.result

    def run_many(self, commands: list[_Command]) -> None:
        """Queue ``commands`` together, in order, and return when each is done: they
        meet in as few groups as :data:`MAX_GROUP` allows (one for a batch of 500 on an
        idle store), this caller leading each group that starts with one of them. They
        must share one lane (per stream: one stream's commands)."""
        lane = self._lane(commands[0])
        with self._lock:
            queue = self._queues.get(lane)
            follow = queue is not None
            if queue is None:
                queue = self._queues[lane] = []
            queue.extend(commands)
        for index, command in enumerate(commands):
            # Ours are contiguous in the queue: each is woken when done, or when it is the
            # oldest queued and so leads the next group (as in :meth:`run`).
            if follow or index > 0:
                command.wake.wait()
            if not command.done and self._lead_once(lane):
                self._leaders().submit(self._lead, lane)

    def submit(self, commands: list[_Command]) -> None:
        """Queue ``commands`` (each with ``on_done``) and return at once: a caller that
        cannot wait on a thread (a coroutine) is told through ``on_done``. When no group
        of their lane is under way, a thread of the group commit's own leads one."""
        lane = self._lane(commands[0])
        with self._lock:
            queue = self._queues.get(lane)
            lead = queue is None
            if queue is None:
                queue = self._queues[lane] = []
            queue.extend(commands)
        if lead:
            self._leaders().submit(self._lead, lane)

    def _leaders(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(BATCH_LANES, thread_name_prefix="group-commit")
            return self._pool

    def _lead(self, lane: str) -> None:
        """Lead groups of ``lane`` for as long as the oldest command queued has no caller
        thread to hand the lead to."""
        while self._lead_once(lane):
            pass

    def _lead_once(self, lane: str) -> bool:
        """Commit the next group of ``lane``; True when the next one is left for this
        thread to lead (its oldest command was submitted without a waiting thread)."""
        with self._lock:
            queue = self._queues[lane]
            group = queue[:MAX_GROUP]
            del queue[:MAX_GROUP]
        return self._commit_all(lane, group)

    def _commit_all(self, lane: str, group: list[_Command]) -> bool:
        """Commit ``group``, answer its callers and hand the lead on; True when the lead
        stays with this thread."""
        try:
            self._commit(group)
        except BaseException as error:  # every caller must get an answer, never a hang
            for command in group:
                if not command.done:
                    command.error, command.done = error, True
            if not isinstance(error, Exception):
                if self._answer(lane, group):
                    self._leaders().submit(self._lead, lane)
                raise
        return self._answer(lane, group)

    def _answer(self, lane: str, group: list[_Command]) -> bool:
        """Hand the lead to the caller of the oldest command queued (True: it has none
        waiting, so the lead stays with this thread), then wake ``group``'s callers."""
        lead_on = False
        with self._lock:
            queue = self._queues[lane]
            if not queue:
                del self._queues[lane]
            elif queue[0].on_done is None:
                queue[0].wake.set()  # its caller leads the next group
            else:
                lead_on = True
        wake_ups: list[Callable[[], None]] = []
        for command in group:
            if command.on_done is None:
                command.wake.set()
            elif (wake_up := command.on_done(command)) is not None \
                    and wake_up not in wake_ups:
                wake_ups.append(wake_up)
        for wake_up in wake_ups:
            wake_up()
        return lead_on


class _StripedLocks:
    """A fixed set of locks shared by hash, so per-stream locking costs no bookkeeping."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def for_stream(self, stream: str) -> threading.Lock:
        return self._locks[zlib.crc32(stream.encode()) % len(self._locks)]


P = ParamSpec("P")


def _ran(plan: Callable[Concatenate[StockCommands, P], StockCommand]
         ) -> Callable[Concatenate[StockCommands, P], CommandResult]:
    """The command method that runs what ``plan`` plans (same arguments, same docstring):
    each channel command is written once, as its plan."""

    def run(self: StockCommands, /, *args: P.args, **kwargs: P.kwargs) -> CommandResult:
        return self.run(plan(self, *args, **kwargs))

    run.__doc__ = plan.__doc__
    run.__name__ = plan.__name__.replace("plan_", "", 1)
    return run


class StockCommands:
    """The channel commands (docs/http-api.md), each one atomic on one SKU-location stream.

    Stock states and incoming supply (§5.3): receipts, adjustments and counts take an
    optional ``state`` (sellable by default); :meth:`move_state` and :meth:`set_incoming`
    are commands of their own. The transfer-side commands (:meth:`ship_transfer`,
    :meth:`expect_transfer`, :meth:`receive_transfer`, :meth:`record_transit_loss`) are
    the steps a transfer process asks of the two locations' streams, each idempotent by
    the transfer id, so driving a transfer again after a crash is safe.
    """

    def __init__(
        self,
        store: StockItemStore,
        clock: Clock,
        retry: RetryPolicy | None = None,
        *,
        count_window: CountWindow | None = None,
        group_commit: bool = False,
        per_stream: bool = False,
    ) -> None:
        """``group_commit``: concurrent commands are decided one after another on the
        cached states and written together with ``store.save_many`` (one transaction, one
        fsync); for a store that writes several streams atomically (SQLite). With
        ``per_stream``, a group holds the commands of one stream only and is written as
        one save (on Cosmos DB one transactional batch, split when it would exceed the
        store's limit, ``StockItemStore.fits_one_save``); streams never wait for each
        other, and a conflict re-reads the stream and decides the group again."""
        self.store = store
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.count_window = count_window or CountWindow()
        self._locks = _StripedLocks()
        self.after_commit: list[Callable[[list[StockItem.Event]], None]] = []
        """Called with the events of every successful save (e.g. to wake the relay), on
        the thread of the command that saved them (a coroutine's: its event loop's)."""
        self._group = (_GroupCommit(self._commit_group, per_stream=per_stream)
                       if group_commit else None)
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopInbox] = (
            weakref.WeakKeyDictionary())
        """Where the committing thread leaves coroutines' answers, one per event loop."""

    # ---------------------------------------------------------------- commands

    def plan_receive(
        self,
        sku: str,
        location: str,
        quantity: int,
        reference: str | None = None,
        idempotency_key: str | None = None,
        *,
        state: str = SELLABLE,
        expected: ExpectedVersion | None = None,
    ) -> StockCommand:
        """Receive into ``state``; a ``reference`` naming an open incoming entry reduces it.

        Planned: :meth:`run` runs it, :meth:`run_many` runs many; :meth:`receive` both."""
        return StockCommand(
            sku, location,
            lambda item, recall: item.receive(quantity, reference, idempotency_key, recall,
                                              state=state), expected,
            memos=() if idempotency_key is None else (StockItem.key_memo(idempotency_key),))

    receive = _ran(plan_receive)

    def plan_adjust(
        self,
        sku: str,
        location: str,
        delta: int,
        reason: str,
        idempotency_key: str | None = None,
        note: str | None = None,
        *,
        state: str = SELLABLE,
        expected: ExpectedVersion | None = None,
    ) -> StockCommand:
        """Planned: :meth:`run` runs it, :meth:`run_many` runs many; :meth:`adjust` both."""
        return StockCommand(
            sku, location,
            lambda item, recall: item.adjust(delta, reason, idempotency_key, note, recall,
                                             state=state), expected)

    adjust = _ran(plan_adjust)

    def plan_policy(
        self, sku: str, location: str, safety_stock: int, oversell_buffer: int, *,
        expected: ExpectedVersion | None = None,
    ) -> StockCommand:
        """Set safety stock and the oversell buffer. Planned: :meth:`run` runs it,
        :meth:`run_many` runs many; :meth:`set_policy` both."""
        return StockCommand(
            sku, location, lambda item, recall: item.set_policy(safety_stock, oversell_buffer),
            expected)

    set_policy = _ran(plan_policy)

    def plan_reserve(
        self,
        sku: str,
        location: str,
        order_id: str,
        quantity: int,
        channel: str,
        ttl_seconds: int | None = None,
        *,
        expires_at: datetime | None = None,
        reopen: bool = False,
        expected: ExpectedVersion | None = None,
    ) -> StockCommand:
        """Set an order's reservation (see ``StockItem.reserve``). Its expiry is
        ``ttl_seconds`` from now, or ``expires_at`` when given (an order process gives
        every line of an order the one expiry it recorded).

        Planned: :meth:`run` runs it, :meth:`run_many` runs many; :meth:`reserve` both."""

        def decide(item: StockItem, recall: Recall) -> None:
            expiry = expires_at if expires_at is not None else StockItem.expiry(
                self.clock.now(), ttl_seconds)
            item.reserve(order_id, quantity, channel, expiry, recall, reopen=reopen)

        return StockCommand(sku, location, decide, expected,
                            memos=(StockItem.order_memo(order_id),))

    reserve = _ran(plan_reserve)

    def reschedule(
        self, sku: str, location: str, order_id: str, expires_at: datetime | None
    ) -> CommandResult:
        """Set the expiry of an open reservation (see ``StockItem.reschedule``)."""
        return self._execute(
            sku, location,
            lambda item, recall: item.reschedule(order_id, expires_at, recall),
        )

    def plan_release(self, sku: str, location: str, order_id: str, *,
                     expected: ExpectedVersion | None = None) -> StockCommand:
        """Planned: :meth:`run` runs it, :meth:`run_many` runs many; :meth:`release` both."""
        return StockCommand(
            sku, location, lambda item, recall: item.release(order_id, recall=recall),
            expected)

    release = _ran(plan_release)

    def plan_fulfil(
        self, sku: str, location: str, order_id: str, quantity: int | None = None, *,
        expected: ExpectedVersion | None = None,
    ) -> StockCommand:
        """Planned: :meth:`run` runs it, :meth:`run_many` runs many; :meth:`fulfil` both."""
        return StockCommand(
            sku, location, lambda item, recall: item.fulfil(order_id, quantity, recall),
            expected)

    fulfil = _ran(plan_fulfil)

    def plan_count(
        self,
        sku: str,
        location: str,
        count_id: str,
        counted: int,
        counted_at: datetime,
        *,
        state: str = SELLABLE,
        expected: ExpectedVersion | None = None,
    ) -> StockCommand:
        """Apply a physical count of ``state`` (sellable by default) taken at
        ``counted_at``; see ``StockItem.record_count``.

        ``counted_at`` must lie inside the count window (:class:`CountWindow`).

        Planned: :meth:`run` runs it, :meth:`run_many` runs many; :meth:`record_count`
        both. A time outside the window raises ``InvalidRequest`` here, before anything
        runs."""
        self.check_counted_at(counted_at)
        require_state("state", state)
        outcomes: list[CountOutcome] = []

        def decide(item: StockItem, recall: Recall) -> None:
            outcomes.append(item.record_count(count_id, counted, counted_at,
                                              self._movements_since(item, counted_at, state),
                                              recall, state=state))

        def finish(result: CommandResult) -> CommandResult:
            # The last decision is the one that stands: earlier ones were taken on a state
            # that was then read again (stale cache, conflict), and a command returns only
            # after a decision on the state it saved or confirmed.
            return replace(result, already_recorded=outcomes[-1] == "already-recorded")

        return StockCommand(sku, location, decide, expected, finish)

    record_count = _ran(plan_count)

    def move_state(
        self,
        sku: str,
        location: str,
        quantity: int,
        from_state: str,
        to_state: str,
        reason: str | None = None,
        idempotency_key: str | None = None,
        *,
        expected: ExpectedVersion | None = None,
    ) -> CommandResult:
        """Move units between states (``StockItem.move``): reserved units never leave
        sellable; a repeated ``idempotency_key`` is a no-op."""
        return self._execute(
            sku, location,
            lambda item, recall: item.move(quantity, from_state, to_state, reason,
                                           idempotency_key, recall), expected=expected)

    def set_incoming(
        self, sku: str, location: str, reference: str, quantity: int, expected_at: datetime, *,
        expected: ExpectedVersion | None = None,
    ) -> CommandResult:
        """Set an expected receipt (absolute; 0 cancels); the same figures again change
        nothing. A transfer's entry raises ``IncomingConflict``."""
        return self._execute(
            sku, location,
            lambda item, recall: item.set_incoming(reference, quantity, expected_at),
            expected=expected)

    def ship_transfer(
        self, sku: str, location: str, transfer_id: str, quantity: int, to_location: str
    ) -> CommandResult:
        """At the source: take ``quantity`` available sellable units out for the transfer."""
        return self._execute(
            sku, location,
            lambda item, recall: item.ship_transfer(transfer_id, quantity, to_location,
                                                    recall),
        )

    def expect_transfer(
        self,
        sku: str,
        location: str,
        transfer_id: str,
        quantity: int,
        expected_at: datetime,
        from_location: str,
    ) -> CommandResult:
        """At the destination: the transfer's incoming entry (reference = transfer id)."""
        return self._execute(
            sku, location,
            lambda item, recall: item.expect_transfer(transfer_id, quantity, expected_at,
                                                      from_location, recall),
        )

    def receive_transfer(
        self,
        sku: str,
        location: str,
        transfer_id: str,
        quantity: int,
        shipped: int,
        from_location: str,
    ) -> CommandResult:
        """At the destination: the transfer's one receipt (sellable + quantity, its
        incoming entry closed)."""
        return self._execute(
            sku, location,
            lambda item, recall: item.receive_transfer(transfer_id, quantity, shipped,
                                                       from_location, recall),
        )

    def record_transit_loss(
        self, sku: str, location: str, transfer_id: str, lost: int, from_location: str
    ) -> CommandResult:
        """At the destination, on the transfer's close: what never arrived is lost."""
        return self._execute(
            sku, location,
            lambda item, recall: item.record_transit_loss(transfer_id, lost, from_location,
                                                          recall),
        )

    def check_counted_at(self, counted_at: datetime) -> None:
        """Refuse a count time outside the window (``InvalidRequest``, field counted_at)."""
        self.count_window.check(counted_at, self.clock.now())
        require_timestamp("counted_at", counted_at)

    def expire_overdue(self, sku: str, location: str) -> CommandResult:
        """Release the stream's overdue reservations (the periodic sweep calls this)."""
        return self._execute(sku, location, lambda item, recall: None)

    # ---------------------------------------------------------------- group commit

    def _commit_group(self, group: list[_Command], attempt: int = 0) -> None:
        """Decide ``group`` in order on the cached states and write what it decided in one
        ``save_many`` (each stream's commands as one append), then answer each command.

        Only a command that records events on a state meeting its expectation is written
        in the group. Any other (a refusal, a repeat, an unmet ``If-Match``, a stale memo)
        must be confirmed on a fresh read, so it runs alone after the group is durable,
        as do the later commands on its stream: a stream's commands keep their order.
        A group that would not fit one save (``StockItemStore.fits_one_save``: Cosmos
        DB's 100 operations a batch) is cut before the command that overflows it; the
        rest is a group of its own, decided once the first part is durable.
        A conflict with another process (a stale cache) writes nothing: a group of one
        stream is then decided again on a fresh read after a jittered pause, at most
        ``retry.attempts`` times in all (then ``ConcurrencyConflict`` for each of its
        commands); a group of several streams runs each command alone, in order, as if
        there had been no group.
        """
        now = self.clock.now()
        known = self._prefetch(group)
        began = time.monotonic()
        rest: list[_Command] = []
        items: dict[str, StockItem] = {}
        new_streams: set[str] = set()
        staged: list[tuple[_Command, str, list[StockItem.Event]]] = []
        snapshots: dict[_Command, StockItem] = {}
        last_staged: dict[str, _Command] = {}
        deferred: list[_Command] = []
        alone: set[str] = set()  # streams whose remaining commands run alone
        per_stream = Counter(stream_name(c.sku, c.location) for c in group)
        for index, command in enumerate(group):
            stream = stream_name(command.sku, command.location)
            if stream in alone:
                deferred.append(command)
                continue
            item = items.get(stream)
            if item is None:
                try:
                    item = self.store.get(command.sku, command.location, fresh=attempt > 0)
                except StoreError:
                    alone.add(stream)
                    deferred.append(command)
                    continue
                if item is None:
                    item = StockItem.create(command.sku, command.location)
                    new_streams.add(stream)
                elif per_stream[stream] > 1 or len(item.reservations) >= JOURNAL_FROM:
                    # Answers will need it, or the stream's reservations are many: the
                    # journal the cached state is a view of goes on, else one copy.
                    _journal_of(item)
                items[stream] = item
            previous = last_staged.get(stream)
            if previous is not None and previous not in snapshots:
                snapshots[previous] = _state_now(item)  # its answer, before this command
            before = 0 if stream in new_streams else len(item.pending_events)
            new_streams.discard(stream)
            own, spoilt = self._decide_staged(command, item, now, before, known)
            if own is not None and previous is not None and not self.store.fits_one_save(item):
                # Too much for one save: write the group up to the previous command (its
                # state, taken before this one), and decide the rest afterwards.
                items[stream] = _detached(snapshots.pop(previous))
                rest = group[index:]
                break
            if own is not None:
                last_staged[stream] = command
                staged.append((command, stream, own))
                continue
            alone.add(stream)
            deferred.append(command)
            if spoilt:
                # The item holds events that must not be written: none of this stream's
                # commands is written in the group; they all run alone, in order.
                deferred.extend(c for c, s, _ in staged if s == stream)
                staged = [entry for entry in staged if entry[1] != stream]
        written = [items[stream] for stream in dict.fromkeys(s for _, s, _ in staged)]
        for stream, command in last_staged.items():
            if command not in snapshots and isinstance(items[stream].reservations, _Journal):
                # Its answer must not read the journal itself: the next group goes on
                # changing it (the last answer was the item as saved).
                snapshots[command] = _state_now(items[stream])
        try:
            if written:
                self.store.save_many(written)
        except ConcurrencyConflict:
            if len({stream_name(c.sku, c.location) for c in group}) > 1:
                for command in group:
                    _run_alone(self, command)
                return
            if attempt + 1 >= self.retry.attempts:
                raise
            time.sleep(self.retry.group_delay(attempt, time.monotonic() - began))
            if self._group is not None:
                self._group.absorb(group)
            self._commit_group(group, attempt + 1)
            return
        except MultiStreamSave:
            for command in group:
                _run_alone(self, command)
            return
        except StoreError as error:
            for command, _, _ in staged:
                command.error, command.done = error, True
        else:
            for command, stream, own in staged:
                item = snapshots.get(command, items[stream])
                command.result = CommandResult(command.sku, command.location, item, own)
                command.done = True
        order = {id(command): index for index, command in enumerate(group)}
        for command in sorted(deferred, key=lambda c: order[id(c)]):
            _run_alone(self, command)
        if rest:
            self._commit_group(rest)

    def _prefetch(self, group: list[_Command]) -> dict[tuple[str, str, str], Recalled | None]:
        """The memos the group's commands said they will ask for, read at once: found
        ones with their value, the others None (absent). Empty when the read fails (each
        decision then reads its own)."""
        wanted = list(dict.fromkeys((c.sku, c.location, memo)
                                    for c in group for memo in c.memos))
        if not wanted:
            return {}
        try:
            found = self.store.recall_many(wanted)
        except StoreError:
            return {}
        return {key: found.get(key) for key in wanted}

    def _decide_staged(
        self, command: _Command, item: StockItem, now: datetime, before: int,
        known: dict[tuple[str, str, str], Recalled | None],
    ) -> tuple[list[StockItem.Event] | None, bool]:
        """The events ``command`` decides on ``item`` (pending from index ``before``), or
        None when it must run alone: refused, stale, recording nothing, or its
        expectation unmet. The flag says whether the item now holds events that must not
        be written (a refusal after some events, an unmet expectation's decision)."""
        item.expire_overdue(now)
        expired = len(item.pending_events)
        try:
            command.decide(item, self._recall(item, known))
        except (DomainError, _StaleState):
            return None, len(item.pending_events) > expired
        own = cast(list[StockItem.Event], list(item.pending_events)[before:])
        if all(isinstance(e, StockItem.Created) for e in own):
            return None, False
        if command.expected is not None and \
                not command.expected.holds(own[0].originator_version - 1):
            return None, len(item.pending_events) > expired
        return own, False

    # ---------------------------------------------------------------- mechanics

    def _movements_since(
        self, item: StockItem, moment: datetime, state: str = SELLABLE
    ) -> int:
        """The movements of ``state`` the stream recorded after ``moment`` (no read if
        none can be)."""
        if item.version == 0 or moment >= item.modified_on:
            return 0
        return movements_after(
            self.store.events_since(item.sku, item.location, moment, version=item.version),
            moment,
            state,
        )

    def _recall(
        self, item: StockItem,
        known: dict[tuple[str, str, str], Recalled | None] | None = None,
    ) -> Recall:
        """The stream's memos as the aggregate asks for them (after its own pending
        events, which the aggregate searches first: ``StockItem._recalled``), from
        ``known`` (read before the group) when there, else from the store; a memo written
        after the state's version means the state is stale (another process moved the
        stream)."""

        def recall(memo: str) -> str | None:
            key = (item.sku, item.location, memo)
            if known is not None and key in known:
                found = known[key]
            else:
                found = self.store.recall(item.sku, item.location, memo)
            if found is None:
                return None
            if found.version > item.version:
                raise _StaleState(memo)
            return found.value

        return recall

    def run(self, command: StockCommand) -> CommandResult:
        """Run one planned command (through the group commit when there is one)."""
        return command.finished(self._execute(command.sku, command.location, command.decide,
                                              expected=command.expected, memos=command.memos))

    async def run_async(self, command: StockCommand) -> CommandResult:
        """:meth:`run` for a coroutine: it waits for the group commit without a thread of
        its own (the group's leader tells it through its event loop)."""
        group = self._group
        if group is None:
            return await asyncio.to_thread(self.run, command)
        loop = asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes[loop] = _LoopInbox(loop)
        answered: asyncio.Future[None] = loop.create_future()
        queued = _Command(command.sku, command.location, command.decide, command.expected,
                          command.memos, wake=_NOBODY_WAITS,
                          on_done=lambda _: inbox.post(answered))
        group.submit([queued])
        await answered
        if queued.error is not None:
            raise queued.error
        result = command.finished(cast(CommandResult, queued.result))
        self._tell_observers(result.events)
        return result

    def run_many(self, commands: Sequence[StockCommand]) -> list[CommandResult | Exception]:
        """Run ``commands``, each atomic on its own stream as if run alone, a stream's
        commands in the order given; each entry of the answer is its command's result or
        the exception it raised (a refusal; nothing recorded for it).

        With group commit they are queued as one group: decided one after another on the
        cached states in this thread, written in one transaction per :data:`MAX_GROUP`
        commands (each stream's as one append), no thread per command. With a group
        commit per stream (Cosmos DB: one save is one stream's transactional batch) each
        stream's commands are queued together on its lane, so they coalesce into as few
        batches as fit, up to :data:`BATCH_LANES` streams side by side; without group
        commit each stream's commands run one after another, as many lanes side by side."""
        group = self._group
        if group is not None and not group.per_stream:
            return self._run_grouped(group, list(commands))
        outcomes: list[CommandResult | Exception] = [Exception()] * len(commands)

        def run_lane(indexes: list[int]) -> None:
            if group is not None:  # per stream: the lane's commands coalesce into one save
                ran = self._run_grouped(group, [commands[index] for index in indexes])
                for index, outcome in zip(indexes, ran, strict=True):
                    outcomes[index] = outcome
                return
            for index in indexes:
                try:
                    outcomes[index] = self.run(commands[index])
                except Exception as error:
                    outcomes[index] = error

        lanes: dict[tuple[str, str], list[int]] = {}
        for index, command in enumerate(commands):
            lanes.setdefault((command.sku, command.location), []).append(index)
        if len(lanes) <= 1:
            for lane in lanes.values():
                run_lane(lane)
        else:
            with ThreadPoolExecutor(min(BATCH_LANES, len(lanes)),
                                    thread_name_prefix="commands") as pool:
                list(pool.map(run_lane, lanes.values()))
        return outcomes

    def _run_grouped(self, group: _GroupCommit,
                     commands: list[StockCommand]) -> list[CommandResult | Exception]:
        """``commands`` queued together on the group commit, each answered with its
        result or the exception it raised."""
        queued = [_Command(c.sku, c.location, c.decide, c.expected, c.memos) for c in commands]
        group.run_many(queued)
        for q in queued:
            if q.error is not None and not isinstance(q.error, Exception):
                raise q.error
        outcomes = [q.error if isinstance(q.error, Exception)
                    else c.finished(cast(CommandResult, q.result))
                    for c, q in zip(commands, queued, strict=True)]
        self._tell_observers([e for o in outcomes if isinstance(o, CommandResult)
                              for e in o.events])
        return outcomes

    def _tell_observers(self, events: list[StockItem.Event]) -> None:
        if not events:
            return
        for observer in self.after_commit:
            try:
                observer(events)
            except Exception:  # the command is recorded: report, never fail it
                log.exception("an after-commit observer failed")

    def _execute(self, sku: str, location: str, decide: Decision, *,
                 expected: ExpectedVersion | None = None,
                 memos: tuple[str, ...] = ()) -> CommandResult:
        """Run one command: through the group commit when there is one, else alone
        (:meth:`_execute_alone`); then tell the after-commit observers its events."""
        if self._group is not None:
            result = self._group.run(_Command(sku, location, decide, expected, memos))
        else:
            result = self._execute_alone(sku, location, decide, expected=expected)
        self._tell_observers(result.events)
        return result

    def _execute_alone(self, sku: str, location: str, decide: Decision, *,
                       expected: ExpectedVersion | None = None) -> CommandResult:
        """Load, decide, save; retry conflicts. Every outcome but a successful save is
        confirmed on a fresh read first, so a stale cache never refuses or no-ops wrongly.

        ``expected`` makes the write conditional on the version the decision was taken on,
        and that version is the one the optimistic-concurrency save appends after, so no
        other write can slip in between the check and the save. A decision that records
        nothing (a repeat of a command that took effect) answers success whatever
        ``expected`` says: the client's earlier request did what it asked. Otherwise an
        unmet expectation wins over the decision's own refusal (``PreconditionFailed``,
        with the version the stream is at): the client decided on a state it no longer
        has, which is what it asked to be told."""
        stream = stream_name(sku, location)
        fresh = False
        attempt = 0
        while True:
            with self._locks.for_stream(stream):
                item = self.store.get(sku, location, fresh=fresh)
                is_new = item is None
                if item is None:
                    item = StockItem.create(sku, location)
                try:
                    item.expire_overdue(self.clock.now())
                    decide(item, self._recall(item))
                except DomainError:
                    if fresh:
                        _check_expected(expected, item)
                        raise
                    fresh = True
                    continue
                except _StaleState:
                    attempt += 1
                    if fresh and attempt >= self.retry.attempts:
                        raise ConcurrencyConflict(f"stream {stream} kept moving on") from None
                    fresh = True
                    continue
                if not item.pending_events or (is_new and len(item.pending_events) == 1):
                    if not fresh:
                        fresh = True
                        continue
                    # Nothing to record; on an unknown stream not even its creation.
                    return CommandResult(sku, location, None if is_new else item)
                if expected is not None and not expected.holds(_base_version(item)):
                    if not fresh:
                        fresh = True
                        continue
                    _check_expected(expected, item)
                try:
                    events = self.store.save(item)
                except ConcurrencyConflict:
                    attempt += 1
                    fresh = True
                    if attempt >= self.retry.attempts:
                        raise
                else:
                    return CommandResult(sku, location, item, events)
            time.sleep(self.retry.delay(attempt))


class _Journal(dict[str, Any]):
    """A stream's open reservations as the group commit changes them in place: the dict
    itself, plus each change as (order id, the entry before it, or ``_ABSENT``).

    Any earlier state is then a view (:class:`_ReservationsAt`: the dict as it is, with
    the changes after a mark undone), so neither a command's answer in a group nor the
    store's cached copy of a saved state needs a copy of every open reservation. On a hot
    SKU that copy, one a group, grew with every checkout holding stock (~100 µs at 30,000
    open, 20–60 µs a command at 30,000–60,000 in groups of ~8: the growth of a flash
    sale's CPU per command over a run).

    The journal outlives its group: the store caches a saved state as the view at the
    journal's head (``StockItem.__deepcopy__`` asks for :meth:`frozen`), and the next
    group on the stream continues the journal from that view when nothing moved it since
    (:func:`_journal_of`), so a hot stream pays for its reservations' copy only when the
    journal has recorded as many changes as it holds entries (or after a group that was
    not written). One writer at a time: the group commit has one leader per lane, and a
    lane holds a stream whole. Readers (answers, the cache's copies, the snapshot
    writer's thread) read under :attr:`lock`, which each change takes too."""

    def __init__(self, entries: Mapping[str, Any]) -> None:
        super().__init__(entries)
        self.changes: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def __setitem__(self, order_id: str, entry: Any) -> None:
        with self.lock:
            self.changes.append((order_id, self.get(order_id, _ABSENT)))
            super().__setitem__(order_id, entry)

    def pop(self, order_id: str, *default: Any) -> Any:
        with self.lock:
            self.changes.append((order_id, self.get(order_id, _ABSENT)))
            return super().pop(order_id, *default)

    def frozen(self) -> _ReservationsAt:
        """The reservations as they are now, read-only, whatever changes follow (what a
        copy of the item holds: ``StockItem.__deepcopy__``)."""
        return _ReservationsAt(self, len(self.changes))

    def continues(self, view: _ReservationsAt) -> bool:
        """Whether a group may go on changing this journal from ``view``: nothing changed
        it since the view was taken, and it has not recorded more changes than it holds
        entries (beyond that a fresh copy costs less than the changes kept)."""
        return view.mark == len(self.changes) and \
            len(self.changes) <= max(JOURNAL_CHANGES, len(self))


JOURNAL_CHANGES = 1024
"""Changes a journal may record before a group starts a fresh one, however few entries
it holds (the copy then costs little)."""

_ABSENT = object()


class _ReservationsAt(Mapping[str, Any]):
    """A :class:`_Journal` as it was when it had ``mark`` changes (read-only), however
    many it records later."""

    def __init__(self, journal: _Journal, mark: int) -> None:
        self.journal, self.mark = journal, mark
        self._before: dict[str, Any] = {}
        """The entry before the first change after the mark, per order id changed."""
        self._seen = mark
        self._whole: dict[str, Any] | None = None

    def _overlay(self) -> dict[str, Any]:
        # Called under the journal's lock; extended with the changes made since the last
        # call (the journal goes on changing in later groups).
        changes = self.journal.changes
        for order_id, entry in changes[self._seen:]:
            self._before.setdefault(order_id, entry)  # the first change after the mark
        self._seen = len(changes)
        return self._before

    def copy(self) -> dict[str, Any]:
        """The entries as a plain dict of the caller's: the journal copied at C speed,
        the changes after the mark undone."""
        if self._whole is None:
            with self.journal.lock:
                whole = dict(self.journal)
                for order_id, entry in self._overlay().items():
                    if entry is _ABSENT:
                        whole.pop(order_id, None)
                    else:
                        whole[order_id] = entry
            self._whole = whole
        return dict(self._whole)

    def frozen(self) -> _ReservationsAt:
        return self

    def __getitem__(self, order_id: str) -> Any:
        if self._whole is not None:
            return self._whole[order_id]
        with self.journal.lock:
            entry = self._overlay().get(order_id, self)
            if entry is self:  # not changed since the mark: as it is now
                return dict.__getitem__(self.journal, order_id)
        if entry is _ABSENT:
            raise KeyError(order_id)
        return entry

    def __contains__(self, order_id: object) -> bool:
        try:
            self[order_id]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        self.copy()
        assert self._whole is not None
        return iter(self._whole)

    def items(self) -> Any:
        self.copy()
        assert self._whole is not None
        return self._whole.items()

    def values(self) -> Any:
        self.copy()
        assert self._whole is not None
        return self._whole.values()

    def __len__(self) -> int:
        if self._whole is not None:
            return len(self._whole)
        with self.journal.lock:
            before = self._overlay()
            return len(self.journal) + sum(
                (entry is not _ABSENT) - dict.__contains__(self.journal, order_id)
                for order_id, entry in before.items())


def _journal_of(item: StockItem) -> _Journal:
    """The journal of ``item``'s open reservations in this group, installed on the first
    call: the journal its state is a view of, when it may go on (:meth:`_Journal.continues`),
    else one copy of them, which is also the copy the item's first change would make
    (they are shared with the store's cache until then)."""
    journal = item.reservations
    if isinstance(journal, _Journal) and not item.shares_reservations:
        return journal
    view = item.reservations
    if isinstance(view, _ReservationsAt) and view.journal.continues(view):
        journal = view.journal
    else:
        journal = _Journal(view.copy())
    item.adopt_reservations(journal)
    return journal


def _state_now(item: StockItem) -> StockItem:
    """A read-only copy of ``item`` as it is now, for an answer: its own containers but
    the open reservations, which it reads through the item's journal (installed here on
    the first call), so the copy costs what the small parts of the state cost."""
    journal = _journal_of(item)
    clone = object.__new__(type(item))
    for name, value in vars(item).items():
        if name != "reservations":
            clone.__dict__[name] = value.copy() if isinstance(value, dict | list) else value
    clone.__dict__["reservations"] = journal.frozen()
    return clone


def _detached(state: StockItem) -> StockItem:
    """A :func:`_state_now` copy made a stream's own state again (its reservations a
    plain dict as they were when it was taken), to be saved and cached in place of the
    item it was taken from."""
    if isinstance(state.reservations, _ReservationsAt):
        state.adopt_reservations(state.reservations.copy())
    return state


def _settle(answered: asyncio.Future[None]) -> None:
    if not answered.done():
        answered.set_result(None)


class _LoopInbox:
    """The answers the committing thread has for one event loop's coroutines, handed
    over in one wake-up of the loop per group rather than one per command.

    A wake-up (``call_soon_threadsafe``) is a handle, a lock and a write to the loop's
    wake-up descriptor on the committing thread (a system call, during which the loop
    may take the interpreter lock and run), and a callback on the loop. So a group's
    answers are all posted first (:meth:`post`), and the loop woken once after
    (:meth:`wake_up`, called by the group commit once per group)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._waiting: list[asyncio.Future[None]] = []

    def post(self, answered: asyncio.Future[None]) -> Callable[[], None] | None:
        """Leave ``answered`` to be settled on its loop (from any thread); the wake-up
        to call once the caller has posted what it has, or None when one is already
        asked for (the answers waiting before this one are not delivered yet)."""
        with self._lock:
            self._waiting.append(answered)
            first = len(self._waiting) == 1
        return self.wake_up if first else None

    def wake_up(self) -> None:
        """Have the loop settle every answer posted so far. A closed loop has nobody
        awaiting them: they are dropped, and the committing thread goes on (raising here
        would stop it before it led the commands queued after its group)."""
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed
            with self._lock:
                self._waiting.clear()

    def _deliver(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for answered in waiting:
            _settle(answered)


JOURNAL_FROM = 1024
"""Open reservations from which a stream's state is held in a journal in every group,
even for one command. Below, the copy on change costs less than reading through views:
a dict of 1,000 entries copies in ~10–20 µs, about what a group's views and the
journal's lock cost a command (a stream of 64–120 open reservations was ~10 % slower
a command on journals than on copies, in process, 16 threads)."""


def _run_alone(commands: StockCommands, command: _Command) -> None:
    try:
        command.result = commands._execute_alone(command.sku, command.location,
                                                 command.decide, expected=command.expected)
    except Exception as error:
        command.error = error
    command.done = True


def _base_version(item: StockItem) -> int:
    """The stream version ``item`` was loaded at, before its pending events (0: none)."""
    pending = item.pending_events
    return pending[0].originator_version - 1 if pending else item.version


def _check_expected(expected: ExpectedVersion | None, item: StockItem) -> None:
    """Raise ``PreconditionFailed`` when the loaded version is not the expected one."""
    version = _base_version(item)
    if expected is not None and not expected.holds(version):
        raise PreconditionFailed(expected=str(expected), version=version)
