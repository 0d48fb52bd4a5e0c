"""Azure Cosmos DB: the production event store (the outbox is its change feed).

``CosmosStockItems`` is the port's one implementation (``EventSourcedStockItems``) on the
Cosmos DB persistence module in :mod:`adapters.cosmos.persistence`; the composition root
opens it with :func:`open_cosmos_stock_items` when ``STOCKSTREAM_EVENT_STORE=cosmos``.
See ``docs/cosmos.md`` for the document layout, indexing and request-unit costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from adapters.cosmos.persistence import CosmosFactory, CosmosSettings, is_loopback
from adapters.event_store import IDEMPOTENCY_WINDOW, EventSourcedStockItems
from application.settings import Settings

PERSISTENCE_MODULE = "adapters.cosmos.persistence:CosmosFactory"


def cosmos_env(
    endpoint: str,
    database: str,
    *,
    key: str | None = None,
    client_id: str | None = None,
    verify_tls: bool = True,
    connection_timeout: float | None = None,
    retry_total: int | None = None,
) -> dict[str, str]:
    """The ``eventsourcing`` settings of an event store in Cosmos DB.

    Every key is set (empty when unused), so nothing leaks in from ``os.environ``,
    which the library would otherwise merge under the constructor's settings.
    """
    return {
        "PERSISTENCE_MODULE": PERSISTENCE_MODULE,
        "COSMOS_ENDPOINT": endpoint,
        "COSMOS_DATABASE": database,
        "COSMOS_KEY": key or "",
        "AZURE_CLIENT_ID": client_id or "",
        "COSMOS_VERIFY_TLS": "y" if verify_tls else "n",
        "COSMOS_CONNECTION_TIMEOUT": "" if connection_timeout is None else str(connection_timeout),
        "COSMOS_RETRY_TOTAL": "" if retry_total is None else str(retry_total),
    }


class CosmosStockItems(EventSourcedStockItems):
    """Stock streams in Cosmos DB: one logical partition per SKU-location.

    It offers no ``OutboxReader``: Cosmos DB has no global commit order, so the relay
    reads the events container's change feed instead.
    """

    def __init__(
        self,
        endpoint: str,
        database: str,
        *,
        key: str | None = None,
        client_id: str | None = None,
        verify_tls: bool = True,
        connection_timeout: float | None = None,
        retry_total: int | None = None,
        env: Mapping[str, str] | None = None,
        memo_window: timedelta = IDEMPOTENCY_WINDOW,
    ) -> None:
        settings = cosmos_env(
            endpoint,
            database,
            key=key,
            client_id=client_id,
            verify_tls=verify_tls,
            connection_timeout=connection_timeout,
            retry_total=retry_total,
        )
        super().__init__({**settings, **(env or {})}, memo_window=memo_window)

    @property
    def factory(self) -> CosmosFactory:
        factory = self.app.factory
        assert isinstance(factory, CosmosFactory)
        return factory

    def create_containers_if_missing(self) -> None:
        """Create the database and containers (tests and local set-up; Bicep in Azure)."""
        self.factory.create_containers_if_missing()


def open_cosmos_stock_items(settings: Settings) -> CosmosStockItems:
    """The event store the composition root uses when ``STOCKSTREAM_EVENT_STORE=cosmos``.

    Reads only ``settings``. An account key selects key auth (emulators, the test
    server); without one, ``DefaultAzureCredential`` (managed identity, pinned to
    ``AZURE_CLIENT_ID`` when set). TLS verification is skipped only for a keyed endpoint
    on this machine (the emulators and ``@vercel/cosmosdb-server`` use self-signed
    certificates); a remote endpoint is always verified.
    """
    return CosmosStockItems(**cosmos_connection(settings),
                            memo_window=settings.idempotency_window)


def cosmos_connection(settings: Settings) -> dict[str, Any]:
    """Where and how the stores of the Azure root reach Cosmos DB (endpoint, database,
    key or identity, TLS rule: see :func:`open_cosmos_stock_items`), from ``settings``."""
    if not settings.cosmos_endpoint:
        raise ValueError("the Cosmos DB event store needs COSMOS__accountEndpoint")
    return {
        "endpoint": settings.cosmos_endpoint,
        "database": settings.cosmos_database,
        "key": settings.cosmos_key,
        "client_id": settings.azure_client_id,
        "verify_tls": not (settings.cosmos_key and is_loopback(settings.cosmos_endpoint)),
    }


__all__ = [
    "PERSISTENCE_MODULE",
    "CosmosFactory",
    "CosmosSettings",
    "CosmosStockItems",
    "cosmos_connection",
    "cosmos_env",
    "open_cosmos_stock_items",
]
