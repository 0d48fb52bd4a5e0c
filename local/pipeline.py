"""The embedded pipeline: relay, broker, projection consumers and timers in one process.

``start_pipeline(container)`` wires the same application services that Azure runs as
functions, on local parts: the SQLite event store's commit-ordered log as the outbox, the
embedded broker as Service Bus, SQLite views. As on Azure, the availability subscription's
consumer applies each message to the availability view, then to the movement ledger
projection (``projections.movements``) that the count schedule reads. The relay is woken
by every commit (and polls as a fallback), so a command reaches the projections in
milliseconds.

Shutdown (``Pipeline.stop``) stops taking new work, lets each worker finish and settle
the message in hand, publishes what is committed, and closes the databases. Nothing is
lost or half-applied on Ctrl-C: every step is one transaction, and the step after it
(checkpoint, settlement) is repeatable.

Metrics are the Azure ones, recorded by the same code paths: the relay records each
published event's age, the projection each applied event's age, and a metrics loop (the
Azure metrics timer's counterpart) samples the outbox against the relay's checkpoint and
each subscription's counts. The worker process writes what it measured to a snapshot file
that the host's ``GET /api/ops/metrics`` serves beside its own (label ``process``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapters.embedded_broker import EmbeddedBroker
from adapters.openmetrics import read_snapshot, write_snapshot
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from adapters.telemetry import Telemetry
from application.consumer import EventConsumer, SessionConsumer, projection_lag_observer
from application.expiry import ExpirySweep
from application.ops import PipelineStatus
from application.relay import Relay
from application.replay import DeadLetterReplay
from application.settings import AVAILABILITY_SUBSCRIPTION, TOPIC
from domain.stock_item import StockItem
from functions.container import Container, embedded_movements
from projections.availability import AvailabilityProjection, projection_status
from projections.movements import MovementProjection, with_movements

log = logging.getLogger(__name__)

DUPLICATE_DETECTION_WINDOW = timedelta(days=1)
MAX_DELIVERY_COUNT = 10
CONSUMER_BATCH = 32
METRICS_INTERVAL_SECONDS = 10.0
"""How often the metrics loop samples the outbox and the subscriptions (Azure: a minute)."""


def worker_metrics_path(data_dir: Path) -> Path:
    """Where the pipeline worker keeps the snapshot of what it measured."""
    return data_dir / "metrics" / "worker.json"


def replay_rules(subscription: str) -> list[dict[str, str | int]]:
    """The rules every subscription has: normal traffic, and replays meant for it alone."""
    return [{"replayTarget": "all"}, {"replayTarget": subscription}]


def ensure_topology(broker: EmbeddedBroker) -> None:
    """The topic and the availability subscription, as Bicep declares them in Azure."""
    broker.create_topic(TOPIC, duplicate_detection_window=DUPLICATE_DETECTION_WINDOW)
    broker.create_subscription(
        TOPIC,
        AVAILABILITY_SUBSCRIPTION,
        rules=replay_rules(AVAILABILITY_SUBSCRIPTION),
        requires_session=True,
        max_delivery_count=MAX_DELIVERY_COUNT,
        lock_duration=timedelta(seconds=30),
    )


def _history(store: SQLiteStockItems) -> Callable[[str, str, int, int], list[StockItem.Event]]:
    def read(sku: str, location: str, after: int, upto: int) -> list[StockItem.Event]:
        return store.events(sku, location, after=after, limit=upto - after)

    return read


@dataclass
class Pipeline:
    """A running pipeline; ``stop()`` shuts it down cleanly."""

    relay: Relay
    broker: EmbeddedBroker
    views: SQLiteAvailabilityViews
    projection: AvailabilityProjection
    consumer: SessionConsumer
    sweep: ExpirySweep
    status: PipelineStatus | None = None
    telemetry: Telemetry | None = None
    relay_interval: float = 0.05
    sweep_interval: float = 1.0
    metrics_interval: float = METRICS_INTERVAL_SECONDS
    metrics_snapshot: Path | None = None
    movements: MovementProjection | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def wake_relay(self, _events: Any = None) -> None:
        self._wake.set()

    def start(self) -> None:
        self._spawn("relay", self._relay_loop)
        self._spawn("expiry-sweep", self._sweep_loop)
        if self.telemetry is not None and self.status is not None:
            self._spawn("metrics", self._metrics_loop)
        self.consumer.start()

    def record_metrics(self) -> None:
        """Sample the outbox (against the relay's checkpoint) and the subscriptions, and
        write the snapshot the host serves: what the Azure metrics timer does."""
        if self.telemetry is None or self.status is None:
            return
        try:
            self.status.sample(self.telemetry)
        finally:
            if self.metrics_snapshot is not None:
                write_snapshot(self.metrics_snapshot, self.telemetry.families())

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _relay_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.relay_interval)
            self._wake.clear()
            try:
                self.relay.drain()
            except Exception:
                log.exception("relay failed; it retries from its checkpoint")
                self._stopping.wait(0.5)

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self.sweep_interval):
            try:
                self.sweep.run_once()
            except Exception:
                log.exception("expiry sweep failed; it runs again")

    def _metrics_loop(self) -> None:
        while True:
            try:
                self.record_metrics()
            except Exception:
                log.exception("sampling the pipeline's metrics failed; it runs again")
            if self._stopping.wait(self.metrics_interval):
                return

    def stop(self) -> None:
        """Stop taking work, finish what is in hand, publish what is committed, close."""
        self._stopping.set()
        self._wake.set()
        self.consumer.stop()
        for thread in self._threads:
            thread.join(10)
        try:
            self.relay.drain()
        except Exception:
            log.exception("final relay drain failed; the next start publishes the rest")
        try:
            self.record_metrics()
        except Exception:
            log.exception("could not record the pipeline's last metrics")
        self.views.close()
        if self.movements is not None:
            self.movements.ledger.close()
        self.broker.close()


def start_pipeline(
    container: Container,
    *,
    workers: int = 1,
    relay_interval: float = 0.05,
    metrics_snapshot: Path | None = None,
    autostart: bool = True,
) -> Pipeline:
    """Wire and start the embedded pipeline, in this process, for ``container``'s SQLite
    event store. Sets ``container.availability``, ``container.ops`` and ``container.replay``.

    Metrics go to ``container.telemetry``; with ``metrics_snapshot`` the metrics loop also
    writes them there for another process to serve. ``autostart=False`` wires everything
    and starts nothing (tests drive the parts).

    ``relay_interval`` is how often the relay polls when no commit in this process woke it
    (commits from other processes are only seen by polling). One consumer thread is the
    default: the embedded broker and the views have one writer at a time anyway, and more
    threads only queued on them (four threads used almost twice the CPU of one, and
    multiplied the lag, measured with ``bench/pipeline_lag.py``).
    """
    store = container.store
    if not isinstance(store, SQLiteStockItems):
        raise RuntimeError("the embedded pipeline needs the SQLite event store")
    data = container.settings.data_dir
    # Prefetch as many messages as a consumer takes at once: a session and its first
    # batch are then locked in one transaction.
    broker = EmbeddedBroker(data / "broker.db", prefetch=CONSUMER_BATCH)
    ensure_topology(broker)
    views = SQLiteAvailabilityViews(data / "views.db")
    projection = AvailabilityProjection(views, _history(store))
    movements = embedded_movements(container)
    relay = Relay(store, broker, store.checkpoints(), container.clock,
                  deprecated_versions_until=container.settings.deprecated_versions_until)
    telemetry = container.telemetry
    clock = container.clock

    def published(events: Sequence[StockItem.Event]) -> None:
        now = clock.now()
        telemetry.record_relay_batch([(now - e.timestamp).total_seconds() for e in events])

    relay.on_published.append(published)
    consumer = SessionConsumer(
        broker, TOPIC, AVAILABILITY_SUBSCRIPTION,
        EventConsumer(projection.name, with_movements(projection.handle, movements),
                      observers=(projection_lag_observer(telemetry, projection.name, clock),)),
        workers=workers, batch_size=CONSUMER_BATCH,
    )
    sweep = ExpirySweep(views.overdue_reservations, container.commands, container.clock)
    status = PipelineStatus(
        container.clock, relay.status, broker, TOPIC, lambda: [projection.status()]
    )
    pipeline = Pipeline(relay, broker, views, projection, consumer, sweep, status, telemetry,
                        relay_interval=relay_interval, metrics_snapshot=metrics_snapshot,
                        movements=movements)
    container.commands.after_commit.append(pipeline.wake_relay)
    container.availability = views
    container.replay = DeadLetterReplay(broker)
    container.ops = status
    if autostart:
        pipeline.start()
    return pipeline


@dataclass
class PipelineReaders:
    """What a process needs to read (and replay) a pipeline another process runs."""

    broker: EmbeddedBroker
    views: SQLiteAvailabilityViews

    def close(self) -> None:
        self.views.close()
        self.broker.close()


def open_pipeline_readers(container: Container) -> PipelineReaders:
    """Wire ``container.availability``, ``ops`` and ``replay`` to the pipeline's files.

    Everything the pipeline keeps is in SQLite files that are safe to share between
    processes, so the host can serve availability, status and replays while the relay
    and consumers run in the worker process (``python -m local.worker``).
    """
    store = container.store
    if not isinstance(store, SQLiteStockItems):
        raise RuntimeError("the embedded pipeline needs the SQLite event store")
    data = container.settings.data_dir
    broker = EmbeddedBroker(data / "broker.db")
    ensure_topology(broker)
    views = SQLiteAvailabilityViews(data / "views.db")
    # A relay object only to read the outbox's depth and age: it never pumps here.
    relay = Relay(store, broker, store.checkpoints(), container.clock)
    container.availability = views
    container.replay = DeadLetterReplay(broker)
    container.ops = PipelineStatus(
        container.clock, relay.status, broker, TOPIC, lambda: [projection_status(views)]
    )
    # What the worker measured (relay, projection, sampled outbox and subscriptions).
    snapshot = worker_metrics_path(data)
    container.metrics_sources["worker"] = lambda: read_snapshot(snapshot)
    return PipelineReaders(broker, views)
