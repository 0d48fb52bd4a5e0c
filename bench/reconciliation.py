"""Reconciliation: a count file of N SKU-locations, end to end, vs receipts on the same store.

Setup: N SKU-locations each get a receipt (timed: that is the baseline, an ordinary
command on the same SQLite store, one fsynced transaction each). Then a CSV count file
with one row per SKU-location (a third of them drifting) is read, checked and applied
through :class:`Reconciler` — parse, the approval gate (its look-up of the row's hold), and
one ``StockCounted`` command each (the command service folds the stream; the reconciler
reads it only for a drifting row's context). The figure is rows per second for the whole
session; the ratio says what a count row costs beside a plain command.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from application.count_files import read_count_file
from application.holds import HoldPolicy
from application.settings import load
from bench.common import Row, rate
from functions.container import build_container, reconciliation_services


def run(quick: bool = False) -> list[Row]:
    count = 5_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        container = build_container(load({"STOCKSTREAM_DATA": str(data)}))
        services = reconciliation_services(container)

        def receive(i: int) -> None:
            container.commands.receive(f"SKU-{i}", "STORE-1", 100)

        receipts = rate(receive, count)
        counted_at = datetime.now(UTC)
        while datetime.now(UTC) <= counted_at:
            pass
        path = data / "counts.csv"
        with path.open("w") as handle:
            handle.write("sku,location,counted,counted_at,count_id\n")
            for i in range(count):
                counted = 100 - (i % 7) if i % 3 == 0 else 100
                handle.write(f"SKU-{i},STORE-1,{counted},{counted_at.isoformat()},BENCH\n")
        started = time.perf_counter()
        session = services.reconciler.reconcile(read_count_file(path), policy=HoldPolicy())
        elapsed = time.perf_counter() - started
        summary = session.summary()
        assert summary.applied == count, summary
        container.close()  # closes the reconciliation services too
    return [
        Row(
            scenario=f"reconciliation: count file of {count:,} SKU-locations",
            unit="rows/s",
            value=count / elapsed,
            baseline=receipts,
            goal=">= 0.3",
            note=f"baseline: receipts on the same store; {summary.applied} applied, "
                 f"drift {summary.abs_drift_units} units absolute",
        )
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
