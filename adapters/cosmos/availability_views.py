"""The availability view in Cosmos DB: one document per SKU-location in ``views``.

Layout (container ``views``, partition key ``/pk``; Bicep provisions it, and
:meth:`CosmosDatastore.create_containers_if_missing` creates it for tests)::

    {"id": "<location>", "pk": "<sku>", "sku": "<sku>", "location": "<location>",
     "version": 7, "on_hand": 20, "reserved": 3, "available": 17,
     "held": {"damaged": 2, "quality_control": 0}, "incoming_total": 12, "in_transit": 10,
     "updated_at": "2026-03-01T09:00:00.000000Z",
     "expiries": {"order-1": "2026-03-01T10:00:00.000000Z"},
     "next_expiry": "2026-03-01T10:00:00.000000Z"}

- ``held``, ``incoming_total`` and ``in_transit`` (stock states, docs/stock-states.md) came after
  the first documents were written: a document without them reads as nothing held or
  incoming (what every row then meant), and the next write of its row adds them. No
  migration pass is needed; sellable is on hand less held, so it is not stored.
- One SKU is one logical partition, so ``for_sku`` is a single-partition query.
  ``id`` is the location: ids are unique within a partition, so a SKU-location has
  exactly one document, and two first writers cannot both create it (409).
- The version the row reflects lives *in the row*: the view and its tracking are one
  document, written in one atomic single-item write. That is stronger than a
  transactional batch of a view document and a tracking document, and it avoids the
  test server's broken batch ``replace``/``upsert``.
- ``apply`` reads the document, checks ``version == change.version - 1`` and writes with
  the read ``_etag`` (``IfNotModified``): a writer that lost the race gets 412 and the
  call returns False; at version 1 it creates, and a lost race is a 409 → False.
- Open reservations' expiries are a map inside the document; ``next_expiry`` is the
  earliest (or null), so the sweep's ``overdue_reservations`` is one cross-partition
  query on an indexed scalar. Times are fixed-width UTC text (the SQLite view's format),
  so string order is time order.

Failures: SDK errors are translated by :func:`adapters.cosmos.persistence.mapped_errors`
and then surface as ``application.ports.StoreUnavailable`` (transient: the consumer's
message is retried, the HTTP read answers 503). Only the 409/412 of a lost race is an
answer (False), never an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from adapters.cosmos.persistence import (
    CosmosDatastore,
    CosmosSettings,
    lost_race,
    unavailable_on_failure,
)
from adapters.sortable_time import from_text, to_text
from application.ports import AvailabilityViews
from application.views import Availability, AvailabilityChange, LocationAvailability, ViewRow


def view_document(row: ViewRow, expiries: dict[str, str]) -> dict[str, Any]:
    """The document holding one SKU-location's row, its version and its expiries."""
    return {
        "id": row.location,
        "pk": row.sku,
        "sku": row.sku,
        "location": row.location,
        "version": row.version,
        "on_hand": row.on_hand,
        "reserved": row.reserved,
        "available": row.available,
        "held": row.held,
        "incoming_total": row.incoming_total,
        "in_transit": row.in_transit,
        "updated_at": to_text(row.updated_at),
        "expiries": expiries,
        "next_expiry": min(expiries.values()) if expiries else None,
    }


def _row(document: dict[str, Any]) -> ViewRow:
    held = document.get("held") or {}
    return ViewRow(
        sku=str(document["sku"]),
        location=str(document["location"]),
        version=int(document["version"]),
        on_hand=int(document["on_hand"]),
        reserved=int(document["reserved"]),
        available=int(document["available"]),
        updated_at=from_text(str(document["updated_at"])),
        damaged=int(held.get("damaged", 0)),
        quality_control=int(held.get("quality_control", 0)),
        incoming_total=int(document.get("incoming_total", 0)),
        in_transit=int(document.get("in_transit", 0)),
    )


class CosmosAvailabilityViews(AvailabilityViews):
    """The availability view in the ``views`` container (see the module docstring).

    Instances are cheap: they share the process's ``CosmosClient`` (one per endpoint and
    identity, :func:`adapters.cosmos.persistence.cosmos_client`) and contact nothing
    until first used, so a worker starts even while Cosmos DB is unreachable.
    """

    def __init__(self, settings: CosmosSettings) -> None:
        self._datastore = CosmosDatastore(settings)
        self._container_name = settings.views_container

    @property
    def _container(self) -> ContainerProxy:
        return self._datastore.container(self._container_name)

    def _document(self, sku: str, location: str) -> dict[str, Any] | None:
        # A query, not a point read: a missing point read is a 500 on the test server.
        # It names the partition key in the WHERE clause, which that server requires.
        found = list(
            self._container.query_items(
                "SELECT * FROM c WHERE c.pk = @sku AND c.id = @location",
                parameters=[
                    {"name": "@sku", "value": sku},
                    {"name": "@location", "value": location},
                ],
                partition_key=sku,
            )
        )
        return found[0] if found else None

    def version_of(self, sku: str, location: str) -> int:
        with unavailable_on_failure():
            document = self._document(sku, location)
        return int(document["version"]) if document else 0

    def apply(self, change: AvailabilityChange) -> bool:
        with unavailable_on_failure():
            current = self._document(change.sku, change.location)
            if (int(current["version"]) if current else 0) != change.version - 1:
                return False
            expiries: dict[str, str] = dict(current["expiries"]) if current else {}
            if change.reservation_expiry is not None:
                order_id, expires_at = change.reservation_expiry
                if expires_at is None:
                    expiries.pop(order_id, None)
                else:
                    expiries[order_id] = to_text(expires_at)
            if change.closed_reservation is not None:
                expiries.pop(change.closed_reservation, None)
            document = view_document(
                ViewRow(change.sku, change.location, change.version, change.on_hand,
                        change.reserved, change.available, change.occurred_at,
                        change.damaged, change.quality_control, change.incoming_total,
                        change.in_transit),
                expiries,
            )
            try:
                if current is None:
                    self._container.create_item(document)
                else:
                    self._container.replace_item(
                        change.location,
                        document,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except CosmosHttpResponseError as error:
                if lost_race(error):
                    return False
                raise
            return True

    def for_sku(self, sku: str) -> Availability:
        locations = [
            LocationAvailability(r.location, r.on_hand, r.reserved, r.available, r.version,
                                 r.updated_at, r.damaged, r.quality_control, r.incoming_total,
                                 r.in_transit)
            for r in self.rows(sku)
        ]
        return Availability.of(sku, locations)

    def overdue_reservations(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Cross-partition: documents whose earliest expiry is due, earliest first.

        A null ``next_expiry`` compares as undefined in Cosmos DB SQL, so rows without an
        open expiring reservation never match.
        """
        with unavailable_on_failure():
            found = self._container.query_items(
                "SELECT TOP @limit c.sku, c.location FROM c WHERE c.next_expiry <= @now"
                " ORDER BY c.next_expiry",
                parameters=[
                    {"name": "@limit", "value": int(limit)},
                    {"name": "@now", "value": to_text(now)},
                ],
                enable_cross_partition_query=True,
            )
            return [(str(d["sku"]), str(d["location"])) for d in found]

    def rows(self, sku: str | None = None) -> Iterator[ViewRow]:
        """One SKU's rows by location (one partition); or every row, ordered by SKU and
        location only within a SKU (a two-property cross-partition ORDER BY needs a
        composite index, which the container does not declare)."""
        with unavailable_on_failure():
            if sku is None:
                documents = self._container.query_items(
                    "SELECT * FROM c ORDER BY c.pk", enable_cross_partition_query=True
                )
            else:
                documents = self._container.query_items(
                    "SELECT * FROM c WHERE c.pk = @sku ORDER BY c.id",
                    parameters=[{"name": "@sku", "value": sku}],
                    partition_key=sku,
                )
            # Pages are fetched while iterating, so failures surface inside this block.
            for document in documents:
                yield _row(document)

    def replace(self, row: ViewRow, expiries: dict[str, datetime]) -> None:
        """Overwrite the row whatever its version (repair): one ``upsert_item``."""
        document = view_document(row, {o: to_text(t) for o, t in expiries.items()})
        with unavailable_on_failure():
            self._container.upsert_item(document)

    def events_applied(self) -> int:
        """``SUM(c.version)`` over every row (one cross-partition aggregate query).

        With no rows Cosmos DB may answer ``[]`` (an undefined sum) or ``[0]``; both are 0.
        """
        with unavailable_on_failure():
            # ``SELECT VALUE`` yields bare numbers, not the documents the SDK's types say.
            sums: list[Any] = list(
                self._container.query_items(
                    "SELECT VALUE SUM(c.version) FROM c", enable_cross_partition_query=True
                )
            )
            return sum(int(s) for s in sums if s is not None)

    def close(self) -> None:
        """Nothing to release: the client belongs to the process (see the class docstring)."""
