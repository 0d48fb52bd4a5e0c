"""Reconciliation's stores in Cosmos DB: holds, count sessions, the movement ledger.

Container ``reconciliation``, partition key ``/pk`` (Bicep provisions it;
:meth:`CosmosDatastore.create_containers_if_missing` creates it for tests). Every document
carries a ``kind``, and every query filters on it, so a SKU that happens to be named
``held`` or ``sessions`` cannot mix its ledger document into the holds or the sessions::

    hold        {"pk": "held", "id": "<hold id>", "kind": "held", "hold_id": ..,
                 "command": "count" | "adjustment", "sku": .., "status": .., ...}
    session     {"pk": "sessions", "id": "<session id>", "kind": "session", ...}
    movements   {"pk": "<sku>", "id": "<location>", "kind": "movements", "sku": ..,
                 "location": .., "version": 12, "last_counted_at": "<time>" | null,
                 "days": {"2026-03-01": 14, "2026-03-02": 3}}

- Holds and sessions are one logical partition each, so every read of them is a
  single-partition query. Both are small: holds wait for a person, and the schedule reads
  at most a year of sessions. A hold's fields are ``application.holds.hold_record``'s.
  Counts held before holds had ids have ``id`` = ``<sku>|<location>|<count_id>`` and no
  ``hold_id``: they are still found by count, and by their derived hold id (a scan of the
  pending holds, only when no document has that id), and a resolution rewrites them with
  their hold id.
- The movement ledger is the store of ``projections.movements``, **fed per event** from
  the availability subscription (as on the embedded host). Each SKU-location's document
  records the last stream version it reflects, and :meth:`CosmosMovementLedger.apply`
  adds an entry only if the document is at the entry's version less one, writing with the
  read ``_etag`` (``IfNotModified``; a first write is a create). A lost race (409/412)
  answers False, and the projection reads the version again: a redelivered message
  therefore changes nothing, and a gap is filled from the stream by the projection.
  Cosmos DB has no global commit order, so this ledger is never rebuilt from a log.
- The ledger lives here, not in ``views``: a ``views`` document already has ``pk`` = SKU
  and ``id`` = location (the availability row), and the view's whole-container queries
  (``SUM(c.version)``, the overdue sweep, ``rows()``) would have to learn to skip it.
  Its reads (:meth:`units_since`, :meth:`stock_items`) are cross-partition queries, run
  by the daily schedule and the ``due`` route, not per event.

Reads are queries, not point reads (a missing point read is a 500 on the test server;
see docs/cosmos.md). Failures surface as ``application.ports.StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import date, datetime
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
from application.cadence import StockKey
from application.holds import (
    HeldCount,
    HeldStatus,
    Hold,
    HoldStore,
    hold_of_record,
    hold_record,
)
from application.reconciliation import SessionHistory, SessionSummary
from projections.movements import LedgerEntry, MovementLedgerStore

HELD = "held"
SESSIONS = "sessions"
MOVEMENTS = "movements"

_RETRIES = 8
"""Re-reads after a lost race before giving up (another writer kept moving the document)."""






class _Reconciliation:
    """The ``reconciliation`` container, shared by the three stores below.

    Like the view store, it shares the process's ``CosmosClient`` and contacts nothing
    until first used.
    """

    def __init__(self, settings: CosmosSettings) -> None:
        self._datastore = CosmosDatastore(settings)
        self._container_name = settings.reconciliation_container

    @property
    def _container(self) -> ContainerProxy:
        return self._datastore.container(self._container_name)

    def _query(self, pk: str, kind: str, where: str = "",
               parameters: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Documents of one kind in one partition (the partition key named in the WHERE
        clause, as the test server requires)."""
        return list(self._container.query_items(
            f"SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind{where}",
            parameters=[{"name": "@pk", "value": pk}, {"name": "@kind", "value": kind},
                        *(parameters or [])],
            partition_key=pk,
        ))

    def close(self) -> None:
        """Nothing to release: the client belongs to the process."""


# ---------------------------------------------------------------- held counts


def _hold_document(hold: Hold, document_id: str | None = None) -> dict[str, Any]:
    return {"id": document_id or hold.hold_id, "pk": HELD, "kind": HELD,
            **hold_record(hold, to_text)}


def _hold(document: dict[str, Any]) -> Hold:
    return hold_of_record(document, from_text)


class CosmosHolds(_Reconciliation, HoldStore):
    """Counts and adjustments held for approval: partition ``held``, id = hold id."""

    def _by_id(self, hold_id: str) -> dict[str, Any] | None:
        found = self._query(HELD, HELD, " AND (c.id = @id OR c.hold_id = @id)",
                            [{"name": "@id", "value": hold_id}])
        if found:
            return found[0]
        # A count held before hold ids: its document id is sku|location|count_id, and it
        # has no hold_id until it is resolved.
        for document in self._query(HELD, HELD, " AND c.status = @status",
                                    [{"name": "@status", "value": "pending"}]):
            if "hold_id" not in document and _hold(document).hold_id == hold_id:
                return document
        return None

    def _by_count(self, sku: str, location: str, count_id: str) -> dict[str, Any] | None:
        found = self._query(HELD, HELD, " AND c.sku = @sku AND c.location = @location"
                            " AND c.count_id = @count_id",
                            [{"name": "@sku", "value": sku},
                             {"name": "@location", "value": location},
                             {"name": "@count_id", "value": count_id}])
        return found[0] if found else None

    def hold(self, held: Hold) -> bool:
        with unavailable_on_failure():
            try:
                self._container.create_item(_hold_document(held))
            except CosmosHttpResponseError as error:
                if error.status_code == 409:
                    return False  # already held: the first hold stands
                raise
            return True

    def get(self, hold_id: str) -> Hold | None:
        with unavailable_on_failure():
            document = self._by_id(hold_id)
        return None if document is None else _hold(document)

    def find(self, sku: str, location: str, count_id: str) -> HeldCount | None:
        with unavailable_on_failure():
            document = self._by_count(sku, location, count_id)
        hold = None if document is None else _hold(document)
        return hold if isinstance(hold, HeldCount) else None

    def matching(self, count_id: str | None = None, sku: str | None = None,
                 location: str | None = None,
                 status: HeldStatus | None = "pending") -> list[Hold]:
        where, parameters = "", []
        for name, value in (("count_id", count_id), ("sku", sku), ("location", location),
                            ("status", status)):
            if value is not None:
                where += f" AND c.{name} = @{name}"
                parameters.append({"name": f"@{name}", "value": value})
        with unavailable_on_failure():
            found = [_hold(d) for d in self._query(HELD, HELD, where, parameters)]
        return sorted(found, key=lambda h: (h.held_at, h.sku, h.location,
                                            getattr(h, "count_id", ""), h.hold_id))

    def resolve(self, held: Hold, expected: HeldStatus = "pending") -> bool:
        """Rewrite the hold if its stored status is ``expected`` (etag-guarded: of two
        racing writers one wins, the other re-reads and finds another status)."""
        with unavailable_on_failure():
            for _ in range(_RETRIES):
                current = self._by_id(held.hold_id)
                if current is None or current.get("status") != expected:
                    return False
                try:
                    self._container.replace_item(
                        current["id"], _hold_document(held, current["id"]),
                        etag=current["_etag"], match_condition=MatchConditions.IfNotModified)
                except CosmosHttpResponseError as error:
                    if lost_race(error):
                        continue
                    raise
                return True
        return False


# ------------------------------------------------------------ session history


class CosmosSessionHistory(_Reconciliation, SessionHistory):
    """Count-session summaries: partition ``sessions``, id = session id."""

    def record(self, summary: SessionSummary) -> None:
        fields = asdict(summary)
        fields["finished_at"] = to_text(summary.finished_at)
        with unavailable_on_failure():
            self._container.upsert_item(
                {"id": summary.session_id, "pk": SESSIONS, "kind": SESSIONS, **fields})

    def sessions(self, limit: int = 365) -> list[SessionSummary]:
        with unavailable_on_failure():
            found = list(self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE c.pk = @pk AND c.kind = @pk"
                " ORDER BY c.finished_at DESC",
                parameters=[{"name": "@limit", "value": int(limit)},
                            {"name": "@pk", "value": SESSIONS}],
                partition_key=SESSIONS,
            ))
        names = SessionSummary.__dataclass_fields__
        return [SessionSummary(**{**{k: d[k] for k in names},
                                  "finished_at": from_text(str(d["finished_at"]))})
                for d in reversed(found)]


# ------------------------------------------------------------ movement ledger


class CosmosMovementLedger(_Reconciliation, MovementLedgerStore):
    """The movement ledger, one document per SKU-location (see the module docstring)."""

    def _document(self, sku: str, location: str) -> dict[str, Any] | None:
        found = self._query(sku, MOVEMENTS, " AND c.id = @location",
                            [{"name": "@location", "value": location}])
        return found[0] if found else None

    def version_of(self, sku: str, location: str) -> int:
        with unavailable_on_failure():
            document = self._document(sku, location)
        return int(document["version"]) if document else 0

    def apply(self, entry: LedgerEntry) -> bool:
        with unavailable_on_failure():
            current = self._document(entry.sku, entry.location)
            if (int(current["version"]) if current else 0) != entry.version - 1:
                return False
            days: dict[str, int] = dict(current["days"]) if current else {}
            last_counted = current["last_counted_at"] if current else None
            if entry.units:
                day = entry.day.isoformat()
                days[day] = days.get(day, 0) + entry.units
            if entry.counted_at is not None:
                counted = to_text(entry.counted_at)
                if last_counted is None or counted > last_counted:
                    last_counted = counted
            document = {
                "id": entry.location, "pk": entry.sku, "kind": MOVEMENTS, "sku": entry.sku,
                "location": entry.location, "version": entry.version,
                "last_counted_at": last_counted, "days": days,
            }
            try:
                if current is None:
                    self._container.create_item(document)
                else:
                    self._container.replace_item(
                        entry.location, document, etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified)
            except CosmosHttpResponseError as error:
                if lost_race(error):
                    return False
                raise
            return True

    def _all(self) -> Iterator[dict[str, Any]]:
        """Every ledger document (cross-partition; pages fetched while iterating)."""
        yield from self._container.query_items(
            "SELECT * FROM c WHERE c.kind = @kind",
            parameters=[{"name": "@kind", "value": MOVEMENTS}],
            enable_cross_partition_query=True,
        )

    def units_since(self, day: date) -> dict[StockKey, int]:
        since = day.isoformat()
        moved: dict[StockKey, int] = {}
        with unavailable_on_failure():
            for document in self._all():
                units = sum(int(u) for d, u in document["days"].items() if d >= since)
                if units:
                    moved[(str(document["sku"]), str(document["location"]))] = units
        return moved

    def stock_items(self) -> dict[StockKey, datetime | None]:
        with unavailable_on_failure():
            return {(str(d["sku"]), str(d["location"])):
                    None if d["last_counted_at"] is None else from_text(d["last_counted_at"])
                    for d in self._all()}

    def forget_before(self, day: date) -> None:
        """Drop older days from each document (etag-guarded; a lost race re-reads)."""
        keep_from = day.isoformat()
        with unavailable_on_failure():
            stale = [(str(d["sku"]), str(d["location"])) for d in self._all()
                     if any(k < keep_from for k in d["days"])]
            for sku, location in stale:
                for _ in range(_RETRIES):
                    current = self._document(sku, location)
                    if current is None:
                        break
                    kept = {k: v for k, v in current.items() if not k.startswith("_")}
                    kept["days"] = {k: v for k, v in current["days"].items() if k >= keep_from}
                    try:
                        self._container.replace_item(
                            location, kept, etag=current["_etag"],
                            match_condition=MatchConditions.IfNotModified)
                        break
                    except CosmosHttpResponseError as error:
                        if not lost_race(error):
                            raise

