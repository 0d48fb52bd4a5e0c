"""Transfers over real sockets against the embedded host (``python -m local``, pipeline
on): every route and refusal of the transfer contract, repeats that record nothing on
either location or the transfer, bad input that records nothing, the availability view's
``in_transit``, and a transfer a crash left between the source's step and the
destination's finished by the pipeline worker's sweep with no request for it."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.clock import ManualClock
from application.commands import StockCommands
from application.processes import STALL_AFTER
from tests.e2e.conftest import RunningHost, start_host
from tests.transfers.conftest import DC, SKU, STORE, open_world, request
from tests.transfers.test_transfer_recovery import Crash, crashing

_ids = itertools.count(1)


def _sku() -> str:
    return f"SKU-X{next(_ids)}-{time.monotonic_ns() % 10**6}"


def code(answer: httpx.Response) -> str:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    return str(answer.json()["type"]).rsplit(":", 1)[-1]


def position(c: httpx.Client, sku: str, location: str) -> dict[str, Any]:
    answer = c.get(f"/api/stock/{sku}/{location}")
    assert answer.status_code == 200
    return dict(answer.json())


def versions(c: httpx.Client, sku: str) -> tuple[int, int]:
    return position(c, sku, DC)["version"], position(c, sku, STORE)["version"]


def availability_at(c: httpx.Client, sku: str, version: int) -> dict[str, Any]:
    """The availability answer once the destination's row reflects ``version``."""
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = c.get(f"/api/availability/{sku}").json()
        if any(r["location"] == STORE and r["version"] >= version for r in body["locations"]):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def stocked(c: httpx.Client, quantity: int = 30) -> tuple[str, str, dict[str, Any]]:
    """A new SKU with ``quantity`` at the DC, a new transfer id, and its request body."""
    sku = _sku()
    answer = c.post(f"/api/stock/{sku}/{DC}/receipts", json={"quantity": quantity})
    assert answer.status_code == 200, answer.text
    body = {"sku": sku, "from_location": DC, "to_location": STORE, "quantity": 10}
    return sku, f"/api/transfers/T-{sku}", body


def test_a_transfer_the_whole_way_with_every_repeat_recording_nothing(client: httpx.Client):
    sku, url, body = stocked(client)

    created = client.put(url, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "requested"
    assert client.put(url, json=body).status_code == 200
    other = client.put(url, json={**body, "quantity": 9})
    assert (other.status_code, code(other)) == (409, "transfer-conflict")
    assert other.json()["transfer_status"] == "requested"
    assert client.get(url).json() == created.json()

    shipped = client.post(f"{url}/shipment")
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["status"], shipped.json()["in_transit"]) == ("shipped", 10)
    dc, store = position(client, sku, DC), position(client, sku, STORE)
    assert (dc["sellable"], dc["available"]) == (20, 20)
    assert ([e["reference"] for e in store["incoming"]], store["incoming_total"]) == (
        [f"T-{sku}"], 10)
    view = availability_at(client, sku, store["version"])
    row = next(r for r in view["locations"] if r["location"] == STORE)
    assert (row["in_transit"], row["incoming_total"], row["on_hand"]) == (10, 10, 0)
    assert view["in_transit"] == 10
    before = versions(client, sku)
    assert client.post(f"{url}/shipment").json() == shipped.json()
    assert versions(client, sku) == before

    received = client.post(f"{url}/receipt", json={"quantity": 8})
    assert received.status_code == 200, received.text
    assert (received.json()["received"], received.json()["in_transit"]) == (8, 2)
    assert position(client, sku, STORE)["sellable"] == 8
    before = versions(client, sku)
    assert client.post(f"{url}/receipt", json={"quantity": 8}).json() == received.json()
    again = client.post(f"{url}/receipt", json={"quantity": 9})
    assert (again.status_code, code(again)) == (409, "transfer-conflict")
    assert versions(client, sku) == before

    closed = client.post(f"{url}/close")
    assert closed.status_code == 200, closed.text
    final = closed.json()
    assert (final["status"], final["shipped"], final["received"], final["lost"],
            final["in_transit"]) == ("closed", 10, 8, 2, 0)
    before = versions(client, sku)
    assert client.post(f"{url}/close").json() == final
    assert versions(client, sku) == before
    assert client.get(url).json() == final
    dc_on_hand = position(client, sku, DC)["on_hand"]
    assert dc_on_hand + position(client, sku, STORE)["on_hand"] + final["lost"] == 30
    types = [e["type"] for e in client.get(f"/api/stock/{sku}/{STORE}/events").json()]
    assert types.count("Stockstream.StockTransitLost.v1") == 1


def test_the_refusals_of_the_contract(client: httpx.Client):
    sku, url, body = stocked(client, quantity=5)
    assert client.put(url, json=body).status_code == 201

    short = client.post(f"{url}/shipment")
    assert (short.status_code, code(short), short.json()["available"]) == (
        409, "insufficient-stock", 5)
    for early in (client.post(f"{url}/receipt", json={"quantity": 1}),
                  client.post(f"{url}/close")):
        assert (early.status_code, code(early), early.json()["transfer_status"]) == (
            409, "transfer-status-conflict", "requested")
    cancelled = client.delete(url)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert client.delete(url).json() == cancelled.json()
    late = client.post(f"{url}/shipment")
    assert (late.status_code, code(late), late.json()["transfer_status"]) == (
        409, "transfer-status-conflict", "cancelled")
    assert position(client, sku, DC)["sellable"] == 5

    sku, url, body = stocked(client)
    client.put(url, json=body)
    client.post(f"{url}/shipment")
    after = client.delete(url)
    assert (after.status_code, code(after), after.json()["transfer_status"]) == (
        409, "transfer-status-conflict", "shipped")
    reference = url.rsplit("/", 1)[1]
    taken = client.put(f"/api/stock/{sku}/{STORE}/incoming/{reference}",
                       json={"quantity": 0, "expected_at": datetime.now(UTC).isoformat()})
    assert (taken.status_code, code(taken)) == (409, "incoming-conflict")

    for method, path in (("GET", ""), ("POST", "/shipment"), ("POST", "/close"),
                         ("DELETE", "")):
        unknown = client.request(method, f"/api/transfers/T-NONE{path}")
        assert (unknown.status_code, code(unknown)) == (404, "unknown-transfer"), path
    unknown = client.post("/api/transfers/T-NONE/receipt", json={"quantity": 1})
    assert (unknown.status_code, code(unknown)) == (404, "unknown-transfer")


@pytest.mark.parametrize("change", [
    {"to_location": DC}, {"quantity": 0}, {"quantity": -1}, {"sku": "a b"},
    {"expected_at": "tomorrow"}, {"from_location": None},
])
def test_bad_input_is_422_and_records_nothing(client: httpx.Client, change: dict[str, Any]):
    sku, url, body = stocked(client)
    answer = client.put(url, json={**body, **change})
    assert (answer.status_code, answer.json()["status"]) == (422, 422), answer.text
    assert client.get(url).status_code == 404
    assert versions(client, sku) == (2, 0)


def test_a_bad_receipt_is_422_and_records_nothing(client: httpx.Client):
    sku, url, body = stocked(client)
    client.put(url, json=body)
    shipped = client.post(f"{url}/shipment").json()
    before = versions(client, sku)
    for bad in ({"quantity": 11}, {"quantity": 0}, {}, {"quantity": "1"}):
        answer = client.post(f"{url}/receipt", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    malformed = client.post(f"{url}/receipt", content=b"{", headers={
        "content-type": "application/json"})
    assert malformed.status_code == 400
    assert versions(client, sku) == before
    assert client.get(url).json() == shipped


def test_a_transfer_a_crash_left_between_source_and_destination_is_finished_by_the_sweep(
        tmp_path: Path):
    """Shipped at the source, killed before the destination's step (its stream says
    "shipping"), then the host started with a 1 s sweep: within STALL_AFTER plus an
    interval the destination expects the units, with no request for the transfer."""
    data = tmp_path / "data"
    data.mkdir()
    world = open_world(data)
    world.clock = ManualClock(datetime.now(UTC))
    world.commands = StockCommands(world.stock, world.clock)
    world.commands.receive(SKU, DC, 30)
    world.transfers().request(request())
    with pytest.raises(Crash):
        world.transfers(crash_point=crashing("after-step", 1)).ship("T-1")
    assert (world.on_hand(DC), world.incoming(STORE, "T-1")) == (20, 0)
    world.stock.close()
    world.processes.close()

    host: RunningHost = start_host(tmp_path, env={"STOCKSTREAM_ORDER_SWEEP_INTERVAL": "1"})
    try:
        with host.client() as c:
            deadline = time.monotonic() + STALL_AFTER.total_seconds() + 30
            while not position(c, SKU, STORE)["incoming"]:
                assert time.monotonic() < deadline, host.log()
                time.sleep(0.2)
            # The worker logs the sweep after it returns, and its line reaches the host's
            # log through a pipe: the view can show the units first.
            while "transfer sweep drove 1 transfers" not in host.log():
                assert time.monotonic() < deadline, host.log()
                time.sleep(0.2)
            transfer = c.get("/api/transfers/T-1").json()
            assert (transfer["status"], transfer["in_transit"]) == ("shipped", 10)
    finally:
        assert host.stop() == 0, host.log()
