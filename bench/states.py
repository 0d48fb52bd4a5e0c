"""Stock states and incoming supply: what they cost the command path (issue 17).

Two sets of 256 SKU-locations in one store, measured command by command interleaved
(``bench.common.interleaved_rates``):

- plain: sellable stock only, as before issue 17;
- in use: each also holds damaged and quality-control units and three expected
  receipts (incoming supply), so its state, every event's position and every decision
  carry them.

Scenarios (goal ≥ 0.9 for each):

1. the same channel commands on both sets (reserve, receive, fulfil, release);
2. the commands that use states and incoming (a state move, an expected receipt set)
   against the commands a store would use without them (an adjustment, a receipt),
   each on its own set.

Run alone with ``python -m bench.states [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from application.commands import StockCommands
from bench.common import Row, interleaved_rates, print_rows, services

ITEMS = 256
GOAL = ">= 0.9"
PLAIN, IN_USE = "PLAIN", "STATES"


def stock_up(commands: StockCommands, due: datetime) -> None:
    for n in range(ITEMS):
        commands.receive(f"SKU-{n}", PLAIN, 1_000_000)
        commands.receive(f"SKU-{n}", IN_USE, 1_000_000)
        commands.move_state(f"SKU-{n}", IN_USE, 20, "sellable", "damaged")
        commands.move_state(f"SKU-{n}", IN_USE, 10, "sellable", "quality_control")
        for k in range(3):
            commands.set_incoming(f"SKU-{n}", IN_USE, f"PO-{k}", 100, due + timedelta(days=k))


def channel_commands(commands: StockCommands, location: str, tag: str) -> Callable[[int], None]:
    """Command ``i``, one write each: reserve two orders, receive, fulfil one order and
    release the other, in turn, spread over the items."""

    def command(i: int) -> None:
        sku, turn = f"SKU-{(i // 5) % ITEMS}", i % 5
        order = f"{tag}-{i // 5}"
        if turn == 0:
            commands.reserve(sku, location, f"{order}-a", 2, "web")
        elif turn == 1:
            commands.reserve(sku, location, f"{order}-b", 1, "web")
        elif turn == 2:
            commands.receive(sku, location, 1)
        elif turn == 3:
            commands.fulfil(sku, location, f"{order}-a", 1)
        else:
            commands.release(sku, location, f"{order}-b")

    return command


def state_commands(commands: StockCommands, due: datetime,
                   tag: str) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """(a state move or an expected receipt in turn, on the in-use set; an adjustment
    or a receipt in turn, on the plain set): one write each."""

    def with_states(i: int) -> None:
        sku = f"SKU-{i % ITEMS}"
        if i % 2 == 0:
            commands.move_state(sku, IN_USE, 1, "sellable", "damaged",
                                idempotency_key=f"{tag}-{i}")
        else:
            commands.set_incoming(sku, IN_USE, f"{tag}-{i}", 5, due)

    def without(i: int) -> None:
        sku = f"SKU-{i % ITEMS}"
        if i % 2 == 0:
            commands.adjust(sku, PLAIN, -1, "damaged", idempotency_key=f"{tag}-{i}")
        else:
            commands.receive(sku, PLAIN, 5, reference=f"{tag}-{i}")

    return with_states, without


def measure(count: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((channel commands/s in use, plain), (state commands/s, old kinds/s)), the four
    interleaved command by command (``interleaved_rates``)."""
    due = datetime.now(UTC) + timedelta(days=2)
    with tempfile.TemporaryDirectory() as tmp:
        built = services(Path(tmp))
        try:
            commands = built.commands
            stock_up(commands, due)
            with_states, without = state_commands(commands, due, "m")
            m = interleaved_rates({
                "in use": channel_commands(commands, IN_USE, "m"),
                "plain": channel_commands(commands, PLAIN, "m"),
                "states": with_states,
                "old": without,
            }, count)
        finally:
            built.close()
    return (m["in use"], m["plain"]), (m["states"], m["old"])


def run(quick: bool = False) -> list[Row]:
    (in_use, plain), (states, old) = measure(1000 if quick else 10_000)
    return [
        Row(scenario="channel commands, stock in states + incoming vs plain",
            unit="commands/s", value=in_use, baseline=plain, goal=GOAL,
            note="reserve, receive, fulfil, release on SKU-locations holding damaged and QC "
                 "units and 3 expected receipts vs sellable only; interleaved"),
        Row(scenario="state moves + expected receipts vs adjustments + receipts",
            unit="commands/s", value=states, baseline=old, goal=GOAL,
            note="move_state / set_incoming on the in-use set vs adjust / receive on the "
                 "plain set, one write each; interleaved"),
    ]


def main(argv: list[str]) -> int:
    print_rows(run(quick="--quick" in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
