"""The stock-state routes of docs/stock-states.md (state moves, incoming supply, available to
promise, and ``state`` on receipts, adjustments and counts), called through the functions
``function_app`` registered with real ``func.HttpRequest`` objects, against a real SQLite
event store. Every refusal is checked to record nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.holds import HeldAdjustment, HeldCount, hold_of_record, hold_record
from application.settings import load
from composition import Services
from composition.embedded import embedded_services
from functions.container import use_services
from tests.http.conftest import SKU, call, order

DENTED = {"quantity": 5, "from": "sellable", "to": "damaged", "reason": "dented in delivery"}


def incoming(reference: str) -> dict[str, str]:
    return {**SKU, "reference": reference}


def version(container: Services) -> int:
    return container.queries.position(SKU["sku"], SKU["location"]).version


def soon(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


# --------------------------------------------------------------- the position


def test_every_answer_with_a_position_has_the_states_and_the_incoming_supply(
        container: Services):
    answer = call("receive_stock", "POST", SKU, {"quantity": 10})
    assert {"sellable", "held", "incoming", "incoming_total"} <= set(answer.body)
    count = call("record_count", "POST", SKU, {"count_id": "c-1", "counted": 10,
                                               "counted_at": datetime.now(UTC).isoformat()})
    assert count.body["position"]["held"] == {"damaged": 0, "quality_control": 0}
    assert count.body["correction"]["state"] == "sellable"


# ---------------------------------------------------------------- state moves


def test_moving_dented_units_to_damaged_keeps_on_hand_and_lowers_available(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 20})

    moved = call("move_stock_state", "POST", SKU, DENTED)

    assert moved.status == 200
    body = moved.body
    assert (body["on_hand"], body["sellable"], body["available"]) == (20, 15, 15)
    assert body["held"] == {"damaged": 5, "quality_control": 0}
    assert call("get_position", "GET", SKU).body["held"]["damaged"] == 5
    [event] = call("list_events", "GET", SKU, params={"after": "2"}).body
    assert event["type"] == "Stockstream.StockStateMoved.v1"
    assert (event["data"]["from_state"], event["data"]["to_state"],
            event["data"]["reason"]) == ("sellable", "damaged", "dented in delivery")


def test_a_state_move_repeated_with_its_idempotency_key_records_one_event(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 20})
    key = {"Idempotency-Key": "move-1"}

    first = call("move_stock_state", "POST", SKU, DENTED, headers=key)
    again = call("move_stock_state", "POST", SKU, DENTED, headers=key)
    other = call("move_stock_state", "POST", SKU, {**DENTED, "quantity": 6}, headers=key)

    assert (first.status, again.status) == (200, 200)
    assert again.body == first.body
    assert (other.status, other.problem_code) == (409, "idempotency-key-reused")
    assert version(container) == 3
    assert call("get_position", "GET", SKU).body["held"]["damaged"] == 5


def test_a_key_of_a_receipt_is_not_a_state_move(container: Services):
    key = {"Idempotency-Key": "shared"}
    call("receive_stock", "POST", SKU, {"quantity": 20}, headers=key)
    reused = call("move_stock_state", "POST", SKU, DENTED, headers=key)
    assert (reused.status, reused.problem_code) == (409, "idempotency-key-reused")


def test_reserved_units_never_leave_sellable(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 10})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 7, "channel": "web"})
    before = version(container)

    refused = call("move_stock_state", "POST", SKU, {**DENTED, "quantity": 4})

    assert (refused.status, refused.problem_code) == (409, "insufficient-stock")
    assert refused.body["available"] == 3
    assert version(container) == before
    assert call("move_stock_state", "POST", SKU, {**DENTED, "quantity": 3}).status == 200


def test_a_move_out_of_a_held_state_takes_at_most_what_it_holds(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 10})
    call("move_stock_state", "POST", SKU, {"quantity": 2, "from": "sellable",
                                           "to": "quality_control"})
    back = {"quantity": 3, "from": "quality_control", "to": "sellable"}

    refused = call("move_stock_state", "POST", SKU, back)
    released = call("move_stock_state", "POST", SKU, {**back, "quantity": 2})

    assert (refused.status, refused.problem_code) == (409, "insufficient-on-hand")
    assert released.status == 200
    assert (released.body["sellable"], released.body["held"]["quality_control"]) == (10, 0)


@pytest.mark.parametrize(("body", "field"), [
    ({**DENTED, "to": "sellable"}, "to"),
    ({**DENTED, "to": "lost"}, "to"),
    ({**DENTED, "from": "reserved"}, "from"),
    ({"quantity": 1, "to": "damaged"}, "from"),
    ({**DENTED, "quantity": 0}, "quantity"),
    ({**DENTED, "quantity": 1.0}, "quantity"),
    ({**DENTED, "reason": ""}, "reason"),
    ({**DENTED, "reason": "bell\x07"}, "reason"),
    ({**DENTED, "from_state": "sellable"}, "from_state"),
])
def test_a_bad_state_move_is_a_422_naming_the_field_and_records_nothing(
        container: Services, body: dict[str, Any], field: str):
    call("receive_stock", "POST", SKU, {"quantity": 20})

    answer = call("move_stock_state", "POST", SKU, body)

    assert answer.status == 422, answer.body
    assert field in [e["field"] for e in answer.body["errors"]]
    assert version(container) == 2


# ------------------------------------------------------------- incoming supply


def test_an_expected_receipt_is_set_absolutely_and_zero_cancels_it(container: Services):
    due = "2030-01-02T10:00:00+02:00"

    first = call("set_incoming", "PUT", incoming("PO-1"), {"quantity": 8, "expected_at": due})
    same = call("set_incoming", "PUT", incoming("PO-1"), {"quantity": 8, "expected_at": due})
    changed = call("set_incoming", "PUT", incoming("PO-1"), {"quantity": 6, "expected_at": due})

    assert (first.status, same.status, changed.status) == (200, 200, 200)
    assert first.body["incoming"] == [
        {"reference": "PO-1", "quantity": 8, "expected_at": "2030-01-02T08:00:00Z"}]
    assert (first.body["incoming_total"], first.body["on_hand"], first.body["available"]) == \
        (8, 0, 0)
    assert same.body == first.body
    assert changed.body["incoming_total"] == 6
    cancelled = call("set_incoming", "PUT", incoming("PO-1"),
                     {"quantity": 0, "expected_at": due})
    assert (cancelled.body["incoming"], cancelled.body["incoming_total"]) == ([], 0)
    types = [e["type"] for e in call("list_events", "GET", SKU).body]
    assert types.count("Stockstream.StockIncomingSet.v1") == 3


def test_a_receipt_naming_an_open_entry_reduces_it(container: Services):
    call("set_incoming", "PUT", incoming("PO-7"), {"quantity": 10, "expected_at": soon(2)})

    part = call("receive_stock", "POST", SKU, {"quantity": 4, "reference": "PO-7"})
    rest = call("receive_stock", "POST", SKU, {"quantity": 6, "reference": "PO-7"})

    assert (part.body["on_hand"], part.body["incoming"][0]["quantity"]) == (4, 6)
    assert (rest.body["on_hand"], rest.body["incoming"], rest.body["incoming_total"]) == \
        (10, [], 0)


def test_a_transfers_incoming_entry_is_409_and_unchanged(container: Services):
    container.commands.expect_transfer("SKU-1", "STORE-1", "T-1", 5,
                                       datetime.now(UTC) + timedelta(days=1), "DC-1")
    before = version(container)

    answer = call("set_incoming", "PUT", incoming("T-1"),
                  {"quantity": 9, "expected_at": soon(1)})
    received = call("receive_stock", "POST", SKU, {"quantity": 5, "reference": "T-1"})

    assert (answer.status, answer.problem_code) == (409, "incoming-conflict")
    assert (received.status, received.problem_code) == (409, "incoming-conflict")
    assert version(container) == before
    position = call("get_position", "GET", SKU).body
    assert [(e["reference"], e["quantity"]) for e in position["incoming"]] == [("T-1", 5)]


@pytest.mark.parametrize(("reference", "body", "field"), [
    ("PO-1", {"quantity": -1, "expected_at": "2030-01-01T00:00:00Z"}, "quantity"),
    ("PO-1", {"quantity": 1, "expected_at": "2030-01-01T00:00:00"}, "expected_at"),
    ("PO-1", {"quantity": 1, "expected_at": "0001-01-01T00:00:00Z"}, "expected_at"),
    ("PO-1", {"quantity": 1}, "expected_at"),
    ("PO-1", {"quantity": "1", "expected_at": "2030-01-01T00:00:00Z"}, "quantity"),
    ("PO 1", {"quantity": 1, "expected_at": "2030-01-01T00:00:00Z"}, "reference"),
    ("x" * 65, {"quantity": 1, "expected_at": "2030-01-01T00:00:00Z"}, "reference"),
])
def test_a_bad_expected_receipt_is_a_422_and_records_nothing(
        container: Services, reference: str, body: dict[str, Any], field: str):
    answer = call("set_incoming", "PUT", incoming(reference), body)
    assert answer.status == 422, answer.body
    assert answer.body["errors"][0]["field"] == field
    assert version(container) == 0


def test_an_expected_receipt_without_a_json_body_is_refused(container: Services):
    assert call("set_incoming", "PUT", incoming("PO-1")).status == 400
    answer = call("set_incoming", "PUT", incoming("PO-1"),
                  raw=b'{"quantity": 1, "expected_at": "2030-01-01T00:00:00Z"}',
                  headers={"Content-Type": "text/plain"})
    assert answer.status == 415
    assert version(container) == 0


# ---------------------------------------------------------- available to promise


def test_atp_adds_expected_receipts_on_the_days_they_are_due(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 10})
    call("set_policy", "PUT", SKU, {"safety_stock": 2, "oversell_buffer": 0})
    assert call("reserve_stock", "PUT", order("o-1"),
                {"quantity": 7, "channel": "web"}).status == 201
    today = datetime.now(UTC).date()
    midnight = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    call("set_incoming", "PUT", incoming("PO-late"),
         {"quantity": 3, "expected_at": (midnight - timedelta(days=1)).isoformat()})
    call("set_incoming", "PUT", incoming("PO-next"),
         {"quantity": 5, "expected_at": (midnight + timedelta(days=2)).isoformat()})

    answer = call("get_available_to_promise", "GET", SKU, params={"days": "4"})

    assert answer.status == 200
    body = answer.body
    assert (body["sku"], body["location"]) == ("SKU-1", "STORE-1")
    assert datetime.fromisoformat(body["as_of"]).date() == today
    assert body["days"] == [
        {"date": (today + timedelta(days=d)).isoformat(), "available_to_promise": atp}
        for d, atp in enumerate([4, 4, 9, 9])]  # 10 - 7 - 2 = 1, then + 3, + 5


def test_atp_defaults_to_14_days_and_an_unknown_item_promises_nothing(container: Services):
    answer = call("get_available_to_promise", "GET", SKU)
    assert answer.status == 200
    assert len(answer.body["days"]) == 14
    assert {d["available_to_promise"] for d in answer.body["days"]} == {0}
    assert date.fromisoformat(answer.body["days"][0]["date"]) == datetime.now(UTC).date()
    assert len(call("get_available_to_promise", "GET", SKU,
                    params={"days": "90"}).body["days"]) == 90


def test_atp_is_not_clamped_at_zero(container: Services):
    call("set_policy", "PUT", SKU, {"safety_stock": 3, "oversell_buffer": 0})
    answer = call("get_available_to_promise", "GET", SKU, params={"days": "1"})
    assert answer.body["days"][0]["available_to_promise"] == -3


@pytest.mark.parametrize("days", ["0", "91", "-1", "x", "1.5"])
def test_atp_over_a_bad_number_of_days_is_a_422(container: Services, days: str):
    answer = call("get_available_to_promise", "GET", SKU, params={"days": days})
    assert answer.status == 422
    assert answer.body["errors"][0]["field"] == "days"


def test_atp_of_a_bad_identifier_is_a_422(container: Services):
    answer = call("get_available_to_promise", "GET", {"sku": "a b", "location": "STORE-1"})
    assert (answer.status, answer.body["errors"][0]["field"]) == (422, "sku")


# --------------------------------------------- state on receipts, adjustments, counts


def test_receipts_adjustments_and_counts_work_on_the_state_they_name(container: Services):
    received = call("receive_stock", "POST", SKU, {"quantity": 4, "state": "quality_control"})
    adjusted = call("adjust_stock", "POST", SKU,
                    {"delta": -1, "reason": "damaged", "state": "quality_control"})
    counted = call("record_count", "POST", SKU, {
        "count_id": "qc-1", "counted": 2, "counted_at": datetime.now(UTC).isoformat(),
        "state": "quality_control"})

    assert (received.body["on_hand"], received.body["sellable"], received.body["available"]) \
        == (4, 0, 0)
    assert received.body["held"]["quality_control"] == 4
    assert adjusted.body["held"]["quality_control"] == 3
    assert counted.status == 200
    assert counted.body["position"]["held"]["quality_control"] == 2
    correction = counted.body["correction"]
    assert (correction["state"], correction["previous_on_hand"], correction["delta"]) == \
        ("quality_control", 3, -1)
    events = call("list_events", "GET", SKU).body
    assert [e["data"].get("state") for e in events[1:]] == ["quality_control"] * 3


def test_an_adjustment_never_takes_a_state_below_zero(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 4})
    answer = call("adjust_stock", "POST", SKU, {"delta": -1, "reason": "theft",
                                                "state": "damaged"})
    assert (answer.status, answer.problem_code) == (409, "insufficient-on-hand")
    assert version(container) == 2


@pytest.mark.parametrize(("route", "body"), [
    ("receive_stock", {"quantity": 1, "state": "lost"}),
    ("adjust_stock", {"delta": 1, "reason": "found", "state": "reserved"}),
    ("record_count", {"count_id": "c-1", "counted": 1, "counted_at": "2030-01-01T00:00:00Z",
                      "state": None}),
])
def test_an_unknown_state_is_a_422(container: Services, route: str, body: dict[str, Any]):
    answer = call(route, "POST", SKU, raw=json.dumps(body).encode())
    assert answer.status == 422
    assert answer.body["errors"][0]["field"] == "state"
    assert version(container) == 0


# ------------------------------------------------- held for approval, in a state


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Services]:
    """Adjustments of more than 40 units are held."""
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path),
                                        "STOCKSTREAM_ADJUSTMENT_HOLD_UNITS": "40"}))
    use_services(container)
    yield container
    use_services(None)
    container.close()


def test_a_held_adjustment_of_a_state_is_approved_into_that_state(strict: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    body = {"delta": 50, "reason": "returned", "state": "quality_control"}

    held = call("adjust_stock", "POST", SKU, body, headers={"Idempotency-Key": "ret-1"})
    hold_id = held.body["held"]["hold_id"]
    listed = call("list_held_counts", "GET").body
    other_state = call("adjust_stock", "POST", SKU, {**body, "state": "damaged"},
                       headers={"Idempotency-Key": "ret-1"})
    approved = call("approve_held_counts", "POST", {"hold_id": hold_id})

    assert held.status == 202
    assert [(h["hold_id"], h["state"]) for h in listed] == [(hold_id, "quality_control")]
    assert (other_state.status, other_state.problem_code) == (409, "idempotency-key-reused")
    assert approved.status == 200
    position = call("get_position", "GET", SKU).body
    assert (position["on_hand"], position["sellable"],
            position["held"]["quality_control"]) == (150, 100, 50)


def test_a_hold_stored_before_stock_states_reads_as_one_of_sellable():
    at = datetime(2026, 3, 1, tzinfo=UTC)
    count = HeldCount("SKU-1", "STORE-1", "c-1", 5, at, 9, -4, 44.4, "drift", "", at,
                      state="damaged")
    adjustment = HeldAdjustment("adj-1", "SKU-1", "STORE-1", 50, "returned", None, None, 10,
                                500.0, "units", at)
    for hold in (count, adjustment):
        record = hold_record(hold, datetime.isoformat)
        assert hold_of_record(record, datetime.fromisoformat) == hold
        older = {k: v for k, v in record.items() if k != "state"}
        assert hold_of_record(older, datetime.fromisoformat).state == "sellable"
