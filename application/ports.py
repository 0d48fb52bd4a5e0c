"""The ports: every contract the application services need from the outside world.

One module states them all, as ``eventsourcing.persistence`` does for its recorders.
Each adapter (``adapters/sqlite``, ``adapters/cosmos``, the embedded broker, Service Bus,
telemetry) implements one or more of them, and proves it by passing the contract suite
for that port in ``tests/contract``. The exceptions say *what kind* of failure happened,
never which SDK raised it, so services and HTTP functions can act on them.

Every port is a ``typing.Protocol``, in one style, because the ports come in two shapes
and only a Protocol states both: objects (stores, brokers, readers) and single functions
(:class:`History`, :class:`Overdue`, :class:`EventDecoder`, :class:`EventHandler`),
which a bound method or a closure satisfies as it is. A test double needs no base class.
An adapter class still names the ports it implements as its bases: it then inherits
the defaults written here (``close``, ``complete_all``, the context manager, ``sample``)
and cannot be constructed while an ``@abstractmethod`` is missing, as with an ABC. The
two ports a host checks at run time (:class:`OutboxReader`, :class:`AvailabilityViews`)
are ``runtime_checkable``.

Callbacks a service only *notifies* (the relay's published-batch observers, progress
callbacks) are not ports: they are plain ``Callable`` parameters where they are used.

The records a port exchanges live here, or in ``application.views`` (read-model
shapes), or beside the service that gives them meaning (holds, count sessions, the
movement ledger); those last are imported for type checking only, so this module
imports nothing of the application but ``views`` at run time and any module may
import it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Protocol,
    TypeAlias,
    TypeVar,
    runtime_checkable,
)

from eventsourcing.domain import Aggregate

from application.views import (
    Availability,
    AvailabilityChange,
    OpsStatus,
    RelayStatus,
    ViewRow,
)
from domain.stock_item import StockItem

if TYPE_CHECKING:
    from application.cadence import LedgerEntry, StockKey
    from application.holds import HeldCount, HeldStatus, Hold
    from application.reconciliation import SessionSummary
    from contracts.processes import ProcessEvent

# --------------------------------------------------------------------- failures


class StoreError(Exception):
    """Base of the failures a store reports."""


class ConcurrencyConflict(StoreError):
    """Another writer appended to the stream first; re-read and decide again."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or is out of space or locked.

    Nothing was written, unless ``maybe_recorded``: a write whose answer was lost (a
    timeout after sending) may have committed, so only a repeat that is idempotent (by
    order id, count id or idempotency key) is safe. Callers may retry later (HTTP answers
    503 with ``Retry-After``).
    """

    def __init__(self, message: str, *, maybe_recorded: bool = False) -> None:
        super().__init__(message)
        self.maybe_recorded = maybe_recorded


class MultiStreamSave(StoreError):
    """A save touched more than one stream; refused because only one partition is atomic."""


# ------------------------------------------------------------------- event store


@dataclass(frozen=True)
class Recalled:
    """A memo found in a stream: its value and the version of the event that wrote it."""

    value: str
    version: int


class StockItemStore(Protocol):
    """Streams of ``StockItem`` events, one per SKU-location.

    ``save`` appends the item's pending events atomically and only if nobody appended
    since the item was read (optimistic concurrency on the stream version); the events
    are then the outbox, so nothing else needs to be written in the same transaction.
    """

    @abstractmethod
    def get(self, sku: str, location: str, *, fresh: bool = True) -> StockItem | None:
        """The state of the stream, or None if it has no events.

        With ``fresh`` (the default) the state includes every committed event. Without
        it the store may answer from its cache without a read, possibly behind another
        process's writes: good enough to decide a command, because saving from a stale
        state raises ``ConcurrencyConflict`` (and the store no longer answers from the
        stale copy without reading what followed it).
        """

    @abstractmethod
    def save(self, item: StockItem) -> list[StockItem.Event]:
        """Append the item's pending events in one atomic write and return them.

        Raises ``ConcurrencyConflict`` if the stream moved on, ``StoreUnavailable`` if the
        store cannot take the write. Either way nothing is written.
        """

    def fits_one_save(self, item: StockItem) -> bool:
        """Whether ``save`` can write the item's pending events (and what it writes with
        them, such as memos) in one atomic write. A store whose atomic write is bounded
        (Cosmos DB: 100 operations a transactional batch) says no beyond its bound, and
        its ``save`` would refuse; this default has no bound."""
        return True

    def save_many(self, items: Sequence[StockItem]) -> list[list[StockItem.Event]]:
        """Append the pending events of several streams (one item per stream) in one
        atomic write, each stream's only if nobody appended since it was read, and return
        each item's events; the group commit of concurrent commands uses it.

        All or nothing: ``ConcurrencyConflict`` if any stream moved on,
        ``StoreUnavailable`` if the store cannot take the write; either way nothing is
        written. A store that writes only one stream atomically (Cosmos DB: one logical
        partition per transactional batch) raises ``MultiStreamSave`` for more than one
        item, before writing anything; this default is that store's answer."""
        if len(items) == 1:
            return [self.save(items[0])]
        raise MultiStreamSave("this store writes one stream atomically, not several")

    @abstractmethod
    def events(
        self, sku: str, location: str, *, after: int = 0, limit: int | None = None
    ) -> list[StockItem.Event]:
        """The stream's events with version > ``after``, oldest first."""

    def history(self, sku: str, location: str, after: int, upto: int) -> list[StockItem.Event]:
        """The events with ``after < version <= upto``, oldest first: what a projection
        reads to fill a gap (a :class:`History`)."""
        return self.events(sku, location, after=after, limit=upto - after)

    @abstractmethod
    def events_since(
        self, sku: str, location: str, moment: datetime, *, version: int
    ) -> list[StockItem.Event]:
        """The events up to ``version`` recorded after ``moment``, newest first.

        Read from the end of the stream backwards, so a count on a long stream costs the
        events since it was taken, not the whole history.
        """

    @abstractmethod
    def recall(self, sku: str, location: str, memo: str) -> Recalled | None:
        """What the stream recorded under ``memo`` (:meth:`StockItem.Event.memos`) within
        the idempotency window, and at which version; None if nothing (or only older).

        Every save writes its events' memos in the same atomic write as the events, so a
        memo at a version the caller's state has reached is always found.
        """

    def recall_many(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Recalled]:
        """:meth:`recall` of each ``(sku, location, memo)``, those found by key: the group
        commit asks this once for the memos its commands will ask (a new reservation
        asks whether its order was closed), instead of one read per command. This
        default asks one at a time; a store that can read them together does so."""
        found: dict[tuple[str, str, str], Recalled] = {}
        for key in wanted:
            recalled = self.recall(*key)
            if recalled is not None:
                found[key] = recalled
        return found

    @abstractmethod
    def stream_keys(self) -> Iterator[tuple[str, str]]:
        """Every SKU-location with a stream, as ``(sku, location)``, in no particular order.

        Read from the store itself (each stream's first event), so an operator's check
        covers every stream, not only those a projection has seen. Raises
        ``StoreUnavailable``."""

    def close(self) -> None:
        """Release connections; the default holds none."""
        return None


Publishable: TypeAlias = "StockItem.Event | ProcessEvent"
"""What a relay publishes: a stock event, or a process's (an order's) with its id."""


@dataclass(frozen=True)
class OutboxRecord:
    """One committed event at its position in the store's commit order."""

    position: int
    event: StockItem.Event


@dataclass(frozen=True)
class ProcessOutboxRecord:
    """One committed process event (with its process's id) at its position in the
    process store's commit order."""

    position: int
    event: ProcessEvent


@runtime_checkable
class ProcessOutboxReader(Protocol):
    """Reads committed process events in commit order (as :class:`OutboxReader`)."""

    @abstractmethod
    def read_after(self, position: int, limit: int) -> Sequence[ProcessOutboxRecord]:
        """Up to ``limit`` records with position > ``position``, in commit order."""

    @abstractmethod
    def max_position(self) -> int:
        """The position of the last committed event (0 for an empty store)."""


@runtime_checkable
class OutboxReader(Protocol):
    """Reads committed events in commit order, for the relay of a store that has one.

    Positions rise in commit order without interleaving (gaps allowed), so a reader that
    remembers the last position it handled never skips a late commit.
    """

    @abstractmethod
    def read_after(self, position: int, limit: int) -> Sequence[OutboxRecord]:
        """Up to ``limit`` records with position > ``position``, in commit order."""

    @abstractmethod
    def max_position(self) -> int:
        """The position of the last committed event (0 for an empty store)."""


# ------------------------------------------------------------------------ clock


class Clock(Protocol):
    """Where services get "now" from, so expiry and counts are testable."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


# -------------------------------------------------------------------- messaging


class PublishFailed(Exception):
    """The broker did not accept every message; the caller must publish them again."""


class MessageRejected(PublishFailed):
    """The broker refused a message as invalid (e.g. no session id for a session
    subscription, an id over 128 characters); nothing of that publish call was accepted,
    and publishing the same message again fails again."""


class BrokerUnavailable(Exception):
    """The broker cannot be reached; nothing was received or settled."""


class LockLost(Exception):
    """The message or session lock expired or was taken away; the settlement did not happen."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A message as a publisher hands it to the broker (Service Bus's ``ServiceBusMessage``).

    ``message_id`` is deterministic (the event id) so the topic's duplicate detection
    drops a re-publication; ``session_id`` is the stream, so order holds per SKU-location.
    """

    message_id: str
    session_id: str
    subject: str
    body: bytes
    content_type: str = "application/cloudevents+json"
    application_properties: dict[str, str | int] = field(default_factory=dict)
    scheduled_enqueue_time: datetime | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """A message as a receiver gets it under a peek-lock."""

    message_id: str
    session_id: str
    subject: str
    body: bytes
    content_type: str
    application_properties: dict[str, str | int]
    delivery_count: int
    sequence_number: int
    enqueued_at: datetime
    lock_token: str
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


@dataclass(frozen=True)
class SubscriptionCounts:
    """Point-in-time message counts of one subscription, for ops status and alerts."""

    active: int
    dead_lettered: int
    scheduled: int = 0
    oldest_active_enqueued_at: datetime | None = None


class MessagePublisher(Protocol):
    """Publishes messages to a topic (the relay's and the dead-letter replay's port)."""

    @abstractmethod
    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Hand every message to the broker; returns only when all were accepted.

        Raises ``PublishFailed`` (or ``BrokerUnavailable``) otherwise; some may then have
        been accepted, so callers publish again and rely on duplicate detection.
        """

    def close(self) -> None:
        """Release connections; the default holds none."""
        return None


class SessionReceiver(Protocol):
    """Holds one session of a subscription exclusively until closed (or its lock expires).

    Messages of the session arrive in FIFO order; an abandoned message is the next one
    delivered again, with a higher delivery count.
    """

    session_id: str

    @abstractmethod
    def receive(self, max_messages: int = 1, max_wait: float = 0.0) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages of this session, waiting up to ``max_wait`` s."""

    @abstractmethod
    def complete(self, message: ReceivedMessage) -> None:
        """Remove a handled message. Raises ``LockLost`` if the lock expired."""

    def complete_all(self, messages: Sequence[ReceivedMessage]) -> None:
        """Complete several handled messages; an adapter may do it in one round trip.

        Raises ``LockLost`` (after completing the others) if any lock expired.
        """
        lost = []
        for message in messages:
            try:
                self.complete(message)
            except LockLost:
                lost.append(message.message_id)
        if lost:
            raise LockLost(f"locks lost on {', '.join(lost)}")

    @abstractmethod
    def abandon(self, message: ReceivedMessage) -> None:
        """Give a message back for redelivery (dead-lettered once over the maximum)."""

    @abstractmethod
    def dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        """Move a message to the subscription's dead-letter queue with a reason."""

    @abstractmethod
    def close(self) -> None:
        """Release the session so another receiver may take it."""

    def __enter__(self) -> SessionReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeadLetterReceiver(Protocol):
    """Reads a subscription's dead-letter queue (not sessionful, as on Service Bus)."""

    @abstractmethod
    def receive(self, max_messages: int = 1, max_wait: float = 0.0) -> list[ReceivedMessage]:
        """Up to ``max_messages`` dead-lettered messages under a peek-lock."""

    @abstractmethod
    def complete(self, message: ReceivedMessage) -> None:
        """Remove a dead-lettered message (after it was replayed)."""

    @abstractmethod
    def close(self) -> None:
        """Release the receiver."""

    def __enter__(self) -> DeadLetterReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MessageBroker(MessagePublisher, Protocol):
    """A topic with session subscriptions: the embedded broker and Service Bus both are one.

    Topology (subscriptions, their filters, max delivery count, lock duration) is set up
    by each adapter's own administration (Bicep on Azure), not through this port.
    """

    @abstractmethod
    def accept_next_session(
        self, topic: str, subscription: str, max_wait: float = 0.0
    ) -> SessionReceiver | None:
        """Lock the next session that has available messages, or None if none within
        ``max_wait`` seconds. A session locked by another receiver is never handed out."""

    def accept_next_sessions(
        self, topic: str, subscription: str, max_sessions: int, max_messages: int,
        max_wait: float = 0.0,
    ) -> list[tuple[SessionReceiver, list[ReceivedMessage]]]:
        """Lock up to ``max_sessions`` sessions that have available messages, each with up
        to ``max_messages`` of its messages (in session order, each delivery counted); an
        empty list if none within ``max_wait`` seconds. As :meth:`accept_next_session`, a
        session locked by another receiver is never handed out.

        This default takes them one at a time (on Service Bus each session is a link of
        its own, so there is nothing to gain); an adapter may lock them all in one round
        trip (the embedded broker does, in one transaction).
        """
        taken: list[tuple[SessionReceiver, list[ReceivedMessage]]] = []
        wait = max_wait
        while len(taken) < max_sessions:
            receiver = self.accept_next_session(topic, subscription, wait)
            if receiver is None:
                break
            taken.append((receiver, receiver.receive(max_messages, 0.0)))
            wait = 0.0
        return taken

    def settle_sessions(
        self, handled: Sequence[tuple[SessionReceiver, Sequence[ReceivedMessage]]]
    ) -> int:
        """Complete each receiver's handled messages, then release every one of those
        sessions (what each holds unsettled is given back, as :meth:`SessionReceiver.close`
        does); returns how many were completed. A message whose lock was lost is not
        completed (it is redelivered, which idempotent handlers absorb) and raises
        nothing; every receiver is closed whatever happens.

        This default settles receiver by receiver; an adapter may do it all in one round
        trip (the embedded broker does, in one transaction).
        """
        completed = 0
        for receiver, messages in handled:
            with receiver:
                for message in messages:
                    try:
                        receiver.complete(message)
                        completed += 1
                    except LockLost:
                        pass  # it comes back, and the handler absorbs it
        return completed

    def settle_and_accept_next_sessions(
        self, handled: Sequence[tuple[SessionReceiver, Sequence[ReceivedMessage]]],
        topic: str, subscription: str, max_sessions: int, max_messages: int,
    ) -> tuple[int, list[tuple[SessionReceiver, list[ReceivedMessage]]]]:
        """:meth:`settle_sessions` of ``handled``, then :meth:`accept_next_sessions` of
        ``topic``/``subscription`` without waiting: how many were completed, and what was
        taken. A consumer that visits again at once needs the two together; the sessions
        just released may be taken again, in order.

        This default makes the two calls; an adapter may make them one round trip (the
        embedded broker does, in one transaction: a visit then costs two broker writes,
        not three). If the settlement fails, nothing is settled or taken.
        """
        completed = self.settle_sessions(handled)
        return completed, self.accept_next_sessions(topic, subscription, max_sessions,
                                                    max_messages)

    @abstractmethod
    def accept_session(self, topic: str, subscription: str, session_id: str) -> SessionReceiver:
        """Lock a named session; raises ``LockLost`` if another receiver holds it."""

    @abstractmethod
    def dead_letter_receiver(self, topic: str, subscription: str) -> DeadLetterReceiver:
        """A receiver of the subscription's dead-letter queue."""

    @abstractmethod
    def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        """Active, dead-lettered and scheduled message counts of one subscription."""

    @abstractmethod
    def subscriptions(self, topic: str) -> list[str]:
        """The names of the topic's subscriptions."""


# ------------------------------------------------------------------------ relay


class Checkpoints(Protocol):
    """Where a relay remembers the last position it published (monotonic)."""

    @abstractmethod
    def position(self, name: str) -> int:
        """The last position recorded for ``name`` (0 if none)."""

    @abstractmethod
    def advance(self, name: str, position: int) -> None:
        """Record ``position`` for ``name``; a position not beyond the recorded one is ignored."""


class RelayPosition(Protocol):
    """How far a relay that is handed batches (the change feed) has published, kept where
    a metrics timer on another instance can compare it with the store."""

    @abstractmethod
    def advance(self, documents: Sequence[dict[str, Any]]) -> None:
        """These documents are published: move the position past them (never back)."""

    @abstractmethod
    def status(self) -> RelayStatus:
        """The events committed beyond the position: how many, and the oldest one's age."""


class EventDecoder(Protocol):
    """Turns a stored document of a store without a commit order (a Cosmos DB change-feed
    document) into its event; None for a document that is not an event."""

    def __call__(self, document: dict[str, Any], /) -> Publishable | None: ...


# ---------------------------------------------------------------- read models


class AvailabilityReader(Protocol):
    """Reads the availability projection."""

    @abstractmethod
    def for_sku(self, sku: str) -> Availability:
        """Totals and per-location rows of ``sku``; a SKU never seen has no rows and zeros."""


@runtime_checkable
class AvailabilityViews(AvailabilityReader, Protocol):
    """Storage of the availability view (SQLite embedded, Cosmos DB in Azure)."""

    @abstractmethod
    def version_of(self, sku: str, location: str) -> int:
        """The stream version the SKU-location's row reflects (0 if none)."""

    @abstractmethod
    def apply(self, change: AvailabilityChange) -> bool:
        """Write the change if the row is exactly at ``change.version - 1``, atomically
        with the version. Returns False (and writes nothing) otherwise."""

    @abstractmethod
    def overdue_reservations(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """SKU-locations holding a reservation whose expiry is at or before ``now``."""

    @abstractmethod
    def rows(self, sku: str | None = None) -> Iterable[ViewRow]:
        """Every row (of one SKU), for reconciliation."""

    @abstractmethod
    def replace(self, row: ViewRow, expiries: dict[str, datetime]) -> None:
        """Overwrite a row and its reservations' expiries (repair after reconciliation)."""

    @abstractmethod
    def events_applied(self) -> int:
        """How many events the view reflects (the sum of the rows' versions)."""

    def last_lag_seconds(self) -> float | None:
        """Commit-to-view lag of the last event applied, if this store keeps it."""
        return None

    def batch(self) -> AbstractContextManager[object]:
        """A scope whose :meth:`apply` calls (on this thread) commit together when it
        ends: one write for a consumer's whole batch. Each apply stays atomic on its own
        (one that raises leaves nothing); if the scope's commit fails, none of them is
        recorded and the error is raised, so the messages are not settled. Default: no
        batching, each apply is its own write."""
        return nullcontext()

    def close(self) -> None:
        """Release connections."""
        return None


class History(Protocol):
    """Reads a stream's events with ``after < version ≤ upto``, oldest first: what a
    projection catches up from when an event arrives beyond the next version."""

    def __call__(
        self, sku: str, location: str, after: int, upto: int, /
    ) -> list[StockItem.Event]: ...


class Overdue(Protocol):
    """Up to ``limit`` SKU-locations holding a reservation whose expiry is at or before
    ``now`` (the availability view's expiry index)."""

    def __call__(self, now: datetime, limit: int, /) -> list[tuple[str, str]]: ...


class EventHandler(Protocol):
    """Applies one validated CloudEvent document (a projection's ``handle``); what it
    returns is the outcome ("applied", "duplicate", ...)."""

    def __call__(self, document: dict[str, Any], /) -> object: ...


class OpsStatusReader(Protocol):
    """Assembles the operator's status page from the outbox, broker and projections."""

    @abstractmethod
    def status(self) -> OpsStatus:
        """The current status; never raises for a component that is merely idle."""

    def sample(self, metrics: PipelineMetrics) -> None:
        """Record the sampled figures (outbox, each subscription's counts) as metrics."""
        status = self.status()
        if status.outbox.depth is not None:  # an unmeasured outbox records nothing
            metrics.record_outbox(status.outbox.depth, status.outbox.oldest_age_seconds)
        for subscription in status.subscriptions:
            metrics.record_backlog(subscription.name, subscription.active)
            metrics.record_dead_letter_depth(subscription.name, subscription.dead_lettered)


class DeadLetterReplayer(Protocol):
    """Replays one subscription's dead letters to that subscription only."""

    @abstractmethod
    def replay(self, subscription: str, max_messages: int | None = None) -> int:
        """Re-publish up to ``max_messages`` dead-lettered messages; returns how many.

        Raises ``KeyError`` for an unknown subscription.
        """


# ---------------------------------------------------------------------- metrics


class PipelineMetrics(Protocol):
    """Where sampled pipeline figures are recorded (``adapters.telemetry.Telemetry``)."""

    def record_outbox(self, depth: int, oldest_age_seconds: float | None) -> None: ...

    def record_backlog(self, subscription: str, count: int) -> None: ...

    def record_dead_letter_depth(self, subscription: str, count: int) -> None: ...


class ProjectionMetrics(Protocol):
    """Where projection lag is recorded (``adapters.telemetry.Telemetry``)."""

    def record_projection_lag(self, name: str, seconds: float) -> None: ...


class DriftRecorder(Protocol):
    """Where drift metrics go (``adapters.telemetry.Telemetry`` is one)."""

    def record_drift(self, units: int, percent: float) -> None: ...


# --------------------------------------------------------------- reconciliation


class MovementLedger(Protocol):
    """The read side of the movement ledger, which is all the count schedule needs.

    The projection ``projections.movements`` feeds it (:class:`MovementLedgerStore`),
    per event and guarded by the stream version, on both hosts.
    """

    @abstractmethod
    def units_since(self, day: date) -> dict[StockKey, int]:
        """Units moved per SKU-location on ``day`` and after."""

    @abstractmethod
    def stock_items(self) -> dict[StockKey, datetime | None]:
        """Every SKU-location the ledger has seen, with the time of its last count."""

    @abstractmethod
    def forget_before(self, day: date) -> None:
        """Drop daily movements older than ``day`` (they no longer count)."""


class MovementLedgerStore(MovementLedger, Protocol):
    """Storage of the movement ledger (SQLite embedded, Cosmos DB in Azure): the read side
    the schedule needs, and the version-guarded write of its projection
    (``projections.movements``)."""

    @abstractmethod
    def version_of(self, sku: str, location: str) -> int:
        """The stream version the SKU-location's ledger reflects (0 if none)."""

    @abstractmethod
    def apply(self, entry: LedgerEntry) -> bool:
        """Add the entry if the SKU-location's ledger is exactly at ``entry.version - 1``,
        atomically with the version; False (and nothing written) otherwise."""

    def needs_rebuild(self) -> bool:
        """True when the ledger must be rebuilt from the event store once (see
        ``projections.movements``). A store only ever fed per event answers False."""
        return False

    def rebuilt(self) -> None:
        """Record that the rebuild finished (the next :meth:`needs_rebuild` is False)."""
        return None

    def batch(self) -> AbstractContextManager[object]:
        """A scope whose :meth:`apply` calls commit together, as
        :meth:`AvailabilityViews.batch`. Default: each apply is its own write."""
        return nullcontext()

    def close(self) -> None:
        """Release connections."""
        return None


class SessionHistory(Protocol):
    """The summaries of past count sessions, oldest first."""

    @abstractmethod
    def record(self, summary: SessionSummary) -> None:
        """Keep a session's summary (the same session id again replaces it)."""

    @abstractmethod
    def sessions(self, limit: int = 365) -> list[SessionSummary]:
        """The latest ``limit`` sessions, oldest first."""


class HoldStore(Protocol):
    """Durable store of held counts and adjustments (SQLite embedded, Cosmos DB on Azure).

    A hold is keyed by its ``hold_id``; holding the same id again is a no-op.
    """

    @abstractmethod
    def hold(self, held: Hold) -> bool:
        """Store a pending hold; False (and nothing written) if its id is already held."""

    @abstractmethod
    def get(self, hold_id: str) -> Hold | None:
        """The hold with this id, whatever its status."""

    @abstractmethod
    def find(self, sku: str, location: str, count_id: str) -> HeldCount | None:
        """The hold of one count, whatever its status."""

    @abstractmethod
    def matching(self, count_id: str | None = None, sku: str | None = None,
                 location: str | None = None,
                 status: HeldStatus | None = "pending") -> list[Hold]:
        """Holds matching every given filter, oldest first (a ``count_id``: counts only)."""

    @abstractmethod
    def resolve(self, held: Hold, expected: HeldStatus = "pending") -> bool:
        """Store ``held``'s status, ``resolved_at`` and ``applied_delta`` if the stored hold
        is still in status ``expected``; False (nothing written) if it is not, or if no such
        hold exists. Two approvers racing: one wins."""


# ============================================================ processes (issue 15)
# Streams of processes that span stock streams (orders; transfers will follow) and of
# location groups.

Streamed = TypeVar("Streamed", bound=Aggregate)


class AggregateStreams(Protocol, Generic[Streamed]):
    """Streams of one aggregate type, each found by its key (an order id, a group name).

    ``save`` appends the aggregate's pending events in one atomic write, only if nobody
    appended since it was read (``ConcurrencyConflict``); ``StoreUnavailable`` if the
    store cannot take it. Either way nothing is written.
    """

    @abstractmethod
    def get(self, key: str) -> Streamed | None:
        """The stream's current state (every committed event), or None if it has none."""

    @abstractmethod
    def save(self, aggregate: Streamed) -> None:
        """Append the pending events atomically."""


class ProcessStreams(Protocol, Generic[Streamed]):
    """Streams of processes, with an index of those a sweep must look at.

    Each save also sets, in the same atomic write, when the process wants looking at
    (``wake_at``: soon while work is under way, its expiry while it holds stock, None
    once it is at rest for good), so a process killed between two steps is always found.
    """

    @abstractmethod
    def get(self, key: str) -> Streamed | None:
        """The stream's current state (every committed event), or None if it has none."""

    @abstractmethod
    def save(self, aggregate: Streamed, *, wake_at: datetime | None) -> None:
        """Append the pending events and set the process's wake-up, atomically;
        ``ConcurrencyConflict`` / ``StoreUnavailable`` as ``AggregateStreams.save``."""

    @abstractmethod
    def due(self, now: datetime, limit: int) -> list[str]:
        """Keys of up to ``limit`` processes whose wake-up is at or before ``now``,
        the longest overdue first."""
