"""Slow clients cannot hold the host: header, body and idle timeouts, and keys first.

Each timeout is a setting; these hosts set one of them to 1 s and the others to 30 s, so
a connection cut within the socket's 10 s was cut by the timeout under test. Meanwhile
another client is served. A request is authenticated before its body is read: a client
without a key gets its 401 without sending the body, and no ``100 Continue`` first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from application.settings import SettingsError, load
from tests.host.conftest import LocalHost, Raw, fresh_sku, serve

SLOW = 10.0  # the client's patience: far above every timeout under test


def timeouts(header: int = 30, body: int = 30, idle: int = 30) -> dict[str, str]:
    return {"STOCKSTREAM_HEADER_TIMEOUT_SECONDS": str(header),
            "STOCKSTREAM_BODY_TIMEOUT_SECONDS": str(body),
            "STOCKSTREAM_IDLE_TIMEOUT_SECONDS": str(idle)}


@pytest.fixture
def host_with(tmp_path: Path) -> Iterator[object]:
    def start(env: dict[str, str]) -> LocalHost:
        context = serve(tmp_path, env)
        started.append(context)
        return context.__enter__()

    started: list[object] = []
    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)  # type: ignore[attr-defined]


def served_meanwhile(host: LocalHost) -> None:
    reply = host.call("GET", f"/api/stock/{fresh_sku()}/STORE-1")
    assert reply.status == 200


def test_the_timeouts_are_settings_with_defaults():
    defaults = load({})
    assert (defaults.header_timeout_seconds, defaults.body_timeout_seconds,
            defaults.idle_timeout_seconds) == (10, 30, 5)
    assert load(timeouts(1, 2, 3)).body_timeout_seconds == 2
    for name in timeouts():
        for bad in ("0", "-1", "soon", "1.5"):
            with pytest.raises(SettingsError, match=name):
                load({name: bad})


def test_half_headers_are_cut_off_after_the_header_timeout(host_with):
    host = host_with(timeouts(header=1))
    with Raw(host.port, SLOW) as slow:
        started = time.monotonic()
        slow.send(b"GET /api/stock/A/B HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl")
        served_meanwhile(host)
        slow.wait_closed()
    assert time.monotonic() - started >= 0.9


def test_a_trickle_of_header_bytes_does_not_reset_the_header_timeout(host_with):
    host = host_with(timeouts(header=1))
    with Raw(host.port, SLOW) as slow:
        started = time.monotonic()
        slow.send(b"GET /api/stock/A/B HTTP/1.1\r\n")
        with pytest.raises(OSError):  # cut off while still trickling
            for _ in range(40):
                slow.send(b"X-Drip: 1\r\n")
                time.sleep(0.1)  # the trickle itself: a slow client's pace, not a wait
        slow.wait_closed()
    assert time.monotonic() - started < SLOW


def test_half_a_body_is_answered_408_after_the_body_timeout_and_runs_nothing(host_with):
    host = host_with(timeouts(body=1))
    sku = fresh_sku()
    with Raw(host.port, SLOW) as slow:
        started = time.monotonic()
        slow.request("POST", f"/api/stock/{sku}/STORE-1/receipts",
                     headers={"Content-Type": "application/json", "Content-Length": "20"})
        slow.send(b'{"quant')
        served_meanwhile(host)
        reply = slow.reply()
        assert (reply.status, reply.problem_code) == (408, "request-timeout")
        assert reply.headers["connection"] == "close"
        slow.wait_closed()
    assert time.monotonic() - started >= 0.9
    assert host.events(sku) == []


def test_an_idle_connection_is_closed_after_the_idle_timeout(host_with):
    host = host_with(timeouts(idle=1))
    with Raw(host.port, SLOW) as fresh, Raw(host.port, SLOW) as kept:
        started = time.monotonic()
        assert kept.exchange("GET", f"/api/stock/{fresh_sku()}/STORE-1").status == 200
        served_meanwhile(host)
        fresh.wait_closed()  # never sent a byte
        kept.wait_closed()  # sent nothing after its answer
    assert time.monotonic() - started >= 0.9


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    with serve(tmp_path_factory.mktemp("keyed"), {"STOCKSTREAM_API_KEYS": "k"}) as host:
        yield host


def test_a_request_without_a_key_is_answered_401_without_its_body_being_read(
        keyed: LocalHost):
    with Raw(keyed.port, SLOW) as raw:
        raw.request("POST", f"/api/stock/{fresh_sku()}/STORE-1/receipts",
                    headers={"Content-Type": "application/json", "Content-Length": "1000"})
        reply = raw.reply()  # the body is never sent
        assert (reply.status, reply.problem_code) == (401, "unauthorized")
        assert reply.headers["connection"] == "close"
        raw.wait_closed()


def test_expect_100_continue_is_not_answered_before_the_key_is_checked(keyed: LocalHost):
    body = b'{"quantity": 2}'
    target = f"/api/stock/{fresh_sku()}/STORE-1/receipts"
    expect = {"Content-Type": "application/json", "Content-Length": str(len(body)),
              "Expect": "100-continue"}
    with Raw(keyed.port, SLOW) as raw:
        raw.request("POST", target, headers=expect)
        assert raw.reply().status == 401
    with Raw(keyed.port, SLOW) as raw:
        raw.request("POST", target, headers={**expect, "x-functions-key": "k"})
        assert raw.reply().status == 100
        raw.send(body)
        assert raw.reply().json()["on_hand"] == 2
