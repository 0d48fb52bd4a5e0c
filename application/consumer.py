"""Consuming a session subscription: one message at a time, settled after its effect.

``EventConsumer.process`` is what a consumer does with one message body, whatever
delivered it (the embedded loop below, or the Service Bus trigger in Azure): parse,
validate against the schema registry, hand to the handler. ``SessionConsumer`` is the
embedded loop: it takes sessions from a ``MessageBroker`` and settles each message after
the handler returns — complete on success, dead-letter with the reason on a message
that can never succeed, abandon (redeliver, then dead-letter after the maximum) on any
other failure. Handlers are idempotent per stream version, so a redelivery after a crash
between the effect and the settlement changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from application.ports import (
    Clock,
    EventHandler,
    LockLost,
    MessageBroker,
    ProjectionMetrics,
    ReceivedMessage,
    SessionReceiver,
)
from contracts.processes import is_process_type
from contracts.validation import (
    EventRejected,
    SchemaValidationFailed,
    UnknownEventType,
    validate_cloudevent,
)

log = logging.getLogger(__name__)

Observer = Callable[[dict[str, Any], object], None]
"""Called with each applied document and what the handler returned."""

APPLIED_OUTCOMES = frozenset({"applied", "caught-up"})
"""Handler outcomes that changed the projection (a duplicate or a skipped type did not)."""


def projection_lag_observer(metrics: ProjectionMetrics, name: str, clock: Clock) -> Observer:
    """Records, for each event projection ``name`` applied, its age: now − the event's
    ``time`` (when it occurred, i.e. was committed). Duplicates record nothing."""

    def observe(document: dict[str, Any], outcome: object) -> None:
        if outcome not in APPLIED_OUTCOMES:
            return
        try:
            occurred = datetime.fromisoformat(str(document["time"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return
        metrics.record_projection_lag(name, (clock.now() - occurred).total_seconds())

    return observe


class EventConsumer:
    """Turns a message body into a validated CloudEvent and applies it with ``handler``.

    ``observers`` are told about every document the handler returned from (metrics); one
    that fails is logged and never fails the message, which is applied already.
    """

    def __init__(self, name: str, handler: EventHandler,
                 observers: tuple[Observer, ...] = ()) -> None:
        self.name = name
        self.handler = handler
        self.observers = observers

    def process(self, body: bytes) -> object:
        """Apply one message. Raises ``EventRejected`` (``SchemaValidationFailed``) for a
        message that can never be applied; returns ``"skipped"`` for an event type this
        build does not know (a newer producer), which must not block the session, and
        for a process's event (an order's), which a stock consumer does not apply."""
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SchemaValidationFailed(f"the body is not JSON: {error}") from error
        try:
            validate_cloudevent(document)
        except UnknownEventType as unknown:
            log.warning("%s skips an event type it does not know: %s", self.name, unknown)
            return "skipped"
        if is_process_type(document["type"]):
            # An order's event (valid, on the same topic): stock consumers have nothing to
            # apply, and a subscription accepting replayTarget = 'all' receives it.
            return "skipped"
        outcome = self.handler(document)
        for observe in self.observers:
            try:
                observe(document, outcome)
            except Exception:
                log.exception("an observer of %s failed", self.name)
        return outcome


class SessionConsumer:
    """Worker threads that drain a session subscription of a ``MessageBroker``."""

    def __init__(
        self,
        broker: MessageBroker,
        topic: str,
        subscription: str,
        consumer: EventConsumer,
        *,
        workers: int = 2,
        batch_size: int = 32,
        idle_wait: float = 0.2,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.subscription = subscription
        self.consumer = consumer
        self.workers = workers
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_once(self, max_wait: float = 0.0) -> int:
        """Take one session with messages and drain it; returns how many were settled.

        Handled messages are completed together after each batch (one round trip); a
        crash before that redelivers them, which the handlers' version checks absorb.
        """
        receiver = self.broker.accept_next_session(self.topic, self.subscription, max_wait)
        if receiver is None:
            return 0
        settled = 0
        with receiver:
            while not self._stopping.is_set():
                messages = receiver.receive(self.batch_size, 0.0)
                handled: list[ReceivedMessage] = []
                for message in messages:
                    if self._stopping.is_set():
                        break  # unsettled messages are redelivered after the lock expires
                    outcome = self._handle(receiver, message)
                    if outcome == "handled":
                        handled.append(message)
                    elif outcome == "settled":
                        settled += 1
                settled += self._complete(receiver, handled)
                if len(messages) < self.batch_size:
                    break  # drained (what arrives meanwhile, the next visit takes)
        return settled

    def _handle(
        self, receiver: SessionReceiver, message: ReceivedMessage
    ) -> Literal["handled", "settled", "lost"]:
        """Apply one message: ``handled`` (complete it), ``settled`` (it was dead-lettered
        or abandoned), or ``lost`` (its lock expired: it comes back by itself)."""
        try:
            try:
                self.consumer.process(message.body)
            except EventRejected as rejected:
                log.error("dead-lettering %s: %s", message.message_id, rejected.description)
                receiver.dead_letter(message, rejected.reason, rejected.description)
            except Exception:
                log.exception("handler failed on %s (delivery %d); abandoning",
                              message.message_id, message.delivery_count)
                receiver.abandon(message)
            else:
                return "handled"
        except LockLost:
            log.warning("lock lost on %s; it will be redelivered", message.message_id)
            return "lost"
        return "settled"

    @staticmethod
    def _complete(receiver: SessionReceiver, handled: list[ReceivedMessage]) -> int:
        if not handled:
            return 0
        try:
            receiver.complete_all(handled)
        except LockLost as lost:
            log.warning("%s; they will be redelivered", lost)
            return 0
        return len(handled)

    def start(self) -> None:
        """Start the worker threads."""
        self._stopping.clear()
        for n in range(self.workers):
            thread = threading.Thread(
                target=self._loop, name=f"{self.subscription}-consumer-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the message in hand, release sessions and stop."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once(self.idle_wait)
            except Exception:
                log.exception("consumer %s failed; retrying", self.subscription)
                self._stopping.wait(0.5)
