"""Identifiers, quantities and the names a SKU-location is stored and published under."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.errors import InvalidIdentifier, InvalidQuantity
from domain.identifiers import (
    event_id,
    require_identifier,
    require_quantity,
    stream_name,
    stream_uuid,
)


@pytest.mark.parametrize("value", ["a", "A-z_0.9", "x" * 64])
def test_an_identifier_of_1_to_64_plain_characters_is_returned_as_is(value: str) -> None:
    assert require_identifier("sku", value) == value


@pytest.mark.parametrize(("value", "shown"), [
    ("x" * 65, "x" * 65), ("", ""), ("a b", "a b"), (12, 12), (None, "None"), (1.5, "1.5"),
])
def test_an_invalid_identifier_names_its_field_and_the_value_sent(value: object,
                                                                  shown: object) -> None:
    with pytest.raises(InvalidIdentifier) as refused:
        require_identifier("order_id", value)
    assert refused.value.details == {"field": "order_id", "value": shown}
    assert "order_id" in refused.value.message and repr(value) in refused.value.message


def test_a_quantity_is_a_whole_number_of_at_least_the_minimum() -> None:
    assert require_quantity("delta", -7) == -7  # no minimum: any whole number
    assert require_quantity("quantity", 1, minimum=1) == 1
    with pytest.raises(InvalidQuantity) as below:
        require_quantity("quantity", 0, minimum=1)
    assert below.value.details == {"field": "quantity"}
    assert "at least 1" in below.value.message and "0" in below.value.message
    for not_whole in (True, 2.0, "2", None):
        with pytest.raises(InvalidQuantity) as refused:
            require_quantity("quantity", not_whole)
        assert refused.value.details == {"field": "quantity"}
        assert repr(not_whole) in refused.value.message


def test_a_sku_location_is_one_stream_with_a_fixed_id_and_event_ids() -> None:
    assert stream_name("SKU-1", "STORE-7") == "SKU-1|STORE-7"
    # Fixed forever: stored streams are found by it.
    assert stream_uuid("SKU-1", "STORE-7") == UUID("213f89c8-46f5-5d9c-8196-aa50b176849f")
    assert stream_uuid("SKU-1", "STORE-7") != stream_uuid("sku-1", "STORE-7")
    assert event_id("SKU-1", "STORE-7", 12) == "SKU-1|STORE-7:12"
    with pytest.raises(InvalidIdentifier) as refused:
        stream_name("SKU-1", "STORE 7")
    assert refused.value.details["field"] == "location"
    with pytest.raises(InvalidIdentifier) as refused:
        event_id("SKU 1", "STORE-7", 1)
    assert refused.value.details["field"] == "sku"
