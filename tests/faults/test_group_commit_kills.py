"""A process writing through the group commit, SIGKILLed while its groups are being
written: nothing acknowledged is lost, nothing is recorded in part, nothing oversold, and
a retry of every command left unanswered returns its result without recording it twice.

``STOCKSTREAM_FAULT_GROUP_KILLS`` kills (20 in ``make faults``, 3 in ``make test``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from adapters.clock import SystemClock
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from domain.errors import InsufficientStock
from domain.stock_item import StockItem
from tests.faults.group_commit_writer import LOCATION, SKUS

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("STOCKSTREAM_FAULT_GROUP_KILLS", "3"))


def run_and_kill(data: Path, seed: int, acks_before_kill: int) -> list[str]:
    """Start the writer, SIGKILL it once it acknowledged ``acks_before_kill`` commands,
    and return every line it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.group_commit_writer", "--data", str(data),
         "--seed", str(seed)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    lines: list[str] = []
    acks = 0
    killer = threading.Timer(60, process.kill)  # a writer that hangs fails, not the suite
    killer.start()
    try:
        for raw in process.stdout:
            line = raw.decode().strip()
            lines.append(line)
            if line.startswith("ack "):
                acks += 1
                if acks >= acks_before_kill:
                    process.send_signal(signal.SIGKILL)
                    break
        lines.extend(raw.decode().strip() for raw in process.stdout)  # printed before death
    finally:
        killer.cancel()
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    return [line for line in lines if line]


def check_history(store: SQLiteStockItems, lines: list[str]) -> dict[str, int]:
    started = {(p[1], p[2]): int(p[3]) for p in (line.split() for line in lines)
               if p[0] == "start"}
    acked = {(p[1], p[2]) for p in (line.split() for line in lines) if p[0] == "ack"}
    answered = acked | {(p[1], p[2]) for p in (line.split() for line in lines)
                        if p[0] == "refused"}
    receipts: Counter[str] = Counter()
    lost = oversold = partial = 0
    for n in range(SKUS):
        sku = f"SKU-{n}"
        events = store.events(sku, LOCATION)
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
        for event in events:
            if isinstance(event, StockItem.Received):
                receipts[str(event.idempotency_key)] += 1
                # The memo is written in the same transaction as its event.
                if store.recall(sku, LOCATION, StockItem.key_memo(
                        str(event.idempotency_key))) is None:
                    partial += 1
        item = store.get(sku, LOCATION)
        if item is None:
            continue
        on_hand = sum(e.quantity for e in events if isinstance(e, StockItem.Received))
        assert item.on_hand == on_hand
        oversold += max(0, item.reserved - item.on_hand)
        for kind, ident in acked:
            if not ident.startswith(f"{sku}."):
                continue
            if kind == "receipt" and receipts[ident] != 1:
                lost += 1
            if kind == "reservation" and ident not in item.reservations:
                lost += 1
    assert all(count == 1 for count in receipts.values())
    return {"acknowledged": len(acked), "lost": lost, "partially_recorded": partial,
            "oversold": oversold, "unanswered": len(set(started) - answered)}


def retry_unanswered(store: SQLiteStockItems, lines: list[str]) -> int:
    """Send every unanswered command again; each must answer, none be recorded twice."""
    started = {(p[1], p[2]): int(p[3]) for p in (line.split() for line in lines)
               if p[0] == "start"}
    answered = {(p[1], p[2]) for p in (line.split() for line in lines)
                if p[0] in ("ack", "refused")}
    commands = StockCommands(store, SystemClock(), group_commit=True)
    retried = 0
    for (kind, ident), quantity in started.items():
        if (kind, ident) in answered:
            continue
        sku = ident.split(".", 1)[0]
        retried += 1
        before = store.get(sku, LOCATION)
        try:
            if kind == "receipt":
                result = commands.receive(sku, LOCATION, quantity, idempotency_key=ident)
                again = commands.receive(sku, LOCATION, quantity, idempotency_key=ident)
                assert again.events == []
                assert sum(1 for e in store.events(sku, LOCATION)
                           if isinstance(e, StockItem.Received)
                           and e.idempotency_key == ident) == 1
            else:
                result = commands.reserve(sku, LOCATION, ident, quantity, "web")
                assert result.item is not None
                assert result.item.reservations[ident]["quantity"] == quantity
        except InsufficientStock:
            assert kind == "reservation"
            assert before is None or ident not in before.reservations
    return retried


def test_a_sigkill_in_the_middle_of_group_commits_loses_nothing_acknowledged(
        tmp_path: Path, reliability: Any) -> None:
    rng = random.Random(20261203)
    for kill in range(KILLS):
        data = tmp_path / f"run-{kill}"
        lines = run_and_kill(data, kill, rng.randint(40, 400))
        store = SQLiteStockItems(data / "events.db")
        try:
            figures = check_history(store, lines)
            retried = retry_unanswered(store, lines)
        finally:
            store.close()
        assert figures["lost"] == figures["partially_recorded"] == figures["oversold"] == 0
        reliability.record("group commit killed mid-write (SIGKILL)", kills=1,
                           retried_unanswered=retried, **figures)
