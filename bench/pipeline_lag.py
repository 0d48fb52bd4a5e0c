"""The embedded pipeline: end-to-end lag at half load, relay and projection throughput.

1. Command throughput: reservations back to back on one thread (the maximum rate).
2. Relay throughput: the same number of committed events published from the outbox into
   the embedded broker (relay only), as a ratio to (1). Goal: at least 3×.
3. Projection throughput: those messages applied to the availability view.
4. End-to-end lag: the pipeline running in its worker process (as under ``make serve``)
   under a steady load at half the maximum command rate from this process; for each
   command, the time from its commit returning to the availability view showing it
   (watched every millisecond: p50, p99). Goal: p99 under 100 ms.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from adapters.clock import SystemClock
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.commands import StockCommands
from application.consumer import EventConsumer, SessionConsumer
from application.relay import Relay
from application.settings import load
from bench.common import Row
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from functions.container import build_container
from local.worker import WorkerProcess
from projections.availability import AvailabilityProjection, stream_history

LOCATIONS = 200


def _stock(commands: StockCommands) -> None:
    for n in range(LOCATIONS):
        commands.receive(f"SKU-{n}", "STORE-1", 10_000_000)


def throughput(directory: Path, count: int) -> tuple[float, float, float]:
    """(commands/s, relay events/s, projection events/s), measured one after another."""
    store = SQLiteStockItems(directory / "events.db")
    commands = StockCommands(store, SystemClock())
    _stock(commands)
    broker = EmbeddedBroker(directory / "broker.db")
    ensure_topology(broker)
    relay = Relay(store, broker, store.checkpoints(), SystemClock(), batch_size=256)
    relay.drain()

    started = time.perf_counter()
    for i in range(count):
        commands.reserve(f"SKU-{i % LOCATIONS}", "STORE-1", f"order-{i}", 1, "web")
    command_rate = count / (time.perf_counter() - started)

    started = time.perf_counter()
    published = relay.drain()
    relay_rate = published / (time.perf_counter() - started)

    views = SQLiteAvailabilityViews(directory / "views.db")
    projection = AvailabilityProjection(views, stream_history(store))
    consumer = SessionConsumer(broker, TOPIC, AVAILABILITY_SUBSCRIPTION,
                               EventConsumer("availability", projection.handle), batch_size=64)
    started = time.perf_counter()
    applied = 0
    while settled := consumer.run_once(0.0):
        applied += settled
    projection_rate = applied / (time.perf_counter() - started)
    views.close()
    broker.close()
    store.close()
    return command_rate, relay_rate, projection_rate


def _watch_views(views_db: str, stop_file: str, out_file: str) -> None:
    """In its own process: note when each (stream, version) first shows in the view."""
    seen: dict[tuple[str, str, int], float] = {}
    last: dict[tuple[str, str], int] = {}
    db = sqlite3.connect(views_db)
    while not Path(stop_file).exists():
        rows = db.execute("SELECT sku, location, version FROM availability").fetchall()
        now = time.time()
        for sku, location, version in rows:
            before = last.get((sku, location), 0)
            for v in range(before + 1, version + 1):
                seen[(sku, location, v)] = now
            last[(sku, location)] = version
        time.sleep(0.001)
    Path(out_file).write_text(json.dumps([[*k, t] for k, t in seen.items()]))


def end_to_end_lag(directory: Path, rate: float, seconds: float) -> list[float]:
    """Lags in seconds from a command's commit returning to the availability view showing
    it, under a paced load of ``rate`` commands/s from this process. The pipeline runs in
    its worker process as under ``make serve``; a third process watches the view (every
    millisecond), so the measuring competes with neither."""
    container = build_container(load({"STOCKSTREAM_DATA": str(directory)}))
    _stock(container.commands)
    worker = WorkerProcess(directory)
    views = SQLiteAvailabilityViews(directory / "views.db")
    store = container.store
    while views.events_applied() < store.max_position():  # type: ignore[attr-defined]
        time.sleep(0.01)
    stop_file, out_file = directory / "stop-watching", directory / "seen.json"
    watcher = multiprocessing.get_context("spawn").Process(
        target=_watch_views, args=(str(directory / "views.db"), str(stop_file), str(out_file))
    )
    watcher.start()
    time.sleep(1.0)  # the watcher has started and seen the stock
    committed: dict[tuple[str, str, int], float] = {}
    interval = 1.0 / rate
    next_at = time.perf_counter()
    deadline = next_at + seconds
    i = 0
    while next_at < deadline:
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        result = container.commands.reserve(
            f"SKU-{i % LOCATIONS}", "STORE-1", f"lag-{i}", 1, "web"
        )
        event = result.events[-1]
        committed[(event.sku, event.location, event.originator_version)] = time.time()
        i += 1
        next_at += interval
    target = store.max_position()  # type: ignore[attr-defined]
    give_up = time.monotonic() + 10
    while views.events_applied() < target and time.monotonic() < give_up:
        time.sleep(0.01)
    stop_file.touch()
    watcher.join(15)
    seen = {(sku, loc, int(v)): t for sku, loc, v, t in json.loads(out_file.read_text())}
    worker.stop()
    views.close()
    container.close()
    return [seen[key] - at for key, at in committed.items() if key in seen]


def _percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1–99) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(quick: bool = False) -> list[Row]:
    count = 1000 if quick else 4000
    seconds = 2.0 if quick else 6.0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        commands, relay, projection = throughput(Path(tmp) / "throughput", count)
        rows += [
            Row("relay throughput vs command throughput", "events/s", relay, commands, ">= 3"),
            Row("projection throughput vs command throughput", "events/s", projection,
                commands),
        ]
        # Half the maximum is the goal's load; a quarter shows the curve below it.
        for share, goal in ((0.5, "< 100"), (0.25, "")):
            rate = commands * share
            lags = end_to_end_lag(Path(tmp) / f"lag-{share}", rate, seconds)
            p50, p99 = _percentile(lags, 50) * 1000, _percentile(lags, 99) * 1000
            note = f"{len(lags)} commands, {share:.0%} of the maximum command rate"
            rows += [
                Row(f"end-to-end lag p50 at {rate:.0f} commands/s", "ms", p50, None, "", note),
                Row(f"end-to-end lag p99 at {rate:.0f} commands/s", "ms", p99, None, goal, note),
            ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row.as_dict())
