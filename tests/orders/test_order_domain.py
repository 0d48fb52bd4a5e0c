"""The Order process and LocationGroup aggregates on their own: decisions, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.application import project_aggregate

from domain.errors import (
    FulfilmentConflict,
    InvalidIdentifier,
    InvalidQuantity,
    InvalidRequest,
    OrderClosed,
    OrderConflict,
    UnknownLocationGroup,
)
from domain.location_group import GroupDefinition, LocationGroup, choose_location
from domain.order import Order, OrderRequest, OrderStep
from tests.unit.test_stock_item_properties import MAPPER

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def line(sku: str = "A", quantity: int = 1, *, location: str | None = "S1",
         group: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"sku": sku, "quantity": quantity}
    if group is not None:
        found["location_group"] = group
    elif location is not None:
        found["location"] = location
    return found


def request(*lines: dict[str, Any], mode: str = "all_or_nothing",
            ttl: int | None = None, order_id: str = "o-1") -> OrderRequest:
    return OrderRequest.of(order_id, "web", list(lines), mode, ttl)


def unlimited(sku: str, location: str) -> int:
    return 1000


def placed(req: OrderRequest, capacity: Callable[[str, str], int] = unlimited,
           groups: dict[str, GroupDefinition] | None = None) -> Order:
    order = Order.create(req.order_id)
    order.place(req, NOW, groups or {}, capacity)
    return order


def drive(order: Order, refuse: dict[str, int] | None = None) -> Order:
    """Do every step as a stock stream would: hold unless ``refuse`` names the hold."""
    refuse = refuse or {}
    while (step := order.next_step()) is not None:
        if step.kind == "hold" and step.key in refuse:
            order.record_refused(step, refuse[step.key])
        elif step.kind == "hold":
            order.record_held(step)
        elif step.kind == "fulfil":
            order.record_fulfilled(step, step.quantity)
        elif step.kind == "reschedule":
            order.record_rescheduled(step)
        else:
            order.record_released(step, "cancelled")
    return order


def names(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("lines", "error", "field"),
    [
        ([], InvalidRequest, "lines"),
        ([line()] * 101, InvalidRequest, "lines"),
        ([line(quantity=0)], InvalidQuantity, "lines[0].quantity"),
        ([line(quantity=True)], InvalidQuantity, "lines[0].quantity"),
        ([{"sku": "A", "quantity": 1}], InvalidRequest, "lines[0]"),
        ([{**line(), "location_group": "g"}], InvalidRequest, "lines[0]"),
        ([line(sku="bad sku")], InvalidIdentifier, "lines[0].sku"),
        ([line(), line(location="x/y")], InvalidIdentifier, "lines[1].location"),
        ([line(group="no group!")], InvalidIdentifier, "lines[0].location_group"),
        ([line(quantity=600_000_000), line(quantity=400_000_001, location="S2")],
         InvalidRequest, "lines"),
    ],
)
def test_a_bad_placement_is_refused_naming_its_field(
    lines: list[dict[str, Any]], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as refused:
        OrderRequest.of("o-1", "web", lines)
    assert refused.value.details["field"] == field  # type: ignore[attr-defined]


def test_a_hundred_lines_are_accepted_and_a_bad_mode_or_ttl_is_not() -> None:
    assert len(OrderRequest.of("o-1", "web", [line()] * 100).lines) == 100
    with pytest.raises(InvalidRequest):
        OrderRequest.of("o-1", "web", [line()], mode="some")
    with pytest.raises(InvalidQuantity):
        OrderRequest.of("o-1", "web", [line()], ttl_seconds=0)
    with pytest.raises(InvalidIdentifier):
        OrderRequest.of("o 1", "web", [line()])


def test_a_line_naming_an_unknown_group_is_refused_and_nothing_is_recorded() -> None:
    order = Order.create("o-1")
    with pytest.raises(UnknownLocationGroup) as refused:
        order.place(request(line(), line(group="north")), NOW, {}, unlimited)
    assert refused.value.details["field"] == "lines[1].location_group"
    assert order.version == 1 and len(order.pending_events) == 1  # only the unsaved Created


# ------------------------------------------------------- summing and sourcing


def test_lines_on_one_sku_location_become_one_hold_of_their_sum() -> None:
    order = placed(request(line("A", 2), line("B", 1), line("A", 3)))
    step = order.next_step()
    assert step is not None and (step.kind, step.key, step.quantity) == ("hold", "A|S1", 5)
    assert sorted(order.holds) == ["A|S1", "B|S1"]


def test_holds_are_taken_in_a_stable_order_whatever_the_order_of_the_lines() -> None:
    first = drive_keys(placed(request(line("B"), line("A", location="S2"), line("A"))))
    second = drive_keys(placed(request(line("A"), line("B"), line("A", location="S2"))))
    assert first == second == ["A|S1", "A|S2", "B|S1"]


def drive_keys(order: Order) -> list[str]:
    keys = []
    while (step := order.next_step()) is not None:
        keys.append(step.key)
        order.record_held(step)
    return keys


def test_priority_takes_the_first_location_that_holds_the_whole_line() -> None:
    group = GroupDefinition.of("north", ["S1", "S2", "S3"], "priority")
    room = {"S1": 2, "S2": 5, "S3": 9}
    assert choose_location(group, 3, room.__getitem__) == "S2"
    assert choose_location(group, 2, room.__getitem__) == "S1"
    assert choose_location(group, 10, room.__getitem__) is None


def test_most_available_takes_the_location_with_the_most_room_earliest_on_ties() -> None:
    group = GroupDefinition.of("north", ["S1", "S2", "S3"], "most_available")
    assert choose_location(group, 1, {"S1": 4, "S2": 7, "S3": 7}.__getitem__) == "S2"
    assert choose_location(group, 8, {"S1": 4, "S2": 7, "S3": 7}.__getitem__) is None


def test_a_group_line_counts_what_the_order_already_puts_at_a_location() -> None:
    group = GroupDefinition.of("north", ["S1", "S2"], "priority")
    capacity = {("A", "S1"): 5, ("A", "S2"): 5}
    order = placed(request(line("A", 3), line("A", 3, group="north")),
                   lambda s, loc: capacity[s, loc], {"north": group})
    assert order.line_locations == ["S1", "S2"]  # S1 has 5, 3 of them for line 0
    assert order.view().lines[1].location == "S2"


def test_a_group_line_no_location_can_hold_fails_an_all_or_nothing_order_at_once() -> None:
    group = GroupDefinition.of("north", ["S1", "S2"], "most_available")
    order = placed(request(line("B"), line("A", 4, group="north")),
                   lambda s, loc: {"S1": 1, "S2": 3}[loc], {"north": group})
    assert order.next_step() is None and order.status == "failed"
    assert order.short_lines() == [
        {"sku": "A", "location_group": "north", "requested": 4, "available": 3}]


# ------------------------------------------------------------ outcomes


def test_all_or_nothing_releases_what_it_held_on_the_first_refusal() -> None:
    order = placed(request(line("A"), line("B"), line("C")))
    order.record_held(order.next_step())  # type: ignore[arg-type]
    step = order.next_step()
    assert step is not None and step.key == "B|S1"
    order.record_refused(step, 0)
    compensation = order.next_step()
    assert compensation is not None and (compensation.kind, compensation.key) == (
        "release", "A|S1")
    order.record_released(compensation, "compensation")
    assert order.next_step() is None and order.status == "failed"
    assert order.holds["C|S1"]["state"] == "pending"  # never asked
    assert order.short_lines() == [
        {"sku": "B", "location": "S1", "requested": 1, "available": 0}]


def test_partial_holds_what_it_can_and_says_so_per_line() -> None:
    order = drive(placed(request(line("A"), line("B", 2), mode="partial")),
                  refuse={"B|S1": 1})
    assert order.status == "partially_held"
    assert [(ln.sku, ln.held) for ln in order.view().lines] == [("A", 1), ("B", 0)]


def test_partial_with_nothing_held_fails() -> None:
    order = drive(placed(request(line("A"), mode="partial")), refuse={"A|S1": 0})
    assert order.status == "failed"


def test_every_line_held_is_held() -> None:
    order = drive(placed(request(line("A"), line("B"))))
    assert order.status == "held" and order.next_step() is None


# ------------------------------------------------------------ idempotency


def test_the_same_request_again_records_nothing() -> None:
    order = drive(placed(request(line("A"), ttl=60)))
    order.collect_events()
    order.place(request(line("A"), ttl=60), NOW + timedelta(seconds=5), {}, unlimited)
    assert names(order) == []


def test_a_request_differing_only_in_ttl_moves_the_expiry_of_every_hold() -> None:
    order = drive(placed(request(line("A"), line("B"), ttl=60)))
    order.collect_events()
    order.place(request(line("A"), line("B"), ttl=600), NOW, {}, unlimited)
    assert order.expires_at == NOW + timedelta(seconds=600)
    steps = []
    while (step := order.next_step()) is not None:
        steps.append((step.kind, step.key, step.expires_at))
        order.record_rescheduled(step)
    assert steps == [("reschedule", "A|S1", order.expires_at),
                     ("reschedule", "B|S1", order.expires_at)]
    assert names(order) == ["Rescheduled", "HoldRescheduled", "HoldRescheduled"]


@pytest.mark.parametrize(
    "other",
    [
        request(line("A", 2)),
        request(line("A"), mode="partial"),
        request(line("A"), line("B")),
        OrderRequest.of("o-1", "pos", [line("A")]),
    ],
)
def test_another_request_for_an_open_order_is_a_conflict(other: OrderRequest) -> None:
    order = drive(placed(request(line("A"))))
    with pytest.raises(OrderConflict):
        order.place(other, NOW, {}, unlimited)


def test_a_failed_order_placed_again_runs_again_reopening_its_holds() -> None:
    order = drive(placed(request(line("A"), line("B"))), refuse={"B|S1": 0})
    assert order.status == "failed"
    order.place(request(line("A"), line("B")), NOW, {}, unlimited)
    step = order.next_step()
    assert step is not None and (step.attempt, step.reopen) == (2, True)
    assert drive(order).status == "held"


@pytest.mark.parametrize("closing", ["release", "fulfil"])
def test_a_closed_order_refuses_a_new_placement(closing: str) -> None:
    order = drive(placed(request(line("A"))))
    if closing == "release":
        order.request_release()
    else:
        order.request_fulfilment()
    drive(order)
    with pytest.raises(OrderClosed):
        order.place(request(line("A")), NOW, {}, unlimited)


def test_release_is_idempotent_and_refused_after_fulfilment() -> None:
    order = drive(placed(request(line("A"), line("B"))))
    order.request_release()
    drive(order)
    order.collect_events()
    order.request_release()
    assert names(order) == [] and order.status == "released"
    with pytest.raises(OrderClosed):
        order.request_fulfilment()
    shipped = drive(placed(request(line("A"))))
    shipped.request_fulfilment()
    drive(shipped)
    with pytest.raises(OrderClosed):
        shipped.request_release()


def test_fulfilment_of_some_lines_leaves_the_others_held_and_repeats_are_no_ops() -> None:
    order = drive(placed(request(line("A", 3), line("B"))))
    order.request_fulfilment([{"sku": "A", "location": "S1", "quantity": 2}])
    drive(order)
    assert order.status == "held"
    assert order.holds["A|S1"]["fulfilled"] == 2 and order.holds["B|S1"]["state"] == "held"
    order.collect_events()
    order.request_fulfilment([{"sku": "A", "location": "S1", "quantity": 2}])
    assert names(order) == []
    with pytest.raises(FulfilmentConflict):
        order.request_fulfilment([{"sku": "A", "location": "S1", "quantity": 3}])
    order.request_fulfilment()
    drive(order)
    assert order.status == "fulfilled"
    order.collect_events()
    order.request_fulfilment()
    assert names(order) == []


def test_a_fulfilment_naming_a_line_the_order_does_not_hold_is_refused() -> None:
    order = drive(placed(request(line("A"), line("B"), mode="partial")), refuse={"B|S1": 0})
    with pytest.raises(InvalidRequest):
        order.request_fulfilment([{"sku": "B", "location": "S1", "quantity": 1}])
    with pytest.raises(InvalidRequest):
        order.request_fulfilment([{"sku": "A", "location": "S1", "quantity": 2}])


def test_an_expired_order_is_released_and_then_closed() -> None:
    order = drive(placed(request(line("A"), ttl=60)))
    order.expire(NOW + timedelta(seconds=59))
    assert order.status == "held"
    order.expire(NOW + timedelta(seconds=60))
    drive(order)
    assert order.status == "released" and order.release_reason == "expired"


# ---------------------------------------------------------- stale steps


def test_a_step_recorded_twice_or_out_of_turn_records_nothing() -> None:
    order = placed(request(line("A"), line("B")))
    first = order.next_step()
    assert first is not None
    order.record_held(first)
    order.collect_events()
    order.record_held(first)
    order.record_refused(first, 0)
    stale = OrderStep("hold", "o-1", 1, "C", "S1", 1, "web", None)
    order.record_held(stale)
    assert names(order) == []


def test_a_hold_the_order_no_longer_wants_is_recognised() -> None:
    order = placed(request(line("A"), line("B")))
    a_step = order.next_step()
    assert a_step is not None
    order.record_refused(a_step, 0)
    assert order.status == "failed"
    assert not order.wants(a_step)


# ------------------------------------------------------------- stored form


def test_every_order_event_survives_the_store_s_transcoding() -> None:
    order = drive(placed(request(line("A", 2), line("B"), line("A", group="g"), ttl=30),
                         groups={"g": GroupDefinition.of("g", ["S1", "S2"], "priority")}))
    order.place(request(line("A", 2), line("B"), line("A", group="g"), ttl=90), NOW,
                {}, unlimited)
    drive(order)
    order.request_fulfilment([{"sku": "B", "location": "S1", "quantity": 1}])
    drive(order)
    order.request_release()
    drive(order)
    events = order.collect_events()
    copy = project_aggregate(None, [MAPPER.to_domain_event(MAPPER.to_stored_event(e))
                                    for e in events])
    assert copy is not None and vars(copy) == vars(order)
    assert copy.status == "released"


def test_a_location_group_records_a_definition_once() -> None:
    group = LocationGroup.create("north")
    group.define(["S1", "S2"], "most_available")
    group.define(["S1", "S2"], "most_available")
    assert [type(e).__name__ for e in group.collect_events()] == ["Created", "Defined"]
    group.define(["S2", "S1"], "most_available")
    assert [type(e).__name__ for e in group.collect_events()] == ["Defined"]
    for bad in ([], ["S1"] * 2, [f"S{n}" for n in range(51)], ["bad loc"]):
        with pytest.raises((InvalidRequest, InvalidIdentifier)):
            group.define(bad, "priority")
    with pytest.raises(InvalidRequest):
        group.define(["S1"], "nearest")
