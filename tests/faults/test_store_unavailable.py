"""The event store made unavailable while commands arrive over HTTP: locked by another
process, or out of disk. Each time: a 503 problem with ``Retry-After``, nothing partially
written, and commands succeed again once the store is back.

The host runs in this process (``EmbeddedHost`` on a free port, real sockets) so the
store can be given a 1 s lock timeout; the pipeline is not started, so only the command
path writes to the store. The lock is held by a separate process (``BEGIN EXCLUSIVE``);
the full disk is a real one, a small tmpfs filled to the last byte (needs root).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.clock import SystemClock
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from application.queries import StockQueries
from application.settings import load
from composition import Services
from local.host import EmbeddedHost
from tests.e2e.conftest import RunningHost

LOCK_TIMEOUT = 1
PROBLEM = "urn:stockstream:problems:store-unavailable"

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@dataclasses.dataclass
class InProcessHost:
    host: EmbeddedHost
    store: SQLiteStockItems

    def client(self) -> httpx.Client:
        return RunningHost.client(self)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return self.host.url


def serve(data: Path) -> Iterator[InProcessHost]:
    settings = dataclasses.replace(load({}), data_dir=data)
    store = SQLiteStockItems(data / "events.db", lock_timeout=LOCK_TIMEOUT)
    clock = SystemClock()
    services = Services(settings=settings, store=store, clock=clock,
                        commands=StockCommands(store, clock), queries=StockQueries(store))
    host = EmbeddedHost(settings, port=0, services=services, with_pipeline=False)
    host.start()
    try:
        yield InProcessHost(host, store)
    finally:
        host.stop()
        store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessHost]:
    yield from serve(tmp_path / "data")


def assert_store_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] == PROBLEM
    assert int(answer.headers["Retry-After"]) >= 1


def test_a_store_locked_by_another_process_answers_503_writes_nothing_and_recovers(
    served: InProcessHost, reliability: Any
) -> None:
    base = "/api/stock/SKU-1/STORE-1"
    with served.client() as c:
        assert c.post(f"{base}/receipts", json={"quantity": 10}).status_code == 200
        before = served.store.max_position()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(served.host.settings.data_dir / "events.db")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert holder.stdout is not None and holder.stdin is not None
        try:
            assert holder.stdout.readline().strip() == b"locked"
            assert_store_unavailable(c.put(f"{base}/reservations/order-1",
                                           json={"quantity": 2, "channel": "web"}))
            # A new stream needs two events (creation and receipt): neither may land.
            assert_store_unavailable(c.post("/api/stock/SKU-NEW/STORE-1/receipts",
                                            json={"quantity": 5}))
            position = c.get(base)  # WAL: readers are not blocked by the writer's lock
            assert position.status_code == 200
            assert position.json()["reserved"] == 0
            assert served.store.max_position() == before
        finally:
            holder.stdin.write(b"release\n")
            holder.stdin.close()
            assert holder.wait(30) == 0
        assert served.store.max_position() == before
        assert served.store.events("SKU-NEW", "STORE-1") == []

        answer = c.put(f"{base}/reservations/order-1", json={"quantity": 2, "channel": "web"})
        assert answer.status_code == 201, answer.text
        assert c.post("/api/stock/SKU-NEW/STORE-1/receipts",
                      json={"quantity": 5}).json()["version"] == 2
        assert served.store.max_position() == before + 3
    reliability.record("event store locked by another process", answers_503=2,
                       partial_writes=0, recovered=1)


# ------------------------------------------------------------------ disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the filler file (delete it to free)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1 << 10, 1):  # big chunks, then the last bytes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
                    break
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_answers_503_writes_nothing_partial_and_recovers(
    small_disk: Path, reliability: Any
) -> None:
    for served in serve(small_disk / "data"):
        with served.client() as c:
            for n in range(4):
                assert c.post(f"/api/stock/SKU-{n}/STORE-1/receipts",
                              json={"quantity": 100_000}).status_code == 200
            filler = fill(small_disk)
            outcomes: dict[str, int] = {}
            # The WAL may still have room for a few commits; the disk runs out within them.
            for i in range(2000):
                order = f"order-{i}"
                answer = c.put(f"/api/stock/SKU-{i % 4}/STORE-1/reservations/{order}",
                               json={"quantity": 1, "channel": "web"})
                outcomes[order] = answer.status_code
                if answer.status_code == 503:
                    assert_store_unavailable(answer)
                    break
                assert answer.status_code == 201, answer.text
            failed = [order for order, status in outcomes.items() if status == 503]
            assert failed, "the disk never filled up"
            new_stream = c.post("/api/stock/SKU-NEW/STORE-1/receipts", json={"quantity": 5})
            assert_store_unavailable(new_stream)

            filler.unlink()
            for order in failed:  # the refused command, retried as a client would
                i = int(order.split("-")[1])
                answer = c.put(f"/api/stock/SKU-{i % 4}/STORE-1/reservations/{order}",
                               json={"quantity": 1, "channel": "web"})
                assert answer.status_code == 201, answer.text
            assert c.post("/api/stock/SKU-NEW/STORE-1/receipts",
                          json={"quantity": 5}).json()["version"] == 2

        # Nothing partial: every stream is exactly its acknowledged commands, in order.
        reopened = SQLiteStockItems(small_disk / "data" / "events.db")
        try:
            assert [e.originator_version for e in reopened.events("SKU-NEW", "STORE-1")] == [1, 2]
            for n in range(4):
                events = reopened.events(f"SKU-{n}", "STORE-1")
                assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
                orders = [getattr(e, "order_id", None) for e in events[2:]]
                expected = [o for o in outcomes if int(o.split("-")[1]) % 4 == n]
                assert orders == expected  # each acknowledged once, the refused one once
        finally:
            reopened.close()
        reliability.record("event store's disk full",
                           answers_503=len(failed) + 1, partial_writes=0, recovered=1)
