"""StockAdjusted v1 → v2: stored v1 events upcast on read, both versions published during
the deprecation period, consumers accept both."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from application.relay import Relay, to_messages
from application.views import AvailabilityChange
from contracts.cloudevents import to_cloudevent, wire_versions
from contracts.validation import validate_cloudevent
from domain import StockItem, stream_uuid
from tests.events import collected, from_snapshot, stock_events


def _v1_stream(store: SQLiteStockItems) -> None:
    """Write a stream as the v1 code did: a v1 adjustment has ``reason``, no class_version."""
    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    store.save(item)
    state = {
        "originator_id": {"_type_": "uuid_hex", "_data_": stream_uuid("SKU-1", "STORE-1").hex},
        "originator_version": 3,
        "timestamp": {"_type_": "datetime_iso", "_data_": datetime.now(UTC).isoformat()},
        "sku": "SKU-1", "location": "STORE-1", "on_hand": 8, "reserved": 0, "available": 8,
        "delta": -2, "reason": "damaged", "idempotency_key": "k-1",
    }
    stored = StoredEvent(
        originator_id=stream_uuid("SKU-1", "STORE-1"),
        originator_version=3,
        topic="stockstream:StockAdjusted",
        state=json.dumps(state).encode(),
    )
    store.app.recorder.insert_events([stored])


def test_a_stored_v1_adjustment_is_read_as_v2(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    _v1_stream(store)
    adjusted = store.events("SKU-1", "STORE-1", after=2)[0]
    assert isinstance(adjusted, StockItem.Adjusted)
    assert (adjusted.reason_code, adjusted.note, adjusted.delta) == ("damaged", None, -2)
    item = store.get("SKU-1", "STORE-1")
    assert item is not None and item.on_hand == 8
    store.close()


def test_a_file_from_before_memos_recognises_its_recent_idempotency_keys(
    tmp_path: Path,
) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    _v1_stream(store)
    store.close()
    with sqlite3.connect(tmp_path / "events.db") as db:  # as the code before memos left it
        db.execute("DROP TABLE stock_memos")

    reopened = SQLiteStockItems(tmp_path / "events.db")  # back-fills the memos
    repeat = StockCommands(reopened, ManualClock()).adjust(
        "SKU-1", "STORE-1", -2, "damaged", idempotency_key="k-1")

    assert not repeat.changed and repeat.position.on_hand == 8
    reopened.close()


def test_a_v1_stream_publishes_as_v2_with_a_valid_document(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    _v1_stream(store)
    document = to_cloudevent(store.events("SKU-1", "STORE-1", after=2)[0])
    assert document["type"] == "Stockstream.StockAdjusted.v2"
    assert document["data"]["reason_code"] == "damaged"
    validate_cloudevent(document)
    store.close()


def test_during_the_deprecation_period_both_versions_are_published_with_distinct_ids() -> None:
    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    item.adjust(-1, "theft", note="seen on camera")
    (adjusted,) = stock_events(item)[-1:]
    current, deprecated = to_messages(adjusted, with_deprecated=True)
    assert current.message_id == "SKU-1|STORE-1:3"
    assert deprecated.message_id == "SKU-1|STORE-1:3:v1"
    assert current.session_id == deprecated.session_id
    v2, v1 = json.loads(current.body), json.loads(deprecated.body)
    assert v2["type"] == "Stockstream.StockAdjusted.v2"
    assert v1["type"] == "Stockstream.StockAdjusted.v1"
    assert v2["id"] == v1["id"]  # one event, two representations
    assert v2["data"]["reason_code"] == "theft" and v2["data"]["note"] == "seen on camera"
    assert v1["data"]["reason"] == "other"  # v1 never knew "theft"
    for document in (v1, v2):
        validate_cloudevent(document)
    assert [m.message_id for m in to_messages(adjusted, with_deprecated=False)] == [
        "SKU-1|STORE-1:3"
    ]


def test_v1_keeps_the_reasons_it_knew() -> None:
    adjusted = StockItem.create("SKU-1", "STORE-1")
    adjusted.receive(3)
    adjusted.adjust(-1, "shrinkage")
    (event,) = stock_events(adjusted)[-1:]
    oldest = wire_versions(event)[-1]
    assert to_cloudevent(event, oldest)["data"]["reason"] == "shrinkage"


def test_the_relay_stops_publishing_v1_after_the_deprecation_period(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    item.adjust(-1, "damaged")
    store.save(item)
    clock = ManualClock(datetime(2027, 5, 31, 23, 0, tzinfo=UTC))
    relay = Relay(store, _Collector(), store.checkpoints(), clock,
                  deprecated_versions_until=date(2027, 5, 31))
    adjusted = store.events("SKU-1", "STORE-1", after=2)[0]
    assert len(relay.messages(adjusted)) == 2
    clock.advance(3600)
    assert len(relay.messages(adjusted)) == 1
    store.close()


def test_the_projection_reads_both_versions_alike() -> None:
    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    item.adjust(-4, "expired")
    (event,) = stock_events(item)[-1:]
    changes = {AvailabilityChange.from_cloudevent(to_cloudevent(event, w)) for w in
               wire_versions(event)}
    assert len(changes) == 1  # same version, same position: the second is a duplicate


class _Collector:
    def publish(self, topic: str, messages: object) -> None:
        pass

    def close(self) -> None:
        pass


def _as_before_states(state: dict[str, Any]) -> dict[str, Any]:
    """A snapshot state as v3 code (before stock states) wrote it: one ``on_hand``, and
    the open reservations as entries by order id (rows since v6), each expiry in the
    library's transcoding of a datetime."""
    state["reservations"] = {
        order_id: {"quantity": quantity, "channel": channel, "expires_at": None
                   if expires_at is None else {"_type_": "datetime_iso", "_data_": expires_at}}
        for order_id, quantity, channel, expires_at in state["reservations"]}
    state["on_hand"] = state.pop("sellable")
    for name in ("damaged", "quality_control", "held_counted_at", "incoming"):
        del state[name]
    return state


def test_a_snapshot_taken_before_reserved_was_kept_is_upcast() -> None:
    from tests.unit.test_stock_item_properties import MAPPER

    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    item.reserve("order-1", 3, "web")
    item.reserve("order-2", 2, "pos")
    item.collect_events()
    stored = MAPPER.to_stored_event(StockItem.Snapshot.take(item))
    old = json.loads(stored.state)
    _as_before_states(old["state"])
    del old["state"]["reserved"], old["state"]["class_version"]  # as v1 code wrote it
    v1 = StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                     json.dumps(old).encode())

    rebuilt = from_snapshot(MAPPER, v1)

    assert (rebuilt.reserved, rebuilt.available) == (5, 5)
    assert rebuilt.position() == item.position()


def test_a_snapshot_that_remembered_ids_in_its_state_is_upcast_to_memos() -> None:
    from tests.unit.test_stock_item_properties import MAPPER

    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    item.reserve("order-1", 3, "web")
    item.collect_events()
    stored = MAPPER.to_stored_event(StockItem.Snapshot.take(item))
    old = json.loads(stored.state)
    state = _as_before_states(old["state"])
    del state["last_counted_at"]
    state["class_version"] = 2  # as v2 code wrote it: ids in the state, no last_counted_at
    state["closed_reservations"] = {"order-0": "cancelled"}
    state["idempotency_keys"] = {"k-1": "receipt:10:"}
    state["recorded_counts"] = {
        "count-a": "count:7:2026-11-26T09:00:00+00:00",
        "count-b": "count:9:2026-11-26T11:30:00+00:00",
        "count-c": "count:8:2026-11-26T10:00:00+00:00",
    }
    v2 = StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                     json.dumps(old).encode())

    rebuilt = from_snapshot(MAPPER, v2)

    assert rebuilt.last_counted_at == datetime(2026, 11, 26, 11, 30, tzinfo=UTC)
    assert set(vars(rebuilt)) == set(vars(item))  # no remembered ids left in the state
    assert rebuilt.position() == item.position()
    rebuilt.record_count("count-d", 1, datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    (counted,) = collected(rebuilt, StockItem.Counted)
    assert counted.superseded  # taken before the latest count the snapshot remembered


def test_a_v2_snapshot_that_never_counted_has_no_last_count() -> None:
    counts: dict[str, str] | None
    for counts in ({}, None):
        state: dict[str, Any] = {
            "reservations": {}, "closed_reservations": {}, "idempotency_keys": {}}
        if counts is not None:
            state["recorded_counts"] = counts
        StockItem.upcast_v2_v3(state)
        assert state == {"reservations": {}, "last_counted_at": None}


def test_a_stored_v1_count_is_read_as_applied(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    item = StockItem.create("SKU-1", "STORE-1")
    item.receive(10)
    store.save(item)
    counted_at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    state = {
        "originator_id": {"_type_": "uuid_hex", "_data_": stream_uuid("SKU-1", "STORE-1").hex},
        "originator_version": 3,
        "timestamp": {"_type_": "datetime_iso", "_data_": datetime.now(UTC).isoformat()},
        "sku": "SKU-1", "location": "STORE-1", "on_hand": 8, "reserved": 0, "available": 8,
        "count_id": "count-1", "counted": 8, "previous_on_hand": 10, "delta": -2,
        "counted_at": {"_type_": "datetime_iso", "_data_": counted_at.isoformat()},
    }
    store.app.recorder.insert_events([StoredEvent(
        originator_id=stream_uuid("SKU-1", "STORE-1"), originator_version=3,
        topic="stockstream:StockCounted", state=json.dumps(state).encode(),
    )])

    (counted,) = store.events("SKU-1", "STORE-1", after=2)

    assert isinstance(counted, StockItem.Counted)
    assert counted.superseded is False
    rebuilt = store.get("SKU-1", "STORE-1")
    assert rebuilt is not None
    assert (rebuilt.on_hand, rebuilt.last_counted_at) == (8, counted_at)
    store.close()
