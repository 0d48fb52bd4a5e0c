"""The pipeline in Azure: change-feed relay, projection consumer and timers.

Each function reads its binding and calls one service from the container. Connections
are identity-based: ``COSMOS`` resolves ``COSMOS__accountEndpoint`` and ``SERVICEBUS``
resolves ``SERVICEBUS__fullyQualifiedNamespace`` (app settings, see ``bicep/``).

The trigger settings come from the capacity model in ``docs/azure-capacity.md``: the relay
starts from the beginning of the change feed when it has no leases (so nothing committed
before its first start, or before a lease reset, is left unpublished), polls a drained
range every second, and the availability projection reads a subscription *without*
sessions, because its per-stream version checks make delivery order irrelevant while
sessions would cap its throughput by the session idle timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import azure.functions as func

from composition import Services
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from contracts.validation import EventRejected
from functions.container import get_services

log = logging.getLogger(__name__)

RELAY_LEASE_PREFIX = "relay-"
RELAY_POLL_DELAY_MS = 1000
"""Delay before polling a drained lease range again (the trigger's default is 5000 ms):
at most one second of relay lag when idle; see docs/azure-capacity.md."""
RELAY_MAX_ITEMS = 100
"""Documents per invocation: one Service Bus send batch, one position write."""

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def services() -> Services:
    return get_services()


def _change_feed_relay(name: str, container: str, lease_prefix: str
                       ) -> Callable[[Callable[[func.DocumentList], None]], Any]:
    """The trigger of a relay function: the change feed of ``container`` with leases of
    its own prefix, an infinite retry policy, and the capacity settings above."""

    def register(function: Callable[[func.DocumentList], None]) -> Any:
        triggered = bp.cosmos_db_trigger(
            arg_name="documents",
            connection="COSMOS",
            database_name="%COSMOS_DATABASE%",
            container_name=container,
            lease_container_name="leases",
            lease_container_prefix=lease_prefix,
            create_lease_container_if_not_exists=False,
            # Without leases (first start, a new prefix, a lease reset) read the whole
            # feed, not only what is written from now on. A reset republishes the
            # history: docs/runbook.md.
            start_from_beginning=True,  # type: ignore[arg-type]  # annotated as a time
            feed_poll_delay=RELAY_POLL_DELAY_MS,
            max_items_per_invocation=RELAY_MAX_ITEMS,
        )(function)
        retried = bp.retry(
            strategy="exponential_backoff",
            max_retry_count="-1",  # without a retry policy the trigger skips a failed batch
            minimum_interval="00:00:01",
            maximum_interval="00:01:00",
        )(triggered)
        return bp.function_name(name)(retried)

    return register


@_change_feed_relay("relay_events", "events", RELAY_LEASE_PREFIX)
def relay_events(documents: func.DocumentList) -> None:
    """Publish a change-feed batch of new events; raising redelivers the whole batch."""
    container = services()
    if container.change_feed_relay is None:
        raise RuntimeError("the relay needs SERVICEBUS__fullyQualifiedNamespace")
    batch = [document.to_dict() for document in documents]
    events = container.change_feed_relay.publish_documents(batch)
    container.telemetry.record_published(len(events))
    now = time.time()
    for document in batch:  # outbox lag of each event: now - its commit time (_ts)
        ts = document.get("_ts")
        if "originator_version" in document and isinstance(ts, int | float):
            container.telemetry.record_outbox_lag(now - ts)


PROCESS_RELAY_LEASE_PREFIX = "process-relay-"
"""The process relay's leases, apart from the stock relay's in the same container."""


@_change_feed_relay("relay_process_events", "processes", PROCESS_RELAY_LEASE_PREFIX)
def relay_process_events(documents: func.DocumentList) -> None:
    """Publish a change-feed batch of the processes container (order and transfer events,
    in their sessions ``order:{order_id}`` / ``transfer:{transfer_id}``); raising
    redelivers the whole batch."""
    container = services()
    if container.process_relay is None:
        raise RuntimeError("the relay needs SERVICEBUS__fullyQualifiedNamespace")
    events = container.process_relay.publish_documents([d.to_dict() for d in documents])
    container.telemetry.record_published(len(events))


@bp.function_name("project_availability")
@bp.service_bus_topic_trigger(
    arg_name="message",
    connection="SERVICEBUS",
    topic_name=TOPIC,
    subscription_name=AVAILABILITY_SUBSCRIPTION,
    # No sessions: the projection applies "at version V the position is X" per stream and
    # fills gaps from the store, so order does not matter, and a session per SKU-location
    # would make each instance wait sessionIdleTimeout per sparse session
    # (docs/azure-capacity.md). Downstream subscriptions keep their sessions.
    is_sessions_enabled=False,
)
def project_availability(message: func.ServiceBusMessage) -> None:
    """Apply one event to the availability view (idempotent per stream version, in any
    order: a gap is filled from the event store)."""
    consume(AVAILABILITY_SUBSCRIPTION, message)


def consume(subscription: str, message: func.ServiceBusMessage) -> None:
    """Hand a message to the subscription's consumer.

    A message that can never be applied is logged with its reason and raised, so Service
    Bus redelivers it up to ``maxDeliveryCount`` and then dead-letters it (the plain
    binding cannot dead-letter with a reason of our own); replay it once fixed.
    """
    consumer = services().consumers.get(subscription)
    if consumer is None:
        raise RuntimeError(f"no consumer is configured for {subscription!r}")
    try:
        consumer.process(message.get_body())
    except EventRejected as rejected:
        log.error("%s cannot apply %s: %s (%s)", subscription, message.message_id,
                  rejected.reason, rejected.description)
        raise


@bp.function_name("sweep_expired_reservations")
@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
def sweep_expired_reservations(timer: func.TimerRequest) -> None:
    """Every minute: release overdue reservations nobody's command has touched."""
    sweep = services().expiry_sweep
    if sweep is not None:
        released = sweep.run_once()
        log.info("expiry sweep released %d reservations", released)


@bp.function_name("publish_pipeline_metrics")
@bp.timer_trigger(arg_name="timer", schedule="30 * * * * *", run_on_startup=False)
def publish_pipeline_metrics(timer: func.TimerRequest) -> None:
    """Every minute: the outbox (events committed beyond the relay's position, and the
    oldest one's age: the relay-lag signal of a stalled relay) and each subscription's
    backlog and dead-letter depth, as metrics."""
    container = services()
    if container.ops is not None:
        container.ops.sample(container.telemetry)
