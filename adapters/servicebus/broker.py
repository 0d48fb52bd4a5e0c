"""``ServiceBusBroker``: the message-broker port on Azure Service Bus (``azure-servicebus`` 7.x).

Why the SDK and not the Functions output binding: the Python binding accepts only ``str``
or ``bytes``, so it cannot set ``SessionId``, ``MessageId`` or application properties, and a
send to a session-enabled entity through it fails (azure-facts §1).

One ``ServiceBusClient`` per process (built with :meth:`ServiceBusBroker.from_namespace`
or :meth:`ServiceBusBroker.from_connection_string`), one cached sender per topic. Senders
are not thread-safe, so each topic's sends are serialised by a lock; receivers are created
per call and used by one thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    OperationTimeoutError,
    ServiceBusError,
)
from azure.servicebus.management import ServiceBusAdministrationClient

from adapters.servicebus.errors import (
    UNAVAILABLE_ERRORS,
    admin_error,
    publish_error,
    receive_error,
)
from adapters.servicebus.messages import to_service_bus_message
from adapters.servicebus.receivers import (
    ServiceBusDeadLetterReceiver,
    ServiceBusSessionReceiver,
    sdk_wait,
)
from application.ports import (
    BrokerUnavailable,
    DeadLetterReceiver,
    MessageBroker,
    MessageRejected,
    OutgoingMessage,
    SessionReceiver,
    SubscriptionCounts,
)

AdminFactory = Callable[[], ServiceBusAdministrationClient]


def group_by_session(
    messages: Sequence[OutgoingMessage],
) -> dict[str, list[tuple[OutgoingMessage, ServiceBusMessage]]]:
    """The SDK messages of ``messages`` grouped by session id, each group in input order.

    Every message is validated and converted before anything is sent, so a bad message
    (id too long, no session) fails the whole publish up front instead of half-way.
    """
    groups: dict[str, list[tuple[OutgoingMessage, ServiceBusMessage]]] = {}
    for message in messages:
        groups.setdefault(message.session_id, []).append(
            (message, to_service_bus_message(message))
        )
    return groups


class ServiceBusBroker(MessageBroker):
    """A Service Bus namespace seen through the ``MessageBroker`` port.

    Publishing sends ``ServiceBusMessageBatch``es that never mix sessions (see
    :meth:`publish`). Session receivers, the dead-letter receiver and settlement map SDK
    failures to ``BrokerUnavailable`` and ``LockLost``; counts come from the
    administration client, which needs Manage rights (Data Owner) on the namespace.
    """

    def __init__(
        self,
        client: ServiceBusClient,
        admin: AdminFactory | None = None,
        *,
        max_batch_size_in_bytes: int | None = None,
    ) -> None:
        """Wrap ``client``; ``admin`` builds the administration client on first use.

        ``max_batch_size_in_bytes`` caps each batch below the link's limit (None: the
        limit the namespace announces, 256 KB on Standard, ``maxMessageSizeInKilobytes``
        on Premium).
        """
        self._client = client
        self._admin_factory = admin
        self._admin: ServiceBusAdministrationClient | None = None
        self._max_batch_size = max_batch_size_in_bytes
        self._senders: dict[str, ServiceBusSender] = {}
        self._topic_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- building

    @classmethod
    def from_namespace(
        cls,
        fully_qualified_namespace: str,
        *,
        client_id: str | None = None,
        credential: Any = None,
        **kwargs: Any,
    ) -> ServiceBusBroker:
        """A broker on ``<ns>.servicebus.windows.net`` with an Entra ID identity.

        ``credential`` defaults to ``DefaultAzureCredential`` (the function app's managed
        identity; ``client_id`` selects a user-assigned one).
        """
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        client = ServiceBusClient(fully_qualified_namespace, credential=credential)

        def admin() -> ServiceBusAdministrationClient:
            return ServiceBusAdministrationClient(fully_qualified_namespace, credential)

        return cls(client, admin, **kwargs)

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> ServiceBusBroker:
        """A broker from a shared-access connection string (the emulator, or local tests)."""
        client = ServiceBusClient.from_connection_string(connection_string)

        def admin() -> ServiceBusAdministrationClient:
            return ServiceBusAdministrationClient.from_connection_string(connection_string)

        return cls(client, admin, **kwargs)

    # --------------------------------------------------------------- publishing

    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message to ``topic`` in batches, one session per batch.

        Why a batch never mixes sessions: a batch is one AMQP transfer that Service Bus
        stores in one partition, and on partitioned (or Premium partitioned) entities the
        partition is chosen by the session id — the SDK even stamps the batch envelope
        with the *first* message's session id — so a mixed batch is refused or lands
        messages in the wrong partition. Grouping per session also keeps each session's
        messages in their original order, one batch after the other, which is the order
        consumers rely on.

        A session's messages are split over several batches when ``add_message`` raises
        ``MessageSizeExceededError``. A single message too large for an empty batch raises
        ``MessageRejected`` naming its id, before anything is sent (as does an id or session
        id Service Bus would refuse). SDK failures become
        ``BrokerUnavailable`` (connection, communication, timeout, server busy) or
        ``PublishFailed`` (anything else). On such a failure some batches may already be on
        the topic; publishing all of them again is safe because duplicate detection drops
        repeated message ids.
        """
        if not messages:
            return
        groups = group_by_session(messages)
        with self._topic_lock(topic):
            sender = self._sender(topic)
            try:
                # Every batch is filled before the first is sent, so a message too large
                # for any batch fails the publish with nothing sent.
                batches = [b for group in groups.values() for b in self._batches(sender, group)]
                for batch in batches:
                    sender.send_messages(batch)
            except ServiceBusError as exc:
                if isinstance(exc, UNAVAILABLE_ERRORS):
                    self._drop_sender(topic)
                raise publish_error(exc, topic) from exc

    def _batches(
        self, sender: ServiceBusSender, group: list[tuple[OutgoingMessage, ServiceBusMessage]]
    ) -> Iterator[ServiceBusMessageBatch]:
        """Full batches of one session's messages, in order, each within the size limit."""
        batch = sender.create_message_batch(self._max_batch_size)
        for message, sdk_message in group:
            try:
                batch.add_message(sdk_message)
                continue
            except MessageSizeExceededError:
                if len(batch) == 0:
                    raise self._too_large(message, batch) from None
            yield batch
            batch = sender.create_message_batch(self._max_batch_size)
            try:
                batch.add_message(sdk_message)
            except MessageSizeExceededError:
                raise self._too_large(message, batch) from None
        if len(batch):
            yield batch

    @staticmethod
    def _too_large(message: OutgoingMessage, batch: ServiceBusMessageBatch) -> MessageRejected:
        return MessageRejected(
            f"message {message.message_id!r} ({len(message.body)} bytes of body) is larger "
            f"than a Service Bus batch may be ({batch.max_size_in_bytes} bytes)"
        )

    def _topic_lock(self, topic: str) -> threading.Lock:
        with self._lock:
            return self._topic_locks.setdefault(topic, threading.Lock())

    def _sender(self, topic: str) -> ServiceBusSender:
        with self._lock:
            sender = self._senders.get(topic)
            if sender is None:
                sender = self._client.get_topic_sender(topic_name=topic)
                self._senders[topic] = sender
            return sender

    def _drop_sender(self, topic: str) -> None:
        """Forget a sender whose link failed, so the next publish opens a fresh one."""
        with self._lock:
            sender = self._senders.pop(topic, None)
        if sender is not None:
            # The link is already broken; closing it is a courtesy.
            with contextlib.suppress(ServiceBusError):
                sender.close()

    # ---------------------------------------------------------------- receiving

    def accept_next_session(
        self, topic: str, subscription: str, max_wait: float = 0.0
    ) -> SessionReceiver | None:
        """Lock the next session with available messages (``NEXT_AVAILABLE_SESSION``).

        The SDK opens the link lazily; it is opened here so the session id is known and
        "no session within ``max_wait``" (``OperationTimeoutError``) becomes None.
        """
        receiver = self._client.get_subscription_receiver(
            topic_name=topic,
            subscription_name=subscription,
            session_id=NEXT_AVAILABLE_SESSION,
            max_wait_time=sdk_wait(max_wait),
        )
        try:
            receiver.__enter__()
        except OperationTimeoutError:
            receiver.close()
            return None
        except ServiceBusError as exc:
            receiver.close()
            raise receive_error(exc, f"accept a session of {topic}/{subscription}") from exc
        session_id = receiver.session.session_id
        return ServiceBusSessionReceiver(receiver, session_id, f"{topic}/{subscription}")

    def accept_session(self, topic: str, subscription: str, session_id: str) -> SessionReceiver:
        """Lock the named session; ``LockLost`` if another receiver holds it."""
        receiver = self._client.get_subscription_receiver(
            topic_name=topic, subscription_name=subscription, session_id=session_id
        )
        try:
            receiver.__enter__()
        except ServiceBusError as exc:
            receiver.close()
            what = f"accept session {session_id!r} of {topic}/{subscription}"
            raise receive_error(exc, what) from exc
        return ServiceBusSessionReceiver(receiver, session_id, f"{topic}/{subscription}")

    def dead_letter_receiver(self, topic: str, subscription: str) -> DeadLetterReceiver:
        """A plain receiver on ``<topic>/Subscriptions/<sub>/$deadletterqueue``.

        No session id: the dead-letter queue of a session-enabled subscription is not
        sessionful, and the SDK refuses ``session_id`` together with ``sub_queue``.
        Received messages keep their session id and dead-letter reason and description,
        which a replay needs.
        """
        receiver = self._client.get_subscription_receiver(
            topic_name=topic,
            subscription_name=subscription,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER,
        )
        return ServiceBusDeadLetterReceiver(receiver, f"{topic}/{subscription}")

    # ------------------------------------------------------------------- counts

    def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        """Active and dead-lettered counts of the subscription, scheduled of the topic.

        Service Bus holds scheduled messages on the topic until they are due, so the
        scheduled count is the topic's (every subscription will receive them).
        ``oldest_active_enqueued_at`` stays None: finding it needs a peek, and a session
        subscription can only be peeked session by session.
        """
        admin = self._admin_client()
        what = f"counts of {topic}/{subscription}"
        try:
            props = admin.get_subscription_runtime_properties(topic, subscription)
            topic_props = admin.get_topic_runtime_properties(topic)
        except AzureError as exc:
            raise admin_error(exc, what) from exc
        return SubscriptionCounts(
            active=props.active_message_count or 0,
            dead_lettered=props.dead_letter_message_count or 0,
            scheduled=topic_props.scheduled_message_count or 0,
        )

    def subscriptions(self, topic: str) -> list[str]:
        """The topic's subscription names, sorted."""
        admin = self._admin_client()
        try:
            return sorted(sub.name for sub in admin.list_subscriptions(topic))
        except AzureError as exc:
            raise admin_error(exc, f"subscriptions of {topic}") from exc

    def _admin_client(self) -> ServiceBusAdministrationClient:
        with self._lock:
            if self._admin is None:
                if self._admin_factory is None:
                    raise BrokerUnavailable("no Service Bus administration client configured")
                self._admin = self._admin_factory()
            return self._admin

    # -------------------------------------------------------------------- close

    def close(self) -> None:
        """Close every cached sender, the administration client and the client."""
        with self._lock:
            senders = list(self._senders.values())
            self._senders.clear()
            admin, self._admin = self._admin, None
        for sender in senders:
            # A broken sender is fine: the client close below tears down the connection.
            with contextlib.suppress(ServiceBusError):
                sender.close()
        if admin is not None:
            admin.close()
        self._client.close()
