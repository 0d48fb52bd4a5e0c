"""The operator's status page: outbox, subscriptions and projections in one answer, and
the same figures sampled as metrics (the metrics timer, on both hosts)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from application.ports import Clock, MessageBroker, OpsStatusReader, PipelineMetrics
from application.views import (
    OpsStatus,
    OutboxStatus,
    ProjectionStatus,
    RelayStatus,
    SubscriptionStatus,
    Unmeasured,
)

NO_OLDEST_MESSAGE = ("the broker does not report when the oldest active message was "
                     "enqueued (Service Bus: a session subscription can only be peeked "
                     "session by session); see the active count and the backlog metric")
NO_PROJECTION_LAG = ("no event applied since this process started and no lag stored by "
                     "the view; the stockstream.projection.lag_seconds metric has it")

log = logging.getLogger(__name__)


class PipelineStatus(OpsStatusReader):
    """Assembles ``OpsStatus`` from whatever parts this host runs.

    A figure it cannot measure reads None, with the reason in ``unmeasured``: the status
    page must never show a made-up 0 (an all-clear nobody checked)."""

    def __init__(
        self,
        clock: Clock,
        relay_status: Callable[[], RelayStatus] | None,
        broker: MessageBroker | None,
        topic: str,
        projections: Callable[[], list[ProjectionStatus]],
        *,
        no_relay: str = "this process has no view of the outbox",
        no_broker: str = "this process has no broker",
    ) -> None:
        self.clock = clock
        self.relay_status = relay_status
        self.broker = broker
        self.topic = topic
        self.projections = projections
        self.no_relay = no_relay
        self.no_broker = no_broker

    def status(self) -> OpsStatus:
        outbox, subscriptions = self.outbox(), self.subscriptions()
        projections = self.projections()
        unmeasured: list[Unmeasured] = []
        if outbox.depth is None:
            unmeasured.append(Unmeasured("outbox.depth", self.no_relay))
        if self.broker is None:
            unmeasured.append(Unmeasured("subscriptions", self.no_broker))
        unmeasured += [Unmeasured(f"subscriptions[{s.name}].lag_seconds", NO_OLDEST_MESSAGE)
                       for s in subscriptions if s.lag_seconds is None]
        unmeasured += [Unmeasured(f"projections[{p.name}].lag_seconds", NO_PROJECTION_LAG)
                       for p in projections if p.lag_seconds is None]
        return OpsStatus(outbox=outbox, subscriptions=subscriptions, projections=projections,
                         unmeasured=unmeasured)

    def outbox(self) -> OutboxStatus:
        """Committed events not yet published, against the relay's position (None when
        this process has no view of the relay)."""
        if self.relay_status is None:
            return OutboxStatus(depth=None, oldest_age_seconds=None)
        relay = self.relay_status()
        return OutboxStatus(relay.depth, relay.oldest_age_seconds)

    def subscriptions(self) -> list[SubscriptionStatus]:
        """Each subscription's counts; its lag is the oldest active message's age, 0 when
        it is empty, and None when the broker cannot tell (Service Bus: see its adapter)."""
        if self.broker is None:
            return []
        now = self.clock.now()
        rows = []
        for name in sorted(self.broker.subscriptions(self.topic)):
            counts = self.broker.counts(self.topic, name)
            oldest = counts.oldest_active_enqueued_at
            lag: float | None
            if oldest is not None:
                lag = max((now - oldest).total_seconds(), 0.0)
            else:
                lag = 0.0 if counts.active == 0 else None
            rows.append(SubscriptionStatus(name, counts.active, counts.dead_lettered, lag))
        return rows

    def sample(self, metrics: PipelineMetrics) -> None:
        """Record the outbox and every subscription's counts (not the projections, whose
        lag is recorded per applied event). Each part is sampled even if the other fails;
        the first failure is raised afterwards, so the timer's invocation shows it."""
        failure: Exception | None = None
        if self.relay_status is not None:
            try:
                outbox = self.outbox()
                if outbox.depth is not None:
                    metrics.record_outbox(outbox.depth, outbox.oldest_age_seconds)
            except Exception as error:
                log.exception("could not sample the outbox")
                failure = error
        try:
            for subscription in self.subscriptions():
                metrics.record_backlog(subscription.name, subscription.active)
                metrics.record_dead_letter_depth(subscription.name, subscription.dead_lettered)
        except Exception as error:
            log.exception("could not sample the subscriptions")
            failure = failure or error
        if failure is not None:
            raise failure
