"""The ``Transfer`` process alone, no store: what each command decides, what step comes
next from the recorded state, and that a refusal or a repeat decides nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from domain.errors import InvalidRequest, TransferConflict, TransferStatusConflict
from domain.transfer import Transfer, TransferRequest
from tests.transfers.conftest import request

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def requested() -> Transfer:
    transfer = Transfer.create("T-1")
    transfer.place(request())
    transfer.collect_events()
    return transfer


def shipped(quantity: int = 10) -> Transfer:
    transfer = requested()
    transfer.request_shipment(NOW)
    step = transfer.next_step()
    assert step is not None and step.kind == "ship"
    transfer.record_shipped(step)
    step = transfer.next_step()
    assert step is not None and (step.kind, step.expected_at) == ("expect", NOW)
    transfer.record_expected(step)
    transfer.collect_events()
    return transfer


def test_the_steps_follow_from_the_recorded_state_only():
    transfer = Transfer.create("T-1")
    transfer.place(request())
    transfer.request_shipment(NOW)
    ship = transfer.next_step()
    assert ship is not None and (ship.kind, ship.quantity) == ("ship", 10)
    transfer.record_shipped(ship)
    expect = transfer.next_step()
    assert expect is not None and (expect.kind, expect.expected_at) == ("expect", NOW)
    transfer.record_expected(expect)
    assert (transfer.status, transfer.next_step()) == ("shipped", None)
    transfer.request_receipt(7)
    receive = transfer.next_step()
    assert receive is not None and (receive.kind, receive.quantity, receive.shipped) == (
        "receive", 7, 10)

    rebuilt: Transfer | None = None  # the same events applied again: the same next step
    for event in transfer.collect_events():
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None and rebuilt.next_step() == receive

    transfer.record_received(receive)
    transfer.request_close()
    lose = transfer.next_step()
    assert lose is not None and (lose.kind, lose.quantity) == ("lose", 3)
    transfer.record_lost(lose)
    assert (transfer.status, transfer.shipped, transfer.received, transfer.lost,
            transfer.in_transit) == ("closed", 10, 7, 3, 0)


def test_a_refused_shipment_leaves_it_requested_and_a_stale_result_records_nothing():
    transfer = requested()
    transfer.request_shipment(NOW)
    step = transfer.next_step()
    assert step is not None
    transfer.record_refused(step, 4)
    assert (transfer.status, transfer.refused_available, transfer.next_step()) == (
        "requested", 4, None)
    transfer.collect_events()
    transfer.record_shipped(step)  # a late driver's result for a step no longer next
    assert transfer.collect_events() == []


def test_repeats_decide_nothing():
    transfer = shipped()
    transfer.request_shipment(NOW)
    transfer.place(request())
    assert transfer.collect_events() == []
    transfer.request_receipt(10)
    step = transfer.next_step()
    assert step is not None
    transfer.record_received(step)
    transfer.collect_events()
    transfer.request_receipt(10)
    assert transfer.collect_events() == []
    cancelled = requested()
    cancelled.cancel()
    cancelled.collect_events()
    cancelled.cancel()
    assert cancelled.collect_events() == []


@pytest.mark.parametrize("decide, error", [
    (lambda t: t.place(request(quantity=9)), TransferConflict),
    (lambda t: t.request_receipt(11), InvalidRequest),
    (lambda t: t.cancel(), TransferStatusConflict),
])
def test_refusals_decide_nothing(decide: Callable[[Transfer], None],
                                 error: type[Exception]):
    transfer = shipped()
    with pytest.raises(error):
        decide(transfer)
    assert transfer.collect_events() == []


def test_a_request_needs_two_locations_and_a_quantity():
    with pytest.raises(InvalidRequest):
        TransferRequest.of("T-1", "SKU", "DC-1", "DC-1", 1)
    with pytest.raises(InvalidRequest):
        TransferRequest.of("T-1", "SKU", "DC-1", "S-1", 1, datetime(2026, 12, 1))
