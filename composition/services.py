"""What a composition root builds: one typed, frozen set of services for one process.

Triggers, the embedded host, the CLI and the benchmarks read these; none of them builds
or patches one. Every field is set when the root constructs the object (frozen), and a
host that does not run a part leaves it ``None``: the HTTP functions answer 503 for an
absent read model, the timers skip an absent part.

Reconciliation's stores are opened on first use (most invocations never need them), by
an :class:`OpenedOnFirstUse` holder set at construction like every other field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from adapters.openmetrics import Family
from adapters.telemetry import Telemetry, local_telemetry
from application.cadence import CadencePolicy, CountSchedule
from application.commands import StockCommands
from application.consumer import EventConsumer
from application.expiry import ExpirySweep
from application.holds import ApprovalGate, HoldPolicy
from application.orders import LocationGroups, Orders
from application.ports import (
    AvailabilityReader,
    Clock,
    DeadLetterReplayer,
    MessageBroker,
    OpsStatusReader,
    StockItemStore,
)
from application.queries import StockQueries
from application.reconciliation import Reconciler
from application.relay import ChangeFeedRelay
from application.settings import Settings
from application.transfers import Transfers
from projections.repair import ProjectionRepair

if TYPE_CHECKING:
    from composition.embedded import EmbeddedPipeline

T = TypeVar("T")


class Closeable(Protocol):
    def close(self) -> None: ...


class OpenedOnFirstUse(Generic[T]):
    """A service opened by the first :meth:`get` (thread-safe) and closed by :meth:`close`.

    ``open`` may raise (e.g. :class:`ReconciliationUnavailable`); nothing is kept then, and
    the next ``get`` tries again. ``close`` closes what was opened, if anything; a later
    ``get`` opens it again.
    """

    def __init__(self, open: Callable[[], T], close: Callable[[T], None]) -> None:
        self._open = open
        self._close = close
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._open()
            return self._value

    def close(self) -> None:
        with self._lock:
            value, self._value = self._value, None
        if value is not None:
            self._close(value)


class ReconciliationUnavailable(RuntimeError):
    """This process has no reconciliation store (neither the embedded data directory nor
    Cosmos DB)."""


@dataclass(frozen=True)
class ReconciliationServices:
    """Reconciliation's services (embedded data directory or Azure).

    ``gate`` is the approval gate every count and adjustment passes, whatever its route
    (the HTTP count and adjustment routes, count sessions, the CLI).
    """

    reconciler: Reconciler
    schedule: CountSchedule
    cadence: CadencePolicy
    closers: tuple[Closeable, ...] = ()

    @property
    def gate(self) -> ApprovalGate:
        return self.reconciler.gate

    @property
    def policy(self) -> HoldPolicy:
        """The hold policy of counts (from the settings)."""
        return self.reconciler.gate.counts

    def close(self) -> None:
        for closer in self.closers:
            closer.close()


def no_reconciliation(
    reason: str = "reconciliation needs the embedded (SQLite) data directory or Cosmos DB",
) -> OpenedOnFirstUse[ReconciliationServices]:
    """A holder whose ``get`` raises :class:`ReconciliationUnavailable` (``reason``)."""

    def refuse() -> ReconciliationServices:
        raise ReconciliationUnavailable(reason)

    return OpenedOnFirstUse(refuse, ReconciliationServices.close)


def _nothing() -> Mapping[str, T]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Services:
    """Every service a function, the embedded host, the CLI or a benchmark may call.

    Built by ``composition.embedded.embedded_services`` or
    ``composition.azure.azure_services`` (``composition.build_services`` chooses by the
    settings); tests may construct one directly. ``close()`` closes what the root opened.
    """

    settings: Settings
    clock: Clock
    store: StockItemStore
    commands: StockCommands
    queries: StockQueries
    telemetry: Telemetry = field(default_factory=local_telemetry)
    reconciliation: OpenedOnFirstUse[ReconciliationServices] = field(
        default_factory=no_reconciliation)
    """Holds, count sessions and the count schedule, opened on first use."""
    # Read models and operations (None where this process has no pipeline to read).
    availability: AvailabilityReader | None = None
    ops: OpsStatusReader | None = None
    replay: DeadLetterReplayer | None = None
    repair: ProjectionRepair | None = None
    """Projection reconciliation: the availability view against the streams."""
    broker: MessageBroker | None = None
    """The broker this process reads or publishes to (Service Bus, or the embedded one)."""
    # The Azure pipeline's parts, called by the functions of ``functions.pipeline``.
    change_feed_relay: ChangeFeedRelay | None = None
    # Azure: the relay of the processes container's change feed (order, transfer events).
    process_relay: ChangeFeedRelay | None = None
    consumers: Mapping[str, EventConsumer] = field(default_factory=_nothing)
    expiry_sweep: ExpirySweep | None = None
    # Orders and location groups: both hosts keep them (None only in the embedded
    # operator's process, which serves no HTTP).
    orders: Orders | None = None
    location_groups: LocationGroups | None = None
    transfers: Transfers | None = None
    """Transfers between locations: None where this host has no store of transfer
    streams (Azure, until Cosmos DB keeps them); the routes answer 503 then."""
    # The embedded pipeline's parts, when this process runs it (``local.pipeline``).
    pipeline: EmbeddedPipeline | None = None
    metrics_sources: Mapping[str, Callable[[], list[Family]]] = field(
        default_factory=_nothing)
    """Other processes' metrics this host serves too, by process name (the embedded
    pipeline worker's snapshot); ``GET /api/ops/metrics`` labels their points ``process``."""
    closers: tuple[Closeable, ...] = ()
    """What ``close()`` closes after reconciliation, in order (the store last)."""

    def close(self) -> None:
        """Close reconciliation (if it was opened), then everything the root opened."""
        try:
            self.reconciliation.close()
        finally:
            for closer in self.closers:
                closer.close()
