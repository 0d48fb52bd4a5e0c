"""Cross-site requests cannot drive the keyless local host.

A web page may make a browser send a "simple" request (a form: ``text/plain``,
``application/x-www-form-urlencoded``, ``multipart/form-data``) to 127.0.0.1 without any
preflight, and may rebind a name of its own to 127.0.0.1 (DNS rebinding). So: a
state-changing request whose body is not JSON gets 415, a request from an ``Origin``
that is not allowed gets 403, and the keyless host answers a ``Host`` that is not one of
its own names 421. No answer carries permissive CORS headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.conftest import LocalHost, Reply, fresh_sku, serve

EVIL = "https://shop.evil.example"


def stocked(host: LocalHost) -> tuple[str, int]:
    """A SKU-location with 5 on hand and order o-1 holding 3; its base path and version."""
    base = f"/api/stock/{fresh_sku()}/STORE-1"
    assert host.call("POST", f"{base}/receipts", json_body={"quantity": 5}).status == 200
    reply = host.call("PUT", f"{base}/reservations/o-1",
                      json_body={"quantity": 3, "channel": "web"})
    assert reply.status == 201
    return base, int(reply.json()["version"])


def version(host: LocalHost, base: str) -> int:
    return int(host.call("GET", base).json()["version"])


def no_cors(reply: Reply) -> None:
    assert not [h for h in reply.headers if h.startswith("access-control-")], reply.headers


def test_a_cross_site_text_plain_post_to_fulfilment_is_refused_and_records_nothing(
        keyless: LocalHost):
    base, before = stocked(keyless)
    form = {"Content-Type": "text/plain", "Origin": EVIL}
    with keyless.raw() as raw:
        refused = raw.exchange("POST", f"{base}/reservations/o-1/fulfilment", body=b"x=1",
                               headers=form)
    assert (refused.status, refused.problem_code) == (403, "origin-not-allowed")
    no_cors(refused)
    assert version(keyless, base) == before


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"])
def test_a_form_post_without_an_origin_is_415_even_without_a_body(
        keyless: LocalHost, content_type: str):
    base, before = stocked(keyless)
    for body in (b"", b"{}"):
        with keyless.raw() as raw:
            reply = raw.exchange("POST", f"{base}/reservations/o-1/fulfilment", body=body,
                                 headers={"Content-Type": content_type})
        assert (reply.status, reply.problem_code) == (415, "unsupported-media-type"), body
    assert version(keyless, base) == before


@pytest.mark.parametrize("method", ["PUT", "DELETE"])  # no route takes PATCH: 405
def test_every_state_changing_method_refuses_a_body_that_is_not_json(
        keyless: LocalHost, method: str):
    base, before = stocked(keyless)
    with keyless.raw() as raw:
        reply = raw.exchange(method, f"{base}/reservations/o-1", body=b"quantity=1",
                             headers={"Content-Type": "text/plain"})
    assert (reply.status, reply.problem_code) == (415, "unsupported-media-type")
    with keyless.raw() as raw:  # a body with no Content-Type at all is not JSON either
        reply = raw.exchange(method, f"{base}/reservations/o-1", body=b"{}")
    assert (reply.status, reply.problem_code) == (415, "unsupported-media-type")
    assert version(keyless, base) == before


def test_a_bodyless_post_without_a_content_type_stays_valid(keyless: LocalHost):
    """``curl -X POST .../fulfilment``: no body, no Content-Type."""
    base, before = stocked(keyless)
    with keyless.raw() as raw:
        reply = raw.exchange("POST", f"{base}/reservations/o-1/fulfilment")
    assert reply.status == 200, reply
    assert (reply.json()["on_hand"], reply.json()["version"]) == (2, before + 1)


def test_json_media_types_with_a_suffix_are_json(keyless: LocalHost):
    base = f"/api/stock/{fresh_sku()}/STORE-1"
    for content_type in ("application/json; charset=utf-8", "application/problem+json"):
        with keyless.raw() as raw:
            reply = raw.exchange("POST", f"{base}/receipts", body=b'{"quantity": 1}',
                                 headers={"Content-Type": content_type})
        assert reply.status == 200, reply


def test_the_same_origin_is_allowed_and_any_other_is_403(keyless: LocalHost):
    base, before = stocked(keyless)
    same = f"http://127.0.0.1:{keyless.port}"
    json_headers = {"Content-Type": "application/json"}
    with keyless.raw() as raw:
        reply = raw.exchange("POST", f"{base}/receipts", body=b'{"quantity": 1}',
                             headers={**json_headers, "Origin": same})
    assert reply.status == 200, reply
    no_cors(reply)
    for origin in (EVIL, "null", f"http://127.0.0.1:{keyless.port + 1}",
                   f"https://127.0.0.1:{keyless.port}"):
        for method, target in (("POST", f"{base}/receipts"), ("GET", base)):
            with keyless.raw() as raw:
                reply = raw.exchange(method, target, body=b'{"quantity": 1}'
                                     if method == "POST" else None,
                                     headers={**json_headers, "Origin": origin})
            assert (reply.status, reply.problem_code) == (403, "origin-not-allowed"), origin
            no_cors(reply)
    assert version(keyless, base) == before + 1


def test_a_preflight_gets_no_permissive_cors_headers(keyless: LocalHost):
    base, _ = stocked(keyless)
    with keyless.raw() as raw:
        reply = raw.exchange("OPTIONS", f"{base}/receipts", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
    assert reply.status == 403
    no_cors(reply)


@pytest.fixture(scope="module")
def with_origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    env = {"STOCKSTREAM_ALLOWED_ORIGINS": "https://pos.example, http://tools.example:8080"}
    with serve(tmp_path_factory.mktemp("origins"), env) as host:
        yield host


def test_configured_origins_are_allowed(with_origins: LocalHost):
    base = f"/api/stock/{fresh_sku()}/STORE-1"
    for origin in ("https://pos.example", "http://tools.example:8080", "HTTPS://POS.EXAMPLE"):
        reply = with_origins.call("POST", f"{base}/receipts", json_body={"quantity": 1},
                                  headers={"Origin": origin})
        assert reply.status == 200, (origin, reply)
        no_cors(reply)
    reply = with_origins.call("POST", f"{base}/receipts", json_body={"quantity": 1},
                              headers={"Origin": "https://pos.example.evil.example"})
    assert reply.status == 403


@pytest.mark.parametrize("host", ["localhost", "localhost:9", "LOCALHOST:7071", "127.0.0.1",
                                  "127.0.0.1:1234", "[::1]", "[::1]:7071"])
def test_the_keyless_host_answers_its_own_names(keyless: LocalHost, host: str):
    with keyless.raw() as raw:
        reply = raw.exchange("GET", f"/api/stock/{fresh_sku()}/STORE-1", host=host)
    assert reply.status == 200, reply


@pytest.mark.parametrize("host", ["shop.evil.example", "shop.evil.example:7071",
                                  "127.0.0.1.nip.io", "localhost.evil.example", "10.0.0.8",
                                  "[::2]:7071"])
def test_the_keyless_host_answers_another_host_name_421_and_records_nothing(
        keyless: LocalHost, host: str):
    base, before = stocked(keyless)
    json_headers = {"Content-Type": "application/json"}
    with keyless.raw() as raw:
        reply = raw.exchange("POST", f"{base}/receipts", body=b'{"quantity": 1}',
                             headers=json_headers, host=host)
    assert (reply.status, reply.problem_code) == (421, "misdirected-request")
    no_cors(reply)
    assert version(keyless, base) == before


def test_a_keyed_host_answers_any_host_name(tmp_path: Path):
    with serve(tmp_path, {"STOCKSTREAM_API_KEYS": "k1"}, key="k1") as host:
        with host.raw() as raw:
            reply = raw.exchange("GET", f"/api/stock/{fresh_sku()}/STORE-1",
                                 headers={"x-functions-key": "k1"},
                                 host="stock.example.com")
        assert reply.status == 200, reply
