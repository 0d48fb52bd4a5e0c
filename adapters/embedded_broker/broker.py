"""The embedded broker: a Service Bus topic with session subscriptions, in one SQLite file.

It is the local stand-in for Azure Service Bus and keeps the semantics the code relies on
(``docs/embedded-broker.md`` lists them and where it differs):

- publish fans a message out to every subscription whose correlation-filter rules match
  its application properties; a message id seen on the topic within the duplicate
  detection window is accepted and silently dropped; a scheduled message is invisible
  until its time; all messages of one ``publish`` call commit in one transaction;
- a session is held by one receiver at a time; its messages come in sequence order under
  a peek-lock; abandon makes the same message the next one again; a message delivered
  ``max_delivery_count`` times and then abandoned (or whose lock expired) is
  dead-lettered with reason ``MaxDeliveryCountExceeded``;
- each subscription has a dead-letter queue that is not sessionful.

Concurrency: every operation is one SQLite transaction, writes start with
``BEGIN IMMEDIATE``, the file is in WAL mode with ``synchronous=FULL`` and a busy
timeout, so many threads and several processes may share one file, and a process killed
mid-publish leaves either all or none of that call's messages. Expired locks are not
swept by a timer: every operation on a subscription first releases (or dead-letters)
what expired, inside its own transaction, so the state is right whoever looks first.

Waiting (``max_wait``) blocks on a condition variable shared by every broker on the same
file in this process, signalled when messages become available, and re-checks at a short
polling interval to see changes made by other processes. It never spins.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from adapters.clock import SystemClock
from adapters.embedded_broker.schema import SCHEMA_VERSION, STATEMENTS
from adapters.sqlite.database import write_lock, write_transaction
from application.ports import (
    BrokerUnavailable,
    Clock,
    DeadLetterReceiver,
    LockLost,
    MessageBroker,
    MessageRejected,
    OutgoingMessage,
    ReceivedMessage,
    SessionReceiver,
    SubscriptionCounts,
)
from contracts.topology import MAX_ID_LENGTH

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Rule = dict[str, str | int]
_T = TypeVar("_T")


class EntityNotFound(LookupError):
    """The topic or subscription does not exist (create it with the administration API)."""


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime cannot be placed in time: {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _duration_us(duration: timedelta) -> int:
    return duration // _MICROSECOND


@dataclass(frozen=True)
class SubscriptionSettings:
    """A subscription as the administration API configured it."""

    topic: str
    name: str
    rules: tuple[Rule, ...]
    requires_session: bool
    max_delivery_count: int
    lock_duration: timedelta
    default_ttl: timedelta | None
    dead_letter_on_expiry: bool

    def accepts(self, properties: dict[str, str | int]) -> bool:
        """Correlation filters: a rule matches when every one of its keys is equal in the
        message's properties; rules are OR-ed; no rules at all accepts everything."""
        if not self.rules:
            return True
        return any(
            all(key in properties and properties[key] == value for key, value in rule.items())
            for rule in self.rules
        )


class _Signal:
    """A generation counter with a condition: "something may have become available"."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        with self._condition:
            return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen, timeout)


_signals: dict[str, _Signal] = {}
_signals_lock = threading.Lock()


def _signal_for(path: Path) -> _Signal:
    """One signal per database file in this process, shared by every broker opened on it."""
    key = os.path.realpath(path)
    with _signals_lock:
        return _signals.setdefault(key, _Signal())


class _Connections:
    """A small pool of SQLite connections; each is used by one thread at a time."""

    def __init__(self, path: Path, busy_timeout: float, size: int = 8) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._size = size
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
        )
        connection.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise BrokerUnavailable("the embedded broker is closed")
            if self._idle:
                return self._idle.pop()
        return self._open()

    def give(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class EmbeddedBroker(MessageBroker):
    """Topics and session subscriptions persisted in the SQLite file at ``path``.

    ``clock`` gives "now" for enqueue times, locks, scheduled messages, time to live and
    the duplicate-detection window (a test moves it instead of sleeping); waiting with
    ``max_wait`` uses real time. ``poll_interval`` is how often a waiting receiver looks
    for changes another process made. Raises ``BrokerUnavailable`` when the file cannot
    be used (locked past ``busy_timeout``, disk errors) and ``EntityNotFound`` for a topic
    or subscription that was never created.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        poll_interval: float = 0.05,
        busy_timeout: float = 30.0,
        prefetch: int = 0,
        durable_publish: bool = True,
    ) -> None:
        self.path = Path(path)
        self.durable_publish = durable_publish
        """False: a publish is committed without an fsync (``synchronous=NORMAL``), and is
        durable once :meth:`sync` (or any later durable write) returns. For a publisher
        that keeps its own durable position only after a sync (the relay's checkpoint,
        ``Relay.before_checkpoint``): a power loss then undoes only what it publishes
        again. A crash of the process loses nothing either way."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock or SystemClock()
        self._poll_interval = poll_interval
        self.prefetch = prefetch
        self._last_sweep: dict[tuple[str, str], int] = {}
        self._settings_cache: dict[tuple[str, str], tuple[int, SubscriptionSettings]] = {}
        """Messages locked together with a session taken by ``accept_next_session`` (its
        first ``receive`` then needs no second transaction). 0, the default, as Service
        Bus's ``prefetchCount``: prefetched messages count a delivery when locked."""
        self._signal = _signal_for(self.path)
        self._writing = write_lock(self.path)
        self._connections = _Connections(self.path, busy_timeout)
        self._create_schema()

    # ------------------------------------------------------------------ plumbing

    def _create_schema(self) -> None:
        connection = self._connections.take()
        try:
            # WAL is a property of the file: set once, outside any transaction.
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BrokerUnavailable(f"cannot put {self.path} in WAL mode (got {mode})")
        except sqlite3.OperationalError as error:
            raise BrokerUnavailable(f"cannot open {self.path}: {error}") from error
        finally:
            self._connections.give(connection)
        with self._write() as connection:
            for statement in STATEMENTS:
                connection.execute(statement)
            row = connection.execute("SELECT max(version) FROM broker_schema").fetchone()
            if row[0] is None:
                connection.execute("INSERT INTO broker_schema (version) VALUES (?)", (1,))
            elif row[0] > SCHEMA_VERSION:
                raise BrokerUnavailable(
                    f"{self.path} has broker schema {row[0]}, newer than this code's"
                    f" {SCHEMA_VERSION}"
                )

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes the file's write lock up front,
        so two writers never both read and then collide on upgrade.

        Only writes that create messages (publish) and topology must survive a power
        loss, so only they are fsynced (``synchronous=FULL``). Locks and settlements are
        ``durable=False`` (``NORMAL``: atomic and safe against a process crash, but the
        last ones may be undone by a power loss): undoing one only makes a message
        available again, which at-least-once delivery already allows, and the next
        durable commit syncs them anyway. It saves an fsync per message received.
        """
        connection = self._connections.take()
        try:
            with write_transaction(
                connection, self._writing, BrokerUnavailable, f"embedded broker {self.path}",
                synchronous=None if durable else ("NORMAL", "FULL"),
            ):
                yield connection
        finally:
            self._connections.give(connection)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        connection = self._connections.take()
        try:
            yield connection
        except sqlite3.OperationalError as error:
            raise BrokerUnavailable(f"embedded broker {self.path}: {error}") from error
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._connections.give(connection)

    def _now_us(self) -> int:
        return _to_us(self._clock.now())

    def _await(self, attempt: Callable[[], _T | None], max_wait: float) -> _T | None:
        """Run ``attempt`` until it returns something, for at most ``max_wait`` seconds,
        sleeping on the file's signal (or the polling interval) between tries."""
        deadline = time.monotonic() + max(0.0, max_wait)
        while True:
            seen = self._signal.generation()
            result = attempt()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._signal.wait(seen, min(remaining, self._poll_interval))

    def _notify(self) -> None:
        self._signal.notify()

    # ---------------------------------------------------------- administration

    def create_topic(
        self, name: str, duplicate_detection_window: timedelta = timedelta(minutes=10)
    ) -> None:
        """Create the topic, or update its duplicate-detection window; idempotent.

        A zero window turns duplicate detection off.
        """
        if not name:
            raise ValueError("a topic needs a name")
        if duplicate_detection_window < timedelta(0):
            raise ValueError("the duplicate detection window cannot be negative")
        with self._write() as connection:
            connection.execute(
                "INSERT INTO topics (name, duplicate_window_us) VALUES (?, ?) ON CONFLICT (name)"
                " DO UPDATE SET duplicate_window_us = excluded.duplicate_window_us",
                (name, _duration_us(duplicate_detection_window)),
            )

    def create_subscription(
        self,
        topic: str,
        name: str,
        *,
        rules: list[dict[str, str | int]],
        requires_session: bool = True,
        max_delivery_count: int = 10,
        lock_duration: timedelta = timedelta(seconds=60),
        default_ttl: timedelta | None = None,
        dead_letter_on_expiry: bool = True,
    ) -> None:
        """Create the subscription, or update its settings; idempotent.

        ``rules`` are correlation filters: each is a mapping of application property to
        the value it must equal (all of its keys must match); a message is accepted if
        any rule matches; an empty list accepts every message. Messages already in the
        subscription keep the time to live they were enqueued with.
        """
        if not name:
            raise ValueError("a subscription needs a name")
        if max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        if lock_duration <= timedelta(0):
            raise ValueError("lock_duration must be positive")
        if default_ttl is not None and default_ttl <= timedelta(0):
            raise ValueError("default_ttl must be positive (or None: never expires)")
        for rule in rules:
            if not isinstance(rule, dict) or not all(
                isinstance(key, str) and isinstance(value, str | int)
                for key, value in rule.items()
            ):
                raise ValueError(f"a rule maps property names to str or int values: {rule!r}")
        with self._write() as connection:
            if not connection.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone():
                raise EntityNotFound(f"topic {topic!r} does not exist")
            connection.execute(
                """
                INSERT INTO subscriptions (topic, name, rules, requires_session,
                    max_delivery_count, lock_duration_us, default_ttl_us, dead_letter_on_expiry)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (topic, name) DO UPDATE SET
                    rules = excluded.rules,
                    requires_session = excluded.requires_session,
                    max_delivery_count = excluded.max_delivery_count,
                    lock_duration_us = excluded.lock_duration_us,
                    default_ttl_us = excluded.default_ttl_us,
                    dead_letter_on_expiry = excluded.dead_letter_on_expiry
                """,
                (
                    topic,
                    name,
                    json.dumps(rules, sort_keys=True),
                    int(requires_session),
                    max_delivery_count,
                    _duration_us(lock_duration),
                    None if default_ttl is None else _duration_us(default_ttl),
                    int(dead_letter_on_expiry),
                ),
            )
        self._settings_cache.pop((topic, name), None)
        self._notify()

    def subscription_settings(self, topic: str, subscription: str) -> SubscriptionSettings:
        """The subscription's configuration; raises ``EntityNotFound``."""
        with self._read() as connection:
            return self._settings(connection, topic, subscription)

    # ------------------------------------------------------------------ the port

    def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        for message in messages:
            self._validate(message)
        now = self._now_us()
        with self._write(durable=self.durable_publish) as connection:
            row = connection.execute(
                "SELECT duplicate_window_us, last_sequence FROM topics WHERE name = ?", (topic,)
            ).fetchone()
            if row is None:
                raise EntityNotFound(f"topic {topic!r} does not exist")
            window_us, sequence = int(row[0]), int(row[1])
            subscriptions = self._all_settings(connection, topic)
            if window_us > 0:
                connection.execute(
                    "DELETE FROM seen_message_ids WHERE topic = ? AND seen_us <= ?",
                    (topic, now - window_us),
                )
            for message in messages:
                # Remembered now unless already seen inside the window: one statement
                # that changes no row for a duplicate (a read, then a write, cost two
                # statements a message on the relay's path).
                if window_us > 0 and not connection.execute(
                    "INSERT INTO seen_message_ids (topic, message_id, seen_us)"
                    " VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, message_id) DO UPDATE SET seen_us = excluded.seen_us"
                    " WHERE seen_message_ids.seen_us <= ?",
                    (topic, message.message_id, now, now - window_us),
                ).rowcount:
                    continue  # a duplicate is accepted and silently dropped
                sequence += 1
                enqueued = now
                if message.scheduled_enqueue_time is not None:
                    enqueued = max(now, _to_us(message.scheduled_enqueue_time))
                properties = json.dumps(message.application_properties, sort_keys=True)
                for settings in subscriptions:
                    if not settings.accepts(message.application_properties):
                        continue
                    if settings.requires_session and not message.session_id:
                        raise MessageRejected(
                            f"message {message.message_id!r} has no session id, but"
                            f" subscription {topic}/{settings.name} requires sessions"
                        )
                    expires = None
                    if settings.default_ttl is not None:
                        expires = enqueued + _duration_us(settings.default_ttl)
                    connection.execute(
                        """
                        INSERT INTO messages (topic, subscription, sequence_number, message_id,
                            session_id, subject, content_type, properties, body, enqueued_us,
                            expires_us, state)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active')
                        """,
                        (
                            topic,
                            settings.name,
                            sequence,
                            message.message_id,
                            message.session_id,
                            message.subject,
                            message.content_type,
                            properties,
                            message.body,
                            enqueued,
                            expires,
                        ),
                    )
            connection.execute(
                "UPDATE topics SET last_sequence = ? WHERE name = ?", (sequence, topic)
            )
        self._notify()

    def sync(self) -> None:
        """Make every write committed so far durable: one write with an fsync. In WAL mode
        an fsync of the log covers the commits before it that skipped theirs.

        Then copy the log into the file (a passive checkpoint: it waits for no reader or
        writer), outside the write lock, in the caller's thread. A publisher that syncs
        regularly (the relay's checkpoint thread, every 250 ms) so keeps the log under
        SQLite's automatic checkpoint, which otherwise runs inside whichever commit takes
        the log past 1,000 pages and fsyncs the log and the file there: on a publish or a
        consumer's visit (docs/performance.md, *A visit's settlement and the next take in
        one transaction*). Best effort: if it cannot run, the automatic one still does.
        """
        with self._write() as connection:
            # A real change (the same value written back), so the commit has a log frame
            # to write and sync; a transaction that changed nothing syncs nothing.
            connection.execute("UPDATE broker_schema SET version = version")
        connection = self._connections.take()
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.OperationalError:
            pass  # best effort: the automatic checkpoint still bounds the log
        finally:
            self._connections.give(connection)

    @staticmethod
    def _validate(message: OutgoingMessage) -> None:
        if not message.message_id:
            raise MessageRejected("a message needs a message id")
        if len(message.message_id) > MAX_ID_LENGTH:
            raise MessageRejected(f"message id longer than {MAX_ID_LENGTH}: {message.message_id!r}")
        if len(message.session_id) > MAX_ID_LENGTH:
            raise MessageRejected(f"session id longer than {MAX_ID_LENGTH}: {message.session_id!r}")
        if not isinstance(message.body, bytes | bytearray):
            raise MessageRejected(f"message {message.message_id!r}: the body must be bytes")
        for key, value in message.application_properties.items():
            if not isinstance(key, str) or not isinstance(value, str | int):
                raise MessageRejected(
                    f"message {message.message_id!r}: property {key!r} must be str or int"
                )
        scheduled = message.scheduled_enqueue_time
        if scheduled is not None and scheduled.tzinfo is None:
            raise MessageRejected(f"message {message.message_id!r}: naive scheduled time")

    def accept_next_session(
        self, topic: str, subscription: str, max_wait: float = 0.0
    ) -> SessionReceiver | None:
        self._session_settings(topic, subscription)

        def attempt() -> SessionReceiver | None:
            now = self._now_us()
            # A read first: most wake-ups find nothing to take (another receiver won, or
            # the message went to a locked session), and a read needs no write lock.
            if not self._may_have_a_session(topic, subscription, now):
                return None
            with self._write(durable=False) as connection:
                settings = self._settings(connection, topic, subscription)
                self._sweep(connection, settings, now)
                sessions = self._next_sessions(connection, topic, subscription, now, 1)
                if not sessions:
                    return None
                receiver = self._lock_session(connection, settings, sessions[0], now)
                if self.prefetch:
                    receiver._prefetched = receiver._lock_next(
                        connection, settings, now, self.prefetch
                    )
                return receiver

        return self._await(attempt, max_wait)

    _AVAILABLE_IN_ORDER = """
        -- Available messages of unlocked sessions, oldest first: the caller reads the
        -- first few distinct sessions and stops, so a visit does not group the backlog.
        SELECT m.session_id FROM messages AS m
        WHERE m.topic = ? AND m.subscription = ? AND m.state = 'active'
          AND m.enqueued_us <= ? AND m.lock_token IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM session_locks AS s
              WHERE s.topic = m.topic AND s.subscription = m.subscription
                AND s.session_id = m.session_id AND s.locked_until_us > ?)
        ORDER BY m.sequence_number
    """

    def _next_sessions(self, connection: sqlite3.Connection, topic: str, subscription: str,
                       now: int, limit: int) -> list[str]:
        """Up to ``limit`` unlocked sessions with an available message, the one whose
        oldest such message is oldest first. Read in sequence order until ``limit``
        distinct sessions are found: grouping every available message by session first
        cost a visit time in proportion to the backlog, just when a backlog builds."""
        sessions: dict[str, None] = {}
        cursor = connection.execute(self._AVAILABLE_IN_ORDER, (topic, subscription, now, now))
        try:
            for (session,) in cursor:
                sessions[str(session)] = None
                if len(sessions) >= limit:
                    break
        finally:
            cursor.close()
        return list(sessions)

    def accept_next_sessions(
        self, topic: str, subscription: str, max_sessions: int, max_messages: int,
        max_wait: float = 0.0,
    ) -> list[tuple[SessionReceiver, list[ReceivedMessage]]]:
        """The port's operation in one transaction: the sessions whose first available
        message is oldest, each locked with its first ``max_messages`` messages (what
        ``accept_next_session`` then ``receive`` would lock, for many sessions at once:
        a sparse session otherwise costs a transaction to take it for one message)."""
        if max_sessions < 1 or max_messages < 1:
            raise ValueError("max_sessions and max_messages must be at least 1")
        self._session_settings(topic, subscription)

        def attempt() -> list[tuple[SessionReceiver, list[ReceivedMessage]]] | None:
            now = self._now_us()
            if not self._may_have_a_session(topic, subscription, now):
                return None
            with self._write(durable=False) as connection:
                taken = self._take(connection, topic, subscription, now, max_sessions,
                                   max_messages)
            return taken or None

        return self._await(attempt, max_wait) or []

    def _take(
        self, connection: sqlite3.Connection, topic: str, subscription: str, now: int,
        max_sessions: int, max_messages: int,
    ) -> list[tuple[SessionReceiver, list[ReceivedMessage]]]:
        """In the caller's write transaction: what expired given back, then the next
        ``max_sessions`` free sessions locked with their first ``max_messages``."""
        settings = self._settings(connection, topic, subscription)
        self._sweep(connection, settings, now)
        sessions = self._next_sessions(connection, topic, subscription, now, max_sessions)
        return self._lock_sessions(connection, settings, sessions, now, max_messages)

    _FIRST_OF_SESSIONS = """
        -- The first ``?`` available messages of each of the sessions named, in order.
        SELECT id, session_id FROM (
            SELECT id, session_id, row_number() OVER (
                PARTITION BY session_id ORDER BY sequence_number, id) AS n
            FROM messages
            WHERE topic = ? AND subscription = ? AND state = 'active'
              AND session_id IN ({sessions}) AND enqueued_us <= ? AND lock_token IS NULL)
        WHERE n <= ? ORDER BY session_id, n
    """

    def _lock_sessions(
        self, connection: sqlite3.Connection, settings: SubscriptionSettings,
        sessions: list[str], now: int, max_messages: int,
    ) -> list[tuple[SessionReceiver, list[ReceivedMessage]]]:
        """``_lock_session`` then ``_lock_next`` for every one of ``sessions`` (none held
        by anyone: the caller found them free in this transaction), in a number of
        statements that does not grow with the sessions: a visit of sparse sessions took
        eight statements a session, about 75 µs of the consumer's CPU an event
        (docs/performance.md, *End-to-end lag*)."""
        if not sessions:
            return []
        key = (settings.topic, settings.name)
        locked_until = now + _duration_us(settings.lock_duration)
        fresh = uuid.uuid4().hex  # one random part a call, the session's index for each
        receivers = {session: _SessionReceiver(self, *key, session, f"{fresh}.s{n}")
                     for n, session in enumerate(sessions)}
        ids: dict[str, list[int]] = {session: [] for session in sessions}
        for start in range(0, len(sessions), 500):  # under SQLite's limit on parameters
            chunk = sessions[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            # What a previous holder left locked goes back first (as ``_lock_session``).
            _release(connection, settings,
                     f"topic = ? AND subscription = ? AND session_id IN ({marks})"
                     " AND state = 'active' AND lock_token IS NOT NULL",
                     (*key, *chunk), now)
            for row_id, session in connection.execute(
                    self._FIRST_OF_SESSIONS.format(sessions=marks),
                    (*key, *chunk, now, max_messages)):
                ids[str(session)].append(int(row_id))
        connection.executemany(
            """
            INSERT INTO session_locks (topic, subscription, session_id, token, locked_until_us)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (topic, subscription, session_id) DO UPDATE SET
                token = excluded.token, locked_until_us = excluded.locked_until_us
            """,
            [(*key, session, receiver._token, locked_until)
             for session, receiver in receivers.items()],
        )
        locked = iter(self._lock_messages(
            connection, [i for session in sessions for i in ids[session]], locked_until,
            deliver=True))
        return [(receivers[session], [next(locked) for _ in ids[session]])
                for session in sessions]

    def settle_sessions(
        self, handled: Sequence[tuple[SessionReceiver, Sequence[ReceivedMessage]]]
    ) -> int:
        """The port's operation in one transaction: each session's handled messages
        deleted (those whose lock is still this receiver's), then its lock released and
        what it holds unsettled given back, as ``close`` does."""
        by_subscription = self._to_settle(handled)
        if not by_subscription:
            return 0
        now = self._now_us()
        try:
            with self._write(durable=False) as connection:
                completed = self._settle(connection, by_subscription, now)
        except BrokerUnavailable:
            return 0  # nothing settled: the locks expire and the messages come back
        self._notify()
        return completed

    def settle_and_accept_next_sessions(
        self, handled: Sequence[tuple[SessionReceiver, Sequence[ReceivedMessage]]],
        topic: str, subscription: str, max_sessions: int, max_messages: int,
    ) -> tuple[int, list[tuple[SessionReceiver, list[ReceivedMessage]]]]:
        """The port's operation in one transaction: ``settle_sessions`` then
        ``accept_next_sessions``, one ``BEGIN``/``COMMIT`` and no read beforehand (a
        visit's fixed cost is its transactions: docs/performance.md, *A visit's
        settlement and the next take in one transaction*). If the write fails nothing is
        settled or taken: the locks expire and the messages come back."""
        if max_sessions < 1 or max_messages < 1:
            raise ValueError("max_sessions and max_messages must be at least 1")
        self._session_settings(topic, subscription)
        by_subscription = self._to_settle(handled)
        now = self._now_us()
        try:
            with self._write(durable=False) as connection:
                completed = self._settle(connection, by_subscription, now)
                taken = self._take(connection, topic, subscription, now, max_sessions,
                                   max_messages)
        except BrokerUnavailable:
            return 0, []
        if by_subscription:
            self._notify()
        return completed, taken

    def _settle(
        self, connection: sqlite3.Connection,
        by_subscription: dict[tuple[str, str],
                              list[tuple[_SessionReceiver, Sequence[ReceivedMessage]]]],
        now: int,
    ) -> int:
        return sum(self._complete_and_release(connection, key, settled, now)
                   for key, settled in by_subscription.items())

    def _to_settle(
        self, handled: Sequence[tuple[SessionReceiver, Sequence[ReceivedMessage]]]
    ) -> dict[tuple[str, str], list[tuple[_SessionReceiver, Sequence[ReceivedMessage]]]]:
        """The receivers of ``handled`` still open, by subscription, each now closed."""
        by_subscription: dict[tuple[str, str],
                              list[tuple[_SessionReceiver, Sequence[ReceivedMessage]]]] = {}
        for receiver, messages in handled:
            if not isinstance(receiver, _SessionReceiver) or receiver._broker is not self:
                raise ValueError("settle_sessions takes receivers of this broker")
            if not receiver._closed:
                by_subscription.setdefault(
                    (receiver._topic, receiver._subscription), []).append((receiver, messages))
            receiver._closed = True
        return by_subscription

    def _complete_and_release(
        self, connection: sqlite3.Connection, key: tuple[str, str],
        settled: list[tuple[_SessionReceiver, Sequence[ReceivedMessage]]], now: int,
    ) -> int:
        """``complete_all`` then ``close`` for many receivers of one subscription, in the
        caller's transaction and in a number of statements that does not grow with them
        (a visit of sparse sessions took five a session): which of
        their session locks still hold is read once, then their handled messages are
        deleted, their locks deleted and what they held unsettled given back, each in
        one statement. A receiver whose lock expired or was taken settles nothing."""
        sessions = [receiver.session_id for receiver, _ in settled]
        holding: set[tuple[str, str]] = set()
        for start in range(0, len(sessions), 500):  # under SQLite's limit on parameters
            chunk = sessions[start:start + 500]
            holding.update((str(session), str(token)) for session, token in connection.execute(
                "SELECT session_id, token FROM session_locks WHERE topic = ?"
                " AND subscription = ? AND locked_until_us > ?"
                f" AND session_id IN ({', '.join('?' * len(chunk))})", (*key, now, *chunk)))
        held = [(receiver, messages) for receiver, messages in settled
                if (receiver.session_id, receiver._token) in holding]
        if not held:
            return 0
        completed = connection.executemany(
            "DELETE FROM messages WHERE lock_token = ? AND locked_until_us > ?"
            " AND state = 'active' AND topic = ? AND subscription = ? AND session_id = ?",
            [(message.lock_token, now, *key, receiver.session_id)
             for receiver, messages in held for message in messages],
        ).rowcount
        settings = self._settings(connection, *key)
        held_sessions = [receiver.session_id for receiver, _ in held]
        for start in range(0, len(held_sessions), 500):
            chunk = held_sessions[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            connection.execute(
                "DELETE FROM session_locks WHERE topic = ? AND subscription = ?"
                f" AND session_id IN ({marks})", (*key, *chunk))
            _release(connection, settings,
                     f"topic = ? AND subscription = ? AND session_id IN ({marks})"
                     " AND lock_token IS NOT NULL AND state = 'active'", (*key, *chunk), now)
        return max(completed, 0)

    _SESSION_CANDIDATE = """
        SELECT 1 FROM messages AS m
        WHERE m.topic = ? AND m.subscription = ? AND m.state = 'active'
          AND m.enqueued_us <= ? AND (m.lock_token IS NULL OR m.locked_until_us <= ?)
          AND NOT EXISTS (
              SELECT 1 FROM session_locks AS s
              WHERE s.topic = m.topic AND s.subscription = m.subscription
                AND s.session_id = m.session_id AND s.locked_until_us > ?)
        LIMIT 1
    """

    def _may_have_a_session(self, topic: str, subscription: str, now: int) -> bool:
        """Whether an unlocked session has a message available now, or one whose lock
        expired (the sweep in the write transaction then frees it)."""
        with self._read() as connection:
            return connection.execute(
                self._SESSION_CANDIDATE, (topic, subscription, now, now, now)
            ).fetchone() is not None

    def accept_session(self, topic: str, subscription: str, session_id: str) -> SessionReceiver:
        self._session_settings(topic, subscription)
        now = self._now_us()
        with self._write(durable=False) as connection:
            settings = self._settings(connection, topic, subscription)
            self._sweep(connection, settings, now)
            held = connection.execute(
                "SELECT 1 FROM session_locks WHERE topic = ? AND subscription = ?"
                " AND session_id = ? AND locked_until_us > ?",
                (topic, subscription, session_id, now),
            ).fetchone()
            if held:
                raise LockLost(
                    f"session {session_id!r} of {topic}/{subscription} is held by another receiver"
                )
            return self._lock_session(connection, settings, session_id, now)

    def _lock_session(
        self, connection: sqlite3.Connection, settings: SubscriptionSettings, session: str, now: int
    ) -> _SessionReceiver:
        token = uuid.uuid4().hex
        # The session is taken only when nobody holds it, so any message still locked in
        # it was the last holder's: give it back first (dead-lettering it at the maximum),
        # or it would be skipped and the session delivered out of order. (The sweep does
        # this too, but at most every SWEEP_INTERVAL_US.)
        _release(
            connection, settings,
            "topic = ? AND subscription = ? AND session_id = ? AND state = 'active'"
            " AND lock_token IS NOT NULL",
            (settings.topic, settings.name, session), now,
        )
        connection.execute(
            """
            INSERT INTO session_locks (topic, subscription, session_id, token, locked_until_us)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (topic, subscription, session_id) DO UPDATE SET
                token = excluded.token, locked_until_us = excluded.locked_until_us
            """,
            (
                settings.topic,
                settings.name,
                session,
                token,
                now + _duration_us(settings.lock_duration),
            ),
        )
        return _SessionReceiver(self, settings.topic, settings.name, session, token)

    def dead_letter_receiver(self, topic: str, subscription: str) -> DeadLetterReceiver:
        self.subscription_settings(topic, subscription)
        return _DeadLetterReceiver(self, topic, subscription)

    def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        now = self._now_us()
        with self._write(durable=False) as connection:
            settings = self._settings(connection, topic, subscription)
            self._sweep(connection, settings, now)
            active, oldest = connection.execute(
                "SELECT count(*), min(enqueued_us) FROM messages WHERE topic = ?"
                " AND subscription = ? AND state = 'active' AND enqueued_us <= ?",
                (topic, subscription, now),
            ).fetchone()
            (scheduled,) = connection.execute(
                "SELECT count(*) FROM messages WHERE topic = ? AND subscription = ?"
                " AND state = 'active' AND enqueued_us > ?",
                (topic, subscription, now),
            ).fetchone()
            (dead_lettered,) = connection.execute(
                "SELECT count(*) FROM messages WHERE topic = ? AND subscription = ?"
                " AND state = 'dead_lettered'",
                (topic, subscription),
            ).fetchone()
        return SubscriptionCounts(
            active=int(active),
            dead_lettered=int(dead_lettered),
            scheduled=int(scheduled),
            oldest_active_enqueued_at=None if oldest is None else _from_us(int(oldest)),
        )

    def subscriptions(self, topic: str) -> list[str]:
        with self._read() as connection:
            if not connection.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone():
                raise EntityNotFound(f"topic {topic!r} does not exist")
            rows = connection.execute(
                "SELECT name FROM subscriptions WHERE topic = ? ORDER BY name", (topic,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def close(self) -> None:
        """Close the connections; receivers of this broker stop working. Idempotent."""
        self._connections.close()

    # -------------------------------------------------------------- internals

    def _session_settings(self, topic: str, subscription: str) -> SubscriptionSettings:
        settings = self.subscription_settings(topic, subscription)
        if not settings.requires_session:
            raise ValueError(f"subscription {topic}/{subscription} does not use sessions")
        return settings

    @staticmethod
    def _settings_from_row(row: tuple[object, ...]) -> SubscriptionSettings:
        topic, name, rules, session, max_count, lock_us, ttl_us, dead_letter_expired = row
        return SubscriptionSettings(
            topic=str(topic),
            name=str(name),
            rules=tuple(json.loads(str(rules))),
            requires_session=bool(session),
            max_delivery_count=int(str(max_count)),
            lock_duration=timedelta(microseconds=int(str(lock_us))),
            default_ttl=None if ttl_us is None else timedelta(microseconds=int(str(ttl_us))),
            dead_letter_on_expiry=bool(dead_letter_expired),
        )

    _SETTINGS_COLUMNS = (
        "topic, name, rules, requires_session, max_delivery_count, lock_duration_us,"
        " default_ttl_us, dead_letter_on_expiry"
    )

    def _settings(
        self, connection: sqlite3.Connection, topic: str, subscription: str
    ) -> SubscriptionSettings:
        """The subscription's settings, cached for ``SETTINGS_TTL_US``: every operation
        needs them and they change only by administration (in this process, which clears
        the cache; in another, seen within the TTL)."""
        now = time.monotonic_ns() // 1000
        cached = self._settings_cache.get((topic, subscription))
        if cached is not None and now - cached[0] < SETTINGS_TTL_US:
            return cached[1]
        settings = self._read_settings(connection, topic, subscription)
        self._settings_cache[(topic, subscription)] = (now, settings)
        return settings

    def _read_settings(
        self, connection: sqlite3.Connection, topic: str, subscription: str
    ) -> SubscriptionSettings:
        row = connection.execute(
            f"SELECT {self._SETTINGS_COLUMNS} FROM subscriptions WHERE topic = ? AND name = ?",
            (topic, subscription),
        ).fetchone()
        if row is None:
            raise EntityNotFound(f"subscription {topic}/{subscription} does not exist")
        return self._settings_from_row(row)

    def _all_settings(
        self, connection: sqlite3.Connection, topic: str
    ) -> list[SubscriptionSettings]:
        rows = connection.execute(
            f"SELECT {self._SETTINGS_COLUMNS} FROM subscriptions WHERE topic = ? ORDER BY name",
            (topic,),
        ).fetchall()
        return [self._settings_from_row(row) for row in rows]

    def _sweep(
        self, connection: sqlite3.Connection, settings: SubscriptionSettings, now: int
    ) -> None:
        """Release what expired before ``now``: message locks (dead-lettering messages that
        used up their deliveries), session locks, and messages past their time to live.

        At most once per ``SWEEP_INTERVAL_US`` per subscription in this process: locks
        last tens of seconds, so freeing them a few milliseconds late changes nothing a
        receiver can see, and sweeping on every operation cost more than the operation.
        (A clock that jumps, as in tests, sweeps at once.)
        """
        key = (settings.topic, settings.name)
        last = self._last_sweep.get(key)
        if last is not None and 0 <= now - last < SWEEP_INTERVAL_US:
            return
        self._last_sweep[key] = now
        connection.execute(
            """
            UPDATE messages SET state = 'dead_lettered', dead_letter_reason = ?,
                dead_letter_description = ?, dead_lettered_us = ?,
                lock_token = NULL, locked_until_us = NULL
            WHERE topic = ? AND subscription = ? AND lock_token IS NOT NULL
              AND locked_until_us <= ? AND state = 'active' AND delivery_count >= ?
            """,
            (
                MAX_DELIVERY_COUNT_EXCEEDED,
                _max_delivery_description(settings.max_delivery_count),
                now,
                *key,
                now,
                settings.max_delivery_count,
            ),
        )
        connection.execute(
            "UPDATE messages SET lock_token = NULL, locked_until_us = NULL"
            " WHERE topic = ? AND subscription = ? AND lock_token IS NOT NULL"
            " AND locked_until_us <= ?",
            (*key, now),
        )
        connection.execute(
            "DELETE FROM session_locks WHERE topic = ? AND subscription = ?"
            " AND locked_until_us <= ?",
            (*key, now),
        )
        expired = (
            "WHERE topic = ? AND subscription = ? AND state = 'active'"
            " AND expires_us IS NOT NULL AND expires_us <= ? AND lock_token IS NULL"
        )
        if settings.dead_letter_on_expiry:
            connection.execute(
                "UPDATE messages SET state = 'dead_lettered', dead_letter_reason = ?,"
                " dead_letter_description = ?, dead_lettered_us = ? " + expired,
                (TTL_EXPIRED, "The message expired and was dead lettered.", now, *key, now),
            )
        else:
            connection.execute("DELETE FROM messages " + expired, (*key, now))

    def _received(self, row: tuple[object, ...]) -> ReceivedMessage:
        (
            message_id,
            session_id,
            subject,
            content_type,
            properties,
            body,
            delivery_count,
            sequence_number,
            enqueued_us,
            lock_token,
            reason,
            description,
        ) = row
        return ReceivedMessage(
            message_id=str(message_id),
            session_id=str(session_id),
            subject=str(subject),
            body=body if isinstance(body, bytes) else bytes(str(body), "utf-8"),
            content_type=str(content_type),
            application_properties=json.loads(str(properties)),
            delivery_count=int(str(delivery_count)),
            sequence_number=int(str(sequence_number)),
            enqueued_at=_from_us(int(str(enqueued_us))),
            lock_token=str(lock_token),
            dead_letter_reason=None if reason is None else str(reason),
            dead_letter_description=None if description is None else str(description),
        )

    _RECEIVED_COLUMNS = (
        "message_id, session_id, subject, content_type, properties, body, delivery_count,"
        " sequence_number, enqueued_us, lock_token, dead_letter_reason, dead_letter_description"
    )

    def _lock_messages(
        self, connection: sqlite3.Connection, ids: list[int], locked_until: int, deliver: bool
    ) -> list[ReceivedMessage]:
        """Put a fresh lock on each row (and count a delivery if ``deliver``), in order:
        one statement for the locks and one read of the rows, however many."""
        if not ids:
            return []
        # One random part per call, the row id per message: unique, and a fresh uuid4
        # for every message cost more than locking it.
        fresh = uuid.uuid4().hex
        connection.executemany(
            "UPDATE messages SET lock_token = ?, locked_until_us = ?,"
            " delivery_count = delivery_count + ? WHERE id = ?",
            [(f"{fresh}.{row_id}", locked_until, int(deliver), row_id) for row_id in ids],
        )
        rows: dict[int, tuple[object, ...]] = {}
        for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
            chunk = ids[start:start + 500]
            rows.update((int(row[0]), row[1:]) for row in connection.execute(
                f"SELECT id, {self._RECEIVED_COLUMNS} FROM messages"
                f" WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
        return [self._received(rows[row_id]) for row_id in ids]


SETTINGS_TTL_US = 1_000_000
"""How long (µs) a process trusts its cached copy of a subscription's settings."""

SWEEP_INTERVAL_US = 50_000
"""How often (µs) a process releases expired locks of a subscription; see ``_sweep``."""


def _max_delivery_description(max_delivery_count: int) -> str:
    return f"Message could not be consumed after {max_delivery_count} delivery attempts."


class _SessionReceiver(SessionReceiver):
    """The holder of one session lock (``token``) of one subscription.

    Each ``receive`` renews the session lock and the locks of the messages it holds for
    another lock duration, as Service Bus's ``AutoLockRenewer`` does while a receiver is
    busy; a receiver that stops calling loses them after the lock duration.
    """

    def __init__(
        self, broker: EmbeddedBroker, topic: str, subscription: str, session_id: str, token: str
    ) -> None:
        self._broker = broker
        self._topic = topic
        self._subscription = subscription
        self.session_id = session_id
        self._token = token
        self._closed = False
        self._prefetched: list[ReceivedMessage] = []

    def _check_lock(self, connection: sqlite3.Connection, now: int) -> None:
        if self._closed:
            raise LockLost(f"the receiver of session {self.session_id!r} is closed")
        if not self._holds(connection, now):
            raise LockLost(
                f"the lock on session {self.session_id!r} of {self._topic}/{self._subscription}"
                " expired or was taken by another receiver"
            )

    def receive(self, max_messages: int = 1, max_wait: float = 0.0) -> list[ReceivedMessage]:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if self._prefetched:
            # Locked with the session, in the same transaction (Service Bus prefetches too).
            taken, self._prefetched = (self._prefetched[:max_messages],
                                       self._prefetched[max_messages:])
            return taken
        broker = self._broker

        def attempt() -> list[ReceivedMessage] | None:
            now = broker._now_us()
            with broker._write(durable=False) as connection:
                settings = broker._settings(connection, self._topic, self._subscription)
                broker._sweep(connection, settings, now)
                self._check_lock(connection, now)
                received = self._lock_next(connection, settings, now, max_messages)
            return received or None

        return broker._await(attempt, max_wait) or []

    def _lock_next(
        self,
        connection: sqlite3.Connection,
        settings: SubscriptionSettings,
        now: int,
        max_messages: int,
    ) -> list[ReceivedMessage]:
        """Renew the session's locks and lock its next messages, in the caller's transaction."""
        broker = self._broker
        locked_until = now + _duration_us(settings.lock_duration)
        connection.execute(
            "UPDATE session_locks SET locked_until_us = ? WHERE topic = ?"
            " AND subscription = ? AND session_id = ?",
            (locked_until, self._topic, self._subscription, self.session_id),
        )
        connection.execute(
            "UPDATE messages SET locked_until_us = ? WHERE topic = ? AND subscription = ?"
            " AND session_id = ? AND state = 'active' AND lock_token IS NOT NULL",
            (locked_until, self._topic, self._subscription, self.session_id),
        )
        ids = [
            int(row[0])
            for row in connection.execute(
                "SELECT id FROM messages WHERE topic = ? AND subscription = ?"
                " AND state = 'active' AND session_id = ? AND enqueued_us <= ?"
                " AND lock_token IS NULL ORDER BY sequence_number, id LIMIT ?",
                (self._topic, self._subscription, self.session_id, now, max_messages),
            )
        ]
        return broker._lock_messages(connection, ids, locked_until, deliver=True)

    def _settle(
        self, message: ReceivedMessage, act: Callable[[sqlite3.Connection, int, int], None]
    ) -> None:
        broker = self._broker
        now = broker._now_us()
        with broker._write(durable=False) as connection:
            self._check_lock(connection, now)
            row = connection.execute(
                "SELECT id FROM messages WHERE lock_token = ? AND locked_until_us > ?"
                " AND state = 'active' AND topic = ? AND subscription = ? AND session_id = ?",
                (message.lock_token, now, self._topic, self._subscription, self.session_id),
            ).fetchone()
            if row is None:
                raise LockLost(
                    f"the lock on message {message.message_id!r} expired or was released"
                )
            act(connection, int(row[0]), now)

    def complete(self, message: ReceivedMessage) -> None:
        def remove(connection: sqlite3.Connection, row_id: int, _now: int) -> None:
            connection.execute("DELETE FROM messages WHERE id = ?", (row_id,))

        self._settle(message, remove)

    def complete_all(self, messages: Sequence[ReceivedMessage]) -> None:
        """Complete a batch in one transaction (one write instead of one per message)."""
        broker = self._broker
        now = broker._now_us()
        lost: list[str] = []
        with broker._write(durable=False) as connection:
            self._check_lock(connection, now)
            for message in messages:
                deleted = connection.execute(
                    "DELETE FROM messages WHERE lock_token = ? AND locked_until_us > ?"
                    " AND state = 'active' AND topic = ? AND subscription = ?"
                    " AND session_id = ?",
                    (message.lock_token, now, self._topic, self._subscription,
                     self.session_id),
                ).rowcount
                if not deleted:
                    lost.append(message.message_id)
        if lost:
            raise LockLost(f"the locks on {', '.join(map(repr, lost))} expired or were released")

    def abandon(self, message: ReceivedMessage) -> None:
        broker = self._broker

        def give_back(connection: sqlite3.Connection, row_id: int, now: int) -> None:
            settings = broker._settings(connection, self._topic, self._subscription)
            _release(connection, settings, "id = ?", (row_id,), now)

        self._settle(message, give_back)
        broker._notify()

    def dead_letter(self, message: ReceivedMessage, reason: str, description: str) -> None:
        def move(connection: sqlite3.Connection, row_id: int, now: int) -> None:
            connection.execute(
                "UPDATE messages SET state = 'dead_lettered', dead_letter_reason = ?,"
                " dead_letter_description = ?, dead_lettered_us = ?, lock_token = NULL,"
                " locked_until_us = NULL WHERE id = ?",
                (reason, description, now, row_id),
            )

        self._settle(message, move)
        self._broker._notify()

    def close(self) -> None:
        """Release the session and give back unsettled messages (each such delivery counts,
        so a message that used up its deliveries is dead-lettered). Idempotent."""
        if self._closed:
            return
        self._closed = True
        broker = self._broker
        now = broker._now_us()
        try:
            with broker._write(durable=False) as connection:
                self._release_session(connection, now)
        except BrokerUnavailable:
            return  # the broker is closed or the file is gone: the lock expires by itself
        broker._notify()

    def _holds(self, connection: sqlite3.Connection, now: int) -> bool:
        """Whether this receiver's session lock is still held (not expired, not taken)."""
        return connection.execute(
            "SELECT 1 FROM session_locks WHERE topic = ? AND subscription = ? AND session_id = ?"
            " AND token = ? AND locked_until_us > ?",
            (self._topic, self._subscription, self.session_id, self._token, now),
        ).fetchone() is not None

    def _release_session(self, connection: sqlite3.Connection, now: int) -> None:
        """Delete this receiver's session lock and give back the messages it holds, in the
        caller's transaction (nothing if the lock expired or was taken meanwhile)."""
        held = connection.execute(
            "DELETE FROM session_locks WHERE topic = ? AND subscription = ?"
            " AND session_id = ? AND token = ? AND locked_until_us > ?",
            (self._topic, self._subscription, self.session_id, self._token, now),
        ).rowcount
        if held:
            settings = self._broker._settings(connection, self._topic, self._subscription)
            _release(
                connection,
                settings,
                "topic = ? AND subscription = ? AND session_id = ?"
                " AND lock_token IS NOT NULL AND state = 'active'",
                (self._topic, self._subscription, self.session_id),
                now,
            )


def _release(
    connection: sqlite3.Connection,
    settings: SubscriptionSettings,
    where: str,
    parameters: tuple[object, ...],
    now: int,
) -> None:
    """Give locked messages back: dead-letter those that used up their deliveries, unlock
    the others (so the lowest sequence number of the session is delivered next)."""
    connection.execute(
        "UPDATE messages SET state = 'dead_lettered', dead_letter_reason = ?,"
        " dead_letter_description = ?, dead_lettered_us = ?, lock_token = NULL,"
        f" locked_until_us = NULL WHERE {where} AND delivery_count >= ?",
        (
            MAX_DELIVERY_COUNT_EXCEEDED,
            _max_delivery_description(settings.max_delivery_count),
            now,
            *parameters,
            settings.max_delivery_count,
        ),
    )
    connection.execute(
        f"UPDATE messages SET lock_token = NULL, locked_until_us = NULL WHERE {where}",
        parameters,
    )


class _DeadLetterReceiver(DeadLetterReceiver):
    """A plain (not sessionful) peek-lock receiver of a subscription's dead letters."""

    def __init__(self, broker: EmbeddedBroker, topic: str, subscription: str) -> None:
        self._broker = broker
        self._topic = topic
        self._subscription = subscription
        self._tokens: set[str] = set()
        self._closed = False

    def receive(self, max_messages: int = 1, max_wait: float = 0.0) -> list[ReceivedMessage]:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if self._closed:
            raise LockLost("the dead-letter receiver is closed")
        broker = self._broker

        def attempt() -> list[ReceivedMessage] | None:
            now = broker._now_us()
            with broker._write(durable=False) as connection:
                settings = broker._settings(connection, self._topic, self._subscription)
                broker._sweep(connection, settings, now)
                ids = [
                    int(row[0])
                    for row in connection.execute(
                        "SELECT id FROM messages WHERE topic = ? AND subscription = ?"
                        " AND state = 'dead_lettered' AND lock_token IS NULL"
                        " ORDER BY dead_lettered_us, sequence_number, id LIMIT ?",
                        (self._topic, self._subscription, max_messages),
                    )
                ]
                locked_until = now + _duration_us(settings.lock_duration)
                received = broker._lock_messages(connection, ids, locked_until, deliver=False)
            self._tokens.update(message.lock_token for message in received)
            return received or None

        return broker._await(attempt, max_wait) or []

    def complete(self, message: ReceivedMessage) -> None:
        now = self._broker._now_us()
        with self._broker._write(durable=False) as connection:
            removed = connection.execute(
                "DELETE FROM messages WHERE lock_token = ? AND locked_until_us > ?"
                " AND state = 'dead_lettered' AND topic = ? AND subscription = ?",
                (message.lock_token, now, self._topic, self._subscription),
            ).rowcount
        if not removed:
            raise LockLost(
                f"the lock on dead-lettered message {message.message_id!r} expired or was lost"
            )
        self._tokens.discard(message.lock_token)

    def close(self) -> None:
        """Give back the dead letters this receiver locked and did not complete."""
        if self._closed:
            return
        self._closed = True
        tokens = list(self._tokens)
        self._tokens.clear()
        if not tokens:
            return
        try:
            with self._broker._write(durable=False) as connection:
                connection.executemany(
                    "UPDATE messages SET lock_token = NULL, locked_until_us = NULL"
                    " WHERE lock_token = ? AND state = 'dead_lettered'",
                    [(token,) for token in tokens],
                )
        except BrokerUnavailable:
            return
        self._broker._notify()
