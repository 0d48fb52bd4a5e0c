"""Stock states and incoming supply over real sockets against the embedded
host (``python -m local``, pipeline on): the position from the stream, the availability
projection fed by the relay, repeats that record nothing and bad input that records
nothing."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

_ids = itertools.count(1)


def _sku() -> str:
    return f"SKU-S{next(_ids)}-{time.monotonic_ns() % 10**6}"


def _events(client: httpx.Client, base: str) -> list[dict[str, Any]]:
    answer = client.get(f"{base}/events")
    assert answer.status_code == 200
    events: list[dict[str, Any]] = answer.json()
    return events


def _availability_at(client: httpx.Client, sku: str, version: int) -> dict[str, Any]:
    """The availability answer once the STORE-1 row reflects ``version``."""
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = client.get(f"/api/availability/{sku}").json()
        if any(r["location"] == "STORE-1" and r["version"] >= version
               for r in body["locations"]):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_five_dented_units_go_to_damaged_on_hand_stays_available_falls_the_view_shows_held(
        client: httpx.Client):
    sku = _sku()
    base = f"/api/stock/{sku}/STORE-1"
    assert client.post(f"{base}/receipts", json={"quantity": 20}).status_code == 200
    move = {"quantity": 5, "from": "sellable", "to": "damaged", "reason": "dented"}
    key = {"Idempotency-Key": "dented-1"}

    moved = client.post(f"{base}/state-moves", json=move, headers=key)
    repeated = client.post(f"{base}/state-moves", json=move, headers=key)

    assert moved.status_code == 200, moved.text
    position = moved.json()
    assert (position["on_hand"], position["available"], position["sellable"]) == (20, 15, 15)
    assert position["held"] == {"damaged": 5, "quality_control": 0}
    assert repeated.status_code == 200 and repeated.json() == position
    assert [e["type"] for e in _events(client, base)].count(
        "Stockstream.StockStateMoved.v1") == 1

    view = _availability_at(client, sku, position["version"])
    [row] = view["locations"]
    assert (row["on_hand"], row["available"], row["sellable"], row["held"]) == (
        20, 15, 15, {"damaged": 5, "quality_control": 0})
    assert (view["on_hand"], view["sellable"], view["held"]["damaged"]) == (20, 15, 5)


def test_an_expected_receipt_raises_atp_from_its_day_and_the_view_shows_it_incoming(
        client: httpx.Client):
    sku = _sku()
    base = f"/api/stock/{sku}/STORE-1"
    assert client.post(f"{base}/receipts", json={"quantity": 4}).status_code == 200
    today = datetime.now(UTC).date()
    due = datetime.combine(today + timedelta(days=2), datetime.min.time(), tzinfo=UTC)

    expected = client.put(f"{base}/incoming/PO-42",
                          json={"quantity": 10, "expected_at": due.isoformat()})
    again = client.put(f"{base}/incoming/PO-42",
                       json={"quantity": 10, "expected_at": due.isoformat()})
    atp = client.get(f"{base}/atp", params={"days": 5})

    assert expected.status_code == 200, expected.text
    assert expected.json()["incoming"] == [
        {"reference": "PO-42", "quantity": 10, "expected_at": due.isoformat()[:19] + "Z"}]
    assert again.json()["version"] == expected.json()["version"]
    assert atp.status_code == 200, atp.text
    days = atp.json()["days"]
    assert date.fromisoformat(days[0]["date"]) == today
    assert [d["available_to_promise"] for d in days] == [4, 4, 14, 14, 14]
    default = client.get(f"{base}/atp").json()
    assert len(default["days"]) == 14 and default["sku"] == sku

    view = _availability_at(client, sku, expected.json()["version"])
    assert (view["incoming_total"], view["in_transit"]) == (10, 0)

    received = client.post(f"{base}/receipts", json={"quantity": 10, "reference": "PO-42"})
    assert (received.json()["on_hand"], received.json()["incoming_total"]) == (14, 0)


def test_bad_state_input_is_422_and_records_nothing(client: httpx.Client):
    sku = _sku()
    base = f"/api/stock/{sku}/STORE-1"
    assert client.post(f"{base}/receipts", json={"quantity": 3}).status_code == 200
    before = len(_events(client, base))

    answers = [
        client.post(f"{base}/state-moves", json={"quantity": 1, "from": "sellable",
                                                  "to": "sellable"}),
        client.post(f"{base}/state-moves", json={"quantity": 1, "from": "sellable",
                                                  "to": "lost"}),
        client.put(f"{base}/incoming/PO-1", json={"quantity": 1,
                                                  "expected_at": "2030-01-01T00:00:00"}),
        client.put(f"{base}/incoming/bad%20ref", json={"quantity": 1,
                                                       "expected_at": "2030-01-01T00:00:00Z"}),
        client.get(f"{base}/atp", params={"days": 91}),
        client.post(f"{base}/receipts", json={"quantity": 1, "state": "missing"}),
    ]

    assert [a.status_code for a in answers] == [422] * len(answers)
    assert all(a.headers["content-type"].startswith("application/problem+json")
               for a in answers)
    refused = client.post(f"{base}/state-moves", json={"quantity": 4, "from": "sellable",
                                                        "to": "damaged"})
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:stockstream:problems:insufficient-stock"
    assert len(_events(client, base)) == before
