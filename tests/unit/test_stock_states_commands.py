"""Stock states, incoming and transfer steps through the command service, on the real
SQLite event store (memos, retries, counts composing per state, the ATP query)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from adapters.clock import ManualClock, SystemClock
from adapters.sqlite import SQLiteStockItems
from application.commands import CommandResult, StockCommands
from application.queries import StockQueries
from domain import StockItem
from domain.errors import IncomingConflict, InsufficientStock, InvalidRequest

SKU, STORE, DC = "SKU-1", "STORE-1", "DC-1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStockItems]:
    s = SQLiteStockItems(tmp_path / "events.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))


@pytest.fixture
def commands(store: SQLiteStockItems, clock: ManualClock) -> StockCommands:
    return StockCommands(store, clock)


def test_a_move_with_an_idempotency_key_is_recorded_once(
    commands: StockCommands, store: SQLiteStockItems
) -> None:
    commands.receive(SKU, STORE, 10)
    first = commands.move_state(SKU, STORE, 3, "sellable", "damaged", "dented", "move-1")
    again = commands.move_state(SKU, STORE, 3, "sellable", "damaged", "dented", "move-1")
    assert first.changed and not again.changed
    assert (again.position.on_hand, again.position.sellable, again.position.damaged) == (
        10, 7, 3)
    assert [type(e).__name__ for e in store.events(SKU, STORE)] == [
        "Created", "Received", "StateMoved"]


def test_moving_reserved_units_out_of_sellable_is_refused_and_records_nothing(
    commands: StockCommands, store: SQLiteStockItems
) -> None:
    commands.receive(SKU, STORE, 5)
    commands.reserve(SKU, STORE, "order-1", 4, "web")
    with pytest.raises(InsufficientStock):
        commands.move_state(SKU, STORE, 2, "sellable", "quality_control")
    assert len(store.events(SKU, STORE)) == 3


def test_receipts_into_a_state_and_against_an_incoming_entry(
    commands: StockCommands, clock: ManualClock
) -> None:
    commands.set_incoming(SKU, STORE, "PO-7", 12, clock.now() + timedelta(days=1))
    result = commands.receive(SKU, STORE, 5, "PO-7", "rcpt-1", state="quality_control")
    position = result.position
    assert (position.quality_control, position.sellable, position.incoming_total) == (5, 0, 7)
    assert not commands.receive(SKU, STORE, 5, "PO-7", "rcpt-1",
                                state="quality_control").changed
    cancelled = commands.set_incoming(SKU, STORE, "PO-7", 0, clock.now())
    assert cancelled.position.incoming == ()


def test_setting_incoming_on_an_unknown_sku_location_starts_its_stream(
    commands: StockCommands, clock: ManualClock
) -> None:
    nothing = commands.set_incoming(SKU, STORE, "PO-7", 0, clock.now())
    assert not nothing.changed and nothing.item is None
    started = commands.set_incoming(SKU, STORE, "PO-7", 4, clock.now())
    assert [type(e).__name__ for e in started.events] == ["Created", "IncomingSet"]


def test_a_count_of_a_held_state_keeps_moves_recorded_after_it(
    tmp_path: Path,
) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    commands = StockCommands(store, SystemClock())
    commands.receive(SKU, STORE, 20)
    counted_at = datetime.now(UTC)
    commands.move_state(SKU, STORE, 4, "sellable", "damaged")  # after the count was taken
    damaged = commands.record_count(SKU, STORE, "count-d", 1, counted_at, state="damaged")
    sellable = commands.record_count(SKU, STORE, "count-s", 18, counted_at)
    (d,) = damaged.events
    (s,) = sellable.events
    assert isinstance(d, StockItem.Counted) and isinstance(s, StockItem.Counted)
    assert (d.state, d.previous_on_hand, d.delta) == ("damaged", 0, 1)
    assert (s.state, s.previous_on_hand, s.delta) == ("sellable", 20, -2)
    assert (sellable.position.sellable, sellable.position.damaged) == (14, 5)
    with pytest.raises(InvalidRequest):
        commands.record_count(SKU, STORE, "count-x", 1, counted_at, state="lost")
    store.close()


def test_the_transfer_steps_are_idempotent_through_the_service(
    commands: StockCommands, store: SQLiteStockItems, clock: ManualClock
) -> None:
    commands.receive(SKU, DC, 30)
    steps: list[Callable[[], CommandResult]] = [
        lambda: commands.ship_transfer(SKU, DC, "transfer-1", 10, STORE),
        lambda: commands.expect_transfer(SKU, STORE, "transfer-1", 10, clock.now(), DC),
        lambda: commands.receive_transfer(SKU, STORE, "transfer-1", 8, 10, DC),
        lambda: commands.record_transit_loss(SKU, STORE, "transfer-1", 2, DC),
    ]
    for step in steps:
        assert step().changed
        for earlier in steps[: steps.index(step) + 1]:  # a process driven again
            assert not earlier().changed
    dc, shop = store.get(SKU, DC), store.get(SKU, STORE)
    assert dc is not None and shop is not None
    assert (dc.on_hand, shop.on_hand, shop.position().incoming) == (20, 8, ())
    commands.expect_transfer(SKU, STORE, "transfer-2", 1, clock.now(), DC)
    with pytest.raises(IncomingConflict):
        commands.set_incoming(SKU, STORE, "transfer-2", 1, clock.now())


def test_atp_is_answered_from_the_stream(
    commands: StockCommands, store: SQLiteStockItems, clock: ManualClock
) -> None:
    commands.receive(SKU, STORE, 10)
    commands.reserve(SKU, STORE, "order-1", 4, "web", ttl_seconds=3600)
    commands.set_incoming(SKU, STORE, "PO-7", 5, clock.now() + timedelta(days=2))
    queries = StockQueries(store, clock)
    promise = queries.available_to_promise(SKU, STORE, days=3)
    assert [(d.date, d.available_to_promise) for d in promise.days] == [
        (date(2026, 11, 26), 6), (date(2026, 11, 27), 6), (date(2026, 11, 28), 11)]
    clock.advance(7200)  # the reservation is overdue: ATP no longer counts it
    assert queries.available_to_promise(SKU, STORE, days=1).days[0].available_to_promise == 10
    unknown = queries.available_to_promise(SKU, "STORE-NEW", days=2)
    assert [d.available_to_promise for d in unknown.days] == [0, 0]
