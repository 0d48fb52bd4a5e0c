"""Projection reconciliation: compare view rows with the streams, and repair them.

A projection row says "at version V the position is X". The stream is the truth: its
state folded from the event store gives the version and the figures the row should
hold. Each row is compared; a row that differs is a *mismatch*:

* ``corrupt`` — same version, other figures (a bug or a hand edit; never lag);
* ``behind`` — an older version (lag, or a lost event the gap-filling did not see yet);
* ``ahead`` — a version the stream does not have (a restored stream, or a bad write);
* ``missing`` — a stream the caller knows of has no row.

Figures are on hand, reserved, available and, since stock states, the held states,
incoming and in transit (a row written before them holds zeros there, so a stream that
holds stock shows up as a mismatch and is rebuilt).

Repair rebuilds the row from the stream's full history with
:meth:`AvailabilityProjection.rebuild_stream`, which also rebuilds the reservations'
expiry index. Rebuilding is safe while the consumer runs: the row moves to the stream's
latest version, and the consumer's version check turns older events into duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from application.ports import AvailabilityViews, StockItemStore
from application.views import ViewRow
from domain.stock_item import StockItem
from projections.availability import AvailabilityProjection

MismatchKind = Literal["corrupt", "behind", "ahead", "missing"]


@dataclass(frozen=True)
class Figures:
    """What a row and its stream are compared on: every figure the row holds."""

    version: int
    on_hand: int
    reserved: int
    available: int
    damaged: int = 0
    quality_control: int = 0
    incoming_total: int = 0
    in_transit: int = 0

    @classmethod
    def of_row(cls, row: ViewRow) -> Figures:
        return cls(row.version, row.on_hand, row.reserved, row.available, row.damaged,
                   row.quality_control, row.incoming_total, row.in_transit)

    @classmethod
    def of_stream(cls, item: StockItem | None) -> Figures:
        """The figures of the stream's state (all zeros for a stream with no events)."""
        if item is None:
            return cls(0, 0, 0, 0)
        position = item.position(only=())
        return cls(item.version, item.on_hand, item.reserved, item.available,
                   position.damaged, position.quality_control, position.incoming_total,
                   position.in_transit)


@dataclass(frozen=True)
class Mismatch:
    """A row that differs from its stream: what the row says and what the stream says."""

    sku: str
    location: str
    kind: MismatchKind
    row: Figures | None
    stream: Figures


@dataclass(frozen=True)
class RepairReport:
    """What a reconciliation pass checked, found and repaired."""

    checked: int
    mismatches: list[Mismatch]
    repaired: int


class ProjectionRepair:
    """Checks the availability view against the event store, and repairs it."""

    def __init__(self, views: AvailabilityViews, store: StockItemStore,
                 projection: AvailabilityProjection) -> None:
        self.views = views
        self.store = store
        self.projection = projection

    def compare(self, row: ViewRow) -> Mismatch | None:
        """The mismatch of one row with its stream, or None if they agree."""
        item = self.store.get(row.sku, row.location)
        stream = Figures.of_stream(item)
        figures = Figures.of_row(row)
        if figures == stream:
            return None
        kind: MismatchKind = ("corrupt" if row.version == stream.version
                              else "behind" if row.version < stream.version else "ahead")
        return Mismatch(row.sku, row.location, kind, figures, stream)

    def check(
        self,
        sku: str | None = None,
        known: Iterable[tuple[str, str]] = (),
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, list[Mismatch]]:
        """Compare every row (of ``sku``), and report streams in ``known`` with no row.

        Returns (rows checked, mismatches).
        """
        checked = 0
        mismatches: list[Mismatch] = []
        seen: set[tuple[str, str]] = set()
        for row in list(self.views.rows(sku)):
            seen.add((row.sku, row.location))
            mismatch = self.compare(row)
            if mismatch is not None:
                mismatches.append(mismatch)
            checked += 1
            if progress:
                progress(1)
        for key in known:
            if key in seen or (sku is not None and key[0] != sku):
                continue
            item = self.store.get(*key)
            if item is not None:
                mismatches.append(Mismatch(key[0], key[1], "missing", None,
                                           Figures.of_stream(item)))
        return checked, mismatches

    def repair(self, mismatches: Iterable[Mismatch]) -> int:
        """Rebuild each mismatched row from its stream; returns how many were rebuilt."""
        repaired = 0
        for mismatch in mismatches:
            events = self.store.events(mismatch.sku, mismatch.location)
            if events:
                self.projection.rebuild_stream(mismatch.sku, mismatch.location, events)
                repaired += 1
        return repaired

    def run(self, sku: str | None = None, known: Iterable[tuple[str, str]] = (),
            *, fix: bool = True,
            progress: Callable[[int], None] | None = None) -> RepairReport:
        """Check (and with ``fix``, repair) in one pass."""
        checked, mismatches = self.check(sku, known, progress)
        return RepairReport(checked, mismatches, self.repair(mismatches) if fix else 0)
