"""Validating incoming CloudEvents against the registry (``contracts.validation``)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.cloudevents import WIRE_TYPES, to_cloudevent, wire_versions
from contracts.validation import (
    DEFAULT_REGISTRY,
    SchemaValidationFailed,
    UnknownEventType,
    load_registry,
    validate_cloudevent,
    validate_message_body,
)
from domain.errors import DomainError
from domain.stock_item import StockItem

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def a_day_of_trading() -> list[StockItem.Event]:
    """Every kind of event, from real commands on the aggregate."""
    item = StockItem.create("SKU-42", "store-7")
    item.receive(20, reference="PO-1001", idempotency_key="rcpt-1")
    item.set_policy(safety_stock=2, oversell_buffer=1)
    item.reserve("order-1", 5, "web", expires_at=T0 + timedelta(minutes=15))
    item.reserve("order-1", 3, "web")
    item.reserve("order-2", 2, "pos")
    item.release("order-2")
    item.fulfil("order-1", 2)
    item.adjust(-1, "damaged")
    item.reserve("order-3", 1, "wms", expires_at=T0)
    item.expire_overdue(T0 + timedelta(seconds=1))
    item.record_count("count-1", 15, T0)
    item.move(2, "sellable", "damaged", reason="dented in the stockroom")
    item.set_incoming("PO-2002", 10, T0 + timedelta(days=2))
    item.receive(4, reference="PO-2002", state="quality_control")
    item.record_count("count-2", 1, T0, state="damaged")
    item.ship_transfer("transfer-1", 3, "store-8")
    store = StockItem.create("SKU-42", "store-8")
    store.expect_transfer("transfer-1", 3, T0 + timedelta(days=1), "store-7")
    store.receive_transfer("transfer-1", 2, 3, "store-7")
    store.record_transit_loss("transfer-1", 1, "store-7")
    return [cast(StockItem.Event, e) for e in [*item.collect_events(), *store.collect_events()]]


def a_reservation() -> dict[str, Any]:
    item = StockItem.create("SKU-1", "store-1")
    item.receive(10)
    item.reserve("order-9", 4, "web")
    return to_cloudevent(cast(StockItem.Event, item.collect_events()[-1]))


def test_every_event_of_a_run_of_real_commands_validates() -> None:
    events = a_day_of_trading()

    validated = [validate_cloudevent(to_cloudevent(e, w)) for e in events
                 for w in wire_versions(e)]

    assert {v.cloudevents_type for v in validated} == {w.type for w in WIRE_TYPES}
    current = [validate_cloudevent(to_cloudevent(e)) for e in events]
    assert [v.cloudevents_type for v in current] == [to_cloudevent(e)["type"] for e in events]


COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), st.integers(1, 50)),
        st.tuples(st.just("adjust"), st.integers(-20, 20)),
        st.tuples(st.just("reserve"), st.integers(1, 30), st.sampled_from(["o1", "o2", "o3"])),
        st.tuples(st.just("release"), st.sampled_from(["o1", "o2", "o3"])),
        st.tuples(st.just("fulfil"), st.sampled_from(["o1", "o2", "o3"])),
        st.tuples(st.just("count"), st.integers(0, 80), st.sampled_from(["c1", "c2"])),
        st.tuples(st.just("policy"), st.integers(0, 5), st.integers(0, 5)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(COMMANDS)
def test_every_event_of_any_command_sequence_validates(commands: list[tuple[Any, ...]]) -> None:
    item = StockItem.create("SKU-9", "dc-1")
    for command, *args in commands:
        try:
            if command == "receive":
                item.receive(args[0])
            elif command == "adjust":
                item.adjust(args[0], "correction")
            elif command == "reserve":
                item.reserve(args[1], args[0], "web", expires_at=T0)
            elif command == "release":
                item.release(args[0])
            elif command == "fulfil":
                item.fulfil(args[0])
            elif command == "count":
                item.record_count(args[1], args[0], T0)
            else:
                item.set_policy(args[0], args[1])
        except DomainError:
            continue
    for event in item.collect_events():
        validate_cloudevent(to_cloudevent(cast(StockItem.Event, event)))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        target[last] = value
    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        del target[last]
    return mutate


# (case, mutation, the field path the failure must name)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("quantity below its minimum", _set("data.quantity", 0), "data.quantity"),
    ("quantity of the wrong type", _set("data.quantity", "4"), "data.quantity"),
    ("missing order id", _delete("data.order_id"), "data.order_id"),
    ("sku of the wrong form", _set("data.sku", "SKU 1"), "data.sku"),
    ("reserved below zero", _set("data.reserved", -1), "data.reserved"),
    ("expiry without a time zone", _set("data.expires_at", "2026-11-26T08:00:00"),
     "data.expires_at"),
    ("occurred-at not a timestamp", _set("time", "yesterday"), "time"),
    ("occurred-at without a time zone", _set("time", "2026-11-26T08:00:00"), "time"),
    ("missing id", _delete("id"), "id"),
    ("sequence zero", _set("sequence", 0), "sequence"),
    ("wrong specversion", _set("specversion", "0.3"), "specversion"),
    ("malformed type", _set("type", "stock reserved"), "type"),
    ("data not an object", _set("data", [1, 2]), "data"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), INVALID, ids=[i[0] for i in INVALID])
def test_an_invalid_event_fails_naming_the_field(
    case: str, mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    doc = a_reservation()
    mutate(doc)

    with pytest.raises(SchemaValidationFailed) as failure:
        validate_cloudevent(doc)

    assert failure.value.reason == "SchemaValidationFailed"
    assert failure.value.field == field
    assert f"{field}:" in failure.value.description


def test_a_body_that_is_not_an_object_fails() -> None:
    with pytest.raises(SchemaValidationFailed, match="not a CloudEvent object"):
        validate_cloudevent([a_reservation()])


def test_the_description_lists_every_failing_field() -> None:
    doc = a_reservation()
    doc["data"]["quantity"] = 0
    doc["data"]["channel"] = "w e b"

    with pytest.raises(SchemaValidationFailed) as failure:
        validate_cloudevent(doc)

    assert "data.quantity:" in failure.value.description
    assert "data.channel:" in failure.value.description
    assert "Stockstream.StockReserved.v1" in failure.value.description


def test_unknown_members_are_accepted_as_a_tolerant_reader_would() -> None:
    doc = a_reservation()
    doc["data"]["loyalty_tier"] = "gold"
    doc["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    assert validate_cloudevent(doc).name == "StockReserved"


def test_a_future_version_is_reported_as_unknown_not_as_invalid() -> None:
    doc = a_reservation()
    doc["type"] = "Stockstream.StockReserved.v7"
    doc["data"] = {"anything": "new"}

    with pytest.raises(UnknownEventType) as unknown:
        validate_cloudevent(doc)

    assert not isinstance(unknown.value, SchemaValidationFailed)
    assert unknown.value.reason == "UnknownEventType"
    assert unknown.value.known_versions == (1,)
    assert unknown.value.event_type == "Stockstream.StockReserved.v7"
    assert "skip or park" in unknown.value.description


def test_a_new_event_type_is_reported_as_unknown() -> None:
    doc = a_reservation()
    doc["type"] = "Stockstream.StockTransferred.v1"

    with pytest.raises(UnknownEventType) as unknown:
        validate_cloudevent(doc)

    assert unknown.value.known_versions == ()


def test_a_malformed_envelope_of_an_unknown_type_is_invalid_not_unknown() -> None:
    doc = a_reservation()
    doc["type"] = "Stockstream.StockTransferred.v1"
    del doc["subject"]

    with pytest.raises(SchemaValidationFailed) as failure:
        validate_cloudevent(doc)

    assert failure.value.field == "subject"


def test_validators_are_compiled_once() -> None:
    registry = load_registry(DEFAULT_REGISTRY)
    validate_cloudevent(a_reservation())

    assert load_registry(DEFAULT_REGISTRY) is registry
    first = registry.data_validator("Stockstream.StockReserved.v1")
    assert registry.data_validator("Stockstream.StockReserved.v1") is first


def test_validation_does_not_change_the_document() -> None:
    doc = a_reservation()
    before = copy.deepcopy(doc)

    validate_cloudevent(doc)

    assert doc == before


def test_a_message_body_is_parsed_and_validated() -> None:
    body = json.dumps(a_reservation()).encode()

    doc, event = validate_message_body(body)

    assert event.cloudevents_type == doc["type"] == "Stockstream.StockReserved.v1"


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
def test_a_body_that_is_not_json_fails_validation(body: bytes) -> None:
    with pytest.raises(SchemaValidationFailed, match="not UTF-8 JSON"):
        validate_message_body(body)
