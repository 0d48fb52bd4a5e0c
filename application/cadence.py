"""Count cadence by velocity: which SKU-locations are due for a physical count, and when.

The cost of being wrong grows with how fast stock moves, so fast movers are counted
often and slow movers rarely (the article's "nightly for slow-moving lines, more
frequently for high-velocity SKUs").

Source of velocity. The availability view keeps no history, and folding every stream on
every schedule would cost a read per SKU-location. So a small *movement ledger* keeps
units moved per SKU-location per day, plus each SKU-location's last count. It is a
projection (``projections.movements``), fed from the availability subscription on both
hosts, idempotent per stream version; :class:`MovementLedger` is the read side the
schedule needs.

Units moved by an event (``projections.movements.units_moved``): a receipt's quantity, a
fulfilment's quantity, an adjustment's ``|delta|``. Reservations move nothing physically;
count corrections are drift, not movement, and would make a drifting item look busy.

Classes (ABC analysis by share of movement over the window): the SKU-locations that
together make the first ``a_share`` of all units moved are class A, the next up to
``b_share`` class B, the rest (and everything that did not move) class C. Each class has
a count interval in days (``STOCKSTREAM_COUNT_CADENCE``, default ``A=1,B=7,C=30``).
A SKU-location never counted is due now.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

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


class MovementLedger(ABC):
    """The read side of the movement ledger, which is all the schedule needs (the
    projection that writes it is ``projections.movements``)."""

    @abstractmethod
    def units_since(self, day: date) -> dict[StockKey, int]:
        """Units moved per SKU-location on ``day`` and after."""

    @abstractmethod
    def stock_items(self) -> dict[StockKey, datetime | None]:
        """Every SKU-location the ledger has seen, with the time of its last count."""

    @abstractmethod
    def forget_before(self, day: date) -> None:
        """Drop daily movements older than ``day`` (they no longer count)."""


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

    def __init__(self, history: MovementLedger, policy: CadencePolicy) -> None:
        self.history = history
        self.policy = policy

    def schedule(self, now: datetime, *, due_only: bool = True,
                 velocity_class: VelocityClass | None = None,
                 limit: int | None = None) -> list[DueCount]:
        """Every SKU-location (or only those due at ``now``), most overdue first."""
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
