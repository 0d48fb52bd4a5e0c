"""Crash safety and races: an order killed between two steps is driven to its end by
the next request or the sweep, leaving no hold of a failed order and never overselling."""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from application.commands import CommandResult, StockCommand, StockCommands
from application.orders import Orders
from application.processes import CRASH_POINTS, STALL_AFTER
from domain.errors import DomainError, OrderShort
from domain.order import Order
from tests.orders.conftest import World, line


class Crash(Exception):
    """The process died here."""


class CrashingCommands(StockCommands):
    """The real stock commands, dying at the ``nth`` call of ``method``: ``before`` it
    reaches the stream, or ``after`` it took effect (the order has not recorded it).

    A placement takes its holds together (``run_many``); here they run one after
    another, so that a crash can fall between any two of them: a real group is written
    in one transaction, so what it leaves behind is one of these cases."""

    def __init__(self, world: World, method: str, nth: int, when: str) -> None:
        super().__init__(world.stock, world.clock)
        self.method, self.nth, self.when = method, nth, when
        self.calls: Counter[str] = Counter()
        self.holds: set[StockCommand] = set()

    def plan_reserve(self, *args: Any, **kwargs: Any) -> StockCommand:
        planned = super().plan_reserve(*args, **kwargs)
        self.holds.add(planned)
        return planned

    def run(self, command: StockCommand) -> CommandResult:
        if command in self.holds:
            return self._call("reserve", lambda: super(CrashingCommands, self).run(command))
        return super().run(command)

    def run_many(self, commands: Sequence[StockCommand]) -> list[CommandResult | Exception]:
        outcomes: list[CommandResult | Exception] = []
        for command in commands:
            try:
                outcomes.append(self.run(command))
            except DomainError as refusal:
                outcomes.append(refusal)
        return outcomes

    def _call(self, method: str, perform: Any) -> CommandResult:
        self.calls[method] += 1
        dies = method == self.method and self.calls[method] == self.nth
        if dies and self.when == "before":
            raise Crash(f"before {method} #{self.nth}")
        result: CommandResult = perform()
        if dies:
            raise Crash(f"after {method} #{self.nth}")
        return result

    def release(self, *args: Any, **kwargs: Any) -> CommandResult:
        return self._call("release", lambda: super(CrashingCommands, self).release(
            *args, **kwargs))


FAILING = [line("A"), line("B", 2), line("C", 2), line("A")]
"""Holds A|S1 (2 units, summed), B|S1, then C|S1 is short: compensate A and B."""
SUCCEEDING = [line("A"), line("B", 2), line("C"), line("A")]


def stock_up(world: World) -> None:
    world.commands.receive("A", "S1", 2)
    world.commands.receive("B", "S1", 2)
    world.commands.receive("C", "S1", 1)


def assert_sound(world: World) -> None:
    """No oversell anywhere, and no hold of a failed or released order."""
    orders: dict[str, Order | None] = {}
    for sku in ("A", "B", "C"):
        item = world.stock.get(sku, "S1")
        if item is None:
            continue
        assert item.reserved == sum(int(r["quantity"]) for r in item.reservations.values())
        assert item.reserved <= item.on_hand - item.safety_stock + item.oversell_buffer
        for order_id in item.reservations:
            orders.setdefault(order_id, world.processes.orders.get(order_id))
    for order_id, order in orders.items():
        assert order is not None and order.status in ("held", "partially_held"), order_id


def in_progress(world: World, order_id: str) -> Order:
    order = world.processes.orders.get(order_id)
    assert order is not None and order.status == "placing"
    return order


CRASHES = [("reserve", n, when) for n in (1, 2, 3) for when in ("before", "after")]


@pytest.mark.parametrize(("method", "nth", "when"),
                         [*CRASHES[:5],  # the third reserve is refused: no "after" it
                          *[("release", n, when) for n in (1, 2) for when in ("before", "after")]])
@pytest.mark.parametrize("recovery", ["resume", "sweep", "next request"])
def test_a_failing_order_killed_between_steps_ends_failed_holding_nothing(
    world: World, method: str, nth: int, when: str, recovery: str
) -> None:
    stock_up(world)
    with pytest.raises(Crash):
        world.orders(CrashingCommands(world, method, nth, when)).place("o-1", "web", FAILING)
    in_progress(world, "o-1")  # the stream says where it was
    restarted = world.orders()
    if recovery == "resume":
        restarted.resume("o-1")
    elif recovery == "sweep":
        assert restarted.sweep() == 0  # not stalled yet: a live request may be driving it
        world.clock.advance(STALL_AFTER.total_seconds())
        assert restarted.sweep() == 1
    else:
        with pytest.raises(OrderShort):
            restarted.place("o-1", "web", FAILING)
    order = world.processes.orders.get("o-1")
    assert order is not None and order.status == "failed"
    assert all(world.reserved(sku, "S1") == {} for sku in "ABC")
    assert world.processes.orders.due(world.clock.now() + timedelta(days=1), 10) == []
    assert_sound(world)


@pytest.mark.parametrize(("method", "nth", "when"), CRASHES)
@pytest.mark.parametrize("recovery", ["resume", "sweep", "next request"])
def test_a_succeeding_order_killed_between_steps_ends_holding_every_line_once(
    world: World, method: str, nth: int, when: str, recovery: str
) -> None:
    stock_up(world)
    with pytest.raises(Crash):
        world.orders(CrashingCommands(world, method, nth, when)).place(
            "o-1", "web", SUCCEEDING)
    restarted = world.orders()
    if recovery == "resume":
        restarted.resume("o-1")
    elif recovery == "sweep":
        world.clock.advance(STALL_AFTER.total_seconds())
        assert restarted.sweep() == 1
    else:
        answer = restarted.place("o-1", "web", SUCCEEDING)
        assert answer.created  # this request completed the hold: 201
    order = world.processes.orders.get("o-1")
    assert order is not None and order.status == "held"
    assert [world.reserved(sku, "S1") for sku in "ABC"] == [
        {"o-1": 2}, {"o-1": 2}, {"o-1": 1}]
    assert_sound(world)


POINTS = CRASH_POINTS


@pytest.mark.parametrize("lines", [FAILING, SUCCEEDING], ids=["failing", "succeeding"])
def test_a_placement_passes_every_named_crash_point_and_no_other(
    world: World, lines: list[dict[str, Any]]
) -> None:
    """The crash tests below cover every point: a placement (a held one, and one that
    fails and compensates) reaches each declared point, and the driver has no other."""
    stock_up(world)
    hits: Counter[str] = Counter()
    with contextlib.suppress(OrderShort):
        world.orders(crash_point=lambda name: hits.update([name])).place("o-1", "web", lines)
    assert set(hits) == set(CRASH_POINTS), hits
    assert hits["after-intent"] == 1
    assert hits["before-step"] == hits["after-step"] >= 1
    # The holds are taken together (one performance, one group commit); a failing
    # placement then releases what it held, one step each.
    assert hits["after-step"] == (1 if lines is SUCCEEDING else 3)
    assert 1 <= hits["after-record"] <= hits["after-step"]


class CountingStreams:
    """The real order streams, counting the writes (each one is an fsync)."""

    def __init__(self, streams: Any) -> None:
        self.streams, self.writes = streams, 0

    def get(self, key: str) -> Any:
        return self.streams.get(key)

    def due(self, now: datetime, limit: int) -> list[str]:
        return list(self.streams.due(now, limit))

    def save(self, aggregate: Any, *, wake_at: datetime | None) -> None:
        self.writes += 1
        self.streams.save(aggregate, wake_at=wake_at)


def test_a_held_order_is_placed_in_two_writes_to_its_stream_whatever_its_lines(
        world: World) -> None:
    """The intent, then the results of every hold in one write (not one write per
    line): the order's share of the fsyncs does not grow with its lines."""
    for n in range(5):
        world.commands.receive(f"W{n}", "S1", 5)
    counting = CountingStreams(world.processes.orders)
    orders = Orders(counting, world.processes.groups, world.commands, world.stock,
                    world.clock)
    answer = orders.place("o-1", "web", [line(f"W{n}") for n in range(5)])
    assert answer.order.status == "held"
    assert counting.writes == 2
    assert [world.reserved(f"W{n}", "S1") for n in range(5)] == [{"o-1": 1}] * 5
    orders.place("o-1", "web", [line(f"W{n}") for n in range(5)])  # a repeat: no write
    assert counting.writes == 2


class CountingStore:
    """The real stock store, counting its writes (each one is a transaction and an
    fsync)."""

    def __init__(self, store: Any) -> None:
        self.store, self.writes = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def save(self, item: Any) -> Any:
        self.writes += 1
        return self.store.save(item)

    def save_many(self, items: Any) -> Any:
        self.writes += 1
        return self.store.save_many(items)


def grouped(world: World) -> tuple[StockCommands, CountingStore]:
    """Stock commands with group commit, as the embedded host builds them, on a store
    that counts its writes."""
    store = CountingStore(world.stock)
    return StockCommands(store, world.clock, group_commit=True), store


def test_a_placement_holds_all_its_lines_in_one_write_to_the_stock_store(
        world: World) -> None:
    """Its holds are one group of the group commit: one transaction and one fsync for
    what five single reservations write in five."""
    for n in range(5):
        world.commands.receive(f"W{n}", "S1", 5)
    commands, store = grouped(world)
    answer = world.orders(commands).place("o-1", "web", [line(f"W{n}") for n in range(5)])
    assert (answer.order.status, answer.created) == ("held", True)
    assert store.writes == 1
    assert [world.reserved(f"W{n}", "S1") for n in range(5)] == [{"o-1": 1}] * 5


def test_a_line_refused_inside_the_group_records_nothing_and_the_others_are_released(
        world: World) -> None:
    """All or nothing: C is short; A and B, held in the same group, are compensated,
    and C's stream records nothing for the order."""
    stock_up(world)
    c_before = len(world.stock.events("C", "S1"))
    commands, _ = grouped(world)
    with pytest.raises(OrderShort):
        world.orders(commands).place("o-1", "web", FAILING)
    assert [world.reserved(sku, "S1") for sku in "ABC"] == [{}, {}, {}]
    assert len(world.stock.events("C", "S1")) == c_before
    order = world.processes.orders.get("o-1")
    assert order is not None and order.status == "failed"
    assert_sound(world)


def test_holds_taken_in_a_batch_lost_to_a_crash_are_released_when_the_redo_is_refused(
        world: World) -> None:
    """A crash after holds A, B and C were taken (together) but before their write; A's
    hold is then released by its line route and its stock reserved by another order.
    Driven again, the placement is refused at A and fails: B's and C's holds, which the
    order's stream never recorded, are released with it."""
    stock_up(world)

    def crash_point(name: str) -> None:
        if name == "after-step":
            raise Crash("after the holds, before the write")

    with pytest.raises(Crash):
        world.orders(crash_point=crash_point).place("o-1", "web", SUCCEEDING)
    assert world.reserved("B", "S1") == {"o-1": 2}
    assert world.reserved("C", "S1") == {"o-1": 1}
    world.commands.release("A", "S1", "o-1")  # the line route, while the order stalls,
    world.commands.reserve("A", "S1", "other", 2, "pos")  # and A's stock sold elsewhere
    with pytest.raises(OrderShort):
        world.orders().place("o-1", "web", SUCCEEDING)
    assert [world.reserved(sku, "S1") for sku in "ABC"] == [{"other": 2}, {}, {}]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("hit", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("lines", [FAILING, SUCCEEDING], ids=["failing", "succeeding"])
def test_every_named_crash_point_is_recovered_by_the_sweep(
    world: World, point: str, hit: int, lines: list[dict[str, Any]]
) -> None:
    stock_up(world)
    hits: Counter[str] = Counter()

    def crash_point(name: str) -> None:
        hits[name] += 1
        if name == point and hits[name] == hit:
            raise Crash(f"{name} #{hit}")

    crashed = True
    try:
        world.orders(crash_point=crash_point).place("o-1", "web", lines)
        crashed = False
    except OrderShort:
        crashed = False
    except Crash:
        pass
    if point == "after-intent" and hit > 1:
        assert not crashed  # one intent per placement
    elif point != "after-intent":
        assert crashed == (hits[point] >= hit)
    world.clock.advance(STALL_AFTER.total_seconds())
    world.orders().sweep()
    order = world.processes.orders.get("o-1")
    assert order is not None
    assert order.status == ("failed" if lines is FAILING else "held")
    if lines is FAILING:
        assert all(world.reserved(sku, "S1") == {} for sku in "ABC")
    assert order.next_step() is None
    assert_sound(world)


def test_a_crash_during_a_release_is_finished_by_the_next_request(world: World) -> None:
    stock_up(world)
    world.orders().place("o-1", "web", SUCCEEDING)
    with pytest.raises(Crash):
        world.orders(CrashingCommands(world, "release", 2, "after")).release("o-1")
    assert world.orders().release("o-1").status == "released"
    assert all(world.reserved(sku, "S1") == {} for sku in "ABC")


@pytest.mark.parametrize("round_", range(6))
def test_orders_racing_for_the_last_units_never_oversell(world: World, round_: int) -> None:
    rng = random.Random(round_)
    skus = ["A", "B", "C", "D"]
    for sku in skus:
        world.commands.receive(sku, "S1", 2)
    hosts = [world.orders(), world.orders()]  # two services on one store: two hosts
    carts = {f"o-{n}": [line(s, rng.randint(1, 2)) for s in rng.sample(skus, 2)]
             for n in range(12)}
    barrier = threading.Barrier(len(carts))

    def place(n_and_order: tuple[int, str]) -> str:
        n, order_id = n_and_order
        barrier.wait()
        try:
            return hosts[n % 2].place(order_id, "web", carts[order_id]).order.status
        except OrderShort:
            return "failed"

    with ThreadPoolExecutor(len(carts)) as pool:
        outcomes = dict(zip(carts, pool.map(place, enumerate(carts)), strict=True))
    assert "held" in outcomes.values()
    for order_id, status in outcomes.items():
        held = {s for s in skus if order_id in world.reserved(s, "S1")}
        wanted = {ln["sku"] for ln in carts[order_id]}
        assert held == (wanted if status == "held" else set()), order_id
    for sku in skus:
        assert sum(world.reserved(sku, "S1").values()) <= 2
    assert_sound_all(world, skus)


def assert_sound_all(world: World, skus: list[str]) -> None:
    for sku in skus:
        item = world.stock.get(sku, "S1")
        assert item is not None and item.available >= 0


def test_the_sweep_leaves_an_order_being_driven_alone_until_it_stalls(world: World) -> None:
    stock_up(world)
    with pytest.raises(Crash):
        world.orders(CrashingCommands(world, "reserve", 2, "before")).place(
            "o-1", "web", SUCCEEDING)
    now: datetime = world.clock.now()
    assert world.processes.orders.due(now, 10) == []
    assert world.processes.orders.due(now + STALL_AFTER, 10) == ["o-1"]


def test_a_hold_taken_by_a_driver_that_lost_the_race_is_undone(world: World) -> None:
    """Host 1 decides to hold A|S1 for a failed order placed again; before it does, host 2
    drives the order to held and releases it. Host 1's hold then reopens the reservation;
    its record loses the race, and as the order no longer wants the hold, it undoes it."""
    world.commands.receive("A", "S1", 1)
    with pytest.raises(OrderShort):
        world.orders().place("o-1", "web", [line("A"), line("B")])
    world.commands.receive("B", "S1", 1)
    other_host = world.orders()
    raced: list[str] = []

    def race(name: str) -> None:
        if name == "before-step" and not raced:
            raced.append(other_host.release("o-1").status)

    world.orders(crash_point=race).place("o-1", "web", [line("A"), line("B")])
    assert raced == ["released"]
    order = world.processes.orders.get("o-1")
    assert order is not None and order.status == "released"
    assert world.reserved("A", "S1") == world.reserved("B", "S1") == {}
    assert_sound(world)
