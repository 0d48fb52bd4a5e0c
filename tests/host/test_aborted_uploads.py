"""A request whose body did not arrive whole never runs.

The client announces a body and goes away before all of it arrived: a shorter body
than its ``Content-Length``, or a chunked body without its last chunk. Every route whose
body is optional is tried, because there the empty body a naive host would hand on is a
valid request (a fulfilment of the whole reservation, a replay of every dead letter).
"""

from __future__ import annotations

import re

import pytest

from functions.http_openapi import ROUTE_TABLE
from functions.http_routes import Route
from tests.host.conftest import LocalHost, fresh_sku

OPTIONAL_BODY = [r for r in ROUTE_TABLE if r.request is not None and not r.request_required]
ORDER_ID = "o-ab"


def test_the_routes_with_an_optional_body_are_found():
    assert {"fulfil_reservation", "replay_dead_letters"} <= {r.name for r in OPTIONAL_BODY}


def target(route: Route, sku: str) -> str:
    values = {"sku": sku, "location": "STORE-1", "order_id": ORDER_ID,
              "subscription": "availability"}
    path = re.sub(r"\{(\w+)[^}]*\}", lambda m: values.get(m.group(1), "x"), route.template)
    return f"/api/{path}"


TRUNCATED = {
    # 11 of the 15 bytes announced; the client then closes the connection.
    "content-length": ({"Content-Length": "15"}, b'{"quantity"'),
    # One chunk of 11 bytes, and never the last (zero-length) chunk.
    "chunked": ({"Transfer-Encoding": "chunked"}, b'b\r\n{"quantity"\r\n'),
}


@pytest.mark.parametrize("framing", sorted(TRUNCATED))
@pytest.mark.parametrize("route", OPTIONAL_BODY, ids=lambda r: r.name)
def test_a_body_cut_off_before_it_arrived_whole_never_runs(
        keyless: LocalHost, route: Route, framing: str):
    sku = fresh_sku()
    base = f"/api/stock/{sku}/STORE-1"
    assert keyless.call("POST", f"{base}/receipts", json_body={"quantity": 5}).status == 200
    assert keyless.call("PUT", f"{base}/reservations/{ORDER_ID}",
                        json_body={"quantity": 3, "channel": "web"}).status == 201
    before = keyless.events(sku)
    path = target(route, sku)
    headers, partial = TRUNCATED[framing]

    with keyless.raw() as raw:
        raw.request("POST", path, headers={"Content-Type": "application/json", **headers})
        raw.send(partial)
    line = keyless.log.wait_for(lambda text: f"POST {path} " in text)

    assert " 499 " in line, line  # logged as the client's abort: nothing ran
    assert keyless.events(sku) == before
    position = keyless.call("GET", base).json()
    assert (position["on_hand"], position["reserved"]) == (5, 3)
