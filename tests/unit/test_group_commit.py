"""Group commit (``StockCommands(group_commit=True)``): concurrent commands decided one
after another on the cached states and written together with ``save_many``, each caller
answered on its own; against a real SQLite event store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import application.commands
from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from application.commands import (
    CommandResult,
    ExpectedVersion,
    StockCommand,
    StockCommands,
    _Command,
    _Journal,
    _ReservationsAt,
)
from application.ports import StoreUnavailable
from domain.errors import DomainError, InsufficientStock, PreconditionFailed
from domain.stock_item import StockItem
from tests.events import last
from tests.invoke import run_coroutine

LOCATION = "STORE-1"


class CountingStore(SQLiteStockItems):
    """The SQLite store, counting its writes; ``hold`` keeps the next write waiting, so
    commands queue behind it as they would behind a slow fsync."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[int] = []  # streams per write
        self.hold = threading.Event()
        self.hold.set()
        self.writing = threading.Event()

    def save(self, item: StockItem) -> list[StockItem.Event]:
        self._wait()
        self.writes.append(1)
        return super().save(item)

    def save_many(self, items: Sequence[StockItem]) -> list[list[StockItem.Event]]:
        if len(items) == 1:
            return [self.save(items[0])]
        self._wait()
        self.writes.append(len(items))
        return super().save_many(items)

    def _wait(self) -> None:
        self.writing.set()
        assert self.hold.wait(10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    s = CountingStore(tmp_path / "events.db")
    yield s
    s.close()


def grouped(store: SQLiteStockItems) -> StockCommands:
    return StockCommands(store, ManualClock(), group_commit=True)


def run_behind_a_slow_write(store: CountingStore, commands: StockCommands,
                            calls: list[Any]) -> list[CommandResult | Exception]:
    """Start a first command whose write is held, queue ``calls`` behind it on threads,
    then let the write go: the queued calls make the next group."""
    store.hold.clear()
    store.writing.clear()
    with ThreadPoolExecutor(len(calls) + 1) as pool:
        first = pool.submit(commands.receive, "SKU-FIRST", LOCATION, 1)
        assert store.writing.wait(10)
        futures = [pool.submit(_outcome, call) for call in calls]
        _wait_until(lambda: commands._group.queued() == len(calls))  # type: ignore[union-attr]
        store.hold.set()
        first.result(10)
        return [f.result(10) for f in futures]


def _outcome(call: Any) -> CommandResult | Exception:
    try:
        result: CommandResult = call()
        return result
    except Exception as error:
        return error


def _wait_until(condition: Any) -> None:
    done = threading.Event()
    for _ in range(1000):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("condition not met")


def test_commands_queued_behind_a_write_are_written_together_in_one_write(
        store: CountingStore) -> None:
    commands = grouped(store)
    calls = [lambda n=n: commands.receive(f"SKU-{n % 4}", LOCATION, 1 + n) for n in range(12)]

    answers = run_behind_a_slow_write(store, commands, calls)

    assert store.writes == [1, 4]  # the held first write, then the 12 commands on 4 streams
    for answer in answers:
        assert isinstance(answer, CommandResult)
        assert [type(e).__name__ for e in answer.events][-1] == "Received"
    assert [store.get(f"SKU-{s}", LOCATION).on_hand  # type: ignore[union-attr]
            for s in range(4)] == [sum(1 + n for n in range(s, 12, 4)) for s in range(4)]


def test_each_caller_gets_the_position_after_its_own_command(store: CountingStore) -> None:
    commands = grouped(store)
    calls = [lambda n=n: commands.receive("SKU-1", LOCATION, 10, idempotency_key=f"k-{n}")
             for n in range(5)]

    answers = run_behind_a_slow_write(store, commands, calls)

    figures = sorted((a.position.version, a.position.on_hand)  # type: ignore[union-attr]
                     for a in answers)
    assert figures == [(2, 10), (3, 20), (4, 30), (5, 40), (6, 50)]
    assert store.writes == [1, 1]  # one stream: one append of all five


def test_a_refusal_inside_a_group_leaves_the_others_recorded(store: CountingStore) -> None:
    commands = StockCommands(store, ManualClock())
    commands.receive("SKU-1", LOCATION, 3)
    commands = grouped(store)
    calls = [
        lambda: commands.reserve("SKU-1", LOCATION, "order-a", 2, "web"),
        lambda: commands.reserve("SKU-1", LOCATION, "order-b", 2, "web"),  # does not fit
        lambda: commands.reserve("SKU-1", LOCATION, "order-c", 1, "web"),
        lambda: commands.receive("SKU-2", LOCATION, 4),
    ]

    a, b, c, d = run_behind_a_slow_write(store, commands, calls)

    assert isinstance(b, InsufficientStock) and b.available == 1
    item = store.get("SKU-1", LOCATION, fresh=True)
    assert item is not None and set(item.reservations) == {"order-a", "order-c"}
    assert isinstance(a, CommandResult) and isinstance(c, CommandResult)
    assert isinstance(d, CommandResult) and d.position.on_hand == 4
    assert item.reserved == 3 and item.on_hand == 3  # nothing oversold


def test_a_repeated_idempotency_key_inside_one_group_is_recorded_once(
        store: CountingStore) -> None:
    commands = grouped(store)
    calls = [lambda: commands.receive("SKU-1", LOCATION, 5, idempotency_key="asn-1")
             for _ in range(4)]

    answers = run_behind_a_slow_write(store, commands, calls)

    assert all(isinstance(a, CommandResult) for a in answers)
    received = [e for e in store.events("SKU-1", LOCATION) if isinstance(e, StockItem.Received)]
    assert len(received) == 1
    assert {a.position.on_hand for a in answers} == {5}  # type: ignore[union-attr]


def test_an_unmet_expectation_inside_a_group_records_nothing_for_it(
        store: CountingStore) -> None:
    commands = grouped(store)
    commands.receive("SKU-1", LOCATION, 5)  # version 2
    calls = [
        lambda: commands.receive("SKU-1", LOCATION, 1, expected=ExpectedVersion.at(2)),
        lambda: commands.receive("SKU-1", LOCATION, 7, expected=ExpectedVersion.at(2)),
        lambda: commands.receive("SKU-1", LOCATION, 1),
    ]

    first, second, third = run_behind_a_slow_write(store, commands, calls)

    assert isinstance(first, CommandResult) and first.position.version == 3
    assert isinstance(second, PreconditionFailed) and second.version == 3
    assert isinstance(third, CommandResult) and third.position.on_hand == 7


def test_many_threads_on_one_hot_item_never_oversell(store: CountingStore) -> None:
    commands = grouped(store)
    commands.receive("HOT", LOCATION, 50)

    def reserve(n: int) -> bool:
        try:
            commands.reserve("HOT", LOCATION, f"order-{n}", 1 + n % 3, "web")
        except InsufficientStock:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        held = [n for n, ok in zip(range(80), pool.map(reserve, range(80)), strict=True) if ok]

    item = store.get("HOT", LOCATION, fresh=True)
    assert item is not None
    assert set(item.reservations) == {f"order-{n}" for n in held}
    assert item.reserved == sum(1 + n % 3 for n in held) <= 50
    assert item.reserved >= 48  # refused only when what was left did not fit


# ------------------------------------------- hypothesis: a group is a sequence

OPS = st.sampled_from(["receive", "reserve", "release", "fulfil", "adjust"])
COMMAND = st.tuples(OPS, st.integers(0, 2), st.integers(0, 3), st.integers(1, 6),
                    st.one_of(st.none(), st.integers(0, 5)))


def _call(commands: StockCommands, op: str, stream: int, order: int,
          quantity: int, version: int | None = None) -> Any:
    sku = f"SKU-{stream}"
    expected = None if version is None else ExpectedVersion.at(version)
    if op == "receive":
        return lambda: commands.receive(sku, LOCATION, quantity, expected=expected)
    if op == "reserve":
        return lambda: commands.reserve(sku, LOCATION, f"o-{order}", quantity, "web",
                                        expected=expected)
    if op == "release":
        return lambda: commands.release(sku, LOCATION, f"o-{order}", expected=expected)
    if op == "fulfil":
        return lambda: commands.fulfil(sku, LOCATION, f"o-{order}", expected=expected)
    return lambda: commands.adjust(sku, LOCATION, -quantity, "damaged", expected=expected)


def _answer(outcome: CommandResult | Exception) -> Any:
    if isinstance(outcome, DomainError):
        return type(outcome).__name__, outcome.details
    assert isinstance(outcome, CommandResult), outcome
    p = outcome.position
    return (p.version, p.on_hand, p.reserved, p.available, p.reservations,
            p.open_reservations, [type(e).__name__ for e in outcome.events])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(COMMAND, min_size=1, max_size=24), cuts=st.sets(st.integers(1, 23)))
def test_every_caller_of_a_group_gets_what_it_would_have_got_alone_in_that_order(
        tmp_path_factory: Any, script: list[tuple[str, int, int, int, int | None]],
        cuts: set[int]) -> None:
    base = tmp_path_factory.mktemp("group")
    alone_store, group_store = SQLiteStockItems(base / "a.db"), SQLiteStockItems(base / "g.db")
    try:
        alone = StockCommands(alone_store, ManualClock())
        together = grouped(group_store)
        expected = [_answer(_outcome(_call(alone, *c))) for c in script]

        outcomes: list[CommandResult | Exception] = []
        bounds = [0, *sorted(c for c in cuts if c < len(script)), len(script)]
        for start, end in pairwise(bounds):
            pending = [_capture(together, *c) for c in script[start:end]]
            together._commit_group(pending)
            outcomes.extend(c.error if c.error is not None else c.result  # type: ignore[misc]
                            for c in pending)

        assert [_answer(o) for o in outcomes] == expected
        for stream in range(3):
            assert ([type(e).__name__ for e in group_store.events(f"SKU-{stream}", LOCATION)]
                    == [type(e).__name__ for e in alone_store.events(f"SKU-{stream}",
                                                                     LOCATION)])
    finally:
        alone_store.close()
        group_store.close()


def _capture(commands: StockCommands, op: str, stream: int, order: int,
             quantity: int, version: int | None) -> _Command:
    """The command ``_call`` would run, as the group commit receives it."""
    captured: list[_Command] = []
    group = commands._group
    original = group.run  # type: ignore[union-attr]

    def take(command: _Command) -> CommandResult:
        captured.append(command)
        raise _Captured

    group.run = take  # type: ignore[union-attr,method-assign]
    try:
        _call(commands, op, stream, order, quantity, version)()
    except _Captured:
        pass
    finally:
        group.run = original  # type: ignore[union-attr,method-assign]
    return captured[0]


class _Captured(Exception):
    pass


def test_each_answer_in_a_group_lists_the_reservations_as_its_command_left_them(
        tmp_path: Any) -> None:
    store = SQLiteStockItems(tmp_path / "g.db")
    try:
        commands = grouped(store)
        commands.receive("SKU-0", LOCATION, 10)
        script = [("reserve", 0, 1, 2, None), ("reserve", 0, 2, 3, None),
                  ("release", 0, 1, 1, None), ("reserve", 0, 2, 1, None),
                  ("fulfil", 0, 2, 1, None)]
        pending = [_capture(commands, *c) for c in script]

        commands._commit_group(pending)

        listed = [[(r.order_id, r.quantity) for r in c.result.position.reservations]  # type: ignore[union-attr]
                  for c in pending]
        assert listed == [[("o-1", 2)], [("o-1", 2), ("o-2", 3)],
                          [("o-2", 3)], [("o-2", 1)], []]
        assert [c.result.position.open_reservations for c in pending] == [1, 2, 1, 1, 0]  # type: ignore[union-attr]
        first = pending[0].result
        assert first is not None and first.position_of("o-1").reservations[0].quantity == 2
    finally:
        store.close()


def test_a_group_on_a_hot_stream_leaves_the_earlier_answers_and_the_cache_as_they_were(
        store: CountingStore) -> None:
    # The group decides on a copy sharing the cached reservations, and its journal
    # stays the saved item's: the next group must change neither.
    commands = grouped(store)
    commands.receive("HOT", LOCATION, 100)
    first = run_behind_a_slow_write(store, commands, [
        lambda n=n: commands.reserve("HOT", LOCATION, f"order-{n}", 1, "web")
        for n in range(4)])
    before = [r.position.reservations for r in first if isinstance(r, CommandResult)]
    cached = store.get("HOT", LOCATION, fresh=False)
    assert cached is not None

    run_behind_a_slow_write(store, commands, [  # the receipt changes no reservation
        lambda: commands.receive("HOT", LOCATION, 1),
        lambda: commands.reserve("HOT", LOCATION, "order-9", 5, "web"),
        lambda: commands.release("HOT", LOCATION, "order-0")])

    assert [r.position.reservations for r in first if isinstance(r, CommandResult)] == before
    assert [len(b) for b in before] == [1, 2, 3, 4]
    assert sorted(cached.reservations) == [f"order-{n}" for n in range(4)]
    now = store.get("HOT", LOCATION)
    assert now is not None and sorted(now.reservations) == ["order-1", "order-2", "order-3",
                                                            "order-9"]
    assert now.reserved == 8


# ------------------------------------- coroutine callers (run_async): no thread waits


async def _first_write_held(store: CountingStore, commands: StockCommands,
                            plan: StockCommand) -> asyncio.Task[CommandResult]:
    """Run ``plan`` as a coroutine whose write is held (``store.hold`` releases it);
    returns once the write is under way, so what is queued next waits for a group."""
    store.hold.clear()
    store.writing.clear()
    first = asyncio.create_task(commands.run_async(plan))
    await asyncio.to_thread(store.writing.wait, 10)
    return first


def test_coroutines_queued_behind_a_write_join_its_next_group_and_each_gets_its_answer(
        store: CountingStore) -> None:
    commands = grouped(store)
    commands.receive("SKU-1", LOCATION, 3)
    store.writes.clear()

    async def scenario() -> list[CommandResult | BaseException]:
        first = await _first_write_held(
            store, commands, commands.plan_receive("SKU-FIRST", LOCATION, 1))
        queued = [asyncio.create_task(commands.run_async(plan)) for plan in [
            commands.plan_reserve("SKU-1", LOCATION, "order-a", 2, "web"),
            commands.plan_reserve("SKU-1", LOCATION, "order-b", 2, "web"),  # does not fit
            commands.plan_reserve("SKU-1", LOCATION, "order-c", 1, "web"),
            commands.plan_receive("SKU-2", LOCATION, 4),
        ]]
        await asyncio.to_thread(
            _wait_until, lambda: commands._group.queued() == 4)  # type: ignore[union-attr]
        store.hold.set()
        await first
        return list(await asyncio.gather(*queued, return_exceptions=True))

    a, b, c, d = run_coroutine(scenario())

    # the held write, then the group's first write holds both streams (the commands after
    # the refusal on SKU-1 wait for it to be confirmed on a fresh read)
    assert store.writes[:2] == [1, 2]
    assert isinstance(b, InsufficientStock)
    assert [p.version for p in (a.position, c.position)] == [3, 4]  # type: ignore[union-attr]
    assert d.position.on_hand == 4  # type: ignore[union-attr]
    assert store.get("SKU-1", LOCATION).reserved == 3  # type: ignore[union-attr]


def test_a_group_of_coroutines_wakes_their_event_loop_once_not_once_per_command(
        store: CountingStore) -> None:
    commands = grouped(store)
    wake_ups = 0

    async def scenario() -> tuple[list[CommandResult], int]:
        nonlocal wake_ups
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any) -> Any:
            nonlocal wake_ups
            wake_ups += 1
            return call_soon_threadsafe(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
        first = await _first_write_held(
            store, commands, commands.plan_receive("SKU-FIRST", LOCATION, 1))
        queued = [asyncio.create_task(commands.run_async(
            commands.plan_receive(f"SKU-{n}", LOCATION, 1 + n))) for n in range(12)]
        await asyncio.to_thread(
            _wait_until, lambda: commands._group.queued() == 12)  # type: ignore[union-attr]
        wake_ups = 0  # from here on, only the group commit wakes the loop
        store.hold.set()
        await first
        answered = list(await asyncio.gather(*queued))
        return answered, wake_ups

    results, woken = run_coroutine(scenario())

    assert [r.position.on_hand for r in results] == [1 + n for n in range(12)]
    assert store.writes == [1, 12]  # the held write, then the twelve in one group
    # one wake-up for the first command, one for the group's twelve answers (per command
    # it was 13)
    assert woken == 2


def test_a_thread_queued_behind_coroutines_is_answered_and_leads_when_its_turn_comes(
        store: CountingStore) -> None:
    """Coroutines have no thread to lead a group: the lead stays with the committing
    thread while the oldest queued command is a coroutine's, and passes to a thread's
    caller when it is that thread's turn."""
    commands = grouped(store)

    async def scenario() -> tuple[list[CommandResult], CommandResult]:
        first = await _first_write_held(
            store, commands, commands.plan_receive("SKU-1", LOCATION, 1))
        early = [asyncio.create_task(commands.run_async(
            commands.plan_receive("SKU-1", LOCATION, 10))) for _ in range(3)]
        await asyncio.to_thread(
            _wait_until, lambda: commands._group.queued() == 3)  # type: ignore[union-attr]
        thread = asyncio.create_task(asyncio.to_thread(commands.receive, "SKU-1", LOCATION, 100))
        await asyncio.to_thread(
            _wait_until, lambda: commands._group.queued() == 4)  # type: ignore[union-attr]
        late = [asyncio.create_task(commands.run_async(
            commands.plan_receive("SKU-1", LOCATION, 1000)))]
        store.hold.set()
        await first
        return list(await asyncio.gather(*early, *late)), await thread

    coroutines, by_thread = run_coroutine(scenario())

    assert last(by_thread.events, StockItem.Received).quantity == 100
    assert sorted(last(r.events, StockItem.Received).quantity for r in coroutines) == [
        10, 10, 10, 1000]
    assert store.get("SKU-1", LOCATION).on_hand == 1 + 30 + 100 + 1000  # type: ignore[union-attr]
    assert commands._group.queued() == 0  # type: ignore[union-attr]


def test_a_failed_write_answers_every_coroutine_of_its_group_with_the_failure(
        tmp_path: Path) -> None:
    class FailingStore(SQLiteStockItems):
        def save_many(self, items: Sequence[StockItem]) -> list[list[StockItem.Event]]:
            raise StoreUnavailable("disk full")

        def save(self, item: StockItem) -> list[StockItem.Event]:
            raise StoreUnavailable("disk full")

    failing = FailingStore(tmp_path / "events.db")
    try:
        commands = grouped(failing)

        async def scenario() -> list[CommandResult | BaseException]:
            return list(await asyncio.gather(*[
                commands.run_async(commands.plan_receive(f"SKU-{n}", LOCATION, 1))
                for n in range(5)], return_exceptions=True))

        outcomes = run_coroutine(scenario())
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        assert failing.events("SKU-0", LOCATION) == []
    finally:
        failing.close()


def test_a_closed_event_loop_does_not_stop_the_group_commit_answering_the_others(
        store: CountingStore) -> None:
    """Coroutines whose event loop closed before their group was written (a host shut
    down, a caller gone) have nobody to tell: their commands are still written, and the
    commands queued after them are still led and answered."""
    commands = grouped(store)

    async def leave_behind_a_held_write() -> None:
        await _first_write_held(store, commands, commands.plan_receive("SKU-1", LOCATION, 1))
        asyncio.get_running_loop().create_task(
            commands.run_async(commands.plan_receive("SKU-1", LOCATION, 10)))
        await asyncio.to_thread(
            _wait_until, lambda: commands._group.queued() == 1)  # type: ignore[union-attr]

    run_coroutine(leave_behind_a_held_write())  # its loop closes with both unanswered
    answered: list[CommandResult] = []
    later = threading.Thread(  # a daemon: a hang fails the test instead of holding it
        target=lambda: answered.append(commands.receive("SKU-1", LOCATION, 100)), daemon=True)
    later.start()
    _wait_until(lambda: commands._group.queued() == 2)  # type: ignore[union-attr]
    store.hold.set()
    later.join(10)

    assert [result.position.on_hand for result in answered] == [111]

    assert commands._group.queued() == 0  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(callers=st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(1, 50)),
                        min_size=1, max_size=30),
       held=st.booleans())
def test_threads_and_coroutines_in_any_mix_are_each_answered_with_their_own_command(
        tmp_path_factory: Any, callers: list[tuple[bool, int, int]], held: bool) -> None:
    """Each caller, a thread (True) or a coroutine, receives a quantity on one of three
    streams, all at once behind a write that is held or not: every caller is answered
    with its own receipt at a version of its own, and each stream holds their sum."""
    store = CountingStore(tmp_path_factory.mktemp("mix") / "events.db")
    try:
        commands = grouped(store)

        async def scenario() -> list[CommandResult]:
            if held:
                store.hold.clear()
            first = asyncio.create_task(commands.run_async(
                commands.plan_receive("SKU-0", LOCATION, 1)))
            if held:
                await asyncio.to_thread(store.writing.wait, 10)
            calls = [asyncio.to_thread(commands.receive, f"SKU-{s}", LOCATION, q) if thread
                     else commands.run_async(commands.plan_receive(f"SKU-{s}", LOCATION, q))
                     for thread, s, q in callers]
            answers = asyncio.gather(*calls)
            store.hold.set()
            await first
            return list(await asyncio.wait_for(answers, 30))

        answers = run_coroutine(scenario())

        for (_, stream, quantity), answer in zip(callers, answers, strict=True):
            assert answer.sku == f"SKU-{stream}"
            assert last(answer.events, StockItem.Received).quantity == quantity
        for stream in range(3):
            mine = [a.position.version for a in answers if a.sku == f"SKU-{stream}"]
            assert len(set(mine)) == len(mine)
            on_hand = sum(q for _, s, q in callers if s == stream) + (stream == 0)
            item = store.get(f"SKU-{stream}", LOCATION)
            assert (item.on_hand if item else 0) == on_hand
    finally:
        store.hold.set()
        store.close()


def _view(store: SQLiteStockItems, sku: str) -> _ReservationsAt:
    cached = store.get(sku, LOCATION, fresh=False)
    assert cached is not None and isinstance(cached.reservations, _ReservationsAt)
    return cached.reservations


def _hot_stream_on_a_journal(
        store: SQLiteStockItems, monkeypatch: pytest.MonkeyPatch) -> tuple[StockCommands, _Journal]:
    """A stream with 22 open reservations, past a journal threshold lowered to 16 (so the
    tests stay small), and the journal its cached state is a view of."""
    monkeypatch.setattr(application.commands, "JOURNAL_FROM", 16)
    commands = grouped(store)
    commands.receive("HOT", LOCATION, 1_000)
    for n in range(22):
        commands.reserve("HOT", LOCATION, f"order-{n}", 1, "web")
    return commands, _view(store, "HOT").journal


def test_a_hot_streams_groups_go_on_with_one_journal_and_each_answer_stays_as_it_was(
        store: CountingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No copy of a hot stream's open reservations per group: the cache holds a view of
    # the journal, the next group goes on changing it, and an answer read after later
    # groups still shows the state its command left.
    commands, journal = _hot_stream_on_a_journal(store, monkeypatch)

    held = commands.reserve("HOT", LOCATION, "order-a", 2, "web")
    released = commands.release("HOT", LOCATION, "order-a")
    commands.reserve("HOT", LOCATION, "order-c", 3, "web")

    assert _view(store, "HOT").journal is journal
    assert [(r.order_id, r.quantity) for r in held.position_of("order-a").reservations] == [
        ("order-a", 2)]
    assert held.position.open_reservations == 23
    assert released.position_of("order-a").reservations == ()
    assert released.position.open_reservations == 22
    now = store.get("HOT", LOCATION)
    assert now is not None and "order-a" not in now.reservations
    assert now.reserved == 22 + 3 == sum(
        r["quantity"] for r in now.reservations.values())
    reader = SQLiteStockItems(tmp_path / "events.db")
    reread = reader.get("HOT", LOCATION)
    assert reread is not None and reread.position() == now.position()
    reader.close()


def test_a_group_that_was_not_written_leaves_the_cached_state_as_it_was(
        store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    commands, journal = _hot_stream_on_a_journal(store, monkeypatch)
    save_one = store.app.save_one

    def failing(item: StockItem) -> None:
        store.app.save_one = save_one  # type: ignore[method-assign]
        raise OperationalError("disk I/O error")

    store.app.save_one = failing  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        commands.reserve("HOT", LOCATION, "order-x", 1, "web")
    commands.reserve("HOT", LOCATION, "order-y", 1, "web")

    now = store.get("HOT", LOCATION)
    assert now is not None and "order-x" not in now.reservations
    assert "order-y" in now.reservations and now.reserved == 23
    assert _view(store, "HOT").journal is not journal  # the journal holds what was not written


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "pop", "view", "read"]),
                          st.integers(0, 7), st.integers(1, 5)), max_size=60))
def test_a_view_of_the_journal_is_the_reservations_as_they_were_whatever_follows(
        ops: list[tuple[str, int, int]]) -> None:
    journal = _Journal({"o-0": {"quantity": 1}})
    views: list[tuple[_ReservationsAt, dict[str, Any]]] = []
    for op, key, quantity in ops:
        if op == "set":
            journal[f"o-{key}"] = {"quantity": quantity}
        elif op == "pop":
            journal.pop(f"o-{key}", None)
        elif op == "view":
            views.append((journal.frozen(), dict(journal)))
        elif views:  # read a view part-way, so its overlay is built in steps
            view, expected = views[key % len(views)]
            assert len(view) == len(expected) and view.get(f"o-{key}") == expected.get(
                f"o-{key}")
    for view, expected in views:
        assert len(view) == len(expected)
        assert all(view[k] == v for k, v in expected.items())
        assert all((f"o-{k}" in view) == (f"o-{k}" in expected) for k in range(8))
        assert dict(view.items()) == view.copy() == expected
        assert sorted(view) == sorted(expected)
