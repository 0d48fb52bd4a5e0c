"""Process managers: drive a process that spans streams to its end, surviving crashes.

There is no transaction across streams. A process (an order; a transfer next) is an
aggregate with a stream of its own that records its intent, each step it asked of
another stream and what came of it, and its outcome. Three rules make it crash-safe,
as in ``eventsourcing``'s process applications and Equinox's reactors:

1. **What to do next is a pure function of the recorded state**
   (:meth:`ProcessHandler.next_step`). Whoever loads the stream computes the same step.
2. **Every step is idempotent by the process's id** on the stream it touches (a
   reservation keyed by the order id: holding it twice is one hold, releasing it twice
   is one release), so doing a step again after a crash changes nothing.
3. **A step's result is recorded after the step, the intent before it**; the process's
   wake-up is written in the same atomic write as its events (:class:`ProcessStreams`).
   The results of consecutive steps are recorded together, in one write
   (:data:`STEPS_PER_WRITE`): by rules 1 and 2, steps performed but not yet recorded
   are simply done again. Steps that do not depend on each other's results (an order's
   holds) are also performed together (:meth:`ProcessHandler.next_steps`), which on the
   embedded host is one group commit for all of them.

A process killed anywhere therefore leaves a stream that says where it was: the step it
was doing is done again (rule 1 and 2), and the sweep finds it (rule 3) if no request
for it comes first. :class:`ProcessDriver` is the one loop that does this; a process
type brings a :class:`ProcessHandler` (how to perform each kind of step, and how to
record its result).

Concurrency. In one process, the driving of one process id is serialised by a striped
lock, so a request and the sweep never drive one order at the same time. Across
processes (two hosts on one store) the stream's optimistic concurrency keeps the record
consistent: a driver whose record of a step lost the race reloads, and if the winner's
state no longer wants what its step did (a hold the other driver has since compensated)
it undoes it (:meth:`ProcessHandler.undo`).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from eventsourcing.domain import Aggregate

from application.commands import RetryPolicy
from application.ports import Clock, ConcurrencyConflict, ProcessStreams

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Aggregate)
S = TypeVar("S")

STALL_AFTER = timedelta(seconds=10)
"""How long a process with work under way may go without progress before the sweep
takes it over (longer than a request drives one, shorter than the sweep interval)."""

MAX_STEPS = 10_000
"""A bound on the steps of one drive: a process that never comes to rest is a bug."""

STEPS_PER_WRITE = 25
"""Steps performed before their results are written (in one write): a 5-line order is
placed in two writes to its stream (intent, outcome) instead of six. The bound keeps
the work a crash makes the next driver repeat small, and far inside ``STALL_AFTER``."""

Record = Callable[[P], None]
"""The decision that records a performed step's result on the process (given the
process, possibly reloaded after a conflict)."""


CRASH_POINTS = ("after-intent", "before-step", "after-step", "after-record")
"""The named points where the driver calls its crash hook: ``after-intent`` (the
command's intent saved, nothing driven yet), ``before-step``, ``after-step`` (performed,
not yet recorded; both around one performance, which may be several steps taken
together), ``after-record``. Declared once, so the tests that crash at each one
can check they cover every point the driver has."""


def no_crash(point: str) -> None:
    """The default crash hook: no crash. Tests pass one that raises at a named point
    (one of :data:`CRASH_POINTS`)."""


class ProcessHandler(ABC, Generic[P, S]):
    """What one kind of process brings to the driver."""

    @abstractmethod
    def next_step(self, process: P) -> S | None:
        """The next step (None: at rest). Pure: a function of the recorded state."""

    @abstractmethod
    def perform(self, process: P, step: S) -> Record[P]:
        """Do ``step`` on its stream (idempotent by the process id) and return the
        decision recording its result. A refusal the process expects (not enough stock)
        is a result; any other error propagates and leaves the step to be done again."""

    def next_steps(self, process: P, limit: int) -> list[S]:
        """The next steps that may be performed together, at most ``limit``: each one
        such that performing it does not depend on the results of those before it (the
        driver performs them with :meth:`perform_many`, then records their results in
        order). Pure, as :meth:`next_step`, whose step comes first. This default: that
        one step alone."""
        step = self.next_step(process)
        return [] if step is None or limit < 1 else [step]

    def perform_many(self, process: P, steps: list[S]) -> list[Record[P]]:
        """Do ``steps`` (from :meth:`next_steps`) and return their records, in order. This
        default: one after another with :meth:`perform`."""
        return [self.perform(process, step) for step in steps]

    @abstractmethod
    def wants(self, process: P, step: S) -> bool:
        """Whether ``process`` (reloaded after a lost race) still wants what ``step`` did."""

    @abstractmethod
    def undo(self, process: P, step: S) -> None:
        """Undo what ``step`` did when the process no longer wants it (idempotent)."""

    @abstractmethod
    def wake(self, process: P, now: datetime) -> None:
        """Decide what time alone decides (an order's expiry) before anything else."""

    @abstractmethod
    def wake_at(self, process: P, now: datetime) -> datetime | None:
        """When the sweep should look at the process (``now`` or before: work under way)."""


class _StripedLocks:
    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]

    def for_key(self, key: str) -> threading.RLock:
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]


class ProcessDriver(Generic[P, S]):
    """Runs commands on processes and drives them to rest: the one process-manager loop."""

    def __init__(
        self,
        streams: ProcessStreams[P],
        handler: ProcessHandler[P, S],
        clock: Clock,
        *,
        stall_after: timedelta = STALL_AFTER,
        retry: RetryPolicy | None = None,
        crash_point: Callable[[str], None] = no_crash,
    ) -> None:
        self.streams = streams
        self.handler = handler
        self.clock = clock
        self.stall_after = stall_after
        self.retry = retry or RetryPolicy()
        self.crash_point = crash_point
        self._locks = _StripedLocks()

    def run(self, key: str, decide: Callable[[P | None], P | None] | None = None, *,
            loaded: Callable[[P | None], None] | None = None) -> P | None:
        """Drive the process ``key`` to rest, let time decide (expiry), then ``decide``
        (a command: returns the process with its new events, maybe none; may raise a
        domain refusal, and then nothing is recorded), save, and drive it to rest again.

        ``loaded`` is told the process as first read, before anything is driven (an
        answer that depends on where the process stood, such as a placement's 201,
        needs no read of its own).

        Returns the process at rest (None: no such process and nothing decided). A step
        that fails with an unexpected error propagates; the process stays where it was,
        due for the sweep.
        """
        with self._locks.for_key(key):
            attempt = 0
            while True:
                try:
                    read = self.streams.get(key)
                    if loaded is not None and attempt == 0:
                        loaded(read)
                    process = self._drive(key, read)
                    if process is not None:
                        self.handler.wake(process, self.clock.now())
                        process = self._save_and_drive(key, process)
                    if decide is None:
                        return process
                    decided = decide(process)
                    if decided is None:
                        return process
                    return self._save_and_drive(key, decided, intent=True)
                except ConcurrencyConflict:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        raise
                time.sleep(self.retry.delay(attempt))

    def sweep(self, limit: int = 100) -> int:
        """Drive every process that is due (work under way and stalled, or a timeout
        such as an order's expiry) to rest; returns how many were driven. A process
        whose step fails stays due, and the next sweep tries again."""
        driven = 0
        for key in self.streams.due(self.clock.now(), limit):
            try:
                self.run(key)
            except Exception:
                log.exception("process %s could not be driven; the next sweep retries", key)
                continue
            driven += 1
        return driven

    # --------------------------------------------------------------- mechanics

    def _save(self, process: P) -> None:
        now = self.clock.now()
        wake_at = self.handler.wake_at(process, now)
        if wake_at is not None and wake_at <= now:
            wake_at = now + self.stall_after
        self.streams.save(process, wake_at=wake_at)

    def _save_and_drive(self, key: str, process: P, *, intent: bool = False) -> P:
        if not process.pending_events:
            return process
        self._save(process)
        if intent:
            self.crash_point("after-intent")
        driven = self._drive(key, process)
        assert driven is not None
        return driven

    def _drive(self, key: str, process: P | None) -> P | None:
        """Perform the process's steps until it is at rest, recording their results in
        one write per :data:`STEPS_PER_WRITE` steps rather than one each (each write is
        an fsync). Sound by rules 1 and 2: a crash before the write leaves the stream
        where the last write left it, and every step performed since is done again,
        changing nothing on the stream it touched."""
        for _ in range(MAX_STEPS // STEPS_PER_WRITE + 1):
            if process is None:
                return None
            done: list[tuple[S, Record[P]]] = []
            while len(done) < STEPS_PER_WRITE:
                steps = self.handler.next_steps(process, STEPS_PER_WRITE - len(done))
                if not steps:
                    break
                self.crash_point("before-step")
                records = self.handler.perform_many(process, steps)
                self.crash_point("after-step")
                for step, record in zip(steps, records, strict=True):
                    record(process)  # decides the next step on the recorded result
                    done.append((step, record))
            if not done:
                return process
            process = self._record(key, process, done)
            self.crash_point("after-record")
        raise RuntimeError(f"process {key} did not come to rest in {MAX_STEPS} steps")

    def _record(self, key: str, process: P, done: list[tuple[S, Record[P]]]) -> P | None:
        """Save the performed steps' results (applied to ``process``) in one write; on a
        lost race, record them again on the winner's state: each result the winner's
        state expects is recorded, and a step whose result it does not take is undone
        if that state does not want what the step did."""
        attempt = 0
        while True:
            if process.pending_events:
                try:
                    self._save(process)
                    return process
                except ConcurrencyConflict:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        raise
                    time.sleep(self.retry.delay(attempt))
            reloaded = self.streams.get(key)
            if reloaded is None:  # pragma: no cover - a stream does not vanish
                return None
            process = reloaded
            for step, record in done:
                before = len(process.pending_events)
                record(process)
                if len(process.pending_events) == before and not self.handler.wants(
                        process, step):
                    self.handler.undo(process, step)
            if not process.pending_events:
                return process
