"""Order and location-group streams in Cosmos DB, with the process index: the Azure
counterpart of :mod:`adapters.sqlite.process_streams`.

The streams are stored exactly as stock streams are (:mod:`adapters.cosmos.persistence`,
the same recorder: one immutable document per event, one transactional batch per save, a
409 for a lost race), in a container of their own, ``processes`` (partition key
``/originator_id``): the stock ``events`` container's change feed is the outbox of stock
events, and the stock relay and projections read it as such.

The wake-up of a process (when the sweep should look at it) is a **companion document**
in the stream's own partition, ``{id: "wake-up", originator_id, kind, key, wake_at}``,
upserted by the *same* transactional batch as the save's events, after them: it commits
exactly with them, so an order killed between two steps is as surely due as its events
are stored. ``wake_at`` is fixed-width UTC text (string order is time order), or null
once the process is at rest for good; a null compares as undefined in Cosmos DB SQL, so
such a document never matches the due query. The due query is one cross-partition
query (``SELECT TOP @limit c.key FROM c WHERE c.kind = @kind AND c.wake_at <= @now ORDER
BY c.wake_at``), as the availability view's expiry sweep does. The companion has no
``originator_version``, so stream reads and the relay pass it by, as they pass memos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.cosmos import ContainerProxy

from adapters.cosmos import cosmos_connection, cosmos_env
from adapters.cosmos.persistence import (
    CosmosApplicationRecorder,
    CosmosFactory,
    mapped_errors,
)
from adapters.process_streams import PROCESS_INDEX, ProcessStore, WakeUp
from adapters.sortable_time import to_text
from application.settings import Settings

WAKE_UP_ID = "wake-up"
"""The id of a stream's companion wake-up document (one per process partition)."""


def wake_up_document(partition: str, wake_up: WakeUp) -> dict[str, Any]:
    """The companion document that says when process ``wake_up.key`` wants looking at."""
    return {
        "id": WAKE_UP_ID,
        "originator_id": partition,
        "kind": wake_up.kind,
        "key": wake_up.key,
        "wake_at": None if wake_up.wake_at is None else to_text(wake_up.wake_at),
    }


class CosmosProcessIndexRecorder(CosmosApplicationRecorder):
    """The Cosmos DB events recorder, plus each process's wake-up in the same batch."""

    def companion_operations(
        self, partition: str, **kwargs: Any
    ) -> list[tuple[str, tuple[dict[str, Any]]]]:
        wake_ups: Sequence[WakeUp] = kwargs.get(PROCESS_INDEX) or ()
        # One stream per save, one process per stream: the last wake-up is the one.
        return [("upsert", (wake_up_document(partition, wake_ups[-1]),))] if wake_ups else []

    def select_due(self, kind: str, now: datetime, limit: int) -> list[str]:
        """Keys of ``kind`` whose wake-up is at or before ``now``, earliest first."""
        container: ContainerProxy = self.container
        with mapped_errors():
            found = container.query_items(
                "SELECT TOP @limit c.key FROM c WHERE c.kind = @kind AND c.wake_at <= @now "
                "ORDER BY c.wake_at",
                parameters=[
                    {"name": "@limit", "value": int(limit)},
                    {"name": "@kind", "value": kind},
                    {"name": "@now", "value": to_text(now)},
                ],
                enable_cross_partition_query=True,
            )
            return [str(d["key"]) for d in found]


class CosmosProcessFactory(CosmosFactory):
    """The Cosmos DB persistence module with the process index (``processes`` container)."""

    def application_recorder(self) -> CosmosProcessIndexRecorder:
        return CosmosProcessIndexRecorder(self.datastore, self.settings.processes_container)


class CosmosProcessStore(ProcessStore):
    """Order and location-group streams in the ``processes`` container of a database."""

    def __init__(self, endpoint: str, database: str, *,
                 env: Mapping[str, str] | None = None, **connection: Any) -> None:
        """``connection``: the keyword arguments of :func:`adapters.cosmos.cosmos_env`
        (key or identity, TLS, timeouts), as for ``CosmosStockItems``."""
        super().__init__({
            **cosmos_env(endpoint, database, **connection),
            "PERSISTENCE_MODULE": f"{__name__}:CosmosProcessFactory",
            **(env or {}),
        })

    @property
    def factory(self) -> CosmosProcessFactory:
        factory = self.app.factory
        assert isinstance(factory, CosmosProcessFactory)
        return factory

    def create_containers_if_missing(self) -> None:
        """Create the database and its containers, ``processes`` among them (tests;
        Bicep in Azure)."""
        self.factory.create_containers_if_missing()


def open_cosmos_process_store(settings: Settings) -> CosmosProcessStore:
    """The process store of the Azure composition root: the same account, database,
    identity and TLS rule as the stock event store (``adapters.cosmos.open_cosmos_stock_items``)."""
    return CosmosProcessStore(**cosmos_connection(settings))
