"""The process ``test_snapshot_kills`` kills: it writes a hot stream whose snapshot, once
due, never finishes being written, and says so.

Lines: ``snapshotting <version>`` when the snapshot writer has the state of that version
in hand (its events committed), ``ack <version>`` after each save returned, ``done
<version>`` once the last save returned and a snapshot is in hand. Then it waits to be
killed.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from adapters.sqlite import SQLiteStockItems
from domain.stock_item import StockItem

SKU, LOCATION = "HOT", "STORE-1"
SAVES, PER_SAVE = 25, 10


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    store = SQLiteStockItems(args.data / "events.db")
    assert store.snapshots is not None

    in_hand = threading.Event()

    def stuck(item: StockItem) -> None:
        say(f"snapshotting {item.version}")
        in_hand.set()
        threading.Event().wait()  # killed in the middle of it

    store.snapshots._write = stuck
    item = StockItem.create(SKU, LOCATION)
    item.receive(1_000_000)
    store.save(item)
    for n in range(SAVES):
        for k in range(PER_SAVE):
            item.reserve(f"order-{n}-{k}", 1, "web")
        store.save(item)
        say(f"ack {item.version}")
    in_hand.wait(30)
    say(f"done {item.version}")
    threading.Event().wait()


if __name__ == "__main__":
    main()
