"""Receiving: sessions, settlement, lock loss, the dead-letter queue, counts, and the replay flow.

The fakes hand out REAL ``ServiceBusReceivedMessage`` objects decoded from AMQP bytes, so
the adapter's conversion meets what the SDK really produces (``bytes`` property keys,
the AMQP delivery count, broker annotations).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    SessionLockLostError,
)

from adapters.servicebus import ServiceBusBroker
from adapters.servicebus.receivers import MAX_DESCRIPTION_CHARS, MIN_WAIT_SECONDS
from application.ports import BrokerUnavailable, LockLost, OutgoingMessage, ReceivedMessage
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from tests.servicebus.builders import event_message
from tests.servicebus.conftest import DOWNSTREAM
from tests.servicebus.fakes import ENQUEUED_MS, FakeServiceBusClient
from tests.servicebus.test_publish import free_port

SUB = AVAILABILITY_SUBSCRIPTION


def accept(broker: ServiceBusBroker, subscription: str = SUB):
    receiver = broker.accept_next_session(TOPIC, subscription, max_wait=1)
    assert receiver is not None
    return receiver


# ------------------------------------------------------------------ sessions


def test_accept_next_session_locks_the_first_session_with_messages(broker, client):
    broker.publish(TOPIC, [event_message("SKU-2", "web", 1), event_message("SKU-1", "web", 1)])

    receiver = broker.accept_next_session(TOPIC, SUB, max_wait=2.5)

    assert receiver is not None and receiver.session_id == "SKU-2|web"
    [call] = client.receiver_calls
    assert call["session_id"] == NEXT_AVAILABLE_SESSION
    assert call["sub_queue"] is None
    assert call["max_wait_time"] == 2.5
    assert client.receivers[0].opened  # opened up front, so the session id is known


def test_a_received_message_is_converted_from_what_the_sdk_decodes(broker, client):
    sent = event_message("SKU-1", "store-7", 4)
    broker.publish(TOPIC, [sent])

    with accept(broker) as receiver:
        [message] = receiver.receive(max_messages=5, max_wait=1)

    assert message == ReceivedMessage(
        message_id="SKU-1|store-7:4",
        session_id="SKU-1|store-7",
        subject="Stockstream.StockReceived.v1",
        body=sent.body,
        content_type="application/cloudevents+json",
        application_properties=sent.application_properties,
        delivery_count=1,
        sequence_number=1,
        enqueued_at=datetime.fromtimestamp(ENQUEUED_MS / 1000, UTC),
        lock_token=message.lock_token,
    )
    assert type(message.application_properties["sequence"]) is int
    assert len(message.lock_token) == 36  # the SDK's UUID lock token, as text


def test_no_session_within_the_wait_gives_none_and_closes_the_receiver(broker, client):
    assert broker.accept_next_session(TOPIC, SUB, max_wait=0) is None
    assert client.receiver_calls[0]["max_wait_time"] == MIN_WAIT_SECONDS  # the SDK needs > 0
    assert client.receivers[0].closed


def test_a_locked_session_is_not_handed_out_again(broker):
    broker.publish(TOPIC, [event_message("SKU-1", "web", 1)])
    holder = accept(broker)

    assert broker.accept_next_session(TOPIC, SUB, max_wait=1) is None
    with pytest.raises(LockLost):
        broker.accept_session(TOPIC, SUB, "SKU-1|web")

    holder.close()
    with broker.accept_session(TOPIC, SUB, "SKU-1|web") as again:
        assert again.session_id == "SKU-1|web"


def test_failing_to_open_a_session_is_broker_unavailable(broker, client):
    client.fail_on_open = ServiceBusConnectionError(message="refused")
    with pytest.raises(BrokerUnavailable):
        broker.accept_next_session(TOPIC, SUB, max_wait=1)
    assert client.receivers[0].closed


# ---------------------------------------------------------------- settlement


def test_complete_settles_the_sdk_message_that_was_received(broker, client):
    broker.publish(TOPIC, [event_message(version=1), event_message(version=2)])
    with accept(broker) as receiver:
        first, second = receiver.receive(max_messages=2, max_wait=1)
        receiver.complete(second)
        receiver.complete(first)

    settled = client.receivers[0].settlements
    assert [(action, m.message_id) for action, m, _ in settled] == [
        ("complete", "SKU-1|store-7:2"), ("complete", "SKU-1|store-7:1")
    ]
    assert all(isinstance(m, ServiceBusReceivedMessage) for _, m, _ in settled)
    assert broker.counts(TOPIC, SUB).active == 0


def test_an_abandoned_message_comes_back_first_with_a_higher_delivery_count(broker):
    broker.publish(TOPIC, [event_message(version=1), event_message(version=2)])
    with accept(broker) as receiver:
        [first] = receiver.receive(1, max_wait=1)
        receiver.abandon(first)
        [again] = receiver.receive(1, max_wait=1)

    assert (again.message_id, again.delivery_count) == (first.message_id, 2)
    assert again.lock_token != first.lock_token


def test_dead_letter_passes_reason_and_a_bounded_description(broker, client):
    broker.publish(TOPIC, [event_message()])
    long_description = "traceback line\n" * 1_000
    with accept(broker) as receiver:
        [message] = receiver.receive(1, max_wait=1)
        receiver.dead_letter(message, "SchemaMismatch", long_description)

    [(action, _, kwargs)] = client.receivers[0].settlements
    assert action == "dead_letter"
    assert kwargs["reason"] == "SchemaMismatch"
    assert kwargs["error_description"] == long_description[:MAX_DESCRIPTION_CHARS]
    assert broker.counts(TOPIC, SUB).dead_lettered == 1


def test_settling_twice_is_lock_lost_and_does_not_reach_the_sdk(broker, client):
    broker.publish(TOPIC, [event_message()])
    with accept(broker) as receiver:
        [message] = receiver.receive(1, max_wait=1)
        receiver.complete(message)
        with pytest.raises(LockLost, match="does not hold"):
            receiver.complete(message)
    assert len(client.receivers[0].settlements) == 1


@pytest.mark.parametrize("error_class", [MessageLockLostError, SessionLockLostError])
def test_a_lost_lock_on_settlement_is_lock_lost(broker, client, error_class):
    broker.publish(TOPIC, [event_message()])
    with accept(broker) as receiver:
        [message] = receiver.receive(1, max_wait=1)
        client.receivers[0].fail_next["complete_message"] = error_class(message="lock lost")
        with pytest.raises(LockLost) as raised:
            receiver.complete(message)
        assert isinstance(raised.value.__cause__, error_class)


def test_an_expired_lock_is_lock_lost(broker, client):
    broker.publish(TOPIC, [event_message()])
    with accept(broker) as receiver:
        [message] = receiver.receive(1, max_wait=1)
        client.receivers[0].expire_locks()
        with pytest.raises(LockLost):
            receiver.abandon(message)


def test_receive_failures_are_mapped(broker, client):
    broker.publish(TOPIC, [event_message()])
    with accept(broker) as receiver:
        fake = client.receivers[0]
        fake.fail_next["receive_messages"] = SessionLockLostError(message="session lock lost")
        with pytest.raises(LockLost):
            receiver.receive(1)
        fake.fail_next["receive_messages"] = ServiceBusCommunicationError(message="dns")
        with pytest.raises(BrokerUnavailable):
            receiver.receive(1)


def test_closing_gives_back_held_messages_at_once(broker, client):
    broker.publish(TOPIC, [event_message(version=1)])
    receiver = accept(broker)
    [held] = receiver.receive(1, max_wait=1)

    receiver.close()

    assert [a for a, _, _ in client.receivers[0].settlements] == ["abandon"]
    assert client.receivers[0].closed
    with pytest.raises(LockLost):
        receiver.complete(held)
    with accept(broker) as again:
        [redelivered] = again.receive(1, max_wait=1)
    assert (redelivered.message_id, redelivered.delivery_count) == (held.message_id, 2)


def test_receive_asks_the_sdk_for_the_count_and_a_positive_wait(broker, client):
    broker.publish(TOPIC, [event_message()])
    with accept(broker) as receiver:
        receiver.receive(max_messages=7, max_wait=0)
        receiver.receive(max_messages=3, max_wait=4)
    assert client.receivers[0].receive_calls == [
        {"max_message_count": 7, "max_wait_time": MIN_WAIT_SECONDS},
        {"max_message_count": 3, "max_wait_time": 4.0},
    ]


# -------------------------------------------------------------- dead letters


def test_the_dead_letter_receiver_uses_the_sub_queue_and_no_session(broker, client):
    broker.dead_letter_receiver(TOPIC, SUB).close()

    [call] = client.receiver_calls
    assert call["sub_queue"] == ServiceBusSubQueue.DEAD_LETTER
    assert call["session_id"] is None


def test_a_real_sdk_receiver_for_the_dead_letter_queue_is_plain_and_on_the_dlq_path():
    # The real client builds receivers without connecting; inspect the one we asked for.
    client = ServiceBusClient.from_connection_string(
        "Endpoint=sb://stockstream.servicebus.windows.net/;SharedAccessKeyName=k;"
        "SharedAccessKey=c2VjcmV0"
    )
    broker = ServiceBusBroker(client)
    dead_letters = broker.dead_letter_receiver(TOPIC, SUB)
    try:
        sdk_receiver = dead_letters._messages._receiver  # type: ignore[attr-defined]
        assert isinstance(sdk_receiver, ServiceBusReceiver)
        assert sdk_receiver.entity_path == f"{TOPIC}/Subscriptions/{SUB}/$DeadLetterQueue"
        assert sdk_receiver.session is None
    finally:
        dead_letters.close()
        broker.close()


def test_a_real_sdk_client_that_cannot_connect_cannot_accept_a_session():
    client = ServiceBusClient.from_connection_string(
        f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true",
        retry_total=0,
    )
    broker = ServiceBusBroker(client)
    try:
        with pytest.raises(BrokerUnavailable):
            broker.accept_next_session(TOPIC, SUB, max_wait=1)
    finally:
        broker.close()


def test_dead_letters_keep_session_reason_and_description_but_not_as_properties(broker):
    sent = event_message("SKU-1", "store-7", 2)
    broker.publish(TOPIC, [sent])
    with accept(broker) as receiver:
        [message] = receiver.receive(1, max_wait=1)
        receiver.dead_letter(message, "SchemaMismatch", "field 'quantity' is missing")

    with broker.dead_letter_receiver(TOPIC, SUB) as dead_letters:
        [letter] = dead_letters.receive(5, max_wait=1)
        dead_letters.complete(letter)

    assert (letter.message_id, letter.session_id) == (sent.message_id, sent.session_id)
    assert letter.dead_letter_reason == "SchemaMismatch"
    assert letter.dead_letter_description == "field 'quantity' is missing"
    assert letter.application_properties == sent.application_properties
    assert letter.body == sent.body
    assert broker.counts(TOPIC, SUB).dead_lettered == 0


def test_max_delivery_count_dead_letters_and_the_session_moves_on(broker, client):
    client.topics[TOPIC].subscriptions[SUB].max_delivery_count = 3
    broker.publish(TOPIC, [event_message(version=1), event_message(version=2)])
    with accept(broker) as receiver:
        for _ in range(3):
            [poison] = receiver.receive(1, max_wait=1)
            assert poison.message_id == "SKU-1|store-7:1"
            receiver.abandon(poison)
        [next_one] = receiver.receive(1, max_wait=1)
        receiver.complete(next_one)

    assert next_one.message_id == "SKU-1|store-7:2"
    with broker.dead_letter_receiver(TOPIC, SUB) as dead_letters:
        [letter] = dead_letters.receive(1, max_wait=1)
    assert (letter.message_id, letter.dead_letter_reason) == (
        "SKU-1|store-7:1", "MaxDeliveryCountExceeded"
    )


# ------------------------------------------------------------ the replay flow


def replay_of(letter: ReceivedMessage, subscription: str, attempt: int) -> OutgoingMessage:
    """What the replay service sends: same session and body, new id, one target."""
    return OutgoingMessage(
        message_id=f"{letter.message_id}:replay:{attempt}",
        session_id=letter.session_id,
        subject=letter.subject,
        body=letter.body,
        content_type=letter.content_type,
        application_properties={**letter.application_properties, "replayTarget": subscription},
    )


def test_the_dead_letter_replay_flow_reaches_only_the_subscription_that_failed(broker, client):
    broker.publish(TOPIC, [event_message(version=1)])
    # The availability projection fails on the event; the downstream team handles it.
    with accept(broker) as receiver:
        [poison] = receiver.receive(1, max_wait=1)
        receiver.dead_letter(poison, "ProjectionFailed", "view store down")
    with accept(broker, DOWNSTREAM) as receiver:
        receiver.complete(receiver.receive(1, max_wait=1)[0])

    # Replay: receive from the DLQ, re-send with replayTarget, then complete the DLQ copy.
    with broker.dead_letter_receiver(TOPIC, SUB) as dead_letters:
        [letter] = dead_letters.receive(10, max_wait=1)
        broker.publish(TOPIC, [replay_of(letter, SUB, 1)])
        dead_letters.complete(letter)

    assert broker.counts(TOPIC, SUB).dead_lettered == 0
    with accept(broker) as receiver:
        [replayed] = receiver.receive(10, max_wait=1)
    assert replayed.message_id == "SKU-1|store-7:1:replay:1"
    assert replayed.session_id == "SKU-1|store-7"
    assert replayed.application_properties["replayTarget"] == SUB
    assert replayed.application_properties["sequence"] == 1
    assert replayed.body == poison.body
    assert broker.counts(TOPIC, DOWNSTREAM).active == 0  # the team that succeeded: nothing


def test_a_replay_under_the_original_id_would_be_dropped_as_a_duplicate(broker, client):
    # Why the replay needs a new message id: duplicate detection on the topic.
    original = event_message(version=1)
    broker.publish(TOPIC, [original])
    with accept(broker) as receiver:
        receiver.dead_letter(receiver.receive(1, max_wait=1)[0], "Poison", "")
    with broker.dead_letter_receiver(TOPIC, SUB) as dead_letters:
        [letter] = dead_letters.receive(1, max_wait=1)
        same_id = replay_of(letter, SUB, 1)
        broker.publish(TOPIC, [OutgoingMessage(**{**same_id.__dict__,
                                                  "message_id": letter.message_id})])

    assert broker.counts(TOPIC, SUB).active == 0


# -------------------------------------------------------------------- counts


def test_counts_come_from_the_administration_client(broker, client, admins):
    later = datetime.now(UTC) + timedelta(hours=1)
    broker.publish(
        TOPIC,
        [event_message("A", "x", 1), event_message("A", "x", 2), event_message("B", "x", 1)],
    )
    broker.publish(TOPIC, [event_message("B", "x", 2, scheduled=later)])
    with broker.accept_session(TOPIC, SUB, "A|x") as receiver:
        receiver.dead_letter(receiver.receive(1, max_wait=1)[0], "Poison", "")

    counts = broker.counts(TOPIC, SUB)

    assert (counts.active, counts.dead_lettered, counts.scheduled) == (2, 1, 1)
    assert counts.oldest_active_enqueued_at is None  # Service Bus cannot tell without a peek
    assert broker.subscriptions(TOPIC) == sorted([SUB, DOWNSTREAM])
    assert len(admins) == 1  # one administration client, reused


def test_counts_of_an_unknown_subscription_is_a_lookup_error(broker):
    with pytest.raises(LookupError, match="not found"):
        broker.counts(TOPIC, "no-such-subscription")


def test_counts_without_an_administration_client_is_broker_unavailable(client):
    broker = ServiceBusBroker(client)
    with pytest.raises(BrokerUnavailable, match="administration"):
        broker.counts(TOPIC, SUB)


def test_close_closes_the_administration_client(broker, admins):
    broker.subscriptions(TOPIC)
    broker.close()
    assert admins[0].closed


def test_fake_client_refuses_a_session_together_with_the_dead_letter_sub_queue():
    # The SDK's rule, kept by the fake: an adapter that passed a session id would fail here.
    client = FakeServiceBusClient({TOPIC: [SUB]})
    with pytest.raises(ValueError, match="simultaneously"):
        client.get_subscription_receiver(
            TOPIC, SUB, session_id="SKU-1|store-7", sub_queue=ServiceBusSubQueue.DEAD_LETTER
        )
    real = ServiceBusClient.from_connection_string(
        "Endpoint=sb://stockstream.servicebus.windows.net/;SharedAccessKeyName=k;"
        "SharedAccessKey=c2VjcmV0"
    )
    with pytest.raises(ValueError, match="simultaneously"):
        real.get_subscription_receiver(
            TOPIC, SUB, session_id="SKU-1|store-7", sub_queue=ServiceBusSubQueue.DEAD_LETTER
        )
