"""Coalescing on Cosmos DB (``STOCKSTREAM_COSMOS_COALESCE``): in one Functions instance,
concurrent commands on one SKU-location are decided one after another on the cached
state and written as one transactional batch, each caller answered on its own; over
the real SDK against the Cosmos DB test server, through the Azure composition root.

A first command's write is held (``held_first_write``), so the commands sent meanwhile
queue behind it and make the next group, deterministically.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any
from uuid import uuid4

import pytest

from adapters.clock import ManualClock
from adapters.cosmos.local_server import CosmosServer, fresh_database
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings, RequestTally
from application.commands import CommandResult, RetryPolicy, StockCommands
from application.settings import load
from composition import Services
from composition.azure import azure_services
from domain.errors import InsufficientStock
from domain.stock_item import StockItem
from tests.events import only

LOCATION = "STORE-1"
Outcome = CommandResult | Exception


def _root(settings: CosmosSettings, clock: ManualClock, coalesce: str = "on") -> Services:
    """The Azure root's services: one Functions instance (its own cache)."""
    return azure_services(load({
        "STOCKSTREAM_EVENT_STORE": "cosmos",
        "COSMOS__accountEndpoint": settings.endpoint,
        "COSMOS_KEY": settings.key or "",
        "COSMOS_DATABASE": settings.database,
        "STOCKSTREAM_COSMOS_COALESCE": coalesce,
    }), clock)


@pytest.fixture
def database(cosmos_server: CosmosServer) -> CosmosSettings:
    return fresh_database(cosmos_server, "coalesce")


@pytest.fixture
def instances(database: CosmosSettings) -> Iterator[Callable[[], Services]]:
    """Opens Functions instances on one database (each with its own cache)."""
    opened: list[Services] = []
    clock = ManualClock()

    def open_instance() -> Services:
        opened.append(_root(database, clock))
        return opened[-1]

    yield open_instance
    for services in opened:
        services.close()


def tally(services: Services) -> RequestTally:
    datastore: CosmosDatastore = services.store.factory.datastore  # type: ignore[attr-defined]
    return datastore.tally


@contextmanager
def held_first_write(services: Services) -> Iterator[threading.Event]:
    """The instance's next save waits until the yielded event is set (as a slow batch
    would); its caller signals ``writing`` once it is held."""
    store: Any = services.store
    save: Callable[[StockItem], list[StockItem.Event]] = store.save
    release, writing = threading.Event(), threading.Event()
    calls = [0]

    def held(item: StockItem) -> list[StockItem.Event]:
        calls[0] += 1
        if calls[0] == 1:
            writing.set()
            assert release.wait(10)
        return save(item)

    store.save = held
    store.writing = writing
    try:
        yield release
    finally:
        release.set()
        del store.save


def _outcome(call: Callable[[], CommandResult]) -> Outcome:
    try:
        return call()
    except Exception as error:  # the caller's own answer
        return error


def queue_behind_a_held_write(services: Services, first: Callable[[], CommandResult],
                              calls: list[Callable[[], CommandResult]],
                              meanwhile: Callable[[], object] = lambda: None,
                              ) -> tuple[Outcome, list[Outcome]]:
    """Run ``first`` with its write held, queue ``calls`` behind it (one thread each),
    run ``meanwhile``, then let the write go; every outcome, in the order of ``calls``."""
    commands = services.commands
    with held_first_write(services) as release, ThreadPoolExecutor(len(calls) + 1) as pool:
        head: Future[Outcome] = pool.submit(_outcome, first)
        assert services.store.writing.wait(10)  # type: ignore[attr-defined]
        futures = [pool.submit(_outcome, call) for call in calls]
        _wait_until(lambda: _queued(commands) == len(calls))
        meanwhile()
        release.set()
        return head.result(120), [f.result(120) for f in futures]


def _queued(commands: StockCommands) -> int:
    assert commands._group is not None
    return commands._group.queued()


def _wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(6000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def reserve(services: Services, sku: str, order: str, quantity: int = 1,
            ) -> Callable[[], CommandResult]:
    return lambda: services.commands.reserve(sku, LOCATION, order, quantity, "web")


def test_concurrent_callers_on_one_stream_share_one_batch_and_each_get_their_own_answer(
    instances: Callable[[], Services],
) -> None:
    services = instances()
    sku = f"HOT-{uuid4().hex[:8]}"
    services.commands.receive(sku, LOCATION, 5)  # versions 1, 2
    before = tally(services).snapshot()

    first, outcomes = queue_behind_a_held_write(
        services, reserve(services, sku, "O-0"),
        [reserve(services, sku, f"O-{n}") for n in range(1, 8)])

    assert isinstance(first, CommandResult) and first.item is not None
    assert first.item.version == 3
    held = [o for o in outcomes if isinstance(o, CommandResult)]
    refused = [o for o in outcomes if isinstance(o, InsufficientStock)]
    assert len(held) == 4 and len(refused) == 3  # 5 units: O-0 and four of the seven
    # Each caller's own position: the version its own event made, its own reservation.
    assert sorted(r.item.version for r in held if r.item) == [4, 5, 6, 7]
    for result in held:
        (event,) = only(result.events, StockItem.Reserved)
        assert result.position_of(event.order_id).reservations[0].order_id == event.order_id
    recorded = [e for e in services.store.events(sku, LOCATION)
                if isinstance(e, StockItem.Reserved)]
    acknowledged = {"O-0"} | {only(r.events, StockItem.Reserved)[0].order_id for r in held}
    assert {e.order_id for e in recorded} == acknowledged
    after = tally(services).snapshot()
    # The held write, then the four that fitted in one batch (each refusal is confirmed
    # on a fresh read and records nothing).
    assert after["batches"] - before["batches"] == 2
    assert after["batch_operations"] - before["batch_operations"] == 5


def test_a_refusal_inside_a_coalesced_batch_leaves_the_others_recorded(
    instances: Callable[[], Services],
) -> None:
    services = instances()
    sku = f"HOT-{uuid4().hex[:8]}"
    services.commands.receive(sku, LOCATION, 3)

    _, (a, too_many, c) = queue_behind_a_held_write(
        services, reserve(services, sku, "FIRST"),
        [reserve(services, sku, "A"), reserve(services, sku, "B", 50),
         reserve(services, sku, "C")])

    assert isinstance(a, CommandResult) and a.changed
    assert isinstance(too_many, InsufficientStock)
    assert isinstance(c, CommandResult) and c.changed
    item = services.store.get(sku, LOCATION)
    assert item is not None and set(item.reservations) == {"FIRST", "A", "C"}


def test_a_group_over_100_operations_is_split_into_batches_of_at_most_100(
    instances: Callable[[], Services],
) -> None:
    services = instances()
    sku = f"HOT-{uuid4().hex[:8]}"
    services.commands.receive(sku, LOCATION, 1)
    before = tally(services).snapshot()

    # A keyed receipt writes its event and its key's memo: two operations each.
    _, outcomes = queue_behind_a_held_write(
        services, reserve(services, sku, "FIRST"),
        [partial(services.commands.receive, sku, LOCATION, 1, idempotency_key=f"K-{n}")
         for n in range(55)])

    assert all(isinstance(o, CommandResult) and o.changed for o in outcomes)
    after = tally(services).snapshot()
    # The held write, then 55 receipts (110 operations): 50 in one batch of 100
    # operations, the other 5 in a second one.
    assert after["batches"] - before["batches"] == 3
    assert after["batch_operations"] - before["batch_operations"] == 1 + 110
    versions = [e.originator_version for e in services.store.events(sku, LOCATION)]
    assert versions == list(range(1, 2 + 1 + 55 + 1))
    item = services.store.get(sku, LOCATION)
    assert item is not None and item.on_hand == 1 + 55


def test_a_conflict_with_another_instance_re_decides_the_group_on_a_fresh_read(
    instances: Callable[[], Services],
) -> None:
    one, other = instances(), instances()
    sku = f"HOT-{uuid4().hex[:8]}"
    one.commands.receive(sku, LOCATION, 3)
    assert other.store.get(sku, LOCATION) is not None  # both caches at version 2
    failed_before = tally(one).snapshot()["failed_batches"]

    first, (second, third) = queue_behind_a_held_write(
        one, reserve(one, sku, "X1"), [reserve(one, sku, "X2"), reserve(one, sku, "X3")],
        meanwhile=lambda: other.commands.reserve(sku, LOCATION, "Y1", 1, "web"))

    # X1's batch lost the race to Y1 (a 409), so the group was decided again on the
    # stream as it is: X1 and X2 fit beside Y1, X3 no longer does. Nothing oversold.
    assert tally(one).snapshot()["failed_batches"] - failed_before >= 1
    assert isinstance(first, CommandResult) and first.changed
    assert isinstance(second, CommandResult) and second.changed
    assert isinstance(third, InsufficientStock)
    item = other.store.get(sku, LOCATION)
    assert item is not None and set(item.reservations) == {"X1", "X2", "Y1"}
    assert item.reserved == item.on_hand == 3


def test_streams_do_not_wait_for_each_other(instances: Callable[[], Services]) -> None:
    services = instances()
    hot, cold = f"HOT-{uuid4().hex[:8]}", f"COLD-{uuid4().hex[:8]}"
    services.commands.receive(hot, LOCATION, 5)
    with held_first_write(services) as release, ThreadPoolExecutor(2) as pool:
        held = pool.submit(services.commands.reserve, hot, LOCATION, "H", 1, "web")
        assert services.store.writing.wait(10)  # type: ignore[attr-defined]
        # Another stream's command is written while the hot stream's batch is held.
        assert services.commands.receive(cold, LOCATION, 1).changed
        assert not held.done()
        release.set()
        assert held.result(10).changed


def test_coalescing_off_writes_one_batch_per_command(database: CosmosSettings) -> None:
    services = _root(database, ManualClock(), coalesce="off")
    try:
        assert services.commands._group is None
        sku = f"HOT-{uuid4().hex[:8]}"
        services.commands.receive(sku, LOCATION, 5)
        before = tally(services).snapshot()["batches"]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: services.commands.reserve(sku, LOCATION, f"O-{n}", 1,
                                                              "web"), range(4)))
        assert tally(services).snapshot()["batches"] - before == 4
    finally:
        services.close()


def test_a_retried_group_waits_a_jittered_multiple_of_its_own_round_trip() -> None:
    policy = RetryPolicy(max_group_delay=1.0)
    # Full jitter: never more than round_trip * 2^attempt, and never more than the cap.
    waits = [policy.group_delay(2, round_trip=0.01) for _ in range(200)]
    assert all(0 <= w <= 0.04 for w in waits) and max(waits) > 0.02
    assert all(policy.group_delay(20, round_trip=0.5) <= 1.0 for _ in range(50))
    # A slower store spreads its writers over proportionally longer pauses.
    slow = [policy.group_delay(2, round_trip=0.1) for _ in range(200)]
    assert max(slow) > 0.2


def test_a_command_batch_coalesces_each_streams_commands_into_as_few_batches_as_fit(
    instances: Callable[[], Services],
) -> None:
    """``run_many`` (the batch route's path) queues a stream's commands together on its
    lane: 60 reservations on one stream are one transactional batch, not 60, and a
    second stream's commands are a batch of their own."""
    services = instances()
    hot, other = f"HOT-{uuid4().hex[:8]}", f"OTHER-{uuid4().hex[:8]}"
    services.commands.receive(hot, LOCATION, 100)
    services.commands.receive(other, LOCATION, 100)
    before = tally(services).snapshot()

    plans = [services.commands.plan_reserve(hot, LOCATION, f"o-{n}", 1, "web")
             for n in range(60)]
    plans += [services.commands.plan_reserve(other, LOCATION, f"p-{n}", 1, "web")
              for n in range(3)]
    outcomes = services.commands.run_many(plans)

    assert all(isinstance(o, CommandResult) and o.changed for o in outcomes)
    assert [o.item.version for o in outcomes[:60]  # type: ignore[union-attr]
            ] == list(range(3, 63))
    after = tally(services).snapshot()
    assert after["batches"] - before["batches"] == 2
    assert after["batch_operations"] - before["batch_operations"] == 63
    item = services.store.get(hot, LOCATION)
    assert item is not None and item.reserved == 60
