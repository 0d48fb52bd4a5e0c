"""HEAD, conditional GET, and 404/405 with ``Allow``, over sockets (RFC 9110).

Every GET route answers HEAD as it answers GET, without the body; a GET route that sends
an ``ETag`` answers ``If-None-Match`` with that ETag 304; a 405 lists in ``Allow`` only the
methods of the routes at that path (and HEAD where they take GET); a path no route takes
is 404 whatever the method.
"""

from __future__ import annotations

import re

import pytest

from function_app import app
from functions.http_routes import HttpFunction, http_functions
from tests.host.conftest import LocalHost, fresh_sku

GET_ROUTES = [f for f in http_functions(app)
              if not f.catch_all and f.methods is not None and "GET" in f.methods]


def target(function: HttpFunction, sku: str) -> str:
    values = {"sku": sku, "location": "STORE-1", "order_id": "o-1"}
    path = re.sub(r"\{(\w+)[^}]*\}", lambda m: values.get(m.group(1), "x"),
                  function.template.template)
    return f"/api/{path}"


def test_get_routes_are_found():
    assert {"get_position", "list_events", "get_openapi"} <= {f.name for f in GET_ROUTES}


@pytest.mark.parametrize("function", GET_ROUTES, ids=lambda f: f.name)
def test_every_get_route_answers_head_like_get_without_a_body(
        keyless: LocalHost, function: HttpFunction):
    sku = fresh_sku()
    assert keyless.call("POST", f"/api/stock/{sku}/STORE-1/receipts",
                        json_body={"quantity": 1}).status == 200
    with keyless.raw() as raw:
        got = raw.exchange("GET", target(function, sku))
        head = raw.exchange("HEAD", target(function, sku))  # same connection: no body read
        again = raw.exchange("GET", target(function, sku))
    assert head.status == got.status == again.status, (head, got)
    assert head.body == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert int(head.headers["content-length"]) in (len(got.body), len(again.body))
    assert head.headers.get("etag") == got.headers.get("etag")


def test_if_none_match_with_the_current_etag_is_304_on_get_and_head(keyless: LocalHost):
    base = f"/api/stock/{fresh_sku()}/STORE-1"
    assert keyless.call("POST", f"{base}/receipts", json_body={"quantity": 1}).status == 200
    current = keyless.call("GET", base)
    etag = current.headers["etag"]
    assert etag == '"2"'
    for method in ("GET", "HEAD"):
        for given in (etag, f'"1", {etag}', f"W/{etag}", "*"):
            with keyless.raw() as raw:
                reply = raw.exchange(method, base, headers={"If-None-Match": given})
            assert reply.status == 304, (method, given, reply)
            assert reply.body == b"" and reply.headers["etag"] == etag
            # RFC 9110 §8.6: no Content-Length unless it is the 200's
            assert reply.headers.get("content-length") in (None, str(len(current.body)))
        with keyless.raw() as raw:
            stale = raw.exchange(method, base, headers={"If-None-Match": '"1"'})
        assert stale.status == 200


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", "/api/stock/A/B", "GET, HEAD"),
    ("POST", "/api/stock/A/B", "GET, HEAD"),
    ("OPTIONS", "/api/stock/A/B", "GET, HEAD"),
    ("FOO", "/api/stock/A/B", "GET, HEAD"),
    ("GET", "/api/stock/A/B/reservations/o-1", "DELETE, PUT"),
    ("TRACE", "/api/stock/A/B/reservations/o-1", "DELETE, PUT"),
    ("GET", "/api/stock/A/B/receipts", "POST"),
    ("DELETE", "/api/openapi.json", "GET, HEAD"),
])
def test_a_wrong_method_is_405_allowing_only_the_routes_methods(
        keyless: LocalHost, method: str, path: str, allow: str):
    with keyless.raw() as raw:
        reply = raw.exchange(method, path)
    assert (reply.status, reply.problem_code) == (405, "method-not-allowed")
    assert reply.headers["allow"] == allow


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "OPTIONS", "FOO", "TRACE"])
@pytest.mark.parametrize("path", ["/api/no/such/route", "/elsewhere"])
def test_any_method_on_an_unknown_path_is_404(keyless: LocalHost, method: str, path: str):
    with keyless.raw() as raw:
        reply = raw.exchange(method, path)
    assert reply.status == 404, reply
    if method != "HEAD":
        assert reply.problem_code == "not-found"
    assert "allow" not in reply.headers


@pytest.mark.parametrize(("method", "header"), [
    ("GET", b"If-None-Match: a\x7fb"),  # httptools parses GET and refuses DEL
    ("GET", b"X-Thing: \x00"),
    ("FOO", b"X-Thing: \x00"),  # handed to h11 (an uncommon method), which refuses NUL
])
def test_a_request_the_parser_refuses_gets_a_problem_document(
        keyless: LocalHost, method: str, header: bytes):
    # A forbidden byte in a header value (DEL, NUL) is refused before any routing: the
    # answer is still a 400 problem document, as every other 4xx, and nothing ran.
    with keyless.raw() as raw:
        raw.send(method.encode() + b" /api/stock/SKU-1/STORE-1 HTTP/1.1\r\n"
                 b"Host: 127.0.0.1\r\n" + header + b"\r\n\r\n")
        reply = raw.reply()
    assert (reply.status, reply.problem_code) == (400, "malformed-request"), reply
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["status"] == 400
