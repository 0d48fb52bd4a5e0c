"""Consuming a session subscription: messages settled after their effect.

``EventConsumer.process`` is what a consumer does with one message body, whatever
delivered it (the embedded loop below, or the Service Bus trigger in Azure): parse,
validate against the schema registry, hand to the handler. ``SessionConsumer`` is the
embedded loop: it takes sessions from a ``MessageBroker`` and settles each message after
the handler returns — complete on success, dead-letter with the reason on a message
that can never succeed, abandon (redeliver, then dead-letter after the maximum) on any
other failure. Handlers are idempotent per stream version, so a redelivery after a crash
between the effect and the settlement changes nothing.

A visit takes many sessions at once (``MessageBroker.accept_next_sessions``), applies
all their messages inside the consumer's ``batch`` scope (the views commit them in one
write), then completes the handled ones and releases every session in one settlement
(``settle_sessions``). Sparse sessions get about one message per visit under a steady
load, and taking, settling and releasing each alone cost three broker writes plus the
view's own per message (docs/performance.md, *End-to-end lag*). Visits that follow each
other (``SessionConsumer.drain``) settle one and take the next in one broker call
(``settle_and_accept_next_sessions``). Order is kept: a session is held by one receiver,
and its messages are applied in session order.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
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
    ``batch`` opens a scope in which the handler's writes commit together when it ends
    (``AvailabilityViews.batch``); a consumer of many messages at once processes them
    inside one. Default: none, each message's writes are its own.
    """

    def __init__(self, name: str, handler: EventHandler,
                 observers: tuple[Observer, ...] = (),
                 batch: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        self.name = name
        self.handler = handler
        self.observers = observers
        self.batch = batch

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
    """Worker threads that drain a session subscription of a ``MessageBroker``.

    A visit takes up to ``sessions`` sessions with up to ``batch_size`` messages each.
    """

    def __init__(
        self,
        broker: MessageBroker,
        topic: str,
        subscription: str,
        consumer: EventConsumer,
        *,
        workers: int = 2,
        batch_size: int = 32,
        sessions: int = 1,
        idle_wait: float = 0.2,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.subscription = subscription
        self.consumer = consumer
        self.workers = workers
        self.batch_size = batch_size
        self.sessions = sessions
        self.idle_wait = idle_wait
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_once(self, max_wait: float = 0.0) -> int:
        """Take sessions with messages, apply them, settle; returns how many were settled.

        The handled messages are applied in one ``batch`` scope, then completed and their
        sessions released in one settlement, only once the batch committed: a crash
        before that redelivers them, which the handlers' version checks absorb. A
        session with more than ``batch_size`` messages waiting is taken again next visit.
        """
        taken = self.broker.accept_next_sessions(
            self.topic, self.subscription, self.sessions, self.batch_size, max_wait)
        if not taken:
            return 0
        handled, settled = self._apply(taken)
        return settled + self.broker.settle_sessions(handled)

    def drain(self, between: Callable[[], object] = lambda: None) -> int:
        """Visits until one takes nothing; returns how many messages were settled.

        As :meth:`run_once` visit after visit, except that a visit's settlement and the
        next visit's take are one broker call (``settle_and_accept_next_sessions``: one
        transaction on the embedded broker instead of two). ``between`` runs after each
        visit's batch committed and before its settlement (the pipeline publishes there,
        so the next take finds what was committed meanwhile); delaying a settlement
        changes no guarantee, the messages stay locked to this consumer until then.
        """
        taken = self.broker.accept_next_sessions(
            self.topic, self.subscription, self.sessions, self.batch_size)
        total = 0
        while taken:
            handled, settled = self._apply(taken)
            try:
                between()
            except BaseException:
                self.broker.settle_sessions(handled)  # applied: settle it, then fail
                raise
            if self._stopping.is_set():
                return total + settled + self.broker.settle_sessions(handled)
            completed, taken = self.broker.settle_and_accept_next_sessions(
                handled, self.topic, self.subscription, self.sessions, self.batch_size)
            total += settled + completed
        return total

    def _apply(
        self, taken: list[tuple[SessionReceiver, list[ReceivedMessage]]]
    ) -> tuple[list[tuple[SessionReceiver, list[ReceivedMessage]]], int]:
        """Apply ``taken`` in one ``batch`` scope: what to complete per session, and how
        many messages were settled already (dead-lettered or abandoned). If the batch
        fails, every session is released with nothing completed and the error raised."""
        settled = 0
        handled: list[tuple[SessionReceiver, list[ReceivedMessage]]] = []
        try:
            with self.consumer.batch():
                for receiver, messages in taken:
                    done: list[ReceivedMessage] = []
                    for message in messages:
                        if self._stopping.is_set():
                            break  # given back unsettled when the session is released
                        outcome = self._handle(receiver, message)
                        if outcome == "handled":
                            done.append(message)
                        elif outcome == "settled":
                            settled += 1
                    handled.append((receiver, done))
        except BaseException:
            # Nothing of the batch was recorded: release the sessions, settling nothing
            # handled, so every message comes back.
            self.broker.settle_sessions([(receiver, []) for receiver, _ in taken])
            raise
        return handled, settled

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
