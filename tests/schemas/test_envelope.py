"""The envelope ``cloudevent_document`` builds without the ``CloudEvent`` model is the
model's, byte for byte: the published bytes must not change with how they are built."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.cloudevents import to_cloudevent, wire_versions
from contracts.events import CloudEvent
from domain.stock_item import StockItem
from tests.events import stock_events
from tests.schemas.test_validation import a_day_of_trading


def through_the_model(document: dict[str, Any], event: StockItem.Event) -> bytes:
    """What the relay published before: the envelope validated and dumped by the model."""
    model = CloudEvent(**{**document, "time": event.timestamp})
    return json.dumps(model.model_dump(mode="json"), separators=(",", ":")).encode()


def published(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def test_every_wire_type_of_a_day_of_trading_has_the_models_bytes() -> None:
    pairs = [(e, w) for e in a_day_of_trading() for w in wire_versions(e)]

    for event, wire in pairs:
        document = to_cloudevent(event, wire)
        assert published(document) == through_the_model(document, event), wire.type
    assert len({w.type for _, w in pairs}) >= 14


@pytest.mark.parametrize("timestamp", [
    datetime(2026, 12, 3, 7, 30, tzinfo=UTC),
    datetime(2026, 12, 3, 7, 30, 1, 5, tzinfo=UTC),
    datetime(2026, 12, 3, 7, 30, 1, 123456, tzinfo=UTC),
])
def test_the_time_is_serialised_as_the_model_serialises_it(timestamp: datetime) -> None:
    item = StockItem.create("SKU-1", "store-1")
    item.receive(3)
    (event,) = stock_events(item)[-1:]
    object.__setattr__(event, "timestamp", timestamp)

    document = to_cloudevent(event)

    assert published(document) == through_the_model(document, event)
    assert document["time"].startswith("2026-12-03T07:30:")
