"""The Azure composition root: Cosmos DB for events, views and reconciliation; Service
Bus for messages; the pipeline's parts that the functions of ``functions.pipeline`` call.

The Azure SDK adapters are imported inside :func:`azure_services` only, so the embedded
host never needs them. Metrics are wired here once: every save is counted for the HTTP
layer's command outcome, each applied event's age is recorded by the projection's
observer, and the change-feed relay's position is what the metrics timer compares with
the store.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from adapters.clock import SystemClock
from adapters.telemetry import Telemetry, configure_telemetry
from application.cadence import CadencePolicy, CountSchedule
from application.consumer import EventConsumer, projection_lag_observer
from application.expiry import ExpirySweep
from application.ops import PipelineStatus
from application.orders import LocationGroups, Orders
from application.ports import Clock, MessageBroker
from application.queries import StockQueries
from application.relay import ChangeFeedRelay
from application.replay import DeadLetterReplay
from application.settings import Settings
from application.transfers import Transfers
from application.views import ProjectionStatus
from composition.core import reconciler, stock_commands
from composition.services import OpenedOnFirstUse, ReconciliationServices, Services
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from projections.availability import AvailabilityProjection
from projections.movements import MovementProjection, with_movements
from projections.repair import ProjectionRepair


def azure_services(
    settings: Settings,
    clock: Clock | None = None,
    *,
    telemetry: Telemetry | None = None,
    broker: MessageBroker | None = None,
) -> Services:
    """The services of an Azure Functions worker for ``settings`` (Cosmos DB; with
    ``SERVICEBUS__fullyQualifiedNamespace`` also Service Bus, the change-feed relay and
    dead-letter replay).

    ``telemetry`` replaces the configured one (tests read it into memory); ``broker``
    stands in for Service Bus (tests use the embedded broker).
    """
    from adapters.cosmos import open_cosmos_stock_items
    from adapters.cosmos.availability_views import CosmosAvailabilityViews
    from adapters.cosmos.change_feed import CosmosRelayPosition, stored_event_from_document
    from adapters.cosmos.process_streams import open_cosmos_process_store
    from adapters.cosmos.reconciliation import (
        CosmosHolds,
        CosmosMovementLedger,
        CosmosSessionHistory,
    )

    clock = clock or SystemClock()
    telemetry = telemetry or configure_telemetry(settings)
    store = open_cosmos_stock_items(settings)
    cosmos = store.factory.settings
    # A hot SKU-location's concurrent commands in this instance: one batch, not one each
    # (STOCKSTREAM_COSMOS_COALESCE; docs/performance.md, "A hot SKU-location on Azure").
    commands = stock_commands(store, clock, settings, group_commit=settings.cosmos_coalesce,
                              per_stream=True)
    # Orders and location groups: their streams in the processes container, the sweep
    # timer reading its wake-ups (adapters.cosmos.process_streams).
    processes = open_cosmos_process_store(settings)
    orders = Orders(processes.orders, processes.groups, commands, store, clock)
    # How far the change-feed relay has published, for the outbox metrics and status.
    relay_position = CosmosRelayPosition(cosmos, clock)
    if broker is None and settings.servicebus_namespace:
        from adapters.servicebus import ServiceBusBroker

        broker = ServiceBusBroker.from_namespace(
            settings.servicebus_namespace, client_id=settings.azure_client_id
        )
    change_feed_relay: ChangeFeedRelay | None = None
    process_relay: ChangeFeedRelay | None = None
    if broker is not None:

        def decode(document: dict[str, Any]) -> Any:
            stored = stored_event_from_document(document)
            return None if stored is None else store.decode(stored)

        change_feed_relay = ChangeFeedRelay(
            decode, broker, clock,
            deprecated_versions_until=settings.deprecated_versions_until,
            position=relay_position,
        )

        def decode_process(document: dict[str, Any]) -> Any:
            # Wake-up companions are not events; location-group events are not published.
            stored = stored_event_from_document(document)
            return None if stored is None else processes.publishable(
                processes.app.mapper.to_domain_event(stored))

        # The processes container's own change feed (functions.pipeline.relay_process_events);
        # no position: the outbox metrics are the stock relay's.
        process_relay = ChangeFeedRelay(decode_process, broker, clock)
    # The availability view in Cosmos DB: read by the API, fed by the Service Bus trigger
    # (its gaps filled from the stream), indexing expiries for the sweep.
    views = CosmosAvailabilityViews(cosmos)
    projection = AvailabilityProjection(views, store.history)
    # The movement ledger projection (count cadence) is fed by the availability
    # subscription too, as on the embedded host (projections.movements.with_movements).
    ledger = CosmosMovementLedger(cosmos)
    movements = MovementProjection(ledger, store.history)

    def projections() -> list[ProjectionStatus]:
        # The lag is the last event *this instance* applied (None if it applied none; on
        # Flex Consumption the HTTP functions scale apart from the trigger, so the
        # authoritative figure is the stockstream.projection.lag_seconds metric).
        return [projection.status()]

    def open_reconciliation() -> ReconciliationServices:
        # Holds and sessions in Cosmos DB; the schedule reads the ledger the availability
        # consumer feeds.
        cadence = CadencePolicy.parse(settings.count_cadence)
        return ReconciliationServices(
            reconciler=reconciler(settings, commands, clock, telemetry, CosmosHolds(cosmos),
                                  CosmosSessionHistory(cosmos)),
            schedule=CountSchedule(ledger, cadence),
            cadence=cadence,
        )

    return Services(
        settings=settings, clock=clock, store=store, commands=commands,
        queries=StockQueries(store, clock), telemetry=telemetry,
        reconciliation=OpenedOnFirstUse(open_reconciliation, ReconciliationServices.close),
        availability=views,
        ops=PipelineStatus(
            clock, relay_position.status, broker, TOPIC, projections,
            no_broker="no Service Bus namespace is configured "
                      "(SERVICEBUS__fullyQualifiedNamespace)"),
        replay=None if broker is None else DeadLetterReplay(broker),
        repair=ProjectionRepair(views, store, AvailabilityProjection(views, store.history)),
        broker=broker,
        change_feed_relay=change_feed_relay,
        process_relay=process_relay,
        consumers=MappingProxyType({AVAILABILITY_SUBSCRIPTION: EventConsumer(
            projection.name, with_movements(projection.handle, movements),
            observers=(projection_lag_observer(telemetry, projection.name, clock),))}),
        expiry_sweep=ExpirySweep(views.overdue_reservations, commands, clock),
        orders=orders,
        location_groups=LocationGroups(processes.groups),
        transfers=Transfers(processes.transfers, commands, clock),
        closers=(processes, store) if broker is None else (broker, processes, store),
    )
