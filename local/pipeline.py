"""The embedded pipeline's running loop: relay and projection consumer, and timers.

The parts are built by the composition root (``composition.embedded``, for the
``WORKER`` or ``PIPELINE`` process): the SQLite event store's commit-ordered log as the
outbox, the embedded broker as Service Bus, SQLite views. As on Azure, the availability
subscription's consumer applies each message to the availability view, then to the
movement ledger projection (``projections.movements``) that the count schedule reads.
This module runs them. The relay is woken by every commit in this process (and polls as a
fallback), so a command reaches the projections in milliseconds.

The relay and the consumer take turns in one thread (``_pipeline_loop``): publish what
is committed, then visit the subscription until a visit finds nothing, publishing again
between visits (after a visit's views commit, before its settlement, which is one broker
transaction with the next visit's take: ``SessionConsumer.drain``). In two threads of
one interpreter they spent their time handing its lock to each other at every SQLite
call and queueing on the broker's write lock; in one, at 2,400 reservations/s the lag's
p99 fell 2.5–4.8× (docs/performance.md, *The relay and the consumer in one thread*).
Every guarantee is the parts' own (the relay's checkpoint, the consumer's settlement),
so the order of the turns changes none. The host's worker goes further and runs them in
two processes (``role`` ``relay`` and ``consumer``, ``local.worker``), each with an
interpreter lock of its own: a message then waits for no publish and no view commit of
the other. With the machine busy the lag's p99 fell to a half to a third at 1,200–1,800
reservations/s; on a quiet one the two ways were within each other's noise
(docs/performance.md, *The relay and the consumer in two processes*). ``all`` (one
process, the turns above) stays for ``python -m local.worker`` run alone and the
``PIPELINE`` process of tests and benchmarks.

Shutdown (``Pipeline.stop``) stops taking new work, lets each worker finish and settle
the message in hand, and publishes what is committed; closing the files is the
services' ``close()``. Nothing is lost or half-applied on Ctrl-C: every step is one
transaction, and the step after it (checkpoint, settlement) is repeatable.

Metrics are the Azure ones, recorded by the same code paths: the relay records each
published event's age, the projection each applied event's age, and a metrics loop (the
Azure metrics timer's counterpart) samples the outbox against the relay's checkpoint and
each subscription's counts. The worker process writes what it measured to a snapshot file
that the host's ``GET /api/ops/metrics`` serves beside its own (label ``process``).

The process sweep (``Orders.sweep``: orders a crash left part way are driven to their end,
expired ones released; ``Transfers.sweep``: the same for transfers) runs every
``STOCKSTREAM_ORDER_SWEEP_INTERVAL``, the Azure timers' counterpart (``functions.orders``,
``functions.transfers``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from adapters.embedded_broker import EmbeddedBroker
from adapters.openmetrics import write_snapshot
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from adapters.telemetry import Telemetry
from application.consumer import SessionConsumer
from application.expiry import ExpirySweep
from application.ops import PipelineStatus
from application.relay import Relay
from composition import Services
from composition.embedded import EmbeddedPipeline
from projections.availability import AvailabilityProjection
from projections.movements import MovementProjection

log = logging.getLogger(__name__)

Role = Literal["all", "relay", "consumer"]
"""What a pipeline process runs (:attr:`Pipeline.role`)."""

METRICS_INTERVAL_SECONDS = 10.0
"""How often the metrics loop samples the outbox and the subscriptions (Azure: a minute)."""
ORDER_SWEEP_BATCH = 100
"""Orders one ``Orders.sweep`` call drives; the loop repeats while a batch comes back full,"""
ORDER_SWEEP_ROUNDS = 10
"""up to this many batches a run (the rest wait for the next interval)."""


@dataclass
class Pipeline:
    """A running pipeline over the root's ``parts``; ``stop()`` shuts it down cleanly."""

    parts: EmbeddedPipeline
    telemetry: Telemetry
    relay_interval: float = 0.05
    sweep_interval: float = 1.0
    metrics_interval: float = METRICS_INTERVAL_SECONDS
    order_sweep_interval: float = 60.0
    role: Role = "all"
    """``all`` runs every part in this process; a split worker runs ``relay`` (the relay,
    its checkpoint, the metrics sampling) in one process and ``consumer`` (the
    availability consumer, the sweeps) in another, each with an interpreter of its own."""
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def relay(self) -> Relay:
        return self.parts.relay

    @property
    def broker(self) -> EmbeddedBroker:
        return self.parts.broker

    @property
    def views(self) -> SQLiteAvailabilityViews:
        return self.parts.views

    @property
    def projection(self) -> AvailabilityProjection:
        return self.parts.projection

    @property
    def movements(self) -> MovementProjection:
        return self.parts.movements

    @property
    def consumer(self) -> SessionConsumer:
        return self.parts.consumer

    @property
    def sweep(self) -> ExpirySweep:
        return self.parts.sweep

    @property
    def status(self) -> PipelineStatus:
        return self.parts.status

    def start(self) -> None:
        self._spawn({"all": "relay-and-consumer"}.get(self.role, self.role),
                    self._pipeline_loop)
        if self.role != "consumer" and self.relay.deferred_checkpoints:
            self._spawn("relay-checkpoint", self._checkpoint_loop)
        if self.role != "relay":
            self._spawn("expiry-sweep", self._sweep_loop)
            if self.parts.orders is not None or self.parts.transfers is not None:
                self._spawn("process-sweep", self._order_sweep_loop)
        self._spawn("metrics", self._metrics_loop)

    def record_metrics(self) -> None:
        """Sample the outbox (against the relay's checkpoint) and the subscriptions, and
        write the snapshot the host serves: what the Azure metrics timer does. The
        consuming process of a split worker samples nothing (the relaying one does, so
        no gauge is reported twice) and writes what it recorded itself."""
        try:
            if self.role != "consumer":
                self.status.sample(self.telemetry)
        finally:
            if self.parts.metrics_snapshot is not None:
                write_snapshot(self.parts.metrics_snapshot, self.telemetry.families())

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _pipeline_loop(self) -> None:
        """Publish, then consume, at every wake-up (a commit in this process) or every
        ``relay_interval``: the consumer also finds there what another process put in
        the broker (the relaying process's publishes, a dead-letter replay) and what a
        lapsed lock gave back. One side of a split worker does its side only."""
        wake = self.parts.wake
        while not self._stopping.is_set():
            wake.wait(self.relay_interval)
            wake.clear()
            if self.role != "consumer":
                self._publish()
            if self.role != "relay":
                self._consume()

    def _publish(self) -> None:
        try:
            self.relay.drain()
        except Exception:
            log.exception("relay failed; it retries from its checkpoint")
            self._stopping.wait(0.5)

    def _consume(self) -> None:
        """Visits until one takes nothing, publishing what was committed meanwhile
        between them when this process relays too (a visit under load is tens of
        milliseconds); each visit's settlement and the next one's take are one broker
        transaction (``SessionConsumer.drain``)."""
        try:
            if not self._stopping.is_set():
                self.consumer.drain(between=self._publish if self.role == "all"
                                    else lambda: None)
        except Exception:
            log.exception("consumer %s failed; retrying", self.consumer.subscription)
            self._stopping.wait(0.5)

    def _checkpoint_loop(self) -> None:
        """The relay's checkpoint, written apart from its publishing (``Relay.checkpoint``):
        waiting for the event store's file then delays no publish."""
        while not self._stopping.wait(self.relay.checkpoint_interval):
            try:
                self.relay.checkpoint()
            except Exception:
                log.exception("writing the relay's checkpoint failed; it is written again")

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self.sweep_interval):
            try:
                self.sweep.run_once()
            except Exception:
                log.exception("expiry sweep failed; it runs again")

    def sweep_orders(self) -> int:
        """One order sweep: the due orders driven to their end, in batches while a batch
        comes back full (at most ``ORDER_SWEEP_ROUNDS``); how many it drove (0 without
        orders)."""
        orders = self.parts.orders
        return 0 if orders is None else self._sweep_batches(orders.sweep)

    def sweep_transfers(self) -> int:
        """One transfer sweep: the transfers a crash left part way driven to their end,
        batched as :meth:`sweep_orders`; how many (0 without transfers)."""
        transfers = self.parts.transfers
        return 0 if transfers is None else self._sweep_batches(transfers.sweep)

    def _sweep_batches(self, sweep: Callable[[int], int]) -> int:
        total = 0
        for _ in range(ORDER_SWEEP_ROUNDS):
            swept = sweep(ORDER_SWEEP_BATCH)
            total += swept
            if swept < ORDER_SWEEP_BATCH or self._stopping.is_set():
                break
        return total

    def _order_sweep_loop(self) -> None:
        """The process sweep: orders, then transfers, each on its own (one failing does
        not keep the other from its turn), every ``order_sweep_interval``."""
        while not self._stopping.wait(self.order_sweep_interval):
            for kind, sweep in (("order", self.sweep_orders),
                                ("transfer", self.sweep_transfers)):
                try:
                    swept = sweep()
                    if swept:
                        log.info("%s sweep drove %d %ss to their end", kind, swept, kind)
                except Exception:
                    log.exception("%s sweep failed; it runs again", kind)

    def _metrics_loop(self) -> None:
        while True:
            try:
                self.record_metrics()
            except Exception:
                log.exception("sampling the pipeline's metrics failed; it runs again")
            if self._stopping.wait(self.metrics_interval):
                return

    def stop(self) -> None:
        """Stop taking work, finish what is in hand, publish what is committed. The files
        stay open until the services are closed (``Services.close``)."""
        self._stopping.set()
        self.parts.wake.set()
        self.consumer.stop()
        for thread in self._threads:
            thread.join(10)
        try:
            if self.role != "consumer":
                self.relay.drain()
                self.relay.checkpoint()
        except Exception:
            log.exception("final relay drain failed; the next start publishes the rest")
        try:
            self.record_metrics()
        except Exception:
            log.exception("could not record the pipeline's last metrics")


def start_pipeline(
    services: Services,
    *,
    relay_interval: float = 0.05,
    autostart: bool = True,
    role: Role = "all",
) -> Pipeline:
    """Run the embedded pipeline of ``services`` (built by the embedded root for the
    ``WORKER`` or ``PIPELINE`` process) in this process's threads.

    Metrics go to ``services.telemetry`` (and to the root's snapshot file, in the worker).
    ``role``: every part (``all``), or one side of a split worker (:attr:`Pipeline.role`).
    ``autostart=False`` starts nothing (tests drive the parts). ``relay_interval`` is how
    often the relay polls when no commit in this process woke it (commits from other
    processes are only seen by polling).
    """
    if services.pipeline is None:
        raise RuntimeError("these services run no embedded pipeline (ask the embedded root "
                           "for the WORKER or PIPELINE process)")
    pipeline = Pipeline(
        services.pipeline, services.telemetry, relay_interval=relay_interval,
        order_sweep_interval=services.settings.order_sweep_interval.total_seconds(),
        role=role)
    if autostart:
        pipeline.start()
    return pipeline
