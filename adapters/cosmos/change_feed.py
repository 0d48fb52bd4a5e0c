"""Reading the ``events`` container's change feed: documents back into stored events, and
the relay's published position (:class:`CosmosRelayPosition`).

``stored_event_from_document`` is the inverse of ``persistence.event_document``, for the
relay function: the Functions change-feed trigger hands over documents as written (plus
Cosmos's system properties).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError
from eventsourcing.persistence import StoredEvent

from adapters.cosmos.persistence import (
    CosmosDatastore,
    CosmosSettings,
    lost_race,
    unavailable_on_failure,
)
from application.ports import Clock, RelayPosition
from application.views import RelayStatus


def stored_event_from_document(document: dict[str, Any]) -> StoredEvent | None:
    """The stored event a change-feed document holds, or None for any other document."""
    try:
        return StoredEvent(
            originator_id=UUID(str(document["originator_id"])),
            originator_version=int(document["originator_version"]),
            topic=str(document["topic"]),
            state=base64.b64decode(document["state"]),
        )
    except (KeyError, ValueError, TypeError):
        return None


def document_age_seconds(document: dict[str, Any], now_epoch: float) -> float | None:
    """Seconds since Cosmos DB committed the document (its ``_ts``), for relay lag."""
    ts = document.get("_ts")
    return max(now_epoch - float(ts), 0.0) if isinstance(ts, int | float) else None


# ------------------------------------------------------------------ relay position


RELAY_POSITION_ID = "stockstream-relay-position"
"""The relay's position document in the leases container. The change-feed trigger's own
lease documents are named ``<lease prefix><account>_<database>_<container>..<range>``
(prefix ``relay-``), so this id never collides with them."""

_RETRIES = 5


class CosmosRelayPosition(RelayPosition):
    """What the change-feed relay has published, and what is committed beyond it.

    What can be measured honestly from Python: the Functions trigger keeps its position in
    lease documents whose continuation tokens are opaque per-range LSNs, and neither the
    change feed processor's estimator nor a way to compare an LSN with a document exists in
    the Python SDK. So the relay records its own position after each published batch: the
    newest ``_ts`` (commit time, whole seconds) it has published, kept monotonic in one
    document of the leases container (written at most once per second of ``_ts``, and
    only when it moves). The metrics timer then asks the events container for events
    committed after that second: ``COUNT`` and ``MIN(_ts)`` of ``_ts > position``, two
    index-only cross-partition queries.

    That is exact when the whole relay stops (Service Bus unreachable, a role missing, the
    app stopped): the position stays, and the oldest unpublished event's age grows with
    the clock. It is a lower bound when one lease range is stuck (a poison document) while
    others move the position past it; that case retries forever and shows as relay
    failures (the function-failures alert). Events committed in the same second as the
    position count as published; before the relay's first batch everything is unpublished,
    which after a lease reset (``start_from_beginning``) is the truth.
    """

    def __init__(self, settings: CosmosSettings, clock: Clock) -> None:
        self._datastore = CosmosDatastore(settings)
        self._events = settings.events_container
        self._leases = settings.leases_container
        self._clock = clock
        self._known = 0  # the highest position this process has read or written

    def advance(self, documents: Sequence[dict[str, Any]]) -> None:
        newest = max((int(d["_ts"]) for d in documents
                      if isinstance(d.get("_ts"), int | float)
                      and stored_event_from_document(d) is not None), default=0)
        if newest <= self._known:
            return
        with unavailable_on_failure():
            container = self._datastore.container(self._leases)
            for _ in range(_RETRIES):
                current = self._read(container)
                stored = int(current["published_ts"]) if current else 0
                if stored >= newest:
                    self._known = stored
                    return
                document = {"id": RELAY_POSITION_ID, "published_ts": newest,
                            "recorded_at": self._clock.now().isoformat()}
                try:
                    if current is None:
                        container.create_item(document)
                    else:
                        container.replace_item(RELAY_POSITION_ID, document,
                                               etag=current["_etag"],
                                               match_condition=MatchConditions.IfNotModified)
                except CosmosHttpResponseError as error:
                    if lost_race(error):
                        continue  # another instance moved it: read again
                    raise
                self._known = newest
                return

    def position(self) -> int:
        """The newest ``_ts`` published (0: nothing yet)."""
        with unavailable_on_failure():
            current = self._read(self._datastore.container(self._leases))
        return int(current["published_ts"]) if current else 0

    def status(self) -> RelayStatus:
        published = self.position()
        parameters: list[dict[str, Any]] = [{"name": "@position", "value": published}]
        # Event documents only (they have an originator_version), committed after it.
        where = "WHERE c._ts > @position AND IS_DEFINED(c.originator_version)"
        with unavailable_on_failure():
            events = self._datastore.container(self._events)
            counts: list[Any] = list(events.query_items(
                f"SELECT VALUE COUNT(1) FROM c {where}", parameters=parameters,
                enable_cross_partition_query=True))
            oldest: list[Any] = list(events.query_items(
                f"SELECT VALUE MIN(c._ts) FROM c {where}", parameters=parameters,
                enable_cross_partition_query=True))
        depth = sum(int(n) for n in counts if n is not None)
        first = min((float(t) for t in oldest if t is not None), default=None)
        if depth == 0 or first is None:
            return RelayStatus(0, None)
        age = max(self._clock.now().timestamp() - first, 0.0)
        return RelayStatus(depth, age)

    @staticmethod
    def _read(container: ContainerProxy) -> dict[str, Any] | None:
        # A query, not a point read: a missing point read is a 500 on the test server.
        found = list(container.query_items(
            "SELECT * FROM c WHERE c.id = @id",
            parameters=[{"name": "@id", "value": RELAY_POSITION_ID}],
            partition_key=RELAY_POSITION_ID))
        return found[0] if found else None
