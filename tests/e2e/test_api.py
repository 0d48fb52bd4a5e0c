"""Every route of the channel API over real sockets against ``python -m local``."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningHost, start_host

_ids = itertools.count(1)


def stock_item() -> str:
    """A fresh SKU-location path per test, so tests sharing one host do not interact."""
    return f"/api/stock/SKU-{next(_ids)}/STORE-1"


def events(client: httpx.Client, base: str) -> list[dict[str, object]]:
    answer = client.get(f"{base}/events")
    assert answer.status_code == 200
    return list(answer.json())


def assert_problem(answer: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["type"] == f"urn:stockstream:problems:{code}"
    assert body["status"] == status and body["title"] and body["detail"]
    return dict(body)


def test_position_has_an_etag_and_answers_304_when_unchanged(client: httpx.Client):
    base = stock_item()
    fresh = client.get(base)
    assert fresh.status_code == 200 and fresh.json()["version"] == 0
    assert fresh.headers["etag"] == '"0"'
    client.post(f"{base}/receipts", json={"quantity": 4})
    current = client.get(base)
    assert current.headers["etag"] == '"2"'
    assert client.get(base, headers={"If-None-Match": '"2"'}).status_code == 304


def test_receipt_adjustment_policy_reservation_fulfilment_and_count(client: httpx.Client):
    base = stock_item()
    assert client.post(f"{base}/receipts", json={"quantity": 10, "reference": "ASN-9"}
                       ).json()["on_hand"] == 10
    assert client.post(f"{base}/adjustments", json={"delta": -1, "reason": "damaged"}
                       ).json()["on_hand"] == 9
    assert client.put(f"{base}/policy", json={"safety_stock": 1, "oversell_buffer": 0}
                      ).json()["available"] == 8
    created = client.put(f"{base}/reservations/ord-1", json={"quantity": 3, "channel": "web"})
    assert created.status_code == 201
    assert created.headers["location"].endswith(f"{base}/reservations/ord-1")
    fulfilled = client.post(f"{base}/reservations/ord-1/fulfilment")
    assert fulfilled.status_code == 200
    assert (fulfilled.json()["on_hand"], fulfilled.json()["reserved"]) == (6, 0)
    count = client.post(f"{base}/counts", json={
        "count_id": "cnt-1", "counted": 5, "counted_at": datetime.now(UTC).isoformat()})
    assert count.status_code == 200
    assert count.json()["correction"]["delta"] == -1
    assert count.json()["position"]["on_hand"] == 5
    types = [str(e["type"]).rsplit(".", 1)[0] for e in events(client, base)]  # any version
    assert types == ["Stockstream.StockItemCreated", "Stockstream.StockReceived",
                     "Stockstream.StockAdjusted", "Stockstream.StockPolicyChanged",
                     "Stockstream.StockReserved", "Stockstream.ReservationFulfilled",
                     "Stockstream.StockCounted"]
    assert [e["sequence"] for e in client.get(f"{base}/events", params={"after": 5}).json()] \
        == [6, 7]


def test_the_same_reservation_twice_is_one_event(client: httpx.Client):
    base = stock_item()
    client.post(f"{base}/receipts", json={"quantity": 5})
    body = {"quantity": 2, "channel": "pos", "ttl_seconds": 900}
    assert client.put(f"{base}/reservations/ord-1", json=body).status_code == 201
    assert client.put(f"{base}/reservations/ord-1", json=body).status_code == 200
    reserved = [e for e in events(client, base) if e["type"] == "Stockstream.StockReserved.v1"]
    assert len(reserved) == 1
    assert client.get(base).json()["reserved"] == 2


def test_release_and_fulfilment_repeated_are_200_and_record_no_new_event(
        client: httpx.Client):
    base = stock_item()
    client.post(f"{base}/receipts", json={"quantity": 5})
    client.put(f"{base}/reservations/a", json={"quantity": 1, "channel": "web"})
    client.put(f"{base}/reservations/b", json={"quantity": 1, "channel": "web"})
    assert client.delete(f"{base}/reservations/a").status_code == 200
    assert client.post(f"{base}/reservations/b/fulfilment", json={}).status_code == 200
    before = len(events(client, base))
    assert client.delete(f"{base}/reservations/a").status_code == 200
    assert client.post(f"{base}/reservations/b/fulfilment").status_code == 200
    assert len(events(client, base)) == before
    assert_problem(client.delete(f"{base}/reservations/never"), 404, "unknown-reservation")
    assert_problem(client.post(f"{base}/reservations/a/fulfilment"), 409, "reservation-closed")


def test_an_idempotency_key_reused_with_another_body_is_409(client: httpx.Client):
    base = stock_item()
    key = {"Idempotency-Key": "delivery-77"}
    assert client.post(f"{base}/receipts", json={"quantity": 3}, headers=key).status_code == 200
    assert client.post(f"{base}/receipts", json={"quantity": 3}, headers=key).json()[
        "on_hand"] == 3
    assert_problem(client.post(f"{base}/receipts", json={"quantity": 4}, headers=key),
                   409, "idempotency-key-reused")
    adjust_key = {"Idempotency-Key": "adj-77"}
    client.post(f"{base}/adjustments", json={"delta": 1, "reason": "found"}, headers=adjust_key)
    assert_problem(client.post(f"{base}/adjustments", json={"delta": 2, "reason": "found"},
                               headers=adjust_key), 409, "idempotency-key-reused")
    assert client.get(base).json()["on_hand"] == 4


def test_insufficient_stock_is_409_with_available(client: httpx.Client):
    base = stock_item()
    client.post(f"{base}/receipts", json={"quantity": 2})
    body = assert_problem(client.put(f"{base}/reservations/big",
                                     json={"quantity": 3, "channel": "web"}),
                          409, "insufficient-stock")
    assert body["available"] == 2


def test_protocol_errors_are_problem_documents(client: httpx.Client):
    base = stock_item()
    assert_problem(client.post(f"{base}/receipts", content=b'{"quantity":',
                               headers={"Content-Type": "application/json"}),
                   400, "malformed-json")
    assert_problem(client.post(f"{base}/receipts", content=b'{"quantity": 1}',
                               headers={"Content-Type": "text/plain"}),
                   415, "unsupported-media-type")
    assert_problem(client.post(f"{base}/receipts", json={"quantity": 1.5}),
                   422, "validation-failed")
    assert_problem(client.post(f"{base}/receipts",
                               json={"quantity": 1, "reference": "x" * 70_000}),
                   413, "payload-too-large")
    assert_problem(client.get("/api/no/such/route"), 404, "not-found")
    assert_problem(client.get("/elsewhere"), 404, "not-found")
    body = assert_problem(client.patch(base), 405, "method-not-allowed")
    assert "GET" in str(body["detail"])
    assert_problem(client.get("/api/stock/bad%2Fsku/STORE-1"), 422, "invalid-identifier")
    assert client.get(base).json()["version"] == 0


def test_a_huge_body_is_refused_without_being_read_whole(host: RunningHost):
    """10 MB announced: the host answers 413 and closes, and keeps serving others."""
    with socket.create_connection(("127.0.0.1", int(host.url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(b"POST /api/stock/A/B/receipts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
        # Nothing of the body is sent: the answer must not wait for it.
        reply = raw.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413")
    with host.client() as c:
        assert c.get("/api/openapi.json").status_code == 200


def test_openapi_is_served_and_equals_the_committed_document(client: httpx.Client):
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    committed = Path(__file__).resolve().parents[2] / "openapi.json"
    assert answer.json() == json.loads(committed.read_text(encoding="utf-8"))


def test_every_request_is_logged_in_one_line(host: RunningHost, client: httpx.Client):
    base = stock_item()
    client.get(f"{base}/events", params={"after": 0})

    def logged() -> bool:
        return any(line.endswith("ms") and f"GET {base}/events?after=0 200 " in line
                   for line in host.log().splitlines())

    # The line is written once the answer is sent, so it may trail the answer a little.
    deadline = time.monotonic() + 10
    while not logged():
        assert time.monotonic() < deadline, host.log()[-2000:]
        time.sleep(0.02)


# ---------------------------------------------------------- pipeline routes


def test_with_a_cosmos_store_the_host_serves_the_command_path_from_cosmos(
        tmp_path: Path, cosmos_server: Any):
    """``make serve`` with Cosmos DB settings: commands and positions against Cosmos DB; the
    availability route reads the Cosmos views, which Azure's projection function keeps
    (nothing projects locally: the embedded pipeline runs on SQLite only)."""
    from adapters.cosmos import CosmosStockItems

    database = f"e2e-{next(_ids)}"
    CosmosStockItems(cosmos_server.endpoint, database, key=cosmos_server.key,
                     verify_tls=False).create_containers_if_missing()
    running = start_host(tmp_path, env={
        "STOCKSTREAM_EVENT_STORE": "cosmos",
        "COSMOS__accountEndpoint": cosmos_server.endpoint,
        "COSMOS_KEY": cosmos_server.key or "",
        "COSMOS_DATABASE": database,
    })
    try:
        with running.client() as cosmos_client:
            base = stock_item()
            assert cosmos_client.post(f"{base}/receipts", json={"quantity": 7}).status_code == 200
            position = cosmos_client.get(base)
            assert (position.status_code, position.json()["on_hand"]) == (200, 7)
            sku = base.split("/")[3]
            availability = cosmos_client.get(f"/api/availability/{sku}")
            assert (availability.status_code, availability.json()["locations"]) == (200, [])
            assert cosmos_client.get("/api/ops/status").status_code == 200
    finally:
        assert running.stop() == 0, running.log()
    assert "embedded pipeline runs on SQLite only" in running.log()


def test_ops_status_answers_200(client: httpx.Client):
    answer = client.get("/api/ops/status")
    assert answer.status_code == 200
    assert set(answer.json()) == {"outbox", "subscriptions", "projections", "unmeasured"}


def test_availability_reflects_an_acknowledged_command_within_one_second(
        client: httpx.Client):
    sku = f"SKU-A{next(_ids)}"
    acknowledged = client.post(f"/api/stock/{sku}/STORE-1/receipts", json={"quantity": 9})
    assert acknowledged.status_code == 200
    version = acknowledged.json()["version"]
    deadline = time.monotonic() + 1.0  # the acceptance: within one second
    while True:
        rows = client.get(f"/api/availability/{sku}").json()["locations"]
        if any(r["location"] == "STORE-1" and r["version"] >= version for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)
    assert client.get(f"/api/availability/{sku}").json()["on_hand"] == 9
    assert_problem(client.post("/api/ops/deadletters/no-such-sub/replay"), 404,
                   "unknown-subscription")


# --------------------------------------------------------- keys and process


def test_with_api_keys_every_request_needs_a_matching_key(tmp_path: Path):
    running = start_host(tmp_path, env={"STOCKSTREAM_API_KEYS": "key-one, key-two"})
    try:
        with running.client() as c:
            assert_problem(c.get("/api/stock/A/B"), 401, "unauthorized")
            assert_problem(c.get("/api/stock/A/B", headers={"x-functions-key": "nope"}),
                           401, "unauthorized")
            assert_problem(c.get("/api/missing"), 401, "unauthorized")
            assert c.get("/api/stock/A/B", headers={"x-functions-key": "key-two"}
                         ).status_code == 200
            assert c.get("/api/openapi.json").status_code == 200  # anonymous
        assert "not authenticated" not in running.log()
    finally:
        assert running.stop() == 0


def test_without_keys_the_host_warns_and_refuses_a_non_loopback_address(
        host: RunningHost, tmp_path: Path):
    assert "STOCKSTREAM_API_KEYS is not set" in host.log()
    assert "127.0.0.1" in host.url
    with pytest.raises(RuntimeError, match=r"refusing to listen on 0\.0\.0\.0"):
        start_host(tmp_path, "--host", "0.0.0.0", timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_host_shuts_down_cleanly_on_a_signal(tmp_path: Path, sig: int):
    running = start_host(tmp_path)
    with running.client() as c:
        assert c.post("/api/stock/A/B/receipts", json={"quantity": 1}).status_code == 200
    assert running.stop(sig) == 0
    assert "Stockstream stopped" in running.log()
    assert "Traceback" not in running.log()


def _children(pid: int, command: str) -> list[int]:
    """Processes whose parent is ``pid`` and whose command line contains ``command``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and command in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_pipeline_worker_stops_with_its_host_even_when_the_host_is_killed(tmp_path: Path):
    running = start_host(tmp_path)
    deadline = time.monotonic() + 20
    while not (workers := _children(running.process.pid, "local.worker")):
        assert time.monotonic() < deadline, "the host started no pipeline worker"
        time.sleep(0.05)
    running.process.kill()
    running.process.wait(10)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "the worker outlived its host"
        time.sleep(0.1)
