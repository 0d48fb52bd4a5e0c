"""Order, transfer and location-group streams on the ``eventsourcing`` library.

These streams live in a store of their own, beside the stock event store and built the
same way (the same persistence modules, transcoding and pool settings): the stock store's
commit-ordered log is the outbox of *stock* events, which the relay and the projections
read as such, so other aggregate types do not go into it until the relay learns to
publish them (issue 15, point 7).

A process's saves carry its wake-up (``PROCESS_INDEX``), which the recorder writes in the
same transaction as the events; :class:`ProcessIndexRecorder` is what a persistence
module implements for it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, cast, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from eventsourcing.utils import Environment, EnvType, get_topic

from adapters.event_store import StockstreamApplication, collected
from application.ports import (
    AggregateStreams,
    ConcurrencyConflict,
    MultiStreamSave,
    ProcessStreams,
    StoreUnavailable,
    Streamed,
)
from contracts.processes import (
    PROCESS_WIRE_TYPES,
    ProcessEvent,
    is_published,
    kind_of_event,
)
from domain.location_group import LocationGroup, group_uuid
from domain.order import Order, order_uuid
from domain.transfer import KIND as TRANSFER_KIND
from domain.transfer import Transfer, transfer_uuid

log = logging.getLogger(__name__)

PROCESS_INDEX = "process_index"
"""The keyword argument of ``insert_events`` that carries a save's wake-up entries."""

_UNAVAILABLE = (OperationalError, InterfaceError, DatabaseError)


class WakeUp(NamedTuple):
    """When process ``key`` of ``kind`` wants looking at (None: never again)."""

    kind: str
    key: str
    wake_at: datetime | None


@runtime_checkable
class ProcessIndexRecorder(Protocol):
    """A recorder that keeps wake-ups (``insert_events(..., process_index=[...])``)."""

    def select_due(self, kind: str, now: datetime, limit: int) -> list[str]:
        """Keys of ``kind`` whose wake-up is at or before ``now``, earliest first."""
        ...


class ProcessesApplication(Application):  # type: ignore[type-arg]
    """The ``eventsourcing`` application behind the order and group streams.

    No snapshots: an order's stream is bounded by its lines (at most a few hundred
    events), a group's is short. One stream per save, as in the stock store, so the
    Cosmos DB back end (one partition per transactional batch) keeps the same contract.
    """

    name = "StockstreamProcesses"
    is_snapshotting_enabled = False
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {}

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The settings exactly as given, the process environment left out, as for the
        stock store (``StockstreamApplication.construct_env``, the one place that says
        why)."""
        return StockstreamApplication.construct_env(self, name, env)  # type: ignore[arg-type]

    def save_one(self, aggregate: Aggregate, **kwargs: Any) -> None:
        """``Application.save`` for one known aggregate (:func:`collected`): no snapshots
        to take, no subscriber to notify."""
        self._record(collected(aggregate, **kwargs))

    def _record(self, processing_event: ProcessingEvent[Any]) -> Any:
        if len({e.originator_id for e in processing_event.events}) > 1:
            raise MultiStreamSave("a save may append to one stream only")
        return super()._record(processing_event)


class _Streams(Generic[Streamed]):
    """Get and save of one aggregate type by key, errors in the port's terms."""

    def __init__(self, app: ProcessesApplication, id_of: Callable[[str], UUID]) -> None:
        self.app = app
        self.id_of = id_of

    def get(self, key: str) -> Streamed | None:
        try:
            return cast(Streamed, self.app.repository.get(self.id_of(key)))
        except AggregateNotFoundError:
            return None
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error

    def _save(self, aggregate: Streamed, **kwargs: Any) -> None:
        try:
            self.app.save_one(aggregate, **kwargs)
        except IntegrityError as error:
            raise ConcurrencyConflict(f"stream {aggregate.id} moved on") from error
        except _UNAVAILABLE as error:
            raise StoreUnavailable(
                str(error), maybe_recorded=bool(getattr(error, "maybe_recorded", False))
            ) from error


class EventSourcedGroups(_Streams[LocationGroup], AggregateStreams[LocationGroup]):
    """Location groups, one stream each (``location-group:{group}``)."""

    def __init__(self, app: ProcessesApplication) -> None:
        super().__init__(app, group_uuid)

    def save(self, aggregate: LocationGroup) -> None:
        self._save(aggregate)


class EventSourcedProcesses(_Streams[Streamed], ProcessStreams[Streamed]):
    """Processes of one kind, one stream each (``{kind}:{key}``), with their wake-ups
    indexed under the kind. A kind of process is one subclass naming its ``KIND``, how
    its key maps to a stream id and how a process names its key."""

    KIND: ClassVar[str]

    def __init__(self, app: ProcessesApplication, id_of: Callable[[str], UUID],
                 key_of: Callable[[Streamed], str]) -> None:
        super().__init__(app, id_of)
        if not isinstance(app.recorder, ProcessIndexRecorder):
            raise TypeError(f"{type(app.recorder).__name__} keeps no process index")
        self.index: ProcessIndexRecorder = app.recorder
        self.key_of = key_of

    def save(self, aggregate: Streamed, *, wake_at: datetime | None) -> None:
        self._save(aggregate, **{PROCESS_INDEX: [WakeUp(self.KIND, self.key_of(aggregate),
                                                        wake_at)]})

    def due(self, now: datetime, limit: int) -> list[str]:
        try:
            return self.index.select_due(self.KIND, now, limit)
        except _UNAVAILABLE as error:
            raise StoreUnavailable(str(error)) from error


class EventSourcedOrders(EventSourcedProcesses[Order]):
    """Orders, one stream each (``order:{order_id}``)."""

    KIND = "order"

    def __init__(self, app: ProcessesApplication) -> None:
        super().__init__(app, order_uuid, lambda order: order.order_id)


class EventSourcedTransfers(EventSourcedProcesses[Transfer]):
    """Transfers, one stream each (``transfer:{transfer_id}``)."""

    KIND = TRANSFER_KIND

    def __init__(self, app: ProcessesApplication) -> None:
        super().__init__(app, transfer_uuid, lambda transfer: transfer.transfer_id)


PUBLISHED_TOPICS = tuple(get_topic(w.domain_class) for w in PROCESS_WIRE_TYPES)
"""The stored topics of the process events the relay publishes (not location groups')."""

_KEY_CACHE_SIZE = 10_000


class ProcessStore:
    """The order, transfer and group streams of one store, and its closing."""

    def __init__(self, env: Mapping[str, str]) -> None:
        try:
            self.app = ProcessesApplication(env=dict(env))
        except (*_UNAVAILABLE, OSError) as error:
            raise StoreUnavailable(f"process store cannot be opened: {error}") from error
        self.orders = EventSourcedOrders(self.app)
        self.transfers = EventSourcedTransfers(self.app)
        self.groups = EventSourcedGroups(self.app)
        self._keys: OrderedDict[UUID, str] = OrderedDict()
        self._keys_lock = threading.Lock()

    def publishable(self, event: object) -> ProcessEvent | None:
        """``event`` with the id of its process, ready to publish (None: a kind that is
        not published, such as a location group's).

        Only a stream's ``Created`` names its process, so for a later event the id is
        read from the stream's first event once and remembered (a bounded cache).
        """
        if not is_published(event):
            return None
        kind = kind_of_event(event)
        stream = cast(UUID, getattr(event, "originator_id"))  # noqa: B009
        key = getattr(event, kind.id_field, None)
        with self._keys_lock:
            key = key or self._keys.get(stream)
        if key is None:
            try:
                first: Any = self.app.repository.get(stream, version=1)
            except _UNAVAILABLE as error:
                raise StoreUnavailable(str(error)) from error
            key = getattr(first, kind.id_field)
        with self._keys_lock:
            self._keys[stream] = str(key)
            if len(self._keys) > _KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        return ProcessEvent(kind, str(key), event)

    def close(self) -> None:
        self.app.close()
