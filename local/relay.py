"""``python -m local.relay --data DIR``: the embedded relay alone, as its own process.

The embedded host runs the relay in a thread; this runs it separately (for instance next
to a host that only serves commands, or to kill it in the fault suite). It polls the
event store's commit-ordered log, publishes to the embedded broker, checkpoints, and
stops on SIGTERM/SIGINT after the batch in hand. Killed at any moment, it loses nothing:
the next start publishes again from the checkpoint.

``--unsafe-checkpoint-first`` deliberately breaks the order (checkpoint, then publish) so
the fault suite can show that it notices lost events; never use it otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from adapters.clock import SystemClock
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.sqlite import SQLiteStockItems
from application.relay import Relay


class CheckpointFirstRelay(Relay):
    """A relay with the classic outbox bug: it advances the checkpoint before publishing."""

    def pump(self) -> int:
        after = self.checkpoints.position(self.NAME)
        records = self.outbox.read_after(after, self.batch_size)
        if not records:
            return 0
        self.checkpoints.advance(self.NAME, records[-1].position)
        time.sleep(0.02)  # a slow broker: the window in which a crash loses the batch
        self.publisher.publish(self.topic, [m for r in records for m in self.messages(r.event)])
        return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.relay", description=__doc__)
    parser.add_argument("--data", required=True, help="the embedded host's data directory")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--interval", type=float, default=0.01, help="idle poll, seconds")
    parser.add_argument("--unsafe-checkpoint-first", action="store_true")
    args = parser.parse_args(argv)
    data = Path(args.data)
    store = SQLiteStockItems(data / "events.db")
    broker = EmbeddedBroker(data / "broker.db")
    ensure_topology(broker)
    relay_class = CheckpointFirstRelay if args.unsafe_checkpoint_first else Relay
    relay = relay_class(store, broker, store.checkpoints(), SystemClock(),
                        batch_size=args.batch_size)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("relay ready", flush=True)
    while not stopping.is_set():
        if relay.pump() == 0:
            stopping.wait(args.interval)
    broker.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
