"""The event-store contract on Cosmos DB: the real ``azure-cosmos`` SDK over HTTPS against
``@vercel/cosmosdb-server`` (started by the ``cosmos_server`` fixture), plus what only the
Cosmos back end has to show: the document layout, the error mapping of real SDK errors,
and 16 writers racing on one stream.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError
from eventsourcing.persistence import (
    AggregateRecorder,
    DataError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    TrackingRecorder,
)
from eventsourcing.utils import get_topic

from adapters.clock import ManualClock
from adapters.cosmos import CosmosStockItems, cosmos_env, open_cosmos_stock_items
from adapters.cosmos.local_server import CosmosServer, closed_port
from adapters.cosmos.persistence import CosmosFactory, is_loopback, mapped_errors
from application.commands import RetryPolicy, StockCommands
from application.ports import ConcurrencyConflict
from application.settings import load
from domain.identifiers import stream_uuid
from domain.stock_item import StockItem
from tests.contract.event_store_contract import LOCATION, EventStoreContract
from tests.events import only

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="module")
def cosmos_database(cosmos_server: CosmosServer) -> Iterator[str]:
    """A database of this module's own, with the containers Bicep provisions in Azure."""
    name = f"contract-{uuid4().hex[:8]}"
    store = CosmosStockItems(
        cosmos_server.endpoint, name, key=cosmos_server.key, verify_tls=False
    )
    store.create_containers_if_missing()
    store.close()
    yield name


class TestCosmosEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, cosmos_server: CosmosServer, cosmos_database: str) -> None:
        self.server = cosmos_server
        self.database = cosmos_database

    def open_store(self, *, reachable: bool = True) -> CosmosStockItems:
        if reachable:
            return CosmosStockItems(
                self.server.endpoint, self.database, key=self.server.key, verify_tls=False
            )
        return CosmosStockItems(
            f"https://127.0.0.1:{closed_port()}",
            self.database,
            key=self.server.key,
            verify_tls=False,
            connection_timeout=1.0,
            retry_total=0,
        )


# ------------------------------------------------------------------ the documents


@pytest.fixture
def store(cosmos_server: CosmosServer, cosmos_database: str) -> Iterator[CosmosStockItems]:
    s = CosmosStockItems(
        cosmos_server.endpoint, cosmos_database, key=cosmos_server.key, verify_tls=False
    )
    yield s
    s.close()


def _events_container(server: CosmosServer, database: str) -> ContainerProxy:
    client = CosmosClient(server.endpoint, credential=server.key, connection_verify=False)
    return client.get_database_client(database).get_container_client("events")


def test_each_event_is_one_document_in_its_streams_partition(
    store: CosmosStockItems, cosmos_server: CosmosServer, cosmos_database: str
) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    commands = StockCommands(store, ManualClock())
    commands.receive(sku, LOCATION, 12, reference="PO-7")
    commands.reserve(sku, LOCATION, "order-1", 2, "web")
    stream = str(stream_uuid(sku, LOCATION))

    documents = list(
        _events_container(cosmos_server, cosmos_database).query_items(
            "SELECT * FROM c WHERE c.originator_id = @id ORDER BY c.originator_version",
            parameters=[{"name": "@id", "value": stream}],
            partition_key=stream,
        )
    )

    assert [d["id"] for d in documents] == ["1", "2", "3"]
    assert [d["originator_version"] for d in documents] == [1, 2, 3]
    assert {d["originator_id"] for d in documents} == {stream}
    assert [d["topic"] for d in documents] == [
        get_topic(StockItem.Created),
        get_topic(StockItem.Received),
        get_topic(StockItem.Reserved),
    ]
    reserved = json.loads(base64.b64decode(documents[2]["state"]))
    assert (reserved["order_id"], reserved["quantity"], reserved["available"]) == (
        "order-1", 2, 10,
    )


def test_a_memo_is_a_document_beside_its_event_that_the_relay_passes_by(
    store: CosmosStockItems, cosmos_server: CosmosServer, cosmos_database: str
) -> None:
    from adapters.cosmos.change_feed import stored_event_from_document

    sku = f"SKU-{uuid4().hex[:8]}"
    commands = StockCommands(store, ManualClock())
    commands.receive(sku, LOCATION, 12, idempotency_key="asn-7")
    stream = str(stream_uuid(sku, LOCATION))

    documents = list(
        _events_container(cosmos_server, cosmos_database).query_items(
            "SELECT * FROM c WHERE c.originator_id = @id",
            parameters=[{"name": "@id", "value": stream}],
            partition_key=stream,
        )
    )

    memos = [d for d in documents if d["id"].startswith("memo-")]
    assert [(m["id"], m["memo"], m["memo_version"]) for m in memos] == [
        ("memo-2", "key:asn-7", 2)]
    assert memos[0]["ttl"] > 6 * 24 * 3600  # expires by itself after the window
    relayed = [stored_event_from_document(d) for d in documents]
    assert sorted(e.originator_version for e in relayed if e is not None) == [1, 2]
    assert [store.decode(e).originator_version for e in relayed if e is not None]


def test_an_insert_of_two_originators_is_a_programming_error(store: CosmosStockItems) -> None:
    recorder = store.app.recorder
    events = [
        StoredEvent(uuid4(), 1, "t", b"{}"),
        StoredEvent(uuid4(), 1, "t", b"{}"),
    ]
    with pytest.raises(ProgrammingError):
        recorder.insert_events(events)
    assert recorder.select_events(events[0].originator_id) == []


def test_an_existing_version_in_a_batch_is_an_integrity_error(store: CosmosStockItems) -> None:
    recorder = store.app.recorder
    stream = uuid4()
    recorder.insert_events([StoredEvent(stream, v, "t", b"{}") for v in (1, 2)])

    with pytest.raises(IntegrityError):
        recorder.insert_events([StoredEvent(stream, v, "t", b"{}") for v in (2, 3)])

    assert [e.originator_version for e in recorder.select_events(stream)] == [1, 2]
    assert [e.originator_version for e in recorder.select_events(stream, desc=True, limit=1)] == [2]
    assert [e.originator_version for e in recorder.select_events(stream, lte=1)] == [1]


def test_notifications_are_not_offered_because_cosmos_has_no_global_order(
    store: CosmosStockItems,
) -> None:
    with pytest.raises(NotImplementedError):
        store.app.recorder.max_notification_id()
    with pytest.raises(NotImplementedError):
        store.app.recorder.select_notifications(start=1, limit=10)
    with pytest.raises(NotImplementedError):
        store.factory.process_recorder()


def test_the_tracking_recorder_only_moves_forward(store: CosmosStockItems) -> None:
    from eventsourcing.persistence import Tracking

    tracking = store.factory.tracking_recorder()
    name = f"upstream-{uuid4().hex[:6]}"
    assert tracking.max_tracking_id(name) is None
    tracking.insert_tracking(Tracking(name, 5))
    tracking.insert_tracking(Tracking(name, 9))
    with pytest.raises(IntegrityError):
        tracking.insert_tracking(Tracking(name, 9))
    with pytest.raises(IntegrityError):
        tracking.insert_tracking(Tracking(name, 3))
    assert tracking.max_tracking_id(name) == 9


# --------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (CosmosHttpResponseError(status_code=409, message="exists"), IntegrityError),
        (CosmosHttpResponseError(status_code=429, message="throttled"), OperationalError),
        (CosmosHttpResponseError(status_code=503, message="unavailable"), OperationalError),
        (CosmosHttpResponseError(status_code=408, message="timeout"), OperationalError),
        (CosmosHttpResponseError(status_code=413, message="too large"), DataError),
        (ServiceRequestError("connection refused"), OperationalError),
        (ServiceResponseError("read timed out"), OperationalError),
        (
            CosmosBatchOperationError(
                error_index=1,
                headers={},
                status_code=409,
                message="batch failed",
                operation_responses=[{"statusCode": 424}, {"statusCode": 409}],
            ),
            IntegrityError,
        ),
        (
            CosmosBatchOperationError(
                error_index=0,
                headers={},
                status_code=429,
                message="batch throttled",
                operation_responses=[{"statusCode": 429}, {"statusCode": 424}],
            ),
            OperationalError,
        ),
    ],
)
def test_sdk_failures_map_to_the_kind_of_failure(error: Exception, expected: type) -> None:
    with pytest.raises(expected) as raised, mapped_errors():
        raise error
    assert raised.value.__cause__ is error


# ------------------------------------------------------------------ configuration


def test_the_composition_root_opens_the_store_from_settings(
    cosmos_server: CosmosServer, cosmos_database: str
) -> None:
    settings = load(
        {
            "STOCKSTREAM_EVENT_STORE": "cosmos",
            "COSMOS__accountEndpoint": cosmos_server.endpoint,
            "COSMOS_KEY": cosmos_server.key,
            "COSMOS_DATABASE": cosmos_database,
        }
    )
    store = open_cosmos_stock_items(settings)
    try:
        sku = f"SKU-{uuid4().hex[:8]}"
        StockCommands(store, ManualClock()).receive(sku, LOCATION, 3)
        item = store.get(sku, LOCATION)
        assert item is not None and item.on_hand == 3
        assert store.factory.settings.verify_tls is False  # loopback with a key only
    finally:
        store.close()


def test_without_a_key_the_factory_uses_entra_id_and_verifies_tls() -> None:
    env = cosmos_env(
        "https://stockstream.documents.azure.com:443/", "stockstream", client_id="abc-123"
    )
    settings = CosmosFactory(env).settings
    assert settings.key is None and settings.client_id == "abc-123"
    assert settings.verify_tls is True
    assert not is_loopback(settings.endpoint)
    assert is_loopback("https://localhost:8081/") and is_loopback("https://127.0.0.1:1/")


# ------------------------------------------------------------------- concurrency


class _CountingStore(CosmosStockItems):
    """Counts the conflicts its saves run into (each thread has its own instance)."""

    conflicts = 0

    def save(self, item: StockItem) -> list[StockItem.Event]:
        try:
            return super().save(item)
        except ConcurrencyConflict:
            self.conflicts += 1
            raise


def test_sixteen_writers_on_one_stream_append_contiguously_and_lose_nothing(
    cosmos_server: CosmosServer, cosmos_database: str
) -> None:
    threads_count, receipts_each = 16, 2
    sku = f"HOT-{uuid.uuid4().hex[:8]}"
    stores = [
        _CountingStore(
            cosmos_server.endpoint, cosmos_database, key=cosmos_server.key, verify_tls=False
        )
        for _ in range(threads_count)
    ]
    clock = ManualClock()
    retry = RetryPolicy(attempts=200, base_delay=0.005, max_delay=0.1)
    StockCommands(stores[0], clock).receive(sku, LOCATION, 1)  # versions 1, 2
    for store in stores:  # every store's cache holds version 2: the first saves must race
        assert store.get(sku, LOCATION) is not None
    start = threading.Barrier(threads_count)
    failures: list[BaseException] = []

    def writer(index: int) -> None:
        commands = StockCommands(stores[index], clock, retry)  # own lock, own cache
        start.wait()
        try:
            for n in range(receipts_each):
                commands.receive(sku, LOCATION, 1, reference=f"w{index}-{n}")
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    try:
        assert failures == []
        events = stores[0].events(sku, LOCATION)
        expected = 2 + threads_count * receipts_each
        assert [e.originator_version for e in events] == list(range(1, expected + 1))
        references = sorted(str(e.reference) for e in only(events[2:], StockItem.Received))
        assert references == sorted(
            f"w{i}-{n}" for i in range(threads_count) for n in range(receipts_each)
        )
        final = stores[0].get(sku, LOCATION)
        assert final is not None and final.on_hand == 1 + threads_count * receipts_each
        assert sum(s.conflicts for s in stores) >= threads_count - 1
    finally:
        for store in stores:
            store.close()


# ------------------------------------------- the library's own conformance suites


def _library_test_cases() -> tuple[type, type]:
    """``eventsourcing``'s recorder test cases; their module imports ``eventsourcing.cipher``
    (pycryptodome, not installed), so that name is pointed at ``eventsourcing.cryptography``."""
    import sys

    import eventsourcing.cryptography

    sys.modules.setdefault("eventsourcing.cipher", eventsourcing.cryptography)
    from eventsourcing.tests.persistence import (
        AggregateRecorderTestCase,
        TrackingRecorderTestCase,
    )

    return AggregateRecorderTestCase, TrackingRecorderTestCase


if TYPE_CHECKING:  # the classes themselves, for mypy; at run time, imported as above
    from eventsourcing.tests.persistence import (
        AggregateRecorderTestCase as _AggregateRecorderTestCase,
    )
    from eventsourcing.tests.persistence import (
        TrackingRecorderTestCase as _TrackingRecorderTestCase,
    )
else:
    _AggregateRecorderTestCase, _TrackingRecorderTestCase = _library_test_cases()


class _OnTheTestServer:
    factory: CosmosFactory

    @pytest.fixture(autouse=True)
    def _factory(self, cosmos_server: CosmosServer) -> None:
        # A database per test: the library's cases reuse names such as "upstream1".
        env = cosmos_env(
            cosmos_server.endpoint,
            f"library-{uuid4().hex[:8]}",
            key=cosmos_server.key,
            verify_tls=False,
        )
        self.factory = CosmosFactory(env)
        self.factory.create_containers_if_missing()


class TestLibraryAggregateRecorderCases(_OnTheTestServer, _AggregateRecorderTestCase):
    """The library's own aggregate-recorder conformance cases, on our Cosmos recorder."""

    def create_recorder(self) -> AggregateRecorder:
        return self.factory.application_recorder()

    @pytest.mark.skip(reason="a timing printout, not a check; test-server timings mean nothing")
    def test_performance(self) -> None: ...


class TestLibraryTrackingRecorderCases(_OnTheTestServer, _TrackingRecorderTestCase):
    """The library's own tracking-recorder conformance cases, on our Cosmos recorder."""

    def create_recorder(self) -> TrackingRecorder:
        return self.factory.tracking_recorder()


def test_a_query_that_trips_over_the_sdks_shared_header_bookkeeping_is_asked_again() -> None:
    from eventsourcing.persistence import OperationalError

    from adapters.cosmos.persistence import QUERY_ATTEMPTS, _query

    class Flaky:
        def __init__(self, failures: int) -> None:
            self.failures, self.calls = failures, 0

        def query_items(self, *args: object, **kwargs: object) -> list[dict[str, int]]:
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError("OrderedDict mutated during iteration")
            return [{"originator_version": 1}]

    once = Flaky(1)
    assert _query(once, "SELECT 1", [], "p") == [{"originator_version": 1}]  # type: ignore[arg-type]
    assert once.calls == 2
    with pytest.raises(OperationalError):
        _query(Flaky(QUERY_ATTEMPTS), "SELECT 1", [], "p")  # type: ignore[arg-type]
