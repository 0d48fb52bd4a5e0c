"""The mapping between the port's messages and the ``azure-servicebus`` SDK's.

Outgoing: an :class:`~application.ports.OutgoingMessage` becomes a real
``azure.servicebus.ServiceBusMessage`` with every field the output binding cannot set
(``message_id``, ``session_id``, application properties, scheduled enqueue time).

Incoming: a ``ServiceBusReceivedMessage`` becomes a :class:`~application.ports.ReceivedMessage`.
Off the wire the SDK (pyamqp) hands application-property keys and string values over as
``bytes``; they are decoded here so consumers see the same ``str``/``int`` values the
publisher set. The broker's dead-letter reason and description travel as application
properties of a dead-lettered message; they are moved to their own fields so a replay
does not carry them forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

from application.ports import MessageRejected, OutgoingMessage, ReceivedMessage
from contracts.topology import MAX_ID_LENGTH

DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_ERROR_DESCRIPTION = "DeadLetterErrorDescription"
_BROKER_PROPERTIES = frozenset({DEAD_LETTER_REASON, DEAD_LETTER_ERROR_DESCRIPTION})


def validate_outgoing(message: OutgoingMessage) -> None:
    """Refuse a message Service Bus would reject or mis-route, before anything is sent.

    Raises ``MessageRejected`` naming the message when its id or session id is empty or
    longer than 128 characters: every message goes to a session-enabled subscription,
    where a message without a SessionId is dead-lettered ("Session ID is null").
    """
    if not message.message_id or len(message.message_id) > MAX_ID_LENGTH:
        raise MessageRejected(
            f"message id {message.message_id!r} must be 1 to {MAX_ID_LENGTH} characters"
        )
    if not message.session_id or len(message.session_id) > MAX_ID_LENGTH:
        raise MessageRejected(
            f"message {message.message_id!r}: session id {message.session_id!r} must be "
            f"1 to {MAX_ID_LENGTH} characters"
        )


def to_service_bus_message(message: OutgoingMessage) -> ServiceBusMessage:
    """The SDK message for ``message``: same id, session, subject, content type, properties.

    The application properties are copied, so nothing the SDK does to them leaks back
    into the caller's message.
    """
    validate_outgoing(message)
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        session_id=message.session_id,
        subject=message.subject,
        content_type=message.content_type,
        application_properties=_properties(message),
        scheduled_enqueue_time_utc=_scheduled_time(message),
    )


def to_received_message(message: ServiceBusReceivedMessage) -> ReceivedMessage:
    """The port's view of a message received under a peek-lock.

    ``delivery_count`` counts deliveries *including this one* (1 on the first delivery),
    as the .NET SDK and the Functions binding report it: Service Bus puts "deliveries - 1"
    in the AMQP header (AMQP counts *previous* attempts) and the Python SDK passes that
    raw value through, so one is added here.
    """
    properties = decode_properties(message.application_properties or {})
    for name in _BROKER_PROPERTIES:
        properties.pop(name, None)
    enqueued_at = message.enqueued_time_utc or datetime.fromtimestamp(0, UTC)
    return ReceivedMessage(
        message_id=_text(message.message_id),
        session_id=_text(message.session_id),
        subject=_text(message.subject),
        body=body_bytes(message),
        content_type=_text(message.content_type),
        application_properties=properties,
        delivery_count=(message.delivery_count or 0) + 1,
        sequence_number=message.sequence_number or 0,
        enqueued_at=enqueued_at,
        lock_token=_text(message.lock_token),
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_description=message.dead_letter_error_description,
    )


def body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes, whatever AMQP body section the producer used.

    Our publishers always send one data section; a foreign producer's value or sequence
    body is still turned into bytes rather than failing the receive loop.
    """
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    value: Any = message.body
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def decode_properties(raw: Mapping[Any, Any]) -> dict[str, str | int]:
    """Application properties with ``bytes`` keys/values decoded as UTF-8.

    Integers stay integers (the ``sequence`` filter property is numeric); any other
    AMQP type is kept as its string form, because the port carries only str and int.
    """
    decoded: dict[str, str | int] = {}
    for key, value in raw.items():
        name = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            decoded[name] = value.decode("utf-8", errors="replace")
        elif isinstance(value, int) and not isinstance(value, bool):
            decoded[name] = value
        else:
            decoded[name] = str(value)
    return decoded


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _properties(message: OutgoingMessage) -> dict[str | bytes, Any]:
    # A copy: the SDK keeps (and tracing may extend) the dict it is given.
    return {name: value for name, value in message.application_properties.items()}


def _scheduled_time(message: OutgoingMessage) -> datetime | None:
    moment = message.scheduled_enqueue_time
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise MessageRejected(
            f"message {message.message_id!r}: scheduled_enqueue_time must be timezone-aware"
        )
    return moment.astimezone(UTC)
