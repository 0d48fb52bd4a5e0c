"""The process ``test_group_commit_kills`` kills: 16 threads sending commands through the
group commit of a real SQLite event store, each acknowledgement printed only after its
command returned (so after its group was durable).

Lines: ``start <kind> <id> <quantity>`` before a command, ``ack <kind> <id> <version>``
after it returned, ``refused <kind> <id>`` after a refusal. Runs until killed.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
from pathlib import Path

from adapters.clock import SystemClock
from adapters.sqlite import SQLiteStockItems
from application.commands import StockCommands
from domain.errors import DomainError

THREADS = 16
SKUS = 6
LOCATION = "STORE-1"

_out = threading.Lock()


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def client(commands: StockCommands, thread: int, seed: int) -> None:
    rng = random.Random(seed * 100 + thread)
    n = 0
    while True:
        n += 1
        sku = f"SKU-{rng.randrange(SKUS)}"
        ident = f"{sku}.t{thread}-{n}"
        quantity = rng.randint(1, 3)
        kind = "receipt" if rng.random() < 0.4 else "reservation"
        say(f"start {kind} {ident} {quantity}")
        try:
            if kind == "receipt":
                result = commands.receive(sku, LOCATION, quantity, idempotency_key=ident)
            else:
                result = commands.reserve(sku, LOCATION, ident, quantity, "web")
        except DomainError:
            say(f"refused {kind} {ident}")
            continue
        say(f"ack {kind} {ident} {result.position_of().version}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = SQLiteStockItems(args.data / "events.db")
    commands = StockCommands(store, SystemClock(), group_commit=True)
    for n in range(THREADS):
        threading.Thread(target=client, args=(commands, n, args.seed), daemon=True).start()
    say("ready")
    threading.Event().wait()


if __name__ == "__main__":
    main()
