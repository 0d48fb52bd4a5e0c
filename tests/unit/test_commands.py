"""The command services on the real SQLite event store."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from application.commands import RetryPolicy, StockCommands
from application.ports import ConcurrencyConflict
from application.queries import StockQueries
from domain import StockItem
from domain.errors import (
    DomainError,
    InsufficientStock,
    InvalidIdentifier,
    InvalidQuantity,
    UnknownReservation,
)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStockItems:
    s = SQLiteStockItems(tmp_path / "events.db")
    yield s
    s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def commands(store: SQLiteStockItems, clock: ManualClock) -> StockCommands:
    return StockCommands(store, clock)


def test_a_command_on_an_unknown_sku_location_starts_its_stream(
    commands: StockCommands, store: SQLiteStockItems
) -> None:
    result = commands.receive("SKU-1", "STORE-1", 20)
    assert result.position.on_hand == 20
    assert [type(e).__name__ for e in result.events] == ["Created", "Received"]
    assert store.max_position() == 2


def test_a_no_op_on_an_unknown_stream_stores_nothing(
    commands: StockCommands, store: SQLiteStockItems
) -> None:
    result = commands.set_policy("SKU-1", "STORE-1", 0, 0)
    assert not result.changed and result.position.version == 0
    assert store.max_position() == 0


def test_thirty_two_threads_racing_for_twenty_units_never_oversell(
    commands: StockCommands, store: SQLiteStockItems
) -> None:
    commands.receive("SKU-1", "STORE-1", 20)
    barrier = threading.Barrier(32)

    def reserve(n: int) -> str:
        barrier.wait()
        try:
            commands.reserve("SKU-1", "STORE-1", f"order-{n}", 1, "web")
        except InsufficientStock:
            return "insufficient"
        return "reserved"

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(reserve, range(32)))

    assert outcomes.count("reserved") == 20
    assert outcomes.count("insufficient") == 12
    events = store.events("SKU-1", "STORE-1")
    assert sum(isinstance(e, StockItem.Reserved) for e in events) == 20
    assert StockQueries(store).position("SKU-1", "STORE-1").reserved == 20


def test_writers_in_separate_processes_retry_conflicts_and_lose_nothing(
    tmp_path: Path, clock: ManualClock
) -> None:
    # Each writer has its own store (its own cache and connections), as separate worker
    # processes would: the in-process stream lock cannot serialise them, the database must.
    path = tmp_path / "events.db"
    stores = [SQLiteStockItems(path) for _ in range(8)]
    writers = [StockCommands(s, clock, RetryPolicy(attempts=50)) for s in stores]
    writers[0].receive("SKU-1", "STORE-1", 1000)
    barrier = threading.Barrier(8)

    def receive_many(writer: StockCommands) -> None:
        barrier.wait()
        for n in range(10):
            writer.reserve("SKU-1", "STORE-1", f"order-{id(writer)}-{n}", 1, "pos")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(receive_many, writers))

    events = stores[0].events("SKU-1", "STORE-1")
    assert [e.originator_version for e in events] == list(range(1, 83))
    assert stores[0].get("SKU-1", "STORE-1").reserved == 80  # type: ignore[union-attr]
    for s in stores:
        s.close()


def test_a_conflict_that_outlasts_the_retries_surfaces_as_a_conflict(
    store: SQLiteStockItems, clock: ManualClock
) -> None:
    class AlwaysConflicts(SQLiteStockItems):
        def save(self, item: StockItem) -> list[StockItem.Event]:
            raise ConcurrencyConflict("someone else always wins")

    path = Path(store.app.factory.datastore.pool.db_name)  # type: ignore[attr-defined]
    loser = StockCommands(AlwaysConflicts(path), clock, RetryPolicy(attempts=3, base_delay=0))
    with pytest.raises(ConcurrencyConflict):
        loser.receive("SKU-1", "STORE-1", 1)
    assert store.max_position() == 0


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (lambda c: c.receive("bad sku", "STORE-1", 1), InvalidIdentifier),
        (lambda c: c.receive("SKU-1", "STORE/1", 1), InvalidIdentifier),
        (lambda c: c.receive("SKU-1", "STORE-1", 0), InvalidQuantity),
        (lambda c: c.receive("SKU-1", "STORE-1", -3), InvalidQuantity),
        (lambda c: c.receive("SKU-1", "STORE-1", 2.5), InvalidQuantity),
        (lambda c: c.reserve("SKU-1", "STORE-1", "order 1", 1, "web"), InvalidIdentifier),
        (lambda c: c.reserve("SKU-1", "STORE-1", "order-1", 0, "web"), InvalidQuantity),
        (lambda c: c.reserve("SKU-1", "STORE-1", "order-1", "1", "web"), InvalidQuantity),
        (lambda c: c.release("SKU-1", "STORE-1", "order-404"), UnknownReservation),
        (lambda c: c.fulfil("SKU-1", "STORE-1", "order-404"), UnknownReservation),
    ],
)
def test_invalid_commands_raise_typed_errors_and_store_nothing(
    commands: StockCommands, store: SQLiteStockItems, command: object, error: type[DomainError]
) -> None:
    with pytest.raises(error):
        command(commands)  # type: ignore[operator]
    assert store.max_position() == 0


def test_overdue_reservations_are_expired_before_a_command_decides(
    commands: StockCommands, clock: ManualClock
) -> None:
    commands.receive("SKU-1", "STORE-1", 5)
    commands.reserve("SKU-1", "STORE-1", "order-1", 5, "web", ttl_seconds=60)
    with pytest.raises(InsufficientStock):
        commands.reserve("SKU-1", "STORE-1", "order-2", 1, "web")
    clock.advance(61)
    result = commands.reserve("SKU-1", "STORE-1", "order-2", 5, "web")
    kinds = [(type(e).__name__, getattr(e, "reason", None)) for e in result.events]
    assert kinds == [("Released", "expired"), ("Reserved", None)]


def test_a_count_taken_before_later_sales_keeps_those_sales_on_top(
    commands: StockCommands, clock: ManualClock
) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    # Event timestamps come from the machine's clock (the library's), so the count is too.
    counted_at = datetime.now(UTC)
    threading.Event().wait(0.01)
    commands.adjust("SKU-1", "STORE-1", -2, "damaged")
    result = commands.record_count("SKU-1", "STORE-1", "count-1", 7, counted_at)
    counted = result.events[-1]
    assert isinstance(counted, StockItem.Counted)
    assert (counted.previous_on_hand, counted.delta) == (10, -3)
    assert result.position.on_hand == 5


def test_a_count_in_the_future_is_refused(commands: StockCommands, clock: ManualClock) -> None:
    with pytest.raises(DomainError):
        commands.record_count("SKU-1", "STORE-1", "count-1", 7, clock.now() + timedelta(hours=1))


def test_the_store_reads_back_after_reopening(tmp_path: Path, clock: ManualClock) -> None:
    first = SQLiteStockItems(tmp_path / "events.db")
    StockCommands(first, clock).receive("SKU-1", "STORE-1", 3)
    first.close()
    again = SQLiteStockItems(tmp_path / "events.db")
    assert StockQueries(again).position("SKU-1", "STORE-1").on_hand == 3
    assert [r.position for r in again.read_after(0, 10)] == [1, 2]
    again.close()


def test_a_position_read_leaves_out_overdue_reservations_without_recording_anything(
    commands: StockCommands, store: SQLiteStockItems, clock: ManualClock
) -> None:
    commands.receive("SKU-1", "STORE-1", 5)
    commands.reserve("SKU-1", "STORE-1", "order-1", 2, "web", ttl_seconds=60)
    queries = StockQueries(store, clock)
    assert queries.position("SKU-1", "STORE-1").reserved == 2
    clock.advance(61)
    position = queries.position("SKU-1", "STORE-1")
    assert (position.reserved, position.available, position.version) == (0, 5, 3)
    assert store.max_position() == 3  # a read records nothing
