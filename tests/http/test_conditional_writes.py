"""Conditional writes (docs/http-api.md, *Conditional writes*): every write to a stock
stream answers ``ETag: "<version>"``; ``If-Match`` makes it conditional on that version.

Called through the function objects the app registered, with real ``func.HttpRequest``
objects, against a real SQLite event store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from composition import Services
from tests.http.conftest import SKU, Answer, call, order


def version(container: Services) -> int:
    return container.queries.position(SKU["sku"], SKU["location"]).version


def receive(quantity: int = 10, **headers: str) -> Answer:
    return call("receive_stock", "POST", SKU, {"quantity": quantity}, headers=headers)


def reserve(order_id: str, quantity: int, **headers: str) -> Answer:
    return call("reserve_stock", "PUT", order(order_id),
                {"quantity": quantity, "channel": "web"}, headers=headers)


def now_text() -> str:
    return datetime.now(UTC).isoformat()


# Every write route to a stock stream, as (function, method, route params, body), each
# valid on a stream that has 10 units and the reservation of order-1.
WRITES: list[tuple[str, str, dict[str, str], Any]] = [
    ("receive_stock", "POST", SKU, {"quantity": 1}),
    ("adjust_stock", "POST", SKU, {"delta": -1, "reason": "damaged"}),
    ("set_policy", "PUT", SKU, {"safety_stock": 1, "oversell_buffer": 0}),
    ("reserve_stock", "PUT", order("order-2"), {"quantity": 1, "channel": "pos"}),
    ("release_reservation", "DELETE", order("order-1"), None),
    ("fulfil_reservation", "POST", order("order-1"), None),
    ("record_count", "POST", SKU, {"count_id": "c-1", "counted": 7, "counted_at": "NOW"}),
    ("move_stock_state", "POST", SKU, {"quantity": 1, "from": "sellable", "to": "damaged"}),
    ("set_incoming", "PUT", {**SKU, "reference": "PO-1"},
     {"quantity": 5, "expected_at": "2030-01-01T00:00:00+00:00"}),
]


def _body(body: Any) -> Any:
    if isinstance(body, dict) and body.get("counted_at") == "NOW":
        return {**body, "counted_at": now_text()}
    return body


@pytest.fixture
def stocked(container: Services) -> Services:
    assert receive(10).status == 200
    assert reserve("order-1", 2).status == 201
    return container


@pytest.mark.parametrize(("name", "method", "params", "body"), WRITES,
                         ids=[w[0] for w in WRITES])
def test_every_write_answers_the_version_after_it_as_its_etag(
        stocked: Services, name: str, method: str, params: dict[str, str], body: Any) -> None:
    answer = call(name, method, params, _body(body))

    assert answer.status in (200, 201), answer.body
    assert answer.headers["ETag"] == f'"{version(stocked)}"'
    assert version(stocked) == 4  # it recorded one event


@pytest.mark.parametrize(("name", "method", "params", "body"), WRITES,
                         ids=[w[0] for w in WRITES])
def test_every_write_with_a_stale_if_match_is_412_with_the_current_version_and_records_nothing(
        stocked: Services, name: str, method: str, params: dict[str, str], body: Any) -> None:
    answer = call(name, method, params, _body(body), headers={"If-Match": '"2"'})

    assert answer.status == 412
    assert answer.problem_code == "precondition-failed"
    assert answer.body["version"] == 3
    assert version(stocked) == 3


@pytest.mark.parametrize(("name", "method", "params", "body"), WRITES,
                         ids=[w[0] for w in WRITES])
def test_every_write_with_the_current_version_as_if_match_is_applied(
        stocked: Services, name: str, method: str, params: dict[str, str], body: Any) -> None:
    answer = call(name, method, params, _body(body), headers={"If-Match": '"3"'})

    assert answer.status in (200, 201), answer.body
    assert answer.headers["ETag"] == '"4"'


def test_if_match_star_refuses_a_stream_that_does_not_exist(container: Services) -> None:
    answer = receive(5, **{"If-Match": "*"})

    assert answer.status == 412
    assert answer.body["version"] == 0
    assert version(container) == 0


def test_if_match_star_accepts_a_stream_at_any_version(container: Services) -> None:
    receive(5)

    assert receive(5, **{"If-Match": "*"}).status == 200
    assert version(container) == 3


def test_if_match_zero_creates_the_stream_once(container: Services) -> None:
    first = receive(5, **{"If-Match": '"0"'})
    second = receive(5, **{"If-Match": '"0"'})

    assert (first.status, second.status) == (200, 412)
    assert version(container) == 2


def test_a_list_of_versions_matches_any_of_them(container: Services) -> None:
    receive(5)

    assert receive(1, **{"If-Match": '"7", "2"'}).status == 200
    assert receive(1, **{"If-Match": '"7", "2"'}).status == 412


def test_a_stale_condition_wins_over_the_refusal_it_would_have_met(container: Services) -> None:
    receive(1)
    receive(1)

    answer = reserve("order-1", 50, **{"If-Match": '"2"'})

    assert answer.status == 412
    assert answer.body["version"] == 3


@pytest.mark.parametrize("value", ['W/"1"', "1", '"-1"', '"01"', '"abc"', "", '"1",', "**"])
def test_a_malformed_if_match_is_400_and_records_nothing(container: Services,
                                                         value: str) -> None:
    answer = receive(5, **{"If-Match": value})

    assert answer.status == 400
    assert answer.problem_code == "malformed-if-match"
    assert version(container) == 0


# ------------------------------------------------- repeats answer their success


def test_a_repeated_reservation_answers_its_success_though_if_match_no_longer_matches(
        stocked: Services) -> None:
    first = reserve("order-9", 3, **{"If-Match": '"3"'})
    receive(1)

    again = reserve("order-9", 3, **{"If-Match": '"3"'})

    assert (first.status, again.status) == (201, 200)
    assert again.body["reservations"] == first.body["reservations"]
    assert version(stocked) == 5


def test_a_repeated_receipt_by_idempotency_key_answers_its_success_with_a_stale_if_match(
        stocked: Services) -> None:
    headers = {"If-Match": '"3"', "Idempotency-Key": "asn-1"}
    assert receive(4, **headers).status == 200
    reserve("order-3", 1)

    again = receive(4, **headers)

    assert again.status == 200
    assert again.body["on_hand"] == 14
    assert version(stocked) == 5


def test_a_repeated_count_answers_its_success_with_a_stale_if_match(stocked: Services) -> None:
    body = {"count_id": "c-9", "counted": 9, "counted_at": now_text()}
    assert call("record_count", "POST", SKU, body, headers={"If-Match": '"3"'}).status == 200
    receive(1)

    again = call("record_count", "POST", SKU, body, headers={"If-Match": '"3"'})

    assert again.status == 200
    assert again.body["already_recorded"] is True


def test_a_repeated_release_answers_its_success_with_a_stale_if_match(
        stocked: Services) -> None:
    assert call("release_reservation", "DELETE", order("order-1"),
                headers={"If-Match": '"3"'}).status == 200

    again = call("release_reservation", "DELETE", order("order-1"),
                 headers={"If-Match": '"3"'})

    assert again.status == 200
    assert version(stocked) == 4
