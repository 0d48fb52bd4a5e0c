"""The contract every ``MessageBroker`` adapter must pass (embedded broker, Service Bus).

Written against ``application.ports`` only, as ``eventsourcing``'s recorder test cases are
written against its persistence interfaces: an adapter proves itself by subclassing
``BrokerContract`` and filling in the hooks.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from application.ports import (
    LockLost,
    MessageBroker,
    MessageRejected,
    OutgoingMessage,
    ReceivedMessage,
    SessionReceiver,
)

TOPIC = "contract-events"
DUPLICATE_WINDOW = timedelta(minutes=10)
MAX_DELIVERY_COUNT = 3
LOCK_DURATION = timedelta(seconds=60)
RECEIVED = "Stockstream.StockReceived.v1"
ADJUSTED = "Stockstream.StockAdjusted.v1"
RECEIPTS_AT_STORE_1 = "store-1-receipts"

# Subscription name -> correlation-filter rules (OR-ed; each rule's keys must all match).
SUBSCRIPTIONS: dict[str, list[dict[str, str | int]]] = {
    "alpha": [{"replayTarget": "all"}, {"replayTarget": "alpha"}],
    "beta": [{"replayTarget": "all"}, {"replayTarget": "beta"}],
    RECEIPTS_AT_STORE_1: [{"type": RECEIVED, "location": "store-1"}],
}


def _message(
    session_id: str,
    n: int,
    *,
    replay_target: str = "all",
    event_type: str = RECEIVED,
    location: str = "store-1",
    message_id: str | None = None,
    scheduled: datetime | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=message_id or f"{session_id}:{n}",
        session_id=session_id,
        subject=event_type,
        body=f'{{"session": "{session_id}", "n": {n}}}'.encode(),
        application_properties={
            "type": event_type,
            "sku": session_id.split("|")[0],
            "location": location,
            "sequence": n,
            "replayTarget": replay_target,
        },
        scheduled_enqueue_time=scheduled,
    )


def _session() -> str:
    """A session id no other test (or earlier run against a live namespace) uses."""
    return f"sku-{uuid.uuid4().hex[:10]}|store-1"


def _numbers(messages: list[ReceivedMessage]) -> list[int]:
    return [int(m.application_properties["sequence"]) for m in messages]


class BrokerContract:
    """Behaviour any ``MessageBroker`` must show; subclass it as ``Test<Adapter>``.

    Topology the tests expect (the subclass's ``make_broker`` sets it up, or, for a live
    namespace, checks that Bicep did): topic ``contract-events`` with duplicate detection
    on and a window of 10 minutes; three subscriptions, all session-enabled, with
    ``max_delivery_count`` 3, a lock duration of 60 s and no default time to live:

    - ``alpha``: correlation rules ``replayTarget = 'all'`` OR ``replayTarget = 'alpha'``;
    - ``beta``: ``replayTarget = 'all'`` OR ``replayTarget = 'beta'``;
    - ``store-1-receipts``: ``type = 'Stockstream.StockReceived.v1' AND location = 'store-1'``.

    ``SUBSCRIPTIONS`` in this module holds the same rules as data. Every test starts from
    empty subscriptions (a live adapter drains them in ``make_broker``) and uses session
    and message ids of its own.

    Hooks:

    - ``make_broker(tmp_path)``: a broker on that topology (the same ``tmp_path`` gives the
      same durable state, so calling it again after ``close`` is a reopen);
    - ``advance(seconds)``: move the broker's clock. Tests that call it (lock expiry,
      scheduled arrival, duplicate window ending) are skipped when
      ``controllable_clock`` is False, as it is against a live namespace;
    - ``now()``: the broker's current time;
    - ``settle_wait``: seconds to wait when asserting that nothing arrives (0 for a local
      broker whose state is visible at once; a few seconds for a remote one).

    Delivery counts are normalised to Service Bus's meaning: the first delivery is 1.
    """

    controllable_clock: bool = False
    settle_wait: float = 0.0
    arrival_wait: float = 5.0

    def make_broker(self, tmp_path: Path) -> MessageBroker:
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        pytest.skip("needs a controllable clock")

    def now(self) -> datetime:
        return datetime.now(UTC)

    # ----------------------------------------------------------------- fixtures

    @pytest.fixture
    def broker(self, tmp_path: Path) -> Iterator[MessageBroker]:
        broker = self.make_broker(tmp_path)
        yield broker
        broker.close()

    def _needs_clock(self) -> None:
        if not self.controllable_clock:
            pytest.skip("needs a controllable clock")

    def _drain(self, receiver: SessionReceiver, expected: int) -> list[ReceivedMessage]:
        """Receive and complete until ``expected`` messages came (or nothing more does),
        then look once more (``settle_wait``) so that an unexpected extra one shows too."""
        received: list[ReceivedMessage] = []
        while True:
            missing = expected - len(received)
            wait = self.arrival_wait if missing > 0 else self.settle_wait
            batch = receiver.receive(max_messages=max(missing, 1), max_wait=wait)
            for message in batch:
                receiver.complete(message)
            received.extend(batch)
            if not batch or missing <= 0:
                return received

    def _receive_unsettled(self, receiver: SessionReceiver, expected: int
                           ) -> list[ReceivedMessage]:
        """Receive ``expected`` messages (or what comes) and leave them locked."""
        received: list[ReceivedMessage] = []
        while len(received) < expected:
            batch = receiver.receive(expected - len(received), self.arrival_wait)
            if not batch:
                break
            received.extend(batch)
        return received

    def _receive_one(self, receiver: SessionReceiver) -> ReceivedMessage:
        batch = receiver.receive(max_messages=1, max_wait=self.arrival_wait)
        assert len(batch) == 1, "expected one message"
        return batch[0]

    def _accept(self, broker: MessageBroker, subscription: str = "alpha") -> SessionReceiver:
        receiver = broker.accept_next_session(TOPIC, subscription, max_wait=self.arrival_wait)
        assert receiver is not None, "expected a session with messages"
        return receiver

    def _nothing_more(self, broker: MessageBroker, subscription: str = "alpha") -> bool:
        receiver = broker.accept_next_session(TOPIC, subscription, max_wait=self.settle_wait)
        if receiver is None:
            return True
        receiver.close()
        return False

    def _dead_letters(
        self, broker: MessageBroker, expected: int, subscription: str = "alpha"
    ) -> list[ReceivedMessage]:
        with broker.dead_letter_receiver(TOPIC, subscription) as dead_letters:
            received: list[ReceivedMessage] = []
            while len(received) < expected:
                batch = dead_letters.receive(expected - len(received), max_wait=self.arrival_wait)
                if not batch:
                    break
                for message in batch:
                    dead_letters.complete(message)
                received.extend(batch)
        return received

    # --------------------------------------------------------------- ordering

    def test_messages_of_a_session_arrive_in_publish_order(self, broker: MessageBroker) -> None:
        first, other = _session(), _session()
        broker.publish(TOPIC, [_message(first, n) for n in (1, 2, 3)])
        broker.publish(TOPIC, [_message(other, 1)])
        for n in (4, 5, 6):
            broker.publish(TOPIC, [_message(first, n), _message(other, n)])

        with broker.accept_session(TOPIC, "alpha", first) as receiver:
            received = self._drain(receiver, 6)

        assert _numbers(received) == [1, 2, 3, 4, 5, 6]
        assert {m.session_id for m in received} == {first}
        sequence_numbers = [m.sequence_number for m in received]
        assert sequence_numbers == sorted(sequence_numbers)
        assert [m.delivery_count for m in received] == [1] * 6

    def test_a_received_message_keeps_what_was_published(self, broker: MessageBroker) -> None:
        session = _session()
        sent = _message(session, 7)
        broker.publish(TOPIC, [sent])

        with broker.accept_session(TOPIC, "beta", session) as receiver:
            received = self._receive_one(receiver)
            receiver.complete(received)

        assert received.message_id == sent.message_id
        assert received.session_id == session
        assert received.subject == sent.subject
        assert received.body == sent.body
        assert received.content_type == sent.content_type
        assert received.application_properties == sent.application_properties
        assert received.enqueued_at.tzinfo is not None

    # --------------------------------------------------------------- sessions

    def test_a_locked_session_is_not_handed_to_a_second_receiver(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        holder = self._accept(broker)
        assert holder.session_id == session

        assert broker.accept_next_session(TOPIC, "alpha", max_wait=self.settle_wait) is None
        with pytest.raises(LockLost):
            broker.accept_session(TOPIC, "alpha", session)

        holder.close()
        with self._accept(broker) as again:
            assert again.session_id == session
            assert _numbers(self._drain(again, 1)) == [1]

    def test_other_sessions_proceed_while_one_is_locked(self, broker: MessageBroker) -> None:
        busy, free = _session(), _session()
        broker.publish(TOPIC, [_message(busy, 1), _message(busy, 2), _message(free, 1)])
        with broker.accept_session(TOPIC, "alpha", busy) as holder:
            held = self._receive_one(holder)  # locked, not settled

            with self._accept(broker) as other:
                assert other.session_id == free
                assert _numbers(self._drain(other, 1)) == [1]

            holder.complete(held)
            assert _numbers(self._drain(holder, 1)) == [2]

    def test_concurrent_receivers_never_hold_the_same_session_at_once(
        self, broker: MessageBroker
    ) -> None:
        sessions = [_session() for _ in range(12)]
        per_session = 4
        for n in range(1, per_session + 1):
            broker.publish(TOPIC, [_message(s, n) for s in sessions])

        guard = threading.Lock()
        holding: set[str] = set()
        overlaps: list[str] = []
        received: dict[str, list[int]] = defaultdict(list)
        failures: list[BaseException] = []

        def work() -> None:
            try:
                while True:
                    receiver = broker.accept_next_session(
                        TOPIC, "alpha", max_wait=self.settle_wait
                    )
                    if receiver is None:
                        return
                    with guard:
                        if receiver.session_id in holding:
                            overlaps.append(receiver.session_id)
                        holding.add(receiver.session_id)
                    try:
                        while batch := receiver.receive(max_messages=2, max_wait=self.settle_wait):
                            for message in batch:
                                receiver.complete(message)
                                with guard:
                                    received[message.session_id].append(
                                        int(message.application_properties["sequence"])
                                    )
                    finally:
                        with guard:
                            holding.discard(receiver.session_id)
                        receiver.close()
            except BaseException as error:  # surfaced in the main thread below
                failures.append(error)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert failures == []
        assert overlaps == []
        expected = list(range(1, per_session + 1))
        assert {s: received[s] for s in sessions} == {s: expected for s in sessions}

    def test_settling_after_the_receiver_closed_raises_lock_lost(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        receiver = broker.accept_session(TOPIC, "alpha", session)
        message = self._receive_one(receiver)
        receiver.close()

        with pytest.raises(LockLost):
            receiver.complete(message)
        with broker.accept_session(TOPIC, "alpha", session) as again:
            redelivered = self._receive_one(again)
            again.complete(redelivered)
        assert redelivered.message_id == message.message_id
        assert redelivered.delivery_count == 2

    def test_completing_a_batch_removes_all_of_it(self, broker: MessageBroker) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, n) for n in (1, 2, 3)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            batch = self._receive_unsettled(receiver, 3)
            receiver.complete_all(batch)
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            assert receiver.receive(10, self.settle_wait) == []

    def test_completing_a_batch_after_the_lock_was_lost_raises_and_redelivers(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, n) for n in (1, 2)])
        receiver = broker.accept_session(TOPIC, "alpha", session)
        batch = self._receive_unsettled(receiver, 2)
        receiver.close()
        with pytest.raises(LockLost):
            receiver.complete_all(batch)
        with broker.accept_session(TOPIC, "alpha", session) as again:
            redelivered = self._receive_unsettled(again, 2)
            again.complete_all(redelivered)
        assert _numbers(redelivered) == [1, 2]

    # ------------------------------------------- many sessions at once (a visit)

    def _accept_many(self, broker: MessageBroker, sessions: int, messages: int,
                     subscription: str = "alpha"
                     ) -> list[tuple[SessionReceiver, list[ReceivedMessage]]]:
        return broker.accept_next_sessions(TOPIC, subscription, sessions, messages,
                                           max_wait=self.arrival_wait)

    def _three_sessions_of_three(self, broker: MessageBroker) -> list[str]:
        """Three sessions, each with messages 1, 2 and 3 (published interleaved)."""
        sessions = [_session() for _ in range(3)]
        for n in (1, 2, 3):
            broker.publish(TOPIC, [_message(s, n) for s in sessions])
        return sessions

    def _one_session_of_three(
        self, broker: MessageBroker
    ) -> tuple[SessionReceiver, list[ReceivedMessage]]:
        """A session with messages 1, 2 and 3, taken with all three."""
        session = _session()
        broker.publish(TOPIC, [_message(session, n) for n in (1, 2, 3)])
        ((receiver, messages),) = self._accept_many(broker, sessions=1, messages=3)
        return receiver, messages

    def test_many_sessions_are_taken_at_once_each_with_its_messages_in_order(
        self, broker: MessageBroker
    ) -> None:
        sessions = self._three_sessions_of_three(broker)

        taken = self._accept_many(broker, sessions=5, messages=2)
        try:
            assert sorted(r.session_id for r, _ in taken) == sorted(sessions)
            for receiver, messages in taken:
                assert _numbers(messages) == [1, 2]
                assert {m.session_id for m in messages} == {receiver.session_id}
                assert [m.delivery_count for m in messages] == [1, 1]
        finally:
            assert broker.settle_sessions(taken) == 6

        # Completed ones are gone; each session's third message is next, and only it.
        again = self._accept_many(broker, sessions=5, messages=5)
        assert sorted((r.session_id, _numbers(m)) for r, m in again) == sorted(
            (s, [3]) for s in sessions)
        assert broker.settle_sessions(again) == 3
        assert self._nothing_more(broker)

    def test_taking_many_sessions_stops_at_the_maximum_and_skips_locked_ones(
        self, broker: MessageBroker
    ) -> None:
        held, *free = [_session() for _ in range(4)]
        broker.publish(TOPIC, [_message(s, 1) for s in [held, *free]])
        with broker.accept_session(TOPIC, "alpha", held) as holder:
            first = self._accept_many(broker, sessions=2, messages=10)
            second = self._accept_many(broker, sessions=2, messages=10)
            ids = [r.session_id for r, _ in first + second]
            assert len(first) == 2 and len(second) == 1
            assert sorted(ids) == sorted(free)
            assert broker.settle_sessions(first + second) == 3
            assert _numbers(self._drain(holder, 1)) == [1]

    def test_sessions_are_taken_oldest_waiting_message_first(
        self, broker: MessageBroker
    ) -> None:
        first, second, third = (_session() for _ in range(3))
        broker.publish(TOPIC, [_message(third, 1), _message(first, 1), _message(third, 2),
                               _message(second, 1), _message(first, 2)])

        taken = self._accept_many(broker, sessions=2, messages=10)
        try:
            assert [(r.session_id, _numbers(m)) for r, m in taken] == [
                (third, [1, 2]), (first, [1, 2])]
        finally:
            assert broker.settle_sessions(taken) == 4
        rest = self._accept_many(broker, sessions=2, messages=10)
        assert [(r.session_id, _numbers(m)) for r, m in rest] == [(second, [1])]
        assert broker.settle_sessions(rest) == 1

    def test_a_settlement_completes_what_it_still_holds_and_leaves_a_lost_session_alone(
        self, broker: MessageBroker
    ) -> None:
        self._needs_clock()
        lost, kept = _session(), _session()
        broker.publish(TOPIC, [_message(lost, 1), _message(lost, 2)])
        early = self._accept_many(broker, sessions=1, messages=2)
        self.advance(LOCK_DURATION.total_seconds() / 2)
        broker.publish(TOPIC, [_message(kept, 1)])
        late = self._accept_many(broker, sessions=1, messages=1)
        self.advance(LOCK_DURATION.total_seconds() / 2 + 1)  # the early lock expired
        with broker.accept_session(TOPIC, "alpha", lost) as new_holder:
            retaken = self._receive_unsettled(new_holder, 2)

            # The early receiver lost its session: nothing of it is completed, and the
            # new holder's locks and messages are untouched.
            assert broker.settle_sessions(early + late) == 1

            assert [m.delivery_count for m in retaken] == [2, 2]
            new_holder.complete_all(retaken)
        assert self._nothing_more(broker)

    def test_settling_releases_the_sessions_and_gives_back_what_was_not_handled(
        self, broker: MessageBroker
    ) -> None:
        receiver, messages = self._one_session_of_three(broker)
        assert _numbers(messages) == [1, 2, 3]

        assert broker.settle_sessions([(receiver, messages[:1])]) == 1  # 2 and 3 unhandled

        with pytest.raises(LockLost):
            receiver.complete(messages[1])  # the session was released with the settlement
        with self._accept(broker) as again:
            redelivered = self._drain(again, 2)
        assert _numbers(redelivered) == [2, 3]
        assert [m.delivery_count for m in redelivered] == [2, 2]

    def test_settling_after_the_lock_expired_completes_nothing_and_redelivers(
        self, broker: MessageBroker
    ) -> None:
        self._needs_clock()
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        taken = self._accept_many(broker, sessions=1, messages=1)

        self.advance(LOCK_DURATION.total_seconds() + 1)

        assert broker.settle_sessions(taken) == 0
        with self._accept(broker) as again:
            redelivered = self._drain(again, 1)
        assert (_numbers(redelivered), redelivered[0].delivery_count) == ([1], 2)

    def test_a_settlement_and_the_next_take_in_one_call_take_the_next_messages_in_order(
        self, broker: MessageBroker
    ) -> None:
        sessions = self._three_sessions_of_three(broker)
        taken = self._accept_many(broker, sessions=5, messages=2)

        completed, again = broker.settle_and_accept_next_sessions(
            taken, TOPIC, "alpha", 5, 5)

        assert completed == 6
        assert sorted((r.session_id, _numbers(m)) for r, m in again) == sorted(
            (s, [3]) for s in sessions)  # the sessions just released, taken again
        with pytest.raises(LockLost):
            taken[0][0].complete(taken[0][1][0])  # the first visit's sessions were released
        assert broker.settle_and_accept_next_sessions(again, TOPIC, "alpha", 5, 5) == (3, [])
        assert self._nothing_more(broker)

    def test_what_a_settlement_gave_back_is_the_next_take_s_first_message(
        self, broker: MessageBroker
    ) -> None:
        receiver, messages = self._one_session_of_three(broker)

        completed, again = broker.settle_and_accept_next_sessions(
            [(receiver, messages[:1])], TOPIC, "alpha", 1, 3)  # 2 and 3 not handled

        assert completed == 1
        ((_, redelivered),) = again
        assert _numbers(redelivered) == [2, 3]
        assert [m.delivery_count for m in redelivered] == [2, 2]
        assert broker.settle_sessions(again) == 2

    def test_a_settlement_with_the_next_take_never_hands_out_a_session_held_elsewhere(
        self, broker: MessageBroker
    ) -> None:
        mine, held = _session(), _session()
        broker.publish(TOPIC, [_message(mine, 1), _message(held, 1), _message(mine, 2)])
        with broker.accept_session(TOPIC, "alpha", held) as holder:
            taken = self._accept_many(broker, sessions=5, messages=1)
            assert [r.session_id for r, _ in taken] == [mine]

            completed, again = broker.settle_and_accept_next_sessions(
                taken, TOPIC, "alpha", 5, 5)

            assert (completed, [(r.session_id, _numbers(m)) for r, m in again]) == (
                1, [(mine, [2])])
            assert broker.settle_sessions(again) == 1
            assert _numbers(self._drain(holder, 1)) == [1]
        assert self._nothing_more(broker)

    def test_a_message_given_back_at_the_maximum_by_a_settlement_is_dead_lettered(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1), _message(session, 2)])
        for delivery in range(1, MAX_DELIVERY_COUNT + 1):
            ((receiver, messages),) = self._accept_many(broker, sessions=1, messages=1)
            assert (_numbers(messages), messages[0].delivery_count) == ([1], delivery)
            assert broker.settle_sessions([(receiver, [])]) == 0  # the handler failed

        with self._accept(broker) as receiver:
            assert _numbers(self._drain(receiver, 1)) == [2]
        dead = self._dead_letters(broker, 1)
        assert [m.dead_letter_reason for m in dead] == ["MaxDeliveryCountExceeded"]

    # ------------------------------------------------------ redelivery and DLQ

    def test_an_abandoned_message_is_next_again_with_a_higher_delivery_count(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1), _message(session, 2)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            first = self._receive_one(receiver)
            receiver.abandon(first)
            again = self._receive_one(receiver)
            receiver.complete(again)
            second = self._receive_one(receiver)
            receiver.complete(second)

        assert (_numbers([first]), first.delivery_count) == ([1], 1)
        assert (_numbers([again]), again.delivery_count) == ([1], 2)
        assert (_numbers([second]), second.delivery_count) == ([2], 1)

    def test_an_expired_lock_redelivers_with_a_higher_delivery_count(
        self, broker: MessageBroker
    ) -> None:
        self._needs_clock()
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        stale = broker.accept_session(TOPIC, "alpha", session)
        first = self._receive_one(stale)

        self.advance(LOCK_DURATION.total_seconds() + 1)

        with self._accept(broker) as receiver:
            assert receiver.session_id == session
            again = self._receive_one(receiver)
            with pytest.raises(LockLost):
                stale.complete(first)
            receiver.complete(again)
        stale.close()
        assert again.message_id == first.message_id
        assert (first.delivery_count, again.delivery_count) == (1, 2)

    def test_settling_with_an_expired_lock_raises_lock_lost(self, broker: MessageBroker) -> None:
        self._needs_clock()
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            message = self._receive_one(receiver)
            self.advance(LOCK_DURATION.total_seconds() + 1)
            with pytest.raises(LockLost):
                receiver.complete(message)
            with pytest.raises(LockLost):
                receiver.abandon(message)
            with pytest.raises(LockLost):
                receiver.dead_letter(message, "Poison", "too late")
        assert broker.counts(TOPIC, "alpha").active == 1

    def test_a_message_abandoned_up_to_the_maximum_is_dead_lettered_and_the_session_goes_on(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1), _message(session, 2)])
        counts_seen = []
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            for _ in range(MAX_DELIVERY_COUNT):
                message = self._receive_one(receiver)
                assert _numbers([message]) == [1]
                counts_seen.append(message.delivery_count)
                receiver.abandon(message)
            after = self._drain(receiver, 1)

        assert counts_seen == list(range(1, MAX_DELIVERY_COUNT + 1))
        assert _numbers(after) == [2]
        dead = self._dead_letters(broker, 1)
        assert [(m.message_id, m.session_id) for m in dead] == [(f"{session}:1", session)]
        assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
        assert broker.counts(TOPIC, "beta").dead_lettered == 0  # the copy in beta is untouched

    def test_lock_expiry_up_to_the_maximum_dead_letters(self, broker: MessageBroker) -> None:
        self._needs_clock()
        session = _session()
        broker.publish(TOPIC, [_message(session, 1), _message(session, 2)])
        for delivery in range(1, MAX_DELIVERY_COUNT + 1):
            receiver = self._accept(broker)
            message = self._receive_one(receiver)
            assert (_numbers([message]), message.delivery_count) == ([1], delivery)
            self.advance(LOCK_DURATION.total_seconds() + 1)  # the handler hung

        with self._accept(broker) as receiver:
            assert _numbers(self._drain(receiver, 1)) == [2]
        dead = self._dead_letters(broker, 1)
        assert [m.dead_letter_reason for m in dead] == ["MaxDeliveryCountExceeded"]

    def test_an_application_dead_letter_keeps_reason_description_and_message(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        sent = _message(session, 1)
        broker.publish(TOPIC, [sent, _message(session, 2)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            poison = self._receive_one(receiver)
            receiver.dead_letter(poison, "SchemaMismatch", "field 'quantity' is missing")
            assert _numbers(self._drain(receiver, 1)) == [2]
        assert broker.counts(TOPIC, "alpha").dead_lettered == 1

        dead = self._dead_letters(broker, 1)

        assert len(dead) == 1
        letter = dead[0]
        assert letter.dead_letter_reason == "SchemaMismatch"
        assert letter.dead_letter_description == "field 'quantity' is missing"
        assert (letter.message_id, letter.session_id) == (sent.message_id, session)
        assert letter.body == sent.body
        assert letter.subject == sent.subject
        assert letter.application_properties == sent.application_properties
        assert broker.counts(TOPIC, "alpha").dead_lettered == 0  # completed from the DLQ

    def test_a_dead_letter_not_completed_is_received_again(self, broker: MessageBroker) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            receiver.dead_letter(self._receive_one(receiver), "Poison", "bad")
        with broker.dead_letter_receiver(TOPIC, "alpha") as dead_letters:
            first = dead_letters.receive(1, max_wait=self.arrival_wait)
            assert len(first) == 1
            assert dead_letters.receive(1, max_wait=self.settle_wait) == []  # locked
        assert [m.message_id for m in self._dead_letters(broker, 1)] == [first[0].message_id]

    # ----------------------------------------------------- duplicate detection

    def test_duplicates_inside_the_window_are_dropped(self, broker: MessageBroker) -> None:
        session = _session()
        original = _message(session, 1)
        broker.publish(TOPIC, [original])
        broker.publish(TOPIC, [original])
        broker.publish(TOPIC, [original, _message(session, 2), _message(session, 2)])

        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            received = self._drain(receiver, 2)
        broker.publish(TOPIC, [original])  # already completed: still a duplicate

        assert _numbers(received) == [1, 2]
        assert broker.counts(TOPIC, "alpha").active == 0
        assert self._nothing_more(broker)

    def test_a_message_id_is_accepted_again_after_the_window(self, broker: MessageBroker) -> None:
        self._needs_clock()
        session = _session()
        broker.publish(TOPIC, [_message(session, 1)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            assert len(self._drain(receiver, 1)) == 1

        self.advance(DUPLICATE_WINDOW.total_seconds() + 1)
        broker.publish(TOPIC, [_message(session, 1)])

        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            assert _numbers(self._drain(receiver, 1)) == [1]

    # ---------------------------------------------------------------- filters

    def test_filters_route_only_matching_messages(self, broker: MessageBroker) -> None:
        session = _session()
        broker.publish(
            TOPIC,
            [
                _message(session, 1),  # all, a receipt at store-1: every subscription
                _message(session, 2, replay_target="alpha", event_type=ADJUSTED),  # alpha only
                _message(session, 3, replay_target="beta"),  # beta and the receipts
                _message(session, 4, location="store-2"),  # all, receipt elsewhere
                _message(session, 5, replay_target="gamma", event_type=ADJUSTED),  # nobody
            ],
        )

        expected = {"alpha": [1, 2, 4], "beta": [1, 3, 4], RECEIPTS_AT_STORE_1: [1, 3]}
        routed = {}
        for subscription, numbers in expected.items():
            with broker.accept_session(TOPIC, subscription, session) as receiver:
                routed[subscription] = _numbers(self._drain(receiver, len(numbers)))

        assert routed == expected

    # -------------------------------------------------------------- scheduling

    def test_a_scheduled_message_is_not_visible_before_its_time(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        broker.publish(TOPIC, [_message(session, 1, scheduled=self.now() + timedelta(hours=1))])

        counts = broker.counts(TOPIC, "alpha")

        assert (counts.active, counts.scheduled) == (0, 1)
        assert self._nothing_more(broker)

    def test_a_scheduled_message_arrives_at_its_time(self, broker: MessageBroker) -> None:
        self._needs_clock()
        session = _session()
        due = self.now() + timedelta(seconds=30)
        broker.publish(TOPIC, [_message(session, 1, scheduled=due)])
        self.advance(29)
        assert self._nothing_more(broker)

        self.advance(2)

        with self._accept(broker) as receiver:
            [message] = self._drain(receiver, 1)
        assert message.enqueued_at >= due

    # ---------------------------------------------------------- rejections

    def test_a_message_without_a_session_id_is_rejected_and_its_batch_with_it(
        self, broker: MessageBroker
    ) -> None:
        session = _session()
        sessionless = OutgoingMessage(
            message_id=f"{session}:no-session", session_id="", subject=RECEIVED, body=b"{}",
            application_properties={"replayTarget": "all"},
        )

        with pytest.raises(MessageRejected):
            broker.publish(TOPIC, [_message(session, 1), sessionless])

        assert broker.counts(TOPIC, "alpha").active == 0
        broker.publish(TOPIC, [_message(session, 1)])  # not remembered as a duplicate
        assert broker.counts(TOPIC, "alpha").active == 1

    # --------------------------------------------------- durability and counts

    def test_state_survives_closing_and_reopening(self, tmp_path: Path) -> None:
        session = _session()
        broker = self.make_broker(tmp_path)
        broker.publish(TOPIC, [_message(session, n) for n in (1, 2, 3)])
        with broker.accept_session(TOPIC, "alpha", session) as receiver:
            receiver.complete(self._receive_one(receiver))
            receiver.dead_letter(self._receive_one(receiver), "Poison", "kept over a restart")
        broker.close()

        reopened = self.make_broker(tmp_path)
        try:
            reopened.publish(TOPIC, [_message(session, 1)])  # duplicate, still remembered
            with reopened.accept_session(TOPIC, "alpha", session) as receiver:
                assert _numbers(self._drain(receiver, 1)) == [3]
            dead = self._dead_letters(reopened, 1)
            assert [(m.dead_letter_reason, m.dead_letter_description) for m in dead] == [
                ("Poison", "kept over a restart")
            ]
            assert sorted(reopened.subscriptions(TOPIC)) == sorted(SUBSCRIPTIONS)
        finally:
            reopened.close()

    def test_counts_report_active_dead_lettered_scheduled_and_oldest(
        self, broker: MessageBroker
    ) -> None:
        assert broker.counts(TOPIC, "alpha").oldest_active_enqueued_at is None
        first, second = _session(), _session()
        before = self.now()
        broker.publish(TOPIC, [_message(first, 1), _message(first, 2), _message(second, 1)])
        broker.publish(TOPIC, [_message(second, 2, scheduled=self.now() + timedelta(hours=1))])
        with broker.accept_session(TOPIC, "alpha", first) as receiver:
            receiver.dead_letter(self._receive_one(receiver), "Poison", "counted")

        counts = broker.counts(TOPIC, "alpha")

        assert (counts.active, counts.dead_lettered, counts.scheduled) == (2, 1, 1)
        oldest = counts.oldest_active_enqueued_at
        assert oldest is not None
        assert before - timedelta(minutes=5) <= oldest <= self.now() + timedelta(minutes=5)
        receipts = broker.counts(TOPIC, RECEIPTS_AT_STORE_1)
        assert (receipts.active, receipts.dead_lettered, receipts.scheduled) == (3, 0, 1)

    def test_subscriptions_lists_the_topics_subscriptions(self, broker: MessageBroker) -> None:
        assert sorted(broker.subscriptions(TOPIC)) == sorted(SUBSCRIPTIONS)
