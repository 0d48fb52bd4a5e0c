"""Fixtures for process streams (orders, transfers) on Azure, shared by the suites that
drive them through the registered functions: the Azure composition root's services over
the Cosmos DB test server (stock streams in ``events``, process and group streams in
``processes``), a manual clock, and the embedded broker standing in for Service Bus.

Import the fixtures into a ``conftest.py`` (``from tests.azure_processes import ...``)
so every test module of the directory can ask for them by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import azure.functions as func
import pytest

from adapters.clock import ManualClock
from adapters.cosmos.local_server import CosmosServer
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from application.settings import load
from composition import Services
from composition.azure import azure_services
from contracts.processes import ProcessKind
from contracts.validation import validate_cloudevent
from functions.container import use_services
from tests.http.conftest import FUNCTIONS


class Crash(Exception):
    """A process killed at a named point (the driver's crash hook)."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """The embedded broker with the service's topology (standing in for Service Bus)."""
    b = EmbeddedBroker(tmp_path / "broker.db")
    ensure_topology(b)
    yield b
    b.close()


@pytest.fixture
def azure(cosmos_server: CosmosServer, clock: ManualClock,
          broker: EmbeddedBroker) -> Iterator[Services]:
    """The Azure root's services on a database of their own, installed as the functions'
    services for the test."""
    settings = CosmosSettings(endpoint=cosmos_server.endpoint,
                              database=f"azure-{uuid4().hex[:8]}",
                              key=cosmos_server.key, verify_tls=False)
    CosmosDatastore(settings).create_containers_if_missing()  # Bicep's containers
    container = azure_services(load({
        "STOCKSTREAM_EVENT_STORE": "cosmos",
        "COSMOS__accountEndpoint": settings.endpoint,
        "COSMOS_KEY": settings.key or "",
        "COSMOS_DATABASE": settings.database,
    }), clock, broker=broker)
    use_services(container)
    yield container
    use_services(None)
    container.close()


def processes_change_feed(azure: Services) -> func.DocumentList:
    """Every document of the processes container, as the change-feed trigger hands them
    over (the test server's change feed is a stub, so they are queried): order, transfer
    and group events and the processes' wake-up companions."""
    assert azure.orders is not None
    store: Any = azure.orders.orders
    container = store.app.factory.datastore.container("processes")
    documents = list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    return func.DocumentList([func.Document.from_dict(d) for d in documents])


def relay_the_processes_twice(azure: Services) -> None:
    """Hand the processes container's documents to ``relay_process_events`` as a
    ``func.DocumentList``, twice (a redelivered batch, which must change nothing)."""
    feed = processes_change_feed(azure)
    relay = FUNCTIONS["relay_process_events"].get_user_function()
    relay(documents=feed)
    relay(documents=feed)


def published_process(messages: list[Any], kind: ProcessKind, key: str,
                      version: int) -> list[dict[str, Any]]:
    """Check that ``messages`` are the process's events, versions 1..``version`` once
    each, in its session, with its application properties and none of a stock event's;
    return their CloudEvents documents, each validated against the registry."""
    assert sorted(m.message_id for m in messages) == sorted(
        kind.event_id(key, v) for v in range(1, version + 1))
    assert {m.session_id for m in messages} == {kind.session_id(key)}
    for m in messages:
        properties = dict(m.application_properties)
        assert (properties["process"], properties["processId"]) == (kind.name, key)
        assert "sku" not in properties and "location" not in properties
    documents = [json.loads(m.body) for m in messages]
    for document in documents:
        validate_cloudevent(document)
        assert document["data"][kind.id_field] == key
    return documents
