"""Stock states, incoming supply and the stock-item side of transfers, by example
(docs/stock-states.md, one SKU-location at a time)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain import StockItem
from domain.errors import (
    CountAlreadyRecorded,
    IdempotencyKeyReused,
    IncomingConflict,
    InsufficientInState,
    InsufficientOnHand,
    InsufficientStock,
    InvalidIdentifier,
    InvalidQuantity,
    InvalidRequest,
    TransferConflict,
)
from domain.promise import MAX_PROMISE_DAYS, available_to_promise
from domain.stock_item import IncomingEntry, movements_after
from tests.events import collected, stock_events

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def stocked(on_hand: int = 10, location: str = "STORE-7") -> StockItem:
    item = StockItem.create("SKU-1", location)
    if on_hand:
        item.receive(on_hand)
    item.collect_events()
    return item


class Memos(dict[str, str]):
    """What a store recalls of a stream: the memos of the events saved so far."""

    def save(self, item: StockItem) -> list[StockItem.Event]:
        events: list[StockItem.Event] = item.collect_events()  # type: ignore[assignment]
        for event in events:
            self.update(event.memos())
        return events

    def recall(self, memo: str) -> str | None:
        return self.get(memo)


def figures(item: StockItem) -> tuple[int, int, int, int, int]:
    """(on_hand, sellable, damaged, quality_control, available)"""
    return (item.on_hand, item.sellable, item.damaged, item.quality_control, item.available)


# ----------------------------------------------------------------------- states


def test_on_hand_is_the_sum_of_the_states_and_only_sellable_is_available() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=1, oversell_buffer=0)
    item.move(3, "sellable", "damaged")
    item.receive(4, state="quality_control")
    assert figures(item) == (14, 7, 3, 4, 6)
    position = item.position()
    assert (position.on_hand, position.sellable, position.held, position.available) == (
        14, 7, {"damaged": 3, "quality_control": 4}, 6)


def test_every_event_carries_the_states_after_it() -> None:
    item = stocked(10)
    item.move(2, "sellable", "quality_control", reason="returned, to inspect")
    moved = item.collect_events()[-1]
    assert isinstance(moved, StockItem.StateMoved)
    assert (moved.on_hand, moved.sellable, moved.damaged, moved.quality_control,
            moved.available) == (10, 8, 0, 2, 8)
    assert (moved.from_state, moved.to_state, moved.quantity) == (
        "sellable", "quality_control", 2)
    assert moved.movement == 0  # on hand did not move
    assert (moved.movement_in("sellable"), moved.movement_in("quality_control")) == (-2, 2)


def test_a_move_between_held_states_and_back_to_sellable() -> None:
    item = stocked(10)
    item.move(4, "sellable", "quality_control")
    item.move(1, "quality_control", "damaged")
    item.move(3, "quality_control", "sellable")
    assert figures(item) == (10, 9, 1, 0, 9)


def test_reserved_units_never_leave_sellable() -> None:
    item = stocked(10)
    item.reserve("order-1", 7, "web")
    item.collect_events()
    with pytest.raises(InsufficientStock) as refused:
        item.move(4, "sellable", "damaged")
    assert refused.value.code == "insufficient-stock"
    assert refused.value.details == {"requested": 4, "available": 3, "free": 3}
    assert "4" in refused.value.message and "3" in refused.value.message
    assert item.collect_events() == []
    item.move(3, "sellable", "damaged")  # what no reservation holds may move
    assert (item.sellable, item.reserved, item.available) == (7, 7, 0)


def test_a_move_may_put_safety_stock_aside_but_never_reserved_units() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=4, oversell_buffer=0)
    item.reserve("order-1", 6, "web")
    item.move(4, "sellable", "damaged")  # dented units in the safety cushion
    assert (item.sellable, item.reserved, item.available) == (6, 6, -4)
    with pytest.raises(InsufficientStock):
        item.move(1, "sellable", "damaged")


def test_an_oversold_location_moves_nothing_out_of_sellable() -> None:
    item = stocked(5)
    item.set_policy(safety_stock=0, oversell_buffer=3)
    item.reserve("order-1", 8, "web")
    with pytest.raises(InsufficientStock) as refused:
        item.move(1, "sellable", "damaged")
    assert refused.value.details["free"] == 0


def test_a_move_out_of_a_held_state_takes_at_most_what_it_holds() -> None:
    item = stocked(10)
    item.move(2, "sellable", "damaged")
    with pytest.raises(InsufficientOnHand) as refused:
        item.move(3, "damaged", "sellable")
    assert isinstance(refused.value, InsufficientInState)
    assert refused.value.code == "insufficient-on-hand"
    assert refused.value.details == {"requested": 3, "state": "damaged", "on_hand": 2}


@pytest.mark.parametrize(("quantity", "source", "target", "reason", "error", "field"), [
    (0, "sellable", "damaged", None, InvalidQuantity, "quantity"),
    (1, "sellable", "sellable", None, InvalidRequest, "to"),
    (1, "stolen", "damaged", None, InvalidRequest, "from"),
    (1, "sellable", "reserved", None, InvalidRequest, "to"),
    (1, "sellable", "damaged", "", InvalidRequest, "reason"),
    (1, "sellable", "damaged", "x" * 201, InvalidRequest, "reason"),
    (1, "sellable", "damaged", "line\nbreak", InvalidRequest, "reason"),
])
def test_a_malformed_move_is_refused(
    quantity: int, source: str, target: str, reason: str | None,
    error: type[Exception], field: str,
) -> None:
    item = stocked(10)
    with pytest.raises(error) as refused:
        item.move(quantity, source, target, reason)
    assert refused.value.details["field"] == field  # type: ignore[attr-defined]
    assert item.collect_events() == []


def test_a_move_repeated_with_its_idempotency_key_changes_nothing() -> None:
    memos = Memos()
    item = stocked(10)
    item.move(2, "sellable", "damaged", "dented", "move-1", memos.recall)
    memos.save(item)
    item.move(2, "sellable", "damaged", "dented", "move-1", memos.recall)
    assert item.collect_events() == []
    assert item.damaged == 2
    with pytest.raises(IdempotencyKeyReused):
        item.move(3, "sellable", "damaged", "dented", "move-1", memos.recall)
    with pytest.raises(IdempotencyKeyReused):  # one key namespace with receipts
        item.receive(2, idempotency_key="move-1", recall=memos.recall)


def test_receipts_adjustments_and_counts_act_on_sellable_unless_they_name_a_state() -> None:
    item = stocked(0)
    item.receive(10)
    item.receive(5, state="damaged")
    item.adjust(-2, "expired", state="damaged")
    item.adjust(1, "found")
    assert figures(item) == (14, 11, 3, 0, 11)
    _, received, adjusted, found = item.collect_events()
    assert isinstance(received, StockItem.Received) and received.state == "damaged"
    assert isinstance(adjusted, StockItem.Adjusted) and adjusted.state == "damaged"
    assert isinstance(found, StockItem.Adjusted) and found.state == "sellable"


def test_an_adjustment_never_takes_a_state_below_zero() -> None:
    item = stocked(10)
    item.move(2, "sellable", "damaged")
    with pytest.raises(InsufficientOnHand) as refused:
        item.adjust(-3, "damaged", state="damaged")
    assert refused.value.details == {"delta": -3, "on_hand": 2, "state": "damaged"}
    assert "damaged stock from 2" in refused.value.message
    with pytest.raises(InsufficientOnHand) as sellable:
        item.adjust(-9, "theft")
    assert sellable.value.details == {"delta": -9, "on_hand": 8, "state": "sellable"}


def test_an_adjustment_on_a_stream_without_held_stock_is_refused_as_before() -> None:
    item = stocked(3)
    with pytest.raises(InsufficientOnHand) as refused:
        item.adjust(-5, "theft")
    assert refused.value.details == {"delta": -5, "on_hand": 3}
    assert refused.value.message == "an adjustment of -5 would take on hand from 3 below zero"


def test_a_state_names_one_of_the_three() -> None:
    item = stocked(3)
    for command in (lambda: item.receive(1, state="lost"),
                    lambda: item.adjust(1, "found", state="lost"),
                    lambda: item.record_count("c", 1, NOW, state="lost")):
        with pytest.raises(InvalidRequest) as refused:
            command()
        assert refused.value.details["field"] == "state"


def test_an_idempotency_key_tells_states_apart() -> None:
    memos = Memos()
    item = stocked(0)
    item.receive(5, "PO-1", "k-1", memos.recall)
    memos.save(item)
    with pytest.raises(IdempotencyKeyReused):
        item.receive(5, "PO-1", "k-1", memos.recall, state="quality_control")
    item.receive(5, "PO-1", "k-1", memos.recall)
    assert item.collect_events() == []


def test_fingerprints_of_sellable_commands_are_as_before_states() -> None:
    """Memos stored before states still recognise a repeat of the same command."""
    assert StockItem.receipt_fingerprint(5, "PO-1") == "receipt:5:PO-1"
    assert StockItem.adjustment_fingerprint(-2, "damaged", "x") == "adjustment:-2:damaged:x"
    assert StockItem.count_fingerprint(3, NOW) == "count:3:2026-11-26T12:00:00+00:00"
    assert StockItem.receipt_fingerprint(5, "PO-1", "damaged") == "receipt.damaged:5:PO-1"
    # free text cannot make one state's fingerprint look like another's
    assert StockItem.receipt_fingerprint(5, "PO-1:damaged") != (
        StockItem.receipt_fingerprint(5, "PO-1", "damaged"))


# ----------------------------------------------------------------------- counts


def test_a_count_of_one_state_corrects_that_state_only() -> None:
    item = stocked(10)
    item.move(4, "sellable", "damaged")
    item.record_count("count-d", 1, NOW, state="damaged")
    (counted,) = item.collect_events()[-1:]
    assert isinstance(counted, StockItem.Counted)
    assert (counted.state, counted.previous_on_hand, counted.delta) == ("damaged", 4, -3)
    assert figures(item) == (7, 6, 1, 0, 6)


def test_counts_of_each_state_compose_on_their_own() -> None:
    item = stocked(10)
    item.move(4, "sellable", "damaged")
    item.record_count("count-s", 5, NOW)  # sellable at noon
    item.record_count("count-d", 2, NOW - timedelta(hours=1), state="damaged")  # not older
    assert (item.sellable, item.damaged) == (5, 2)
    item.record_count("count-s-old", 9, NOW - timedelta(hours=2))
    superseded = item.collect_events()[-1]
    assert isinstance(superseded, StockItem.Counted) and superseded.superseded
    assert item.sellable == 5
    assert item.last_counted_at == NOW
    assert item.held_counted_at == {"damaged": NOW - timedelta(hours=1)}


def test_a_held_count_keeps_the_moves_recorded_after_it_on_top() -> None:
    item = stocked(10)
    before = datetime.now(UTC) - timedelta(seconds=1)
    item.move(3, "sellable", "damaged")  # recorded after the count was taken
    events = stock_events(item)
    moved_since = movements_after(events, before, "damaged")
    assert moved_since == 3 and movements_after(events, before) == -3
    item.record_count("count-d", 0, before, moved_since, state="damaged")
    assert item.damaged == 3  # the count saw none; the three came after it


def test_a_count_id_is_one_count_whatever_its_state() -> None:
    memos = Memos()
    item = stocked(10)
    item.record_count("count-1", 4, NOW, recall=memos.recall, state="damaged")
    memos.save(item)
    item.record_count("count-1", 4, NOW, recall=memos.recall, state="damaged")
    assert item.collect_events() == []
    with pytest.raises(CountAlreadyRecorded):
        item.record_count("count-1", 4, NOW, recall=memos.recall)


# ----------------------------------------------------------------------- incoming


def test_incoming_is_set_absolutely_and_zero_cancels_it() -> None:
    item = stocked(0)
    item.set_incoming("PO-9", 20, NOW + timedelta(days=2))
    item.set_incoming("PO-9", 20, NOW + timedelta(days=2))  # the same again
    item.set_incoming("PO-9", 12, NOW + timedelta(days=3))
    assert item.position().incoming == (IncomingEntry("PO-9", 12, NOW + timedelta(days=3)),)
    item.set_incoming("PO-9", 0, NOW)
    item.set_incoming("PO-9", 0, NOW)  # cancelling what is not open
    item.set_incoming("PO-never", 0, NOW)
    events = item.collect_events()
    assert [(e.quantity, e.previous_quantity, e.incoming_total) for e in events
            if isinstance(e, StockItem.IncomingSet)] == [(20, 0, 20), (12, 20, 12), (0, 12, 0)]
    assert item.position().incoming == () and item.on_hand == 0


def test_incoming_is_not_on_hand_and_not_available() -> None:
    item = stocked(5)
    item.set_incoming("PO-9", 20, NOW)
    assert (item.on_hand, item.available, item.position().incoming_total) == (5, 5, 20)
    with pytest.raises(InsufficientStock):
        item.reserve("order-1", 6, "web")


@pytest.mark.parametrize(("reference", "quantity", "expected_at", "error"), [
    ("PO 9", 1, NOW, InvalidIdentifier),
    ("PO-9", -1, NOW, InvalidQuantity),
    ("PO-9", 1, datetime(2026, 11, 26), InvalidRequest),
])
def test_a_malformed_incoming_entry_is_refused(
    reference: str, quantity: int, expected_at: datetime, error: type[Exception]
) -> None:
    item = stocked(0)
    with pytest.raises(error):
        item.set_incoming(reference, quantity, expected_at)


def test_a_receipt_naming_an_incoming_entry_reduces_it_and_closes_it_at_zero() -> None:
    item = stocked(0)
    item.set_incoming("PO-9", 20, NOW)
    item.receive(8, reference="PO-9")
    assert item.position().incoming == (IncomingEntry("PO-9", 12, NOW),)
    item.receive(15, reference="PO-9", state="quality_control")  # more than expected
    assert item.position().incoming == ()
    first, second = (e for e in item.collect_events() if isinstance(e, StockItem.Received))
    assert (first.incoming_remaining, first.incoming_total) == (12, 12)
    assert (second.incoming_remaining, second.incoming_total) == (0, 0)
    item.receive(1, reference="PO-9")  # no entry any more: an ordinary receipt
    (received,) = collected(item, StockItem.Received)
    assert received.incoming_remaining is None
    assert (item.sellable, item.quality_control) == (9, 15)


# ----------------------------------------------------------------------- ATP


def test_atp_adds_incoming_due_by_the_end_of_each_day_overdue_included() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=2, oversell_buffer=1)
    item.reserve("order-1", 9, "web")  # available -1
    item.set_incoming("PO-late", 3, NOW - timedelta(days=1))  # overdue: still expected
    item.set_incoming("PO-today", 4, NOW.replace(hour=23, minute=59))
    item.set_incoming("PO-midnight", 5, datetime(2026, 11, 28, 0, 0, tzinfo=UTC))
    promise = available_to_promise(item.position(), NOW, days=4)
    assert [(d.date, d.available_to_promise) for d in promise.days] == [
        (date(2026, 11, 26), -1 + 3 + 4),
        (date(2026, 11, 27), 6),
        (date(2026, 11, 28), 11),  # due at midnight starting the 28th
        (date(2026, 11, 29), 11),
    ]
    assert promise.as_of == NOW and promise.version == item.version


def test_atp_is_not_clamped_and_days_are_utc_days() -> None:
    item = stocked(1)
    item.set_policy(safety_stock=3, oversell_buffer=0)
    new_york = timezone(timedelta(hours=-5))
    late_evening_in_new_york = datetime(2026, 11, 26, 22, 0, tzinfo=new_york)  # 03:00 UTC
    promise = available_to_promise(item.position(), late_evening_in_new_york, days=1)
    assert [(d.date, d.available_to_promise) for d in promise.days] == [
        (date(2026, 11, 27), -2)]


@pytest.mark.parametrize("days", [0, MAX_PROMISE_DAYS + 1, -3])
def test_atp_covers_1_to_90_days(days: int) -> None:
    with pytest.raises(InvalidQuantity) as refused:
        available_to_promise(stocked(1).position(), NOW, days)
    assert refused.value.details["field"] == "days"


def test_atp_defaults_to_14_days_and_reaches_90() -> None:
    position = stocked(1).position()
    assert len(available_to_promise(position, NOW).days) == 14
    days = available_to_promise(position, NOW, MAX_PROMISE_DAYS).days
    assert len(days) == 90 and days[-1].date == date(2027, 2, 23)


# ----------------------------------------------------------------------- transfers


def test_a_shipment_takes_available_sellable_units_and_is_idempotent_by_transfer() -> None:
    memos = Memos()
    source = stocked(10, "DC-1")
    source.set_policy(safety_stock=2, oversell_buffer=5)
    source.reserve("order-1", 3, "web")
    memos.save(source)
    with pytest.raises(InsufficientStock) as refused:  # 10 - 3 - 2 = 5 available
        source.ship_transfer("transfer-1", 6, "STORE-7", memos.recall)
    assert refused.value.details == {"requested": 6, "available": 5, "free": 5}
    source.ship_transfer("transfer-1", 5, "STORE-7", memos.recall)
    (shipped,) = memos.save(source)
    assert isinstance(shipped, StockItem.TransferShipped)
    assert (shipped.quantity, shipped.to_location, shipped.movement) == (5, "STORE-7", -5)
    assert (source.sellable, source.reserved, source.available) == (5, 3, 0)
    source.ship_transfer("transfer-1", 5, "STORE-7", memos.recall)
    assert source.collect_events() == []
    with pytest.raises(TransferConflict):
        source.ship_transfer("transfer-1", 4, "STORE-7", memos.recall)


def test_a_transfer_goes_to_another_location() -> None:
    with pytest.raises(InvalidRequest):
        stocked(10, "DC-1").ship_transfer("transfer-1", 1, "DC-1")
    with pytest.raises(InvalidRequest):
        stocked(0).expect_transfer("transfer-1", 1, NOW, "STORE-7")


def test_the_destination_expects_the_transfer_and_clients_cannot_touch_its_entry() -> None:
    memos = Memos()
    store = stocked(0)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)  # repeat
    (expected,) = [e for e in memos.save(store) if isinstance(e, StockItem.IncomingSet)]
    assert (expected.transfer_from, expected.incoming_total, expected.in_transit) == (
        "DC-1", 5, 5)
    position = store.position()
    assert position.incoming == (IncomingEntry("transfer-1", 5, NOW, "DC-1"),)
    assert (position.incoming_total, position.in_transit) == (5, 5)
    with pytest.raises(IncomingConflict) as refused:
        store.set_incoming("transfer-1", 0, NOW)
    assert refused.value.code == "incoming-conflict"
    with pytest.raises(IncomingConflict):
        store.receive(5, reference="transfer-1")
    assert store.collect_events() == []


def test_a_transfer_cannot_take_over_a_clients_entry() -> None:
    store = stocked(0)
    store.set_incoming("PO-1", 5, NOW)
    with pytest.raises(IncomingConflict):
        store.expect_transfer("PO-1", 5, NOW, "DC-1")
    with pytest.raises(IncomingConflict):
        store.receive_transfer("PO-1", 5, 5, "DC-1")


def test_the_transfer_receipt_adds_sellable_and_closes_the_entry_once() -> None:
    memos = Memos()
    store = stocked(2)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)
    store.receive_transfer("transfer-1", 4, 5, "DC-1", memos.recall)
    received = memos.save(store)[-1]
    assert isinstance(received, StockItem.TransferReceived)
    assert (received.quantity, received.incoming_closed, received.movement) == (4, 5, 4)
    assert (store.sellable, store.position().incoming) == (6, ())
    store.receive_transfer("transfer-1", 4, 5, "DC-1", memos.recall)  # repeat
    assert store.collect_events() == []
    with pytest.raises(TransferConflict):
        store.receive_transfer("transfer-1", 5, 5, "DC-1", memos.recall)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)  # a late repeat
    assert store.collect_events() == [] and store.position().incoming == ()


def test_a_transfer_receipt_is_at_least_one_and_at_most_what_shipped() -> None:
    with pytest.raises(InvalidRequest) as refused:
        stocked(0).receive_transfer("transfer-1", 6, 5, "DC-1")
    assert refused.value.details["field"] == "quantity"
    with pytest.raises(InvalidQuantity):
        stocked(0).receive_transfer("transfer-1", 0, 5, "DC-1")


def test_close_records_the_units_never_received_as_lost() -> None:
    memos = Memos()
    store = stocked(0)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)
    store.receive_transfer("transfer-1", 3, 5, "DC-1", memos.recall)
    store.record_transit_loss("transfer-1", 2, "DC-1", memos.recall)
    lost = memos.save(store)[-1]
    assert isinstance(lost, StockItem.TransitLost)
    assert (lost.quantity, lost.received, lost.incoming_closed, lost.movement) == (2, 3, 0, 0)
    assert store.on_hand == 3
    store.record_transit_loss("transfer-1", 2, "DC-1", memos.recall)  # repeat
    store.receive_transfer("transfer-1", 3, 5, "DC-1", memos.recall)  # repeat after close
    assert store.collect_events() == []
    with pytest.raises(TransferConflict):
        store.record_transit_loss("transfer-1", 1, "DC-1", memos.recall)


def test_close_without_a_receipt_closes_the_entry_and_refuses_a_late_receipt() -> None:
    memos = Memos()
    store = stocked(0)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)
    store.record_transit_loss("transfer-1", 5, "DC-1", memos.recall)
    memos.save(store)
    assert store.position().incoming == ()
    with pytest.raises(TransferConflict):
        store.receive_transfer("transfer-1", 5, 5, "DC-1", memos.recall)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)
    assert store.collect_events() == [] and store.position().incoming == ()


def test_nothing_lost_and_nothing_open_records_nothing() -> None:
    memos = Memos()
    store = stocked(0)
    store.expect_transfer("transfer-1", 5, NOW, "DC-1", memos.recall)
    store.receive_transfer("transfer-1", 5, 5, "DC-1", memos.recall)
    memos.save(store)
    store.record_transit_loss("transfer-1", 0, "DC-1", memos.recall)
    assert store.collect_events() == []


def test_units_are_conserved_across_the_two_locations_and_the_transfer() -> None:
    source, store = stocked(20, "DC-1"), stocked(3)
    total = source.on_hand + store.on_hand
    source.ship_transfer("transfer-1", 8, "STORE-7")
    store.expect_transfer("transfer-1", 8, NOW, "DC-1")
    in_transit = 8
    assert source.on_hand + store.on_hand + in_transit == total
    store.receive_transfer("transfer-1", 6, 8, "DC-1")
    in_transit = 2
    assert source.on_hand + store.on_hand + in_transit == total
    store.record_transit_loss("transfer-1", 2, "DC-1")
    lost = next(e for e in store.collect_events() if isinstance(e, StockItem.TransitLost))
    assert source.on_hand + store.on_hand + lost.quantity == total
