"""Command path: reservations through the service vs a bare SQLite event+outbox transaction.

Both write to a file database with the same journal (WAL) and sync (FULL) settings, one
transaction per command, one thread. The baseline is the raw limit of the store: what any
event-sourced service on SQLite must at least do per command (insert the event, insert the
outbox row, commit with fsync). The service additionally loads the stream (cache plus a
fast-forward read), decides, serialises and inserts through ``eventsourcing``.

The second row runs the same reservations from 16 threads, as an HTTP host's workers send
them: the embedded root's command service then group-commits them (concurrent commands
decided one after another, written in one transaction with one fsync), against the same
bare transaction run one at a time: what a service that writes each command alone is
bounded by.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
from pathlib import Path

from bench.common import Row, rate, services, threaded_rate

LOCATIONS = 1000


def bare_transaction_rate(path: Path, count: int) -> float:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE events (stream TEXT, version INTEGER, type TEXT, data BLOB,"
        " PRIMARY KEY (stream, version))"
    )
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, event_id TEXT)")
    payload = json.dumps({"order_id": "order-0", "quantity": 1, "channel": "web"}).encode()

    def write(i: int) -> None:
        stream = f"SKU-{i % LOCATIONS}|STORE-1"
        db.execute("BEGIN")
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (stream, i, "StockReserved", payload))
        db.execute("INSERT INTO outbox (event_id) VALUES (?)", (f"{stream}:{i}",))
        db.execute("COMMIT")

    result = rate(write, count)
    db.close()
    return result


def service_rate(data_dir: Path, count: int) -> float:
    """Reservations through the command service the embedded root builds."""
    opened = services(data_dir)
    commands = opened.commands
    for n in range(LOCATIONS):
        commands.receive(f"SKU-{n}", "STORE-1", 1_000_000)

    def reserve(i: int) -> None:
        commands.reserve(f"SKU-{i % LOCATIONS}", "STORE-1", f"order-{i}", 1, "web")

    result = rate(reserve, count)
    opened.close()
    return result


THREADS = 16


def threaded_service_rate(data_dir: Path, count: int, threads: int = THREADS) -> float:
    """Reservations through the embedded command service from ``threads`` threads."""
    opened = services(data_dir)
    commands = opened.commands
    for n in range(LOCATIONS):
        commands.receive(f"SKU-{n}", "STORE-1", 1_000_000)

    def reserve(i: int) -> None:
        commands.reserve(f"SKU-{i % LOCATIONS}", "STORE-1", f"order-{i}", 1, "web")

    result = threaded_rate(reserve, count, threads)
    opened.close()
    return result


def run(quick: bool = False) -> list[Row]:
    """Three rounds, each the baseline then the service on fresh files; the medians.

    Alternating rounds keep a slow moment of a shared machine from landing on one side.
    """
    count = 1000 if quick else 3000
    bare_rates, service_rates, threaded_rates = [], [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            bare_rates.append(bare_transaction_rate(Path(tmp) / "bare.db", count))
            service_rates.append(service_rate(Path(tmp) / "service", count))
            threaded_rates.append(threaded_service_rate(Path(tmp) / "threaded", count))
    return [
        Row(
            scenario=f"command path: reservations over {LOCATIONS} SKU-locations",
            unit="commands/s",
            value=statistics.median(service_rates),
            baseline=statistics.median(bare_rates),
            goal=">= 0.5",
            note="baseline: bare SQLite event+outbox transaction, WAL, synchronous=FULL; "
                 "medians of 3 alternating rounds",
        ),
        Row(
            scenario=f"command path, {THREADS} threads (group commit)",
            unit="commands/s",
            value=statistics.median(threaded_rates),
            baseline=statistics.median(bare_rates),
            goal=">= 1.0",
            note="baseline: the same bare transaction one at a time (the row above's); "
                 "stretch goal 2.0",
        ),
    ]


if __name__ == "__main__":
    for row in run():
        print(row.as_dict())
