"""The composition root: builds the services of one worker process from its settings.

SDK clients and stores are created once per process (Azure Functions runs many
invocations on one worker), lazily on first use, so importing ``function_app`` stays
cheap and a cold start opens connections only when a function needs them. Tests and the
embedded host install their own container with :func:`use_container`.

Two shapes, chosen by settings (``STOCKSTREAM_EVENT_STORE``):

- **sqlite** — the embedded host: SQLite event store; ``local.pipeline.start_pipeline``
  adds the relay, the embedded broker, views and timers.
- **cosmos** — Azure: Cosmos DB event store; with ``SERVICEBUS__fullyQualifiedNamespace``
  also the Service Bus broker, the change-feed relay, the availability consumer (which also
  feeds the movement ledger projection, as the embedded pipeline's does), the expiry sweep
  and replay, which the functions in ``functions/pipeline.py`` call.

Metrics are wired here too, once per shape: every save is counted for the HTTP layer's
command outcome (``note_commit``), each applied event's age is recorded by the projection's
observer, and the relay's position (Azure) or checkpoint (embedded) is what the metrics
timer compares with the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.clock import SystemClock
from adapters.openmetrics import Family
from adapters.telemetry import Telemetry, configure_telemetry, local_telemetry, note_commit
from application.cadence import CadencePolicy, CountSchedule
from application.commands import CountWindow, StockCommands
from application.consumer import EventConsumer, projection_lag_observer
from application.expiry import ExpirySweep
from application.holds import ApprovalGate, HoldPolicy, HoldStore
from application.ports import Clock, MessageBroker, StockItemStore
from application.queries import StockQueries
from application.reconciliation import Reconciler, SessionHistory
from application.relay import ChangeFeedRelay
from application.settings import Settings, load
from application.views import AvailabilityReader, DeadLetterReplayer, OpsStatusReader
from projections.movements import MovementProjection, with_movements


@dataclass
class Container:
    """Every service a function may call, wired to the configured adapters."""

    settings: Settings
    store: StockItemStore
    clock: Clock
    commands: StockCommands
    queries: StockQueries
    extras: dict[str, Any]
    # Read models and operations; wired by the pipeline (embedded runtime or Azure).
    availability: AvailabilityReader | None = None
    ops: OpsStatusReader | None = None
    replay: DeadLetterReplayer | None = None
    # The Azure pipeline's parts (None on the embedded host, which runs its own).
    broker: MessageBroker | None = None
    change_feed_relay: ChangeFeedRelay | None = None
    consumers: dict[str, EventConsumer] = field(default_factory=dict)
    expiry_sweep: ExpirySweep | None = None
    telemetry: Telemetry = field(default_factory=local_telemetry)
    metrics_sources: dict[str, Callable[[], list[Family]]] = field(default_factory=dict)
    """Other processes' metrics this host serves too, by process name (the embedded
    pipeline worker's snapshot); ``GET /api/ops/metrics`` labels their points ``process``."""

    def close(self) -> None:
        reconciliation = self.extras.pop("reconciliation", None)  # opened on first use
        if reconciliation is not None:
            reconciliation.close()
        if self.broker is not None:
            self.broker.close()
        self.store.close()


def build_container(
    settings: Settings,
    clock: Clock | None = None,
    *,
    telemetry: Telemetry | None = None,
    broker: MessageBroker | None = None,
) -> Container:
    """Wire the services for ``settings``: SQLite under the data directory, or Azure.

    ``telemetry`` replaces the configured one (tests read it into memory); ``broker``
    stands in for Service Bus in the Azure shape (tests use the embedded broker).
    """
    clock = clock or SystemClock()
    telemetry = telemetry or configure_telemetry(settings)
    if settings.event_store == "cosmos":
        return _azure(settings, clock, telemetry, broker)
    from adapters.sqlite import SQLiteStockItems

    store = SQLiteStockItems(settings.data_dir / "events.db",
                             memo_window=settings.idempotency_window)
    return Container(
        settings=settings,
        store=store,
        clock=clock,
        commands=_commands(store, clock, settings),
        queries=StockQueries(store, clock),
        extras={},
        telemetry=telemetry,
    )


def _commands(store: StockItemStore, clock: Clock, settings: Settings) -> StockCommands:
    commands = StockCommands(store, clock, count_window=CountWindow(settings.count_max_age))
    commands.after_commit.append(note_commit)  # applied vs unchanged, for command metrics
    return commands


def _azure(
    settings: Settings, clock: Clock, telemetry: Telemetry, broker: MessageBroker | None
) -> Container:
    # Azure SDK adapters are imported here only, so the embedded host never needs them.
    from adapters.cosmos import open_cosmos_stock_items
    from adapters.cosmos.change_feed import CosmosRelayPosition, stored_event_from_document

    store = open_cosmos_stock_items(settings)
    commands = _commands(store, clock, settings)
    container = Container(
        settings=settings,
        store=store,
        clock=clock,
        commands=commands,
        queries=StockQueries(store, clock),
        extras={},
        telemetry=telemetry,
    )
    # How far the change-feed relay has published, for the outbox metrics and status.
    relay_position = CosmosRelayPosition(store.factory.settings, clock)
    if broker is None and settings.servicebus_namespace:
        from adapters.servicebus import ServiceBusBroker

        broker = ServiceBusBroker.from_namespace(
            settings.servicebus_namespace, client_id=settings.azure_client_id
        )
    if broker is not None:
        from application.replay import DeadLetterReplay

        container.broker = broker
        container.replay = DeadLetterReplay(broker)

        def decode(document: dict[str, Any]) -> Any:
            stored = stored_event_from_document(document)
            return None if stored is None else store.decode(stored)

        container.change_feed_relay = ChangeFeedRelay(
            decode, broker, clock,
            deprecated_versions_until=settings.deprecated_versions_until,
            position=relay_position,
        )
    # The availability view in Cosmos DB: read by the API, fed by the Service Bus trigger
    # (its gaps filled from the stream), indexing expiries for the sweep.
    from adapters.cosmos.availability_views import CosmosAvailabilityViews
    from adapters.cosmos.reconciliation import CosmosMovementLedger
    from application.ops import PipelineStatus
    from application.settings import AVAILABILITY_SUBSCRIPTION, TOPIC
    from application.views import ProjectionStatus
    from projections.availability import AvailabilityProjection

    history = _stream_history(store)
    views = CosmosAvailabilityViews(store.factory.settings)
    projection = AvailabilityProjection(views, history)
    # The movement ledger projection (count cadence) is fed by the availability
    # subscription too, as on the embedded host (projections.movements.with_movements).
    ledger = CosmosMovementLedger(store.factory.settings)
    container.extras["movement_ledger"] = ledger
    movements = MovementProjection(ledger, history)

    container.availability = views
    container.consumers[AVAILABILITY_SUBSCRIPTION] = EventConsumer(
        projection.name, with_movements(projection.handle, movements),
        observers=(projection_lag_observer(telemetry, projection.name, clock),),
    )
    container.expiry_sweep = ExpirySweep(views.overdue_reservations, commands, clock)

    def projections() -> list[ProjectionStatus]:
        # The lag is the last event *this instance* applied (None if it applied none; on
        # Flex Consumption the HTTP functions scale apart from the trigger, so the
        # authoritative figure is the stockstream.projection.lag_seconds metric).
        return [projection.status()]

    container.ops = PipelineStatus(clock, relay_position.status, container.broker, TOPIC,
                                   projections)
    return container


# ------------------------------------------------------------------ reconciliation


@dataclass
class ReconciliationServices:
    """Reconciliation's services for one container (embedded data directory or Azure).

    ``gate`` is the approval gate every count and adjustment passes, whatever its route
    (the HTTP count and adjustment routes, count sessions, the CLI).
    """

    reconciler: Reconciler
    schedule: CountSchedule
    cadence: CadencePolicy
    closers: tuple[Any, ...] = ()

    @property
    def gate(self) -> ApprovalGate:
        return self.reconciler.gate

    @property
    def policy(self) -> HoldPolicy:
        """The hold policy of counts (from the settings)."""
        return self.reconciler.gate.counts

    def close(self) -> None:
        for closer in self.closers:
            closer.close()


class ReconciliationUnavailable(RuntimeError):
    """This host has no reconciliation store (see the module docstring)."""


def reconciliation_services(container: Container) -> ReconciliationServices:
    """The container's reconciliation services, built once and kept in ``extras``."""
    cached = container.extras.get("reconciliation")
    if isinstance(cached, ReconciliationServices):
        return cached
    settings = container.settings
    if settings.event_store == "cosmos":
        services = _cosmos_services(container)
        container.extras["reconciliation"] = services
        return services
    if settings.event_store != "sqlite":
        raise ReconciliationUnavailable(
            "reconciliation needs the embedded (SQLite) data directory or Cosmos DB")
    from adapters.sqlite.reconciliation import SQLiteReconciliation

    tables = SQLiteReconciliation(settings.data_dir / "reconciliation.db")
    ledger = embedded_movements(container).ledger
    cadence = CadencePolicy.parse(settings.count_cadence)
    services = ReconciliationServices(
        reconciler=_reconciler(container, tables, tables),
        schedule=CountSchedule(ledger, cadence),
        cadence=cadence,
        closers=(tables, ledger),
    )
    container.extras["reconciliation"] = services
    return services


def _cosmos_services(container: Container) -> ReconciliationServices:
    """Azure: holds, sessions and the movement ledger in Cosmos DB.

    The ledger is the one the availability consumer feeds (``_azure``).
    """
    from adapters.cosmos import CosmosStockItems
    from adapters.cosmos.reconciliation import (
        CosmosHolds,
        CosmosMovementLedger,
        CosmosSessionHistory,
    )

    store = container.store
    if not isinstance(store, CosmosStockItems):
        raise ReconciliationUnavailable("reconciliation on Azure needs the Cosmos DB store")
    cosmos = store.factory.settings
    ledger = container.extras.get("movement_ledger")
    if not isinstance(ledger, CosmosMovementLedger):
        ledger = CosmosMovementLedger(cosmos)
    settings = container.settings
    cadence = CadencePolicy.parse(settings.count_cadence)
    return ReconciliationServices(
        reconciler=_reconciler(container, CosmosHolds(cosmos), CosmosSessionHistory(cosmos)),
        schedule=CountSchedule(ledger, cadence),
        cadence=cadence,
    )


def embedded_movements(container: Container) -> MovementProjection:
    """The embedded host's movement ledger projection, on ``reconciliation.db``: the
    pipeline feeds it from the availability subscription, the schedule reads its ledger.

    The first process to open a ledger that needs it (a new one beside an existing event
    store, or one written by earlier versions) rebuilds it from the event store's log, once
    (``projections.movements``); the version guard makes a concurrent rebuild and feed safe.
    The caller closes ``ledger``.
    """
    from adapters.sqlite import SQLiteStockItems
    from adapters.sqlite.reconciliation import SQLiteMovementLedger

    store = container.store
    if not isinstance(store, SQLiteStockItems):
        raise ReconciliationUnavailable("the embedded movement ledger needs the SQLite store")
    ledger = SQLiteMovementLedger(container.settings.data_dir / "reconciliation.db")
    movements = MovementProjection(ledger, _stream_history(store))
    if ledger.needs_rebuild():
        movements.rebuild(store)
    return movements


def _stream_history(store: StockItemStore) -> Callable[[str, str, int, int], list[Any]]:
    """What the projections fill a gap with: a stream's events ``after < v <= upto``."""

    def history(sku: str, location: str, after: int, upto: int) -> list[Any]:
        return store.events(sku, location, after=after, limit=upto - after)

    return history


def _reconciler(container: Container, holds: HoldStore, history: SessionHistory) -> Reconciler:
    """The approval gate with the settings' policies, and count sessions through it."""
    settings = container.settings
    gate = ApprovalGate(
        container.commands, container.clock, holds,
        counts=HoldPolicy(settings.drift_hold_units, settings.drift_hold_percent),
        adjustments=HoldPolicy(settings.adjustment_hold_units,
                               settings.adjustment_hold_percent),
    )
    return Reconciler(gate, history, container.telemetry)


_lock = threading.Lock()
_container: Container | None = None


def get_container() -> Container:
    """The process's container, built from the environment on first use."""
    global _container
    with _lock:
        if _container is None:
            _container = build_container(load())
        return _container


def use_container(container: Container | None) -> None:
    """Install ``container`` for this process (None: build from settings on next use)."""
    global _container
    with _lock:
        _container = container
