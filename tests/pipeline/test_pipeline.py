"""The embedded pipeline end to end: relay → broker → availability projection.

Most tests drive the parts step by step (pump the relay, drain the subscription) so each
fault lands exactly where the test puts it; one test runs the threaded runtime.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import SystemClock
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.openmetrics import read_snapshot
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.commands import StockCommands
from application.consumer import EventConsumer, SessionConsumer
from application.ports import Checkpoints, MessagePublisher, OutgoingMessage, StoreUnavailable
from application.relay import Relay, to_message
from application.replay import DeadLetterReplay
from application.settings import load
from composition import Services
from composition.embedded import EmbeddedProcess, embedded_services
from composition.files import EmbeddedFiles
from contracts.topology import AVAILABILITY_SUBSCRIPTION, MAX_DELIVERY_COUNT, TOPIC, replay_rules
from local.pipeline import Pipeline, Role, start_pipeline
from projections.availability import AvailabilityProjection

DOWNSTREAM = "downstream-team"


@dataclass
class Parts:
    store: SQLiteStockItems
    commands: StockCommands
    broker: EmbeddedBroker
    views: SQLiteAvailabilityViews
    projection: AvailabilityProjection
    relay: Relay
    consumer: SessionConsumer

    def deliver(self) -> int:
        """Publish the outbox and drain the availability subscription."""
        self.relay.drain()
        return self.drain()

    def drain(self) -> int:
        total = 0
        while settled := self.consumer.run_once(0.0):
            total += settled
        return total

    def assert_projection_equals_event_store(self) -> None:
        rows = list(self.views.rows())
        assert rows, "the projection is empty"
        for row in rows:
            item = self.store.get(row.sku, row.location)
            assert item is not None
            assert (row.version, row.on_hand, row.reserved, row.available) == (
                item.version, item.on_hand, item.reserved, item.available,
            ), f"{row.sku}|{row.location} differs from its stream"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    store = SQLiteStockItems(tmp_path / "events.db")
    broker = EmbeddedBroker(tmp_path / "broker.db")
    ensure_topology(broker)
    broker.create_subscription(TOPIC, DOWNSTREAM, rules=replay_rules(DOWNSTREAM))
    views = SQLiteAvailabilityViews(tmp_path / "views.db")
    projection = AvailabilityProjection(views, store.history)
    commands = StockCommands(store, SystemClock())
    relay = Relay(store, broker, store.checkpoints(), SystemClock(), batch_size=7)
    consumer = SessionConsumer(
        broker, TOPIC, AVAILABILITY_SUBSCRIPTION, EventConsumer("availability", projection.handle)
    )
    yield Parts(store, commands, broker, views, projection, relay, consumer)
    views.close()
    broker.close()
    store.close()


def some_trading(commands: StockCommands, skus: int = 4) -> None:
    for n in range(skus):
        sku = f"SKU-{n}"
        commands.receive(sku, "STORE-1", 20)
        commands.receive(sku, "STORE-2", 5)
        commands.reserve(sku, "STORE-1", f"order-{n}-a", 3, "web")
        commands.reserve(sku, "STORE-1", f"order-{n}-b", 2, "pos")
        commands.fulfil(sku, "STORE-1", f"order-{n}-a")
        commands.release(sku, "STORE-1", f"order-{n}-b")
        commands.adjust(sku, "STORE-2", -1, "damaged")


def test_every_event_reaches_the_projection_in_order(parts: Parts) -> None:
    some_trading(parts.commands)
    parts.deliver()
    parts.assert_projection_equals_event_store()
    availability = parts.views.for_sku("SKU-0")
    assert (availability.on_hand, availability.reserved, availability.available) == (21, 0, 21)
    assert [row.location for row in availability.locations] == ["STORE-1", "STORE-2"]


def test_messages_carry_the_contract_of_design_section_4(parts: Parts) -> None:
    result = parts.commands.receive("SKU-9", "STORE-1", 2)
    message = to_message(result.events[-1])
    assert message.message_id == "SKU-9|STORE-1:2"
    assert message.session_id == "SKU-9|STORE-1"
    assert message.subject == "Stockstream.StockReceived.v1"
    assert message.content_type == "application/cloudevents+json"
    assert message.application_properties == {
        "type": "Stockstream.StockReceived.v1", "sku": "SKU-9", "location": "STORE-1",
        "sequence": 2, "replayTarget": "all",
    }
    assert json.loads(message.body)["id"] == "SKU-9|STORE-1:2"


def test_ids_longer_than_service_bus_allows_are_shortened_deterministically() -> None:
    from domain import StockItem
    from tests.events import stock_events

    item = StockItem.create("S" * 64, "L" * 64)
    item.receive(1)
    created, received = (to_message(e) for e in stock_events(item))
    assert len(received.session_id) <= 128 and len(received.message_id) <= 128
    assert received.session_id == created.session_id  # one session per stream
    assert received.message_id != created.message_id
    assert to_message(stock_events(StockItem.create("S" * 64, "L" * 64))[0]).message_id == (
        created.message_id
    )


class CrashesAfterPublishing(MessagePublisher):
    """Publishes, then dies before the relay can checkpoint (the worst moment)."""

    def __init__(self, inner: MessagePublisher) -> None:
        self.inner = inner

    def publish(self, topic: str, messages: Any) -> None:
        self.inner.publish(topic, messages)
        raise ConnectionResetError("relay process killed after publishing")


@pytest.mark.parametrize("duplicate_detection", [True, False])
def test_a_relay_crash_between_publish_and_checkpoint_republishes_without_double_counting(
    parts: Parts, duplicate_detection: bool
) -> None:
    from datetime import timedelta

    if not duplicate_detection:  # consumers must absorb duplicates on their own, too
        parts.broker.create_topic(TOPIC, duplicate_detection_window=timedelta(0))
    some_trading(parts.commands)
    crashing = Relay(parts.store, CrashesAfterPublishing(parts.broker), parts.store.checkpoints(),
                     SystemClock(), batch_size=10)
    with pytest.raises(ConnectionResetError):
        crashing.pump()
    assert parts.store.checkpoints().position(Relay.NAME) == 0
    parts.drain()  # consumers see the first batch before the relay restarts
    parts.deliver()  # the restarted relay publishes everything again from its checkpoint
    parts.assert_projection_equals_event_store()
    assert parts.views.events_applied() == parts.store.max_position()


def test_a_duplicate_storm_gives_the_same_projection_as_one_delivery(parts: Parts) -> None:
    from datetime import timedelta

    parts.broker.create_topic(TOPIC, duplicate_detection_window=timedelta(0))
    some_trading(parts.commands)
    records = parts.store.read_after(0, 10_000)
    for _ in range(3):
        parts.broker.publish(TOPIC, [to_message(r.event) for r in records])
    parts.drain()
    parts.assert_projection_equals_event_store()
    assert parts.views.events_applied() == parts.store.max_position()


def test_a_lost_message_is_filled_in_from_the_event_store(parts: Parts) -> None:
    some_trading(parts.commands, skus=1)
    records = parts.store.read_after(0, 10_000)
    lost = ("STORE-1", 3)  # a message in the middle of a stream never arrives
    survivors = [r for r in records if (r.event.location, r.event.originator_version) != lost]
    parts.broker.publish(TOPIC, [to_message(r.event) for r in survivors])
    parts.drain()
    parts.assert_projection_equals_event_store()


def test_a_poison_message_is_dead_lettered_and_replay_repairs_only_its_subscription(
    parts: Parts,
) -> None:
    poisoned = {"on": True}

    def fragile(document: dict[str, Any]) -> object:
        if poisoned["on"] and document["subject"] == "SKU-0|STORE-1" and document["sequence"] == 6:
            raise RuntimeError("a projection bug on this one event")
        return parts.projection.handle(document)

    parts.consumer.consumer = EventConsumer("availability", fragile)
    some_trading(parts.commands)  # SKU-0|STORE-1's last event is version 6
    parts.deliver()
    downstream_before = parts.broker.counts(TOPIC, DOWNSTREAM).active
    assert downstream_before == parts.store.max_position()  # the downstream team got all

    counts = parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION)
    assert (counts.active, counts.dead_lettered) == (0, 1)
    with parts.broker.dead_letter_receiver(TOPIC, AVAILABILITY_SUBSCRIPTION) as dlq:
        (dead,) = dlq.receive(10, 0.0)
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.delivery_count >= MAX_DELIVERY_COUNT
    assert parts.views.version_of("SKU-0", "STORE-1") == 5  # only that stream is behind
    for n in range(1, 4):
        item = parts.store.get(f"SKU-{n}", "STORE-1")
        assert item is not None and parts.views.version_of(f"SKU-{n}", "STORE-1") == item.version

    poisoned["on"] = False
    replay = DeadLetterReplay(parts.broker)
    assert replay.replay(AVAILABILITY_SUBSCRIPTION) == 1
    parts.drain()
    parts.assert_projection_equals_event_store()
    assert parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).dead_lettered == 0
    assert parts.broker.counts(TOPIC, DOWNSTREAM).active == downstream_before


def test_a_message_that_breaks_the_schema_is_dead_lettered_with_the_reason(parts: Parts) -> None:
    parts.commands.receive("SKU-1", "STORE-1", 2)
    parts.relay.drain()
    bad = json.loads(to_message(parts.store.read_after(0, 10)[-1].event).body)
    bad["id"], bad["data"]["quantity"] = "SKU-1|STORE-1:3", "lots"
    parts.broker.publish(TOPIC, [OutgoingMessage(
        message_id="bad-1", session_id="SKU-1|STORE-1", subject=bad["type"],
        body=json.dumps(bad).encode(), application_properties={"replayTarget": "all"},
    )])
    parts.drain()
    with parts.broker.dead_letter_receiver(TOPIC, AVAILABILITY_SUBSCRIPTION) as dlq:
        (dead,) = dlq.receive(10)
    assert dead.dead_letter_reason == "SchemaValidationFailed"
    assert "quantity" in (dead.dead_letter_description or "")


def test_the_running_pipeline_shows_a_command_in_availability(tmp_path: Path) -> None:
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}),
                                  process=EmbeddedProcess.PIPELINE)
    pipeline = start_pipeline(container)
    try:
        container.commands.receive("SKU-1", "STORE-1", 12)
        container.commands.reserve("SKU-1", "STORE-1", "order-1", 5, "web")
        # How fast is bench/pipeline_lag.py's question; this one asks only that it comes.
        deadline = time.monotonic() + 30
        assert container.availability is not None
        while container.availability.for_sku("SKU-1").reserved != 5:
            assert time.monotonic() < deadline, "the projection never caught up"
            threading.Event().wait(0.01)
        assert container.ops is not None
        # The relay checkpoints after it publishes, so the projection may apply an event
        # a moment before the outbox says it is published: wait for that too.
        while (status := container.ops.status()).outbox.depth != 0:
            assert time.monotonic() < deadline, "the relay never checkpointed"
            threading.Event().wait(0.01)
        assert [s.name for s in status.subscriptions] == [AVAILABILITY_SUBSCRIPTION]
        assert status.projections[0].position == 3
    finally:
        pipeline.stop()
        container.close()


# ------------------------------------------------- visits of many sessions, batched


def test_a_visit_applies_many_sessions_in_one_batch_and_a_failed_batch_settles_nothing(
    parts: Parts,
) -> None:
    some_trading(parts.commands)
    parts.relay.drain()
    failing = {"on": True}

    @contextmanager
    def batch() -> Iterator[None]:
        with parts.views.batch():
            yield
            if failing["on"]:
                raise StoreUnavailable("the view's file failed at commit")

    consumer = SessionConsumer(broker=parts.broker, topic=TOPIC,
                               subscription=AVAILABILITY_SUBSCRIPTION,
                               consumer=EventConsumer("availability", parts.projection.handle,
                                                      batch=batch),
                               sessions=64, batch_size=32)
    waiting = parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active

    with pytest.raises(StoreUnavailable):
        consumer.run_once(0.0)
    assert parts.views.events_applied() == 0  # nothing of the batch was recorded
    assert parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == waiting

    failing["on"] = False
    assert consumer.run_once(0.0) == waiting  # every session (8 here) in one visit
    assert consumer.run_once(0.0) == 0
    parts.assert_projection_equals_event_store()
    assert parts.views.events_applied() == parts.store.max_position()


def _visiting(parts: Parts, sessions: int, batch_size: int) -> SessionConsumer:
    return SessionConsumer(broker=parts.broker, topic=TOPIC,
                           subscription=AVAILABILITY_SUBSCRIPTION,
                           consumer=EventConsumer("availability", parts.projection.handle,
                                                  batch=parts.views.batch),
                           sessions=sessions, batch_size=batch_size)


def test_draining_visits_until_one_takes_nothing_publishing_between_visits(
    parts: Parts,
) -> None:
    some_trading(parts.commands)
    parts.relay.pump()  # 7 of the events; the rest are published between visits
    visits: list[int] = []

    def between() -> None:
        visits.append(parts.views.events_applied())
        parts.relay.pump()

    settled = _visiting(parts, sessions=2, batch_size=2).drain(between)

    assert settled == parts.store.max_position() > 7
    assert len(visits) > 2 and visits == sorted(visits)  # a publish after every visit
    assert parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == 0
    parts.assert_projection_equals_event_store()


def test_a_failure_between_visits_settles_the_visit_already_applied(parts: Parts) -> None:
    some_trading(parts.commands)
    parts.relay.drain()
    waiting = parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active

    def between() -> None:
        raise StoreUnavailable("the relay's store failed")

    consumer = _visiting(parts, sessions=2, batch_size=3)
    with pytest.raises(StoreUnavailable):
        consumer.drain(between)

    applied = parts.views.events_applied()
    assert applied == 6  # one visit: two sessions, three messages each
    # Completed and released at once: not redelivered, nothing waits for a lock to lapse.
    assert parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == waiting - applied
    assert consumer.drain() == waiting - applied
    parts.assert_projection_equals_event_store()


class RecordedCheckpoints:
    """The store's checkpoints, each write noted in ``calls`` (beside the syncs a test
    notes there too), so a test sees what was written and in which order."""

    def __init__(self, checkpoints: Checkpoints, calls: list[tuple[str, int]]) -> None:
        self.checkpoints, self.calls = checkpoints, calls

    def position(self, name: str) -> int:
        return self.checkpoints.position(name)

    def advance(self, name: str, position: int) -> None:
        self.calls.append(("advance", position))
        self.checkpoints.advance(name, position)


def recorded_relay(parts: Parts, calls: list[tuple[str, int]], **options: Any) -> Relay:
    """A relay of 5-event batches whose syncs and checkpoint writes are noted in ``calls``."""
    return Relay(parts.store, parts.broker,
                 RecordedCheckpoints(parts.store.checkpoints(), calls), SystemClock(),
                 batch_size=5, before_checkpoint=lambda: calls.append(("sync", 0)), **options)


def test_a_relay_with_a_checkpoint_interval_never_checkpoints_past_what_it_synced(
    parts: Parts,
) -> None:
    calls: list[tuple[str, int]] = []
    relay = recorded_relay(parts, calls, checkpoint_interval=3600)
    some_trading(parts.commands)  # 28 events
    assert relay.pump() == 5
    assert relay.pump() == 5
    # The first batch is checkpointed (after a sync), the next not within the interval.
    assert calls == [("sync", 0), ("advance", 5)]
    assert relay.status().depth == parts.store.max_position() - 10

    # A relay that crashed here republishes from the checkpoint; duplicate detection
    # drops what the first one had published.
    restarted = Relay(parts.store, parts.broker, parts.store.checkpoints(), SystemClock())
    assert restarted.drain() == parts.store.max_position() - 5
    assert relay.drain() == parts.store.max_position() - 10
    # Finding the outbox empty, it checkpoints what it published, synced first.
    assert calls[-2:] == [("sync", 0), ("advance", parts.store.max_position())]
    assert parts.broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == (
        parts.store.max_position())
    parts.drain()
    parts.assert_projection_equals_event_store()


def test_a_relay_with_deferred_checkpoints_publishes_without_writing_one_and_checkpoints_on_call(
    parts: Parts,
) -> None:
    calls: list[tuple[str, int]] = []
    relay = recorded_relay(parts, calls, checkpoint_interval=0.25, deferred_checkpoints=True)
    some_trading(parts.commands)
    published = relay.drain()

    # Publishing, and finding the outbox empty, wrote no checkpoint: the event store's
    # file, which commands hold, is never waited for in the relay's own thread.
    assert published == parts.store.max_position()
    assert calls == []
    assert relay.status().depth == 0  # the relay knows what it published

    # The owner's call syncs the broker first, then records exactly what was published.
    assert relay.checkpoint() == 1
    assert calls == [("sync", 0), ("advance", published)]
    assert relay.checkpoint() == 0  # nothing new: no second write
    assert parts.store.checkpoints().position(Relay.NAME) == published


def test_the_running_pipeline_writes_the_relays_checkpoint_in_its_own_thread_and_at_stop(
    tmp_path: Path,
) -> None:
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}),
                                  process=EmbeddedProcess.PIPELINE)
    assert container.pipeline is not None and container.pipeline.relay.deferred_checkpoints
    checkpoints = container.store.checkpoints()  # type: ignore[attr-defined]
    pipeline = start_pipeline(container)
    try:
        container.commands.receive("SKU-1", "STORE-1", 12)
        deadline = time.monotonic() + 30
        while checkpoints.position(Relay.NAME) < 2:  # created + received
            assert time.monotonic() < deadline, "the checkpoint loop never wrote"
            threading.Event().wait(0.01)
        container.commands.reserve("SKU-1", "STORE-1", "order-1", 5, "web")
    finally:
        pipeline.stop()  # publishes what is committed and checkpoints it
    assert checkpoints.position(Relay.NAME) == 3
    container.close()


def test_the_running_pipeline_consumes_what_another_broker_connection_published(
    tmp_path: Path,
) -> None:
    """The relay and the consumer share one thread (``local.pipeline``): a message that
    no commit of this process woke it for (a dead-letter replay from the host, a lock
    that lapsed) is still found by the loop's next poll."""
    elsewhere = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path / "elsewhere")}),
                                  process=EmbeddedProcess.COMMANDS)
    elsewhere.commands.receive("SKU-X", "STORE-1", 7)
    messages = [to_message(r.event) for r in elsewhere.store.read_after(0, 10)]  # type: ignore[attr-defined]
    elsewhere.close()
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path / "here")}),
                                  process=EmbeddedProcess.PIPELINE)
    pipeline = start_pipeline(container)
    other = EmbeddedBroker(tmp_path / "here" / "broker.db")
    try:
        assert container.pipeline is not None
        assert other.path.resolve() == container.pipeline.broker.path.resolve()
        other.publish(TOPIC, messages)
        deadline = time.monotonic() + 30
        assert container.availability is not None
        while container.availability.for_sku("SKU-X").on_hand != 7:
            assert time.monotonic() < deadline, "the consumer never took the messages"
            threading.Event().wait(0.01)
    finally:
        other.close()
        pipeline.stop()
        container.close()


def _split_worker_side(data: Path, role: Role) -> tuple[Services, Pipeline]:
    process = EmbeddedProcess.CONSUMER if role == "consumer" else EmbeddedProcess.WORKER
    side = embedded_services(load({"STOCKSTREAM_DATA": str(data)}), process=process)
    return side, start_pipeline(side, relay_interval=0.005, role=role)


def test_a_split_worker_relays_in_one_process_and_consumes_in_the_other(
    tmp_path: Path,
) -> None:
    """The host's two workers (``local.worker --role``): the relaying one publishes what
    another process commits and consumes nothing; the consuming one applies what the
    other published, found by polling, and stops without publishing."""
    host = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}),
                             process=EmbeddedProcess.HOST)
    relaying, relay_side = _split_worker_side(tmp_path, "relay")
    consuming: Services | None = None
    try:
        host.commands.receive("SKU-1", "STORE-1", 12)
        host.commands.reserve("SKU-1", "STORE-1", "order-1", 5, "web")
        broker = host.broker
        assert broker is not None and host.availability is not None
        deadline = time.monotonic() + 30
        while broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active < 3:
            assert time.monotonic() < deadline, "the relaying worker never published"
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)  # a consuming loop would have taken them by now
        assert broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active == 3
        assert host.availability.events_applied() == 0  # type: ignore[attr-defined]

        consuming, consumer_side = _split_worker_side(tmp_path, "consumer")
        try:
            while host.availability.for_sku("SKU-1").available != 7:
                assert time.monotonic() < deadline, "the consuming worker never applied"
                threading.Event().wait(0.01)
            host.commands.receive("SKU-2", "STORE-1", 3)
        finally:
            consumer_side.stop()
        # The consumer stopped without publishing the last commit: that is the relay's.
        while host.availability.for_sku("SKU-2").on_hand != 0 \
                or broker.counts(TOPIC, AVAILABILITY_SUBSCRIPTION).active < 2:
            assert time.monotonic() < deadline, "the relaying worker stopped publishing"
            threading.Event().wait(0.01)
    finally:
        relay_side.stop()
        relaying.close()
        if consuming is not None:
            consuming.close()
        host.close()


def test_a_split_workers_processes_each_write_a_snapshot_and_the_host_serves_both(
    tmp_path: Path,
) -> None:
    """Gauges are sampled by the relaying process only, so the host's merged source
    reports each once; the consuming process's own measures (the projection's lag)
    reach the host through its own snapshot."""
    host = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}),
                             process=EmbeddedProcess.HOST)
    relaying, relay_side = _split_worker_side(tmp_path, "relay")
    consuming, consumer_side = _split_worker_side(tmp_path, "consumer")
    try:
        host.commands.receive("SKU-1", "STORE-1", 12)
        assert host.availability is not None
        deadline = time.monotonic() + 30
        while host.availability.for_sku("SKU-1").on_hand != 12:
            assert time.monotonic() < deadline, "the pipeline never applied the receipt"
            threading.Event().wait(0.01)
        relay_side.record_metrics()
        consumer_side.record_metrics()
    finally:
        consumer_side.stop()
        relay_side.stop()
        consuming.close()
        relaying.close()
    files = EmbeddedFiles(tmp_path)
    relayed = {f.name for f in read_snapshot(files.worker_metrics)}
    consumed = {f.name for f in read_snapshot(files.consumer_metrics)}
    served = {f.name: f for f in host.metrics_sources["worker"]()}
    host.close()

    assert any("outbox" in name for name in relayed)
    assert not any("outbox" in name or "backlog" in name for name in consumed)
    assert any("projection" in name for name in consumed)
    assert relayed | consumed == set(served)
    for family in served.values():
        labels = [tuple(sorted(p.labels.items())) for p in family.points]
        assert len(labels) == len(set(labels)), f"{family.name} reported twice"
