"""Ids are recognised for a time window, however many a SKU-location sees in it.

A hot SKU-location sees thousands of orders a day: a late retry of a receipt's
Idempotency-Key must not add the stock again, and a late PUT of a fulfilled order's
reservation must not open a hold that never goes away, whatever came in between. The
aggregate's state does not grow with the ids: the store keeps them beside the events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from adapters.event_store import StockstreamApplication
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from domain import StockItem
from domain.errors import CountAlreadyRecorded, IdempotencyKeyReused, ReservationClosed

SKU, LOCATION = "SKU-1", "STORE-1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStockItems]:
    s = SQLiteStockItems(tmp_path / "events.db")
    yield s
    s.close()


@pytest.fixture
def commands(store: SQLiteStockItems) -> StockCommands:
    return StockCommands(store, ManualClock())


@pytest.mark.slow
def test_a_receipt_key_retried_after_1000_later_keys_is_still_recognised(
    commands: StockCommands,
) -> None:
    commands.receive(SKU, LOCATION, 24, "ASN-1", idempotency_key="asn-1")
    for n in range(1200):
        commands.receive(SKU, LOCATION, 1, idempotency_key=f"later-{n}")

    retry = commands.receive(SKU, LOCATION, 24, "ASN-1", idempotency_key="asn-1")

    assert not retry.changed
    assert retry.position.on_hand == 24 + 1200
    with pytest.raises(IdempotencyKeyReused):
        commands.receive(SKU, LOCATION, 25, "ASN-1", idempotency_key="asn-1")


@pytest.mark.slow
def test_a_fulfilled_order_retried_after_1000_later_orders_is_not_held_again(
    commands: StockCommands,
) -> None:
    commands.receive(SKU, LOCATION, 5000)
    commands.reserve(SKU, LOCATION, "order-early", 2, "web", ttl_seconds=900)
    commands.fulfil(SKU, LOCATION, "order-early")
    for n in range(1100):
        commands.reserve(SKU, LOCATION, f"order-{n}", 1, "web")
        commands.release(SKU, LOCATION, f"order-{n}")

    with pytest.raises(ReservationClosed) as refused:
        commands.reserve(SKU, LOCATION, "order-early", 2, "web", ttl_seconds=900)
    repeat = commands.fulfil(SKU, LOCATION, "order-early")

    assert refused.value.outcome == "fulfilled"
    assert not repeat.changed and repeat.position.reserved == 0


@pytest.mark.slow
def test_a_count_id_shares_the_window(commands: StockCommands) -> None:
    counted_at = ManualClock().now()
    commands.receive(SKU, LOCATION, 10)
    commands.record_count(SKU, LOCATION, "count-1", 8, counted_at)
    for n in range(1100):
        commands.receive(SKU, LOCATION, 1, idempotency_key=f"k-{n}")
    with pytest.raises(CountAlreadyRecorded):
        commands.record_count(SKU, LOCATION, "count-1", 9, counted_at)
    assert not commands.record_count(SKU, LOCATION, "count-1", 8, counted_at).changed


def test_a_key_is_forgotten_once_its_window_has_passed(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db", memo_window=timedelta(milliseconds=300))
    commands = StockCommands(store, ManualClock())
    commands.receive(SKU, LOCATION, 5, idempotency_key="k")
    assert not commands.receive(SKU, LOCATION, 5, idempotency_key="k").changed
    time.sleep(0.4)
    assert commands.receive(SKU, LOCATION, 5, idempotency_key="k").position.on_hand == 10
    store.close()


def _snapshot_size(commands: StockCommands, keys: int, sku: str) -> int:
    for n in range(keys):
        commands.receive(sku, LOCATION, 1, idempotency_key=f"key-{n}")
    item = commands.store.get(sku, LOCATION)
    assert item is not None
    app: StockstreamApplication = commands.store.app  # type: ignore[attr-defined]
    return len(app.mapper.to_stored_event(StockItem.Snapshot.take(item)).state)


@pytest.mark.slow
def test_ten_thousand_keys_leave_the_snapshot_the_size_of_ten(commands: StockCommands) -> None:
    small = _snapshot_size(commands, 10, "SKU-small")
    large = _snapshot_size(commands, 10_000, "SKU-large")
    # Only the figures' digits and the SKU's name differ.
    assert abs(large - small) <= 16, (small, large)
