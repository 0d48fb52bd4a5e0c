"""A downstream team's consumer of the ``inventory-events`` topic, to copy and adapt.

    python samples/downstream_consumer.py --namespace <ns>.servicebus.windows.net \\
        --subscription <your subscription> --kind state --db consumer.db

It signs in with ``DefaultAzureCredential`` as the principal the deployment gave Azure
Service Bus Data Receiver on your subscription (docs/deploy.md, "Onboarding a downstream
team"), takes one session (one SKU-location) at a time, validates every message against
the event registry (the contract package, ``pip install ./packages/stockstream-contract``:
no Stockstream code beyond it), and applies it with the deduplication rule of its kind
(docs/downstream.md, "Deduplicate by what you keep"):

- ``state``: keeps the position per SKU-location; a message whose ``sequence`` is not above
  the one applied is a duplicate or a late replay, and changes nothing.
- ``movements``: keeps every event once, by its CloudEvents ``id``, whenever it arrives (a
  replay after newer events included); when a sequence is missing it reads the stream's
  events from ``GET /api/stock/{sku}/{location}/events?after=N`` (``--api`` and
  ``--function-key``) instead of waiting for a replay.

What it applies and what it records as applied are one SQLite transaction, and the message
is completed only after it: a crash in between redelivers the message, which then changes
nothing. A message that fails validation is dead-lettered with the reason
``SchemaValidationFailed`` and the failing field; one of a type or version this build does
not know is completed and skipped (a tolerant reader); any other failure abandons it, so
Service Bus redelivers it and dead-letters it after ``maxDeliveryCount``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The contract package (`pip install ./packages/stockstream-contract`); from a checkout
# without it, the same package at the repository's root.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
)
from azure.servicebus.exceptions import OperationTimeoutError

from stockstream_contract import (
    SchemaValidationFailed,
    UnknownEventType,
    validate_cloudevent,
    validate_message_body,
)

TOPIC = "inventory-events"
MAX_DESCRIPTION = 4096  # Service Bus' limit on a dead-letter description


class StatePositions:
    """The position per SKU-location (``subject``) at the highest sequence applied."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("CREATE TABLE IF NOT EXISTS positions (subject TEXT PRIMARY KEY, "
                   "sequence INTEGER, on_hand INTEGER, reserved INTEGER, available INTEGER)")

    def apply(self, event: dict[str, Any]) -> bool:
        """Set the position of ``event`` unless a later one is applied; True if it did."""
        data = event["data"]
        with transaction(self.db):
            changed = self.db.execute(
                "INSERT INTO positions VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE "
                "SET sequence = excluded.sequence, on_hand = excluded.on_hand, "
                "reserved = excluded.reserved, available = excluded.available "
                "WHERE excluded.sequence > positions.sequence",
                (event["subject"], event["sequence"], data["on_hand"], data["reserved"],
                 data["available"])).rowcount
        return changed == 1

    def position(self, subject: str) -> dict[str, int] | None:
        row = self.db.execute("SELECT sequence, on_hand, reserved, available FROM positions "
                              "WHERE subject = ?", (subject,)).fetchone()
        return None if row is None else dict(zip(
            ("sequence", "on_hand", "reserved", "available"), row, strict=True))


Backfill = Callable[[str, str, int], list[dict[str, Any]]]
"""Reads a stream's events after a sequence: ``(sku, location, after) -> CloudEvents``."""


class Movements:
    """Every event once, by its CloudEvents ``id``, with the gaps filled from the stream."""

    def __init__(self, db: sqlite3.Connection, backfill: Backfill | None) -> None:
        self.db = db
        self.backfill = backfill
        db.execute("CREATE TABLE IF NOT EXISTS movements (id TEXT PRIMARY KEY, subject TEXT, "
                   "sequence INTEGER, type TEXT, data TEXT)")

    def apply(self, event: dict[str, Any]) -> bool:
        """Record ``event`` unless its id is recorded; True if it did. Missing sequences
        before it are read from the stream first (when a backfill is configured)."""
        subject, sequence = event["subject"], int(event["sequence"])
        contiguous = self.contiguous(subject)
        # Only a stock stream can be read back (an order's events name no SKU-location).
        if self.backfill is not None and sequence > contiguous + 1 and "sku" in event["data"]:
            data = event["data"]
            for missing in self.backfill(data["sku"], data["location"], contiguous):
                if int(missing["sequence"]) < sequence:
                    validate_cloudevent(missing)
                    self._record(missing)
        return self._record(event)

    def _record(self, event: dict[str, Any]) -> bool:
        with transaction(self.db):
            added = self.db.execute(
                "INSERT INTO movements VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (event["id"], event["subject"], event["sequence"], event["type"],
                 json.dumps(event["data"]))).rowcount
        return added == 1

    def contiguous(self, subject: str) -> int:
        """The highest sequence up to which every movement of ``subject`` is recorded."""
        sequences = [s for (s,) in self.db.execute(
            "SELECT sequence FROM movements WHERE subject = ? ORDER BY sequence", (subject,))]
        last = 0
        for sequence in sequences:
            if sequence > last + 1:
                break
            last = sequence
        return last

    def recorded(self, subject: str) -> list[tuple[int, str]]:
        return list(self.db.execute("SELECT sequence, type FROM movements WHERE subject = ? "
                                    "ORDER BY sequence, type", (subject,)))


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def http_backfill(api: str, function_key: str | None) -> Backfill:
    """Read missing events from the channel API's events route."""

    def read(sku: str, location: str, after: int) -> list[dict[str, Any]]:
        request = urllib.request.Request(f"{api.rstrip('/')}/stock/{sku}/{location}/events"
                                         f"?after={after}")
        if function_key:
            request.add_header("x-functions-key", function_key)
        with urllib.request.urlopen(request, timeout=30) as response:
            events: list[dict[str, Any]] = json.load(response)
        return events

    return read


def handle(receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage,
           apply: Callable[[dict[str, Any]], bool]) -> str:
    """Validate, apply and settle one message; returns how it was settled."""
    try:
        event, _ = validate_message_body(b"".join(message.body))
    except SchemaValidationFailed as invalid:
        receiver.dead_letter_message(message, reason="SchemaValidationFailed",
                                     error_description=str(invalid)[:MAX_DESCRIPTION])
        return "dead-lettered"
    except UnknownEventType:
        receiver.complete_message(message)  # a newer producer: skip, never fail
        return "skipped"
    try:
        apply(event)
    except Exception:
        receiver.abandon_message(message)  # redelivered; dead-lettered after max deliveries
        return "abandoned"
    receiver.complete_message(message)
    return "completed"


def drain(client: ServiceBusClient, subscription: str,
          apply: Callable[[dict[str, Any]], bool], *, max_wait: float = 5.0,
          once: bool = False) -> dict[str, int]:
    """Take sessions one after another and settle their messages; with ``once``, stop when
    no session has messages. Returns how many messages were settled in each way."""
    settled: dict[str, int] = {}
    while True:
        try:
            with client.get_subscription_receiver(
                    TOPIC, subscription, session_id=NEXT_AVAILABLE_SESSION,
                    max_wait_time=max_wait) as receiver:
                while batch := receiver.receive_messages(max_message_count=32,
                                                         max_wait_time=max_wait):
                    for message in batch:
                        outcome = handle(receiver, message, apply)
                        settled[outcome] = settled.get(outcome, 0) + 1
        except OperationTimeoutError:  # no session with messages within max_wait
            if once:
                return settled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", required=True, help="<ns>.servicebus.windows.net")
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--kind", choices=("state", "movements"), required=True)
    parser.add_argument("--db", default="consumer.db")
    parser.add_argument("--api", help="the channel API, https://<app>.azurewebsites.net/api")
    parser.add_argument("--function-key", help="a function key for --api")
    args = parser.parse_args(argv)
    from azure.identity import DefaultAzureCredential

    db = sqlite3.connect(args.db, isolation_level=None)
    backfill = http_backfill(args.api, args.function_key) if args.api else None
    store = StatePositions(db) if args.kind == "state" else Movements(db, backfill)
    with ServiceBusClient(args.namespace, DefaultAzureCredential()) as client:
        drain(client, args.subscription, store.apply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
