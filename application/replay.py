"""Dead-letter replay: re-publish one subscription's dead letters to that subscription only.

Service Bus cannot move a message out of a dead-letter queue or send to one
subscription. So: receive from the DLQ, publish a copy to the topic with
``replayTarget`` = the subscription (every subscription's rules accept ``all`` or its own
name, so no other subscription receives it), a new message id (the original is still in
the duplicate-detection window) and the same session id, then complete the DLQ copy.
The two steps are not atomic: a crash between them replays the message again later,
which consumers absorb by their per-stream version checks.
"""

from __future__ import annotations

from application.ports import DeadLetterReplayer, MessageBroker, OutgoingMessage, ReceivedMessage
from application.relay import broker_id
from contracts.topology import TOPIC

DEFAULT_MAX = 1000


def replay_message(message: ReceivedMessage, subscription: str) -> OutgoingMessage:
    """The copy of a dead-lettered message that only ``subscription`` will receive."""
    properties = dict(message.application_properties)
    replays = int(properties.get("replayCount", 0)) + 1
    original = str(properties.get("originalMessageId", message.message_id))
    properties.update(replayTarget=subscription, replayCount=replays,
                      originalMessageId=original)
    return OutgoingMessage(
        message_id=broker_id(f"{original}:replay:{replays}"),
        session_id=message.session_id,
        subject=message.subject,
        body=message.body,
        content_type=message.content_type,
        application_properties=properties,
    )


class DeadLetterReplay(DeadLetterReplayer):
    """Replays dead letters through a ``MessageBroker`` (embedded broker or Service Bus)."""

    def __init__(self, broker: MessageBroker, topic: str = TOPIC, batch_size: int = 100) -> None:
        self.broker = broker
        self.topic = topic
        self.batch_size = batch_size

    def replay(self, subscription: str, max_messages: int | None = None) -> int:
        if subscription not in self.broker.subscriptions(self.topic):
            raise KeyError(subscription)
        limit = DEFAULT_MAX if max_messages is None else max_messages
        replayed = 0
        with self.broker.dead_letter_receiver(self.topic, subscription) as receiver:
            while replayed < limit:
                messages = receiver.receive(min(self.batch_size, limit - replayed), 0.0)
                if not messages:
                    break
                for message in messages:
                    self.broker.publish(self.topic, [replay_message(message, subscription)])
                    receiver.complete(message)
                    replayed += 1
        return replayed


__all__ = ["DeadLetterReplay", "replay_message"]
