"""The operator's status page: outbox, subscriptions and projections in one answer."""

from __future__ import annotations

from collections.abc import Callable

from application.ports import Clock, MessageBroker
from application.relay import RelayStatus
from application.views import (
    OpsStatus,
    OpsStatusReader,
    OutboxStatus,
    ProjectionStatus,
    SubscriptionStatus,
)


class PipelineStatus(OpsStatusReader):
    """Assembles ``OpsStatus`` from whatever parts this host runs."""

    def __init__(
        self,
        clock: Clock,
        relay_status: Callable[[], RelayStatus] | None,
        broker: MessageBroker | None,
        topic: str,
        projections: Callable[[], list[ProjectionStatus]],
    ) -> None:
        self.clock = clock
        self.relay_status = relay_status
        self.broker = broker
        self.topic = topic
        self.projections = projections

    def status(self) -> OpsStatus:
        outbox = OutboxStatus(depth=0, oldest_age_seconds=None)
        if self.relay_status is not None:
            relay = self.relay_status()
            outbox = OutboxStatus(relay.depth, relay.oldest_age_seconds)
        return OpsStatus(outbox=outbox, subscriptions=self._subscriptions(),
                         projections=self.projections())

    def _subscriptions(self) -> list[SubscriptionStatus]:
        if self.broker is None:
            return []
        now = self.clock.now()
        rows = []
        for name in sorted(self.broker.subscriptions(self.topic)):
            counts = self.broker.counts(self.topic, name)
            oldest = counts.oldest_active_enqueued_at
            lag = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
            rows.append(SubscriptionStatus(name, counts.active, counts.dead_lettered, lag))
        return rows
