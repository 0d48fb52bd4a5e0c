"""Stock states change the event contract additively (docs/stock-states.md, docs/downstream.md).

``fixtures/before_states`` is the registry as published before states (commit ec0bb73).
The registry generated now must be backward compatible with it, a document published
then must validate now, and a document published now must validate under the old
schemas (an old consumer keeps working: it ignores what it does not know).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator

from contracts.cloudevents import WIRE_TYPES, to_cloudevent
from contracts.events import StockCountedV1, StockReceivedV1
from contracts.registry import build_registry, compare_registries
from contracts.validation import validate_cloudevent
from domain.stock_item import StockItem

BEFORE = Path(__file__).parent / "fixtures" / "before_states"
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def before_states() -> dict[str, Any]:
    return {path.relative_to(BEFORE).as_posix(): json.loads(path.read_text())
            for path in BEFORE.rglob("*.json")}


def test_the_registry_is_backward_compatible_with_the_one_before_states() -> None:
    assert compare_registries(before_states(), build_registry()) == []


def test_no_type_changed_version_and_the_new_types_are_v1() -> None:
    old = {(e["name"], e["version"]) for e in before_states()["index.json"]["events"]}
    new = {(w.name, w.version) for w in WIRE_TYPES}
    assert old <= new
    assert sorted(new - old) == [
        ("StockIncomingSet", 1), ("StockStateMoved", 1), ("StockTransferReceived", 1),
        ("StockTransferShipped", 1), ("StockTransitLost", 1)]


def events_with_states() -> list[StockItem.Event]:
    item = StockItem.create("SKU-42", "store-7")
    item.receive(20, reference="PO-1")
    item.set_incoming("PO-2", 6, T0 + timedelta(days=1))
    item.receive(3, reference="PO-2", state="quality_control")
    item.move(2, "sellable", "damaged", reason="dented")
    item.adjust(-1, "damaged", state="damaged")
    item.record_count("count-1", 18, T0)
    item.ship_transfer("transfer-1", 4, "store-8")
    return [cast(StockItem.Event, e) for e in item.collect_events()]


def test_documents_published_now_validate_under_the_schemas_before_states() -> None:
    old = before_states()
    index = {e["cloudevents_type"]: e["schema"] for e in old["index.json"]["events"]}
    checked = 0
    for event in events_with_states():
        document = to_cloudevent(event)
        validate_cloudevent(document)
        if document["type"] in index:  # a type an old consumer knows
            Draft202012Validator(old[index[document["type"]]]).validate(document["data"])
            checked += 1
    assert checked >= 5


def test_a_document_published_before_states_reads_as_all_sellable() -> None:
    published = {"sku": "SKU-42", "location": "store-7", "on_hand": 20, "reserved": 3,
                 "available": 17, "quantity": 20, "reference": "PO-1"}
    data = StockReceivedV1.model_validate(published)
    assert (data.state, data.sellable, data.held.damaged, data.held.quality_control,
            data.incoming_total, data.in_transit, data.incoming_remaining) == (
        "sellable", None, 0, 0, 0, 0, None)
    count = StockCountedV1.model_validate({
        "sku": "SKU-42", "location": "store-7", "on_hand": 5, "reserved": 0, "available": 5,
        "count_id": "c", "counted": 5, "previous_on_hand": 6, "delta": -1,
        "counted_at": "2026-11-26T08:00:00Z"})
    assert count.state == "sellable"


def test_the_position_members_say_what_the_event_left() -> None:
    moved = next(e for e in events_with_states() if isinstance(e, StockItem.StateMoved))
    data = to_cloudevent(moved)["data"]
    assert (data["on_hand"], data["sellable"], data["held"], data["available"]) == (
        23, 18, {"damaged": 2, "quality_control": 3}, 18)
    assert (data["from_state"], data["to_state"], data["incoming_total"]) == (
        "sellable", "damaged", 3)
    assert "idempotency_key" not in data
