"""A stream stored before stock states loads unchanged: all of its stock is sellable.

``fixtures/stream_before_states.json`` holds every kind of event and two snapshots (state
v3) exactly as the code before states (commit ec0bb73) stored them, written by that code
through the same mapper the stores use: a receipt with a reference and a key, an
adjustment with a note, a policy, reservations made, released, fulfilled, an applied and
a superseded count.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import StoredEvent

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from contracts.cloudevents import to_cloudevent
from contracts.validation import validate_cloudevent
from domain import StockItem
from tests.events import from_snapshot, only
from tests.unit.test_stock_item_properties import MAPPER

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "stream_before_states.json").read_text()
)
EXPECTED: dict[str, Any] = FIXTURE["position"]


def stored(record: dict[str, Any]) -> StoredEvent:
    return StoredEvent(UUID(record["originator_id"]), record["originator_version"],
                       record["topic"], json.dumps(record["state"]).encode())


def old_events() -> list[StockItem.Event]:
    return only((MAPPER.to_domain_event(stored(r)) for r in FIXTURE["events"]), StockItem.Event)


def assert_as_before(item: StockItem | None) -> None:
    assert item is not None
    assert (item.on_hand, item.sellable, item.damaged, item.quality_control) == (
        EXPECTED["on_hand"], EXPECTED["on_hand"], 0, 0)
    assert (item.reserved, item.available, item.safety_stock, item.oversell_buffer) == (
        EXPECTED["reserved"], EXPECTED["available"], EXPECTED["safety_stock"],
        EXPECTED["oversell_buffer"])
    assert item.version == EXPECTED["version"]
    assert sorted(item.reservations) == EXPECTED["reservations"]
    assert item.last_counted_at == datetime.fromisoformat(EXPECTED["last_counted_at"])
    assert (item.held_counted_at, item.incoming) == ({}, {})


def test_old_events_replay_to_the_same_position_all_sellable() -> None:
    item = project_aggregate(None, old_events())
    assert_as_before(item)


def test_old_events_read_as_sellable_with_nothing_held_or_incoming() -> None:
    for event in old_events():
        assert (event.damaged, event.quality_control, event.incoming_total,
                event.in_transit) == (0, 0, 0, 0)
        assert event.sellable == event.on_hand
        if isinstance(event, StockItem.Received | StockItem.Adjusted | StockItem.Counted):
            assert event.state == "sellable"
        assert event.movement == event.movement_in("sellable")


def test_old_snapshots_are_upcast_and_later_old_events_apply_on_top() -> None:
    last = from_snapshot(MAPPER, stored(FIXTURE["snapshot_last"]))
    assert_as_before(last)
    mid = MAPPER.to_domain_event(stored(FIXTURE["snapshot_mid"]))
    later = [e for e in old_events() if e.originator_version > mid.originator_version]
    rebuilt = project_aggregate(from_snapshot(MAPPER, stored(FIXTURE["snapshot_mid"])), later)
    assert_as_before(rebuilt)
    assert vars(rebuilt) == vars(project_aggregate(None, old_events()))


def test_old_events_publish_with_the_new_position_members_and_validate() -> None:
    for event in old_events():
        document = to_cloudevent(event)
        validate_cloudevent(document)
        data = document["data"]
        assert data["sellable"] == data["on_hand"]
        assert data["held"] == {"damaged": 0, "quality_control": 0}
        assert (data["incoming_total"], data["in_transit"]) == (0, 0)


def test_an_old_stream_in_a_store_takes_new_commands(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    store.app.recorder.insert_events([stored(r) for r in FIXTURE["events"]])
    store.close()
    with sqlite3.connect(tmp_path / "events.db") as db:  # reopening back-fills the memos
        db.execute("DROP TABLE stock_memos")
    # The fixture's events are as old as the fixture: a window of years keeps their memos.
    store = SQLiteStockItems(tmp_path / "events.db", memo_window=timedelta(days=3650))
    assert_as_before(store.get("SKU-OLD", "STORE-1"))
    commands = StockCommands(store, ManualClock())

    repeat = commands.receive("SKU-OLD", "STORE-1", 40, "PO-1", idempotency_key="rcpt-1")
    moved = commands.move_state("SKU-OLD", "STORE-1", 3, "sellable", "damaged")

    assert not repeat.changed  # a key remembered before states is still recognised
    assert (moved.position.on_hand, moved.position.sellable, moved.position.damaged) == (
        EXPECTED["on_hand"], EXPECTED["on_hand"] - 3, 3)
    assert moved.position.available == EXPECTED["available"] - 3
    store.close()
