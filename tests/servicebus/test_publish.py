"""Publishing: the real ServiceBusMessage objects the adapter builds, and how it batches them."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta, timezone

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    ServiceBusServerBusyError,
)

import adapters.servicebus.broker as broker_module
from adapters.servicebus import ServiceBusBroker, to_service_bus_message
from application.ports import BrokerUnavailable, MessageRejected, OutgoingMessage, PublishFailed
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from tests.servicebus.builders import event_message
from tests.servicebus.fakes import FakeServiceBusClient, text


def sessions_of(batch: ServiceBusMessageBatch) -> set[str]:
    return {str(m.session_id) for m in batch._messages}


def test_publish_builds_a_service_bus_message_with_every_field_of_the_contract(broker, client):
    due = datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    message = event_message("SKU-1", "store-7", 3, scheduled=due)

    broker.publish(TOPIC, [message])

    [sent] = client.topics[TOPIC].sent_messages()
    assert isinstance(sent, ServiceBusMessage)
    assert sent.message_id == "SKU-1|store-7:3"
    assert sent.session_id == "SKU-1|store-7"
    assert sent.subject == "Stockstream.StockReceived.v1"
    assert sent.content_type == "application/cloudevents+json"
    assert b"".join(sent.body) == message.body
    assert sent.application_properties == {
        "type": "Stockstream.StockReceived.v1",
        "sku": "SKU-1",
        "location": "store-7",
        "sequence": 3,
        "replayTarget": "all",
    }
    assert sent.scheduled_enqueue_time_utc == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_what_goes_over_the_wire_carries_the_session_as_the_amqp_group_id(broker, client):
    broker.publish(TOPIC, [event_message("SKU-1", "store-7", 1)])

    [wire] = client.topics[TOPIC].wire
    assert text(wire.properties.message_id) == "SKU-1|store-7:1"
    assert text(wire.properties.group_id) == "SKU-1|store-7"
    assert text(wire.properties.content_type) == "application/cloudevents+json"
    assert wire.application_properties[b"sequence"] == 1
    assert text(wire.application_properties[b"replayTarget"]) == "all"


def test_the_callers_properties_are_not_shared_with_the_sdk_message(broker, client):
    message = event_message()
    broker.publish(TOPIC, [message])

    [sent] = client.topics[TOPIC].sent_messages()
    assert sent.application_properties is not message.application_properties


def test_a_batch_never_mixes_sessions_and_each_session_keeps_its_order(broker, client):
    interleaved = [
        event_message("SKU-1", "store-7", v) for v in (1, 2)
    ] + [event_message("SKU-2", "store-7", 1), event_message("SKU-1", "store-7", 3)] + [
        event_message("SKU-1", "web", v) for v in (1, 2)
    ]

    broker.publish(TOPIC, interleaved)

    batches = client.topics[TOPIC].batches
    assert [sessions_of(b) for b in batches] == [
        {"SKU-1|store-7"}, {"SKU-2|store-7"}, {"SKU-1|web"}
    ]
    assert [m.message_id for m in batches[0]._messages] == [
        "SKU-1|store-7:1", "SKU-1|store-7:2", "SKU-1|store-7:3"
    ]
    assert sorted(m.message_id for m in client.topics[TOPIC].sent_messages()) == sorted(
        m.message_id for m in interleaved
    )


def test_the_fake_topic_refuses_a_batch_that_mixes_sessions_so_the_grouping_is_checked(
    broker, client, monkeypatch
):
    # Without the per-session grouping, one batch would carry two sessions: caught.
    def one_group(messages):
        converted = to_service_bus_message
        return {"all": [(m, converted(m)) for m in messages]}

    monkeypatch.setattr(broker_module, "group_by_session", one_group)

    with pytest.raises(PublishFailed, match="span sessions"):
        broker.publish(TOPIC, [event_message("SKU-1"), event_message("SKU-2")])


def test_a_session_is_split_over_batches_at_the_size_limit_without_losing_order(client):
    broker = ServiceBusBroker(client, max_batch_size_in_bytes=2_000)
    messages = [event_message("SKU-1", "store-7", v, padding=400) for v in range(1, 11)]

    broker.publish(TOPIC, messages)

    batches = client.topics[TOPIC].batches
    assert len(batches) > 1
    assert all(b.size_in_bytes <= 2_000 for b in batches)
    assert all(len(b) >= 1 for b in batches)
    sent_ids = [m.message_id for b in batches for m in b._messages]
    assert sent_ids == [m.message_id for m in messages]


def test_a_single_message_larger_than_a_batch_fails_naming_it_and_sends_nothing(client):
    broker = ServiceBusBroker(client, max_batch_size_in_bytes=2_000)
    messages = [event_message("SKU-1", "store-7", 1), event_message("SKU-1", "store-7", 2,
                                                                    padding=3_000)]

    with pytest.raises(MessageRejected, match=r"SKU-1\|store-7:2.*2000 bytes"):
        broker.publish(TOPIC, messages)
    # Batches are all filled before any is sent: the first message did not go either.
    assert client.topics[TOPIC].batches == []


def test_the_batch_size_defaults_to_the_link_limit(client):
    small_link = FakeServiceBusClient({TOPIC: [AVAILABILITY_SUBSCRIPTION]}, link_max=1_500)
    broker = ServiceBusBroker(small_link)  # type: ignore[arg-type]  # the fake SDK client

    broker.publish(TOPIC, [event_message("SKU-1", "store-7", v, padding=400) for v in (1, 2, 3)])

    assert [b.max_size_in_bytes for b in small_link.topics[TOPIC].batches] == [1_500, 1_500]


@pytest.mark.parametrize(
    "bad",
    [
        event_message("S" * 60, "L" * 60, 123_456_789),  # id: 131 characters
        OutgoingMessage(message_id="m", session_id="s" * 129, subject="t", body=b"{}"),
        OutgoingMessage(message_id="m", session_id="", subject="t", body=b"{}"),
        OutgoingMessage(message_id="", session_id="s", subject="t", body=b"{}"),
    ],
    ids=["message-id-131", "session-id-129", "no-session", "no-message-id"],
)
def test_ids_service_bus_would_refuse_fail_the_publish_before_anything_is_sent(
    broker, client, bad
):
    with pytest.raises(MessageRejected, match="1 to 128 characters"):
        broker.publish(TOPIC, [event_message(), bad])
    assert client.topics[TOPIC].batches == []


def test_ids_of_exactly_128_characters_are_accepted(broker, client):
    message = OutgoingMessage(
        message_id="m" * 128, session_id="s" * 128, subject="t", body=b"{}",
        application_properties={"replayTarget": "all"},
    )
    broker.publish(TOPIC, [message])
    assert [m.message_id for m in client.topics[TOPIC].sent_messages()] == ["m" * 128]


def test_a_naive_scheduled_time_is_refused(broker, client):
    message = event_message(scheduled=datetime(2026, 11, 26, 12, 0))
    with pytest.raises(MessageRejected, match="timezone-aware"):
        broker.publish(TOPIC, [message])


@pytest.mark.parametrize(
    "error",
    [
        ServiceBusConnectionError(message="connection refused"),
        ServiceBusCommunicationError(message="dns failure"),
        OperationTimeoutError(message="timed out"),
        ServiceBusServerBusyError(message="server busy"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_failures_are_broker_unavailable_and_drop_the_sender(broker, client, error):
    broker.publish(TOPIC, [event_message(version=1)])
    first_sender = client.senders[0]
    first_sender.fail_next_send = error

    with pytest.raises(BrokerUnavailable) as raised:
        broker.publish(TOPIC, [event_message(version=2)])
    assert raised.value.__cause__ is error
    assert first_sender.closed

    broker.publish(TOPIC, [event_message(version=3)])
    assert len(client.senders) == 2
    assert [m.message_id for m in client.topics[TOPIC].sent_messages()] == [
        "SKU-1|store-7:1", "SKU-1|store-7:3"
    ]


@pytest.mark.parametrize(
    "error",
    [
        ServiceBusQuotaExceededError(message="topic full"),
        MessagingEntityNotFoundError(message="no such topic"),
        ServiceBusAuthorizationError(message="needs Data Sender"),
        MessageSizeExceededError(message="too large for the service"),
        ServiceBusError(message="something else"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_sdk_failures_are_publish_failed(broker, client, error):
    broker.publish(TOPIC, [event_message(version=1)])
    client.senders[0].fail_next_send = error

    with pytest.raises(PublishFailed) as raised:
        broker.publish(TOPIC, [event_message(version=2)])
    assert raised.value.__cause__ is error
    assert not client.senders[0].closed


def test_publishing_again_after_a_partial_failure_delivers_each_event_once(broker, client):
    messages = [event_message("SKU-1", "store-7", 1), event_message("SKU-2", "store-7", 1)]
    broker.publish(TOPIC, messages[:1])
    client.senders[0].fail_next_send = ServiceBusServerBusyError(message="busy")
    with pytest.raises(BrokerUnavailable):
        broker.publish(TOPIC, messages)

    broker.publish(TOPIC, messages)  # the relay's retry: same ids

    sessions = client.topics[TOPIC].subscriptions[AVAILABILITY_SUBSCRIPTION].sessions
    assert {sid: [s.message_id for s in q] for sid, q in sessions.items()} == {
        "SKU-1|store-7": ["SKU-1|store-7:1"],
        "SKU-2|store-7": ["SKU-2|store-7:1"],
    }


def test_one_sender_per_topic_is_reused(broker, client):
    broker.publish(TOPIC, [event_message(version=1)])
    broker.publish(TOPIC, [event_message(version=2)])
    broker.publish(TOPIC, [])
    assert len(client.senders) == 1


def test_close_closes_senders_and_the_client(broker, client):
    broker.publish(TOPIC, [event_message()])
    broker.close()
    assert client.senders[0].closed and client.closed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_sdk_client_that_cannot_connect_gives_broker_unavailable():
    # The real SDK over a real socket: nothing listens on the port, so the link cannot open.
    connection_string = (
        f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
    )
    client = ServiceBusClient.from_connection_string(connection_string, retry_total=0)
    broker = ServiceBusBroker(client)
    try:
        with pytest.raises(BrokerUnavailable, match="unavailable while publishing"):
            broker.publish(TOPIC, [event_message()])
    finally:
        broker.close()


class _Credential:
    """A TokenCredential that is never asked for a token (nothing connects here)."""

    def get_token(self, *scopes, **kwargs):  # pragma: no cover - not called offline
        raise AssertionError("no token should be requested while building")


def test_from_namespace_builds_a_real_client_and_admin_on_the_identity():
    credential = _Credential()
    broker = ServiceBusBroker.from_namespace("stockstream.servicebus.windows.net",
                                             credential=credential)
    try:
        assert isinstance(broker._client, ServiceBusClient)
        assert broker._client.fully_qualified_namespace == "stockstream.servicebus.windows.net"
        admin = broker._admin_client()
        assert admin.fully_qualified_namespace == "stockstream.servicebus.windows.net"
        assert admin._credential is credential
    finally:
        broker.close()


def test_from_namespace_defaults_to_default_azure_credential_with_the_client_id():
    from azure.identity import DefaultAzureCredential

    broker = ServiceBusBroker.from_namespace("stockstream.servicebus.windows.net",
                                             client_id="00000000-0000-0000-0000-000000000001")
    try:
        assert isinstance(broker._client._credential, DefaultAzureCredential)
    finally:
        broker.close()
