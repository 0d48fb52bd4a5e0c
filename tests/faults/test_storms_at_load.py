"""A duplicate storm and poison messages while commands keep coming, with the embedded
pipeline running (relay thread, broker, four consumer workers).

- Storm: the relay publishes every message three times, and the topic's duplicate
  detection is off, so every copy reaches the availability consumer.
- Poison: the handler fails on a fraction of the events of some streams until it is
  "fixed"; those messages are redelivered, dead-lettered, then replayed.

Afterwards the projection equals the event store, stream by stream, and counts every
event once. During the poison period the healthy streams' views keep up with their
streams. A handler that is not idempotent (a running sum of reserved units) is fed the
same deliveries beside it and is wrong, which shows the storm is real.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.sqlite import SQLiteStockItems
from application.consumer import EventConsumer
from application.ports import MessagePublisher, OutgoingMessage
from application.replay import DeadLetterReplay
from application.settings import load
from composition import Services
from composition.embedded import EmbeddedProcess, embedded_services
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from domain import StockItem
from local.pipeline import Pipeline, start_pipeline

COMMANDS = int(os.environ.get("STOCKSTREAM_FAULT_STORM_COMMANDS", "400"))
SKUS = 16
POISONED_SKUS = {"SKU-0", "SKU-1"}
COPIES = 3


class Tripling(MessagePublisher):
    """Publishes every batch ``COPIES`` times: what a relay retrying blindly would do."""

    def __init__(self, inner: MessagePublisher) -> None:
        self.inner = inner

    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        for _ in range(COPIES):
            self.inner.publish(topic, messages)


@dataclass
class Running:
    container: Services
    pipeline: Pipeline
    deliveries: int = 0
    naive_reserved_units: int = 0
    poisoned: bool = False
    poison_failures: int = 0

    def handler(self, inner: Callable[[dict[str, Any]], object]) -> Callable[..., object]:
        lock = threading.Lock()

        def fragile(document: dict[str, Any]) -> object:
            sku = document["subject"].split("|")[0]
            if self.poisoned and sku in POISONED_SKUS and int(document["sequence"]) % 3 == 0:
                with lock:
                    self.poison_failures += 1
                raise RuntimeError("a projection bug on this event")
            with lock:
                self.deliveries += 1
                if document["type"].startswith("Stockstream.StockReserved"):
                    data = document["data"]
                    self.naive_reserved_units += data["quantity"] - data["previous_quantity"]
            return inner(document)

        return fragile


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}),
                                  process=EmbeddedProcess.PIPELINE)
    pipeline = start_pipeline(container)
    pipeline.broker.create_topic(TOPIC, duplicate_detection_window=timedelta(0))
    pipeline.relay.publisher = Tripling(pipeline.broker)
    state = Running(container, pipeline)
    # The pipeline's own batch scope, so the poison is met inside a batch as in service.
    pipeline.consumer.consumer = EventConsumer(
        "availability", state.handler(pipeline.projection.handle),
        batch=pipeline.consumer.consumer.batch)
    try:
        yield state
    finally:
        pipeline.stop()
        container.close()


def trade(container: Services, first: int, count: int) -> None:
    """Receipts and reservations (some cancelled) over ``SKUS`` streams."""
    commands = container.commands
    for n in range(first, first + count):
        sku = f"SKU-{n % SKUS}"
        if n % 9 == 0:
            commands.receive(sku, "STORE-1", 20)
        elif n % 5 == 0 and (item := container.store.get(sku, "STORE-1")) and item.reservations:
            commands.release(sku, "STORE-1", sorted(item.reservations)[0])
        else:
            commands.reserve(sku, "STORE-1", f"order-{n}", 1 + n % 2, "web")


def store_versions(container: Services) -> dict[str, int]:
    versions = {}
    for n in range(SKUS):
        item = container.store.get(f"SKU-{n}", "STORE-1")
        assert item is not None
        versions[f"SKU-{n}"] = item.version
    return versions


def max_position(container: Services) -> int:
    store = container.store
    assert isinstance(store, SQLiteStockItems)
    return store.max_position()


def await_condition(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def assert_projection_equals_event_store(running: Running) -> None:
    views = running.pipeline.views
    rows = {row.sku: row for row in views.rows()}
    assert set(rows) == {f"SKU-{n}" for n in range(SKUS)}
    for sku, row in rows.items():
        item = running.container.store.get(sku, "STORE-1")
        assert item is not None
        assert (row.version, row.on_hand, row.reserved, row.available) == (
            item.version, item.on_hand, item.reserved, item.available), sku
    assert views.events_applied() == max_position(running.container)


def test_duplicate_storm_and_poison_at_load_end_with_the_projection_equal_to_the_store(
    running: Running, reliability: Any
) -> None:
    container, pipeline = running.container, running.pipeline
    for n in range(SKUS):
        container.commands.receive(f"SKU-{n}", "STORE-1", 1000)

    # 1. The storm: every message three times, while commands run.
    trade(container, 0, COMMANDS)
    await_condition(lambda: pipeline.views.events_applied() == container.store.max_position(),  # type: ignore[attr-defined]
                    "the storm is absorbed")
    assert_projection_equals_event_store(running)
    assert running.deliveries >= 2 * container.store.max_position(), "no storm happened"  # type: ignore[attr-defined]

    # 2. Poison on a fraction of two streams' events, while commands keep coming.
    running.poisoned = True
    trade(container, COMMANDS, COMMANDS)
    healthy = store_versions(container)
    await_condition(lambda: all(pipeline.views.version_of(sku, "STORE-1") == version
                                for sku, version in healthy.items()
                                if sku not in POISONED_SKUS),
                    "the healthy streams catch up while the poison is in")
    await_condition(lambda: pipeline.broker.counts(
        TOPIC, AVAILABILITY_SUBSCRIPTION).dead_lettered > 0, "poison is dead-lettered")
    assert running.poison_failures > 0

    # 3. The fix ships; dead letters are replayed; everything converges.
    running.poisoned = False
    await_condition(lambda: pipeline.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == 0,
                    "the subscription drains")
    assert DeadLetterReplay(pipeline.broker).replay(AVAILABILITY_SUBSCRIPTION) > 0
    await_condition(lambda: pipeline.broker.counts(
        TOPIC, AVAILABILITY_SUBSCRIPTION).dead_lettered == 0
        and pipeline.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == 0,
        "the replayed messages are settled")
    assert_projection_equals_event_store(running)

    # The teeth: a handler without idempotency, fed the same deliveries, is wrong.
    true_reserved = sum(item.reserved for n in range(SKUS)
                        if (item := container.store.get(f"SKU-{n}", "STORE-1")) is not None)
    reserved_ever = sum(
        e.quantity - e.previous_quantity
        for n in range(SKUS) for e in container.store.events(f"SKU-{n}", "STORE-1")
        if isinstance(e, StockItem.Reserved))
    assert running.naive_reserved_units > reserved_ever >= true_reserved
    reliability.record("duplicate storm and poison at load",
                       events=max_position(container), deliveries=running.deliveries,
                       poison_failures=running.poison_failures, projection_mismatches=0,
                       naive_handler_overcount=running.naive_reserved_units - reserved_ever)
