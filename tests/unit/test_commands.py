"""The command services on the real SQLite event store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from application.commands import RetryPolicy, StockCommands
from application.ports import ConcurrencyConflict, Recalled
from application.queries import StockQueries
from domain import Position, Reservation, StockItem
from domain.errors import (
    CountAlreadyRecorded,
    DomainError,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidIdentifier,
    InvalidQuantity,
    InvalidRequest,
    ReservationClosed,
    UnknownReservation,
)
from tests.events import only


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStockItems]:
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


# ------------------------------------------------------------ what reaches the stream


def test_a_receipts_reference_and_key_reach_its_event(commands: StockCommands) -> None:
    result = commands.receive("SKU-1", "STORE-1", 5, "PO-17", idempotency_key="asn-17")
    assert (result.sku, result.location, result.changed) == ("SKU-1", "STORE-1", True)
    received = result.events[-1]
    assert isinstance(received, StockItem.Received)
    assert (received.quantity, received.reference, received.idempotency_key) == (
        5, "PO-17", "asn-17")
    again = commands.receive("SKU-1", "STORE-1", 5, "PO-17", idempotency_key="asn-17")
    assert not again.changed and again.position.on_hand == 5
    with pytest.raises(IdempotencyKeyReused):
        commands.receive("SKU-1", "STORE-1", 5, "PO-18", idempotency_key="asn-17")


def test_an_adjustments_reason_note_and_key_reach_its_event(commands: StockCommands) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    result = commands.adjust("SKU-1", "STORE-1", -2, "damaged", idempotency_key="adj-1",
                             note="dented")
    (adjusted,) = result.events
    assert isinstance(adjusted, StockItem.Adjusted)
    assert (adjusted.delta, adjusted.reason_code, adjusted.note, adjusted.idempotency_key) == (
        -2, "damaged", "dented", "adj-1")
    assert not commands.adjust("SKU-1", "STORE-1", -2, "damaged", idempotency_key="adj-1",
                               note="dented").changed
    with pytest.raises(IdempotencyKeyReused):
        commands.adjust("SKU-1", "STORE-1", -2, "damaged", idempotency_key="adj-1",
                        note="crushed")


def test_a_policy_set_through_the_service_changes_available(commands: StockCommands) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    result = commands.set_policy("SKU-1", "STORE-1", 3, 2)
    assert result.changed
    position = result.position
    assert (position.safety_stock, position.oversell_buffer, position.available) == (3, 2, 7)


def test_a_reservation_through_the_service_expires_its_ttl_after_the_clock(
    commands: StockCommands, clock: ManualClock,
) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    result = commands.reserve("SKU-1", "STORE-1", "order-1", 3, "pos", ttl_seconds=90)
    (reserved,) = result.events
    assert isinstance(reserved, StockItem.Reserved)
    assert (reserved.order_id, reserved.quantity, reserved.channel, reserved.expires_at) == (
        "order-1", 3, "pos", clock.now() + timedelta(seconds=90))
    assert result.position_of("order-1").reservations[0].expires_at == reserved.expires_at


def test_a_partial_fulfilment_through_the_service_ships_that_quantity(
    commands: StockCommands,
) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    commands.reserve("SKU-1", "STORE-1", "order-1", 4, "web")
    result = commands.fulfil("SKU-1", "STORE-1", "order-1", 3)
    (fulfilled,) = only(result.events, StockItem.Fulfilled)
    assert (fulfilled.order_id, fulfilled.quantity) == ("order-1", 3)
    assert (result.position.on_hand, result.position.reserved) == (7, 0)
    assert not commands.fulfil("SKU-1", "STORE-1", "order-1", 3).changed


def test_a_count_through_the_service_records_when_it_was_taken(
    commands: StockCommands, clock: ManualClock,
) -> None:
    counted_at = clock.now() - timedelta(hours=1)
    result = commands.record_count("SKU-1", "STORE-1", "count-1", 6, counted_at)
    assert not result.already_recorded
    (_, counted) = result.events
    assert isinstance(counted, StockItem.Counted)
    assert (counted.count_id, counted.counted, counted.counted_at) == ("count-1", 6, counted_at)
    assert result.position.on_hand == 6


def test_a_count_repeated_through_the_service_is_recognised(
    commands: StockCommands, clock: ManualClock,
) -> None:
    counted_at = clock.now() - timedelta(hours=1)
    commands.record_count("SKU-1", "STORE-1", "count-1", 6, counted_at)
    commands.receive("SKU-1", "STORE-1", 2)
    repeat = commands.record_count("SKU-1", "STORE-1", "count-1", 6, counted_at)
    assert not repeat.changed and repeat.position.on_hand == 8
    assert repeat.already_recorded  # the aggregate's answer, not inferred from the events
    with pytest.raises(CountAlreadyRecorded):
        commands.record_count("SKU-1", "STORE-1", "count-1", 5, counted_at)


def test_releasing_through_the_service_frees_the_units(commands: StockCommands) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    commands.reserve("SKU-1", "STORE-1", "order-1", 4, "web")
    result = commands.release("SKU-1", "STORE-1", "order-1")
    (released,) = only(result.events, StockItem.Released)
    assert (released.order_id, released.quantity, released.reason) == ("order-1", 4, "cancelled")
    assert result.position.available == 10
    assert not commands.release("SKU-1", "STORE-1", "order-1").changed


# -------------------------------------------------------------------- what it answers


def test_a_no_op_on_a_stream_answers_its_current_position(commands: StockCommands) -> None:
    commands.receive("SKU-1", "STORE-1", 20)
    commands.reserve("SKU-1", "STORE-1", "order-1", 2, "web")
    result = commands.set_policy("SKU-1", "STORE-1", 0, 0)
    assert not result.changed and result.events == []
    assert (result.position.on_hand, result.position.reserved, result.position.version) == (
        20, 2, 3)
    assert result.position_of("order-1").reservations == (
        Reservation("order-1", 2, "web", None),)


def test_a_result_lists_the_reservations_asked_for_and_counts_them_all(
    commands: StockCommands,
) -> None:
    commands.receive("SKU-1", "STORE-1", 20)
    commands.reserve("SKU-1", "STORE-1", "order-1", 2, "web")
    result = commands.reserve("SKU-1", "STORE-1", "order-2", 3, "web")
    assert [r.order_id for r in result.position.reservations] == ["order-1", "order-2"]
    only = result.position_of("order-2")
    assert [(r.order_id, r.quantity) for r in only.reservations] == [("order-2", 3)]
    assert (only.open_reservations, only.reserved, only.version) == (2, 5, 4)
    assert result.position_of().reservations == ()


def test_a_no_op_on_an_unknown_stream_answers_the_empty_position(
    commands: StockCommands,
) -> None:
    result = commands.set_policy("SKU-1", "STORE-1", 0, 0)
    assert result.position == Position.empty("SKU-1", "STORE-1")
    assert result.position_of("order-1") == Position.empty("SKU-1", "STORE-1")
    assert result.item is None and (result.sku, result.location) == ("SKU-1", "STORE-1")


def test_the_sweep_expires_overdue_reservations_and_nothing_else(
    commands: StockCommands, clock: ManualClock,
) -> None:
    commands.receive("SKU-1", "STORE-1", 10)
    commands.reserve("SKU-1", "STORE-1", "order-1", 4, "web", ttl_seconds=60)
    commands.reserve("SKU-1", "STORE-1", "order-2", 1, "web", ttl_seconds=600)
    assert not commands.expire_overdue("SKU-1", "STORE-1").changed
    clock.advance(60)
    result = commands.expire_overdue("SKU-1", "STORE-1")
    released = only(result.events, StockItem.Released)
    assert [(e.order_id, e.reason) for e in released] == [("order-1", "expired")]
    assert (result.position.reserved, result.position.available) == (1, 9)
    nothing = commands.expire_overdue("SKU-1", "STORE-1")
    assert not nothing.changed and nothing.position.version == 5


# ------------------------------------------------------------------ counts' window


@pytest.mark.parametrize(("offset", "accepted"), [
    (timedelta(minutes=5), True),
    (timedelta(minutes=5, microseconds=1), False),
    (-timedelta(days=7), True),
    (-timedelta(days=7, microseconds=1), False),
])
def test_a_count_may_be_up_to_five_minutes_ahead_and_a_week_back(
    commands: StockCommands, clock: ManualClock, offset: timedelta, accepted: bool,
) -> None:
    counted_at = clock.now() + offset
    if accepted:
        assert commands.record_count("SKU-1", "STORE-1", "c", 3, counted_at).changed
        return
    with pytest.raises(InvalidRequest) as refused:
        commands.record_count("SKU-1", "STORE-1", "c", 3, counted_at)
    assert refused.value.details["field"] == "counted_at"
    word = "ahead" if offset > timedelta(0) else "STOCKSTREAM_COUNT_MAX_AGE"
    assert word in refused.value.message


def test_a_count_time_without_a_time_zone_is_refused(commands: StockCommands) -> None:
    with pytest.raises(InvalidRequest) as refused:
        commands.record_count("SKU-1", "STORE-1", "c", 3, datetime(2026, 1, 1))
    assert refused.value.details["field"] == "counted_at"


# ------------------------------------------------------ fresh reads, retries, observers


@pytest.fixture
def two_processes(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[StockCommands, ...]]:
    """Two writers on one file, each with its own store and cache, like two workers."""
    stores = [SQLiteStockItems(tmp_path / "shared.db") for _ in range(2)]
    yield tuple(StockCommands(s, clock) for s in stores)
    for s in stores:
        s.close()


def test_a_refusal_on_a_stale_cache_is_checked_on_a_fresh_read(
    two_processes: tuple[StockCommands, StockCommands],
) -> None:
    here, elsewhere = two_processes
    here.receive("SKU-1", "STORE-1", 1)  # cached here with 1 on hand
    elsewhere.receive("SKU-1", "STORE-1", 9)

    result = here.reserve("SKU-1", "STORE-1", "order-1", 8, "web")

    assert result.changed and result.position.reserved == 8


def test_a_repeat_on_a_stale_cache_is_checked_on_a_fresh_read(
    two_processes: tuple[StockCommands, StockCommands],
) -> None:
    here, elsewhere = two_processes
    here.receive("SKU-1", "STORE-1", 10)
    here.reserve("SKU-1", "STORE-1", "order-1", 2, "web")  # cached here as open
    elsewhere.release("SKU-1", "STORE-1", "order-1")

    with pytest.raises(ReservationClosed):
        here.reserve("SKU-1", "STORE-1", "order-1", 2, "web")


def test_a_key_used_elsewhere_after_the_cached_state_is_recognised(
    two_processes: tuple[StockCommands, StockCommands],
) -> None:
    here, elsewhere = two_processes
    here.receive("SKU-1", "STORE-1", 10)
    elsewhere.receive("SKU-1", "STORE-1", 5, idempotency_key="k-1")

    repeat = here.receive("SKU-1", "STORE-1", 5, idempotency_key="k-1")

    assert not repeat.changed and repeat.position.on_hand == 15


class Recording(SQLiteStockItems):
    """A store that counts its saves and can be told to lose every race."""

    def __init__(self, path: Path, *, conflicts: bool = False,
                 memos_from_the_future: bool = False) -> None:
        super().__init__(path)
        self.saves = 0
        self.conflicts = conflicts
        self.memos_from_the_future = memos_from_the_future

    def save(self, item: StockItem) -> list[StockItem.Event]:
        self.saves += 1
        if self.conflicts:
            raise ConcurrencyConflict("someone else won")
        return super().save(item)

    def recall(self, sku: str, location: str, memo: str) -> Recalled | None:
        if self.memos_from_the_future:
            return Recalled("receipt:1:", 10**6)  # written at a version not yet read
        return super().recall(sku, location, memo)


def test_the_callers_retry_policy_bounds_the_attempts_and_their_backoff(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("application.commands.time.sleep", sleeps.append)
    monkeypatch.setattr("application.commands.random.uniform", lambda low, high: high)
    store = Recording(tmp_path / "events.db", conflicts=True)
    commands = StockCommands(store, clock, RetryPolicy(attempts=4, base_delay=0.01,
                                                       max_delay=0.03))
    with pytest.raises(ConcurrencyConflict):
        commands.receive("SKU-1", "STORE-1", 1)
    assert store.saves == 4
    assert sleeps == [0.02, 0.03, 0.03]  # base·2^attempt, capped; none after the last
    store.close()


def test_without_a_policy_a_lost_race_is_retried_a_bounded_number_of_times(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("application.commands.time.sleep", lambda seconds: None)
    store = Recording(tmp_path / "events.db", conflicts=True)
    with pytest.raises(ConcurrencyConflict):
        StockCommands(store, clock).receive("SKU-1", "STORE-1", 1)
    assert store.saves == RetryPolicy().attempts > 1
    store.close()


def test_a_stream_whose_memos_keep_running_ahead_surfaces_as_a_conflict(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("application.commands.time.sleep", lambda seconds: None)
    store = Recording(tmp_path / "events.db", memos_from_the_future=True)
    commands = StockCommands(store, clock, RetryPolicy(attempts=3))
    recalls: list[str] = []
    real_recall = store.recall

    def recall(sku: str, location: str, memo: str) -> Recalled | None:
        recalls.append(memo)
        return real_recall(sku, location, memo)

    store.recall = recall  # type: ignore[method-assign]

    with pytest.raises(ConcurrencyConflict) as raised:
        commands.receive("SKU-1", "STORE-1", 1, idempotency_key="k-1")

    assert "SKU-1|STORE-1" in str(raised.value)
    assert len(recalls) == 3 and store.saves == 0
    store.close()


def test_the_backoff_is_full_jitter_up_to_an_exponential_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=3.0)
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr("application.commands.random.uniform", uniform)
    assert [policy.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert {low for low, _ in bounds} == {0}


def test_observers_see_each_saved_commands_events_and_cannot_fail_it(
    commands: StockCommands, caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[list[str]] = []

    def broken(events: list[StockItem.Event]) -> None:
        raise RuntimeError("observer bug")

    commands.after_commit.extend([broken, lambda events: seen.append(
        [type(e).__name__ for e in events])])
    result = commands.receive("SKU-1", "STORE-1", 3)
    commands.set_policy("SKU-1", "STORE-1", 0, 0)  # records nothing: observers not called

    assert result.position.on_hand == 3
    assert seen == [["Created", "Received"]]
    assert "after-commit observer failed" in caplog.text
