"""Session and dead-letter receivers over an SDK ``ServiceBusReceiver`` (peek-lock).

The port hands consumers plain :class:`~application.ports.ReceivedMessage` values; the
SDK settles only its own ``ServiceBusReceivedMessage`` objects. Each receiver therefore
keeps the SDK message it handed out under its lock token until the message is settled,
and settles that object. A token this receiver does not hold (already settled, or never
received here) raises ``LockLost``: the settlement did not happen.

One receiver is used by one thread at a time, as the SDK requires.
"""

from __future__ import annotations

import logging

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from adapters.servicebus.errors import LOCK_ERRORS, receive_error
from adapters.servicebus.messages import to_received_message
from application.ports import (
    DeadLetterReceiver,
    LockLost,
    ReceivedMessage,
    SessionReceiver,
)

_log = logging.getLogger(__name__)

MIN_WAIT_SECONDS = 0.5
"""The shortest receive wait sent to the SDK, which refuses 0 ("must be greater than 0").

A wait of 0 on the port means "only what is already there"; over AMQP that still needs
one round trip, which this bound allows for.
"""

MAX_DESCRIPTION_CHARS = 4096
"""Dead-letter descriptions are cut to this length: they travel as message headers,
which Service Bus limits to 64 KB in total (32 KB per property)."""


# MessageAlreadySettled is a ValueError, not a ServiceBusError.
_SETTLEMENT_ERRORS: tuple[type[Exception], ...] = (ServiceBusError, *LOCK_ERRORS)


def sdk_wait(max_wait: float) -> float:
    """The ``max_wait_time`` to give the SDK for a port-level ``max_wait``."""
    return max(float(max_wait), MIN_WAIT_SECONDS)


class _HeldMessages:
    """Receives through an SDK receiver and remembers what it holds, by lock token."""

    def __init__(self, receiver: ServiceBusReceiver, description: str) -> None:
        self._receiver = receiver
        self._description = description
        self._held: dict[str, ServiceBusReceivedMessage] = {}

    def receive(self, max_messages: int, max_wait: float) -> list[ReceivedMessage]:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1; got {max_messages}")
        try:
            received = self._receiver.receive_messages(
                max_message_count=max_messages, max_wait_time=sdk_wait(max_wait)
            )
        except ServiceBusError as exc:
            raise receive_error(exc, f"receive from {self._description}") from exc
        messages = []
        for sdk_message in received:
            message = to_received_message(sdk_message)
            self._held[message.lock_token] = sdk_message
            messages.append(message)
        return messages

    def settle(self, message: ReceivedMessage, action: str, **kwargs: str) -> None:
        """Run ``action`` (``complete_message``, ...) on the SDK message behind ``message``."""
        sdk_message = self._held.get(message.lock_token)
        what = f"{action} of message {message.message_id!r} on {self._description}"
        if sdk_message is None:
            raise LockLost(f"{what}: this receiver does not hold its lock (already settled?)")
        try:
            getattr(self._receiver, action)(sdk_message, **kwargs)
        except _SETTLEMENT_ERRORS as exc:
            if isinstance(exc, LOCK_ERRORS):
                # The lock is gone for good; the broker will redeliver the message.
                self._held.pop(message.lock_token, None)
            raise receive_error(exc, what) from exc
        self._held.pop(message.lock_token, None)

    def close(self) -> None:
        """Give back every message still held, then close the link.

        Closing a Service Bus receiver does not release the locks of messages it received:
        they would stay invisible until their lock expires (a minute by default). Abandoning
        them first makes them available at once, counted as one more delivery, which is
        what the port promises and what ``maxDeliveryCount`` expects.
        """
        held, self._held = list(self._held.values()), {}
        try:
            for sdk_message in held:
                self._receiver.abandon_message(sdk_message)
        except _SETTLEMENT_ERRORS:
            # The link or the lock is already gone; the broker redelivers after expiry.
            _log.info("could not give back held messages of %s", self._description)
        try:
            self._receiver.close()
        except ServiceBusError:
            # Closing releases the lock; if the link is already gone the broker lets the
            # lock expire instead. Nothing for the caller to do.
            _log.warning("closing the receiver of %s failed", self._description, exc_info=True)


class ServiceBusSessionReceiver(SessionReceiver):
    """One locked session of a subscription (an SDK session receiver, already open)."""

    def __init__(self, receiver: ServiceBusReceiver, session_id: str, description: str) -> None:
        self.session_id = session_id
        self._messages = _HeldMessages(receiver, f"{description} session {session_id!r}")

    def receive(self, max_messages: int = 1, max_wait: float = 0.0) -> list[ReceivedMessage]:
        return self._messages.receive(max_messages, max_wait)

    def complete(self, message: ReceivedMessage) -> None:
        self._messages.settle(message, "complete_message")

    def abandon(self, message: ReceivedMessage) -> None:
        self._messages.settle(message, "abandon_message")

    def dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        self._messages.settle(
            message,
            "dead_letter_message",
            reason=reason,
            error_description=description[:MAX_DESCRIPTION_CHARS],
        )

    def close(self) -> None:
        self._messages.close()


class ServiceBusDeadLetterReceiver(DeadLetterReceiver):
    """A subscription's dead-letter queue (a plain, non-session receiver)."""

    def __init__(self, receiver: ServiceBusReceiver, description: str) -> None:
        self._messages = _HeldMessages(receiver, f"dead-letter queue of {description}")

    def receive(self, max_messages: int = 1, max_wait: float = 0.0) -> list[ReceivedMessage]:
        return self._messages.receive(max_messages, max_wait)

    def complete(self, message: ReceivedMessage) -> None:
        self._messages.settle(message, "complete_message")

    def close(self) -> None:
        self._messages.close()
