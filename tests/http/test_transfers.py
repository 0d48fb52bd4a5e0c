"""The transfer functions, called with real ``func.HttpRequest`` objects through the
objects ``function_app.app`` registered, against real SQLite stores (the embedded root's
``processes.db`` beside ``events.db``): every route and refusal of the transfer contract,
repeats that record nothing, bad input that records nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from composition import Services
from domain.transfer import transfer_uuid
from tests.http.conftest import FUNCTIONS, Answer, call

DC, STORE = "DC-1", "STORE-1"
BODY = {"sku": "SKU-T", "from_location": DC, "to_location": STORE, "quantity": 10}


def receive(location: str, quantity: int, sku: str = "SKU-T") -> None:
    assert call("receive_stock", "POST", {"sku": sku, "location": location},
                {"quantity": quantity}).status == 200


def position(location: str, sku: str = "SKU-T") -> dict[str, Any]:
    answer = call("get_position", "GET", {"sku": sku, "location": location})
    assert answer.status == 200
    return dict(answer.body)


def put(transfer_id: str, body: dict[str, Any]) -> Answer:
    return call("request_transfer", "PUT", {"transfer_id": transfer_id}, body)


def act(name: str, transfer_id: str, body: dict[str, Any] | None = None) -> Answer:
    method = {"cancel_transfer": "DELETE", "get_transfer": "GET"}.get(name, "POST")
    return call(name, method, {"transfer_id": transfer_id}, body)


def transfer_events(container: Services, transfer_id: str) -> list[str]:
    assert container.transfers is not None
    app = container.transfers.transfers.app  # type: ignore[attr-defined]
    return [type(e).__name__ for e in app.events.get(transfer_uuid(transfer_id))]


def versions() -> tuple[int, int]:
    return position(DC)["version"], position(STORE)["version"]


@pytest.fixture
def stocked(container: Services) -> Services:
    receive(DC, 30)
    return container


# ------------------------------------------------------------------- request


def test_a_request_is_201_requested_the_same_again_200_and_records_nothing(
        stocked: Services):
    first = put("T-1", BODY)
    assert first.status == 201
    assert first.headers["Location"] == "/api/transfers/T-1"
    assert first.body == {"transfer_id": "T-1", "sku": "SKU-T", "from_location": DC,
                          "to_location": STORE, "quantity": 10, "shipped": 0,
                          "received": 0, "lost": 0, "in_transit": 0,
                          "status": "requested", "expected_at": None}
    events = transfer_events(stocked, "T-1")

    again = put("T-1", BODY)

    assert (again.status, again.body) == (200, first.body)
    assert transfer_events(stocked, "T-1") == events == ["Created", "Requested"]
    assert versions() == (2, 0)  # nothing moves at either location before shipment
    assert act("get_transfer", "T-1").body == first.body


def test_another_body_under_the_same_id_is_409_transfer_conflict_naming_the_status(
        stocked: Services):
    assert put("T-1", BODY).status == 201
    other = put("T-1", {**BODY, "quantity": 11})
    assert (other.status, other.problem_code) == (409, "transfer-conflict")
    assert other.body["transfer_status"] == "requested"
    assert transfer_events(stocked, "T-1") == ["Created", "Requested"]


@pytest.mark.parametrize("body, field", [
    ({**BODY, "to_location": DC}, "to_location"),
    ({**BODY, "quantity": 0}, "quantity"),
    ({**BODY, "quantity": "10"}, "quantity"),
    ({k: v for k, v in BODY.items() if k != "sku"}, "sku"),
    ({**BODY, "from_location": "no/slash"}, "from_location"),
    ({**BODY, "expected_at": "2026-12-04T10:00:00"}, "expected_at"),
    ({**BODY, "colour": "red"}, "colour"),
])
def test_bad_input_is_422_naming_the_field_and_records_nothing(
        stocked: Services, body: dict[str, Any], field: str):
    answer = put("T-1", body)
    assert answer.status == 422, answer.body
    assert field in {e["field"] for e in answer.body["errors"]}
    assert transfer_events(stocked, "T-1") == []
    assert act("get_transfer", "T-1").status == 404


def test_a_bad_transfer_id_is_422(stocked: Services):
    assert put("bad id", BODY).status == 422


@pytest.mark.parametrize("name", ["get_transfer", "ship_transfer", "close_transfer",
                                  "cancel_transfer"])
def test_an_unknown_transfer_is_404_unknown_transfer(stocked: Services, name: str):
    answer = act(name, "T-404")
    assert (answer.status, answer.problem_code) == (404, "unknown-transfer")
    assert answer.body["transfer_id"] == "T-404"


def test_a_receipt_of_an_unknown_transfer_is_404(stocked: Services):
    answer = act("receive_transfer", "T-404", {"quantity": 1})
    assert (answer.status, answer.problem_code) == (404, "unknown-transfer")


# ------------------------------------------------------------ the whole way


def test_ship_receive_part_close_conserves_units_and_repeats_record_nothing(
        stocked: Services):
    assert put("T-1", {**BODY, "expected_at": "2026-12-10T08:00:00+00:00"}).status == 201

    shipped = act("ship_transfer", "T-1")
    assert shipped.status == 200, shipped.body
    assert (shipped.body["status"], shipped.body["shipped"], shipped.body["in_transit"]
            ) == ("shipped", 10, 10)
    dc, store = position(DC), position(STORE)
    assert (dc["sellable"], dc["on_hand"], dc["available"]) == (20, 20, 20)
    assert store["incoming"] == [{"reference": "T-1", "quantity": 10,
                                  "expected_at": "2026-12-10T08:00:00Z"}]
    assert (store["incoming_total"], store["on_hand"]) == (10, 0)
    before = (versions(), transfer_events(stocked, "T-1"))
    assert act("ship_transfer", "T-1").body == shipped.body
    assert (versions(), transfer_events(stocked, "T-1")) == before

    received = act("receive_transfer", "T-1", {"quantity": 7})
    assert received.status == 200, received.body
    assert (received.body["status"], received.body["received"], received.body["in_transit"]
            ) == ("received", 7, 3)
    store = position(STORE)
    assert (store["sellable"], store["incoming"], store["incoming_total"]) == (7, [], 0)
    before = (versions(), transfer_events(stocked, "T-1"))
    assert act("receive_transfer", "T-1", {"quantity": 7}).body == received.body
    assert (versions(), transfer_events(stocked, "T-1")) == before
    other = act("receive_transfer", "T-1", {"quantity": 6})
    assert (other.status, other.problem_code) == (409, "transfer-conflict")

    closed = act("close_transfer", "T-1")
    assert closed.status == 200, closed.body
    body = closed.body
    assert (body["status"], body["shipped"], body["received"], body["lost"],
            body["in_transit"]) == ("closed", 10, 7, 3, 0)
    assert body["shipped"] == body["received"] + body["lost"] + body["in_transit"]
    assert position(DC)["on_hand"] + position(STORE)["on_hand"] + body["lost"] == 30
    before = (versions(), transfer_events(stocked, "T-1"))
    assert act("close_transfer", "T-1").body == closed.body
    assert act("receive_transfer", "T-1", {"quantity": 7}).status == 200
    assert (versions(), transfer_events(stocked, "T-1")) == before
    assert transfer_events(stocked, "T-1") == [
        "Created", "Requested", "ShipmentRequested", "ShipmentTaken", "IncomingAdded",
        "ReceiptRequested", "ReceiptAdded", "CloseRequested", "LossRecorded"]


def test_a_transfer_without_expected_at_is_expected_at_its_shipment_time(
        stocked: Services):
    assert put("T-1", BODY).status == 201
    shipped = act("ship_transfer", "T-1")
    entry = position(STORE)["incoming"][0]
    assert entry["reference"] == "T-1"
    assert shipped.body["expected_at"] is not None
    assert entry["expected_at"].replace("Z", "") == shipped.body["expected_at"].replace(
        "Z", "")


def test_units_in_transit_are_promised_at_the_destination_from_their_expected_day(
        stocked: Services):
    due = datetime.now(UTC) + timedelta(days=3)
    put("T-1", {**BODY, "expected_at": due.isoformat()})
    act("ship_transfer", "T-1")
    answer = call("get_available_to_promise", "GET", {"sku": "SKU-T", "location": STORE},
                  params={"days": "5"})
    assert answer.status == 200
    promised = [d["available_to_promise"] for d in answer.body["days"]]
    assert promised == [0, 0, 0, 10, 10]


def test_close_without_receipt_records_everything_lost_and_closes_the_incoming_entry(
        stocked: Services):
    put("T-1", BODY)
    act("ship_transfer", "T-1")
    closed = act("close_transfer", "T-1")
    assert (closed.body["lost"], closed.body["received"], closed.body["status"]) == (
        10, 0, "closed")
    assert position(STORE)["incoming"] == []
    late = act("receive_transfer", "T-1", {"quantity": 10})
    assert (late.status, late.problem_code) == (409, "transfer-status-conflict")
    assert late.body["transfer_status"] == "closed"


# ------------------------------------------------------------------ refusals


def test_a_shipment_the_source_cannot_spare_is_409_insufficient_stock_and_takes_nothing(
        stocked: Services):
    assert call("reserve_stock", "PUT", {"sku": "SKU-T", "location": DC, "order_id": "O-1"},
                {"quantity": 25, "channel": "web"}).status == 201
    put("T-1", BODY)

    refused = act("ship_transfer", "T-1")

    assert (refused.status, refused.problem_code) == (409, "insufficient-stock")
    assert refused.body["available"] == 5
    dc = position(DC)
    assert (dc["sellable"], dc["reserved"]) == (30, 25)
    assert position(STORE)["incoming"] == []
    assert act("get_transfer", "T-1").body["status"] == "requested"
    assert transfer_events(stocked, "T-1")[-1] == "ShipmentRefused"

    call("release_reservation", "DELETE", {"sku": "SKU-T", "location": DC, "order_id": "O-1"})
    assert act("ship_transfer", "T-1").body["status"] == "shipped"


def test_cancel_before_shipment_then_repeat_then_shipment_is_409_naming_cancelled(
        stocked: Services):
    put("T-1", BODY)
    cancelled = act("cancel_transfer", "T-1")
    assert (cancelled.status, cancelled.body["status"]) == (200, "cancelled")
    events = transfer_events(stocked, "T-1")
    assert act("cancel_transfer", "T-1").body == cancelled.body
    assert transfer_events(stocked, "T-1") == events
    ship = act("ship_transfer", "T-1")
    assert (ship.status, ship.problem_code, ship.body["transfer_status"]) == (
        409, "transfer-status-conflict", "cancelled")
    assert position(DC)["sellable"] == 30


def test_cancel_after_shipment_is_409_naming_shipped(stocked: Services):
    put("T-1", BODY)
    act("ship_transfer", "T-1")
    answer = act("cancel_transfer", "T-1")
    assert (answer.status, answer.problem_code, answer.body["transfer_status"]) == (
        409, "transfer-status-conflict", "shipped")


def test_receipt_and_close_before_shipment_are_409_naming_requested(stocked: Services):
    put("T-1", BODY)
    for answer in (act("receive_transfer", "T-1", {"quantity": 1}),
                   act("close_transfer", "T-1")):
        assert (answer.status, answer.problem_code, answer.body["transfer_status"]) == (
            409, "transfer-status-conflict", "requested")
    assert transfer_events(stocked, "T-1") == ["Created", "Requested"]


@pytest.mark.parametrize("body", [{"quantity": 11}, {"quantity": 0}, {}, {"quantity": 1.5}])
def test_a_bad_receipt_is_422_and_records_nothing(stocked: Services, body: dict[str, Any]):
    put("T-1", BODY)
    act("ship_transfer", "T-1")
    before = (versions(), transfer_events(stocked, "T-1"))
    answer = act("receive_transfer", "T-1", body)
    assert answer.status == 422, answer.body
    assert (versions(), transfer_events(stocked, "T-1")) == before


def test_a_client_may_not_set_the_incoming_entry_of_a_transfer(stocked: Services):
    put("T-1", BODY)
    act("ship_transfer", "T-1")
    answer = call("set_incoming", "PUT", {"sku": "SKU-T", "location": STORE,
                                          "reference": "T-1"},
                  {"quantity": 0, "expected_at": "2026-12-10T08:00:00+00:00"})
    assert (answer.status, answer.problem_code) == (409, "incoming-conflict")
    assert position(STORE)["incoming_total"] == 10


def test_the_reference_of_a_requested_transfer_is_the_transfers_before_shipment_too(
        stocked: Services):
    put("T-1", BODY)
    entry = {"quantity": 5, "expected_at": "2026-12-10T08:00:00+00:00"}
    taken = call("set_incoming", "PUT", {"sku": "SKU-T", "location": STORE,
                                         "reference": "T-1"}, entry)
    assert (taken.status, taken.problem_code) == (409, "incoming-conflict")
    assert position(STORE)["version"] == 0
    # The same reference elsewhere (another SKU, the source) is a client's to use.
    assert call("set_incoming", "PUT", {"sku": "SKU-T", "location": DC,
                                        "reference": "T-1"}, entry).status == 200
    assert call("set_incoming", "PUT", {"sku": "SKU-U", "location": STORE,
                                        "reference": "T-1"}, entry).status == 200
    assert act("ship_transfer", "T-1").body["status"] == "shipped"


def test_a_transfer_whose_id_is_a_clients_open_entry_at_the_destination_is_409(
        stocked: Services):
    entry = {"quantity": 5, "expected_at": "2026-12-10T08:00:00+00:00"}
    assert call("set_incoming", "PUT", {"sku": "SKU-T", "location": STORE,
                                        "reference": "PO-9"}, entry).status == 200
    answer = put("PO-9", BODY)
    assert (answer.status, answer.problem_code) == (409, "incoming-conflict")
    assert transfer_events(stocked, "PO-9") == []


# ------------------------------------------------------ hosts and the sweep


def test_the_sweep_timer_runs_the_transfer_sweep(stocked: Services,
                                                 caplog: pytest.LogCaptureFixture):
    put("T-1", BODY)
    with caplog.at_level(logging.INFO):
        FUNCTIONS["sweep_transfers"].get_user_function()(TimerRequest(past_due=False))
    assert "transfer sweep drove 0 transfers" in caplog.text


def test_every_transfer_answer_carries_its_stream_version_as_etag_and_a_get_answers_304(
        container: Services):
    receive(DC, 10)
    requested = put("T-ETAG", BODY)
    assert requested.status == 201
    tag = requested.headers["ETag"]
    assert tag == f'"{len(transfer_events(container, "T-ETAG"))}"'
    assert act("get_transfer", "T-ETAG").headers["ETag"] == tag
    assert call("get_transfer", "GET", {"transfer_id": "T-ETAG"},
                headers={"If-None-Match": tag}).status == 304
    shipped = act("ship_transfer", "T-ETAG")
    assert shipped.status == 200
    assert shipped.headers["ETag"] == f'"{len(transfer_events(container, "T-ETAG"))}"' != tag
    assert call("get_transfer", "GET", {"transfer_id": "T-ETAG"},
                headers={"If-None-Match": tag}).status == 200
