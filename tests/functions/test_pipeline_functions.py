"""The Azure pipeline functions, called as the host calls them: real function objects, real
binding objects (``DocumentList``, ``ServiceBusMessage``, ``TimerRequest``), real parts
behind them (SQLite store, embedded broker standing in for Service Bus, SQLite views)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

import function_app
from adapters.clock import ManualClock, SystemClock
from adapters.cosmos.change_feed import stored_event_from_document
from adapters.cosmos.persistence import event_document
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.consumer import EventConsumer
from application.expiry import ExpirySweep
from application.ops import PipelineStatus
from application.ports import MessagePublisher
from application.relay import ChangeFeedRelay
from application.settings import SETTING_NAMES, load
from composition import Services
from composition.embedded import embedded_services
from contracts.topology import AVAILABILITY_SUBSCRIPTION, DUPLICATE_DETECTION_WINDOW, TOPIC
from functions.container import use_services
from projections.availability import AvailabilityProjection
from tests.invoke import invoke

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}


def call(name: str, **bindings: Any) -> Any:
    return invoke(FUNCTIONS[name].get_user_function(), **bindings)


def bindings(name: str) -> list[dict[str, Any]]:
    return [json.loads(b) if isinstance(b, str) else b for b in FUNCTIONS[name].get_raw_bindings()]


@pytest.fixture
def azure_like(
    tmp_path: Path,
) -> Iterator[tuple[Services, EmbeddedBroker, AvailabilityProjection]]:
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}))
    broker = EmbeddedBroker(tmp_path / "broker.db")
    ensure_topology(broker)
    views = SQLiteAvailabilityViews(tmp_path / "views.db")
    store = container.store
    projection = AvailabilityProjection(views, store.history)

    def decode(document: dict[str, Any]) -> Any:
        stored = stored_event_from_document(document)
        return None if stored is None else store.decode(stored)  # type: ignore[attr-defined]

    container = dataclasses.replace(
        container,
        broker=broker,
        change_feed_relay=ChangeFeedRelay(decode, broker, SystemClock()),
        consumers={AVAILABILITY_SUBSCRIPTION: EventConsumer("availability", projection.handle)},
        expiry_sweep=ExpirySweep(views.overdue_reservations, container.commands,
                                 container.clock),
        availability=views,
        ops=PipelineStatus(container.clock, None, broker, TOPIC,
                           lambda: [projection.status()]),
    )
    use_services(container)
    yield container, broker, projection
    use_services(None)
    views.close()
    broker.close()
    container.close()


def change_feed(container: Services) -> func.DocumentList:
    """The events container's change feed as the trigger hands it over."""
    store: Any = container.store
    documents = []
    for record in store.read_after(0, 10_000):
        document = event_document(store.app.mapper.to_stored_event(record.event))
        document["_ts"] = int(record.event.timestamp.timestamp())
        documents.append(func.Document.from_dict(document))
    return func.DocumentList(documents)


def received(broker: EmbeddedBroker) -> list[Any]:
    messages = []
    while receiver := broker.accept_next_session(TOPIC, AVAILABILITY_SUBSCRIPTION, 0.0):
        with receiver:
            while batch := receiver.receive(100, 0.0):
                for message in batch:
                    receiver.complete(message)
                messages.extend(batch)
    return messages


def as_binding(message: Any) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=message.body, message_id=message.message_id, session_id=message.session_id,
        application_properties=dict(message.application_properties), user_properties={},
        content_type=message.content_type, delivery_count=message.delivery_count,
    )


def trading(container: Services) -> None:
    container.commands.receive("SKU-1", "STORE-1", 10)
    container.commands.reserve("SKU-1", "STORE-1", "order-1", 4, "web")
    container.commands.receive("SKU-2", "STORE-9", 3)


def test_the_relay_has_an_infinite_retry_policy_and_an_identity_based_connection() -> None:
    retry = FUNCTIONS["relay_events"].get_settings_dict("retry_policy")
    assert retry is not None
    assert (retry["strategy"], retry["max_retry_count"]) == ("exponential_backoff", "-1")
    (trigger,) = bindings("relay_events")
    assert trigger["type"] == "cosmosDBTrigger"
    assert trigger["connection"] == "COSMOS" and "COSMOS__accountEndpoint" in SETTING_NAMES
    assert (trigger["containerName"], trigger["leaseContainerName"]) == ("events", "leases")
    assert trigger["databaseName"] == "%COSMOS_DATABASE%" and "COSMOS_DATABASE" in SETTING_NAMES
    assert not trigger.get("createLeaseContainerIfNotExists")


def test_the_relay_starts_from_the_beginning_and_polls_a_drained_range_every_second() -> None:
    # Without leases (first start, new prefix, lease reset) the feed is read from the
    # start, not "from now": nothing committed before the relay's first run is skipped.
    (trigger,) = bindings("relay_events")
    assert trigger["startFromBeginning"] is True
    assert trigger["leaseContainerPrefix"] == "relay-"
    assert trigger["feedPollDelay"] == 1000  # docs/azure-capacity.md
    assert trigger["maxItemsPerInvocation"] == 100


def test_the_projection_trigger_reads_the_availability_subscription_without_sessions() -> None:
    # Order is irrelevant to the projection (version checks, gaps filled from the store);
    # sessions would cap it by the idle timeout per sparse SKU-location
    # (docs/azure-capacity.md). The subscription in Bicep agrees (tests/infra).
    (trigger,) = bindings("project_availability")
    assert trigger["type"] == "serviceBusTrigger"
    assert trigger["isSessionsEnabled"] is False
    assert (trigger["topicName"], trigger["subscriptionName"]) == (TOPIC, AVAILABILITY_SUBSCRIPTION)
    assert trigger["connection"] == "SERVICEBUS"
    assert "SERVICEBUS__fullyQualifiedNamespace" in SETTING_NAMES


def test_the_timers_use_six_field_schedules() -> None:
    for name in ("sweep_expired_reservations", "publish_pipeline_metrics", "sweep_orders",
                 "sweep_transfers"):
        (trigger,) = bindings(name)
        assert trigger["type"] == "timerTrigger"
        assert len(trigger["schedule"].split()) == 6


def test_the_relay_publishes_a_change_feed_batch_as_contract_messages(azure_like: Any) -> None:
    container, broker, _ = azure_like
    trading(container)
    call("relay_events", documents=change_feed(container))
    messages = received(broker)
    assert sorted(m.message_id for m in messages) == [
        "SKU-1|STORE-1:1", "SKU-1|STORE-1:2", "SKU-1|STORE-1:3", "SKU-2|STORE-9:1",
        "SKU-2|STORE-9:2",
    ]
    assert {m.session_id for m in messages} == {"SKU-1|STORE-1", "SKU-2|STORE-9"}


class FailsHalfway(MessagePublisher):
    """Publishes the first messages of a batch, then the connection drops."""

    def __init__(self, inner: MessagePublisher, keep: int) -> None:
        self.inner, self.keep = inner, keep

    def publish(self, topic: str, messages: Any) -> None:
        self.inner.publish(topic, list(messages)[: self.keep])
        raise ConnectionError("connection dropped mid-batch")


def test_a_relay_failing_mid_batch_is_redelivered_and_counts_once_downstream(
    azure_like: Any,
) -> None:
    container, broker, projection = azure_like
    trading(container)
    documents = change_feed(container)
    relay = container.change_feed_relay
    relay.publisher = FailsHalfway(broker, keep=2)
    with pytest.raises(ConnectionError):
        call("relay_events", documents=documents)
    relay.publisher = broker  # the retry policy redelivers the same batch
    call("relay_events", documents=documents)
    messages = received(broker)
    assert len(messages) == 5  # duplicate message ids were dropped by the topic
    for message in messages:
        call("project_availability", message=as_binding(message))
    for message in messages:  # and a redelivery storm changes nothing
        call("project_availability", message=as_binding(message))
    availability = projection.views.for_sku("SKU-1")
    assert (availability.on_hand, availability.reserved, availability.locations[0].version) == (
        10, 4, 3,
    )


def test_the_projection_absorbs_a_full_republish_after_a_lease_reset(
    azure_like: Any, tmp_path: Path,
) -> None:
    """A lease reset (or a new lease prefix) makes the relay start from the beginning of
    the change feed: the whole history is published again, and beyond the topic's
    duplicate-detection window nothing is dropped. The projection must not move."""
    container, _, projection = azure_like
    clock = ManualClock()
    topic = EmbeddedBroker(tmp_path / "republish.db", clock=clock)
    ensure_topology(topic)
    container.change_feed_relay.publisher = topic
    trading(container)
    call("relay_events", documents=change_feed(container))
    for message in received(topic):
        call("project_availability", message=as_binding(message))
    container.commands.fulfil("SKU-1", "STORE-1", "order-1")
    call("relay_events", documents=change_feed(container))  # the feed after the last lease
    for message in received(topic):
        call("project_availability", message=as_binding(message))
    before = {sku: projection.views.for_sku(sku) for sku in ("SKU-1", "SKU-2")}

    clock.advance((DUPLICATE_DETECTION_WINDOW + timedelta(hours=1)).total_seconds())
    call("relay_events", documents=change_feed(container))  # leases reset: from the start
    republished = received(topic)
    assert len(republished) == 6  # every event again: the window has passed
    for message in reversed(republished):  # in any order, as a non-session reader sees it
        call("project_availability", message=as_binding(message))

    assert {sku: projection.views.for_sku(sku) for sku in ("SKU-1", "SKU-2")} == before
    assert before["SKU-1"].locations[0].version == 4 and before["SKU-1"].on_hand == 6


def test_a_message_that_breaks_the_schema_raises_so_service_bus_dead_letters_it(
    azure_like: Any,
) -> None:
    bad = ServiceBusMessage(body=b'{"specversion": "1.0"}', message_id="bad",
                            session_id="SKU-1|STORE-1", application_properties={},
                            user_properties={})
    from contracts.validation import SchemaValidationFailed

    with pytest.raises(SchemaValidationFailed):
        call("project_availability", message=bad)


def test_the_expiry_timer_releases_overdue_reservations(azure_like: Any) -> None:
    container, broker, _ = azure_like
    container.commands.receive("SKU-1", "STORE-1", 5)
    container.commands.reserve("SKU-1", "STORE-1", "order-1", 5, "web", ttl_seconds=1)
    call("relay_events", documents=change_feed(container))
    for message in received(broker):
        call("project_availability", message=as_binding(message))
    later = _Later(container.clock, seconds=5)
    container.expiry_sweep.clock = later
    container.commands.clock = later
    call("sweep_expired_reservations", timer=TimerRequest(past_due=False))
    assert container.queries.position("SKU-1", "STORE-1").reserved == 0


def test_the_metrics_timer_reads_every_subscription(azure_like: Any) -> None:
    container, _, _ = azure_like
    seen: list[tuple[str, int]] = []
    container.telemetry.record_dead_letter_depth = (
        lambda subscription, count: seen.append((subscription, count))
    )
    call("publish_pipeline_metrics", timer=TimerRequest(past_due=True))
    assert seen == [(AVAILABILITY_SUBSCRIPTION, 0)]


class _Later:
    def __init__(self, clock: Any, seconds: float) -> None:
        from datetime import timedelta

        self._clock, self._delta = clock, timedelta(seconds=seconds)

    def now(self) -> Any:
        return self._clock.now() + self._delta


