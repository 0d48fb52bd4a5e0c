"""The embedded broker's tables, created on open (``CREATE ... IF NOT EXISTS``).

Times are integers: microseconds since the Unix epoch (UTC), read from the broker's
clock, so comparisons are exact and a test clock moves them.

- ``topics``: one row per topic; its duplicate-detection window and the last sequence
  number it handed out (every accepted message takes the next one; all the copies of a
  message share it, as on Service Bus).
- ``subscriptions``: one row per subscription, with its correlation-filter rules (JSON)
  and its settings (sessions, maximum deliveries, lock duration, default time to live).
- ``messages``: one row per message *copy* in a subscription, active or dead-lettered.
  A row is locked while ``lock_token`` is set and ``locked_until_us`` is in the future;
  an expired lock is the same as no lock (the next operation on the subscription
  releases it or dead-letters the message).
- ``session_locks``: which receiver (``token``) holds which session until when.
- ``seen_message_ids``: the message ids a topic accepted, with when, for duplicate
  detection; rows older than the window are deleted on publish.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS broker_schema (
        version INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS topics (
        name TEXT PRIMARY KEY,
        duplicate_window_us INTEGER NOT NULL,
        last_sequence INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS subscriptions (
        topic TEXT NOT NULL REFERENCES topics (name),
        name TEXT NOT NULL,
        rules TEXT NOT NULL,
        requires_session INTEGER NOT NULL,
        max_delivery_count INTEGER NOT NULL,
        lock_duration_us INTEGER NOT NULL,
        default_ttl_us INTEGER,
        dead_letter_on_expiry INTEGER NOT NULL,
        PRIMARY KEY (topic, name)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        subscription TEXT NOT NULL,
        sequence_number INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        content_type TEXT NOT NULL,
        properties TEXT NOT NULL,
        body BLOB NOT NULL,
        enqueued_us INTEGER NOT NULL,
        expires_us INTEGER,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN ('active', 'dead_lettered')),
        lock_token TEXT,
        locked_until_us INTEGER,
        dead_letter_reason TEXT,
        dead_letter_description TEXT,
        dead_lettered_us INTEGER
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS messages_in_order
        ON messages (topic, subscription, state, session_id, sequence_number)
    """,
    """
    CREATE UNIQUE INDEX IF NOT EXISTS messages_by_lock_token
        ON messages (lock_token) WHERE lock_token IS NOT NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS messages_by_sequence
        ON messages (topic, subscription, state, sequence_number)
    """,
    """
    CREATE INDEX IF NOT EXISTS messages_locked
        ON messages (topic, subscription, locked_until_us) WHERE lock_token IS NOT NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS messages_expiring
        ON messages (topic, subscription, expires_us)
        WHERE expires_us IS NOT NULL AND state = 'active'
    """,
    """
    CREATE TABLE IF NOT EXISTS session_locks (
        topic TEXT NOT NULL,
        subscription TEXT NOT NULL,
        session_id TEXT NOT NULL,
        token TEXT NOT NULL,
        locked_until_us INTEGER NOT NULL,
        PRIMARY KEY (topic, subscription, session_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS seen_message_ids (
        topic TEXT NOT NULL,
        message_id TEXT NOT NULL,
        seen_us INTEGER NOT NULL,
        PRIMARY KEY (topic, message_id)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS seen_message_ids_by_time ON seen_message_ids (topic, seen_us)
    """,
)
