"""SDK-shaped fakes of a Service Bus namespace, for testing ``ServiceBusBroker`` offline.

What is real and what is faked:

- Batches are REAL ``azure.servicebus.ServiceBusMessageBatch`` objects (they need no
  connection), holding the REAL ``ServiceBusMessage`` objects the adapter built. The fake
  sender decodes each batch's AMQP payload sections with the SDK's own decoder, so the
  topic stores exactly what would have gone over the wire.
- Received messages are REAL ``ServiceBusReceivedMessage`` objects, built the way the
  SDK builds them from a transfer frame: the stored wire message plus the broker's
  annotations (sequence number, enqueued time, delivery count as AMQP counts it, i.e.
  previous deliveries) is encoded, decoded and wrapped with the receiver and a lock token.
  So application properties come back with ``bytes`` keys, as they do off the wire.
- Runtime properties are the SDK's own model objects.
- The namespace itself (routing by the ``replayTarget`` correlation filters of docs/servicebus.md,
  sessions, locks, delivery counts, dead-lettering) is a small simulation here.

``get_subscription_receiver`` checks its arguments as the SDK does (``session_id`` with
``sub_queue`` is refused; ``max_wait_time`` must be > 0), and records every call.
"""

from __future__ import annotations

import functools
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus._pyamqp.utils import amqp_long_value
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)
from azure.servicebus.management import (
    SubscriptionProperties,
    SubscriptionRuntimeProperties,
    TopicRuntimeProperties,
)
from azure.servicebus.management._generated.models import (
    MessageCountDetails,
    SubscriptionDescription,
    TopicDescription,
)

LINK_MAX_BATCH_BYTES = 262_144  # Standard tier: 256 KB
ENQUEUED_MS = 1_764_000_000_000  # a fixed enqueued time: 2025-11-24T16:00:00Z


def locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a fake's method under its topic's lock: the namespace is shared by threads."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return run


def text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def properties(message: Message) -> Properties:
    """The AMQP properties of a message the SDK encoded: it always sends them."""
    assert message.properties is not None
    return message.properties


def session_of(message: Message) -> str:
    """The session (AMQP ``group-id``) a message was sent to: the broker's topics are
    session-enabled, so every message names one."""
    session = text(properties(message).group_id)
    assert isinstance(session, str)
    return session


def message_id_of(message: Message) -> str:
    """The id duplicate detection keys on: the SDK always sets one."""
    message_id = text(properties(message).message_id)
    assert isinstance(message_id, str)
    return message_id


@dataclass
class Stored:
    """A message as the broker stores it in one subscription."""

    wire: Message
    sequence_number: int
    deliveries: int = 0
    lock_token: uuid.UUID | None = None
    dead_letter: dict[str, str] = field(default_factory=dict)

    @property
    def session_id(self) -> str:
        return session_of(self.wire)

    @property
    def message_id(self) -> str:
        return message_id_of(self.wire)


Rule = dict[str, "str | int"]


@dataclass
class Subscription:
    name: str
    rules: list[Rule] | None = None
    max_delivery_count: int = 10
    sessions: dict[str, list[Stored]] = field(default_factory=dict)
    dead_letters: list[Stored] = field(default_factory=list)
    locked_sessions: set[str] = field(default_factory=set)
    lock: Any = field(default_factory=threading.RLock)

    def accepts(self, wire: Message) -> bool:
        """Correlation rules, OR-ed; each rule's properties must all match.

        Without explicit rules: the template's ``replayTarget = 'all'`` or ``= '<name>'``.
        """
        props = {text(k): text(v) for k, v in (wire.application_properties or {}).items()}
        rules = self.rules if self.rules is not None else [
            {"replayTarget": "all"}, {"replayTarget": self.name}
        ]
        return any(all(props.get(k) == v for k, v in rule.items()) for rule in rules)

    def active(self) -> int:
        return sum(len(queue) for queue in self.sessions.values())


class Topic:
    """A topic with duplicate detection, on a partitioned entity (one partition per batch)."""

    def __init__(
        self,
        name: str,
        subscriptions: Iterable[str] | Mapping[str, list[Rule]],
        max_delivery_count: int = 10,
    ) -> None:
        self.name = name
        rules: Mapping[str, list[Rule] | None] = (
            subscriptions if isinstance(subscriptions, Mapping) else dict.fromkeys(subscriptions)
        )
        self.subscriptions = {
            s: Subscription(s, r, max_delivery_count) for s, r in rules.items()
        }
        self.batches: list[ServiceBusMessageBatch] = []
        self.wire: list[Message] = []
        self.seen_ids: set[str] = set()
        self.scheduled = 0
        self.lock = threading.RLock()
        self._sequence = itertools.count(1)
        for sub in self.subscriptions.values():
            sub.lock = self.lock

    def accept(self, batch: ServiceBusMessageBatch) -> None:
        wire = [decode_payload(memoryview(bytes(section))) for section in batch._message[5]]
        sessions = {session_of(m) for m in wire}
        if len(sessions) > 1:
            # A partitioned entity stores a batch in one partition, chosen by session.
            raise ServiceBusError(f"a batch may not span sessions; got {sorted(sessions)}")
        self.batches.append(batch)
        for message in wire:
            self.wire.append(message)
            message_id = message_id_of(message)
            if message_id in self.seen_ids:
                continue  # duplicate detection: accepted and silently dropped
            self.seen_ids.add(message_id)
            if (message.message_annotations or {}).get(b"x-opt-scheduled-enqueue-time"):
                self.scheduled += 1
                continue
            for sub in self.subscriptions.values():
                if sub.accepts(message):
                    stored = Stored(message, next(self._sequence))
                    sub.sessions.setdefault(stored.session_id, []).append(stored)

    def sent_messages(self) -> list[ServiceBusMessage]:
        """The real ServiceBusMessage objects of every batch, in send order."""
        return [m for batch in self.batches for m in batch._messages]


class FakeSender:
    def __init__(self, topic: Topic, link_max: int) -> None:
        self.topic = topic
        self.lock = topic.lock
        self.link_max = link_max
        self.closed = False
        self.fail_next_send: Exception | None = None
        self.created_batches = 0

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        if max_size_in_bytes and max_size_in_bytes > self.link_max:
            raise ValueError(f"Max message size: {max_size_in_bytes} is too large")
        self.created_batches += 1
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or self.link_max)

    @locked
    def send_messages(self, message: Any, **_: Any) -> None:
        assert not self.closed, "send on a closed sender"
        assert isinstance(message, ServiceBusMessageBatch), "the adapter sends batches"
        if self.fail_next_send is not None:
            error, self.fail_next_send = self.fail_next_send, None
            raise error
        self.topic.accept(message)

    def close(self) -> None:
        self.closed = True


class FakeSession:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id


class FakeReceiver:
    """An SDK-shaped peek-lock receiver on a subscription, one of its sessions, or its DLQ."""

    def __init__(
        self, sub: Subscription, session_id: Any, dead_letter: bool, max_wait_time: float | None
    ) -> None:
        self.sub = sub
        self.lock = sub.lock
        self.requested_session = session_id
        self.dead_letter = dead_letter
        self.max_wait_time = max_wait_time
        self._session: FakeSession | None = None
        self.opened = False
        self.closed = False
        self.settlements: list[tuple[str, ServiceBusReceivedMessage, dict[str, Any]]] = []
        self.fail_next: dict[str, Exception] = {}
        self.receive_calls: list[dict[str, Any]] = []

    # --- opening and the session lock
    def __enter__(self) -> FakeReceiver:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session(self) -> FakeSession | None:
        return self._session

    @locked
    def _open(self) -> None:
        if self.opened:
            return
        self._maybe_fail("open")
        if self.requested_session == NEXT_AVAILABLE_SESSION:
            free = [
                sid for sid, queue in self.sub.sessions.items()
                if queue and sid not in self.sub.locked_sessions
            ]
            if not free:
                raise OperationTimeoutError(message="no session available within max_wait_time")
            self._lock_session(free[0])
        elif self.requested_session is not None:
            if self.requested_session in self.sub.locked_sessions:
                raise SessionCannotBeLockedError(message="session is locked by another receiver")
            self._lock_session(self.requested_session)
        self.opened = True

    def _lock_session(self, session_id: str) -> None:
        self.sub.locked_sessions.add(session_id)
        self._session = FakeSession(session_id)

    # --- receiving
    def _queue(self) -> list[Stored]:
        if self.dead_letter:
            return self.sub.dead_letters
        assert self._session is not None, "a receive on a session subscription needs a session"
        return self.sub.sessions.setdefault(self._session.session_id, [])

    @locked
    def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        if max_wait_time is not None and max_wait_time <= 0:
            raise ValueError("The max_wait_time must be greater than 0.")
        if max_message_count is not None and max_message_count <= 0:
            raise ValueError("The max_message_count must be greater than 0")
        self.receive_calls.append(
            {"max_message_count": max_message_count, "max_wait_time": max_wait_time}
        )
        self._open()
        self._maybe_fail("receive_messages")
        out: list[ServiceBusReceivedMessage] = []
        for stored in self._queue():
            if len(out) == (max_message_count or 1):
                break
            if stored.lock_token is not None:
                continue
            stored.deliveries += 1
            stored.lock_token = uuid.uuid4()
            out.append(self._delivery(stored))
        return out

    def _delivery(self, stored: Stored) -> ServiceBusReceivedMessage:
        """Encode the stored message with broker annotations, decode it as the SDK would."""
        annotations = dict(stored.wire.message_annotations or {})
        annotations[b"x-opt-sequence-number"] = amqp_long_value(stored.sequence_number)
        annotations[b"x-opt-enqueued-time"] = amqp_long_value(ENQUEUED_MS)
        properties = dict(stored.wire.application_properties or {})
        properties.update({k.encode(): v.encode() for k, v in stored.dead_letter.items()})
        wire = stored.wire._replace(
            # AMQP counts previous attempts: Service Bus sends deliveries - 1.
            header=Header(delivery_count=stored.deliveries - 1),
            message_annotations={
                k: (amqp_long_value(v) if isinstance(v, int) else v)
                for k, v in annotations.items()
            },
            application_properties=properties or None,
        )
        payload = bytearray()
        encode_payload(payload, wire)
        decoded = decode_payload(memoryview(bytes(payload)))
        return ServiceBusReceivedMessage(decoded, receiver=self, lock_token=stored.lock_token)

    # --- settlement
    def _held(self, message: ServiceBusReceivedMessage, action: str) -> Stored:
        # The fake stands in for the SDK's receiver, which it does not subclass.
        assert message._receiver is self, "settled through a receiver that did not receive it"  # type: ignore[comparison-overlap]
        self._maybe_fail(action)
        for stored in self._queue():
            if stored.lock_token == message.lock_token:
                return stored
        error = MessageLockLostError if self.dead_letter else SessionLockLostError
        raise error(message="the lock was lost")

    @locked
    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        stored = self._held(message, "complete_message")
        self.settlements.append(("complete", message, {}))
        self._queue().remove(stored)

    @locked
    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        stored = self._held(message, "abandon_message")
        self.settlements.append(("abandon", message, {}))
        stored.lock_token = None
        if not self.dead_letter and stored.deliveries >= self.sub.max_delivery_count:
            self._move_to_dead_letters(stored, "MaxDeliveryCountExceeded", "too many deliveries")

    @locked
    def dead_letter_message(
        self,
        message: ServiceBusReceivedMessage,
        reason: str | None = None,
        error_description: str | None = None,
    ) -> None:
        stored = self._held(message, "dead_letter_message")
        self.settlements.append(
            ("dead_letter", message, {"reason": reason, "error_description": error_description})
        )
        self._move_to_dead_letters(stored, reason or "", error_description or "")

    def _move_to_dead_letters(self, stored: Stored, reason: str, description: str) -> None:
        self._queue().remove(stored)
        stored.lock_token = None
        stored.dead_letter = {
            "DeadLetterReason": reason,
            "DeadLetterErrorDescription": description,
        }
        self.sub.dead_letters.append(stored)

    @locked
    def expire_locks(self) -> None:
        """What the broker does when a lock times out: the lock token stops working."""
        for stored in self._queue():
            stored.lock_token = None

    @locked
    def close(self) -> None:
        self.closed = True
        if self._session is not None:
            self.sub.locked_sessions.discard(self._session.session_id)
            for stored in self.sub.sessions.get(self._session.session_id, []):
                stored.lock_token = None

    def _maybe_fail(self, action: str) -> None:
        error = self.fail_next.pop(action, None)
        if error is not None:
            raise error


class FakeServiceBusClient:
    """``ServiceBusClient``'s shape: senders per topic, receivers per subscription."""

    def __init__(
        self,
        topics: Mapping[str, Iterable[str] | Topic],
        link_max: int = LINK_MAX_BATCH_BYTES,
    ) -> None:
        self.topics = {
            name: subs if isinstance(subs, Topic) else Topic(name, subs)
            for name, subs in topics.items()
        }
        self.link_max = link_max
        self.senders: list[FakeSender] = []
        self.receivers: list[FakeReceiver] = []
        self.receiver_calls: list[dict[str, Any]] = []
        self.fail_on_open: Exception | None = None
        self.closed = False

    def get_topic_sender(self, topic_name: str, **_: Any) -> FakeSender:
        sender = FakeSender(self.topics[topic_name], self.link_max)
        self.senders.append(sender)
        return sender

    def get_subscription_receiver(
        self,
        topic_name: str,
        subscription_name: str,
        *,
        session_id: Any = None,
        sub_queue: Any = None,
        max_wait_time: float | None = None,
        **kwargs: Any,
    ) -> FakeReceiver:
        self.receiver_calls.append(
            {
                "topic_name": topic_name,
                "subscription_name": subscription_name,
                "session_id": session_id,
                "sub_queue": sub_queue,
                "max_wait_time": max_wait_time,
                **kwargs,
            }
        )
        if sub_queue and session_id:
            raise ValueError("session_id and sub_queue can not be specified simultaneously.")
        if max_wait_time is not None and max_wait_time <= 0:
            raise ValueError("The max_wait_time must be greater than 0.")
        dead_letter = sub_queue is not None
        if dead_letter:
            assert ServiceBusSubQueue(sub_queue) == ServiceBusSubQueue.DEAD_LETTER
        sub = self.topics[topic_name].subscriptions[subscription_name]
        receiver = FakeReceiver(sub, session_id, dead_letter, max_wait_time)
        if self.fail_on_open is not None:
            receiver.fail_next["open"], self.fail_on_open = self.fail_on_open, None
        self.receivers.append(receiver)
        return receiver

    def close(self) -> None:
        self.closed = True


class FakeAdministrationClient:
    """``ServiceBusAdministrationClient``'s runtime-property reads, with the SDK's models."""

    def __init__(self, client: FakeServiceBusClient) -> None:
        self.client = client
        self.closed = False

    def _topic(self, name: str) -> Topic:
        if name not in self.client.topics:
            raise ResourceNotFoundError(f"topic {name} not found")
        return self.client.topics[name]

    def get_subscription_runtime_properties(
        self, topic_name: str, subscription_name: str
    ) -> SubscriptionRuntimeProperties:
        topic = self._topic(topic_name)
        if subscription_name not in topic.subscriptions:
            raise ResourceNotFoundError(f"subscription {subscription_name} not found")
        sub = topic.subscriptions[subscription_name]
        details = MessageCountDetails(
            active_message_count=sub.active(),
            dead_letter_message_count=len(sub.dead_letters),
            scheduled_message_count=0,
        )
        return SubscriptionRuntimeProperties._from_internal_entity(
            subscription_name, SubscriptionDescription(message_count_details=details)
        )

    def get_topic_runtime_properties(self, topic_name: str) -> TopicRuntimeProperties:
        topic = self._topic(topic_name)
        details = MessageCountDetails(scheduled_message_count=topic.scheduled)
        return TopicRuntimeProperties._from_internal_entity(
            topic_name, TopicDescription(message_count_details=details)
        )

    def list_subscriptions(self, topic_name: str) -> list[SubscriptionProperties]:
        topic = self._topic(topic_name)
        return [
            SubscriptionProperties._from_internal_entity(
                name, SubscriptionDescription(requires_session=True)
            )
            for name in topic.subscriptions
        ]

    def close(self) -> None:
        self.closed = True
