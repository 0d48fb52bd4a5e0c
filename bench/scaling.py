"""How the command path and the relay scale with the number of SKU-locations and with
the size of the store.

1. Command rate over 1, 100 and 10,000 SKU-locations (in process, one thread, fsync per
   command, as ``bench.command_path``): each order reserves, and the next command on the
   stream releases it, so every stream keeps at most one open reservation and only the
   number of streams varies. Baseline: the rate on 1 SKU-location.
2. A store of 1,000,000 events (10,000 streams × 100 events, a snapshot each, as the
   store's snapshot interval would leave them), against a fresh store of the same 10,000
   streams with 2 events each. Both are reopened cold (empty aggregate cache), then one
   command per stream: each pays a cold read. Then the relay publishes those commands'
   events from its checkpoint into the embedded broker.

How the big store is made, fast but real: real ``StockItem`` aggregates decide real
events (receipt, then reserve/release pairs), and ``eventsourcing``'s own event store
maps and inserts them (``app.events.put``: the library's mapper and recorder, one
transaction per 100 streams), with a snapshot of each stream through ``app.snapshots``.
No SQL of our own touches the tables, so the rows are exactly what commands would write;
only the per-command fsync is skipped (about 45 µs an event on this machine).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from adapters.clock import SystemClock
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from application.relay import Relay
from bench.common import Row
from domain.stock_item import StockItem

STREAM_COUNTS = (1, 100, 10_000)
BIG_STREAMS = 10_000
EVENTS_PER_STREAM = 100
STOCK_ON_HAND = 1_000_000


def command_rate(path: Path, streams: int, count: int) -> float:
    """Commands per second over ``streams`` SKU-locations (reserve, then release)."""
    store = SQLiteStockItems(path)
    commands = StockCommands(store, SystemClock())
    for n in range(streams):
        commands.receive(f"SKU-{n}", "STORE-1", STOCK_ON_HAND)
    started = time.perf_counter()
    for i in range(count):
        sku = f"SKU-{(i // 2) % streams}"
        if i % 2 == 0:
            commands.reserve(sku, "STORE-1", f"order-{i}", 1, "web")
        else:
            commands.release(sku, "STORE-1", f"order-{i - 1}")
    elapsed = time.perf_counter() - started
    store.close()
    return count / elapsed


def build_big_store(path: Path, streams: int, per_stream: int) -> int:
    """``streams`` × ``per_stream`` real events through the library's event store."""
    store = SQLiteStockItems(path)
    pairs = (per_stream - 2) // 2
    batch: list[StockItem.Event] = []
    snapshots = []
    assert store.app.snapshots is not None, "snapshotting is on in the store"
    for s in range(streams):
        item = StockItem.create(f"SKU-{s}", "STORE-1")
        item.receive(STOCK_ON_HAND)
        for k in range(pairs):
            item.reserve(f"past-{k}", 1, "web", None)
            item.release(f"past-{k}")
        batch.extend(item.collect_events())  # type: ignore[arg-type]
        snapshots.append(StockItem.Snapshot.take(item))
        if len(snapshots) == 100 or s == streams - 1:
            store.app.events.put(batch)
            store.app.snapshots.put(snapshots)
            batch, snapshots = [], []
    total = store.max_position()
    store.close()
    return total


def build_small_store(path: Path, streams: int) -> int:
    store = SQLiteStockItems(path)
    events: list[StockItem.Event] = []
    for s in range(streams):
        item = StockItem.create(f"SKU-{s}", "STORE-1")
        item.receive(STOCK_ON_HAND)
        events.extend(item.collect_events())  # type: ignore[arg-type]
    store.app.events.put(events)
    total = store.max_position()
    store.close()
    return total


def cold_commands_and_relay(path: Path, streams: int, count: int) -> tuple[float, float]:
    """(commands/s, relay events/s) on a reopened store: one reservation per stream."""
    store = SQLiteStockItems(path)
    checkpoints = store.checkpoints()
    checkpoints.advance(Relay.NAME, store.max_position())
    commands = StockCommands(store, SystemClock())
    started = time.perf_counter()
    for i in range(count):
        commands.reserve(f"SKU-{(i * 7919) % streams}", "STORE-1", f"order-{i}", 1, "web")
    command_rate = count / (time.perf_counter() - started)
    broker = EmbeddedBroker(path.parent / f"{path.stem}-broker.db")
    ensure_topology(broker)
    relay = Relay(store, broker, checkpoints, SystemClock(), batch_size=256)
    started = time.perf_counter()
    published = relay.drain()
    relay_rate = published / (time.perf_counter() - started)
    broker.close()
    store.close()
    return command_rate, relay_rate


def run(quick: bool = False) -> list[Row]:
    count = 1000 if quick else 3000
    big_streams = 1000 if quick else BIG_STREAMS
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        rates = {n: command_rate(data / f"streams-{n}.db", n, count) for n in STREAM_COUNTS}
        for n in STREAM_COUNTS:
            rows.append(Row(f"scaling: commands over {n:,} SKU-locations", "commands/s",
                            rates[n], rates[STREAM_COUNTS[0]], "",
                            "baseline: 1 SKU-location; reserve/release pairs, fsync each"))

        started = time.perf_counter()
        big_events = build_big_store(data / "big.db", big_streams, EVENTS_PER_STREAM)
        build_seconds = time.perf_counter() - started
        small_events = build_small_store(data / "small.db", big_streams)
        cold = min(count * 2, big_streams)
        big_rate, big_relay = cold_commands_and_relay(data / "big.db", big_streams, cold)
        small_rate, small_relay = cold_commands_and_relay(data / "small.db", big_streams, cold)
    rows.append(Row(f"store of {big_events:,} events: cold commands", "commands/s", big_rate,
                    small_rate, "",
                    f"baseline: {small_events:,}-event store, same {big_streams:,} streams; "
                    f"{cold:,} commands, each a cold read (snapshot + tail); "
                    f"store built in {build_seconds:.0f} s"))
    rows.append(Row(f"store of {big_events:,} events: relay", "events/s", big_relay,
                    small_relay, "", f"baseline: relay on the {small_events:,}-event store"))
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(f"{row.scenario}: {row.value:,.1f} {row.unit} vs {row.baseline} ({row.note})")
