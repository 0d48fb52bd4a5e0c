"""Refusals: a stable code for machines, details for the problem document, and a message
that a person at a till can act on (it names what was asked and what stands in the way)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from domain.errors import (
    CountAlreadyRecorded,
    DomainError,
    FulfilmentConflict,
    IdempotencyKeyReused,
    InsufficientOnHand,
    InsufficientStock,
    InvalidRequest,
    ReservationClosed,
    UnknownReservation,
)


@pytest.mark.parametrize(("refuse", "code", "details", "mentions"), [
    (lambda: InsufficientStock(requested=7, available=2, reservable=3), "insufficient-stock",
     {"requested": 7, "available": 2, "reservable": 3}, ["7", "2", "3"]),
    (lambda: InsufficientOnHand(delta=-5, on_hand=3), "insufficient-on-hand",
     {"delta": -5, "on_hand": 3}, ["-5", "3"]),
    (lambda: UnknownReservation("order-9"), "unknown-reservation", {"order_id": "order-9"},
     ["order-9"]),
    (lambda: ReservationClosed("order-9", "expired"), "reservation-closed",
     {"order_id": "order-9", "outcome": "expired"}, ["order-9", "expired"]),
    (lambda: IdempotencyKeyReused("k-1"), "idempotency-key-reused",
     {"idempotency_key": "k-1"}, ["k-1"]),
    (lambda: CountAlreadyRecorded("count-1"), "count-already-recorded",
     {"count_id": "count-1"}, ["count-1"]),
    (lambda: FulfilmentConflict("order-9", fulfilled=3, requested=4), "fulfilment-conflict",
     {"order_id": "order-9", "fulfilled": 3, "requested": 4}, ["order-9", "3", "4"]),
    (lambda: InvalidRequest("note is too long", field="note"), "invalid-request",
     {"field": "note"}, ["note is too long"]),
])
def test_a_refusal_has_a_code_details_and_a_message_naming_its_particulars(
    refuse: Callable[[], DomainError], code: str, details: dict[str, object],
    mentions: list[str],
) -> None:
    error = refuse()  # made in the test, not at collection, so make mutation sees it
    assert isinstance(error, DomainError)
    assert error.code == code
    assert error.details == details
    assert str(error) == error.message
    for particular in mentions:
        assert particular in error.message


def test_a_refusal_keeps_its_particulars_as_attributes() -> None:
    stock = InsufficientStock(requested=7, available=2, reservable=3)
    assert (stock.requested, stock.available, stock.reservable) == (7, 2, 3)
    assert InsufficientOnHand(delta=-5, on_hand=3).on_hand == 3
    assert UnknownReservation("order-9").order_id == "order-9"
    closed = ReservationClosed("order-9", "expired")
    assert (closed.order_id, closed.outcome) == ("order-9", "expired")
    assert IdempotencyKeyReused("k-1").key == "k-1"
    assert CountAlreadyRecorded("count-1").count_id == "count-1"
    conflict = FulfilmentConflict("order-9", fulfilled=3, requested=4)
    assert (conflict.order_id, conflict.fulfilled, conflict.requested) == ("order-9", 3, 4)
