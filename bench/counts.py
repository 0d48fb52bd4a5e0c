"""Count rows on long streams vs short ones: what a count costs as a stream grows.

Setup (not timed): N SKU-locations whose streams hold 3,000 events each, and N whose
streams hold 10. Each stream is receipts, a previous count (a fast mover is counted
often), more receipts, then the moment the new count is taken, then 3 receipts recorded
after it and before the count file arrives (so the count has movements to keep on top).
Long streams are written in a few large saves; that is setup.

Timed: a count file with one row per stream (a third of them drifting, by a few units),
read and reconciled through :class:`Reconciler` with the settings' hold policy — the same
gate every count passes. Three rounds, each a short streams' file then a long streams'
file (each round its own streams); the medians. The figure is rows per second on
3,000-event streams; the baseline, rows per second on 10-event streams. A count should
need only the events around its ``counted_at``, so the goal is a ratio of at least 0.5.
A short row's time is mostly its fsynced commit, which a busy shared disk stretches;
alternating rounds keep such a moment from landing on one side only.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from application.count_files import read_count_file
from application.settings import load
from bench.common import Row
from domain.stock_item import StockItem
from functions.container import Container, build_container, reconciliation_services

LONG, SHORT = 3_000, 10
AFTER = 3
"""Receipts recorded after the count was taken (and before the file arrives)."""


def _instant() -> datetime:
    """A moment strictly between the events before it and those after it."""
    moment = datetime.now(UTC)
    while datetime.now(UTC) <= moment:
        pass
    return moment


def _stream(container: Container, sku: str, events: int) -> tuple[datetime, int]:
    """Write ``events`` events on ``sku``; returns when the new count is taken and the on
    hand then."""
    before_previous = events - AFTER - 1 - (events // 30)  # the previous count ~3 % back
    item = StockItem.create(sku, "STORE-1")
    for _ in range(before_previous - 1):
        item.receive(10)
    container.store.save(item)
    container.commands.record_count(sku, "STORE-1", "PREVIOUS", (before_previous - 1) * 10,
                                    _instant())
    latest = container.store.get(sku, "STORE-1")
    assert latest is not None
    while latest.version < events - AFTER:
        latest.receive(10)
    container.store.save(latest)
    taken = _instant()
    on_hand = latest.on_hand
    for _ in range(AFTER):
        container.commands.receive(sku, "STORE-1", 10)
    return taken, on_hand


def _count_file(container: Container, directory: Path, prefix: str, streams: int,
                events: int) -> Path:
    """Write ``streams`` streams of ``events`` events and their count file."""
    rows = []
    for i in range(streams):
        sku = f"{prefix}-{i}"
        taken, on_hand = _stream(container, sku, events)
        counted = on_hand - (1 + i % 5) if i % 3 == 0 else on_hand
        rows.append(f"{sku},STORE-1,{counted},{taken.isoformat()},NEW\n")
    assert container.store.events(f"{prefix}-0", "STORE-1")[-1].originator_version == events
    path = directory / f"{prefix}.csv"
    path.write_text("sku,location,counted,counted_at,count_id\n" + "".join(rows))
    return path


def _rows_per_second(container: Container, path: Path, rows: int) -> float:
    reconciler = reconciliation_services(container).reconciler
    started = time.perf_counter()
    session = reconciler.reconcile(read_count_file(path))
    elapsed = time.perf_counter() - started
    summary = session.summary()
    assert summary.applied == rows, summary
    return rows / elapsed


def run(quick: bool = False) -> list[Row]:
    streams, rounds = (10, 3) if quick else (40, 3)
    short_rates, long_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        container = build_container(load({"STOCKSTREAM_DATA": str(data)}))
        try:
            files = [(_count_file(container, data, f"SHORT{r}", streams, SHORT),
                      _count_file(container, data, f"LONG{r}", streams, LONG))
                     for r in range(rounds)]
            for short, long in files:
                short_rates.append(_rows_per_second(container, short, streams))
                long_rates.append(_rows_per_second(container, long, streams))
        finally:
            container.close()  # closes the reconciliation services too
    return [
        Row(
            scenario=f"count rows: {LONG:,}-event streams vs {SHORT}-event streams",
            unit="rows/s",
            value=statistics.median(long_rates),
            baseline=statistics.median(short_rates),
            goal=">= 0.5",
            note=f"{streams} rows per file, one per SKU-location, {AFTER} receipts after each "
                 f"count; through the approval gate, default hold policy; medians of "
                 f"{rounds} alternating rounds",
        )
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
