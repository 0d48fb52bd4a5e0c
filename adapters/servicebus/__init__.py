"""Azure Service Bus: the message-broker port on the ``azure-servicebus`` SDK.

``ServiceBusBroker`` publishes the relay's and the replay's messages and receives
sessions and dead letters; ``docs/servicebus.md`` describes the mapping, batching, error
mapping, the dead-letter replay flow and the roles each operation needs.
"""

from adapters.servicebus.broker import ServiceBusBroker, group_by_session
from adapters.servicebus.messages import to_received_message, to_service_bus_message
from adapters.servicebus.receivers import ServiceBusDeadLetterReceiver, ServiceBusSessionReceiver

__all__ = [
    "ServiceBusBroker",
    "ServiceBusDeadLetterReceiver",
    "ServiceBusSessionReceiver",
    "group_by_session",
    "to_received_message",
    "to_service_bus_message",
]
