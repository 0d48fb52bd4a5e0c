"""The sample downstream consumer (samples/downstream_consumer.py) against the SDK-shaped
Service Bus fakes, with messages the relay builds from real events of a real SQLite store:
sessions, a duplicate, a replay arriving after newer events, and a poison message."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION

from adapters.clock import SystemClock
from adapters.servicebus import ServiceBusBroker
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from application.relay import to_messages
from application.replay import DeadLetterReplay
from contracts.cloudevents import to_cloudevent
from contracts.topology import TOPIC
from samples import downstream_consumer as sample
from tests.servicebus.fakes import FakeAdministrationClient, FakeServiceBusClient

TEAM = "finance"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStockItems]:
    events = SQLiteStockItems(tmp_path / "events.db")
    yield events
    events.close()


@pytest.fixture
def client() -> FakeServiceBusClient:
    return FakeServiceBusClient({TOPIC: [TEAM]})


@pytest.fixture
def broker(client: FakeServiceBusClient) -> Iterator[ServiceBusBroker]:
    # The fake SDK clients stand in for the real ones, which they do not subclass.
    bus = ServiceBusBroker(client, lambda: FakeAdministrationClient(client))  # type: ignore[arg-type, return-value]
    yield bus
    bus.close()


def publish(broker: ServiceBusBroker, store: SQLiteStockItems, sku: str, location: str,
            after: int = 0, upto: int | None = None) -> None:
    """What the relay publishes for the stream's events after ``after``."""
    for event in store.events(sku, location, after=after):
        if upto is not None and event.originator_version > upto:
            break
        broker.publish(TOPIC, to_messages(event, with_deprecated=False))


def history(store: SQLiteStockItems, sku: str, location: str) -> StockCommands:
    commands = StockCommands(store, SystemClock())
    commands.receive(sku, location, 10)          # 1 StockItemCreated, 2 StockReceived
    commands.reserve(sku, location, "o-1", 3, "web")  # 3
    commands.adjust(sku, location, -2, "damaged")     # 4
    return commands


def backfill_from(store: SQLiteStockItems) -> sample.Backfill:
    """The events route's answer: the stream's CloudEvents after a version."""
    def read(sku: str, location: str, after: int) -> list[dict[str, Any]]:
        return [to_cloudevent(e) for e in store.events(sku, location, after=after)]
    return read


def consumer_db() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None)


def test_a_state_consumer_applies_each_session_in_order_and_ends_at_the_stream_position(
        store, broker, client):
    history(store, "SKU-1", "store-1")
    history(store, "SKU-2", "store-1")
    publish(broker, store, "SKU-1", "store-1")
    publish(broker, store, "SKU-2", "store-1")
    positions = sample.StatePositions(consumer_db())

    settled = sample.drain(client, TEAM, positions.apply, max_wait=0.1, once=True)

    assert settled == {"completed": 8}
    for sku in ("SKU-1", "SKU-2"):
        last = to_cloudevent(store.events(sku, "store-1")[-1])["data"]
        assert positions.position(f"{sku}|store-1") == {
            "sequence": 4, "on_hand": last["on_hand"], "reserved": last["reserved"],
            "available": last["available"]} == {
            "sequence": 4, "on_hand": 8, "reserved": 3, "available": 5}
    assert [c["session_id"] for c in client.receiver_calls][:2] == [
        NEXT_AVAILABLE_SESSION] * 2


def test_a_duplicate_changes_nothing_for_either_kind(store, broker, client):
    history(store, "SKU-1", "store-1")
    publish(broker, store, "SKU-1", "store-1")
    db = consumer_db()
    positions, movements = sample.StatePositions(db), sample.Movements(db, None)

    def both(event: dict[str, Any]) -> bool:
        return positions.apply(event) | movements.apply(event)

    sample.drain(client, TEAM, both, max_wait=0.1, once=True)
    (event,) = store.events("SKU-1", "store-1", after=2, limit=1)
    duplicate = replace(to_messages(event, with_deprecated=False)[0],
                        message_id="SKU-1|store-1:3:redelivered")  # past duplicate detection
    broker.publish(TOPIC, [duplicate])
    applied: list[bool] = []

    def record(event: dict[str, Any]) -> bool:
        applied.append(both(event))
        return True

    sample.drain(client, TEAM, record, max_wait=0.1, once=True)

    assert applied == [False]
    position = positions.position("SKU-1|store-1")
    assert position is not None and position["sequence"] == 4
    assert [s for s, _ in movements.recorded("SKU-1|store-1")] == [1, 2, 3, 4]


def poison_at(version: int) -> Callable[[dict[str, Any]], None]:
    """An apply that fails for one stream version (a bug in the team's handler)."""
    def check(event: dict[str, Any]) -> None:
        if event["sequence"] == version:
            raise RuntimeError("handler bug")
    return check


@pytest.mark.parametrize("with_backfill", [False, True])
def test_a_movement_consumer_keeps_an_event_replayed_after_newer_ones(
        store, broker, client, with_backfill):
    history(store, "SKU-1", "store-1")
    publish(broker, store, "SKU-1", "store-1", upto=3)
    db = consumer_db()
    movements = sample.Movements(db, backfill_from(store) if with_backfill else None)
    failing = poison_at(3)

    def apply(event: dict[str, Any]) -> bool:
        failing(event)
        return movements.apply(event)

    sample.drain(client, TEAM, apply, max_wait=0.1, once=True)
    assert [s for s, _ in movements.recorded("SKU-1|store-1")] == [1, 2]  # 3 dead-lettered
    publish(broker, store, "SKU-1", "store-1", after=3)  # a newer event, 4
    positions = sample.StatePositions(db)

    sample.drain(client, TEAM, lambda e: positions.apply(e) | movements.apply(e),
                 max_wait=0.1, once=True)
    # Backfill reads 3 from the stream as soon as 4 shows the gap; without it, 4 waits.
    expected = [1, 2, 3, 4] if with_backfill else [1, 2, 4]
    assert [s for s, _ in movements.recorded("SKU-1|store-1")] == expected
    assert DeadLetterReplay(broker).replay(TEAM) == 1
    sample.drain(client, TEAM, lambda e: positions.apply(e) | movements.apply(e),
                 max_wait=0.1, once=True)

    # The replayed movement is kept (once), whatever arrived after it; the state consumer
    # stays at the newest position.
    assert [s for s, _ in movements.recorded("SKU-1|store-1")] == [1, 2, 3, 4]
    position = positions.position("SKU-1|store-1")
    assert position is not None and position["sequence"] == 4


def test_a_message_that_fails_validation_is_dead_lettered_with_the_failing_field(
        store, broker, client):
    history(store, "SKU-1", "store-1")
    (event,) = store.events("SKU-1", "store-1", after=1, limit=1)
    message = to_messages(event, with_deprecated=False)[0]
    document = json.loads(message.body)
    document["data"]["quantity"] = -5
    broker.publish(TOPIC, [replace(message, body=json.dumps(document).encode())])
    positions = sample.StatePositions(consumer_db())

    settled = sample.drain(client, TEAM, positions.apply, max_wait=0.1, once=True)

    assert settled == {"dead-lettered": 1}
    (dead,) = client.topics[TOPIC].subscriptions[TEAM].dead_letters
    assert dead.dead_letter["DeadLetterReason"] == "SchemaValidationFailed"
    assert "data.quantity" in dead.dead_letter["DeadLetterErrorDescription"]
    assert positions.position("SKU-1|store-1") is None


def test_an_unknown_event_type_is_skipped_not_failed(store, broker, client):
    history(store, "SKU-1", "store-1")
    (event,) = store.events("SKU-1", "store-1", after=1, limit=1)
    message = to_messages(event, with_deprecated=False)[0]
    document = json.loads(message.body)
    document["type"] = "Stockstream.StockReceived.v9"
    broker.publish(TOPIC, [replace(message, body=json.dumps(document).encode())])

    settled = sample.drain(client, TEAM, sample.StatePositions(consumer_db()).apply,
                           max_wait=0.1, once=True)

    assert settled == {"skipped": 1}
    assert client.topics[TOPIC].subscriptions[TEAM].dead_letters == []


def test_a_movement_consumer_records_an_order_event_after_a_gap_without_backfilling_it(
        store) -> None:
    """An order's events name no SKU-location: a gap in an order's session is left to
    the replay, never read back from a stock stream."""
    asked: list[tuple[str, str]] = []

    def backfill(sku: str, location: str, after: int) -> list[dict[str, object]]:
        asked.append((sku, location))
        return []

    movements = sample.Movements(consumer_db(), backfill)
    event = {"id": "order:ORD-1:3", "subject": "order:ORD-1", "sequence": 3,
             "type": "Stockstream.OrderConcluded.v1",
             "data": {"order_id": "ORD-1", "status": "held"}}

    assert movements.apply(event) is True
    assert movements.recorded("order:ORD-1") == [(3, "Stockstream.OrderConcluded.v1")]
    assert asked == []
