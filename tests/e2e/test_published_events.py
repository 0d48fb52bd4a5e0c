"""Every message the running service publishes validates against its registered schema,
stock, order and transfer events alike.

A downstream team's subscription (with the standard replay rules) is created before the
host starts; the test drives every kind of command over HTTP, stops the host, and reads
what the team received.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from contracts.processes import PUBLISHED_WIRE_TYPES
from contracts.topology import TOPIC, replay_rules
from contracts.validation import validate_cloudevent
from tests.e2e.conftest import start_host

TEAM = "downstream-team"



def test_every_published_event_validates_against_the_registry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = EmbeddedBroker(data / "broker.db")
    ensure_topology(broker)
    broker.create_subscription(TOPIC, TEAM, rules=replay_rules(TEAM))
    broker.close()

    host = start_host(tmp_path, env={"STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL": "2099-12-31"})
    base = "/api/stock/SKU-E2E/STORE-1"
    with host.client() as client:
        def ok(answer: object) -> None:
            assert answer.status_code in (200, 201), answer.text  # type: ignore[attr-defined]

        ok(client.post(f"{base}/receipts", json={"quantity": 20, "reference": "PO-1"}))
        ok(client.post(f"{base}/adjustments", json={"delta": -1, "reason": "theft",
                                                    "note": "seen on camera"}))
        ok(client.put(f"{base}/policy", json={"safety_stock": 1, "oversell_buffer": 0}))
        ok(client.put(f"{base}/reservations/o-1", json={"quantity": 3, "channel": "web"}))
        ok(client.put(f"{base}/reservations/o-2", json={"quantity": 2, "channel": "pos"}))
        ok(client.post(f"{base}/reservations/o-1/fulfilment", json={}))
        ok(client.delete(f"{base}/reservations/o-2"))
        ok(client.post(f"{base}/counts", json={
            "count_id": "c-1", "counted": 15, "counted_at": datetime.now(UTC).isoformat()}))
        ok(client.post(f"{base}/state-moves", json={"quantity": 2, "from": "sellable",
                                                     "to": "damaged", "reason": "dented"}))
        ok(client.put(f"{base}/incoming/PO-2", json={
            "quantity": 6, "expected_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}))
        ok(client.post(f"{base}/receipts", json={"quantity": 2, "reference": "PO-2",
                                                 "state": "quality_control"}))
        # Orders: every order event type, on a SKU-location of their own.
        orders = "/api/orders"
        ok(client.post("/api/stock/SKU-ORD/STORE-1/receipts", json={"quantity": 5}))
        cart = {"channel": "web", "ttl_seconds": 600,
                "lines": [{"sku": "SKU-ORD", "location": "STORE-1", "quantity": 2}]}
        ok(client.put(f"{orders}/ORD-A/reservation", json=cart))
        ok(client.put(f"{orders}/ORD-A/reservation", json={**cart, "ttl_seconds": 900}))
        ok(client.post(f"{orders}/ORD-A/fulfilment", json={}))
        ok(client.put(f"{orders}/ORD-B/reservation", json=cart))
        ok(client.delete(f"{orders}/ORD-B/reservation"))
        short = client.put(f"{orders}/ORD-C/reservation", json={
            **cart, "lines": [{"sku": "SKU-ORD", "location": "STORE-1", "quantity": 99}]})
        assert short.status_code == 409, short.text
        transfer = "/api/transfers/t-1"
        ok(client.put(transfer, json={"sku": "SKU-E2E", "from_location": "STORE-1",
                                      "to_location": "STORE-2", "quantity": 3}))
        ok(client.post(f"{transfer}/shipment"))
        ok(client.post(f"{transfer}/receipt", json={"quantity": 2}))
        ok(client.post(f"{transfer}/close"))
        # Transfers: a shipment refused (the source cannot spare 99), then cancelled.
        refused = "/api/transfers/t-2"
        ok(client.put(refused, json={"sku": "SKU-E2E", "from_location": "STORE-1",
                                     "to_location": "STORE-2", "quantity": 99}))
        short = client.post(f"{refused}/shipment")
        assert short.status_code == 409, short.text
        ok(client.delete(refused))
        version = client.get(base).json()["version"]
        deadline = time.monotonic() + 10
        while client.get("/api/ops/status").json()["outbox"]["depth"] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    assert host.stop() == 0, host.log()

    broker = EmbeddedBroker(data / "broker.db")
    documents = []
    while receiver := broker.accept_next_session(TOPIC, TEAM, 0.0):
        with receiver:
            while batch := receiver.receive(100, 0.0):
                for message in batch:
                    documents.append(json.loads(message.body))
                    receiver.complete(message)
    dead = broker.counts(TOPIC, "availability").dead_lettered
    broker.close()

    types = {validate_cloudevent(document).cloudevents_type for document in documents}
    assert types == {w.type for w in PUBLISHED_WIRE_TYPES}, (
        "a command kind was not exercised")
    current = [d for d in documents if d["type"] != "Stockstream.StockAdjusted.v1"
               and d["subject"] == "SKU-E2E|STORE-1"]
    assert sorted(d["sequence"] for d in current) == list(range(1, version + 1))
    for order_id in ("ORD-A", "ORD-B", "ORD-C"):  # each order: its session, every version
        mine = [d for d in documents if d["subject"] == f"order:{order_id}"]
        assert sorted(d["sequence"] for d in mine) == list(range(1, len(mine) + 1))
        assert {d["id"] for d in mine} == {f"order:{order_id}:{d['sequence']}" for d in mine}
        assert {d["data"]["order_id"] for d in mine} == {order_id}
    for transfer_id in ("t-1", "t-2"):  # each transfer: its session, every version
        mine = [d for d in documents if d["subject"] == f"transfer:{transfer_id}"]
        assert sorted(d["sequence"] for d in mine) == list(range(1, len(mine) + 1))
        assert {d["id"] for d in mine} == {
            f"transfer:{transfer_id}:{d['sequence']}" for d in mine}
        assert {d["data"]["transfer_id"] for d in mine} == {transfer_id}
    assert dead == 0, "the projection's consumer dead-lettered a published message"
