"""The reconciliation stores' contract (holds of counts and adjustments, session history, the
movement ledger's store), passed by SQLite and by Cosmos DB (the real SDK against the
test server), plus what only one back end has: holds written before hold ids, the movement
projection's idempotence over a real command sequence on Cosmos DB, its gap filling from the
stream, and the reconciliation functions on Azure.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from adapters.clock import SystemClock
from adapters.cosmos import CosmosStockItems
from adapters.cosmos.local_server import CosmosServer
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings
from adapters.cosmos.reconciliation import (
    CosmosHolds,
    CosmosMovementLedger,
    CosmosSessionHistory,
)
from adapters.sqlite.reconciliation import SQLiteMovementLedger, SQLiteReconciliation
from application.cadence import LedgerEntry
from application.commands import StockCommands
from application.holds import HeldAdjustment, HeldCount, count_hold_id
from application.ports import HoldStore, MovementLedgerStore, SessionHistory
from application.reconciliation import SessionSummary
from application.settings import load
from composition import Services
from composition.azure import azure_services
from contracts.cloudevents import to_cloudevent
from contracts.topology import AVAILABILITY_SUBSCRIPTION
from domain.stock_item import StockItem
from functions.container import use_services
from projections.movements import MovementProjection
from tests.http.conftest import call

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
EVER = date(2000, 1, 1)


def held(sku: str = "SKU-1", count_id: str = "C1", *, location: str = "STORE-1",
         at: datetime = T0, percent: float | None = 12.5) -> HeldCount:
    return HeldCount(sku, location, count_id, counted=40, counted_at=at - DAY,
                     on_hand_at_count=30, drift_units=10, drift_percent=percent,
                     reason="drift of +10 units exceeds 5", session_id="S1", held_at=at)


def adjustment(hold_id: str = "adj-1", *, sku: str = "SKU-1", at: datetime = T0,
               key: str | None = "k-1") -> HeldAdjustment:
    return HeldAdjustment(hold_id, sku, "STORE-1", delta=-60, adjustment_reason="theft",
                          note="seen on camera", idempotency_key=key, on_hand_before=100,
                          percent=-60.0, reason="adjustment of -60 units exceeds 40",
                          held_at=at)


def summary(session_id: str, at: datetime, applied: int = 1) -> SessionSummary:
    return SessionSummary(session_id, at, rows=3, applied=applied, unchanged=1, held=1,
                          rejected=0, skipped=0, abs_drift_units=7, net_drift_units=-3,
                          mean_abs_drift_percent=4.25, max_abs_drift_units=5)


class ReconciliationStoresContract(ABC):
    """Every clause the reconciler and the schedule rely on."""

    @abstractmethod
    def stores(self) -> tuple[HoldStore, SessionHistory, MovementLedgerStore]:
        """Fresh, empty stores."""

    def feed(self, ledger: MovementLedgerStore, entries: list[LedgerEntry]) -> None:
        """Put ``entries`` into the ledger, each at its stream's next version."""
        for e in entries:
            assert ledger.apply(e) is True

    # ------------------------------------------------------------ held counts

    def test_a_hold_is_kept_once_and_read_back_whole(self) -> None:
        holds, _, _ = self.stores()
        first = held()
        assert holds.hold(first) is True
        assert holds.hold(held(at=T0 + DAY)) is False  # the same key: the first stands
        assert holds.find("SKU-1", "STORE-1", "C1") == first
        assert holds.find("SKU-1", "STORE-1", "C2") is None
        assert holds.find("SKU-1", "STORE-2", "C1") is None
        holds.hold(held("SKU-2", percent=None))
        assert holds.find("SKU-2", "STORE-1", "C1") == held("SKU-2", percent=None)

    def test_holds_match_every_filter_oldest_first(self) -> None:
        holds, _, _ = self.stores()
        later, earlier, other = (held("SKU-1", "C1", at=T0 + DAY), held("SKU-2", "C1"),
                                 held("SKU-1", "C2", location="STORE-2", at=T0 + 2 * DAY))
        for h in (later, earlier, other):
            holds.hold(h)
        assert holds.matching() == [earlier, later, other]
        assert holds.matching(count_id="C1") == [earlier, later]
        assert holds.matching(sku="SKU-1") == [later, other]
        assert holds.matching(location="STORE-2") == [other]
        assert holds.matching("C1", "SKU-2", "STORE-1") == [earlier]
        assert holds.matching(count_id="C9") == []

    def test_a_resolved_hold_keeps_its_status_and_leaves_the_pending_list(self) -> None:
        holds, _, _ = self.stores()
        pending = held()
        holds.hold(pending)
        holds.hold(held("SKU-2"))
        approved = HeldCount(**{**vars(pending), "status": "approved",
                                "resolved_at": T0 + DAY, "applied_delta": 10})
        assert holds.resolve(approved) is True
        assert holds.find("SKU-1", "STORE-1", "C1") == approved
        assert [h.sku for h in holds.matching()] == ["SKU-2"]
        assert holds.matching(status="approved") == [approved]
        assert len(holds.matching(status=None)) == 2
        assert holds.resolve(held("SKU-9")) is False  # never held: nothing appears
        assert holds.find("SKU-9", "STORE-1", "C1") is None

    def test_a_hold_is_resolved_only_from_the_status_expected(self) -> None:
        holds, _, _ = self.stores()
        pending = held()
        holds.hold(pending)
        approved = HeldCount(**{**vars(pending), "status": "approved", "resolved_at": T0})
        dismissed = HeldCount(**{**vars(pending), "status": "dismissed", "resolved_at": T0})

        assert holds.resolve(approved, "pending") is True
        assert holds.resolve(dismissed, "pending") is False  # the approver came first
        assert holds.get(pending.hold_id) == approved
        recorded = HeldCount(**{**vars(approved), "applied_delta": 10})
        assert holds.resolve(recorded, "approved") is True
        assert holds.get(pending.hold_id) == recorded

    def test_holds_of_counts_and_adjustments_are_found_by_hold_id(self) -> None:
        holds, _, _ = self.stores()
        count, adjusted = held(), adjustment(at=T0 + DAY)
        keyless = adjustment("adj-2", sku="SKU-2", at=T0 + 2 * DAY, key=None)
        for h in (count, adjusted, keyless):
            assert holds.hold(h) is True
        assert holds.hold(adjustment()) is False

        assert count.hold_id == count_hold_id("SKU-1", "STORE-1", "C1")
        assert holds.get(count.hold_id) == count
        assert holds.get("adj-1") == adjusted and holds.get("adj-2") == keyless
        assert holds.get("adj-9") is None
        assert holds.matching() == [count, adjusted, keyless]
        assert holds.matching(sku="SKU-1") == [count, adjusted]
        assert holds.matching(count_id="C1") == [count]  # a count id names counts only
        dismissed = HeldAdjustment(**{**vars(adjusted), "status": "dismissed",
                                      "resolved_at": T0 + 3 * DAY})
        assert holds.resolve(dismissed) is True
        assert holds.get("adj-1") == dismissed
        assert holds.matching() == [count, keyless]

    # -------------------------------------------------------- session history

    def test_sessions_are_kept_oldest_first_and_a_repeat_replaces(self) -> None:
        _, history, _ = self.stores()
        assert history.sessions() == []
        for n in (2, 0, 1):
            history.record(summary(f"S{n}", T0 + n * DAY))
        history.record(summary("S1", T0 + DAY, applied=2))
        assert [s.session_id for s in history.sessions()] == ["S0", "S1", "S2"]
        assert history.sessions()[1] == summary("S1", T0 + DAY, applied=2)
        assert [s.session_id for s in history.sessions(limit=2)] == ["S1", "S2"]
        none = SessionSummary(**{**vars(summary("S3", T0 + 3 * DAY)),
                                 "mean_abs_drift_percent": None})
        history.record(none)
        assert history.sessions()[-1] == none

    # --------------------------------------------------- movement ledger reads

    def test_the_ledger_sums_units_by_day_and_keeps_the_latest_count(self) -> None:
        _, _, ledger = self.stores()
        assert ledger.units_since(date(2026, 1, 1)) == {}
        assert ledger.stock_items() == {}
        day1, day2 = T0.date(), (T0 + DAY).date()
        self.feed(ledger, [
            LedgerEntry("SKU-1", "STORE-1", 1, day1, 10),
            LedgerEntry("SKU-1", "STORE-1", 2, day1, 4),
            LedgerEntry("SKU-1", "STORE-1", 3, day2, 0, counted_at=T0 + 2 * DAY),
            LedgerEntry("SKU-1", "STORE-1", 4, day2, 3, counted_at=T0),  # an older count
            LedgerEntry("SKU-2", "STORE-1", 1, day2, 0),
            LedgerEntry("SKU-1", "STORE-2", 1, day2, 5),
        ])
        assert ledger.units_since(day1) == {("SKU-1", "STORE-1"): 17,
                                            ("SKU-1", "STORE-2"): 5}
        assert ledger.units_since(day2) == {("SKU-1", "STORE-1"): 3, ("SKU-1", "STORE-2"): 5}
        assert ledger.stock_items() == {("SKU-1", "STORE-1"): T0 + 2 * DAY,
                                        ("SKU-2", "STORE-1"): None,
                                        ("SKU-1", "STORE-2"): None}
        ledger.forget_before(day2)
        assert ledger.units_since(day1) == {("SKU-1", "STORE-1"): 3, ("SKU-1", "STORE-2"): 5}
        assert len(ledger.stock_items()) == 3  # forgetting movements keeps the items

    def test_the_ledger_takes_only_the_next_version_of_a_stream(self) -> None:
        _, _, ledger = self.stores()
        day = T0.date()
        assert ledger.version_of("SKU-1", "STORE-1") == 0
        assert ledger.apply(LedgerEntry("SKU-1", "STORE-1", 2, day, 7)) is False  # a gap
        assert ledger.stock_items() == {}
        self.feed(ledger, [LedgerEntry("SKU-1", "STORE-1", 1, day, 10),
                           LedgerEntry("SKU-1", "STORE-1", 2, day, 4, counted_at=T0)])
        assert ledger.version_of("SKU-1", "STORE-1") == 2
        assert ledger.version_of("SKU-1", "STORE-2") == 0

        for stale in (LedgerEntry("SKU-1", "STORE-1", 2, day, 4),  # a redelivery
                      LedgerEntry("SKU-1", "STORE-1", 1, day, 10),
                      LedgerEntry("SKU-1", "STORE-1", 4, day, 1)):  # a gap
            assert ledger.apply(stale) is False

        assert ledger.units_since(day) == {("SKU-1", "STORE-1"): 14}
        assert ledger.stock_items() == {("SKU-1", "STORE-1"): T0}
        assert ledger.version_of("SKU-1", "STORE-1") == 2


class TestSQLiteReconciliationStores(ReconciliationStoresContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> Iterator[None]:
        self.tables = SQLiteReconciliation(tmp_path / "reconciliation.db")
        self.ledger = SQLiteMovementLedger(tmp_path / "reconciliation.db")
        yield
        self.ledger.close()
        self.tables.close()

    def stores(self) -> tuple[HoldStore, SessionHistory, MovementLedgerStore]:
        return self.tables, self.tables, self.ledger


def test_a_sqlite_ledger_fed_from_the_log_by_earlier_versions_is_emptied_for_a_rebuild(
        tmp_path: Path):
    import sqlite3

    path = tmp_path / "reconciliation.db"
    legacy = sqlite3.connect(path)
    legacy.executescript("""
        CREATE TABLE movements (
            sku TEXT NOT NULL, location TEXT NOT NULL, day TEXT NOT NULL,
            units INTEGER NOT NULL, PRIMARY KEY (sku, location, day)) WITHOUT ROWID;
        CREATE TABLE stock_items (
            sku TEXT NOT NULL, location TEXT NOT NULL, last_counted_at TEXT,
            PRIMARY KEY (sku, location)) WITHOUT ROWID;
        CREATE TABLE ledger_checkpoint (
            id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL);
        INSERT INTO movements VALUES ('SKU-1', 'STORE-1', '2026-03-01', 10);
        INSERT INTO stock_items VALUES ('SKU-1', 'STORE-1', NULL);
        INSERT INTO ledger_checkpoint VALUES (1, 3);
    """)
    legacy.commit()
    legacy.close()

    ledger = SQLiteMovementLedger(path)
    try:
        assert ledger.needs_rebuild() is True
        assert (ledger.units_since(EVER), ledger.stock_items()) == ({}, {})
        assert ledger.apply(LedgerEntry("SKU-1", "STORE-1", 1, T0.date(), 10)) is True
        ledger.rebuilt()
    finally:
        ledger.close()
    reopened = SQLiteMovementLedger(path)  # emptied once; opening again keeps what it has
    try:
        assert reopened.needs_rebuild() is False
        assert reopened.units_since(EVER) == {("SKU-1", "STORE-1"): 10}
    finally:
        reopened.close()


def test_sqlite_holds_written_before_hold_ids_are_moved_over_when_opened(tmp_path: Path):
    import sqlite3

    path = tmp_path / "reconciliation.db"
    legacy = sqlite3.connect(path)
    legacy.executescript("""
        CREATE TABLE held_counts (
            sku TEXT NOT NULL, location TEXT NOT NULL, count_id TEXT NOT NULL,
            counted INTEGER NOT NULL, counted_at TEXT NOT NULL,
            on_hand_at_count INTEGER NOT NULL, drift_units INTEGER NOT NULL,
            drift_percent REAL, reason TEXT NOT NULL, session_id TEXT NOT NULL,
            held_at TEXT NOT NULL, status TEXT NOT NULL, resolved_at TEXT,
            applied_delta INTEGER, PRIMARY KEY (sku, location, count_id));
        INSERT INTO held_counts VALUES ('SKU-1', 'STORE-1', 'C1', 40,
            '2026-02-28T09:00:00.000000Z', 30, 10, 12.5, 'drift of +10 units exceeds 5', 'S1',
            '2026-03-01T09:00:00.000000Z', 'pending', NULL, NULL);
    """)
    legacy.commit()
    legacy.close()

    tables = SQLiteReconciliation(path)
    try:
        assert tables.matching() == [held()]
        assert tables.get(held().hold_id) == held()
        assert tables.find("SKU-1", "STORE-1", "C1") == held()
    finally:
        tables.close()
    reopened = SQLiteReconciliation(path)  # moved once; opening again changes nothing
    try:
        assert reopened.matching(status=None) == [held()]
    finally:
        reopened.close()


@pytest.fixture
def settings(cosmos_server: CosmosServer) -> CosmosSettings:
    """A database of this test's own, with the containers Bicep provisions in Azure."""
    s = CosmosSettings(endpoint=cosmos_server.endpoint,
                       database=f"reconciliation-{uuid4().hex[:8]}",
                       key=cosmos_server.key, verify_tls=False)
    CosmosDatastore(s).create_containers_if_missing()
    return s


class TestCosmosReconciliationStores(ReconciliationStoresContract):
    @pytest.fixture(autouse=True)
    def _database(self, settings: CosmosSettings) -> None:
        self.settings = settings

    def stores(self) -> tuple[HoldStore, SessionHistory, MovementLedgerStore]:
        return (CosmosHolds(self.settings), CosmosSessionHistory(self.settings),
                CosmosMovementLedger(self.settings))

    def test_a_count_held_before_hold_ids_is_found_and_resolved_by_its_hold_id(self) -> None:
        holds, _, _ = self.stores()
        legacy = {"id": "SKU-1|STORE-1|C1", "pk": "held", "kind": "held",
                  **{k: v for k, v in vars(held()).items()},
                  "counted_at": "2026-02-28T09:00:00.000000Z",
                  "held_at": "2026-03-01T09:00:00.000000Z", "resolved_at": None}
        CosmosDatastore(self.settings).container(
            self.settings.reconciliation_container).create_item(legacy)

        assert holds.find("SKU-1", "STORE-1", "C1") == held()
        assert holds.get(held().hold_id) == held()
        approved = HeldCount(**{**vars(held()), "status": "approved", "resolved_at": T0})
        assert holds.resolve(approved) is True
        assert holds.matching(status=None) == [approved]  # rewritten in place, not twice
        assert holds.get(held().hold_id) == approved

    def test_a_sku_named_like_a_partition_does_not_mix_with_holds_or_sessions(self) -> None:
        holds, history, ledger = self.stores()
        holds.hold(held())
        history.record(summary("S1", T0))
        self.feed(ledger, [LedgerEntry("held", "STORE-1", 1, T0.date(), 2),
                           LedgerEntry("sessions", "STORE-1", 1, T0.date(), 3)])
        assert holds.matching(status=None) == [held()]
        assert [s.session_id for s in history.sessions()] == ["S1"]
        assert ledger.units_since(EVER) == {("held", "STORE-1"): 2,
                                                 ("sessions", "STORE-1"): 3}


# ------------------------------------- the movement projection over real events


def _projection(settings: CosmosSettings, store: CosmosStockItems) -> MovementProjection:
    return MovementProjection(CosmosMovementLedger(settings), store.history)


def _command_sequence(commands: StockCommands, sku: str) -> list[StockItem.Event]:
    events = commands.receive(sku, "STORE-1", 10).events
    events += commands.reserve(sku, "STORE-1", "order-1", 4, "web", 60).events
    events += commands.fulfil(sku, "STORE-1", "order-1").events
    events += commands.adjust(sku, "STORE-1", -2, "damaged").events
    events += commands.record_count(sku, "STORE-1", "C1", 3, datetime.now(UTC)).events
    events += commands.receive(sku, "STORE-2", 5).events
    return events


def test_the_ledger_applied_twice_over_a_real_command_sequence_equals_once(
        settings: CosmosSettings) -> None:
    store = CosmosStockItems(settings.endpoint, settings.database, key=settings.key,
                             verify_tls=False)
    commands = StockCommands(store, SystemClock())
    sku = f"SKU-{uuid4().hex[:8]}"
    events = _command_sequence(commands, sku)
    assert [type(e).__name__ for e in events] == [
        "Created", "Received", "Reserved", "Fulfilled", "Adjusted", "Counted", "Created",
        "Received"]
    projection = _projection(settings, store)
    ledger = projection.ledger

    outcomes = [projection.handle(to_cloudevent(e)) for e in events]
    once = (ledger.units_since(EVER), ledger.stock_items())
    again = [projection.handle(to_cloudevent(e)) for e in events]

    assert set(outcomes) == {"applied"} and set(again) == {"duplicate"}
    assert (ledger.units_since(EVER), ledger.stock_items()) == once
    # received 10 + fulfilled 4 + |adjusted -2| at STORE-1 (the count is drift, not movement)
    assert once[0] == {(sku, "STORE-1"): 16, (sku, "STORE-2"): 5}
    counted = next(e for e in events if isinstance(e, StockItem.Counted))
    assert once[1] == {(sku, "STORE-1"): counted.counted_at, (sku, "STORE-2"): None}


def test_consumers_racing_over_the_same_events_count_each_event_once(
        settings: CosmosSettings) -> None:
    store = CosmosStockItems(settings.endpoint, settings.database, key=settings.key,
                             verify_tls=False)
    sku = f"SKU-{uuid4().hex[:8]}"
    documents = [to_cloudevent(e) for e in _command_sequence(StockCommands(store, SystemClock()),
                                                              sku)]
    projection = _projection(settings, store)
    ledger = projection.ledger

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: [projection.handle(d) for d in documents],
                                 range(4)))

    assert sum(o.count("applied") for o in outcomes) <= len(documents)
    assert ledger.units_since(EVER) == {(sku, "STORE-1"): 16, (sku, "STORE-2"): 5}
    assert ledger.version_of(sku, "STORE-1") == 6


def test_a_gap_in_a_streams_versions_is_filled_from_the_stream(
        settings: CosmosSettings) -> None:
    store = CosmosStockItems(settings.endpoint, settings.database, key=settings.key,
                             verify_tls=False)
    commands = StockCommands(store, SystemClock())
    sku = f"SKU-{uuid4().hex[:8]}"
    events = _command_sequence(commands, sku)[:5]  # up to the adjustment, one stream
    projection = _projection(settings, store)
    ledger = projection.ledger
    projection.handle(to_cloudevent(events[0]))

    assert projection.handle(to_cloudevent(events[-1])) == "caught-up"  # 2..4 never came

    assert ledger.units_since(EVER) == {(sku, "STORE-1"): 16}
    assert ledger.version_of(sku, "STORE-1") == 5
    assert {projection.handle(to_cloudevent(e)) for e in events} == {"duplicate"}
    assert ledger.units_since(EVER) == {(sku, "STORE-1"): 16}


# ---------------------------------------------------- the functions on Azure


@pytest.fixture
def azure(settings: CosmosSettings) -> Iterator[Services]:
    container = azure_services(load({
        "STOCKSTREAM_EVENT_STORE": "cosmos",
        "COSMOS__accountEndpoint": settings.endpoint,
        "COSMOS_KEY": settings.key or "",
        "COSMOS_DATABASE": settings.database,
    }))
    use_services(container)
    yield container
    use_services(None)
    container.close()


def _deliver(container: Services, events: list[Any]) -> None:
    """What the Service Bus trigger does with each message of the availability subscription."""
    consumer = container.consumers[AVAILABILITY_SUBSCRIPTION]
    for event in events:
        consumer.process(json.dumps(to_cloudevent(event)).encode())


def test_reconciliation_functions_work_on_azure(azure: Services) -> None:
    services = azure.reconciliation.get()
    assert isinstance(services.schedule.history, CosmosMovementLedger)
    sku = f"SKU-{uuid4().hex[:8]}"
    received = azure.commands.receive(sku, "STORE-1", 10).events
    _deliver(azure, received)
    _deliver(azure, azure.commands.receive(f"{sku}-B", "STORE-1", 1).events)

    due = call("list_due_counts", "GET")
    assert due.status == 200
    assert [(d["sku"], d["velocity_class"], d["last_counted_at"]) for d in due.body["due"]
            ] == [(sku, "A", None), (f"{sku}-B", "B", None)]

    counted_at = datetime.now(UTC).isoformat()
    body = {"counts": [
        {"sku": sku, "location": "STORE-1", "counted": 8, "counted_at": counted_at,
         "count_id": "C1"},
        {"sku": f"{sku}-B", "location": "STORE-1", "counted": 1, "counted_at": counted_at,
         "count_id": "C1"},
    ]}
    answer = call("reconcile_counts", "POST", body=body)
    assert answer.status == 200
    assert [(r["outcome"], r["drift_units"]) for r in answer.body["results"]] == [
        ("applied", -2), ("applied", 0)]
    assert azure.queries.position(sku, "STORE-1").on_hand == 8
    assert services.reconciler.history is not None
    assert [s.session_id for s in services.reconciler.history.sessions()] == [
        answer.body["session_id"]]
    again = call("reconcile_counts", "POST", body=body)
    assert [r["outcome"] for r in again.body["results"]] == ["unchanged", "unchanged"]

    _deliver(azure, received)  # redelivered: changes nothing
    def figures(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(d["sku"], d["velocity_class"], d["units_per_day"]) for d in rows]

    assert figures(call("list_due_counts", "GET").body["due"]) == figures(due.body["due"])
    _deliver(azure, azure.store.events(sku, "STORE-1", after=2))  # the StockCounted
    _deliver(azure, azure.store.events(f"{sku}-B", "STORE-1", after=2))
    assert call("list_due_counts", "GET").body["due"] == []
    listed = call("list_due_counts", "GET", params={"all": "true"}).body["due"]
    assert {d["sku"] for d in listed if d["last_counted_at"] is not None} == {sku, f"{sku}-B"}


def test_held_counts_are_approved_over_http_on_azure(azure: Services,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    services = azure.reconciliation.get()
    monkeypatch.setattr(services.gate, "counts", type(services.policy)(units=5))
    sku = f"SKU-{uuid4().hex[:8]}"
    body = {"counts": [{"sku": sku, "location": "STORE-1", "counted": 50,
                        "counted_at": datetime.now(UTC).isoformat(), "count_id": "BIG"}]}
    assert call("reconcile_counts", "POST", body=body).body["held"] == 1
    assert [h["drift_units"] for h in call("list_held_counts", "GET").body] == [50]

    approved = call("approve_held_counts", "POST", {"hold_id": "BIG"})

    assert [r["outcome"] for r in approved.body["approved"]] == ["applied"]
    assert azure.queries.position(sku, "STORE-1").on_hand == 50
    assert call("list_held_counts", "GET").body == []
    assert call("approve_held_counts", "POST", {"hold_id": "BIG"}).status == 404
