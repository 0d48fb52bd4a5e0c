"""The relay killed at random moments (real SIGKILLs of a real process) during a load:
zero events lost, duplicates absorbed, the projection equal to the event store.

And the suite's teeth: the same run with a relay that checkpoints before publishing (the
classic outbox bug) loses events, and the suite says so.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import SystemClock
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.commands import StockCommands
from application.consumer import EventConsumer, SessionConsumer
from application.relay import Relay
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC, replay_rules
from projections.availability import AvailabilityProjection

ROOT = Path(__file__).resolve().parents[2]
AUDIT = "audit"
KILLS = int(os.environ.get("STOCKSTREAM_FAULT_KILLS", "12"))
SKUS = 20


def start_relay(data: Path, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.relay", "--data", str(data), "--batch-size", "16", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"relay ready"
    return process


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


class Load:
    """Reservations and receipts on many SKU-locations from a background thread."""

    def __init__(self, commands: StockCommands) -> None:
        self.commands = commands
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.count = 0

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            sku = f"SKU-{n % SKUS}"
            if n % 7 == 0:
                self.commands.receive(sku, "STORE-1", 5)
            else:
                self.commands.reserve(sku, "STORE-1", f"order-{n}", 1, "web")
            n += 1
            self.count = n
            self.stop.wait(0.002)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    broker = EmbeddedBroker(tmp_path / "broker.db")
    ensure_topology(broker)
    broker.create_subscription(TOPIC, AUDIT, rules=replay_rules(AUDIT))
    broker.close()
    yield tmp_path


def killed_under_load(data: Path, start: Callable[[], subprocess.Popen[bytes]], kills: int,
                      wait: tuple[float, float], seed: int) -> SQLiteStockItems:
    """The event store after a load during which the process ``start`` runs was SIGKILLed
    ``kills`` times, each a random ``wait`` (seconds, from, to) after it started."""
    store = SQLiteStockItems(data / "events.db")
    commands = StockCommands(store, SystemClock())
    for n in range(SKUS):
        commands.receive(f"SKU-{n}", "STORE-1", 1000)
    rng = random.Random(seed)
    with Load(commands):
        for _ in range(kills):
            process = start()
            threading.Event().wait(rng.uniform(*wait))
            kill(process)
    return store


def run_with_kills(data: Path, *relay_args: str) -> SQLiteStockItems:
    store = killed_under_load(data, lambda: start_relay(data, *relay_args), KILLS,
                              (0.005, 0.12), 20261126)
    relay = start_relay(data)  # a healthy relay finishes the job
    try:
        while store.checkpoints().position(Relay.NAME) < store.max_position():
            threading.Event().wait(0.02)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(10)
    return store


def audited_message_ids(data: Path) -> list[str]:
    broker = EmbeddedBroker(data / "broker.db")
    ids: list[str] = []
    while receiver := broker.accept_next_session(TOPIC, AUDIT, 0.0):
        with receiver:
            while batch := receiver.receive(256, 0.0):
                for message in batch:
                    receiver.complete(message)
                    ids.append(message.message_id)
    broker.close()
    return ids


def event_ids(store: SQLiteStockItems) -> set[str]:
    return {f"{r.event.sku}|{r.event.location}:{r.event.originator_version}"
            for r in store.read_after(0, 1_000_000)}


def test_killing_the_relay_at_random_loses_nothing_and_counts_nothing_twice(
    data: Path, reliability: Any
) -> None:
    store = run_with_kills(data)
    published = audited_message_ids(data)
    expected = event_ids(store)
    reliability.record("relay killed at random (SIGKILL)", kills=KILLS, events=len(expected),
                       lost=len(expected - set(published)),
                       duplicates_delivered=len(published) - len(set(published)))
    assert len(expected) > KILLS * 5, "the load was too light to mean anything"
    assert set(published) == expected, f"lost: {sorted(expected - set(published))[:5]}"
    assert len(published) == len(expected), "a duplicate reached a subscription"

    broker = EmbeddedBroker(data / "broker.db")
    views = SQLiteAvailabilityViews(data / "views.db")
    projection = AvailabilityProjection(views, store.history)
    consumer = SessionConsumer(broker, TOPIC, AVAILABILITY_SUBSCRIPTION,
                               EventConsumer("availability", projection.handle))
    while consumer.run_once(0.0):
        pass
    for row in views.rows():
        item = store.get(row.sku, row.location)
        assert item is not None
        assert (row.version, row.on_hand, row.reserved) == (item.version, item.on_hand,
                                                            item.reserved)
    assert views.events_applied() == len(expected)
    views.close()
    broker.close()
    store.close()


def test_the_suite_catches_a_relay_that_checkpoints_before_publishing(
    data: Path, reliability: Any
) -> None:
    store = run_with_kills(data, "--unsafe-checkpoint-first")
    lost = event_ids(store) - set(audited_message_ids(data))
    store.close()
    reliability.record("a checkpoint-first relay (deliberate bug)", kills=KILLS,
                       lost_events_caught=len(lost))
    assert lost, "a checkpoint-first relay killed mid-batch must lose events"


WORKER_KILLS = int(os.environ.get("STOCKSTREAM_FAULT_WORKER_KILLS", "3"))


def start_worker(data: Path, role: str = "all") -> subprocess.Popen[bytes]:
    """``python -m local.worker`` on ``data``: the relay whose checkpoint a thread of its
    own writes every 250 ms (``deferred_checkpoints``), the consumer, the sweeps; or one
    side of them (``role``), as the host runs them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local.worker", "--data", str(data), "--role", role],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"pipeline ready"
    return process


def test_killing_the_pipeline_worker_between_its_publishes_and_checkpoints_loses_nothing(
    data: Path, reliability: Any
) -> None:
    # Waits across checkpoint intervals: some kills land with up to 250 ms of events
    # published and not yet checkpointed.
    store = killed_under_load(data, lambda: start_worker(data), WORKER_KILLS, (0.1, 0.8),
                              20261203)
    assert_a_healthy_worker_finishes_losing_nothing(
        data, store, reliability, "pipeline worker killed at random (SIGKILL)")


def test_killing_either_process_of_a_split_worker_loses_nothing(
    data: Path, reliability: Any
) -> None:
    """The host's two workers: each kill takes the relaying or the consuming one (chosen
    at random) while the other runs on, as the host's supervisor would leave it."""
    roles = ("relay", "consumer")
    running: dict[str, subprocess.Popen[bytes]] = {}
    rng = random.Random(20261204)

    def one_side() -> subprocess.Popen[bytes]:
        for role in roles:
            if role not in running or running[role].poll() is not None:
                running[role] = start_worker(data, role)
        return running[rng.choice(roles)]

    store = killed_under_load(data, one_side, WORKER_KILLS, (0.1, 0.8), 20261204)
    for survivor in running.values():
        if survivor.poll() is None:
            survivor.send_signal(signal.SIGTERM)
            survivor.wait(30)
    assert_a_healthy_worker_finishes_losing_nothing(
        data, store, reliability, "split pipeline worker, either side killed (SIGKILL)")


def assert_a_healthy_worker_finishes_losing_nothing(
    data: Path, store: SQLiteStockItems, reliability: Any, scenario: str
) -> None:
    worker = start_worker(data)  # a healthy worker finishes the job
    views = SQLiteAvailabilityViews(data / "views.db")
    try:
        deadline = time.monotonic() + 60
        while (store.checkpoints().position(Relay.NAME) < store.max_position()
               or views.events_applied() < store.max_position()):
            assert time.monotonic() < deadline, "the worker never caught up"
            threading.Event().wait(0.02)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    published = audited_message_ids(data)
    expected = event_ids(store)
    reliability.record(scenario, kills=WORKER_KILLS,
                       events=len(expected), lost=len(expected - set(published)),
                       duplicates_delivered=len(published) - len(set(published)))
    assert set(published) == expected, f"lost: {sorted(expected - set(published))[:5]}"
    assert len(published) == len(expected), "a duplicate reached a subscription"
    for row in views.rows():
        item = store.get(row.sku, row.location)
        assert item is not None
        assert (row.version, row.on_hand, row.reserved) == (item.version, item.on_hand,
                                                            item.reserved)
    views.close()
    store.close()
