"""The ports: every contract the application services need from the outside world.

One module states them all, as ``eventsourcing.persistence`` does for its recorders.
Each adapter (``adapters/sqlite``, ``adapters/cosmos``, the embedded broker, Service Bus)
implements one or more of them, and proves it by passing the contract suite for that
port in ``tests/contract``. The exceptions say *what kind* of failure happened, never
which SDK raised it, so services and HTTP functions can act on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from eventsourcing.domain import Aggregate

from domain.stock_item import StockItem

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


class StockItemStore(ABC):
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
        state raises ``ConcurrencyConflict`` (and the store forgets the stale copy).
        """

    @abstractmethod
    def save(self, item: StockItem) -> list[StockItem.Event]:
        """Append the item's pending events in one atomic write and return them.

        Raises ``ConcurrencyConflict`` if the stream moved on, ``StoreUnavailable`` if the
        store cannot take the write. Either way nothing is written.
        """

    @abstractmethod
    def events(
        self, sku: str, location: str, *, after: int = 0, limit: int | None = None
    ) -> list[StockItem.Event]:
        """The stream's events with version > ``after``, oldest first."""

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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default holds none."""


@dataclass(frozen=True)
class OutboxRecord:
    """One committed event at its position in the store's commit order."""

    position: int
    event: StockItem.Event


class OutboxReader(ABC):
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


class MessagePublisher(ABC):
    """Publishes messages to a topic (the relay's and the dead-letter replay's port)."""

    @abstractmethod
    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Hand every message to the broker; returns only when all were accepted.

        Raises ``PublishFailed`` (or ``BrokerUnavailable``) otherwise; some may then have
        been accepted, so callers publish again and rely on duplicate detection.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default holds none."""


class SessionReceiver(ABC):
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


class DeadLetterReceiver(ABC):
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


class MessageBroker(MessagePublisher):
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


# ============================================================ processes (issue 15)
# Streams of processes that span stock streams (orders; transfers will follow) and of
# location groups. One block, appended: the rest of this module is being reorganised.

Streamed = TypeVar("Streamed", bound=Aggregate)


class AggregateStreams(ABC, Generic[Streamed]):
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


class ProcessStreams(ABC, Generic[Streamed]):
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
