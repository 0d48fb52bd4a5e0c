"""The order service over the real SQLite stores: holds, answers, expiry, groups."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import StockItem
from domain.errors import (
    InvalidRequest,
    OrderClosed,
    OrderConflict,
    OrderShort,
    UnknownGroup,
    UnknownLocationGroup,
    UnknownOrder,
)
from tests.orders.conftest import START, World, line


def test_an_order_holds_each_sku_location_as_a_reservation_keyed_by_its_id(
    world: World,
) -> None:
    world.commands.receive("A", "S1", 10)
    world.commands.receive("B", "S1", 10)
    answer = world.orders().place("o-1", "web", [line("A", 2), line("B"), line("A", 3)],
                                  ttl_seconds=60)
    assert answer.created and answer.order.status == "held"
    assert [(ln.sku, ln.location, ln.quantity, ln.held) for ln in answer.order.lines] == [
        ("A", "S1", 2, 2), ("B", "S1", 1, 1), ("A", "S1", 3, 3)]
    assert world.reserved("A", "S1") == {"o-1": 5}  # summed, one reservation
    assert world.reserved("B", "S1") == {"o-1": 1}
    item = world.stock.get("A", "S1")
    assert item is not None
    assert item.reservations["o-1"]["expires_at"] == START + timedelta(seconds=60)
    assert answer.order.expires_at == START + timedelta(seconds=60)


def test_the_same_request_again_answers_200_and_records_nothing(world: World) -> None:
    world.commands.receive("A", "S1", 10)
    orders = world.orders()
    orders.place("o-1", "web", [line("A", 2)])
    stock_events, order_events = world.stock.max_position(), world.order_events("o-1")
    again = orders.place("o-1", "web", [line("A", 2)])
    assert not again.created and again.order.status == "held"
    assert world.stock.max_position() == stock_events
    assert world.order_events("o-1") == order_events


def test_all_or_nothing_leaves_nothing_held_and_names_the_short_lines(world: World) -> None:
    world.commands.receive("A", "S1", 5)
    world.commands.receive("C", "S1", 5)
    world.commands.receive("B", "S1", 1)
    with pytest.raises(OrderShort) as short:
        world.orders().place("o-1", "web", [line("C"), line("B", 2), line("A")])
    assert short.value.code == "insufficient-stock"
    assert short.value.lines == [{"sku": "B", "location": "S1", "requested": 2,
                                  "available": 1}]
    assert world.reserved("A", "S1") == world.reserved("B", "S1") == {}
    assert world.reserved("C", "S1") == {}
    assert world.order_events("o-1") == [
        "Created", "Placed", "Sourced", "Held", "Refused", "Released", "Concluded"]


def test_a_failed_order_placed_again_holds_again_on_the_streams_it_released(
    world: World,
) -> None:
    world.commands.receive("A", "S1", 5)
    orders = world.orders()
    with pytest.raises(OrderShort):
        orders.place("o-1", "web", [line("A"), line("B")])
    world.commands.receive("B", "S1", 1)
    answer = orders.place("o-1", "web", [line("A"), line("B")])
    assert answer.created and answer.order.status == "held"
    assert world.reserved("A", "S1") == world.reserved("B", "S1") == {"o-1": 1}


def test_partial_holds_what_it_can(world: World) -> None:
    world.commands.receive("A", "S1", 5)
    answer = world.orders().place("o-1", "web", [line("A", 2), line("B")], mode="partial")
    assert answer.created and answer.order.status == "partially_held"
    assert [ln.held for ln in answer.order.lines] == [2, 0]
    with pytest.raises(OrderShort):
        world.orders().place("o-2", "web", [line("B")], mode="partial")


def test_a_new_ttl_moves_every_hold_s_expiry_and_another_change_conflicts(
    world: World,
) -> None:
    world.commands.receive("A", "S1", 5)
    world.commands.receive("B", "S1", 5)
    orders = world.orders()
    orders.place("o-1", "web", [line("A"), line("B")], ttl_seconds=60)
    world.clock.advance(30)
    answer = orders.place("o-1", "web", [line("A"), line("B")], ttl_seconds=600)
    assert not answer.created
    expected = START + timedelta(seconds=630)
    assert answer.order.expires_at == expected
    for sku in ("A", "B"):
        item = world.stock.get(sku, "S1")
        assert item is not None and item.reservations["o-1"]["expires_at"] == expected
    with pytest.raises(OrderConflict):
        orders.place("o-1", "web", [line("A", 2), line("B")], ttl_seconds=600)


def test_release_frees_every_hold_once_and_closes_the_order(world: World) -> None:
    world.commands.receive("A", "S1", 5)
    orders = world.orders()
    with pytest.raises(UnknownOrder):
        orders.release("o-1")
    orders.place("o-1", "web", [line("A", 2)])
    assert orders.release("o-1").status == "released"
    assert world.reserved("A", "S1") == {}
    position = world.stock.max_position()
    assert orders.release("o-1").status == "released"
    assert world.stock.max_position() == position
    with pytest.raises(OrderClosed):
        orders.fulfil("o-1")
    with pytest.raises(OrderClosed):
        orders.place("o-1", "web", [line("A", 2)])


def test_fulfilment_ships_the_holds_once_and_closes_the_order(world: World) -> None:
    world.commands.receive("A", "S1", 5)
    world.commands.receive("B", "S1", 5)
    orders = world.orders()
    orders.place("o-1", "web", [line("A", 2), line("B")])
    some = orders.fulfil("o-1", [{"sku": "A", "location": "S1", "quantity": 1}])
    assert some.status == "held" and [ln.held for ln in some.lines] == [0, 1]
    item = world.stock.get("A", "S1")
    assert item is not None and (item.on_hand, item.reserved) == (4, 0)
    assert orders.fulfil("o-1").status == "fulfilled"
    position = world.stock.max_position()
    assert orders.fulfil("o-1").status == "fulfilled"
    assert world.stock.max_position() == position
    with pytest.raises(OrderClosed):
        orders.release("o-1")
    with pytest.raises(InvalidRequest):
        orders.fulfil("o-1", [])


def test_expired_holds_close_the_order_through_the_sweep(world: World) -> None:
    world.commands.receive("A", "S1", 5)
    orders = world.orders()
    orders.place("o-1", "web", [line("A", 2)], ttl_seconds=60)
    world.clock.advance(59)
    assert orders.sweep() == 0
    world.clock.advance(1)
    assert orders.sweep() == 1
    assert orders.get("o-1").status == "released"
    assert world.reserved("A", "S1") == {}
    assert [e.reason for e in world.stock.events("A", "S1")
            if isinstance(e, StockItem.Released)] == ["expired"]
    assert world.processes.orders.due(world.clock.now() + timedelta(days=1), 10) == []
    with pytest.raises(OrderClosed):
        orders.place("o-1", "web", [line("A", 2)], ttl_seconds=60)


@pytest.mark.parametrize(("strategy", "chosen"), [("priority", "S2"),
                                                  ("most_available", "S3")])
def test_a_group_line_is_held_whole_where_its_strategy_says(
    world: World, strategy: str, chosen: str
) -> None:
    world.commands.receive("A", "S1", 1)
    world.commands.receive("A", "S2", 3)
    world.commands.receive("A", "S3", 8)
    world.groups.define("north", ["S1", "S2", "S3"], strategy)
    answer = world.orders().place("o-1", "web", [line("A", 3, group="north")])
    assert answer.order.lines[0].location == chosen
    assert answer.order.lines[0].location_group == "north"
    assert world.reserved("A", chosen) == {"o-1": 3}


def test_an_unknown_group_is_refused_and_nothing_is_recorded(world: World) -> None:
    with pytest.raises(UnknownLocationGroup) as refused:
        world.orders().place("o-1", "web", [line("A"), line("A", group="nowhere")])
    assert refused.value.details["field"] == "lines[1].location_group"
    assert world.order_events("o-1") == []
    with pytest.raises(UnknownGroup):
        world.groups.get("nowhere")


def test_a_group_is_defined_once_and_read_back(world: World) -> None:
    defined = world.groups.define("north", ["S2", "S1"], "most_available")
    assert world.groups.get("north") == defined
    assert defined.locations == ("S2", "S1") and defined.strategy == "most_available"


def test_a_hold_found_already_taken_gets_the_order_s_expiry(world: World) -> None:
    world.commands.receive("A", "S1", 5)
    world.commands.reserve("A", "S1", "o-1", 2, "web", ttl_seconds=5)  # the line route
    answer = world.orders().place("o-1", "web", [line("A", 2)], ttl_seconds=60)
    item = world.stock.get("A", "S1")
    assert item is not None
    assert item.reservations["o-1"]["expires_at"] == answer.order.expires_at == (
        START + timedelta(seconds=60))
