"""Every HTTP function, called with real ``func.HttpRequest`` objects through the objects
``function_app.app`` registered, against a real SQLite event store."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from application.commands import RetryPolicy
from application.ports import (
    AvailabilityReader,
    ConcurrencyConflict,
    DeadLetterReplayer,
    OpsStatusReader,
    StoreUnavailable,
)
from application.views import (
    Availability,
    LocationAvailability,
    OpsStatus,
    OutboxStatus,
    ProjectionStatus,
    SubscriptionStatus,
    Unmeasured,
)
from composition import Services
from functions.container import use_services
from functions.http_openapi import DOCUMENT_PATH, render
from tests.http.conftest import FUNCTIONS, SKU, call, order
from tests.invoke import invoke

# ------------------------------------------------------------------- bindings

EXPECTED_BINDINGS = {
    # name: (route, methods, auth level)
    "get_position": ("stock/{sku}/{location}", ["GET", "HEAD"], "FUNCTION"),
    "list_events": ("stock/{sku}/{location}/events", ["GET", "HEAD"], "FUNCTION"),
    "receive_stock": ("stock/{sku}/{location}/receipts", ["POST"], "FUNCTION"),
    "adjust_stock": ("stock/{sku}/{location}/adjustments", ["POST"], "FUNCTION"),
    "set_policy": ("stock/{sku}/{location}/policy", ["PUT"], "FUNCTION"),
    "reserve_stock": ("stock/{sku}/{location}/reservations/{order_id}", ["PUT"], "FUNCTION"),
    "release_reservation": ("stock/{sku}/{location}/reservations/{order_id}", ["DELETE"],
                            "FUNCTION"),
    "fulfil_reservation": ("stock/{sku}/{location}/reservations/{order_id}/fulfilment",
                           ["POST"], "FUNCTION"),
    "record_count": ("stock/{sku}/{location}/counts", ["POST"], "FUNCTION"),
    "move_stock_state": ("stock/{sku}/{location}/state-moves", ["POST"], "FUNCTION"),
    "set_incoming": ("stock/{sku}/{location}/incoming/{reference}", ["PUT"], "FUNCTION"),
    "submit_batch": ("stock/batch", ["POST"], "FUNCTION"),
    "get_available_to_promise": ("stock/{sku}/{location}/atp", ["GET", "HEAD"], "FUNCTION"),
    "get_availability": ("availability/{sku}", ["GET", "HEAD"], "FUNCTION"),
    "place_order": ("orders/{order_id}/reservation", ["PUT"], "FUNCTION"),
    "get_order": ("orders/{order_id}/reservation", ["GET", "HEAD"], "FUNCTION"),
    "release_order": ("orders/{order_id}/reservation", ["DELETE"], "FUNCTION"),
    "fulfil_order": ("orders/{order_id}/fulfilment", ["POST"], "FUNCTION"),
    "define_location_group": ("location-groups/{group}", ["PUT"], "FUNCTION"),
    "get_location_group": ("location-groups/{group}", ["GET", "HEAD"], "FUNCTION"),
    "request_transfer": ("transfers/{transfer_id}", ["PUT"], "FUNCTION"),
    "get_transfer": ("transfers/{transfer_id}", ["GET", "HEAD"], "FUNCTION"),
    "cancel_transfer": ("transfers/{transfer_id}", ["DELETE"], "FUNCTION"),
    "ship_transfer": ("transfers/{transfer_id}/shipment", ["POST"], "FUNCTION"),
    "receive_transfer": ("transfers/{transfer_id}/receipt", ["POST"], "FUNCTION"),
    "close_transfer": ("transfers/{transfer_id}/close", ["POST"], "FUNCTION"),
    "get_ops_status": ("ops/status", ["GET", "HEAD"], "FUNCTION"),
    "get_ops_metrics": ("ops/metrics", ["GET", "HEAD"], "FUNCTION"),
    "replay_dead_letters": ("ops/deadletters/{subscription}/replay", ["POST"], "ADMIN"),
    "reconcile_counts": ("reconciliation/counts", ["POST"], "FUNCTION"),
    "list_due_counts": ("reconciliation/due", ["GET", "HEAD"], "FUNCTION"),
    "list_held_counts": ("reconciliation/held", ["GET", "HEAD"], "FUNCTION"),
    "approve_held_counts": ("reconciliation/held/{hold_id}/approval", ["POST"], "ADMIN"),
    "dismiss_held_counts": ("reconciliation/held/{hold_id}/dismissal", ["POST"], "ADMIN"),
    "get_openapi": ("openapi.json", ["GET", "HEAD"], "ANONYMOUS"),
    "list_drift_reports": ("reports/drift", ["GET", "HEAD"], "FUNCTION"),
    "get_drift_chart": ("reports/drift/charts/{chart}", ["GET", "HEAD"], "FUNCTION"),
    "console": ("console/{*path}", ["GET", "HEAD"], "ANONYMOUS"),  # not in openapi.json
    "unmatched_route": ("{*path}", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                        "FUNCTION"),
}


def test_every_route_of_the_contract_is_an_http_trigger_with_its_methods_and_auth_level():
    assert set(EXPECTED_BINDINGS) <= set(FUNCTIONS)
    for name, (route, methods, auth) in EXPECTED_BINDINGS.items():
        bindings = [json.loads(b) for b in FUNCTIONS[name].get_raw_bindings()]
        trigger = next(b for b in bindings if b["type"] == "httpTrigger")
        assert trigger == {"direction": "IN", "type": "httpTrigger", "name": "req",
                           "methods": methods, "authLevel": auth, "route": route}, name
        assert {"direction": "OUT", "type": "http", "name": "$return"} in bindings


def test_the_app_requires_function_keys_by_default():
    from function_app import app

    assert app.auth_level == func.AuthLevel.FUNCTION


# ------------------------------------------------------------------ positions


def test_an_unknown_stock_item_is_all_zeros_at_version_0_with_an_etag(container: Services):
    answer = call("get_position", "GET", SKU)
    assert answer.status == 200
    assert answer.body == {"sku": "SKU-1", "location": "STORE-1", "on_hand": 0, "reserved": 0,
                           "safety_stock": 0, "oversell_buffer": 0, "available": 0,
                           "version": 0, "reservations": [], "open_reservations": 0,
                           "sellable": 0, "held": {"damaged": 0, "quality_control": 0},
                           "incoming": [], "incoming_total": 0}
    assert answer.headers["ETag"] == '"0"'


def test_get_position_answers_304_when_the_etag_still_matches(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    etag = call("get_position", "GET", SKU).headers["ETag"]
    assert etag == '"2"'
    assert call("get_position", "GET", SKU, headers={"If-None-Match": etag}).status == 304
    call("receive_stock", "POST", SKU, {"quantity": 1})
    assert call("get_position", "GET", SKU, headers={"If-None-Match": etag}).status == 200


def test_an_invalid_sku_is_a_422_naming_the_field(container: Services):
    answer = call("get_position", "GET", {"sku": "no spaces", "location": "STORE-1"})
    assert answer.status == 422
    assert answer.problem_code == "invalid-identifier"
    assert answer.body["errors"][0]["field"] == "sku"


def test_events_are_cloudevents_oldest_first_after_a_version(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5, "reference": "ASN-1"})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 2, "channel": "web"})
    everything = call("list_events", "GET", SKU).body
    assert [e["type"] for e in everything] == [
        "Stockstream.StockItemCreated.v1", "Stockstream.StockReceived.v1",
        "Stockstream.StockReserved.v1"]
    assert [e["id"] for e in everything] == ["SKU-1|STORE-1:1", "SKU-1|STORE-1:2",
                                             "SKU-1|STORE-1:3"]
    later = call("list_events", "GET", SKU, params={"after": "2"}).body
    assert [e["sequence"] for e in later] == [3]
    assert later[0]["data"]["order_id"] == "o-1"


@pytest.mark.parametrize("after", ["-1", "x", "1.5"])
def test_a_bad_after_is_a_422(container: Services, after: str):
    answer = call("list_events", "GET", SKU, params={"after": after})
    assert answer.status == 422
    assert answer.body["errors"][0]["field"] == "after"


# ------------------------------------------------------------------- receipts


def test_a_receipt_answers_the_new_position(container: Services):
    answer = call("receive_stock", "POST", SKU, {"quantity": 7})
    assert answer.status == 200
    assert (answer.body["on_hand"], answer.body["available"], answer.body["version"]) == (7, 7, 2)


def test_an_idempotency_key_makes_a_receipt_count_once_and_refuses_another_body(
        container: Services):
    key = {"Idempotency-Key": "rcpt-1"}
    first = call("receive_stock", "POST", SKU, {"quantity": 7}, headers=key)
    again = call("receive_stock", "POST", SKU, {"quantity": 7}, headers=key)
    assert first.body == again.body
    other = call("receive_stock", "POST", SKU, {"quantity": 8}, headers=key)
    assert other.status == 409
    assert other.problem_code == "idempotency-key-reused"
    assert call("get_position", "GET", SKU).body["on_hand"] == 7


@pytest.mark.parametrize("body", [
    {"quantity": 1.5}, {"quantity": "3"}, {"quantity": True}, {"quantity": 0},
    {"quantity": 10**30}, {"quantity": 1, "quantiy": 2}, {}, [1], "x", None,
])
def test_a_bad_receipt_is_a_422_and_records_nothing(container: Services, body: Any):
    answer = call("receive_stock", "POST", SKU, raw=json.dumps(body).encode())
    assert answer.status == 422
    assert answer.problem_code == "validation-failed"
    assert answer.body["errors"]
    assert container.store.get("SKU-1", "STORE-1") is None


@pytest.mark.parametrize(("raw", "headers", "status", "code"), [
    (b'{"quantity": ', {}, 400, "malformed-json"),
    (b"\xff\xfe", {}, 400, "malformed-json"),
    (b"", {}, 400, "malformed-json"),
    (b'{"quantity": 1}', {"Content-Type": "text/plain"}, 415, "unsupported-media-type"),
    (b'{"quantity": 1}', {"Content-Type": ""}, 415, "unsupported-media-type"),
    (b'{"quantity": 1, "reference": "' + b"x" * 70_000 + b'"}', {}, 413, "payload-too-large"),
])
def test_malformed_bodies_are_refused_with_their_status(
        container: Services, raw: bytes, headers: dict[str, str], status: int, code: str):
    answer = call("receive_stock", "POST", SKU, raw=raw, headers=headers)
    assert (answer.status, answer.problem_code) == (status, code)
    assert container.store.get("SKU-1", "STORE-1") is None


def test_a_json_content_type_with_parameters_or_a_suffix_is_accepted(container: Services):
    for content_type in ("application/json; charset=utf-8", "application/merge+json"):
        answer = call("receive_stock", "POST", SKU, {"quantity": 1},
                      headers={"Content-Type": content_type})
        assert answer.status == 200, answer.body


# ---------------------------------------------------------------- adjustments


def test_an_adjustment_below_zero_is_a_409_and_a_valid_one_applies(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 3})
    refused = call("adjust_stock", "POST", SKU, {"delta": -4, "reason": "damaged"})
    assert (refused.status, refused.problem_code) == (409, "insufficient-on-hand")
    assert refused.body["on_hand"] == 3
    applied = call("adjust_stock", "POST", SKU, {"delta": -2, "reason": "damaged"},
                   headers={"Idempotency-Key": "adj-1"})
    assert applied.body["on_hand"] == 1
    assert call("adjust_stock", "POST", SKU, {"delta": -2, "reason": "damaged"},
                headers={"Idempotency-Key": "adj-1"}).body["on_hand"] == 1
    reused = call("adjust_stock", "POST", SKU, {"delta": -1, "reason": "damaged"},
                  headers={"Idempotency-Key": "adj-1"})
    assert (reused.status, reused.problem_code) == (409, "idempotency-key-reused")


def test_an_adjustment_may_carry_a_note(container: Services):
    answer = call("adjust_stock", "POST", SKU, {"delta": 2, "reason": "returned",
                                                "note": "customer return, box opened"})
    assert (answer.status, answer.body["on_hand"]) == (200, 2)
    too_long = call("adjust_stock", "POST", SKU, {"delta": 1, "reason": "found",
                                                  "note": "x" * 501})
    assert (too_long.status, too_long.body["errors"][0]["field"]) == (422, "note")


@pytest.mark.parametrize(("body", "field"), [
    ({"delta": 1, "reason": "stolen"}, "reason"),
    ({"delta": 0, "reason": "found"}, "delta"),
    ({"delta": 1}, "reason"),
])
def test_a_bad_adjustment_names_the_field(container: Services, body: Any, field: str):
    answer = call("adjust_stock", "POST", SKU, body)
    assert answer.status == 422
    assert [e["field"] for e in answer.body["errors"]] == [field]


def test_a_bad_idempotency_key_is_a_422(container: Services):
    answer = call("receive_stock", "POST", SKU, {"quantity": 1},
                  headers={"Idempotency-Key": "x" * 201})
    assert answer.status == 422
    assert answer.body["errors"][0]["field"] == "idempotency_key"


# --------------------------------------------------------------------- policy


def test_policy_sets_safety_stock_and_the_oversell_buffer(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 10})
    answer = call("set_policy", "PUT", SKU, {"safety_stock": 2, "oversell_buffer": 5})
    assert answer.status == 200
    assert (answer.body["safety_stock"], answer.body["oversell_buffer"],
            answer.body["available"]) == (2, 5, 8)
    assert call("set_policy", "PUT", SKU, {"safety_stock": -1, "oversell_buffer": 0}).status \
        == 422


# --------------------------------------------------------------- reservations


def test_a_new_reservation_is_201_and_the_same_again_is_200_with_one_event(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 10})
    body = {"quantity": 3, "channel": "web", "ttl_seconds": 600}
    first = call("reserve_stock", "PUT", order("o-1"), body)
    assert first.status == 201
    assert first.headers["Location"] == "/api/stock/SKU-1/STORE-1/reservations/o-1"
    [reservation] = first.body["reservations"]
    assert reservation["order_id"] == "o-1" and reservation["quantity"] == 3
    expires_at = datetime.fromisoformat(reservation["expires_at"])
    assert expires_at.utcoffset() == timedelta(0)
    again = call("reserve_stock", "PUT", order("o-1"), body)
    assert again.status == 200
    assert again.body["version"] == first.body["version"]
    updated = call("reserve_stock", "PUT", order("o-1"), {"quantity": 4, "channel": "web"})
    assert updated.status == 200 and updated.body["reserved"] == 4
    reserved_events = [e for e in call("list_events", "GET", SKU).body
                       if e["type"] == "Stockstream.StockReserved.v1"]
    assert len(reserved_events) == 2


def test_a_reservation_that_does_not_fit_is_a_409_insufficient_stock_with_available(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 4, "channel": "pos"})
    answer = call("reserve_stock", "PUT", order("o-2"), {"quantity": 2, "channel": "web"})
    assert (answer.status, answer.problem_code) == (409, "insufficient-stock")
    assert answer.body["type"] == "urn:stockstream:problems:insufficient-stock"
    assert (answer.body["available"], answer.body["reservable"]) == (1, 1)


def test_a_reservation_with_no_expiry_shows_null(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    answer = call("reserve_stock", "PUT", order("o-1"), {"quantity": 1, "channel": "pos"})
    assert answer.body["reservations"][0]["expires_at"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"quantity": 1}, "channel"),
    ({"quantity": 1, "channel": "w e b"}, "channel"),
    ({"quantity": 1, "channel": "web", "ttl_seconds": 0}, "ttl_seconds"),
    ({"quantity": 1, "channel": "web", "ttl_seconds": 1.0}, "ttl_seconds"),
    ({"quantity": -1, "channel": "web"}, "quantity"),
])
def test_a_bad_reservation_names_the_field(container: Services, body: Any, field: str):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    answer = call("reserve_stock", "PUT", order("o-1"), body)
    assert answer.status == 422
    assert field in [e["field"].split(".")[0] for e in answer.body["errors"]]
    assert call("get_position", "GET", SKU).body["version"] == 2


def test_releasing_twice_is_200_with_one_event_and_an_unknown_order_is_404(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 2, "channel": "web"})
    first = call("release_reservation", "DELETE", order("o-1"))
    again = call("release_reservation", "DELETE", order("o-1"))
    assert (first.status, again.status) == (200, 200)
    assert first.body == again.body and first.body["reserved"] == 0
    unknown = call("release_reservation", "DELETE", order("never"))
    assert (unknown.status, unknown.problem_code) == (404, "unknown-reservation")


def test_fulfilling_twice_is_200_with_one_event_and_a_released_one_is_409(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 2, "channel": "web"})
    first = call("fulfil_reservation", "POST", order("o-1"))
    again = call("fulfil_reservation", "POST", order("o-1"), {})
    assert (first.status, again.status) == (200, 200)
    assert first.body == again.body and first.body["on_hand"] == 3
    call("reserve_stock", "PUT", order("o-2"), {"quantity": 1, "channel": "web"})
    call("release_reservation", "DELETE", order("o-2"))
    closed = call("fulfil_reservation", "POST", order("o-2"))
    assert (closed.status, closed.problem_code) == (409, "reservation-closed")
    assert call("fulfil_reservation", "POST", order("o-9")).status == 404


def test_cancelling_a_fulfilled_reservation_is_409_with_its_outcome_and_records_nothing(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 2, "channel": "web"})
    call("fulfil_reservation", "POST", order("o-1"))
    before = call("list_events", "GET", SKU).body

    cancelled = call("release_reservation", "DELETE", order("o-1"))

    assert (cancelled.status, cancelled.problem_code) == (409, "reservation-closed")
    assert cancelled.body["outcome"] == "fulfilled"
    assert call("list_events", "GET", SKU).body == before


def test_a_fulfilment_repeated_with_another_quantity_is_409_and_an_equal_one_a_repeat(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 3, "channel": "web"})
    first = call("fulfil_reservation", "POST", order("o-1"), {"quantity": 2})
    same = call("fulfil_reservation", "POST", order("o-1"), {"quantity": 2})
    other = call("fulfil_reservation", "POST", order("o-1"), {"quantity": 3})

    assert (first.status, same.status) == (200, 200) and same.body == first.body
    assert (other.status, other.problem_code) == (409, "fulfilment-conflict")
    assert (other.body["fulfilled"], other.body["requested"]) == (2, 3)
    assert call("get_position", "GET", SKU).body["on_hand"] == 3


@pytest.mark.parametrize("counted_at", [
    "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-14:00", "2025-01-01T08:00:00Z",
])
def test_a_count_outside_its_window_is_422_and_records_nothing(
        container: Services, counted_at: str):
    call("receive_stock", "POST", SKU, {"quantity": 40})
    answer = call("record_count", "POST", SKU,
                  {"count_id": "wrong-year", "counted": 40, "counted_at": counted_at})
    assert answer.status == 422, answer.body
    assert answer.body["errors"][0]["field"] == "counted_at"
    assert call("get_position", "GET", SKU).body["on_hand"] == 40


def test_two_counts_of_one_moment_leave_on_hand_at_the_counted_figure(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 100})
    counted_at = datetime.now(UTC).isoformat()
    for device in ("aisle3-dev1", "aisle3-dev2"):
        answer = call("record_count", "POST", SKU,
                      {"count_id": device, "counted": 90, "counted_at": counted_at})
        assert answer.status == 200
    assert call("get_position", "GET", SKU).body["on_hand"] == 90


def test_a_partial_fulfilment_ships_the_quantity_given(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    call("reserve_stock", "PUT", order("o-1"), {"quantity": 3, "channel": "web"})
    answer = call("fulfil_reservation", "POST", order("o-1"), {"quantity": 2})
    assert (answer.body["on_hand"], answer.body["reserved"]) == (3, 0)
    too_many = call("fulfil_reservation", "POST", order("o-3"), {"quantity": "2"})
    assert too_many.status == 422


# --------------------------------------------------------------------- counts


def test_a_count_answers_the_position_and_its_correction_then_notes_a_repeat(
        container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 5})
    counted_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    body = {"count_id": "cc-1", "counted": 3, "counted_at": counted_at}
    first = call("record_count", "POST", SKU, body)
    assert first.status == 200
    assert first.body["already_recorded"] is False
    assert first.body["position"]["on_hand"] == 3
    correction = first.body["correction"]
    assert (correction["previous_on_hand"], correction["delta"], correction["counted"]) == \
        (5, -2, 3)
    again = call("record_count", "POST", SKU, body)
    assert again.status == 200
    assert again.body == {**first.body, "correction": None, "already_recorded": True}
    other = call("record_count", "POST", SKU, {**body, "counted": 4})
    assert (other.status, other.problem_code) == (409, "count-already-recorded")


@pytest.mark.parametrize(("counted_at", "field"), [
    ("2026-01-01T10:00:00", "counted_at"),        # no time zone
    ("yesterday", "counted_at"),
    (None, "counted_at"),
])
def test_a_count_needs_a_zoned_counted_at(container: Services, counted_at: Any, field: str):
    body = {"count_id": "cc-1", "counted": 3}
    if counted_at is not None:
        body["counted_at"] = counted_at
    answer = call("record_count", "POST", SKU, body)
    assert answer.status == 422
    assert answer.body["errors"][0]["field"] == field


def test_a_count_in_the_future_is_a_422(container: Services):
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    answer = call("record_count", "POST", SKU,
                  {"count_id": "cc-1", "counted": 3, "counted_at": future})
    assert answer.status == 422
    assert answer.body["errors"][0]["field"] == "counted_at"


# ------------------------------------------------------ projections and ops


def test_without_the_pipeline_availability_ops_and_replay_are_503_not_a_crash(
        container: Services):
    for name, method, params in [("get_availability", "GET", {"sku": "SKU-1"}),
                                 ("get_ops_status", "GET", {}),
                                 ("replay_dead_letters", "POST", {"subscription": "sub"})]:
        answer = call(name, method, params)
        assert (answer.status, answer.problem_code) == (503, "pipeline-not-running"), name
        assert answer.headers["Retry-After"] == "1"


class _Availability(AvailabilityReader):
    def for_sku(self, sku: str) -> Availability:
        row = LocationAvailability("STORE-1", 5, 2, 3, 7, datetime(2026, 1, 1, tzinfo=UTC),
                                   damaged=1, quality_control=0, incoming_total=6,
                                   in_transit=4)
        return Availability.of(sku, [row])


class _Ops(OpsStatusReader):
    def status(self) -> OpsStatus:
        return OpsStatus(OutboxStatus(2, 1.5), [SubscriptionStatus("availability", 1, 0, 0.2)],
                         [ProjectionStatus("availability", 41, None)],
                         [Unmeasured("projections[availability].lag_seconds", "none applied")])


class _Replay(DeadLetterReplayer):
    def replay(self, subscription: str, max_messages: int | None = None) -> int:
        if subscription != "availability":
            raise KeyError(subscription)
        return max_messages or 0


def test_availability_ops_and_replay_shape_what_the_pipeline_readers_return(
        container: Services):
    use_services(dataclasses.replace(container, availability=_Availability(), ops=_Ops(),
                                     replay=_Replay()))
    availability = call("get_availability", "GET", {"sku": "SKU-1"})
    states = {"sellable": 4, "held": {"damaged": 1, "quality_control": 0},
              "incoming_total": 6, "in_transit": 4}
    assert availability.body == {
        "sku": "SKU-1", "on_hand": 5, "reserved": 2, "available": 3, **states,
        "locations": [{"location": "STORE-1", "on_hand": 5, "reserved": 2, "available": 3,
                       "version": 7, "updated_at": "2026-01-01T00:00:00Z", **states}]}
    assert call("get_ops_status", "GET").body == {
        "outbox": {"depth": 2, "oldest_age_seconds": 1.5},
        "subscriptions": [{"name": "availability", "active": 1, "dead_lettered": 0,
                           "lag_seconds": 0.2}],
        "projections": [{"name": "availability", "position": 41, "lag_seconds": None}],
        "unmeasured": [{"field": "projections[availability].lag_seconds",
                        "reason": "none applied"}]}
    replay = call("replay_dead_letters", "POST", {"subscription": "availability"},
                  {"max_messages": 3})
    assert replay.body == {"replayed": 3}
    unknown = call("replay_dead_letters", "POST", {"subscription": "nope"})
    assert (unknown.status, unknown.problem_code) == (404, "unknown-subscription")
    bad = call("replay_dead_letters", "POST", {"subscription": "availability"},
               {"max_messages": 0})
    assert bad.status == 422


# --------------------------------------------------------- failures and routes


@pytest.mark.parametrize("error", [StoreUnavailable("disk full"), ConcurrencyConflict("busy")])
def test_a_store_that_cannot_take_the_write_is_a_503_with_retry_after(
        container: Services, monkeypatch: pytest.MonkeyPatch, error: Exception):
    def refuse(item: Any) -> Any:
        raise error

    monkeypatch.setattr(container.store, "save", refuse)
    monkeypatch.setattr(container.commands, "retry", RetryPolicy(attempts=2, base_delay=0))
    answer = call("receive_stock", "POST", SKU, {"quantity": 1})
    assert (answer.status, answer.problem_code) == (503, "store-unavailable")
    assert answer.headers["Retry-After"] == "1"


def test_an_unexpected_failure_is_a_500_problem_not_a_traceback(
        container: Services, monkeypatch: pytest.MonkeyPatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(container.queries, "position", broken)
    answer = call("get_position", "GET", SKU)
    assert (answer.status, answer.problem_code) == (500, "internal-error")
    assert "bug" not in json.dumps(answer.body)


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "nothing/here", 404, "not-found"),
    ("PATCH", "stock/A/B", 405, "method-not-allowed"),
    ("GET", "stock/A/B/reservations/o-1", 405, "method-not-allowed"),
    ("DELETE", "openapi.json", 405, "method-not-allowed"),
])
def test_the_catch_all_answers_404_or_405(method: str, path: str, status: int, code: str):
    answer = call("unmatched_route", method, {"path": path})
    assert (answer.status, answer.problem_code) == (status, code)
    if status == 405:
        assert answer.headers["Allow"]


def test_the_405_names_the_allowed_methods():
    answer = call("unmatched_route", "GET", {"path": "stock/A/B/reservations/o-1"})
    assert answer.headers["Allow"] == "DELETE, PUT"


def test_the_openapi_route_serves_the_committed_document_which_is_current():
    answer = call("get_openapi", "GET")
    assert answer.status == 200
    committed = DOCUMENT_PATH.read_text(encoding="utf-8")
    assert committed == render(), "openapi.json is stale: run python -m functions.http_openapi"
    assert answer.body == json.loads(committed)
    assert answer.body["openapi"] == "3.1.0"


def test_the_openapi_document_lists_every_route_but_the_catch_all_and_the_console():
    document = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    expected = {(f"/api/{route}", method.lower())
                for name, (route, methods, _) in EXPECTED_BINDINGS.items()
                if name not in ("unmatched_route", "console")
                for method in methods if method != "HEAD"}
    assert operations == expected
    reserve = document["paths"]["/api/stock/{sku}/{location}/reservations/{order_id}"]["put"]
    assert set(reserve["responses"]) >= {"200", "201", "400", "409", "413", "415", "422"}
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []


def test_a_commands_answer_lists_only_the_reservation_it_concerns(container: Services):
    call("receive_stock", "POST", SKU, {"quantity": 10})
    for order_id in ("order-1", "order-2"):
        call("reserve_stock", "PUT", {**SKU, "order_id": order_id},
             {"quantity": 1, "channel": "web"})
    third = call("reserve_stock", "PUT", {**SKU, "order_id": "order-3"},
                 {"quantity": 2, "channel": "pos"})
    assert [r["order_id"] for r in third.body["reservations"]] == ["order-3"]
    assert (third.body["open_reservations"], third.body["reserved"]) == (3, 4)
    receipt = call("receive_stock", "POST", SKU, {"quantity": 1})
    assert (receipt.body["reservations"], receipt.body["open_reservations"]) == ([], 3)
    released = call("release_reservation", "DELETE", {**SKU, "order_id": "order-1"})
    assert (released.body["reservations"], released.body["open_reservations"]) == ([], 2)
    everything = call("get_position", "GET", SKU)
    assert [r["order_id"] for r in everything.body["reservations"]] == ["order-2", "order-3"]


def test_a_function_key_in_the_url_never_reaches_the_log_on_azure(
        container: Services, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("disk full")

    # the route awaits its plan's run
    monkeypatch.setattr(container.commands, "run_async", unavailable)
    request = func.HttpRequest(
        method="POST", body=json.dumps({"quantity": 1}).encode(),
        url="https://stockstream.example/api/stock/SKU-1/STORE-1/receipts?code=s3cret&x=1",
        headers={"Content-Type": "application/json"}, route_params=SKU)
    answer = invoke(FUNCTIONS["receive_stock"].get_user_function(), request)
    assert answer.status_code == 503
    assert "s3cret" not in caplog.text and "x=1" in caplog.text
