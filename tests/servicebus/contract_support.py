"""What Service Bus does differently from the embedded broker, for the broker contract.

Two contract tests are restated for Service Bus, not weakened at random:

- ``counts`` cannot report ``oldest_active_enqueued_at``: the administration API has no
  such figure, and finding it would mean peeking every session, which locks it. So the
  adapter reports None, and the restated test asserts exactly that.
- Scheduled messages are counted on the topic (they wait there until due), and on a
  long-lived namespace earlier runs may have left scheduled messages behind that cannot
  be drained. The restated tests assert the *change* in the scheduled count.

Everything else in ``BrokerContract`` runs unchanged. One test is added: the metrics
timer's sampling (``PipelineStatus.sample``) over the real administration API, which needs
the Manage claim, so the first live run checks the backlog and dead-letter gauges.
"""

from __future__ import annotations

from datetime import timedelta

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from adapters.clock import SystemClock
from adapters.telemetry import DEAD_LETTER_DEPTH, SUBSCRIPTION_BACKLOG, local_telemetry
from application.ops import PipelineStatus
from application.ports import MessageBroker
from tests.contract.broker_contract import (
    RECEIPTS_AT_STORE_1,
    SUBSCRIPTIONS,
    TOPIC,
    _message,
    _session,
)


def drain(broker: MessageBroker, wait: float) -> None:
    """Complete every message of every contract subscription and its dead-letter queue."""
    for subscription in SUBSCRIPTIONS:
        while (receiver := broker.accept_next_session(TOPIC, subscription, max_wait=wait)):
            with receiver:
                while batch := receiver.receive(max_messages=100, max_wait=wait):
                    for message in batch:
                        receiver.complete(message)
        with broker.dead_letter_receiver(TOPIC, subscription) as dead_letters:
            while batch := dead_letters.receive(max_messages=100, max_wait=wait):
                for message in batch:
                    dead_letters.complete(message)


class ServiceBusCountsContract:
    """Restated count tests; mix in before ``BrokerContract``."""

    def test_counts_report_active_dead_lettered_scheduled_and_oldest(
        self, broker: MessageBroker
    ) -> None:
        first, second = _session(), _session()
        scheduled_before = broker.counts(TOPIC, "alpha").scheduled
        broker.publish(TOPIC, [_message(first, 1), _message(first, 2), _message(second, 1)])
        broker.publish(TOPIC, [_message(second, 2, scheduled=self.now() + timedelta(hours=1))])  # type: ignore[attr-defined]
        with broker.accept_session(TOPIC, "alpha", first) as receiver:
            receiver.dead_letter(self._receive_one(receiver), "Poison", "counted")  # type: ignore[attr-defined]

        counts = broker.counts(TOPIC, "alpha")

        assert (counts.active, counts.dead_lettered) == (2, 1)
        assert counts.scheduled - scheduled_before == 1
        assert counts.oldest_active_enqueued_at is None  # not available on Service Bus
        receipts = broker.counts(TOPIC, RECEIPTS_AT_STORE_1)
        assert (receipts.active, receipts.dead_lettered) == (3, 0)

    def test_the_metrics_timer_samples_each_subscription_as_backlog_and_dead_letter_gauges(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1), _message(session, 2)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            receiver.dead_letter(self._receive_one(receiver), "Poison", "sampled")  # type: ignore[attr-defined]
        reader = InMemoryMetricReader()

        PipelineStatus(SystemClock(), None, broker, TOPIC, list).sample(local_telemetry(reader))

        data = reader.get_metrics_data()
        assert data is not None
        gauges: dict[tuple[str, object], float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)  # gauges, not histograms
                        assert point.attributes is not None
                        gauges[(metric.name, point.attributes["subscription"])] = point.value
        assert gauges[(SUBSCRIPTION_BACKLOG, "alpha")] == 1
        assert gauges[(DEAD_LETTER_DEPTH, "alpha")] == 1
        assert {name for _, name in gauges} == set(broker.subscriptions(TOPIC))

    def test_a_scheduled_message_is_not_visible_before_its_time(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        scheduled_before = broker.counts(TOPIC, "alpha").scheduled
        later = self.now() + timedelta(hours=1)  # type: ignore[attr-defined]
        broker.publish(TOPIC, [_message(session, 1, scheduled=later)])

        counts = broker.counts(TOPIC, "alpha")

        assert (counts.active, counts.scheduled - scheduled_before) == (0, 1)
        assert self._nothing_more(broker)  # type: ignore[attr-defined]
