"""A SQLite file shared by many threads: one connection per thread, explicit transactions.

The embedded views and the reconciliation store use :class:`SQLiteDatabase` (the event
store and the broker have their own pools, from ``eventsourcing`` and
``adapters.embedded_broker``). Every write of ours to a SQLite file, the broker's
included, goes through :func:`write_transaction` under the file's :func:`write_lock`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from application.ports import StoreUnavailable

_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def write_lock(path: str | Path) -> threading.Lock:
    """One lock per file in this process: threads queue on it, not on SQLite's busy
    handler, which sleeps in growing steps (1, 2, 5, 10 … 100 ms) while another
    connection holds the file; with several writer threads that sleeping, not the work,
    was the latency. Other processes still meet the busy handler (rare writers)."""
    key = os.path.realpath(path)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


@contextmanager
def write_transaction(
    db: sqlite3.Connection,
    lock: threading.Lock,
    unavailable: Callable[[str], Exception],
    where: str,
    *,
    synchronous: tuple[str, str] | None = None,
) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``db`` (autocommit mode), under the file's ``lock``.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so two writers never both
    read and then collide on upgrade. The transaction commits when the block ends and
    rolls back if it raises. A SQLite error (locked past the busy timeout, disk full,
    I/O) means nothing was written and is raised as ``unavailable("<where>: <error>")``.
    ``synchronous`` = (level for this transaction, level to restore after it), for a
    write that may skip the fsync.
    """
    with lock:
        try:
            try:
                if synchronous is not None:
                    db.execute(f"PRAGMA synchronous={synchronous[0]}")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:  # nothing was written
                raise unavailable(f"{where}: {error}") from error
        finally:
            if synchronous is not None:
                db.execute(f"PRAGMA synchronous={synchronous[1]}")


class SQLiteDatabase:
    """WAL mode, a 30 s busy timeout, and the ``synchronous`` level the caller chooses:
    ``FULL`` for what cannot be rebuilt, ``NORMAL`` for what can (a view)."""

    def __init__(self, path: str | Path, synchronous: Literal["FULL", "NORMAL"]) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._writing = write_lock(self.path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.connection()
        except (OSError, sqlite3.Error) as error:
            raise StoreUnavailable(f"{path} cannot be opened: {error}") from error

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use :meth:`transaction` to write)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); rolled back if the block raises.

        Inside this thread's :meth:`batch` it is a savepoint of the batch's transaction
        instead: atomic on its own (rolled back alone if the block raises), committed
        with the batch."""
        if getattr(self._local, "batch", False):
            db = self.connection()
            try:
                db.execute("SAVEPOINT change")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK TO change")
                    raise
                finally:
                    db.execute("RELEASE change")
            except sqlite3.Error as error:
                raise StoreUnavailable(f"{self.path}: {error}") from error
            return
        with write_transaction(self.connection(), self._writing, StoreUnavailable,
                               self.path) as db:
            yield db

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One write transaction that this thread's :meth:`transaction` blocks join as
        savepoints, committed when the block ends: many small writes (a consumer's batch
        of events) for the cost of one. The file's write lock is held meanwhile, so keep
        the block short. Nested, it is part of the outer batch."""
        if getattr(self._local, "batch", False):
            yield
            return
        with self.transaction():
            self._local.batch = True
            try:
                yield
            finally:
                self._local.batch = False

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
