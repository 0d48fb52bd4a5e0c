"""Azure Cosmos DB for NoSQL as an ``eventsourcing`` persistence module.

Chosen with ``PERSISTENCE_MODULE=adapters.cosmos.persistence:CosmosFactory``; one module
for the backend, as the library's own ``eventsourcing.sqlite`` is.

Layout (containers are provisioned by Bicep; :meth:`CosmosFactory.create_containers_if_missing`
creates them for tests and local set-up only):

- ``events``, partition key ``/originator_id``: one immutable document per event,
  ``{id: str(version), originator_id, originator_version, topic, state: base64}``. Because
  ``id`` is unique within a logical partition, appending version N twice is a 409: that is
  the optimistic-concurrency check, with no read before the write. A save's events go in
  one transactional batch of ``create`` operations, atomic within the stream's partition.
  Beside the events, in the same partition and the same batch, the save's memos
  (``adapters.memos``): ``{id: "memo-{version}", originator_id, memo, memo_value,
  memo_version, expires_at, ttl}``, created like the events (so a memo commits exactly with
  its event), found by one single-partition query for the newest of its name, and expired
  by itself (per-item ``ttl``; the container has ``defaultTtl: -1``, which keeps events
  forever). Memo documents have no ``originator_version``, so event queries and the relay
  (``change_feed.stored_event_from_document``) pass them by.
- ``snapshots``, same shape and partition key, written with ``upsert`` (best-effort: a
  snapshot can always be rebuilt from the events).
- ``tracking``, partition key ``/id``: one document per upstream application name.

What Cosmos DB cannot do, and therefore what this module refuses:

- A save that spans two streams (``ProgrammingError``): a batch is atomic only within one
  logical partition.
- Notifications (``NotImplementedError``): there is no global commit order across
  partitions, so ``select_notifications``/``max_notification_id``/``subscribe`` cannot be
  offered honestly. The change feed of ``events`` is the outbox; the relay reads it.
- Process recorders (``NotImplementedError``): they need events and tracking in one
  transaction across partitions.

SDK failures are mapped onto the library's DB-API-style tree, so callers learn *what kind*
of failure happened: 409 → ``IntegrityError``; 400/413 → ``DataError``; every other HTTP
status (429, 503, 408, 404 of a missing container, 401/403) and transport failures →
``OperationalError``. ``adapters.event_store`` turns those into the port's exceptions.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlparse
from uuid import UUID

import requests
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, strtobool
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adapters.memos import MEMOS, StreamMemo
from adapters.sortable_time import to_text
from application.ports import StoreUnavailable

CONNECTION_POOL_SIZE = 64
"""Connections kept per endpoint by the process's client (see ``_pooled_transport``)."""

MAX_BATCH_OPERATIONS = 100
"""Cosmos DB's limit on the operations of one transactional batch."""

EVENTS_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    # The state is opaque base64 that no query filters on; indexing it only costs write RU.
    "excludedPaths": [{"path": "/state/?"}, {"path": '/"_etag"/?'}],
}

VIEWS_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    # Every open reservation's order id is a path under /expiries; no query reads them
    # (the sweep filters on next_expiry), so indexing them would only cost write RU.
    "excludedPaths": [{"path": "/expiries/*"}, {"path": '/"_etag"/?'}],
}

RECONCILIATION_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    # The movement ledger's per-day map is read whole, never filtered on.
    "excludedPaths": [{"path": "/days/*"}, {"path": '/"_etag"/?'}],
}

_NO_NOTIFICATIONS = (
    "Cosmos DB has no global commit order across partitions: read the events "
    "container's change feed (the outbox) instead of notifications"
)


# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CosmosSettings:
    """Where the store lives and how to reach it; read from the ``eventsourcing`` env."""

    endpoint: str
    database: str
    key: str | None = None
    client_id: str | None = None
    verify_tls: bool = True
    connection_timeout: float | None = None
    retry_total: int | None = None
    events_container: str = "events"
    snapshots_container: str = "snapshots"
    tracking_container: str = "tracking"
    views_container: str = "views"
    reconciliation_container: str = "reconciliation"
    leases_container: str = "leases"
    processes_container: str = "processes"
    originator_id_type: Literal["uuid", "text"] = "uuid"

    @classmethod
    def from_env(cls, env: Environment) -> CosmosSettings:
        """Read the ``COSMOS_*`` keys (see :data:`ENV_KEYS`) of the library settings this
        factory was given; raises ``OSError`` if incomplete.

        These are the persistence module's parameters, not process settings: the store
        builds them from ``application.settings`` (:func:`adapters.cosmos.cosmos_env`)
        and the process environment is not merged in
        (``StockstreamApplication.construct_env``). A key left unset takes the field's
        default above.
        """

        def text(key: str) -> str | None:
            value = env.get(key)
            return value.strip() if value and value.strip() else None

        endpoint = text("COSMOS_ENDPOINT")
        database = text("COSMOS_DATABASE")
        if not endpoint or not database:
            raise OSError("Cosmos DB settings need COSMOS_ENDPOINT and COSMOS_DATABASE")
        values: dict[str, Any] = {"endpoint": endpoint, "database": database}
        for name, key in _OPTIONAL_KEYS.items():
            value = text(key)
            if value is not None:
                values[name] = value
        if values.get("originator_id_type", "uuid") not in ("uuid", "text"):
            raise OSError("ORIGINATOR_ID_TYPE must be 'uuid' or 'text'; "
                          f"got {values['originator_id_type']!r}")
        if "verify_tls" in values:
            values["verify_tls"] = strtobool(values["verify_tls"])
        if "connection_timeout" in values:
            values["connection_timeout"] = float(values["connection_timeout"])
        if "retry_total" in values:
            values["retry_total"] = int(values["retry_total"])
        return cls(**values)


_OPTIONAL_KEYS = {
    "key": "COSMOS_KEY",
    "client_id": "AZURE_CLIENT_ID",
    "verify_tls": "COSMOS_VERIFY_TLS",
    "connection_timeout": "COSMOS_CONNECTION_TIMEOUT",
    "retry_total": "COSMOS_RETRY_TOTAL",
    "events_container": "COSMOS_EVENTS_CONTAINER",
    "snapshots_container": "COSMOS_SNAPSHOTS_CONTAINER",
    "tracking_container": "COSMOS_TRACKING_CONTAINER",
    "views_container": "COSMOS_VIEWS_CONTAINER",
    "reconciliation_container": "COSMOS_RECONCILIATION_CONTAINER",
    "processes_container": "COSMOS_PROCESSES_CONTAINER",
    "originator_id_type": "ORIGINATOR_ID_TYPE",
}
"""The ``CosmosSettings`` fields a library setting may override, and its key."""


ENV_KEYS = ("COSMOS_ENDPOINT", "COSMOS_DATABASE", *_OPTIONAL_KEYS.values())
"""The library settings :class:`CosmosFactory` reads (``<APP>_KEY`` wins over ``KEY``)."""


def is_loopback(endpoint: str) -> bool:
    """True for an endpoint on this machine (an emulator or test server)."""
    host = urlparse(endpoint).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


# ----------------------------------------------------------- one client a process

_clients: dict[tuple[Any, ...], CosmosClient] = {}
_clients_lock = threading.Lock()


def cosmos_client(settings: CosmosSettings) -> CosmosClient:
    """The process's ``CosmosClient`` for these settings, created on first use.

    One client per process (per endpoint and identity): it holds the connection pool
    and the account's region map, which are expensive to build on every invocation.
    With an account key (emulators, the test server) the key is used; otherwise
    ``DefaultAzureCredential``, pinned to ``client_id`` for a user-assigned identity.
    """
    cache_key = (
        settings.endpoint,
        settings.key,
        settings.client_id,
        settings.verify_tls,
        settings.connection_timeout,
        settings.retry_total,
    )
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            options: dict[str, Any] = {"connection_verify": settings.verify_tls}
            if settings.connection_timeout is not None:
                options["connection_timeout"] = settings.connection_timeout
                options["read_timeout"] = settings.connection_timeout
            if settings.retry_total is not None:
                options["retry_total"] = settings.retry_total
                options["retry_connect"] = settings.retry_total
                options["retry_read"] = settings.retry_total
            options["transport"] = _pooled_transport(options)
            credential: Any = settings.key
            if credential is None:
                from azure.identity import DefaultAzureCredential  # Azure only

                credential = DefaultAzureCredential(
                    managed_identity_client_id=settings.client_id
                )
            with mapped_errors():
                client = CosmosClient(settings.endpoint, credential=credential, **options)
            _clients[cache_key] = client
        return client


def _pooled_transport(options: dict[str, Any]) -> RequestsTransport:
    """azure-core's transport with a connection pool as large as a worker's thread pool.

    The default pool keeps 10 connections; a Functions worker runs more invocations at
    once, and every connection beyond the pool would be discarded and re-opened (a new
    TLS handshake) after each request.
    """
    session = requests.Session()
    adapter = HTTPAdapter(
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        pool_connections=CONNECTION_POOL_SIZE,
        pool_maxsize=CONNECTION_POOL_SIZE,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    transport_options = {
        k: v
        for k, v in options.items()
        if k in ("connection_verify", "connection_timeout", "read_timeout")
    }
    return RequestsTransport(session=session, session_owner=True, **transport_options)


def close_cosmos_clients() -> None:
    """Drop the process's clients (tests and orderly shutdown)."""
    with _clients_lock:
        _clients.clear()


# ------------------------------------------------------------------ error mapping


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Translate Azure SDK failures into ``eventsourcing.persistence`` exceptions."""
    try:
        yield
    except CosmosBatchOperationError as error:
        raise _from_status(_batch_status(error), error) from error
    except CosmosHttpResponseError as error:
        raise _from_status(error.status_code, error) from error
    except ServiceResponseError as error:  # sent, but the answer was lost
        raise _maybe_recorded(OperationalError(f"Cosmos DB did not answer: {error}")) from error
    except AzureError as error:  # ServiceRequestError (never sent), credential failures
        raise OperationalError(f"Cosmos DB unreachable: {error}") from error


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Any Cosmos DB failure as the port's ``StoreUnavailable`` (for stores that implement
    our ports directly, not through ``eventsourcing``)."""
    try:
        with mapped_errors():
            yield
    except PersistenceError as error:
        raise StoreUnavailable(str(error)) from error


def lost_race(error: CosmosHttpResponseError) -> bool:
    """409 (another writer created the document first) or 412 (it changed since our read)."""
    return error.status_code in (409, 412)


AMBIGUOUS_STATUSES = frozenset({408, 500, 503})
"""Statuses after which a write may or may not have been applied (Cosmos DB's request
timeout and server errors): the caller must not assume nothing was recorded."""


def _maybe_recorded(error: OperationalError) -> OperationalError:
    """Mark a failure whose write may have landed (read by ``adapters.event_store``)."""
    error.maybe_recorded = True  # type: ignore[attr-defined]
    return error


def _batch_status(error: CosmosBatchOperationError) -> int | None:
    """The status of the operation that failed the batch (the others report 424)."""
    responses = error.operation_responses or []
    index = error.error_index
    if index is not None and 0 <= index < len(responses):
        status = responses[index].get("statusCode")
        if isinstance(status, int):
            return status
    return error.status_code


def _from_status(status: int | None, error: Exception) -> Exception:
    if status == 409:
        return IntegrityError(f"conflict: {_short(error)}")
    if status in (400, 413):
        return DataError(f"Cosmos DB refused the request ({status}): {_short(error)}")
    failure = OperationalError(f"Cosmos DB failed ({status}): {_short(error)}")
    return _maybe_recorded(failure) if status in AMBIGUOUS_STATUSES else failure


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


# ---------------------------------------------------------------- request tally


@dataclass
class RequestTally:
    """What the stream recorders of one datastore asked of Cosmos DB, by kind.

    Counted where the requests are made (single-partition queries, transactional
    batches, snapshot upserts), so that request units can be priced from Microsoft's
    documented cost of each operation (docs/cosmos.md; ``bench.hot_sku_azure``) where
    the server's own ``x-ms-request-charge`` cannot be trusted (the test server answers
    1 for everything). Safe to share between threads; read it with :meth:`snapshot`.
    """

    queries: int = 0
    query_documents: int = 0
    query_kilobytes: float = 0.0
    """What the queries returned, in KB of JSON."""
    query_read_units: int = 0
    """Each query's KB rounded up to a whole KB, at least 1: the unit in which a point
    read of the same bytes is charged (a query costs at least that)."""
    batches: int = 0
    batch_operations: int = 0
    failed_batches: int = 0
    failed_batch_operations: int = 0
    upserts: int = 0
    upsert_kilobytes: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def query(self, documents: Sequence[dict[str, Any]]) -> None:
        size = sum(len(json.dumps(d)) for d in documents) / 1024
        with self._lock:
            self.queries += 1
            self.query_documents += len(documents)
            self.query_kilobytes += size
            self.query_read_units += max(1, math.ceil(size))

    def batch(self, operations: int, *, failed: bool) -> None:
        with self._lock:
            if failed:
                self.failed_batches += 1
                self.failed_batch_operations += operations
            else:
                self.batches += 1
                self.batch_operations += operations

    def upsert(self, document: dict[str, Any]) -> None:
        size = len(json.dumps(document)) / 1024
        with self._lock:
            self.upserts += 1
            self.upsert_kilobytes += size

    def snapshot(self) -> dict[str, float]:
        """The counts so far, as plain numbers."""
        with self._lock:
            return {name: getattr(self, name) for name in _TALLIED}


_TALLIED = ("queries", "query_documents", "query_kilobytes", "query_read_units", "batches",
            "batch_operations", "failed_batches", "failed_batch_operations", "upserts",
            "upsert_kilobytes")


# --------------------------------------------------------------------- datastore


class CosmosDatastore:
    """The database and its containers, resolved lazily on first use.

    Nothing is contacted when the factory is built: a worker starts even while Cosmos DB
    is briefly unreachable, and each command then fails with ``OperationalError``
    (→ ``StoreUnavailable``, HTTP 503) instead of the whole process failing to start.
    """

    def __init__(self, settings: CosmosSettings) -> None:
        self.settings = settings
        self.tally = RequestTally()
        """What the recorders on this datastore asked of Cosmos DB (:class:`RequestTally`)."""
        self._containers: dict[str, ContainerProxy] = {}
        self._lock = threading.Lock()

    def container(self, name: str) -> ContainerProxy:
        with self._lock:
            proxy = self._containers.get(name)
            if proxy is None:
                client = cosmos_client(self.settings)
                proxy = client.get_database_client(self.settings.database).get_container_client(
                    name
                )
                self._containers[name] = proxy
            return proxy

    def create_containers_if_missing(self) -> None:
        """Create the database and its containers (tests and local set-up only).

        In Azure the containers come from Bicep, with the same partition keys and the
        events indexing policy (:data:`EVENTS_INDEXING_POLICY`).
        """
        s = self.settings
        with mapped_errors():
            database = cosmos_client(s).create_database_if_not_exists(s.database)
            for name, key, policy in (
                (s.events_container, "/originator_id", EVENTS_INDEXING_POLICY),
                (s.snapshots_container, "/originator_id", EVENTS_INDEXING_POLICY),
                (s.tracking_container, "/id", None),
                # The availability view: one document per SKU-location, partitioned by
                # SKU (adapters.cosmos.availability_views).
                (s.views_container, "/pk", VIEWS_INDEXING_POLICY),
                # Held counts, count sessions and the movement ledger
                # (adapters.cosmos.reconciliation).
                (s.reconciliation_container, "/pk", RECONCILIATION_INDEXING_POLICY),
                # The change-feed trigger's leases, and the relay's published position
                # (adapters.cosmos.change_feed).
                (s.leases_container, "/id", None),
                # Order and location-group streams with their wake-ups
                # (adapters.cosmos.process_streams).
                (s.processes_container, "/originator_id", EVENTS_INDEXING_POLICY),
            ):
                options: dict[str, Any] = {"partition_key": PartitionKey(path=key)}
                if policy is not None:
                    options["indexing_policy"] = policy
                if name == s.events_container:
                    options["default_ttl"] = -1  # per-item TTL for memos (as in Bicep)
                database.create_container_if_not_exists(name, **options)


# --------------------------------------------------------------------- recorders


def event_document(stored: StoredEvent) -> dict[str, Any]:
    """The document that stores one event (or snapshot) in its stream's partition."""
    return {
        "id": str(stored.originator_version),
        "originator_id": str(stored.originator_id),
        "originator_version": stored.originator_version,
        "topic": stored.topic,
        "state": base64.b64encode(stored.state).decode("ascii"),
    }


def memo_document(partition: str, memo: StreamMemo, now: datetime) -> dict[str, Any]:
    """The document that keeps one memo in its stream's partition until it expires.

    Its id is the version of the event that wrote it (an event writes one memo at most),
    so it is created, never replaced: a name seen again after expiry is a new document,
    and the newest one answers."""
    return {
        "id": f"memo-{memo.version}",
        "originator_id": partition,
        "memo": memo.memo,
        "memo_value": memo.value,
        "memo_version": memo.version,
        "expires_at": to_text(memo.expires_at),
        "ttl": max(int((memo.expires_at - now).total_seconds()) + 1, 1),
    }


QUERY_ATTEMPTS = 3


def _query(
    container: ContainerProxy, query: str, parameters: list[dict[str, Any]], partition: str,
    tally: RequestTally | None = None,
) -> list[dict[str, Any]]:
    """A single-partition query's documents.

    The SDK's client is shared by the threads of a process, and under concurrent queries
    azure-cosmos 4.17 can fail inside its own response-header bookkeeping with
    ``RuntimeError: OrderedDict mutated during iteration`` (seen in the 16-writer test).
    A query changes nothing, so it is simply asked again; should that keep happening it
    is an ``OperationalError`` (503, retry later), never an unexpected 500.
    """
    for attempt in range(QUERY_ATTEMPTS):
        try:
            with mapped_errors():
                found = list(container.query_items(
                    query, parameters=parameters, partition_key=partition))
            if tally is not None:
                tally.query(found)
            return found
        except RuntimeError as error:
            if attempt == QUERY_ATTEMPTS - 1:
                raise OperationalError(f"Cosmos DB client failed: {error}") from error
    raise AssertionError("unreachable")


class CosmosAggregateRecorder(AggregateRecorder):
    """Events (or snapshots) of one stream per logical partition of one container."""

    max_operations_per_save = MAX_BATCH_OPERATIONS
    """A save is one transactional batch: its events, memos and companions together
    (read by ``adapters.event_store.EventSourcedStockItems.fits_one_save``)."""

    def __init__(
        self,
        datastore: CosmosDatastore,
        container_name: str,
        *,
        upsert: bool = False,
    ) -> None:
        self.datastore = datastore
        self.container_name = container_name
        self.upsert = upsert

    @property
    def container(self) -> ContainerProxy:
        with mapped_errors():
            return self.datastore.container(self.container_name)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """Append the events of one stream atomically; returns None (no notification ids).

        Raises ``IntegrityError`` if any version exists already (nothing is written),
        ``ProgrammingError`` for several streams or more than 100 events, and
        ``OperationalError`` if Cosmos DB cannot take the write.
        """
        if not stored_events:
            return None
        streams = {str(e.originator_id) for e in stored_events}
        if len(streams) > 1:
            raise ProgrammingError(
                "Cosmos DB appends atomically to one stream (logical partition) only; "
                f"got {len(streams)} streams in one insert"
            )
        (partition,) = streams
        versions = [e.originator_version for e in stored_events]
        if len(set(versions)) != len(versions):
            # Cosmos DB refuses such a batch with a 409 too; refusing it here keeps the
            # test server (whose batches are not atomic) from writing half of it.
            raise IntegrityError(f"one insert repeats a version of stream {partition}")
        documents = [event_document(e) for e in stored_events]
        memos: Sequence[StreamMemo] = kwargs.get(MEMOS) or ()
        now = datetime.now(tz=memos[0].expires_at.tzinfo) if memos else None
        companions = self.companion_operations(partition, **kwargs)
        container = self.container
        with mapped_errors():
            if self.upsert:
                # Snapshots: replacing one is harmless, and a batch is not needed.
                for document in documents:
                    container.upsert_item(document)
                    self.datastore.tally.upsert(document)
            else:
                extra = len(memos) + len(companions)
                if len(documents) + extra > MAX_BATCH_OPERATIONS:
                    raise ProgrammingError(
                        f"a save may write at most {MAX_BATCH_OPERATIONS} events, memos and "
                        f"companions (one transactional batch); got {len(documents) + extra}"
                    )
                # All or nothing, and a 409 if any version exists: the OCC check. The
                # memos ride in the same batch, so they commit exactly with their events.
                operations: list[tuple[str, tuple[dict[str, Any]]]] = [
                    ("create", (document,)) for document in documents
                ]
                operations += [
                    ("create", (memo_document(partition, memo, now),))
                    for memo in memos if now is not None
                ]
                # Companions last: on a conflict the creates fail first, so not even a
                # store whose batches are not atomic (the test server) writes them.
                operations += companions
                try:
                    container.execute_item_batch(operations, partition_key=partition)
                except CosmosBatchOperationError:
                    self.datastore.tally.batch(len(operations), failed=True)
                    raise
                self.datastore.tally.batch(len(operations), failed=False)
        return None

    def companion_operations(
        self, partition: str, **kwargs: Any
    ) -> list[tuple[str, tuple[dict[str, Any]]]]:
        """Batch operations a subclass adds to a save in the stream's own partition (a
        process's wake-up, ``adapters.cosmos.process_streams``), committed exactly with
        its events. None here."""
        return []

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The stream's events by version, from one single-partition query."""
        partition = str(originator_id)
        # Memo documents share the partition but have no originator_version.
        clauses = ["c.originator_id = @originator_id", "IS_DEFINED(c.originator_version)"]
        parameters: list[dict[str, Any]] = [{"name": "@originator_id", "value": partition}]
        if gt is not None:
            clauses.append("c.originator_version > @gt")
            parameters.append({"name": "@gt", "value": gt})
        if lte is not None:
            clauses.append("c.originator_version <= @lte")
            parameters.append({"name": "@lte", "value": lte})
        top = ""
        if limit is not None:
            top = "TOP @limit "
            parameters.append({"name": "@limit", "value": int(limit)})
        query = (
            f"SELECT {top}c.originator_version, c.topic, c.state FROM c "
            f"WHERE {' AND '.join(clauses)} "
            f"ORDER BY c.originator_version {'DESC' if desc else 'ASC'}"
        )
        documents = _query(self.container, query, parameters, partition,
                           self.datastore.tally)
        stream_id = self._originator_id(originator_id)
        return [
            StoredEvent(
                originator_id=stream_id,
                originator_version=int(d["originator_version"]),
                topic=str(d["topic"]),
                state=base64.b64decode(d["state"]),
            )
            for d in documents
        ]

    def select_stream_starts(self, topic: str) -> Iterator[StoredEvent]:
        """Every stream's first event with ``topic`` (``StreamStartRecorder``): one
        cross-partition query over the version-1 documents, read page by page."""
        query = ("SELECT c.originator_id, c.originator_version, c.topic, c.state FROM c "
                 "WHERE c.originator_version = 1 AND c.topic = @topic")
        with mapped_errors():
            pages = self.container.query_items(
                query, parameters=[{"name": "@topic", "value": topic}],
                enable_cross_partition_query=True)
            for d in pages:
                yield StoredEvent(
                    originator_id=self._originator_id(str(d["originator_id"])),
                    originator_version=int(d["originator_version"]),
                    topic=str(d["topic"]),
                    state=base64.b64decode(d["state"]),
                )

    def select_memo(
        self, originator_id: UUID | str, memo: str, now: datetime
    ) -> tuple[str, int] | None:
        """One single-partition query on the indexed ``memo`` field."""
        partition = str(originator_id)
        found = _query(
            self.container,
            "SELECT TOP 1 c.memo_value, c.memo_version, c.expires_at FROM c "
            "WHERE c.originator_id = @originator_id AND c.memo = @memo "
            "ORDER BY c.memo_version DESC",
            [{"name": "@originator_id", "value": partition}, {"name": "@memo", "value": memo}],
            partition,
            self.datastore.tally,
        )
        if not found or str(found[0]["expires_at"]) <= to_text(now):
            return None  # none, or expired and not yet deleted by its ttl
        return str(found[0]["memo_value"]), int(found[0]["memo_version"])

    def _originator_id(self, originator_id: UUID | str) -> UUID | str:
        if self.datastore.settings.originator_id_type == "text":
            return str(originator_id)
        return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


class CosmosApplicationRecorder(CosmosAggregateRecorder, ApplicationRecorder):
    """The events recorder; notifications are not offered (see the module docstring)."""

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        raise NotImplementedError(_NO_NOTIFICATIONS)

    def max_notification_id(self) -> int | None:
        raise NotImplementedError(_NO_NOTIFICATIONS)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        raise NotImplementedError(_NO_NOTIFICATIONS)


class CosmosTrackingRecorder(TrackingRecorder):
    """The highest notification id handled per upstream application, one document each.

    ``insert_tracking`` refuses to go backwards or repeat (``IntegrityError``), with an
    etag-guarded replace so two writers cannot both advance from the same value.
    """

    def __init__(self, datastore: CosmosDatastore, container_name: str) -> None:
        self.datastore = datastore
        self.container_name = container_name

    def _read(self, application_name: str) -> dict[str, Any] | None:
        with mapped_errors():
            container = self.datastore.container(self.container_name)
            # A query, not a point read: a missing point read is a 500 on the test server.
            found = list(
                container.query_items(
                    "SELECT * FROM c WHERE c.id = @id",
                    parameters=[{"name": "@id", "value": application_name}],
                    partition_key=application_name,
                )
            )
        return found[0] if found else None

    def insert_tracking(self, tracking: Tracking) -> None:
        current = self._read(tracking.application_name)
        document = {
            "id": tracking.application_name,
            "notification_id": tracking.notification_id,
        }
        with mapped_errors():
            container = self.datastore.container(self.container_name)
            if current is None:
                container.create_item(document)
                return
            if int(current["notification_id"]) >= tracking.notification_id:
                raise IntegrityError(
                    f"{tracking.application_name} already tracked "
                    f"{current['notification_id']} ≥ {tracking.notification_id}"
                )
            try:
                container.replace_item(
                    tracking.application_name,
                    document,
                    etag=current["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except CosmosHttpResponseError as error:
                if error.status_code == 412:
                    raise IntegrityError("tracking moved on concurrently") from error
                raise

    def max_tracking_id(self, application_name: str) -> int | None:
        current = self._read(application_name)
        return None if current is None else int(current["notification_id"])


# ----------------------------------------------------------------------- factory


class CosmosFactory(InfrastructureFactory[CosmosTrackingRecorder]):
    """``eventsourcing`` infrastructure on Cosmos DB (see the module docstring)."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.datastore = CosmosDatastore(CosmosSettings.from_env(self.env))

    @property
    def settings(self) -> CosmosSettings:
        return self.datastore.settings

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        if purpose == "snapshots":
            return CosmosAggregateRecorder(
                self.datastore, self.settings.snapshots_container, upsert=True
            )
        return CosmosAggregateRecorder(self.datastore, self._container_for(purpose))

    def application_recorder(self) -> ApplicationRecorder:
        return CosmosApplicationRecorder(self.datastore, self.settings.events_container)

    def tracking_recorder(
        self, tracking_recorder_class: type[CosmosTrackingRecorder] | None = None
    ) -> CosmosTrackingRecorder:
        cls = tracking_recorder_class or CosmosTrackingRecorder
        return cls(self.datastore, self.settings.tracking_container)

    def process_recorder(self) -> ProcessRecorder:
        raise NotImplementedError(
            "Cosmos DB cannot record events and tracking in one transaction across "
            "partitions; use a tracking document in each view's own partition"
        )

    def create_containers_if_missing(self) -> None:
        """See :meth:`CosmosDatastore.create_containers_if_missing`."""
        self.datastore.create_containers_if_missing()

    def _container_for(self, purpose: str) -> str:
        return self.settings.events_container if purpose == "events" else purpose
