"""The Service Bus topology downstream teams build against, stated once.

The topic and subscription names, the duplicate-detection window, the delivery limit
and the replay rules are part of the published contract (``asyncapi.yaml`` names the
topic; ``bicep/modules/servicebus.bicep`` declares the same values, checked by
``tests/infra``). The relay, the consumers, the embedded broker's set-up and the Azure
triggers import them from here.
"""

from __future__ import annotations

from datetime import timedelta

TOPIC = "inventory-events"
"""The Service Bus topic every event is published to."""

AVAILABILITY_SUBSCRIPTION = "availability"
"""The subscription that feeds the availability projection."""

MAX_ID_LENGTH = 128
"""Service Bus caps ``MessageId`` and ``SessionId`` at 128 characters; the embedded broker
refuses longer ids as Service Bus does, and the relay shortens longer ones
(``application.relay.broker_id``)."""

DUPLICATE_DETECTION_WINDOW = timedelta(days=1)
"""The topic's duplicate-detection window (at least a day)."""

MAX_DELIVERY_COUNT = 10
"""Deliveries of a message before its subscription dead-letters it."""

ALL_SUBSCRIBERS = "all"
"""``replayTarget`` of normal traffic; a replay names the one subscription it is for."""


def replay_rules(subscription: str) -> list[dict[str, str | int]]:
    """The rules every subscription has: normal traffic, and replays meant for it alone."""
    return [{"replayTarget": ALL_SUBSCRIBERS}, {"replayTarget": subscription}]
