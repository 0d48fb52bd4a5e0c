"""The view-store contract on Cosmos DB: the real ``azure-cosmos`` SDK over HTTPS against
``@vercel/cosmosdb-server`` (the ``cosmos_server`` fixture), plus what only the Cosmos
back end has to show: the document layout, lost races answered by 409/412, failures as
``StoreUnavailable``, the projection over a real command sequence, and the wiring in the
composition root.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from azure.cosmos import ContainerProxy, CosmosClient

from adapters.clock import ManualClock
from adapters.cosmos import CosmosStockItems
from adapters.cosmos.availability_views import CosmosAvailabilityViews
from adapters.cosmos.local_server import CosmosServer
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings
from application.commands import StockCommands
from application.ports import StoreUnavailable
from application.settings import load
from application.views import ViewRow
from composition.azure import azure_services
from contracts.cloudevents import to_cloudevent
from contracts.topology import AVAILABILITY_SUBSCRIPTION
from domain.stock_item import StockItem
from projections.availability import AvailabilityProjection
from tests.contract.view_store_contract import (
    HOUR,
    LOCATION,
    T0,
    ViewStoreContract,
    change,
)

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def settings(cosmos_server: CosmosServer) -> CosmosSettings:
    """A database of this test's own (the overdue query and the sum look at every row),
    with the containers Bicep provisions in Azure."""
    s = CosmosSettings(
        endpoint=cosmos_server.endpoint,
        database=f"views-{uuid4().hex[:8]}",
        key=cosmos_server.key,
        verify_tls=False,
    )
    CosmosDatastore(s).create_containers_if_missing()
    return s


class TestCosmosViewStore(ViewStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, settings: CosmosSettings) -> None:
        self.settings = settings

    def open_views(self) -> CosmosAvailabilityViews:
        return CosmosAvailabilityViews(self.settings)


def _views_container(settings: CosmosSettings) -> ContainerProxy:
    assert settings.key is not None  # the emulator's key
    client = CosmosClient(settings.endpoint, credential=settings.key, connection_verify=False)
    return client.get_database_client(settings.database).get_container_client("views")


# ------------------------------------------------------------------ the document


def test_a_sku_location_is_one_document_in_the_skus_partition(settings: CosmosSettings) -> None:
    views = CosmosAvailabilityViews(settings)
    sku = f"SKU-{uuid4().hex[:8]}"
    views.apply(change(sku, 1, 10))
    views.apply(change(sku, 2, 10, 2, expiry=("order-2", T0 + 2 * HOUR)))
    views.apply(change(sku, 3, 10, 5, expiry=("order-1", T0 + HOUR)))

    documents = list(
        _views_container(settings).query_items(
            "SELECT * FROM c WHERE c.pk = @sku",
            parameters=[{"name": "@sku", "value": sku}],
            partition_key=sku,
        )
    )

    assert len(documents) == 1
    document = documents[0]
    assert (document["id"], document["pk"], document["location"]) == (LOCATION, sku, LOCATION)
    assert (document["version"], document["on_hand"], document["reserved"]) == (3, 10, 5)
    assert document["expiries"] == {
        "order-1": "2026-03-01T10:00:00.000000Z",
        "order-2": "2026-03-01T11:00:00.000000Z",
    }
    assert document["next_expiry"] == "2026-03-01T10:00:00.000000Z"
    assert document["updated_at"] == "2026-03-01T09:03:00.000000Z"


def test_the_document_holds_the_states_and_one_written_before_them_reads_as_none_held(
    settings: CosmosSettings,
) -> None:
    views = CosmosAvailabilityViews(settings)
    sku = f"SKU-{uuid4().hex[:8]}"
    views.apply(change(sku, 1, 10, damaged=3, incoming_total=7, in_transit=4))
    container = _views_container(settings)
    [document] = container.query_items(
        "SELECT * FROM c WHERE c.pk = @sku", parameters=[{"name": "@sku", "value": sku}],
        partition_key=sku)
    assert (document["held"], document["incoming_total"], document["in_transit"]) == (
        {"damaged": 3, "quality_control": 0}, 7, 4)

    # A document as the store wrote it before stock states: no held, incoming, in transit.
    old = {k: v for k, v in document.items()
           if not k.startswith("_") and k not in ("held", "incoming_total", "in_transit")}
    container.upsert_item(old)

    [row] = views.rows(sku)
    assert (row.on_hand, row.sellable, row.held, row.incoming_total, row.in_transit) == (
        10, 10, {"damaged": 0, "quality_control": 0}, 0, 0)
    assert views.apply(change(sku, 2, 10, quality_control=2))
    assert views.for_sku(sku).held == {"damaged": 0, "quality_control": 2}


# ------------------------------------------------------------------ lost races


class _RacedViews(CosmosAvailabilityViews):
    """Runs a rival writer once, right after this instance has read the row: the
    interleaving two consumers produce by chance, made certain."""

    def __init__(self, settings: CosmosSettings, rival: Callable[[], object]) -> None:
        super().__init__(settings)
        self._rival: Callable[[], object] | None = rival

    def _document(self, sku: str, location: str) -> dict[str, Any] | None:
        found = super()._document(sku, location)
        rival, self._rival = self._rival, None
        if rival is not None:
            rival()
        return found


@pytest.mark.parametrize(
    ("version", "status"), [(1, "409 on create"), (2, "412 on replace with a stale etag")]
)
def test_a_writer_whose_read_went_stale_loses_and_writes_nothing(
    settings: CosmosSettings, version: int, status: str
) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    rival = CosmosAvailabilityViews(settings)
    for v in range(1, version):
        assert rival.apply(change(sku, v, 1))
    raced = _RacedViews(settings, lambda: rival.apply(change(sku, version, 50)))

    won = raced.apply(change(sku, version, 99))

    assert won is False, status
    assert rival.version_of(sku, LOCATION) == version
    assert [r.on_hand for r in rival.rows(sku)] == [50]


# ------------------------------------------------------------------ failures


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _every_operation(views: CosmosAvailabilityViews) -> list[Callable[[], object]]:
    row = ViewRow("SKU-1", LOCATION, 1, 1, 0, 1, T0)
    return [
        lambda: views.version_of("SKU-1", LOCATION),
        lambda: views.apply(change("SKU-1", 1, 1)),
        lambda: views.for_sku("SKU-1"),
        lambda: list(views.rows()),
        lambda: views.overdue_reservations(T0, 10),
        lambda: views.replace(row, {}),
        views.events_applied,
    ]


def test_an_unreachable_account_is_store_unavailable_for_every_operation(
    cosmos_server: CosmosServer,
) -> None:
    views = CosmosAvailabilityViews(
        CosmosSettings(
            endpoint=f"https://127.0.0.1:{_closed_port()}",
            database="nowhere",
            key=cosmos_server.key,
            verify_tls=False,
            connection_timeout=1.0,
            retry_total=0,
        )
    )

    for operation in _every_operation(views):
        with pytest.raises(StoreUnavailable):
            operation()


def test_a_missing_container_is_store_unavailable_not_a_lost_race(
    settings: CosmosSettings,
) -> None:
    views = CosmosAvailabilityViews(
        CosmosSettings(
            endpoint=settings.endpoint, database=settings.database, key=settings.key,
            verify_tls=False, views_container="not-provisioned",
        )
    )

    for operation in _every_operation(views):
        with pytest.raises(StoreUnavailable):
            operation()


# ------------------------------------------------------- the projection on Cosmos DB


@pytest.fixture
def store(settings: CosmosSettings) -> Iterator[CosmosStockItems]:
    s = CosmosStockItems(settings.endpoint, settings.database, key=settings.key,
                         verify_tls=False)
    yield s
    s.close()


def test_the_projection_over_a_real_command_sequence_equals_the_stream(
    settings: CosmosSettings, store: CosmosStockItems
) -> None:
    clock = ManualClock(T0)
    commands = StockCommands(store, clock)
    sku = f"SKU-{uuid4().hex[:8]}"
    events: list[StockItem.Event] = []
    events += commands.receive(sku, LOCATION, 20, reference="PO-1").events
    events += commands.reserve(sku, LOCATION, "order-1", 3, "web", ttl_seconds=600).events
    events += commands.reserve(sku, LOCATION, "order-2", 4, "pos", ttl_seconds=1200).events
    events += commands.fulfil(sku, LOCATION, "order-1").events
    events += commands.adjust(sku, LOCATION, -2, "damaged").events
    views = CosmosAvailabilityViews(settings)
    projection = AvailabilityProjection(
        views, lambda s, loc, after, upto: store.events(s, loc, after=after, limit=upto - after)
    )
    documents = [to_cloudevent(e) for e in events]

    # The first event, then the last (a gap: read from the stream), then every one again.
    outcomes = [projection.handle(documents[0]), projection.handle(documents[-1])]
    outcomes += [projection.handle(d) for d in documents]

    item = store.get(sku, LOCATION)
    assert item is not None and item.version == len(documents) == 6
    assert outcomes == ["applied", "caught-up"] + ["duplicate"] * 6
    (row,) = views.rows(sku)
    assert (row.version, row.on_hand, row.reserved, row.available) == (
        item.version, item.on_hand, item.reserved, item.available,
    ) == (6, 15, 4, 11)
    # order-1 was fulfilled; only order-2's expiry (T0 + 20 min) is left.
    assert views.overdue_reservations(T0 + timedelta(minutes=19), 10) == []
    assert views.overdue_reservations(T0 + timedelta(minutes=20), 10) == [(sku, LOCATION)]
    assert projection.status().position == 6


def test_the_composition_root_wires_the_cosmos_views_on_azure(
    settings: CosmosSettings,
) -> None:
    clock = ManualClock(T0)
    container = azure_services(
        load({
            "STOCKSTREAM_EVENT_STORE": "cosmos",
            "COSMOS__accountEndpoint": settings.endpoint,
            "COSMOS_KEY": settings.key or "",
            "COSMOS_DATABASE": settings.database,
        }),
        clock,
    )
    try:
        sku = f"SKU-{uuid4().hex[:8]}"
        consumer = container.consumers[AVAILABILITY_SUBSCRIPTION]
        events = container.commands.receive(sku, LOCATION, 8).events
        events += container.commands.reserve(sku, LOCATION, "order-1", 5, "web", 60).events
        for event in events:
            consumer.process(json.dumps(to_cloudevent(event)).encode())
        assert container.availability is not None and container.ops is not None
        assert container.expiry_sweep is not None
        assert container.availability.for_sku(sku).available == 3

        clock.advance(60)
        released = container.expiry_sweep.run_once()
        expired = container.store.events(sku, LOCATION, after=3)
        for event in expired:
            consumer.process(json.dumps(to_cloudevent(event)).encode())

        assert released == 1 and [type(e).__name__ for e in expired] == ["Released"]
        assert container.availability.for_sku(sku).available == 8
        assert container.expiry_sweep.run_once() == 0
        # The lag is the last event this instance applied (the metric has them all).
        (status,) = container.ops.status().projections
        assert (status.name, status.position) == ("availability", 4)
        assert status.lag_seconds is not None and status.lag_seconds >= 0
    finally:
        container.close()
