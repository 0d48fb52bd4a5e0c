"""The outbox relay: publishes committed events to the topic, at least once, in order.

The event store is the outbox. The relay reads events committed after its checkpoint,
publishes them, and only then advances the checkpoint. A crash between the two
re-publishes the same messages with the same message ids, which the topic's duplicate
detection drops and consumers' version checks absorb: at least once on the wire,
exactly once in effect.

``to_message`` is the one mapping from an event to a broker message, used by
both relays: this poller (embedded, any store with a commit order) and the Cosmos DB
change-feed functions in Azure. A process's event (an order's, ``contracts.processes``)
goes out in its process's session, ``order:{order_id}``; the poller reads the process
store after a checkpoint of its own, Azure the ``processes`` container's change feed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from application.ports import (
    Checkpoints,
    Clock,
    EventDecoder,
    MessagePublisher,
    OutboxReader,
    OutgoingMessage,
    ProcessOutboxReader,
    Publishable,
    RelayPosition,
)
from application.views import RelayStatus
from contracts.cloudevents import (
    CONTENT_TYPE,
    WireType,
    to_cloudevent,
    wire_type,
    wire_versions,
)
from contracts.processes import ProcessEvent, process_cloudevent
from contracts.topology import ALL_SUBSCRIBERS, MAX_ID_LENGTH, TOPIC
from domain.stock_item import StockItem

log = logging.getLogger(__name__)

STATUS_READ_LIMIT = 1000
"""Process events the relay's status reads to count a backlog exactly (a status is asked
for every ten seconds by the metrics loop, and on every ``GET /api/ops/status``)."""


def broker_id(value: str) -> str:
    """``value`` if it fits a Service Bus id, else a stable digest-based stand-in.

    A stream name can reach 129 characters (two 64-character identifiers) and an event
    id 140; the stand-in keeps a readable prefix and a SHA-256 digest, so it is still
    deterministic (duplicate detection and sessions keep working) and unique in practice.
    """
    if len(value) <= MAX_ID_LENGTH:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:40]
    return f"{value[: MAX_ID_LENGTH - 42]}~{digest}"


def to_message(
    event: Publishable, replay_target: str = ALL_SUBSCRIBERS, wire: WireType | None = None
) -> OutgoingMessage:
    """The broker message of an event: CloudEvents body, session = stream, id = event id.

    ``wire`` picks a deprecated version published in parallel; its message id gets a
    ``:v<N>`` suffix, or duplicate detection would drop it as a copy of the current one.
    A process's event (an order's) goes out in its process's session
    (:func:`process_message`).
    """
    if isinstance(event, ProcessEvent):
        return process_message(event, replay_target)
    document = to_cloudevent(event, wire)
    # The document's id and subject are the event id and the stream: read back rather
    # than derived (and their identifiers checked) a second time.
    message_id: str = document["id"]
    if wire is not None and wire != wire_type(event):
        message_id = f"{message_id}:v{wire.version}"
    return OutgoingMessage(
        message_id=broker_id(message_id),
        session_id=broker_id(document["subject"]),
        subject=document["type"],
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type=CONTENT_TYPE,
        application_properties={
            "type": document["type"],
            "sku": event.sku,
            "location": event.location,
            "sequence": event.originator_version,
            "replayTarget": replay_target,
        },
    )


def process_message(event: ProcessEvent, replay_target: str = ALL_SUBSCRIBERS
                    ) -> OutgoingMessage:
    """The broker message of a process event: session ``{kind}:{id}``, message id
    ``{kind}:{id}:{version}``, and application properties ``process`` / ``processId`` in
    place of ``sku`` / ``location`` (``contracts.processes``)."""
    document = process_cloudevent(event)
    return OutgoingMessage(
        message_id=broker_id(document["id"]),
        session_id=broker_id(document["subject"]),
        subject=document["type"],
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type=CONTENT_TYPE,
        application_properties={
            "type": document["type"],
            "process": event.kind.name,
            "processId": event.key,
            "sequence": document["sequence"],
            "replayTarget": replay_target,
        },
    )


def to_messages(event: Publishable, *, with_deprecated: bool) -> list[OutgoingMessage]:
    """The current version's message and, during a deprecation period, the older ones'."""
    if isinstance(event, ProcessEvent):
        return [process_message(event)]
    versions = wire_versions(event) if with_deprecated else [wire_type(event)]
    return [to_message(event, wire=wire) for wire in versions]


PublishedObserver = Callable[[Sequence[StockItem.Event]], None]
"""Told about the stock events of every batch the relay published (metrics)."""


class Relay:
    """Publishes the outbox in commit order; safe to run as one instance per store.

    With ``processes`` it also publishes a store of process streams (orders), read after
    a checkpoint of its own (``PROCESSES_NAME``): each store has its own commit order, and
    a process event's session is its process's, so the two interleave freely.
    """

    NAME = "relay"
    PROCESSES_NAME = "relay-processes"

    def __init__(
        self,
        outbox: OutboxReader,
        publisher: MessagePublisher,
        checkpoints: Checkpoints,
        clock: Clock,
        *,
        topic: str = TOPIC,
        batch_size: int = 256,
        deprecated_versions_until: date | None = None,
        processes: ProcessOutboxReader | None = None,
        checkpoint_interval: float = 0.0,
        before_checkpoint: Callable[[], None] | None = None,
        deferred_checkpoints: bool = False,
    ) -> None:
        self.outbox = outbox
        self.processes = processes
        self.publisher = publisher
        self.checkpoints = checkpoints
        self.clock = clock
        self.topic = topic
        self.batch_size = batch_size
        self.deprecated_versions_until = deprecated_versions_until
        self.published_total = 0
        self.on_published: list[PublishedObserver] = []
        self._recent: deque[tuple[float, int]] = deque(maxlen=256)
        self._lock = threading.Lock()
        self.checkpoint_interval = checkpoint_interval
        self.before_checkpoint = before_checkpoint
        self.deferred_checkpoints = deferred_checkpoints and checkpoint_interval > 0
        """``pump`` never writes the checkpoint: the owner calls :meth:`checkpoint` every
        ``checkpoint_interval`` from a thread of its own (``local.pipeline``'s
        ``relay-checkpoint`` loop). The checkpoint is a write to the event store's file,
        which the command process holds for its group commits: written in the relay's
        thread it held up the next publish by 7 ms at the median and by 150–330 ms at the
        worst under load (docs/performance.md, *End-to-end lag*)."""
        self._checkpointing = threading.Lock()
        self._published: dict[str, int] = {}
        """The last position published per outbox, ahead of the stored checkpoint by at
        most ``checkpoint_interval`` (see ``_pump``)."""
        self._stored: dict[str, int] = {}
        self._checkpointed_at: dict[str, float] = {}

    def pump(self) -> int:
        """Publish one batch after the checkpoint, then checkpoint it; returns its size.

        Raises whatever the publisher raises (``PublishFailed``, ``BrokerUnavailable``)
        with the checkpoint untouched, so the batch is published again next time.
        """
        with self._lock:
            published = self._pump(self.outbox, self.NAME)
            if self.processes is not None:
                published += self._pump(self.processes, self.PROCESSES_NAME)
            if not published:
                return 0
            self.published_total += len(published)
            self._recent.append((time.monotonic(), len(published)))
        events = [e for e in published if isinstance(e, StockItem.Event)]
        for observe in self.on_published if events else ():
            try:
                observe(events)
            except Exception:
                log.exception("an observer of the relay failed")
        return len(published)

    def _pump(self, outbox: OutboxReader | ProcessOutboxReader, name: str
              ) -> list[Publishable]:
        """Publish the batch after what was published, then checkpoint.

        The checkpoint is written after every batch when ``checkpoint_interval`` is 0;
        otherwise at most once per interval while events keep coming, and as soon as the
        outbox is found empty. It never passes what was published (and made durable by
        ``before_checkpoint``): a crash republishes at most an interval's events, which
        duplicate detection drops, as it does the batch of a crash between publish and
        checkpoint. The checkpoint is a write to the event store's file, which the
        command process holds for its commits, so under load each one waited for the
        file longer than it took to write; with an interval, the stored checkpoint is
        read once, and this relay's position is kept in memory.
        """
        if self.checkpoint_interval <= 0 or name not in self._published:
            self._published[name] = self._stored[name] = self.checkpoints.position(name)
        after = self._published[name]
        records = outbox.read_after(after, self.batch_size)
        if not records:
            if after > self._stored[name]:
                self._checkpoint(name, after)
            return []
        messages = [m for r in records for m in self.messages(r.event)]
        self.publisher.publish(self.topic, messages)
        self._published[name] = records[-1].position
        if not self.deferred_checkpoints and time.monotonic() - self._checkpointed_at.get(
                name, -math.inf) >= self.checkpoint_interval:
            self._checkpoint(name, records[-1].position)
        return [r.event for r in records]

    def _checkpoint(self, name: str, position: int) -> None:
        if self.deferred_checkpoints:
            return  # the owner's thread writes it (``checkpoint``)
        self._write_checkpoint(name, position)

    def _write_checkpoint(self, name: str, position: int) -> None:
        if self.before_checkpoint is not None:
            self.before_checkpoint()
        self.checkpoints.advance(name, position)
        self._stored[name] = position
        self._checkpointed_at[name] = time.monotonic()

    def checkpoint(self) -> int:
        """Record what was published as the checkpoint, made durable first
        (``before_checkpoint``); returns how many outboxes' checkpoints it advanced.

        Safe beside a running ``pump`` in another thread: it reads each outbox's position
        only after its publish returned, then syncs, then writes, so the checkpoint never
        passes what is published and durable. With ``deferred_checkpoints`` this is the
        only writer of the checkpoint; otherwise ``pump`` writes it too.
        """
        advanced = 0
        with self._checkpointing:
            for name, position in list(self._published.items()):
                if position > self._stored.get(name, 0):
                    self._write_checkpoint(name, position)
                    advanced += 1
        return advanced

    def messages(self, event: Publishable) -> list[OutgoingMessage]:
        """What this relay publishes for ``event`` today (deprecated versions included
        until the end of their deprecation period)."""
        until = self.deprecated_versions_until
        return to_messages(
            event, with_deprecated=until is not None and self.clock.now().date() <= until
        )

    def drain(self) -> int:
        """Pump until the outbox is empty; returns how many were published."""
        total = 0
        while count := self.pump():
            total += count
        return total

    def status(self) -> RelayStatus:
        """Depth and age of the unpublished outbox, and the recent publish rate.

        With ``processes`` the outbox is both stores: an order's or a transfer's events
        stuck behind a failing publish are as much a backlog as stock events, so the
        depth counts both and the age is the older one's."""
        depth, oldest = self._stock_backlog()
        if self.processes is not None:
            process_depth, process_oldest = self._process_backlog(self.processes)
            depth += process_depth
            oldest = min(filter(None, (oldest, process_oldest)), default=None)
        age = None if oldest is None else max(
            (self.clock.now() - oldest).total_seconds(), 0.0)
        return RelayStatus(depth, age, self.published_total, self._rate())

    def _after(self, name: str) -> int:
        return max(self.checkpoints.position(name), self._published.get(name, 0))

    def _stock_backlog(self) -> tuple[int, datetime | None]:
        """Every stock event is published, so the depth is the distance to the last."""
        after = self._after(self.NAME)
        depth = max(self.outbox.max_position() - after, 0)
        oldest = self.outbox.read_after(after, 1) if depth else ()
        return depth, oldest[0].event.timestamp if oldest else None

    def _process_backlog(self, processes: ProcessOutboxReader
                         ) -> tuple[int, datetime | None]:
        """The process store also holds events that are never published (location
        groups), so its backlog is counted from what is read, up to
        :data:`STATUS_READ_LIMIT`; a longer one is the distance to its last event, an
        upper bound."""
        after = self._after(self.PROCESSES_NAME)
        unpublished = processes.read_after(after, STATUS_READ_LIMIT)
        depth = len(unpublished)
        if depth >= STATUS_READ_LIMIT:
            depth = max(processes.max_position() - after, depth)
        return depth, unpublished[0].event.event.timestamp if unpublished else None

    def _rate(self) -> float:
        now = time.monotonic()
        window = [(t, n) for t, n in self._recent if now - t <= 10.0]
        if not window:
            return 0.0
        return sum(n for _, n in window) / max(now - window[0][0], 1.0)


class ChangeFeedRelay:
    """The relay of a store without a commit order (Cosmos DB): it is handed batches.

    The Functions change-feed trigger delivers each batch of new event documents at least
    once; this publishes them and returns, or raises so the trigger's retry policy
    (infinite, exponential) redelivers the same batch. Nothing is checkpointed here: the
    trigger's lease is the checkpoint, and it only advances when this returns. The
    ``position`` (optional) is told what was published, for the outbox metrics; failing to
    record it is logged and does not fail the batch, which is published already.
    """

    def __init__(
        self,
        decode: EventDecoder,
        publisher: MessagePublisher,
        clock: Clock,
        *,
        topic: str = TOPIC,
        deprecated_versions_until: date | None = None,
        position: RelayPosition | None = None,
    ) -> None:
        self.decode = decode
        self.publisher = publisher
        self.clock = clock
        self.topic = topic
        self.deprecated_versions_until = deprecated_versions_until
        self.position = position

    def publish_documents(self, documents: Sequence[dict[str, Any]]) -> list[Publishable]:
        """Publish every event document of a change-feed batch, in feed order.

        Documents that are not events (``decode`` returns None) are skipped. Returns the
        published events (for lag metrics). Raises what the publisher raises.
        """
        events = [e for e in (self.decode(d) for d in documents) if e is not None]
        until = self.deprecated_versions_until
        with_deprecated = until is not None and self.clock.now().date() <= until
        messages = [m for e in events for m in to_messages(e, with_deprecated=with_deprecated)]
        if messages:
            self.publisher.publish(self.topic, messages)
        if self.position is not None and documents:
            try:
                self.position.advance(documents)
            except Exception:
                log.exception("could not record the relay's position; the next batch will")
        return events
