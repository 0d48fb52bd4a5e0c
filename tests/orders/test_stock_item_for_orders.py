"""What orders add to ``StockItem`` (additively): reopening a released reservation for an
order placed again, rescheduling an open reservation's expiry, and an exact expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from domain import StockItem
from domain.errors import ReservationClosed, UnknownReservation
from tests.events import only

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def stocked() -> StockItem:
    item = StockItem.create("A", "S1")
    item.receive(10)
    return item


def recall_of(item: StockItem) -> dict[str, str]:
    return {memo: value for e in only(item.pending_events, StockItem.Event)
            for memo, value in e.memos()}


@pytest.mark.parametrize("reason", ["cancelled", "expired"])
def test_a_released_reservation_reopens_only_when_asked(reason: str) -> None:
    item = stocked()
    item.reserve("o-1", 2, "web")
    item.release("o-1", reason=reason)
    with pytest.raises(ReservationClosed):
        item.reserve("o-1", 2, "web")
    item.reserve("o-1", 3, "web", reopen=True)
    assert item.reservation("o-1") is not None and item.reserved == 3


def test_a_fulfilled_reservation_never_reopens() -> None:
    item = stocked()
    item.reserve("o-1", 2, "web")
    item.fulfil("o-1")
    with pytest.raises(ReservationClosed):
        item.reserve("o-1", 2, "web", reopen=True)


def test_reschedule_moves_an_open_reservation_s_expiry_only() -> None:
    item = stocked()
    item.reserve("o-1", 2, "web", NOW)
    item.collect_events()
    item.reschedule("o-1", NOW + timedelta(hours=1))
    (event,) = item.collect_events()
    assert isinstance(event, StockItem.Reserved)
    assert (event.quantity, event.previous_quantity, event.expires_at) == (
        2, 2, NOW + timedelta(hours=1))
    assert item.reserved == 2
    item.reschedule("o-1", NOW + timedelta(hours=1))
    assert item.collect_events() == []
    item.reschedule("o-1", None)
    reservation = item.reservation("o-1")
    assert reservation is not None and reservation.expires_at is None


def test_reschedule_refuses_an_unknown_or_closed_reservation() -> None:
    item = stocked()
    with pytest.raises(UnknownReservation):
        item.reschedule("o-1", NOW)
    item.reserve("o-1", 2, "web")
    item.release("o-1")
    with pytest.raises(ReservationClosed):
        item.reschedule("o-1", NOW, recall_of(item).get)


def test_the_command_service_reserves_until_an_exact_moment(tmp_path: object) -> None:
    store = SQLiteStockItems(f"{tmp_path}/events.db")
    try:
        commands = StockCommands(store, ManualClock(NOW))
        commands.receive("A", "S1", 5)
        result = commands.reserve("A", "S1", "o-1", 2, "web",
                                  expires_at=NOW + timedelta(seconds=42))
        (reservation,) = result.position_of("o-1").reservations
        assert reservation.expires_at == NOW + timedelta(seconds=42)
        later = commands.reschedule("A", "S1", "o-1", NOW + timedelta(seconds=99))
        (reservation,) = later.position_of("o-1").reservations
        assert reservation.expires_at == NOW + timedelta(seconds=99)
    finally:
        store.close()
