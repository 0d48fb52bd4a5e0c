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
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, cast, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)

from application.ports import (
    AggregateStreams,
    ConcurrencyConflict,
    MultiStreamSave,
    ProcessStreams,
    StoreUnavailable,
    Streamed,
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
            self.app.save(aggregate, **kwargs)
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

    def close(self) -> None:
        self.app.close()
