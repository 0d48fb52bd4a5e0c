"""The embedded broker's topology: what ``bicep/modules/servicebus.bicep`` declares in Azure.

The topic with duplicate detection, and the availability subscription whose rules
accept normal traffic and replays meant for it alone (DESIGN §6). Declared by the
processes that use the embedded broker (host, pipeline worker, standalone relay) when
they open it; ``emulators/servicebus-config.json`` declares the same for the Service Bus
emulator (``tests/contract/test_emulator_topology.py`` compares them).
"""

from __future__ import annotations

from datetime import timedelta

from adapters.embedded_broker import EmbeddedBroker
from application.settings import AVAILABILITY_SUBSCRIPTION, TOPIC

DUPLICATE_DETECTION_WINDOW = timedelta(days=1)
MAX_DELIVERY_COUNT = 10
LOCK_DURATION = timedelta(seconds=30)


def replay_rules(subscription: str) -> list[dict[str, str | int]]:
    """The rules every subscription has: normal traffic, and replays meant for it alone."""
    return [{"replayTarget": "all"}, {"replayTarget": subscription}]


def ensure_topology(broker: EmbeddedBroker) -> None:
    """The topic and the availability subscription, as Bicep declares them in Azure."""
    broker.create_topic(TOPIC, duplicate_detection_window=DUPLICATE_DETECTION_WINDOW)
    broker.create_subscription(
        TOPIC,
        AVAILABILITY_SUBSCRIPTION,
        rules=replay_rules(AVAILABILITY_SUBSCRIPTION),
        requires_session=True,
        max_delivery_count=MAX_DELIVERY_COUNT,
        lock_duration=LOCK_DURATION,
    )
