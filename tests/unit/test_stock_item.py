"""The StockItem aggregate, by example: what each command decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import StockItem
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
        events: list[StockItem.Event] = item.collect_events()  # type: ignore[assignment]
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
    events = item.collect_events()
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
    assert refused.value.outcome == "fulfilled"
    assert new_events(item) == []


def test_releasing_an_order_that_never_reserved_is_unknown() -> None:
    with pytest.raises(UnknownReservation):
        stocked().release("order-404")


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
    released = item.collect_events()
    assert [(e.order_id, e.reason) for e in released] == [("order-1", "expired")]
    assert item.reserved == 4
    assert item.outcome_of("order-1", Memos(released[0].memos()).recall) == "expired"


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
    item.record_count("count-old", 40, NOW - timedelta(hours=1))
    (superseded,) = item.collect_events()
    assert isinstance(superseded, StockItem.Counted) and superseded.superseded
    assert (superseded.delta, superseded.on_hand, item.on_hand) == (0, 90, 90)
    assert item.last_counted_at == NOW


def test_a_count_repeated_changes_nothing_but_different_figures_are_refused() -> None:
    item, memos = stocked(10), Memos()
    item.record_count("count-1", 8, NOW)
    memos.save(item)
    item.record_count("count-1", 8, NOW, recall=memos.recall)
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
    with pytest.raises(InvalidIdentifier):
        StockItem.create(bad, "STORE-7")  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifier):
        stocked().reserve(bad, 1, "web")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None, 10**12])
def test_quantities_must_be_positive_whole_numbers(bad: object) -> None:
    item = stocked(10)
    with pytest.raises(InvalidQuantity):
        item.receive(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuantity):
        item.reserve("order-1", bad, "web")  # type: ignore[arg-type]
    assert new_events(item) == []


def test_a_refused_command_leaves_no_pending_event() -> None:
    item = stocked(1)
    for command in (
        lambda: item.reserve("order-1", 2, "web"),
        lambda: item.adjust(-2, "damaged"),
        lambda: item.fulfil("order-9"),
    ):
        with pytest.raises(Exception):  # noqa: B017 - each raises its own DomainError
            command()
    assert new_events(item) == []
