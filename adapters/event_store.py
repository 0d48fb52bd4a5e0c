"""The event-store port on the ``eventsourcing`` library, whatever its persistence module.

``EventSourcedStockItems`` is the one implementation of :class:`StockItemStore`; a
backend is chosen by the library's ``PERSISTENCE_MODULE`` setting (``eventsourcing.sqlite``
in ``adapters/sqlite``, our Cosmos DB module in ``adapters/cosmos``). The library's
exceptions are translated here into the port's, so no service ever sees a backend's.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import Environment, EnvType

from adapters.memos import (
    MEMOS,
    STREAM_MEMOS,
    MemoBatchRecorder,
    MemoRecorder,
    StreamMemo,
    StreamStartRecorder,
)
from application.ports import (
    ConcurrencyConflict,
    MultiStreamSave,
    Recalled,
    StockItemStore,
    StoreUnavailable,
)
from domain.identifiers import stream_uuid
from domain.stock_item import StockItem

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 100
"""A snapshot every 100 events bounds a cold read to one snapshot plus < 100 events
(longer for a state listing many open reservations: :func:`snapshot_interval`)."""


def snapshot_interval(item: StockItem) -> int:
    """Events between snapshots of ``item``: 100, or when a quarter of its open
    reservations is more, that quarter rounded down to a power of two (so the interval
    stays put while the reservations grow, and the versions it divides are far apart).

    A snapshot costs in proportion to the entries it lists, so with the interval growing
    with them a hot SKU's snapshots cost each command about the same however many
    checkouts hold stock; a cold read then replays at most that many events after
    decoding the snapshot, which costs about as much."""
    quarter = len(item.reservations) // 4
    return max(SNAPSHOT_INTERVAL, 1 << (quarter.bit_length() - 1)) if quarter else \
        SNAPSHOT_INTERVAL

IDEMPOTENCY_WINDOW = timedelta(days=7)
"""How long ids are recognised by default (``STOCKSTREAM_IDEMPOTENCY_WINDOW``)."""

TAIL_PAGES = (4, 16, 64, 256)
"""Events read per page when reading a stream backwards (``events_since``): small first,
because a count is usually recent (a few movements after it), then growing."""

_UNAVAILABLE = (OperationalError, InterfaceError, DatabaseError)


class StockstreamApplication(Application):  # type: ignore[type-arg]
    """The ``eventsourcing`` application behind the store: snapshots, one stream a save.

    The library's own aggregate cache stays off: the store caches (see below), because it
    must also cache on save and forget on conflict, which the library does not.
    """

    name = "Stockstream"
    is_snapshotting_enabled = True
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {StockItem: SNAPSHOT_INTERVAL}

    memo_window: timedelta = IDEMPOTENCY_WINDOW

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The library's settings exactly as the store was given them.

        ``eventsourcing`` would merge the process environment under them (and let
        ``STOCKSTREAM_<KEY>`` variables override them): here it is left out, so the
        environment is read in one place, ``application.settings``, and reaches a store
        only through the arguments its composition root passes.
        """
        _env: dict[str, str] = dict(type(self).env)
        if type(self).is_snapshotting_enabled or type(self).snapshotting_intervals:
            _env["IS_SNAPSHOTTING_ENABLED"] = "y"
        _env.update(env or {})
        return Environment(name, _env)

    def save_one(self, item: StockItem) -> None:
        """``Application.save`` for one known aggregate (:func:`collected`): record its
        events and their memos in one atomic write. No library subscriber is registered,
        so there is nothing to notify; snapshots are the store's (:class:`SnapshotWriter`),
        taken after the write, never inside it."""
        processing_event = collected(item)
        processing_event.saved_kwargs[MEMOS] = [
            StreamMemo(memo, value, e.originator_version, e.timestamp + self.memo_window)
            for e in cast(list[StockItem.Event], processing_event.events)
            for memo, value in e.memos()
        ]
        self._record(processing_event)

    def save_many(self, items: Sequence[StockItem]) -> None:
        """Record the pending events of several streams in one atomic write (events and
        memos of every stream in one transaction). Only a recorder that declares
        ``atomic_across_streams`` (SQLite: one transaction is one file) takes it; on any
        other this raises ``MultiStreamSave`` before anything is written."""
        if not getattr(self.recorder, "atomic_across_streams", False):
            raise MultiStreamSave("this store writes one stream atomically, not several")
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        rows: list[tuple[UUID, StreamMemo]] = []
        for item in items:
            events = cast(list[StockItem.Event], item.collect_events())
            processing_event.events.extend(events)
            processing_event.aggregates[item.id] = item
            rows.extend((item.id, StreamMemo(memo, value, e.originator_version,
                                             e.timestamp + self.memo_window))
                        for e in events for memo, value in e.memos())
        processing_event.saved_kwargs[STREAM_MEMOS] = rows
        super()._record(processing_event)

    def _record(self, processing_event: ProcessingEvent[Any]) -> Any:
        # One stream per save: only one partition is atomic on Cosmos DB, so SQLite refuses
        # too and the two back ends keep one contract (``save_many`` is the deliberate
        # exception, for stores that say they can).
        if len({e.originator_id for e in processing_event.events}) > 1:
            raise MultiStreamSave("a save may append to one stream only")
        return super()._record(processing_event)


class SnapshotWriter:
    """Writes a stream's snapshot after its events are durable, in a thread of its own,
    so no group commit waits for one.

    A snapshot was encoded and written inside the group's save, by the leader, while
    every command queued behind it waited: on a hot SKU listing thousands of open
    reservations that is tens of milliseconds a time (5–10 % of a hot command's CPU, all
    of it on the critical path). Here the store hands over the copy it caches, which no
    one changes again (``EventSourcedStockItems._remember``), once the save returned:

    - a snapshot is only ever of durable state (taken from a committed version);
    - a missing or late one only costs a longer replay: the events are the truth, and a
      read takes the newest snapshot there is, then the events after it. So a crash
      between the commit and the snapshot loses nothing (``tests/faults``), and a
      snapshot that fails is logged and dropped;
    - while one is being written, further requests for the same stream keep only the
      newest copy: a busy hot stream is snapshotted at most once per write, never
      queued behind its own older states.

    The thread starts with the first snapshot due and stops at :meth:`close`, which
    writes what is still pending first (best-effort: a daemon thread never holds a
    process's exit)."""

    def __init__(self, write: Callable[[StockItem], None]) -> None:
        """``write``: encodes and stores one snapshot of the item given (the caller's
        ``app.snapshots.put``); any ``Exception`` it raises is logged and dropped."""
        self._write = write
        self._pending: dict[UUID, StockItem] = {}
        self._changed = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, item: StockItem) -> None:
        """Snapshot ``item`` soon: a copy at a committed version that nobody changes."""
        with self._changed:
            if self._closed:
                return
            waiting = self._pending.get(item.id)
            if waiting is None or waiting.version < item.version:
                self._pending[item.id] = item
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="snapshots",
                                                daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every snapshot requested so far is written (or dropped); False if
        ``timeout`` seconds passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._busy,
                                          timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending, then stop the thread (at most ``timeout`` seconds)."""
        with self._changed:
            self._closed = True
            thread = self._thread
            self._changed.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return  # closed, nothing left
                _, item = self._pending.popitem()
                self._busy = True
            try:
                self._write(item)
            except Exception:  # best-effort: the stream replays from its events
                log.warning("snapshot of %s at version %d skipped", item.stream,
                            item.version, exc_info=True)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()


def collected(aggregate: Aggregate, **saved_kwargs: Any) -> ProcessingEvent[Any]:
    """What ``Application.save(aggregate, **saved_kwargs)`` records, for one aggregate
    the caller knows to be one: its pending events (taken from it), the aggregate, the
    keyword arguments for the recorder.

    The library's ``save`` recognises what it was given with two ``isinstance`` checks
    against runtime protocols (~20 µs a save, a tenth of a command's time in a profile);
    every save of ours passes one known aggregate."""
    processing_event: ProcessingEvent[Any] = ProcessingEvent()
    processing_event.events.extend(aggregate.collect_events())
    processing_event.aggregates[aggregate.id] = aggregate
    processing_event.saved_kwargs.update(saved_kwargs)
    return processing_event


def _copy(item: StockItem) -> StockItem:
    """A copy of ``item`` to decide on or to cache (``StockItem.__deepcopy__``).

    Called directly rather than through ``copy.deepcopy``, whose memo bookkeeping (a
    dict, a dispatch lookup, a keep-alive list) costs ~2 µs of a ~4 µs copy, and the
    store copies an item twice per command; the item's copy holds no cycles to memo."""
    return item.__deepcopy__({})


class EventSourcedStockItems(StockItemStore):
    """``StockItem`` streams stored through an ``eventsourcing`` application.

    The store keeps its own LRU cache of aggregates, filled on every read and every
    successful save. A fresh read copies the cached state and reads only the events
    newer than it (the library's "fast-forward"); a read for a decision (``fresh=False``)
    skips even that, because optimistic concurrency makes a stale decision safe: its save
    conflicts, the stale copy is dropped, and the command service decides again.
    """

    CACHE_SIZE = 10_000

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        memo_window: timedelta = IDEMPOTENCY_WINDOW,
    ) -> None:
        """``memo_window``: how long idempotency keys, closed orders and count ids are
        recognised (``STOCKSTREAM_IDEMPOTENCY_WINDOW``)."""
        try:
            self.app = StockstreamApplication(env=dict(env or {}))
        except (*_UNAVAILABLE, OSError) as error:
            raise StoreUnavailable(f"event store cannot be opened: {error}") from error
        if not isinstance(self.app.recorder, MemoRecorder):
            raise TypeError(f"{type(self.app.recorder).__name__} keeps no memos: the "
                            "event store needs a recorder that does (adapters.memos)")
        self.memos: MemoRecorder = self.app.recorder
        self._batch_memos: MemoBatchRecorder | None = (
            self.app.recorder if isinstance(self.app.recorder, MemoBatchRecorder) else None)
        """The recorder again if it reads many memos at once, else None: asked once here,
        because a runtime protocol's ``isinstance`` costs ~11 µs, and every command's
        memo read came through it."""
        self.app.memo_window = memo_window
        self._cache: OrderedDict[UUID, StockItem] = OrderedDict()
        self._stale: set[UUID] = set()
        """Cached streams another writer moved on (a lost save): read what followed
        before deciding on them again. The cached state stays, so that read is only the
        events after it (one query on Cosmos DB), not the snapshot and its tail."""
        self._cache_lock = threading.Lock()
        self.snapshots: SnapshotWriter | None = (
            SnapshotWriter(self._write_snapshot) if self.app.snapshots is not None else None)
        """Writes snapshots after the saves that make them due (:meth:`_snapshot`)."""

    def get(self, sku: str, location: str, *, fresh: bool = True) -> StockItem | None:
        stream_id = stream_uuid(sku, location)
        with self._cache_lock:
            cached = self._cache.get(stream_id)
            if cached is not None:
                self._cache.move_to_end(stream_id)
                cached = _copy(cached)
                fresh = fresh or stream_id in self._stale
        try:
            if cached is None:
                item = cast(StockItem, self.app.repository.get(stream_id))
            elif fresh:
                item = cached
                for event in self.app.events.get(stream_id, gt=item.version):
                    cast(StockItem.Event, event).mutate(item)
            else:
                return cached
        except AggregateNotFoundError:
            return None
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error
        self._remember(item)
        return item

    def save(self, item: StockItem) -> list[StockItem.Event]:
        pending = cast(list[StockItem.Event], list(item.pending_events))
        try:
            self.app.save_one(item)
        except IntegrityError as error:
            self._mark_stale(item.id)
            raise ConcurrencyConflict(f"stream {item.stream} moved on") from error
        except _UNAVAILABLE as error:
            self._forget(item.id)
            # A backend marks a failure whose write may have landed (see StoreUnavailable).
            raise StoreUnavailable(
                str(error), maybe_recorded=bool(getattr(error, "maybe_recorded", False))
            ) from error
        self._snapshot(self._remember(item), len(pending))
        return pending

    def fits_one_save(self, item: StockItem) -> bool:
        """Within the recorder's ``max_operations_per_save`` (Cosmos DB's batch limit),
        counting each pending event and each memo it writes; no bound otherwise."""
        limit: int | None = getattr(self.app.recorder, "max_operations_per_save", None)
        if limit is None:
            return True
        events = cast(list[StockItem.Event], item.pending_events)
        return len(events) + sum(len(list(e.memos())) for e in events) <= limit

    def save_many(self, items: Sequence[StockItem]) -> list[list[StockItem.Event]]:
        if len(items) == 1:
            return [self.save(items[0])]
        pending = [cast(list[StockItem.Event], list(item.pending_events)) for item in items]
        try:
            self.app.save_many(items)
        except IntegrityError as error:
            for item in items:
                self._forget(item.id)
            raise ConcurrencyConflict("a stream of the group moved on") from error
        except _UNAVAILABLE as error:
            for item in items:
                self._forget(item.id)
            raise StoreUnavailable(
                str(error), maybe_recorded=bool(getattr(error, "maybe_recorded", False))
            ) from error
        for item, saved in zip(items, pending, strict=True):
            self._snapshot(self._remember(item), len(saved))
        return pending

    def events(
        self, sku: str, location: str, *, after: int = 0, limit: int | None = None
    ) -> list[StockItem.Event]:
        try:
            stored = self.app.events.get(
                stream_uuid(sku, location), gt=after or None, limit=limit
            )
            return cast(list[StockItem.Event], list(stored))
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error

    def events_since(
        self, sku: str, location: str, moment: datetime, *, version: int
    ) -> list[StockItem.Event]:
        stream_id = stream_uuid(sku, location)
        found: list[StockItem.Event] = []
        upper, pages = version, 0
        try:
            while upper > 0:
                size = TAIL_PAGES[min(pages, len(TAIL_PAGES) - 1)]
                pages += 1
                page = cast(list[StockItem.Event], list(self.app.events.get(
                    stream_id, lte=upper, desc=True, limit=size)))
                for event in page:
                    if event.timestamp <= moment:
                        return found
                    found.append(event)
                if len(page) < size:
                    return found
                upper = page[-1].originator_version - 1
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error
        return found

    def recall(self, sku: str, location: str, memo: str) -> Recalled | None:
        try:
            found = self.memos.select_memo(stream_uuid(sku, location), memo, datetime.now(UTC))
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error
        return None if found is None else Recalled(*found)

    def recall_many(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Recalled]:
        batch = self._batch_memos
        if batch is None:
            return super().recall_many(wanted)
        keys = {(stream_uuid(sku, location).hex, memo): (sku, location, memo)
                for sku, location, memo in wanted}
        try:
            found = batch.select_memos(list(keys), datetime.now(UTC))
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error
        return {keys[key]: Recalled(*value) for key, value in found.items()}

    def stream_keys(self) -> Iterator[tuple[str, str]]:
        recorder = self.app.recorder
        if not isinstance(recorder, StreamStartRecorder):
            raise TypeError(f"{type(recorder).__name__} cannot list its streams: the event "
                            "store needs a recorder that can (adapters.memos)")
        try:
            for stored in recorder.select_stream_starts(StockItem.Created.TOPIC):
                created = self.decode(stored)
                yield created.sku, created.location
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error

    def decode(self, stored: StoredEvent) -> StockItem.Event:
        """The domain event of a stored event (upcast to the current version)."""
        return cast(StockItem.Event, self.app.mapper.to_domain_event(stored))

    def flush_snapshots(self, timeout: float | None = None) -> bool:
        """Wait until the snapshots due so far are written (False: ``timeout`` first)."""
        return True if self.snapshots is None else self.snapshots.flush(timeout)

    def close(self) -> None:
        if self.snapshots is not None:
            self.snapshots.close()
        self.app.close()

    def _snapshot(self, saved: StockItem, count: int) -> None:
        """Have ``saved`` snapshotted if its save of ``count`` events crossed a multiple
        of its interval (:func:`snapshot_interval`).

        ``saved`` is the copy the cache keeps of a state just committed, which nothing
        changes again, so the writer's thread may encode it while the next group decides
        on a copy of its own. The library's own snapshotting would read the stream back
        (the last snapshot, then its events) to rebuild the state, and snapshot every
        100 events whatever the state's size."""
        if self.snapshots is None:
            return
        interval = snapshot_interval(saved)
        if saved.version // interval > (saved.version - count) // interval:
            self.snapshots.request(saved)

    def _write_snapshot(self, item: StockItem) -> None:
        assert self.app.snapshots is not None
        self.app.snapshots.put([StockItem.Snapshot.take(item)])

    def _remember(self, item: StockItem) -> StockItem:
        """Cache a copy of ``item`` (unless a newer state is cached) and return it: the
        copy is never changed (a read copies it again), so it can be snapshotted."""
        copy = _copy(item)
        with self._cache_lock:
            current = self._cache.get(item.id)
            if current is None or current.version <= copy.version:
                self._cache[item.id] = copy
                self._cache.move_to_end(item.id)
                self._stale.discard(item.id)
            while len(self._cache) > self.CACHE_SIZE:
                evicted, _ = self._cache.popitem(last=False)
                self._stale.discard(evicted)
        return copy

    def _forget(self, stream_id: UUID) -> None:
        with self._cache_lock:
            self._cache.pop(stream_id, None)
            self._stale.discard(stream_id)

    def _mark_stale(self, stream_id: UUID) -> None:
        with self._cache_lock:
            if stream_id in self._cache:
                self._stale.add(stream_id)
