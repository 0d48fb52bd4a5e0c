"""The event-store contract on the embedded back end: SQLite files under ``tmp_path``."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from eventsourcing.sqlite import SQLiteApplicationRecorder

from adapters.sqlite import SQLiteStockItems
from application.ports import StoreUnavailable
from domain.stock_item import StockItem
from tests.contract.event_store_contract import LOCATION, EventStoreContract


class TestSQLiteEventStore(EventStoreContract):
    atomic_across_streams = True

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"
        # A directory where the database file should be: SQLite cannot open it.
        self.unreachable_path = tmp_path / "not-a-file"
        self.unreachable_path.mkdir()

    def open_store(self, *, reachable: bool = True) -> SQLiteStockItems:
        return SQLiteStockItems(self.path if reachable else self.unreachable_path)

    def test_a_memo_read_that_sqlite_refuses_raises_store_unavailable(self) -> None:
        """The memo read runs outside the library's transaction (one autocommit SELECT),
        so it maps SQLite's errors itself, as the library's transaction would."""
        store = self.open_store()
        try:
            assert store.recall("SKU-M", LOCATION, "order:o-1") is None
            with sqlite3.connect(self.path) as db:
                db.execute("DROP TABLE stock_memos")
            with pytest.raises(StoreUnavailable):
                store.recall("SKU-M", LOCATION, "order:o-1")
        finally:
            store.close()

    def test_a_many_memo_read_that_sqlite_refuses_raises_store_unavailable(self) -> None:
        store = self.open_store()
        try:
            with sqlite3.connect(self.path) as db:
                db.execute("DROP TABLE stock_memos")
            with pytest.raises(StoreUnavailable):
                store.recall_many([("SKU-M", LOCATION, "order:o-1")])
        finally:
            store.close()

def test_a_connection_prepares_each_statement_once_not_at_every_run(tmp_path: Path) -> None:
    """A command runs a few statements in turn (memo read, inserts, commit); with a cache
    of one statement (``eventsourcing``'s ``cached_statements=True``) each evicted the
    next and every run compiled its statement again. SQLite asks the authorizer only
    while it compiles a statement, so its calls count compilations."""
    store = SQLiteStockItems(tmp_path / "events.db")
    try:
        recorder = store.app.recorder
        assert isinstance(recorder, SQLiteApplicationRecorder)
        with recorder.datastore.get_connection(commit=False) as connection:
            compiled: list[object] = []

            def authorize(action: int, *_: object) -> int:
                compiled.append(action)
                return sqlite3.SQLITE_OK

            db = connection._sqlite_conn
            db.set_authorizer(authorize)
            statements = ["SELECT count(*) FROM stock_memos",
                          "SELECT count(*) FROM stored_events"]
            for statement in statements:
                db.execute(statement).fetchall()
            once = len(compiled)
            assert once > 0
            for _ in range(10):
                for statement in statements:
                    db.execute(statement).fetchall()
            db.set_authorizer(None)
        assert len(compiled) == once
    finally:
        store.close()


def test_a_hot_stream_is_snapshotted_less_often_as_its_open_reservations_grow(
        tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    item = StockItem.create("HOT", "STORE-1")
    item.receive(1_000_000)
    for n in range(1598):  # saved 100 events at a time, as a busy group commit would
        item.reserve(f"order-{n}", 1, "web")
        if len(item.pending_events) == 100:
            store.save(item)
            store.flush_snapshots()  # each written before the next save can supersede it
    store.save(item)
    store.flush_snapshots()

    versions = [s.originator_version for s in store.app.snapshots.get(item.id)]  # type: ignore[union-attr]
    # Every 100 events while it lists fewer than 512 open reservations (a quarter: 128),
    # then every 128, then every 256 (each save here is 100 events).
    assert versions == [100, 200, 300, 400, 500, 600, 700, 800, 900, 1100, 1300, 1600]
    reloaded = SQLiteStockItems(tmp_path / "events.db").get("HOT", "STORE-1")
    assert reloaded is not None and reloaded.position() == item.position()
    store.close()


def _reserve_and_save(store: SQLiteStockItems, item: StockItem, events: int) -> None:
    """``events`` more reservations on ``item``, saved in one write."""
    for _ in range(events):
        item.reserve(f"order-{len(item.reservations)}", 1, "web")
    store.save(item)


def _held_snapshots(store: SQLiteStockItems) -> threading.Event:
    """Make the store's snapshot writer wait, inside its write, until the returned
    event is set (a snapshot that takes as long as a test wants)."""
    assert store.snapshots is not None
    release = threading.Event()
    write = store.snapshots._write

    def held(item: StockItem) -> None:
        release.wait(30)
        write(item)

    store.snapshots._write = held
    return release


def _due_snapshot_held(tmp_path: Path) -> tuple[SQLiteStockItems, StockItem, threading.Event]:
    """A store whose snapshot writer holds each write until the event is set, and a hot
    stream saved up to version 100 (a snapshot due, held)."""
    store = SQLiteStockItems(tmp_path / "events.db")
    release = _held_snapshots(store)
    item = StockItem.create("HOT", "STORE-1")
    item.receive(1_000)
    _reserve_and_save(store, item, 98)
    return store, item, release


def test_a_save_returns_while_the_snapshot_it_made_due_is_still_being_written(
        tmp_path: Path) -> None:
    store, item, release = _due_snapshot_held(tmp_path)  # version 100: a snapshot is due

    assert item.version == 100
    assert not store.flush_snapshots(timeout=0.2)  # the save did not wait for it
    assert list(store.app.snapshots.get(item.id)) == []  # type: ignore[union-attr]
    release.set()
    assert store.flush_snapshots(timeout=30)
    versions = [s.originator_version for s in store.app.snapshots.get(item.id)]  # type: ignore[union-attr]
    assert versions == [100]
    store.close()


def test_snapshots_due_while_one_is_written_keep_only_the_newest_state(
        tmp_path: Path) -> None:
    store, item, release = _due_snapshot_held(tmp_path)   # 100: taken by the writer, held
    _reserve_and_save(store, item, 100)  # 200: due, waits
    _reserve_and_save(store, item, 100)  # 300: due, replaces 200 (never written)
    release.set()

    assert store.flush_snapshots(timeout=30)
    versions = [s.originator_version for s in store.app.snapshots.get(item.id)]  # type: ignore[union-attr]
    assert versions == [100, 300]
    reader = SQLiteStockItems(tmp_path / "events.db")
    reloaded = reader.get("HOT", "STORE-1")
    assert reloaded is not None and reloaded.position() == item.position()
    reader.close()
    store.close()


def test_closing_the_store_writes_the_snapshots_still_pending(tmp_path: Path) -> None:
    store, item, release = _due_snapshot_held(tmp_path)
    _reserve_and_save(store, item, 100)
    threading.Timer(0.1, release.set).start()
    store.close()

    reader = SQLiteStockItems(tmp_path / "events.db")
    versions = [s.originator_version for s in reader.app.snapshots.get(item.id)]  # type: ignore[union-attr]
    assert versions == [100, 200]
    reader.close()


def test_a_failed_snapshot_is_logged_and_the_next_one_due_is_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    assert store.snapshots is not None
    write, failures = store.snapshots._write, [1]

    def failing_once(item: StockItem) -> None:
        if failures:
            failures.pop()
            raise sqlite3.OperationalError("disk I/O error")
        write(item)

    store.snapshots._write = failing_once
    item = StockItem.create("HOT", "STORE-1")
    item.receive(1_000)
    _reserve_and_save(store, item, 98)
    assert store.flush_snapshots(timeout=30)
    _reserve_and_save(store, item, 100)
    assert store.flush_snapshots(timeout=30)

    versions = [s.originator_version for s in store.app.snapshots.get(item.id)]  # type: ignore[union-attr]
    assert versions == [200]
    assert "snapshot of HOT|STORE-1 at version 100 skipped" in caplog.text
    store.close()
