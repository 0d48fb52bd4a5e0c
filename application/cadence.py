"""Count cadence by velocity: which SKU-locations are due for a physical count, and when.

The cost of being wrong grows with how fast stock moves, so fast movers are counted
often and slow movers rarely (the article's "nightly for slow-moving lines, more
frequently for high-velocity SKUs").

Source of velocity. The availability view keeps no history, and folding every stream on
every schedule would cost a read per SKU-location. So a small *movement ledger* keeps
units moved per SKU-location per day, plus each SKU-location's last count. It is fed
from the event store's commit-ordered log (the same outbox the relay reads) after its
own checkpoint, so catching up is incremental, idempotent (the checkpoint moves in the
same transaction as the figures) and never misses a late commit. Where there is no
commit-ordered log (Cosmos DB), an event-fed ledger applies each published event on its
own (:class:`LedgerEntry`), at most once per stream version; both kinds share the read
side, :class:`MovementLedger`.

Units moved by an event: a receipt's quantity, a fulfilment's quantity, an adjustment's
``|delta|``. Reservations move nothing physically; count corrections are drift, not
movement, and would make a drifting item look busy.

Classes (ABC analysis by share of movement over the window): the SKU-locations that
together make the first ``a_share`` of all units moved are class A, the next up to
``b_share`` class B, the rest (and everything that did not move) class C. Each class has
a count interval in days (``STOCKSTREAM_COUNT_CADENCE``, default ``A=1,B=7,C=30``).
A SKU-location never counted is due now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from application.ports import MovementHistory, MovementLedger, OutboxReader
from contracts.cloudevents import from_cloudevent_type
from domain.stock_item import StockItem

VelocityClass = Literal["A", "B", "C"]
CLASSES: tuple[VelocityClass, ...] = ("A", "B", "C")
DEFAULT_CADENCE = "A=1,B=7,C=30"

StockKey = tuple[str, str]


class CadenceError(ValueError):
    """A cadence configuration that cannot be used; the message says why."""


@dataclass(frozen=True)
class CadencePolicy:
    """How often each velocity class is counted, and how velocity is measured."""

    every_days: dict[str, int] = field(default_factory=lambda: {"A": 1, "B": 7, "C": 30})
    window_days: int = 28
    a_share: float = 0.80
    b_share: float = 0.95

    @classmethod
    def parse(cls, text: str, window_days: int = 28) -> CadencePolicy:
        """``"A=1,B=7,C=30"``: days between counts of each class (every class, ≥ 1)."""
        days: dict[str, int] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, _, value = part.partition("=")
            name = name.strip().upper()
            if name not in CLASSES or not value.strip().isdigit() or int(value) < 1:
                raise CadenceError(
                    f"cadence must look like {DEFAULT_CADENCE} (whole days >= 1); got {text!r}")
            days[name] = int(value)
        if set(days) != set(CLASSES):
            raise CadenceError(f"cadence must give A, B and C; got {text!r}")
        if window_days < 1:
            raise CadenceError("the velocity window must be at least one day")
        return cls(days, window_days)


@dataclass(frozen=True)
class Movement:
    """Units moved at one SKU-location on one (UTC) day."""

    sku: str
    location: str
    day: date
    units: int


@dataclass(frozen=True)
class LedgerBatch:
    """What one stretch of the log adds to the ledger, and the position it reaches."""

    movements: list[Movement]
    counts: dict[StockKey, datetime]
    stock_items: set[StockKey]
    position: int


_UNITS_FIELD: dict[type[StockItem.Event], str] = {
    StockItem.Received: "quantity",
    StockItem.Fulfilled: "quantity",
    StockItem.Adjusted: "delta",
}
"""The field whose absolute value is the units an event moved (see the module docstring)."""


def units_moved(event: StockItem.Event) -> int:
    """Physical units an event moved (see the module docstring)."""
    name = _UNITS_FIELD.get(type(event))
    return 0 if name is None else abs(int(getattr(event, name)))


@dataclass(frozen=True)
class LedgerEntry:
    """One event's part in an event-fed ledger: its stream version, the (UTC) day and
    units it moved, and the count time of a ``StockCounted``."""

    sku: str
    location: str
    version: int
    day: date
    units: int
    counted_at: datetime | None = None

    @classmethod
    def of_event(cls, event: StockItem.Event) -> LedgerEntry:
        counted_at = event.counted_at if isinstance(event, StockItem.Counted) else None
        return cls(event.sku, event.location, event.originator_version,
                   event.timestamp.astimezone(UTC).date(), units_moved(event), counted_at)

    @classmethod
    def of_cloudevent(cls, document: Mapping[str, Any]) -> LedgerEntry:
        """The entry of a published event (a validated CloudEvent document); an event type
        this build does not know moves nothing."""
        data = document["data"]
        wire = from_cloudevent_type(str(document["type"]))
        domain_class = None if wire is None else wire.domain_class
        name = None if domain_class is None else _UNITS_FIELD.get(domain_class)
        counted_at = (_time(str(data["counted_at"])) if domain_class is StockItem.Counted
                      else None)
        return cls(str(data["sku"]), str(data["location"]), int(document["sequence"]),
                   _time(str(document["time"])).astimezone(UTC).date(),
                   0 if name is None else abs(int(data[name])), counted_at)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class MovementTracker:
    """Keeps a :class:`MovementHistory` caught up with the event store's log."""

    def __init__(self, log: OutboxReader, history: MovementHistory, batch: int = 5000) -> None:
        self.log = log
        self.history = history
        self.batch = batch

    def catch_up(self) -> int:
        """Read every event committed since the checkpoint; returns how many."""
        read = 0
        while True:
            position = self.history.checkpoint()
            records = self.log.read_after(position, self.batch)
            if not records:
                return read
            moved: dict[tuple[str, str, date], int] = defaultdict(int)
            counts: dict[StockKey, datetime] = {}
            items: set[StockKey] = set()
            for record in records:
                event = record.event
                key = (event.sku, event.location)
                items.add(key)
                units = units_moved(event)
                if units:
                    moved[(*key, event.timestamp.date())] += units
                if isinstance(event, StockItem.Counted):
                    latest = counts.get(key)
                    if latest is None or event.counted_at > latest:
                        counts[key] = event.counted_at
            self.history.add(LedgerBatch(
                [Movement(s, loc, d, u) for (s, loc, d), u in moved.items()], counts, items,
                records[-1].position))
            read += len(records)


@dataclass(frozen=True)
class DueCount:
    """One SKU-location's place in the count schedule."""

    sku: str
    location: str
    velocity_class: VelocityClass
    units_per_day: float
    last_counted_at: datetime | None
    due_at: datetime
    overdue: bool


def classify(units: dict[StockKey, int], policy: CadencePolicy) -> dict[StockKey, VelocityClass]:
    """ABC classes by cumulative share of units moved (ties broken by name, stable)."""
    total = sum(units.values())
    classes: dict[StockKey, VelocityClass] = {}
    running = 0
    for key, moved in sorted(units.items(), key=lambda kv: (-kv[1], kv[0])):
        if moved <= 0 or total == 0:
            classes[key] = "C"
            continue
        share_before = running / total
        running += moved
        classes[key] = ("A" if share_before < policy.a_share
                        else "B" if share_before < policy.b_share else "C")
    return classes


class CountSchedule:
    """The schedule of due counts, from the movement ledger and the cadence policy."""

    def __init__(self, history: MovementLedger, policy: CadencePolicy,
                 tracker: MovementTracker | None = None) -> None:
        self.history = history
        self.policy = policy
        self.tracker = tracker

    def schedule(self, now: datetime, *, due_only: bool = True,
                 velocity_class: VelocityClass | None = None,
                 limit: int | None = None) -> list[DueCount]:
        """Every SKU-location (or only those due at ``now``), most overdue first."""
        if self.tracker is not None:
            self.tracker.catch_up()
        since = (now - timedelta(days=self.policy.window_days)).date()
        moved = self.history.units_since(since)
        items = self.history.stock_items()
        classes = classify({key: moved.get(key, 0) for key in items}, self.policy)
        rows: list[DueCount] = []
        for key, last in items.items():
            cls = classes.get(key, "C")
            if velocity_class is not None and cls != velocity_class:
                continue
            due_at = now if last is None else last + timedelta(days=self.policy.every_days[cls])
            if due_only and due_at > now:
                continue
            rows.append(DueCount(key[0], key[1], cls,
                                 moved.get(key, 0) / self.policy.window_days, last,
                                 due_at, due_at <= now))
        rows.sort(key=lambda r: (r.due_at, CLASSES.index(r.velocity_class), r.sku, r.location))
        return rows if limit is None else rows[:limit]


def class_counts(rows: Iterable[DueCount]) -> dict[str, int]:
    """How many rows of each class (every class present, possibly 0)."""
    totals: dict[str, int] = dict.fromkeys(CLASSES, 0)
    for row in rows:
        totals[row.velocity_class] += 1
    return totals
