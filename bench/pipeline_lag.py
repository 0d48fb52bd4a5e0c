"""The embedded pipeline: end-to-end lag at half load, relay and projection throughput.

1. Command throughput, two ways: reservations back to back on one thread, and from 16
   threads through the group commit (as ``bench.command_path``'s 16-thread row). The
   group-commit rate is the maximum command rate since group commit; the single-thread
   one was the maximum before it, and its half is still measured so both are seen. The
   group-commit rate is the median of three runs (one run moved by a factor of two).
2. Relay throughput: the single-thread run's committed events published from the outbox
   into the embedded broker (relay only), as a ratio to the single-thread command rate.
   Goal: at least 3×.
3. Projection throughput: those messages applied to the availability view.
4. End-to-end lag: the pipeline running in its worker processes (as under ``make serve``)
   under a steady load from this process, paced over 16 threads (so the group commit
   carries it as it would a host's workers); for each command, the time from its commit
   returning to the availability view showing it (a third process looks every
   millisecond and reads the view when it changed: p50, p99). ``bench.pipeline_stages``
   breaks that lag down stage by stage.
   At half the group-commit rate (goal: p99 under 100 ms, stretch 25 ms), at a quarter
   of it, and at half the single-thread rate (the load the goal meant before).
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.commands import StockCommands
from bench.common import Row, files, services, threaded_rate
from composition.embedded import EmbeddedProcess
from local.worker import SplitWorker

LOCATIONS = 200
THREADS = 16
"""Threads of the group-commit rate and of the paced load (``bench.command_path``'s)."""
MAXIMUM_RUNS = 3
"""Runs of the group-commit rate whose median is the maximum command rate."""


def _stock(commands: StockCommands) -> None:
    for n in range(LOCATIONS):
        commands.receive(f"SKU-{n}", "STORE-1", 10_000_000)


def group_commit_rate(directory: Path, count: int) -> float:
    """Reservations per second from ``THREADS`` threads through the group commit: the
    maximum command rate of the embedded command path."""
    opened = services(directory)
    _stock(opened.commands)

    def reserve(i: int) -> None:
        opened.commands.reserve(f"SKU-{i % LOCATIONS}", "STORE-1", f"order-{i}", 1, "web")

    result = threaded_rate(reserve, count, THREADS)
    opened.close()
    return result


def throughput(directory: Path, count: int) -> tuple[float, float, float]:
    """(commands/s on one thread, relay events/s, projection events/s), measured one after
    another, with the pipeline's own parts (the embedded root's, as the worker runs them)
    driven by hand."""
    opened = services(directory, EmbeddedProcess.PIPELINE)
    pipeline = opened.pipeline
    assert pipeline is not None
    _stock(opened.commands)
    pipeline.relay.drain()

    started = time.perf_counter()
    for i in range(count):
        opened.commands.reserve(f"SKU-{i % LOCATIONS}", "STORE-1", f"order-{i}", 1, "web")
    command_rate = count / (time.perf_counter() - started)

    started = time.perf_counter()
    published = pipeline.relay.drain()
    relay_rate = published / (time.perf_counter() - started)

    started = time.perf_counter()
    applied = 0
    while settled := pipeline.consumer.run_once(0.0):
        applied += settled
    projection_rate = applied / (time.perf_counter() - started)
    opened.close()
    return command_rate, relay_rate, projection_rate


def _watch_views(views_db: str, stop_file: str, out_file: str) -> None:
    """In its own process: note when each (stream, version) first shows in the view.

    Every millisecond it asks SQLite whether another connection committed to the file
    (``PRAGMA data_version``, a few microseconds) and reads the view only then: reading
    all of it every millisecond cost a fifth of a core, taken from the pipeline it
    measures on two shared cores. What a reader sees is unchanged: a commit is noticed
    at the next millisecond's look, as before."""
    seen: dict[tuple[str, str, int], float] = {}
    last: dict[tuple[str, str], int] = {}
    db = sqlite3.connect(views_db)
    stop = Path(stop_file)
    read_at_version = None
    looks = 0
    while True:
        looks += 1
        if looks % 100 == 0 and stop.exists():  # a stat every 100 ms, not every look
            break
        (version,) = db.execute("PRAGMA data_version").fetchone()
        if version != read_at_version:
            read_at_version = version
            rows = db.execute("SELECT sku, location, version FROM availability").fetchall()
            now = time.time()
            for sku, location, stream_version in rows:
                before = last.get((sku, location), 0)
                for v in range(before + 1, stream_version + 1):
                    seen[(sku, location, v)] = now
                last[(sku, location)] = stream_version
        time.sleep(0.001)
    Path(out_file).write_text(json.dumps([[*k, t] for k, t in seen.items()]))


def await_view(views: SQLiteAvailabilityViews, target: int, seconds: float) -> None:
    """Until the view has applied ``target`` events, or ``seconds`` have passed."""
    give_up = time.monotonic() + seconds
    while views.events_applied() < target and time.monotonic() < give_up:
        time.sleep(0.01)


def start_watcher(directory: Path) -> Callable[[], dict[tuple[str, str, int], float]]:
    """Start ``_watch_views`` in its own process on the view under ``directory`` (after a
    second, so it has seen the stock); the call returned stops it and answers when it saw
    each (sku, location, version)."""
    stop_file, out_file = directory / "stop-watching", directory / "seen.json"
    watcher = multiprocessing.get_context("spawn").Process(
        target=_watch_views, args=(str(files(directory).views), str(stop_file), str(out_file))
    )
    watcher.start()
    time.sleep(1.0)

    def stop() -> dict[tuple[str, str, int], float]:
        stop_file.touch()
        watcher.join(15)
        return {(sku, loc, int(v)): t for sku, loc, v, t in json.loads(out_file.read_text())}

    return stop


def paced_reservations(commands: StockCommands, rate: float, seconds: float
                       ) -> dict[tuple[str, str, int], float]:
    """Reservations at ``rate`` a second for ``seconds``, paced over ``THREADS`` threads;
    for each, when its command returned (``time.time()``), by (sku, location, version).

    Each lane paces rate/THREADS, the lanes staggered, so the load is even over time and
    commands meet in the group commit as a host's workers' do."""
    committed: dict[tuple[str, str, int], float] = {}
    interval = THREADS / rate
    start = time.perf_counter() + 0.01
    deadline = start + seconds

    def lane(n: int) -> None:
        next_at = start + n * interval / THREADS
        i = n
        while next_at < deadline:
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            result = commands.reserve(f"SKU-{i % LOCATIONS}", "STORE-1", f"lag-{i}", 1, "web")
            event = result.events[-1]
            committed[(event.sku, event.location, event.originator_version)] = time.time()
            i += THREADS
            next_at += interval

    lanes = [threading.Thread(target=lane, args=(n,)) for n in range(THREADS)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    return committed


def end_to_end_lag(directory: Path, rate: float, seconds: float) -> list[float]:
    """Lags in seconds from a command's commit returning to the availability view showing
    it, under a paced load of ``rate`` commands/s from this process. The pipeline runs in
    its worker processes as under ``make serve``; another process watches the view (every
    millisecond), so the measuring competes with neither."""
    container = services(directory, EmbeddedProcess.HOST)  # as the HTTP process has them
    _stock(container.commands)
    worker = SplitWorker(directory)
    views = container.availability
    assert isinstance(views, SQLiteAvailabilityViews)
    store = container.store
    while views.events_applied() < store.max_position():  # type: ignore[attr-defined]
        time.sleep(0.01)
    stop_watching = start_watcher(directory)
    committed = paced_reservations(container.commands, rate, seconds)
    await_view(views, store.max_position(), 10)  # type: ignore[attr-defined]
    seen = stop_watching()
    worker.stop()
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
        maximum = statistics.median(
            group_commit_rate(Path(tmp) / f"group-commit-{n}", count)
            for n in range(1 if quick else MAXIMUM_RUNS))
        rows += [
            Row("relay throughput vs command throughput", "events/s", relay, commands, ">= 3"),
            Row("projection throughput vs command throughput", "events/s", projection,
                commands),
            Row(f"command rate, {THREADS} threads (group commit) vs one thread",
                "commands/s", maximum, commands, "",
                "the maximum command rate the lag rows' loads are shares of"),
        ]
        # Half the group-commit maximum is the goal's load; a quarter shows the curve
        # below it; half the single-thread rate is the load the goal meant before.
        loads = ((maximum * 0.5, "< 100", "50% of the group-commit rate"),
                 (maximum * 0.25, "", "25% of the group-commit rate"),
                 (commands * 0.5, "", "50% of the single-thread rate (the old load)"))
        for n, (rate, goal, share) in enumerate(loads):
            lags = end_to_end_lag(Path(tmp) / f"lag-{n}", rate, seconds)
            p50, p99 = _percentile(lags, 50) * 1000, _percentile(lags, 99) * 1000
            note = f"{len(lags)} commands in {seconds:.0f} s, {share}" + (
                "; stretch goal p99 < 25 ms" if goal else "")
            rows += [
                Row(f"end-to-end lag p50 at {rate:.0f} commands/s", "ms", p50, None, "", note),
                Row(f"end-to-end lag p99 at {rate:.0f} commands/s", "ms", p99, None, goal, note),
            ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row.as_dict())
