"""The order and location-group functions, called with real
``func.HttpRequest`` objects through the objects ``function_app.app`` registered, against
real SQLite stores (the embedded root's ``processes.db`` beside ``events.db``)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from application.views import Availability, LocationAvailability
from composition import Services
from domain.order import order_uuid
from functions.container import use_services
from tests.http.conftest import FUNCTIONS, call

A = {"sku": "SKU-A", "location": "S1"}
B = {"sku": "SKU-B", "location": "S2"}


def receive(sku: str, location: str, quantity: int) -> None:
    assert call("receive_stock", "POST", {"sku": sku, "location": location},
                {"quantity": quantity}).status == 200


def position(sku: str, location: str) -> dict[str, Any]:
    answer = call("get_position", "GET", {"sku": sku, "location": location})
    assert answer.status == 200
    return dict(answer.body)


def place(order_id: str, body: dict[str, Any]) -> Any:
    return call("place_order", "PUT", {"order_id": order_id}, body)


def cart(*lines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"channel": "web", "lines": list(lines), **extra}


def line(where: dict[str, str], quantity: int) -> dict[str, Any]:
    return {**where, "quantity": quantity}


def order_events(container: Services, order_id: str) -> int:
    assert container.orders is not None
    app = container.orders.orders.app  # type: ignore[attr-defined]
    return len(list(app.events.get(order_uuid(order_id))))


@pytest.fixture
def stocked(container: Services) -> Services:
    receive("SKU-A", "S1", 5)
    receive("SKU-B", "S2", 5)
    return container


# ------------------------------------------------------------------- placing


def test_an_order_across_two_sku_locations_is_201_then_the_same_again_200_no_events(
        stocked: Services):
    first = place("ORD-1", cart(line(A, 2), line(B, 3)))
    assert first.status == 201
    assert first.headers["Location"] == "/api/orders/ORD-1/reservation"
    assert first.body["status"] == "held"
    assert first.body["order_id"] == "ORD-1"
    assert first.body["mode"] == "all_or_nothing"
    assert [(ln["sku"], ln["location"], ln["quantity"], ln["held"])
            for ln in first.body["lines"]] == [("SKU-A", "S1", 2, 2), ("SKU-B", "S2", 3, 3)]
    assert position("SKU-A", "S1")["reservations"][0]["order_id"] == "ORD-1"
    events = order_events(stocked, "ORD-1")
    versions = (position("SKU-A", "S1")["version"], position("SKU-B", "S2")["version"])

    again = place("ORD-1", cart(line(A, 2), line(B, 3)))
    assert again.status == 200
    assert again.body == first.body
    assert order_events(stocked, "ORD-1") == events
    assert (position("SKU-A", "S1")["version"], position("SKU-B", "S2")["version"]) == versions

    got = call("get_order", "GET", {"order_id": "ORD-1"})
    assert (got.status, got.body) == (200, first.body)


def test_a_ttl_change_alone_moves_the_expiry_and_answers_200(stocked: Services):
    first = place("ORD-1", cart(line(A, 1), ttl_seconds=600))
    assert first.status == 201
    later = place("ORD-1", cart(line(A, 1), ttl_seconds=1200))
    assert later.status == 200
    assert later.body["expires_at"] > first.body["expires_at"]
    hold = position("SKU-A", "S1")["reservations"][0]
    assert datetime.fromisoformat(hold["expires_at"]) == datetime.fromisoformat(
        later.body["expires_at"])


def test_another_request_for_an_open_order_is_409_order_conflict(stocked: Services):
    assert place("ORD-1", cart(line(A, 1))).status == 201
    answer = place("ORD-1", cart(line(A, 2)))
    assert (answer.status, answer.problem_code) == (409, "order-conflict")


def test_all_or_nothing_short_is_409_naming_the_lines_and_holds_nothing(stocked: Services):
    answer = place("ORD-1", cart(line(A, 2), line(B, 9)))
    assert (answer.status, answer.problem_code) == (409, "insufficient-stock")
    assert answer.body["lines"] == [
        {"sku": "SKU-B", "location": "S2", "requested": 9, "available": 5}]
    assert position("SKU-A", "S1")["reserved"] == 0
    assert position("SKU-B", "S2")["reserved"] == 0
    failed = call("get_order", "GET", {"order_id": "ORD-1"})
    assert failed.body["status"] == "failed"
    # A failed order may be placed again; with the stock there it holds.
    receive("SKU-B", "S2", 4)
    again = place("ORD-1", cart(line(A, 2), line(B, 9)))
    assert (again.status, again.body["status"]) == (201, "held")


def test_lines_on_one_sku_location_are_summed_before_the_check(stocked: Services):
    answer = place("ORD-1", cart(line(A, 3), line(A, 3)))
    assert (answer.status, answer.problem_code) == (409, "insufficient-stock")
    assert position("SKU-A", "S1")["reserved"] == 0


def test_partial_holds_what_it_can_and_says_so_per_line(stocked: Services):
    answer = place("ORD-1", cart(line(A, 2), line(B, 9), mode="partial"))
    assert answer.status == 201
    assert answer.body["status"] == "partially_held"
    assert [ln["held"] for ln in answer.body["lines"]] == [2, 0]
    assert position("SKU-A", "S1")["reserved"] == 2
    none = place("ORD-2", cart(line(B, 9), mode="partial"))
    assert (none.status, none.problem_code) == (409, "insufficient-stock")


# ------------------------------------------------------- release and fulfilment


def test_release_is_idempotent_and_closes_the_order(stocked: Services):
    assert place("ORD-1", cart(line(A, 2), line(B, 1))).status == 201
    released = call("release_order", "DELETE", {"order_id": "ORD-1"})
    assert (released.status, released.body["status"]) == (200, "released")
    assert position("SKU-A", "S1")["reserved"] == 0
    events = order_events(stocked, "ORD-1")
    again = call("release_order", "DELETE", {"order_id": "ORD-1"})
    assert (again.status, again.body) == (200, released.body)
    assert order_events(stocked, "ORD-1") == events
    closed = place("ORD-1", cart(line(A, 2), line(B, 1)))
    assert (closed.status, closed.problem_code) == (409, "order-closed")
    assert closed.body["order_status"] == "released"
    shipped = call("fulfil_order", "POST", {"order_id": "ORD-1"})
    assert (shipped.status, shipped.problem_code) == (409, "order-closed")
    assert shipped.body["order_status"] == "released"


def test_fulfilment_is_idempotent_and_release_after_it_is_order_closed(stocked: Services):
    assert place("ORD-1", cart(line(A, 2), line(B, 1))).status == 201
    shipped = call("fulfil_order", "POST", {"order_id": "ORD-1"})
    assert (shipped.status, shipped.body["status"]) == (200, "fulfilled")
    assert position("SKU-A", "S1")["on_hand"] == 3
    events = order_events(stocked, "ORD-1")
    again = call("fulfil_order", "POST", {"order_id": "ORD-1"})
    assert (again.status, again.body) == (200, shipped.body)
    assert order_events(stocked, "ORD-1") == events
    closed = call("release_order", "DELETE", {"order_id": "ORD-1"})
    assert (closed.status, closed.problem_code) == (409, "order-closed")
    assert closed.body["order_status"] == "fulfilled"


def test_a_fulfilment_naming_some_lines_leaves_the_others_held(stocked: Services):
    assert place("ORD-1", cart(line(A, 2), line(B, 1))).status == 201
    shipped = call("fulfil_order", "POST", {"order_id": "ORD-1"},
                   {"lines": [line(A, 2)]})
    assert shipped.status == 200
    assert position("SKU-A", "S1")["on_hand"] == 3
    assert position("SKU-B", "S2")["reserved"] == 1


def test_unknown_orders_are_404(container: Services):
    for name, method in (("get_order", "GET"), ("release_order", "DELETE"),
                         ("fulfil_order", "POST")):
        answer = call(name, method, {"order_id": "NEVER"})
        assert (answer.status, answer.problem_code) == (404, "unknown-order"), name


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize("body", [
    cart(*[line({"sku": f"SKU-{n}", "location": "S1"}, 1) for n in range(101)]),
    cart(),
    cart(line({"sku": "no spaces", "location": "S1"}, 1)),
    cart(line(A, 0)),
    cart({"sku": "SKU-A", "quantity": 1}),
    cart({"sku": "SKU-A", "location": "S1", "location_group": "G1", "quantity": 1}),
    cart({"sku": "SKU-A", "location_group": "NO-SUCH-GROUP", "quantity": 1}),
    cart(line(A, 1), mode="sometimes"),
    {"lines": [line(A, 1)]},
    cart(line(A, 1), ttl_seconds=0),
])
def test_invalid_orders_are_422_and_record_nothing(stocked: Services, body: dict[str, Any]):
    answer = place("ORD-1", body)
    assert answer.status == 422, answer.body
    assert answer.problem_code in ("validation-failed", "invalid-request",
                                   "invalid-identifier", "invalid-quantity",
                                   "unknown-location-group")
    assert call("get_order", "GET", {"order_id": "ORD-1"}).status == 404
    assert position("SKU-A", "S1")["reserved"] == 0


def test_a_bad_order_id_is_422(container: Services):
    answer = call("get_order", "GET", {"order_id": "no spaces"})
    assert answer.status == 422


# --------------------------------------------------------------------- groups


def test_a_group_is_defined_read_and_unknown_ones_are_404(container: Services):
    defined = call("define_location_group", "PUT", {"group": "EAST"},
                   {"locations": ["S2", "S1"], "strategy": "priority"})
    assert (defined.status, defined.body) == (
        200, {"group": "EAST", "locations": ["S2", "S1"], "strategy": "priority"})
    assert call("get_location_group", "GET", {"group": "EAST"}).body == defined.body
    unknown = call("get_location_group", "GET", {"group": "WEST"})
    assert (unknown.status, unknown.problem_code) == (404, "unknown-location-group")


@pytest.mark.parametrize("body", [
    {"locations": [], "strategy": "priority"},
    {"locations": [f"S{n}" for n in range(51)], "strategy": "priority"},
    {"locations": ["S1"], "strategy": "nearest"},
    {"locations": ["S1", "S1"], "strategy": "priority"},
    {"locations": ["no spaces"], "strategy": "priority"},
])
def test_invalid_groups_are_422(container: Services, body: dict[str, Any]):
    answer = call("define_location_group", "PUT", {"group": "EAST"}, body)
    assert answer.status == 422, answer.body
    assert call("get_location_group", "GET", {"group": "EAST"}).status == 404


def test_a_group_line_is_sourced_by_priority_or_most_available(container: Services):
    receive("SKU-A", "S1", 2)
    receive("SKU-A", "S2", 9)
    receive("SKU-A", "S3", 5)
    call("define_location_group", "PUT", {"group": "PRIO"},
         {"locations": ["S1", "S3", "S2"], "strategy": "priority"})
    call("define_location_group", "PUT", {"group": "MOST"},
         {"locations": ["S1", "S3", "S2"], "strategy": "most_available"})
    prio = place("ORD-1", cart({"sku": "SKU-A", "location_group": "PRIO", "quantity": 3}))
    assert prio.status == 201
    assert prio.body["lines"][0]["location"] == "S3"  # S1 cannot hold the whole line
    assert prio.body["lines"][0]["location_group"] == "PRIO"
    most = place("ORD-2", cart({"sku": "SKU-A", "location_group": "MOST", "quantity": 1}))
    assert most.body["lines"][0]["location"] == "S2"


class _Availability:
    def for_sku(self, sku: str) -> Availability:
        moment = datetime(2026, 12, 1, tzinfo=UTC)
        return Availability.of(sku, [
            LocationAvailability("S1", 5, 1, 4, 3, moment),
            LocationAvailability("S2", 7, 0, 7, 2, moment),
            LocationAvailability("S3", 1, 0, 1, 1, moment)])


def test_availability_of_a_group_totals_its_locations_only(container: Services):
    use_services(dataclasses.replace(container, availability=_Availability()))
    call("define_location_group", "PUT", {"group": "EAST"},
         {"locations": ["S1", "S3"], "strategy": "priority"})
    everywhere = call("get_availability", "GET", {"sku": "SKU-A"})
    assert (everywhere.body["on_hand"], everywhere.body["available"]) == (13, 12)
    east = call("get_availability", "GET", {"sku": "SKU-A"},
                params={"location_group": "EAST"})
    assert east.status == 200
    assert (east.body["on_hand"], east.body["reserved"], east.body["available"]) == (6, 1, 5)
    assert [row["location"] for row in east.body["locations"]] == ["S1", "S3"]
    unknown = call("get_availability", "GET", {"sku": "SKU-A"},
                   params={"location_group": "WEST"})
    assert (unknown.status, unknown.problem_code) == (404, "unknown-location-group")
    bad = call("get_availability", "GET", {"sku": "SKU-A"},
               params={"location_group": "no spaces"})
    assert bad.status == 422


def test_the_sweep_timer_drives_due_orders(stocked: Services,
                                           caplog: pytest.LogCaptureFixture):
    assert place("ORD-1", cart(line(A, 1))).status == 201
    with caplog.at_level(logging.INFO):
        FUNCTIONS["sweep_orders"].get_user_function()(TimerRequest(past_due=False))
    assert "order sweep drove" in caplog.text


def test_every_order_answer_carries_its_stream_version_as_etag_and_a_get_answers_304(
        stocked: Services):
    placed = place("O-ETAG", cart(line(A, 1), line(B, 1)))
    assert placed.status == 201
    tag = placed.headers["ETag"]
    assert tag == f'"{order_events(stocked, "O-ETAG")}"'
    read = call("get_order", "GET", {"order_id": "O-ETAG"})
    assert read.status == 200 and read.headers["ETag"] == tag
    assert call("get_order", "GET", {"order_id": "O-ETAG"},
                headers={"If-None-Match": tag}).status == 304
    released = call("release_order", "DELETE", {"order_id": "O-ETAG"})
    assert released.status == 200 and released.headers["ETag"] != tag
    assert released.headers["ETag"] == f'"{order_events(stocked, "O-ETAG")}"'
    assert call("get_order", "GET", {"order_id": "O-ETAG"},
                headers={"If-None-Match": tag}).status == 200  # changed since
