"""The embedded broker: Service Bus topics with session subscriptions, in one SQLite file.

``EmbeddedBroker`` implements ``application.ports.MessageBroker``; its administration
(``create_topic``, ``create_subscription``) stands in for Bicep on Azure. See
``docs/embedded-broker.md``.
"""

from adapters.embedded_broker.broker import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    TTL_EXPIRED,
    EmbeddedBroker,
    EntityNotFound,
    SubscriptionSettings,
)

__all__ = [
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "TTL_EXPIRED",
    "EmbeddedBroker",
    "EntityNotFound",
    "SubscriptionSettings",
]
