"""The embedded host's composition root: SQLite files under the data directory, the
embedded broker, and the pipeline that Azure runs as functions.

The embedded host is split into processes as Azure splits its functions, and each asks
:func:`embedded_services` for the parts it runs (:class:`EmbeddedProcess`):

- ``COMMANDS`` — the command path (orders, transfers and location groups included) and
  reconciliation only (``stockstream`` commands
  that need nothing else, the Functions worker on SQLite settings, tests);
- ``HOST`` — the HTTP process of ``make serve``: the command path (orders too), and readers of the
  pipeline that its worker process runs (availability view, status, dead-letter replay,
  projection repair, the worker's metrics snapshot);
- ``OPERATOR`` — the ``stockstream`` commands that read the pipeline's files: as
  ``HOST``, but it declares no topology and serves no metrics;
- ``WORKER`` — the pipeline worker (``python -m local.worker``): relay, availability
  consumer, expiry sweep, the process sweep (orders and transfers) and metrics, writing
  its metrics snapshot for the host; the host runs two of them, one relaying and one
  consuming (``local.worker``'s roles), and ``CONSUMER`` is the second's: the same
  parts, its own snapshot;
- ``PIPELINE`` — HTTP and the pipeline in one process (tests, benchmarks).

``local.pipeline`` runs the pipeline's parts (threads, stop order); :func:`embedded_relay`
is the standalone relay process (``python -m local.relay``). Every file of the data
directory is named once, in :class:`~composition.files.EmbeddedFiles`.

Orders, transfers and location groups live in ``processes.db`` beside the event store
(:class:`~adapters.sqlite.process_streams.SQLiteProcessStore`); every process but
``OPERATOR`` opens it, and the pipeline (``WORKER``, ``PIPELINE``) sweeps its orders and
transfers every ``STOCKSTREAM_ORDER_SWEEP_INTERVAL``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from adapters.clock import SystemClock
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.openmetrics import Family, merged, read_snapshot
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from adapters.sqlite.process_streams import SQLiteProcessStore
from adapters.sqlite.reconciliation import SQLiteMovementLedger, SQLiteReconciliation
from adapters.telemetry import Telemetry, configure_telemetry
from application.cadence import CadencePolicy, CountSchedule
from application.commands import StockCommands
from application.consumer import EventConsumer, SessionConsumer, projection_lag_observer
from application.expiry import ExpirySweep
from application.ops import PipelineStatus
from application.orders import LocationGroups, Orders
from application.ports import Clock
from application.queries import StockQueries
from application.relay import Relay
from application.replay import DeadLetterReplay
from application.settings import Settings
from application.transfers import Transfers
from composition.core import CommitObserver, reconciler, stock_commands
from composition.files import EmbeddedFiles
from composition.services import (
    Closeable,
    OpenedOnFirstUse,
    ReconciliationServices,
    Services,
)
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from domain.stock_item import StockItem
from projections.availability import AvailabilityProjection, projection_status
from projections.movements import MovementProjection, batch_with_movements, with_movements
from projections.repair import ProjectionRepair

CONSUMER_BATCH = 32
"""Messages a consumer takes of one session in a visit."""
CONSUMER_SESSIONS = 64
"""Sessions a consumer takes in a visit (with their messages, in one broker transaction;
applied in one view transaction; settled and released in one more)."""
CONSUMER_WORKERS = 1
"""One consumer thread if the consumer runs on its own (``SessionConsumer.start``): the
embedded broker and the views have one writer at a time anyway, and more threads only
queued on them (four threads used almost twice the CPU of one, and multiplied the lag,
measured with ``bench/pipeline_lag.py``). ``local.pipeline`` runs it in the relay's
thread instead."""
STANDALONE_RELAY_BATCH = 64
RELAY_CHECKPOINT_SECONDS = 0.25
"""How often the relay's checkpoint is written: a crash republishes at most this long's
events, which duplicate detection drops (``Relay._pump``). Its publishes skip the fsync
(``EmbeddedBroker.durable_publish``); the broker is synced before each checkpoint. The
pipeline's relay leaves the write to a thread of its own (``deferred_checkpoints``,
``local.pipeline``); the standalone relay writes it in its loop, and at once when it
finds the outbox empty."""


class EmbeddedProcess(enum.Enum):
    """Which of the embedded host's processes the services are for (module docstring)."""

    COMMANDS = "commands"
    HOST = "host"
    OPERATOR = "operator"
    WORKER = "worker"
    CONSUMER = "consumer"
    PIPELINE = "pipeline"


@dataclass(frozen=True)
class EmbeddedPipeline:
    """The parts of the embedded pipeline, run by ``local.pipeline.Pipeline``.

    ``consumer`` applies each message of the availability subscription to ``projection``
    (the availability view), then to ``movements`` (the movement ledger the count schedule
    reads), as the Azure availability consumer does. ``wake`` is set by every commit in
    this process (the relay waits on it, polling as a fallback for other processes'
    commits); with ``metrics_snapshot`` the metrics loop also writes what it measured
    there, for another process to serve.
    """

    relay: Relay
    broker: EmbeddedBroker
    views: SQLiteAvailabilityViews
    projection: AvailabilityProjection
    movements: MovementProjection
    consumer: SessionConsumer
    sweep: ExpirySweep
    status: PipelineStatus
    orders: Orders | None
    transfers: Transfers | None
    wake: threading.Event
    metrics_snapshot: Path | None = None


@dataclass(frozen=True)
class _Readers:
    """What a process reads of the pipeline (run by it, or by another process)."""

    broker: EmbeddedBroker
    views: SQLiteAvailabilityViews
    ops: PipelineStatus
    metrics_sources: Mapping[str, Callable[[], list[Family]]]


def embedded_services(
    settings: Settings,
    clock: Clock | None = None,
    *,
    telemetry: Telemetry | None = None,
    process: EmbeddedProcess = EmbeddedProcess.COMMANDS,
) -> Services:
    """The services of one embedded ``process`` for ``settings`` (module docstring).

    ``telemetry`` replaces the configured one (tests read it into memory). Raises what
    opening a SQLite file raises (``StoreUnavailable``, ``OSError``, ``sqlite3.Error``),
    after closing what it had opened.
    """
    clock = clock or SystemClock()
    telemetry = telemetry or configure_telemetry(settings)
    files = EmbeddedFiles(settings.data_dir)
    runs_pipeline = process in (EmbeddedProcess.PIPELINE, EmbeddedProcess.WORKER,
                                EmbeddedProcess.CONSUMER)
    wake = threading.Event()
    observers: tuple[CommitObserver, ...] = (
        (lambda _events: wake.set(),) if runs_pipeline else ())
    with ExitStack() as opened:
        store = SQLiteStockItems(files.events, memo_window=settings.idempotency_window)
        opened.callback(store.close)
        commands = stock_commands(store, clock, settings, observers, group_commit=True)
        processes: SQLiteProcessStore | None = None
        orders: Orders | None = None
        groups: LocationGroups | None = None
        transfers: Transfers | None = None
        if process is not EmbeddedProcess.OPERATOR:
            processes = SQLiteProcessStore(files.processes)
            opened.callback(processes.close)
            orders = Orders(processes.orders, processes.groups, commands, store, clock)
            groups = LocationGroups(processes.groups)
            transfers = Transfers(processes.transfers, commands, clock)
        pipeline: EmbeddedPipeline | None = None
        readers: _Readers | None = None
        if runs_pipeline:
            snapshot = {EmbeddedProcess.WORKER: files.worker_metrics,
                        EmbeddedProcess.CONSUMER: files.consumer_metrics}.get(process)
            pipeline = _pipeline(settings, files, store, commands, clock, telemetry, wake,
                                 snapshot, opened, orders, transfers, processes)
            readers = _Readers(pipeline.broker, pipeline.views, pipeline.status, {})
        elif process in (EmbeddedProcess.HOST, EmbeddedProcess.OPERATOR):
            readers = _readers(files, store, processes, clock, opened,
                               host=process is EmbeddedProcess.HOST)
        services = Services(
            settings=settings, clock=clock, store=store, commands=commands,
            queries=StockQueries(store, clock), telemetry=telemetry,
            reconciliation=_reconciliation(settings, files, store, commands, clock, telemetry),
            availability=None if readers is None else readers.views,
            ops=None if readers is None else readers.ops,
            replay=None if readers is None else DeadLetterReplay(readers.broker),
            repair=None if readers is None else _repair(readers.views, store),
            broker=None if readers is None else readers.broker,
            pipeline=pipeline,
            orders=orders,
            location_groups=groups,
            transfers=transfers,
            metrics_sources=MappingProxyType(
                {} if readers is None else dict(readers.metrics_sources)),
            closers=_closers(store, readers, pipeline, processes),
        )
        opened.pop_all()
    return services


def _closers(store: SQLiteStockItems, readers: _Readers | None,
             pipeline: EmbeddedPipeline | None,
             processes: SQLiteProcessStore | None) -> tuple[Closeable, ...]:
    """What the services close, in order: the pipeline's movement ledger, the readers'
    files, the order streams, the event store last."""
    ledger: tuple[Closeable, ...] = () if pipeline is None else (pipeline.movements.ledger,)
    files: tuple[Closeable, ...] = () if readers is None else (readers.views, readers.broker)
    orders: tuple[Closeable, ...] = () if processes is None else (processes,)
    return (*ledger, *files, *orders, store)


def _readers(files: EmbeddedFiles, store: SQLiteStockItems,
             processes: SQLiteProcessStore | None, clock: Clock, opened: ExitStack,
             *, host: bool) -> _Readers:
    """Readers of the pipeline another process runs. The host declares the topology (as
    the worker does) and serves the worker's metrics snapshot; the operator's tools read
    the files as they are. The outbox is the event store's and, where ``processes`` is
    open (the host), the process store's too, as the worker's relay publishes both."""
    broker = EmbeddedBroker(files.broker)
    opened.callback(broker.close)
    if host:
        ensure_topology(broker)
    views = SQLiteAvailabilityViews(files.views)
    opened.callback(views.close)
    # A relay object only to read the outbox's depth and age: it never pumps here.
    relay = Relay(store, broker, store.checkpoints(), clock, processes=processes)
    ops = PipelineStatus(clock, relay.status, broker, TOPIC,
                         lambda: [projection_status(views)])
    snapshots = (files.worker_metrics, files.consumer_metrics)
    # The worker's two processes measure apart (the relay, the consumer), one source.
    sources: dict[str, Callable[[], list[Family]]] = (
        {"worker": lambda: merged(*(read_snapshot(s) for s in snapshots))} if host else {})
    return _Readers(broker, views, ops, sources)


def _pipeline(settings: Settings, files: EmbeddedFiles, store: SQLiteStockItems,
              commands: StockCommands, clock: Clock, telemetry: Telemetry,
              wake: threading.Event, snapshot: Path | None, opened: ExitStack,
              orders: Orders | None, transfers: Transfers | None,
              processes: SQLiteProcessStore | None
              ) -> EmbeddedPipeline:
    """The pipeline's parts, recording the Azure metrics by the same code paths: the relay
    each published event's age, the projection each applied event's age. The availability
    subscription's consumer feeds the movement ledger too (``with_movements``). The relay
    publishes the order and transfer events of ``processes`` too, after a checkpoint of
    their own."""
    broker = EmbeddedBroker(files.broker, durable_publish=False)
    opened.callback(broker.close)
    ensure_topology(broker)
    views = SQLiteAvailabilityViews(files.views)
    opened.callback(views.close)
    projection = AvailabilityProjection(views, store.history)
    movements = _movements(files, store, opened)
    relay = Relay(store, broker, store.checkpoints(), clock,
                  deprecated_versions_until=settings.deprecated_versions_until,
                  processes=processes, checkpoint_interval=RELAY_CHECKPOINT_SECONDS,
                  before_checkpoint=broker.sync, deferred_checkpoints=True)

    def published(events: Sequence[StockItem.Event]) -> None:
        now = clock.now()
        telemetry.record_relay_batch([(now - e.timestamp).total_seconds() for e in events])

    relay.on_published.append(published)
    consumer = SessionConsumer(
        broker, TOPIC, AVAILABILITY_SUBSCRIPTION,
        EventConsumer(projection.name, with_movements(projection.handle, movements),
                      observers=(projection_lag_observer(telemetry, projection.name, clock),),
                      batch=batch_with_movements(views.batch, movements)),
        workers=CONSUMER_WORKERS, batch_size=CONSUMER_BATCH, sessions=CONSUMER_SESSIONS,
    )
    return EmbeddedPipeline(
        relay=relay, broker=broker, views=views, projection=projection,
        movements=movements, consumer=consumer,
        sweep=ExpirySweep(views.overdue_reservations, commands, clock),
        status=PipelineStatus(clock, relay.status, broker, TOPIC,
                              lambda: [projection.status()]),
        orders=orders, transfers=transfers, wake=wake, metrics_snapshot=snapshot,
    )


def _repair(views: SQLiteAvailabilityViews, store: SQLiteStockItems) -> ProjectionRepair:
    """Projection reconciliation over ``views``, rebuilding rows from ``store`` (with a
    projection of its own: repairing never touches the running projection's state)."""
    return ProjectionRepair(views, store, AvailabilityProjection(views, store.history))


def _movements(files: EmbeddedFiles, store: SQLiteStockItems,
               opened: ExitStack) -> MovementProjection:
    """The movement ledger projection on ``reconciliation.db`` (closed by ``opened``): the
    pipeline's availability consumer feeds it, the count schedule reads its ledger.

    The first process to open a ledger that needs it (a new one beside an existing event
    store, or one written by earlier versions) rebuilds it from the event store's log, once
    (``projections.movements``); the version guard makes a concurrent rebuild and feed safe.
    """
    ledger = SQLiteMovementLedger(files.reconciliation)
    opened.callback(ledger.close)
    movements = MovementProjection(ledger, store.history)
    if ledger.needs_rebuild():
        movements.rebuild(store)
    return movements


def _reconciliation(
    settings: Settings, files: EmbeddedFiles, store: SQLiteStockItems,
    commands: StockCommands, clock: Clock, telemetry: Telemetry,
) -> OpenedOnFirstUse[ReconciliationServices]:
    """Holds, sessions and the movement ledger in ``reconciliation.db``. The schedule reads
    the ledger that the pipeline's availability consumer feeds (``_movements``; this
    process's own connection to it, rebuilt from the log first if it needs it)."""

    def open_tables() -> ReconciliationServices:
        with ExitStack() as opened:
            tables = SQLiteReconciliation(files.reconciliation)
            opened.callback(tables.close)
            ledger = _movements(files, store, opened).ledger
            cadence = CadencePolicy.parse(settings.count_cadence)
            services = ReconciliationServices(
                reconciler=reconciler(settings, commands, clock, telemetry, tables, tables),
                schedule=CountSchedule(ledger, cadence),
                cadence=cadence,
                closers=(tables, ledger),
            )
            opened.pop_all()
        return services

    return OpenedOnFirstUse(open_tables, ReconciliationServices.close)


@dataclass(frozen=True)
class RelayProcess:
    """The standalone relay's parts (``python -m local.relay``)."""

    store: SQLiteStockItems
    broker: EmbeddedBroker
    relay: Relay
    processes: SQLiteProcessStore

    def close(self) -> None:
        self.broker.close()
        self.processes.close()
        self.store.close()


def embedded_relay(
    settings: Settings,
    clock: Clock | None = None,
    *,
    batch_size: int = STANDALONE_RELAY_BATCH,
    relay_type: type[Relay] = Relay,
) -> RelayProcess:
    """The relay alone, on the data directory's event store and broker (the topology
    declared). ``relay_type`` lets the fault suite run a deliberately broken relay."""
    clock = clock or SystemClock()
    files = EmbeddedFiles(settings.data_dir)
    with ExitStack() as opened:
        store = SQLiteStockItems(files.events, memo_window=settings.idempotency_window)
        opened.callback(store.close)
        broker = EmbeddedBroker(files.broker, durable_publish=False)
        opened.callback(broker.close)
        ensure_topology(broker)
        processes = SQLiteProcessStore(files.processes)
        opened.callback(processes.close)
        relay = relay_type(store, broker, store.checkpoints(), clock, batch_size=batch_size,
                           deprecated_versions_until=settings.deprecated_versions_until,
                           processes=processes,
                           checkpoint_interval=RELAY_CHECKPOINT_SECONDS,
                           before_checkpoint=broker.sync)
        opened.pop_all()
    return RelayProcess(store, broker, relay, processes)
