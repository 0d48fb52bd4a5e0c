"""The movement ledger projection on the embedded host: fed by the availability
subscription's consumer, the same after a restart, and rebuilt once from the event store
when its ledger was written by the log-fed ledger of earlier versions."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from application.cadence import DueCount
from application.settings import load
from contracts.cloudevents import to_cloudevent
from functions.container import (
    Container,
    build_container,
    embedded_movements,
    reconciliation_services,
)
from local.pipeline import Pipeline, start_pipeline
from projections.movements import LedgerEntry


def project(pipeline: Pipeline) -> None:
    pipeline.relay.drain()
    while pipeline.consumer.run_once(0.0):
        pass


def trade(container: Container) -> None:
    c = container.commands
    for _ in range(5):
        c.receive("FAST", "STORE-1", 40)
    c.reserve("FAST", "STORE-1", "order-1", 30, "web")
    c.fulfil("FAST", "STORE-1", "order-1")
    c.adjust("SLOW", "STORE-1", 2, "found")
    c.record_count("SLOW", "STORE-1", "C1", 2, datetime.now(UTC))
    c.receive("NEW", "STORE-2", 1)


NOW = datetime.now(UTC)  # one moment for every schedule (a never-counted item is due now)


def schedule(container: Container) -> list[DueCount]:
    return reconciliation_services(container).schedule.schedule(NOW, due_only=False)


def open_container(data: Path) -> Container:
    return build_container(load({"STOCKSTREAM_DATA": str(data)}))


def test_the_consumer_feeds_the_ledger_and_it_answers_the_same_after_a_restart(
        tmp_path: Path) -> None:
    container = open_container(tmp_path)
    pipeline = start_pipeline(container, autostart=False)
    trade(container)
    assert schedule(container) == []  # nothing applied by the consumer yet
    project(pipeline)
    before = schedule(container)
    assert [(r.sku, r.velocity_class) for r in before] == [
        ("FAST", "A"), ("NEW", "C"), ("SLOW", "C")]
    container.commands.receive("NEW", "STORE-2", 3)  # committed; the worker stops first
    pipeline.stop()
    container.close()

    restarted = open_container(tmp_path)
    try:
        assert schedule(restarted) == before
        pipeline = start_pipeline(restarted, autostart=False)
        project(pipeline)  # the relay publishes what was committed while it was down
        units = reconciliation_services(restarted).schedule.history.units_since(
            datetime(2000, 1, 1).date())
        assert units == {("FAST", "STORE-1"): 230, ("SLOW", "STORE-1"): 2,
                         ("NEW", "STORE-2"): 4}
        pipeline.stop()
    finally:
        restarted.close()


def test_a_ledger_written_by_the_log_fed_tracker_is_rebuilt_once_from_the_event_store(
        tmp_path: Path) -> None:
    container = open_container(tmp_path)
    pipeline = start_pipeline(container, autostart=False)
    trade(container)
    project(pipeline)
    expected = schedule(container)
    pipeline.stop()
    container.close()
    # What an earlier version left: a log-fed ledger at some checkpoint, without versions.
    db = sqlite3.connect(tmp_path / "reconciliation.db")
    db.executescript("""
        DROP TABLE stock_items; DROP TABLE ledger_rebuilt; DELETE FROM movements;
        CREATE TABLE stock_items (sku TEXT NOT NULL, location TEXT NOT NULL,
            last_counted_at TEXT, PRIMARY KEY (sku, location)) WITHOUT ROWID;
        CREATE TABLE ledger_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1),
            position INTEGER NOT NULL);
        INSERT INTO stock_items VALUES ('FAST', 'STORE-1', NULL);
        INSERT INTO movements VALUES ('FAST', 'STORE-1', '2026-01-01', 999);
        INSERT INTO ledger_checkpoint VALUES (1, 3);
    """)
    db.commit()
    db.close()

    upgraded = open_container(tmp_path)
    try:
        assert schedule(upgraded) == expected  # rebuilt when first opened
        pipeline = start_pipeline(upgraded, autostart=False)
        project(pipeline)  # redelivered or not, nothing is counted twice
        assert schedule(upgraded) == expected
        pipeline.stop()
    finally:
        upgraded.close()


def test_a_rebuild_and_messages_redelivered_after_it_count_each_event_once(
        tmp_path: Path) -> None:
    container = open_container(tmp_path)
    trade(container)
    movements = embedded_movements(container)  # a new ledger: rebuilt from the log
    try:
        events = [r.event for r in container.store.read_after(0, 1000)]  # type: ignore[attr-defined]
        ledger = movements.ledger
        since = datetime(2000, 1, 1).date()
        built = (ledger.units_since(since), ledger.stock_items())
        assert built[0] == {("FAST", "STORE-1"): 230, ("SLOW", "STORE-1"): 2,
                            ("NEW", "STORE-2"): 1}

        assert {movements.handle(to_cloudevent(e)) for e in events} == {"duplicate"}
        assert movements.rebuild(container.store) == len(events)  # type: ignore[arg-type]

        assert (ledger.units_since(since), ledger.stock_items()) == built
        assert ledger.needs_rebuild() is False
        assert [LedgerEntry.of_cloudevent(to_cloudevent(e)) for e in events] == [
            LedgerEntry.of_event(e) for e in events]
    finally:
        movements.ledger.close()
        container.close()
