"""The StockItem aggregate, by example: what each command decides."""

from __future__ import annotations

import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain import Position, Reservation, StockItem
from domain.errors import (
    CountAlreadyRecorded,
    FulfilmentConflict,
    IdempotencyKeyReused,
    InsufficientOnHand,
    InsufficientStock,
    InvalidIdentifier,
    InvalidQuantity,
    InvalidRequest,
    ReservationClosed,
    UnknownReservation,
)
from domain.stock_item import movements_after
from tests.events import collected, from_snapshot, stock_events

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def stocked(on_hand: int = 10) -> StockItem:
    item = StockItem.create("SKU-1", "STORE-7")
    if on_hand:
        item.receive(on_hand)
    item.collect_events()
    return item


def new_events(item: StockItem) -> list[str]:
    return [type(e).__name__ for e in item.collect_events()]


class Memos(dict[str, str]):
    """What a store recalls of a stream: the memos of the events saved so far."""

    def save(self, item: StockItem) -> list[StockItem.Event]:
        events = stock_events(item)
        for event in events:
            self.update(event.memos())
        return events

    def recall(self, memo: str) -> str | None:
        return self.get(memo)


def test_a_new_stream_starts_at_zero_with_a_created_event() -> None:
    item = StockItem.create("SKU-1", "STORE-7")
    assert (item.on_hand, item.reserved, item.available, item.version) == (0, 0, 0, 1)
    assert new_events(item) == ["Created"]
    assert item.stream == "SKU-1|STORE-7"


def test_every_event_carries_the_sku_location_and_the_position_after_it() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=2, oversell_buffer=0)
    item.reserve("order-1", 3, "web")
    reserved = item.collect_events()[-1]
    assert isinstance(reserved, StockItem.Reserved)
    assert (reserved.sku, reserved.location) == ("SKU-1", "STORE-7")
    assert (reserved.on_hand, reserved.reserved, reserved.available) == (10, 3, 5)


def test_a_receipt_adds_to_on_hand_and_available() -> None:
    item = stocked(0)
    item.receive(5, reference="PO-17")
    assert (item.on_hand, item.available) == (5, 5)


def test_a_receipt_repeated_with_its_idempotency_key_changes_nothing() -> None:
    item = stocked(0)
    item.receive(5, idempotency_key="k-1")
    item.receive(5, idempotency_key="k-1")
    assert item.on_hand == 5
    assert new_events(item) == ["Received"]


def test_an_idempotency_key_reused_for_a_different_request_is_refused() -> None:
    item = stocked(0)
    item.receive(5, idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):
        item.receive(6, idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):
        item.adjust(-1, "damaged", idempotency_key="k-1")


def test_the_state_remembers_no_ids_the_store_recalls_them() -> None:
    item, memos = stocked(0), Memos()
    for n in range(50):
        item.receive(1, idempotency_key=f"k-{n}")
        item.reserve(f"order-{n}", 1, "web")
        item.release(f"order-{n}")
    memos.save(item)
    fresh = StockItem.create("SKU-1", "STORE-7")
    assert set(vars(item)) == set(vars(fresh))  # no container grows with the ids seen
    item.receive(1, idempotency_key="k-0", recall=memos.recall)
    with pytest.raises(ReservationClosed):
        item.reserve("order-0", 1, "web", recall=memos.recall)
    assert new_events(item) == []


def test_an_adjustment_may_not_take_on_hand_below_zero() -> None:
    item = stocked(3)
    with pytest.raises(InsufficientOnHand) as refused:
        item.adjust(-4, "shrinkage")
    assert refused.value.on_hand == 3
    item.adjust(-3, "shrinkage")
    assert item.on_hand == 0


@pytest.mark.parametrize("reason", ["", "stolen", None])
def test_an_adjustment_needs_a_known_reason(reason: object) -> None:
    with pytest.raises(InvalidRequest):
        stocked().adjust(-1, reason)  # type: ignore[arg-type]


def test_a_zero_adjustment_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        stocked().adjust(0, "correction")


def test_a_reservation_holds_stock_and_lowers_available() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "pos")
    assert (item.on_hand, item.reserved, item.available) == (10, 4, 6)
    assert item.reservation("order-1") is not None


def test_the_same_reservation_twice_is_one_reservation() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.reserve("order-1", 4, "web")
    assert item.reserved == 4
    assert new_events(item) == ["Reserved"]


def test_a_reservation_is_set_absolutely_up_and_down() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.reserve("order-1", 7, "web")
    item.reserve("order-1", 2, "web")
    events = collected(item, StockItem.Reserved)
    assert [(e.quantity, e.previous_quantity) for e in events] == [(4, 0), (7, 4), (2, 7)]
    assert item.reserved == 2


def test_a_reservation_that_does_not_fit_is_refused_with_what_is_available() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=2, oversell_buffer=0)
    item.reserve("order-1", 5, "web")
    with pytest.raises(InsufficientStock) as refused:
        item.reserve("order-2", 4, "web")
    assert (refused.value.available, refused.value.reservable) == (3, 3)
    assert item.reservation("order-2") is None


def test_an_increase_must_fit_but_counts_what_the_order_already_holds() -> None:
    item = stocked(10)
    item.reserve("order-1", 6, "web")
    item.reserve("order-2", 4, "web")
    with pytest.raises(InsufficientStock) as refused:
        item.reserve("order-1", 7, "web")
    assert refused.value.reservable == 6


def test_the_oversell_buffer_lets_a_location_sell_past_zero_deliberately() -> None:
    item = stocked(2)
    item.set_policy(safety_stock=0, oversell_buffer=3)
    item.reserve("order-1", 5, "web")
    assert item.available == -3
    with pytest.raises(InsufficientStock):
        item.reserve("order-2", 1, "web")


def test_release_returns_the_units_and_a_repeat_changes_nothing() -> None:
    item = stocked(10)
    memos = Memos()
    item.reserve("order-1", 4, "web")
    memos.save(item)
    item.release("order-1", recall=memos.recall)
    item.release("order-1", recall=memos.recall)
    assert item.reserved == 0
    assert [type(e).__name__ for e in memos.save(item)] == ["Released"]
    item.release("order-1", recall=memos.recall)
    assert new_events(item) == []
    assert item.outcome_of("order-1", memos.recall) == "cancelled"


def test_releasing_a_fulfilled_reservation_is_refused_with_its_outcome() -> None:
    item, memos = stocked(10), Memos()
    item.reserve("order-1", 4, "web")
    item.fulfil("order-1")
    memos.save(item)
    with pytest.raises(ReservationClosed) as refused:
        item.release("order-1", recall=memos.recall)
    assert (refused.value.order_id, refused.value.outcome) == ("order-1", "fulfilled")
    assert new_events(item) == []


def test_releasing_an_order_that_never_reserved_is_unknown() -> None:
    with pytest.raises(UnknownReservation) as refused:
        stocked().release("order-404")
    assert refused.value.order_id == "order-404"


def test_fulfilment_ships_from_on_hand_and_closes_the_reservation() -> None:
    item = stocked(10)
    memos = Memos()
    item.reserve("order-1", 4, "web")
    item.fulfil("order-1")
    assert (item.on_hand, item.reserved, item.available) == (6, 0, 6)
    memos.save(item)
    item.fulfil("order-1", recall=memos.recall)
    item.fulfil("order-1", 4, recall=memos.recall)
    assert new_events(item) == []


def test_a_fulfilment_repeated_with_another_quantity_is_a_conflict() -> None:
    item, memos = stocked(10), Memos()
    item.reserve("order-1", 4, "web")
    item.fulfil("order-1", 3)
    memos.save(item)
    with pytest.raises(FulfilmentConflict) as refused:
        item.fulfil("order-1", 4, recall=memos.recall)
    assert (refused.value.fulfilled, refused.value.requested) == (3, 4)
    assert new_events(item) == []


def test_a_partial_fulfilment_returns_the_remainder_to_available() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.fulfil("order-1", 3)
    assert (item.on_hand, item.reserved, item.available) == (7, 0, 7)


def test_fulfilling_more_than_reserved_is_refused() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    with pytest.raises(InvalidRequest):
        item.fulfil("order-1", 5)


def test_a_released_reservation_cannot_be_fulfilled_or_set_again() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.release("order-1")
    with pytest.raises(ReservationClosed):
        item.fulfil("order-1")
    with pytest.raises(ReservationClosed):
        item.reserve("order-1", 4, "web")


def test_overdue_reservations_expire() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web", expires_at=NOW + timedelta(minutes=5))
    item.reserve("order-2", 3, "web", expires_at=NOW + timedelta(minutes=15))
    item.reserve("order-3", 1, "pos")
    item.collect_events()
    assert item.expire_overdue(NOW + timedelta(minutes=10)) == 1
    released = collected(item, StockItem.Released)
    assert [(e.order_id, e.reason) for e in released] == [("order-1", "expired")]
    assert item.reserved == 4
    assert item.outcome_of("order-1", Memos(released[0].memos()).recall) == "expired"


def test_nothing_is_overdue_before_the_earliest_expiry_and_then_it_moves_on() -> None:
    item = stocked(10)
    item.reserve("order-1", 1, "web", expires_at=NOW + timedelta(minutes=5))
    item.reserve("order-2", 1, "web", expires_at=NOW + timedelta(minutes=15))
    assert item.expiry_floor == NOW + timedelta(minutes=5)

    assert item.expire_overdue(NOW + timedelta(minutes=4)) == 0
    assert item.expire_overdue(NOW + timedelta(minutes=6)) == 1
    assert item.expiry_floor == NOW + timedelta(minutes=15)
    item.fulfil("order-2")
    assert item.expiry_floor is None


def test_a_v4_snapshot_is_upcast_with_the_earliest_expiry_of_its_reservations() -> None:
    state: dict[str, Any] = {"reservations": {
        "order-1": {"quantity": 1, "channel": "web", "expires_at": NOW + timedelta(minutes=9)},
        "order-2": {"quantity": 1, "channel": "web", "expires_at": None},
        "order-3": {"quantity": 1, "channel": "web", "expires_at": NOW + timedelta(minutes=2)},
    }}
    StockItem.upcast_v4_v5(state)
    assert state["expiry_floor"] == NOW + timedelta(minutes=2)
    none: dict[str, Any] = {"reservations": {}}
    StockItem.upcast_v4_v5(none)
    assert none["expiry_floor"] is None


def test_a_count_sets_on_hand_absolutely_with_the_correction() -> None:
    item = stocked(10)
    item.record_count("count-1", 8, NOW)
    counted = item.collect_events()[-1]
    assert isinstance(counted, StockItem.Counted)
    assert (counted.previous_on_hand, counted.delta, item.on_hand) == (10, -2, 8)


def test_a_count_keeps_movements_after_it_on_top() -> None:
    item = stocked(10)
    # The stream said 10 at count time; 3 were sold since; the shelf had 9 then.
    item.adjust(-3, "shrinkage")
    item.record_count("count-1", 9, NOW, movements_since=-3)
    counted = item.collect_events()[-1]
    assert isinstance(counted, StockItem.Counted)
    assert item.on_hand == 6
    assert (counted.previous_on_hand, counted.delta) == (10, -1)


def test_two_counts_of_one_moment_agree_instead_of_correcting_twice() -> None:
    item = stocked(100)
    item.record_count("aisle3-dev1", 90, NOW)
    item.record_count("aisle3-dev2", 90, NOW)
    assert item.on_hand == 90
    item.record_count("aisle3-dev3", 85, NOW)  # the later record of one moment wins
    assert item.on_hand == 85


def test_a_count_older_than_the_latest_applied_one_is_superseded() -> None:
    item = stocked(100)
    item.record_count("count-new", 90, NOW)
    item.collect_events()
    assert item.record_count("count-old", 40, NOW - timedelta(hours=1)) == "superseded"
    (superseded,) = item.collect_events()
    assert isinstance(superseded, StockItem.Counted) and superseded.superseded
    assert (superseded.delta, superseded.on_hand, item.on_hand) == (0, 90, 90)
    assert (superseded.counted, superseded.previous_on_hand) == (40, 90)
    assert item.last_counted_at == NOW


def test_a_count_repeated_changes_nothing_but_different_figures_are_refused() -> None:
    item, memos = stocked(10), Memos()
    assert item.record_count("count-1", 8, NOW) == "recorded"
    memos.save(item)
    assert item.record_count("count-1", 8, NOW, recall=memos.recall) == "already-recorded"
    assert new_events(item) == []
    with pytest.raises(CountAlreadyRecorded):
        item.record_count("count-1", 9, NOW, recall=memos.recall)


@pytest.mark.parametrize("moment", [
    datetime.fromisoformat("0001-01-01T00:30:00+01:00"),
    datetime.fromisoformat("9999-12-31T23:59:59-14:00"),
    datetime(1969, 12, 31, tzinfo=UTC),
    datetime(2026, 1, 1),  # naive
])
def test_timestamps_outside_the_sane_bounds_are_refused(moment: datetime) -> None:
    item = stocked(10)
    with pytest.raises(InvalidRequest):
        item.record_count("count-1", 8, moment)
    with pytest.raises(InvalidRequest):
        item.reserve("order-1", 1, "web", expires_at=moment)
    assert new_events(item) == []


def test_a_policy_set_twice_to_the_same_values_emits_once() -> None:
    item = stocked(10)
    item.set_policy(2, 1)
    item.set_policy(2, 1)
    assert new_events(item) == ["PolicyChanged"]
    assert item.available == 8


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "sku/1", "ä", None, 12])
def test_identifiers_must_be_short_plain_tokens(bad: object) -> None:
    with pytest.raises(InvalidIdentifier) as sku:
        StockItem.create(bad, "STORE-7")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifier) as order:
        stocked().reserve(bad, 1, "web")  # type: ignore[arg-type]
    assert (sku.value.details["field"], order.value.details["field"]) == ("sku", "order_id")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None, 10**12])
def test_quantities_must_be_positive_whole_numbers(bad: object) -> None:
    item = stocked(10)
    with pytest.raises(InvalidQuantity) as receipt:
        item.receive(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuantity) as reservation:
        item.reserve("order-1", bad, "web")  # type: ignore[arg-type]
    assert receipt.value.details["field"] == reservation.value.details["field"] == "quantity"
    assert new_events(item) == []


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_an_adjustment_must_be_a_whole_number(bad: object) -> None:
    with pytest.raises(InvalidQuantity) as refused:
        stocked().adjust(bad, "found")  # type: ignore[arg-type]
    assert refused.value.details["field"] == "delta"


def test_a_refused_command_leaves_no_pending_event() -> None:
    item = stocked(1)
    commands: list[Callable[[], object]] = [
        lambda: item.reserve("order-1", 2, "web"),
        lambda: item.adjust(-2, "damaged"),
        lambda: item.fulfil("order-9"),
    ]
    for command in commands:
        with pytest.raises(Exception):  # noqa: B017 - each raises its own DomainError
            command()
    assert new_events(item) == []


# ------------------------------------------------------------- idempotency by key


def test_a_receipt_event_carries_its_reference_and_key() -> None:
    item = stocked(0)
    item.receive(5, reference="PO-17", idempotency_key="asn-17")
    (received,) = item.collect_events()
    assert isinstance(received, StockItem.Received)
    assert (received.quantity, received.reference, received.idempotency_key) == (
        5, "PO-17", "asn-17")


def test_an_adjustment_repeated_with_its_key_after_saving_changes_nothing() -> None:
    item, memos = stocked(10), Memos()
    item.adjust(-2, "damaged", idempotency_key="adj-1", note="dented")
    (adjusted,) = memos.save(item)
    assert isinstance(adjusted, StockItem.Adjusted)
    assert (adjusted.delta, adjusted.reason_code, adjusted.note, adjusted.idempotency_key) == (
        -2, "damaged", "dented", "adj-1")

    item.adjust(-2, "damaged", idempotency_key="adj-1", note="dented", recall=memos.recall)

    assert item.on_hand == 8
    assert new_events(item) == []


def test_a_receipt_repeated_with_its_key_after_saving_changes_nothing() -> None:
    item, memos = stocked(0), Memos()
    item.receive(5, reference="PO-17", idempotency_key="asn-17")
    memos.save(item)
    item.receive(5, reference="PO-17", idempotency_key="asn-17", recall=memos.recall)
    assert item.on_hand == 5
    assert new_events(item) == []


@pytest.mark.parametrize("different", [
    {"quantity": 6},
    {"reference": "PO-18"},
    {"reference": None},
])
def test_a_receipt_key_reused_with_another_quantity_or_reference_is_refused(
    different: dict[str, object],
) -> None:
    item, memos = stocked(0), Memos()
    item.receive(5, reference="PO-17", idempotency_key="asn-17")
    memos.save(item)
    request: dict[str, object] = {"quantity": 5, "reference": "PO-17", **different}
    with pytest.raises(IdempotencyKeyReused) as refused:
        item.receive(**request, idempotency_key="asn-17", recall=memos.recall)  # type: ignore[arg-type]
    assert refused.value.key == "asn-17"
    assert refused.value.details == {"idempotency_key": "asn-17"}
    assert new_events(item) == []


@pytest.mark.parametrize("different", [
    {"delta": -3},
    {"reason": "theft"},
    {"note": "crushed"},
    {"note": None},
])
def test_an_adjustment_key_reused_with_another_delta_reason_or_note_is_refused(
    different: dict[str, object],
) -> None:
    item, memos = stocked(10), Memos()
    item.adjust(-2, "damaged", idempotency_key="adj-1", note="dented")
    memos.save(item)
    request: dict[str, object] = {"delta": -2, "reason": "damaged", "note": "dented", **different}
    with pytest.raises(IdempotencyKeyReused):
        item.adjust(**request, idempotency_key="adj-1", recall=memos.recall)  # type: ignore[arg-type]
    assert item.on_hand == 8


def test_commands_without_a_key_are_never_taken_for_repeats() -> None:
    item, memos = stocked(0), Memos()
    item.receive(5)
    item.adjust(-1, "damaged")
    assert memos.save(item)[0].memos() == ()
    item.receive(5, recall=memos.recall)
    item.adjust(-1, "damaged", recall=memos.recall)
    assert item.on_hand == 8


def test_a_key_is_recognised_within_one_unsaved_decision() -> None:
    item = stocked(10)
    item.adjust(3, "found", idempotency_key="k-1")
    item.adjust(3, "found", idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):
        item.receive(3, idempotency_key="k-1")
    assert new_events(item) == ["Adjusted"]


@pytest.mark.parametrize("key", ["x" * 200, "k", "clé-1 ü"])
def test_an_idempotency_key_of_1_to_200_printable_characters_is_accepted(key: str) -> None:
    item = stocked(0)
    item.receive(1, idempotency_key=key)
    item.adjust(1, "found", idempotency_key=key + "-adj" if len(key) < 200 else key[:-4] + "-adj")
    assert new_events(item) == ["Received", "Adjusted"]


@pytest.mark.parametrize("key", ["", "x" * 201, "line\nbreak", "tab\t", 17])
def test_an_idempotency_key_outside_1_to_200_printable_characters_is_refused(
    key: object,
) -> None:
    item = stocked(10)
    commands: list[Callable[[], object]] = [
        lambda: item.receive(1, idempotency_key=key),  # type: ignore[arg-type]
        lambda: item.adjust(-1, "damaged", idempotency_key=key),  # type: ignore[arg-type]
    ]
    for command in commands:
        with pytest.raises(InvalidRequest) as refused:
            command()
        assert refused.value.details["field"] == "idempotency_key"
        assert "idempotency key" in refused.value.message
    assert new_events(item) == []


# --------------------------------------------------------------------- validation


def test_a_reference_of_up_to_200_characters_is_accepted_and_longer_refused() -> None:
    item = stocked(0)
    item.receive(1, reference="R" * 200)
    for bad in ("R" * 201, 42):
        with pytest.raises(InvalidRequest) as refused:
            item.receive(1, reference=bad)  # type: ignore[arg-type]
        assert refused.value.details["field"] == "reference"
        assert "200" in refused.value.message
    assert new_events(item) == ["Received"]


def test_a_note_of_up_to_500_printable_characters_is_accepted_and_others_refused() -> None:
    item = stocked(10)
    item.adjust(-1, "damaged", note="n" * 500)
    for bad in ("n" * 501, "two\nlines", 42):
        with pytest.raises(InvalidRequest) as refused:
            item.adjust(-1, "damaged", note=bad)  # type: ignore[arg-type]
        assert refused.value.details["field"] == "note"
        assert "500" in refused.value.message
    assert new_events(item) == ["Adjusted"]


@pytest.mark.parametrize("reason", ["damaged", "expired", "theft", "shrinkage", "found",
                                    "returned", "correction", "other"])
def test_every_adjustment_reason_code_is_accepted(reason: str) -> None:
    item = stocked(10)
    item.adjust(-1, reason)
    (adjusted,) = collected(item, StockItem.Adjusted)
    assert adjusted.reason_code == reason


def test_an_unknown_adjustment_reason_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        stocked().adjust(-1, "stolen")
    assert refused.value.details["field"] == "reason"
    assert "stolen" in refused.value.message


def test_a_zero_adjustment_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        stocked().adjust(0, "correction")
    assert refused.value.details["field"] == "delta"
    assert "delta" in refused.value.message


@pytest.mark.parametrize(("safety", "buffer", "field"), [
    (-1, 0, "safety_stock"), (0, -1, "oversell_buffer"),
    (10**9 + 1, 0, "safety_stock"), (0, 10**9 + 1, "oversell_buffer"),
    (1.5, 0, "safety_stock"), (0, "2", "oversell_buffer"),
])
def test_a_policy_outside_0_to_the_maximum_is_refused(safety: object, buffer: object,
                                                      field: str) -> None:
    item = stocked(10)
    with pytest.raises(InvalidQuantity) as refused:
        item.set_policy(safety, buffer)  # type: ignore[arg-type]
    assert refused.value.details["field"] == field
    assert (item.safety_stock, item.oversell_buffer) == (0, 0)
    assert new_events(item) == []


def test_a_policy_may_be_zero_or_the_maximum() -> None:
    item = stocked(10)
    item.set_policy(10**9, 10**9)
    item.set_policy(0, 0)
    assert new_events(item) == ["PolicyChanged", "PolicyChanged"]


def test_a_policy_change_carries_both_figures_and_the_available_after_it() -> None:
    item = stocked(10)
    item.reserve("order-1", 3, "web")
    item.collect_events()
    item.set_policy(safety_stock=2, oversell_buffer=4)
    (changed,) = item.collect_events()
    assert isinstance(changed, StockItem.PolicyChanged)
    assert (changed.safety_stock, changed.oversell_buffer) == (2, 4)
    assert (changed.on_hand, changed.reserved, changed.available) == (10, 3, 5)
    assert (item.safety_stock, item.oversell_buffer, item.available) == (2, 4, 5)


def test_changing_only_the_oversell_buffer_is_a_change() -> None:
    item = stocked(10)
    item.set_policy(2, 0)
    item.set_policy(2, 1)
    item.set_policy(3, 1)
    assert new_events(item) == ["PolicyChanged"] * 3
    assert (item.safety_stock, item.oversell_buffer) == (3, 1)


@pytest.mark.parametrize("command", ["receive", "adjust-up", "adjust-down", "reserve", "count"])
def test_a_quantity_of_exactly_the_maximum_is_accepted_and_one_more_refused(
    command: str,
) -> None:
    limit = 10**9
    run: Callable[[StockItem, int], object] = {
        "receive": lambda item, q: item.receive(q),
        "adjust-up": lambda item, q: item.adjust(q, "found"),
        "adjust-down": lambda item, q: item.adjust(-q, "damaged"),
        "reserve": lambda item, q: item.reserve("order-1", q, "web"),
        "count": lambda item, q: item.record_count(f"count-{q}", q, NOW),
    }[command]
    item = stocked(0)
    if command in ("adjust-down", "reserve"):
        item.receive(limit)
        item.receive(limit)
        item.collect_events()
    run(item, limit)
    assert len(item.collect_events()) == 1
    with pytest.raises(InvalidQuantity) as refused:
        run(item, limit + 1)
    assert refused.value.details["field"] == {"adjust-up": "delta", "adjust-down": "delta",
                                              "count": "counted"}.get(command, "quantity")
    assert "1000000000" in refused.value.message


@pytest.mark.parametrize("quantity", [0, -1])
def test_fulfilling_zero_or_fewer_units_is_refused(quantity: int) -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.collect_events()
    with pytest.raises(InvalidQuantity) as refused:
        item.fulfil("order-1", quantity)
    assert refused.value.details["field"] == "quantity"
    assert item.reserved == 4 and new_events(item) == []


def test_fulfilling_exactly_what_is_reserved_is_accepted() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.fulfil("order-1", 4)
    assert (item.on_hand, item.reserved) == (6, 0)


def test_fulfilling_more_than_reserved_names_the_field() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    with pytest.raises(InvalidRequest) as refused:
        item.fulfil("order-1", 5)
    assert refused.value.details["field"] == "quantity"
    assert "5" in refused.value.message and "4" in refused.value.message


@pytest.mark.parametrize("counted", [-1, 1.5, "3", None])
def test_a_count_must_be_a_whole_number_of_zero_or_more(counted: object) -> None:
    item = stocked(10)
    with pytest.raises(InvalidQuantity) as refused:
        item.record_count("count-1", counted, NOW)  # type: ignore[arg-type]
    assert refused.value.details["field"] == "counted"
    assert new_events(item) == []


def test_a_count_of_zero_empties_the_shelf() -> None:
    item = stocked(10)
    item.record_count("count-1", 0, NOW)
    assert item.on_hand == 0


def test_the_movements_since_a_count_must_be_a_whole_number() -> None:
    with pytest.raises(InvalidQuantity) as refused:
        stocked().record_count("count-1", 5, NOW, movements_since=1.5)  # type: ignore[arg-type]
    assert refused.value.details["field"] == "movements_since"


@pytest.mark.parametrize("bad", ["c 1", "", None])
def test_a_count_id_must_be_an_identifier(bad: object) -> None:
    with pytest.raises(InvalidIdentifier) as refused:
        stocked().record_count(bad, 5, NOW)  # type: ignore[arg-type]
    assert refused.value.details["field"] == "count_id"


@pytest.mark.parametrize("bad", ["web shop", "", None])
def test_a_channel_must_be_an_identifier(bad: object) -> None:
    with pytest.raises(InvalidIdentifier) as refused:
        stocked().reserve("order-1", 1, bad)  # type: ignore[arg-type]
    assert refused.value.details["field"] == "channel"


@pytest.mark.parametrize("command", ["release", "fulfil"])
def test_an_order_id_must_be_an_identifier_to_release_or_fulfil(command: str) -> None:
    with pytest.raises(InvalidIdentifier) as refused:
        getattr(stocked(), command)("order 1")
    assert refused.value.details["field"] == "order_id"


def test_a_release_reason_is_cancelled_or_expired() -> None:
    item = stocked(10)
    item.reserve("order-1", 1, "web")
    with pytest.raises(InvalidRequest) as refused:
        item.release("order-1", reason="lost")
    assert refused.value.details["field"] == "reason"
    assert "cancelled" in refused.value.message
    item.release("order-1", reason="expired")
    (released,) = [e for e in item.collect_events() if isinstance(e, StockItem.Released)]
    assert released.reason == "expired"


@pytest.mark.parametrize(("moment", "accepted"), [
    (datetime(1970, 1, 1, tzinfo=UTC), True),
    (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), False),
    (datetime(8999, 12, 31, 23, 59, tzinfo=UTC), True),
    (datetime(9000, 1, 1, tzinfo=UTC), False),
])
def test_timestamps_from_1970_up_to_the_year_9000_are_accepted(moment: datetime,
                                                               accepted: bool) -> None:
    item = stocked(10)
    if accepted:
        item.record_count("count-1", 8, moment)
        item.reserve("order-1", 1, "web", expires_at=moment)
        assert new_events(item) == ["Counted", "Reserved"]
        return
    for command in (lambda: item.record_count("count-1", 8, moment),
                    lambda: item.reserve("order-1", 1, "web", expires_at=moment),
                    lambda: item.expire_overdue(moment)):
        with pytest.raises(InvalidRequest) as refused:
            command()
        assert "1970" in refused.value.message and "9000" in refused.value.message
        assert refused.value.details["field"] in ("counted_at", "expires_at", "now")


@pytest.mark.parametrize("moment", ["2026-11-26T12:00:00+00:00", 1_700_000_000, None,
                                    datetime(2026, 1, 1)])
def test_a_timestamp_must_be_a_datetime_with_a_time_zone(moment: object) -> None:
    item = stocked(10)
    for kind, command in (
        ("counted_at", lambda: item.record_count("count-1", 8, moment)),  # type: ignore[arg-type]
        ("expires_at", lambda: item.reserve("order-1", 1, "web", expires_at=moment)),  # type: ignore[arg-type]
        ("now", lambda: item.expire_overdue(moment)),  # type: ignore[arg-type]
    ):
        if moment is None and kind == "expires_at":
            continue  # no expiry: a reservation without one
        with pytest.raises(InvalidRequest) as refused:
            command()
        assert refused.value.details["field"] == kind
        assert "time zone" in refused.value.message
    assert [e for e in new_events(item) if e != "Reserved"] == []


# ------------------------------------------------------------------------- expiry


def test_a_ttl_sets_the_expiry_that_many_seconds_after_now() -> None:
    assert StockItem.expiry(NOW, 1) == NOW + timedelta(seconds=1)
    assert StockItem.expiry(NOW, 366 * 24 * 3600) == NOW + timedelta(days=366)
    assert StockItem.expiry(NOW, None) is None


@pytest.mark.parametrize(("ttl", "error"), [
    (366 * 24 * 3600 + 1, InvalidRequest), (0, InvalidQuantity), (-5, InvalidQuantity),
    (1.5, InvalidQuantity),
])
def test_a_ttl_is_at_least_a_second_and_at_most_a_year(ttl: object,
                                                       error: type[Exception]) -> None:
    with pytest.raises(error) as refused:
        StockItem.expiry(NOW, ttl)  # type: ignore[arg-type]
    assert refused.value.details["field"] == "ttl_seconds"  # type: ignore[attr-defined]
    assert "ttl_seconds" in refused.value.message  # type: ignore[attr-defined]


def test_a_reservation_expires_exactly_at_its_expiry_not_before() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web", expires_at=NOW)
    item.reserve("order-2", 2, "web", expires_at=NOW + timedelta(microseconds=1))
    item.collect_events()
    assert item.expire_overdue(NOW) == 1
    assert item.reservation("order-1") is None
    assert item.reservation("order-2") is not None


def test_several_overdue_reservations_expire_in_order_id_order() -> None:
    item = stocked(10)
    for order in ("order-c", "order-a", "order-b"):
        item.reserve(order, 1, "web", expires_at=NOW)
    item.collect_events()
    assert item.expire_overdue(NOW) == 3
    released = collected(item, StockItem.Released)
    assert [(e.order_id, e.quantity, e.reason) for e in released] == [
        ("order-a", 1, "expired"), ("order-b", 1, "expired"), ("order-c", 1, "expired")]
    assert (item.reserved, item.expire_overdue(NOW)) == (0, 0)


# ------------------------------------------------------------------- reservations


def test_changing_a_quantity_without_a_ttl_keeps_the_earlier_expiry() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web", expires_at=NOW)
    item.reserve("order-1", 6, "web")
    item.reserve("order-1", 2, "pos")
    assert item.reservation("order-1") == Reservation("order-1", 2, "pos", NOW)
    events = collected(item, StockItem.Reserved)
    assert [e.expires_at for e in events[-3:]] == [NOW, NOW, NOW]


def test_changing_a_quantity_with_a_ttl_sets_the_new_expiry() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web", expires_at=NOW)
    later = NOW + timedelta(hours=1)
    item.reserve("order-1", 5, "web", expires_at=later)
    assert item.reservation("order-1") == Reservation("order-1", 5, "web", later)


def test_the_same_quantity_and_channel_with_another_expiry_changes_nothing() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web", expires_at=NOW)
    item.reserve("order-1", 4, "web", expires_at=NOW + timedelta(hours=1))
    assert item.reservation("order-1") == Reservation("order-1", 4, "web", NOW)
    assert new_events(item) == ["Reserved"]


def test_a_channel_change_is_accepted_even_when_stock_no_longer_covers_it() -> None:
    item = stocked(5)
    item.reserve("order-1", 5, "web")
    item.adjust(-3, "damaged")  # the reservation now holds more than the shelf has
    item.collect_events()
    item.reserve("order-1", 5, "pos")
    (changed,) = collected(item, StockItem.Reserved)
    assert (changed.quantity, changed.previous_quantity, changed.channel) == (5, 5, "pos")
    item.reserve("order-1", 4, "pos")  # a decrease always fits
    assert item.reserved == 4


def test_a_refused_reservation_says_what_was_asked_and_what_could_be_held() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=1, oversell_buffer=2)
    item.reserve("order-1", 6, "web")
    item.reserve("order-2", 2, "web")
    with pytest.raises(InsufficientStock) as refused:
        item.reserve("order-2", 7, "web")
    # on hand 10 - safety 1 + buffer 2 - held by others 6 = 5 for order-2
    assert (refused.value.requested, refused.value.available, refused.value.reservable) == (
        7, 1, 5)
    assert refused.value.details == {"requested": 7, "available": 1, "reservable": 5}
    assert "7" in refused.value.message and "5" in refused.value.message


def test_a_reservation_that_fits_exactly_is_accepted() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=1, oversell_buffer=2)
    item.reserve("order-1", 11, "web")
    assert item.available == -2


def test_when_nothing_can_be_held_the_refusal_says_zero_not_less() -> None:
    item = stocked(5)
    item.reserve("order-1", 5, "web")
    item.adjust(-3, "damaged")
    with pytest.raises(InsufficientStock) as refused:
        item.reserve("order-2", 1, "web")
    assert (refused.value.reservable, refused.value.available) == (0, -3)


def test_a_reservation_event_carries_what_it_replaced() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web", expires_at=NOW)
    item.reserve("order-1", 6, "web")
    first, second = collected(item, StockItem.Reserved)
    assert (first.order_id, first.quantity, first.previous_quantity, first.channel) == (
        "order-1", 4, 0, "web")
    assert (second.quantity, second.previous_quantity, second.reserved) == (6, 4, 6)


def test_a_released_event_carries_the_quantity_it_freed() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.reserve("order-2", 3, "web")
    item.collect_events()
    item.release("order-1")
    (released,) = item.collect_events()
    assert isinstance(released, StockItem.Released)
    assert (released.order_id, released.quantity, released.reason) == ("order-1", 4, "cancelled")
    assert (released.reserved, released.available, item.reserved) == (3, 7, 3)


def test_a_fulfilled_event_carries_the_quantity_shipped_and_the_position_after() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.reserve("order-2", 2, "web")
    item.collect_events()
    item.fulfil("order-1", 3)
    (fulfilled,) = item.collect_events()
    assert isinstance(fulfilled, StockItem.Fulfilled)
    assert (fulfilled.order_id, fulfilled.quantity) == ("order-1", 3)
    assert (fulfilled.on_hand, fulfilled.reserved, fulfilled.available) == (7, 2, 5)
    assert fulfilled.memos() == (("order:order-1", "fulfilled:3"),)


def test_a_closed_reservation_refusal_names_the_order_and_how_it_ended() -> None:
    item, memos = stocked(10), Memos()
    item.reserve("order-1", 4, "web")
    item.release("order-1")
    item.reserve("order-2", 1, "web")
    item.fulfil("order-2")
    memos.save(item)
    with pytest.raises(ReservationClosed) as released:
        item.fulfil("order-1", recall=memos.recall)
    with pytest.raises(ReservationClosed) as fulfilled:
        item.reserve("order-2", 1, "web", recall=memos.recall)
    assert (released.value.order_id, released.value.outcome) == ("order-1", "cancelled")
    assert (fulfilled.value.order_id, fulfilled.value.outcome) == ("order-2", "fulfilled")
    assert fulfilled.value.details == {"order_id": "order-2", "outcome": "fulfilled"}
    with pytest.raises(UnknownReservation) as unknown:
        item.fulfil("order-3", recall=memos.recall)
    assert unknown.value.order_id == "order-3"
    assert unknown.value.details == {"order_id": "order-3"}


def test_a_fulfilment_repeated_without_a_quantity_after_a_partial_one_is_a_repeat() -> None:
    item, memos = stocked(10), Memos()
    item.reserve("order-1", 4, "web")
    item.fulfil("order-1", 3)
    memos.save(item)
    item.fulfil("order-1", recall=memos.recall)
    item.fulfil("order-1", 3, recall=memos.recall)
    assert new_events(item) == [] and item.on_hand == 7
    with pytest.raises(FulfilmentConflict) as refused:
        item.fulfil("order-1", 4, recall=memos.recall)
    assert refused.value.order_id == "order-1"
    assert refused.value.details == {"order_id": "order-1", "fulfilled": 3, "requested": 4}


def test_an_expired_reservation_cannot_be_fulfilled_and_says_so() -> None:
    item, memos = stocked(10), Memos()
    item.reserve("order-1", 4, "web", expires_at=NOW)
    item.expire_overdue(NOW)
    memos.save(item)
    with pytest.raises(ReservationClosed) as refused:
        item.fulfil("order-1", recall=memos.recall)
    assert refused.value.outcome == "expired"
    item.release("order-1", recall=memos.recall)  # releasing it again is a repeat
    assert new_events(item) == []


def test_an_open_reservation_has_no_outcome_whatever_the_store_recalls() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    assert item.outcome_of("order-1", lambda memo: "cancelled") is None
    assert item.outcome_of("order-9", lambda memo: None) is None


# ---------------------------------------------------------------------- positions


def test_a_position_names_the_stream_its_figures_version_and_reservations() -> None:
    item = stocked(10)
    item.set_policy(safety_stock=1, oversell_buffer=3)
    item.reserve("order-b", 2, "pos", expires_at=NOW)
    item.reserve("order-a", 3, "web")
    position = item.position()
    assert position == Position(
        sku="SKU-1", location="STORE-7", on_hand=10, reserved=5, safety_stock=1,
        oversell_buffer=3, version=5,
        reservations=(Reservation("order-a", 3, "web", None),
                      Reservation("order-b", 2, "pos", NOW)),
        open_reservations=2,
    )
    assert position.available == 4


def test_a_position_may_list_only_some_reservations_but_counts_them_all() -> None:
    item = stocked(10)
    for order in ("order-c", "order-a", "order-b"):
        item.reserve(order, 1, "web")
    only = item.position(only=["order-c", "order-a", "order-404", "order-a"])
    assert [r.order_id for r in only.reservations] == ["order-a", "order-c"]
    assert (only.open_reservations, only.reserved, only.on_hand) == (3, 3, 10)
    assert item.position(only=()).reservations == ()
    assert [r.order_id for r in item.position().reservations] == [
        "order-a", "order-b", "order-c"]


def test_available_is_on_hand_less_reserved_less_safety_stock() -> None:
    position = Position("SKU-1", "STORE-7", on_hand=20, reserved=7, safety_stock=3,
                        oversell_buffer=5, version=9)
    assert position.available == 10
    assert Position("SKU-1", "STORE-7", 2, 5, 1, 0, 3).available == -4


def test_the_position_of_a_pair_never_seen_is_all_zeros() -> None:
    assert Position.empty("SKU-1", "STORE-7") == Position(
        "SKU-1", "STORE-7", on_hand=0, reserved=0, safety_stock=0, oversell_buffer=0,
        version=0, reservations=(), open_reservations=0)
    with pytest.raises(InvalidIdentifier):
        Position.empty("SKU 1", "STORE-7")
    with pytest.raises(InvalidIdentifier):
        Position.empty("SKU-1", "STORE/7")


def test_a_copy_of_the_aggregate_changes_without_touching_the_original() -> None:
    item = stocked(10)
    item.reserve("order-1", 4, "web")
    item.collect_events()
    copy = deepcopy(item)
    copy.reserve("order-1", 6, "web")
    copy.reserve("order-2", 1, "web")
    copy.receive(5)
    assert (item.on_hand, item.reserved, item.version) == (10, 4, 3)
    assert item.position().reservations == (Reservation("order-1", 4, "web", None),)
    assert item.pending_events == []
    assert (copy.on_hand, copy.reserved, len(copy.pending_events)) == (15, 7, 3)


# ------------------------------------------------------------------------- counts


def test_movements_are_what_happened_after_a_moment_and_counts_are_none() -> None:
    item = stocked(0)
    item.receive(10)
    item.adjust(-2, "damaged")
    item.reserve("order-1", 3, "web")
    item.fulfil("order-1", 3)
    item.record_count("count-1", 4, NOW)
    item.set_policy(1, 0)
    # One event a minute from NOW on, so "after" is unambiguous.
    events = [replace(e, timestamp=NOW + timedelta(minutes=n))
              for n, e in enumerate(stock_events(item))]
    assert [e.movement for e in events] == [10, -2, 0, -3, 0, 0]
    assert movements_after(events, NOW - timedelta(microseconds=1)) == 5
    assert movements_after(events, NOW) == -5  # not the receipt recorded at that moment
    assert movements_after(reversed(events), NOW) == -5
    assert movements_after(events, NOW + timedelta(minutes=5)) == 0


def test_a_count_event_carries_its_figures_and_when_it_was_taken() -> None:
    item = stocked(10)
    item.record_count("count-1", 7, NOW, movements_since=-2)
    (counted,) = item.collect_events()
    assert isinstance(counted, StockItem.Counted)
    assert (counted.count_id, counted.counted, counted.counted_at, counted.superseded) == (
        "count-1", 7, NOW, False)
    # The shelf held 7 when counted; 2 left since: on hand is 5, the stream said 12 then.
    assert (counted.previous_on_hand, counted.delta, counted.on_hand, item.on_hand) == (
        12, -5, 5, 5)
    assert item.last_counted_at == NOW


def test_a_count_of_the_same_moment_as_the_latest_is_applied_not_superseded() -> None:
    item = stocked(10)
    item.record_count("count-1", 8, NOW)
    item.record_count("count-2", 6, NOW)
    second = item.collect_events()[-1]
    assert isinstance(second, StockItem.Counted)
    assert not second.superseded and item.on_hand == 6


def test_a_superseded_count_is_remembered_so_a_repeat_changes_nothing() -> None:
    item, memos = stocked(10), Memos()
    item.record_count("count-new", 8, NOW)
    item.record_count("count-old", 3, NOW - timedelta(hours=1))
    memos.save(item)
    item.record_count("count-old", 3, NOW - timedelta(hours=1), recall=memos.recall)
    assert new_events(item) == [] and item.on_hand == 8
    with pytest.raises(CountAlreadyRecorded) as refused:
        item.record_count("count-old", 3, NOW, recall=memos.recall)
    assert refused.value.count_id == "count-old"
    assert refused.value.details == {"count_id": "count-old"}


def test_a_count_is_the_same_count_in_any_time_zone() -> None:
    item, memos = stocked(10), Memos()
    item.record_count("count-1", 8, NOW)
    memos.save(item)
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    item.record_count("count-1", 8, tokyo, recall=memos.recall)
    assert new_events(item) == []


def test_an_insufficient_on_hand_refusal_says_what_was_asked() -> None:
    with pytest.raises(InsufficientOnHand) as refused:
        stocked(3).adjust(-5, "theft")
    assert refused.value.details == {"delta": -5, "on_hand": 3}
    assert "-5" in refused.value.message and "3" in refused.value.message


def test_reopening_a_released_reservation_is_refused_with_how_it_ended() -> None:
    item, memos = stocked(10), Memos()
    item.reserve("order-1", 4, "web")
    item.release("order-1")
    memos.save(item)
    with pytest.raises(ReservationClosed) as refused:
        item.reserve("order-1", 4, "web", recall=memos.recall)
    assert refused.value.outcome == "cancelled"


def test_the_memos_kept_for_the_window_keep_their_format() -> None:
    # Memos are stored beside the events for the idempotency window: a key used before a
    # deploy must still be recognised after it, so their format is fixed.
    item = stocked(10)
    item.receive(5, reference="PO-17", idempotency_key="asn-17")
    item.receive(1, idempotency_key="asn-18")
    item.adjust(-2, "damaged", idempotency_key="adj-1", note="dented")
    item.adjust(-1, "theft", idempotency_key="adj-2")
    item.reserve("order-1", 2, "web")
    item.release("order-1")
    item.record_count("count-1", 7, datetime(2026, 11, 26, 21, 0, tzinfo=timezone(
        timedelta(hours=9))))
    assert [e.memos() for e in stock_events(item)] == [
        (("key:asn-17", "receipt:5:PO-17"),),
        (("key:asn-18", "receipt:1:"),),
        (("key:adj-1", "adjustment:-2:damaged:dented"),),
        (("key:adj-2", "adjustment:-1:theft:"),),
        (),
        (("order:order-1", "cancelled"),),
        (("count:count-1", "count:7:2026-11-26T12:00:00+00:00"),),
    ]


def test_a_counts_memo_does_not_depend_on_the_machines_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        item = stocked(10)
        item.record_count("count-1", 7, NOW)
        (counted,) = stock_events(item)
        assert counted.memos() == (("count:count-1", "count:7:2026-11-26T12:00:00+00:00"),)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_copy_shares_the_open_reservations_until_either_changes_them() -> None:
    item = stocked(10)
    item.reserve("order-1", 2, "web")
    item.collect_events()
    copy = deepcopy(item)
    assert copy.reservations is item.reservations  # copy on write: nothing copied yet

    copy.reserve("order-2", 3, "web")
    item.release("order-1")

    assert sorted(copy.reservations) == ["order-1", "order-2"]
    assert (copy.reserved, item.reserved) == (5, 0)
    assert item.reservations == {}
    assert deepcopy(copy).position() == copy.position()


def test_a_snapshot_lists_open_reservations_as_rows_and_rebuilds_the_same_item() -> None:
    from tests.unit.test_stock_item_properties import MAPPER

    item = stocked(10)
    item.reserve("order-1", 2, "web", NOW + timedelta(minutes=5))
    item.reserve("order-2", 1, "pos", datetime(2026, 11, 26, 14, 0, 0, 123456,
                                               tzinfo=timezone(timedelta(hours=2))))
    item.reserve("order-3", 3, "wms")
    item.collect_events()
    shared = deepcopy(item)  # a snapshot of a copy sees the state, not the sharing

    stored = MAPPER.to_stored_event(StockItem.Snapshot.take(shared))
    rebuilt = from_snapshot(MAPPER, stored)
    snapshot = MAPPER.to_domain_event(stored)

    assert isinstance(snapshot, StockItem.Snapshot)
    assert snapshot.state["reservations"] == [
        ["order-1", 2, "web", "2026-11-26T12:05:00+00:00"],
        ["order-2", 1, "pos", "2026-11-26T14:00:00.123456+02:00"],
        ["order-3", 3, "wms", None]]
    assert rebuilt.reservations == item.reservations
    assert rebuilt.position() == item.position()
    assert set(vars(rebuilt)) == set(vars(item))
    assert not rebuilt.shares_reservations


def test_a_v5_snapshot_with_reservations_by_order_id_is_upcast_to_rows() -> None:
    state: dict[str, Any] = {"reservations": {
        "order-1": {"quantity": 1, "channel": "web", "expires_at": NOW},
        "order-2": {"quantity": 2, "channel": "pos", "expires_at": None},
    }}
    StockItem.upcast_v5_v6(state)
    assert state["reservations"] == [["order-1", 1, "web", NOW.isoformat()],
                                     ["order-2", 2, "pos", None]]
