"""Stockstream's topology on the embedded broker, as Bicep declares it in Azure.

The names and limits come from ``contracts.topology``; this module only applies them to
an :class:`EmbeddedBroker`. The embedded host, the benchmarks and the tests set a broker
up through it, so they all run against the topology Azure runs.
"""

from __future__ import annotations

from datetime import timedelta

from adapters.embedded_broker.broker import EmbeddedBroker
from contracts.topology import (
    AVAILABILITY_SUBSCRIPTION,
    DUPLICATE_DETECTION_WINDOW,
    MAX_DELIVERY_COUNT,
    TOPIC,
    replay_rules,
)

LOCK_DURATION = timedelta(seconds=30)
"""The availability subscription's message and session lock on the embedded broker."""


def ensure_topology(broker: EmbeddedBroker) -> None:
    """The topic and the availability subscription (idempotent)."""
    broker.create_topic(TOPIC, duplicate_detection_window=DUPLICATE_DETECTION_WINDOW)
    broker.create_subscription(
        TOPIC,
        AVAILABILITY_SUBSCRIPTION,
        rules=replay_rules(AVAILABILITY_SUBSCRIPTION),
        requires_session=True,
        max_delivery_count=MAX_DELIVERY_COUNT,
        lock_duration=LOCK_DURATION,
    )
