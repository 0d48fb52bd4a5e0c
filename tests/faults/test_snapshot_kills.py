"""A process SIGKILLed after its events committed and before the snapshot they made due
was written: nothing is lost, the stream reads back whole from its events, and the next
snapshot due is written as usual. Snapshots are written after the commit, off the group's
path (``adapters.event_store.SnapshotWriter``), so this window is open in every run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from adapters.sqlite import SQLiteStockItems
from domain.identifiers import stream_uuid
from domain.stock_item import StockItem
from tests.faults.conftest import Reliability
from tests.faults.snapshot_crash_writer import LOCATION, PER_SAVE, SAVES, SKU

ROOT = Path(__file__).resolve().parents[2]


def run_until_done_then_kill(data: Path) -> list[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.snapshot_crash_writer", "--data", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    killer = threading.Timer(60, process.kill)  # a writer that hangs fails, not the suite
    killer.start()
    lines: list[str] = []
    try:
        for raw in process.stdout:
            lines.append(raw.decode().strip())
            if lines[-1].startswith("done "):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        killer.cancel()
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    return lines


def test_a_kill_between_the_commit_and_its_snapshot_loses_nothing(
        tmp_path: Path, reliability: Reliability) -> None:
    lines = run_until_done_then_kill(tmp_path)
    last = 2 + SAVES * PER_SAVE
    assert f"done {last}" in lines
    # A snapshot was under way when the kill came (the first due: at 102, the first
    # save past 100 events).
    assert "snapshotting 102" in lines

    store = SQLiteStockItems(tmp_path / "events.db")
    snapshots = store.app.snapshots
    assert snapshots is not None
    assert list(snapshots.get(stream_uuid(SKU, LOCATION))) == []  # none was written
    item = store.get(SKU, LOCATION)
    assert item is not None
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
    lost = max(0, max(acked) - item.version)
    assert item.version == last and lost == 0
    assert item.reserved == len(item.reservations) == SAVES * PER_SAVE

    # The next snapshot due is written as usual, and a cold read from it is the same state.
    for k in range(100):
        item.reserve(f"after-{k}", 1, "web")
    store.save(item)
    assert store.flush_snapshots(timeout=30)
    assert [s.originator_version for s in snapshots.get(item.id)] == [item.version]
    store.close()
    reader = SQLiteStockItems(tmp_path / "events.db")
    cold = reader.get(SKU, LOCATION)
    assert cold is not None and cold.position() == item.position()
    assert isinstance(cold, StockItem) and cold.version == item.version
    reader.close()
    reliability.record("kill between commit and snapshot", events_lost=lost, oversold=0)
