"""``python -m bench [--quick] [--only NAME]``: every benchmark, one table, JSON and a chart.

Each benchmark module in this package exposes ``run(quick) -> list[Row]``. The table
prints each scenario's figure, the baseline measured in the same run, the ratio and the
goal; ``bench/results/latest.json`` and ``latest.png`` keep the same for the README.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Row

BENCHMARKS = (
    "bench.command_path",
    "bench.batch_route",
    "bench.http_reservations",
    "bench.orders",
    "bench.states",
    "bench.hot_sku",
    "bench.hot_sku_azure",
    "bench.pipeline_lag",
    "bench.reconciliation",
    "bench.counts",
    "bench.scaling",
)
RESULTS = Path(__file__).parent / "results"


def _table(rows: list[Row]) -> str:
    header = f"{'scenario':<58} {'value':>12} {'baseline':>12} {'ratio':>7}  goal"
    lines = [header, "-" * len(header)]
    for row in rows:
        baseline = f"{row.baseline:,.1f}" if row.baseline is not None else "-"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(
            f"{row.scenario[:58]:<58} {row.value:>12,.1f} {baseline:>12} {ratio:>7}  "
            f"{row.goal} {row.unit}"
        )
    return "\n".join(lines)


def _chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charted = [(r, ratio) for r in rows if (ratio := r.ratio) is not None]
    if not charted:
        return
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(charted) + 1.5))
    names = [r.scenario[:60] for r, _ in charted]
    goals = [_goal(r.goal) for r, _ in charted]
    colours = ["#3b7dd8" if g is None else ("#2e9e5b" if ratio >= g else "#d9822b")
               for (_, ratio), g in zip(charted, goals, strict=True)]
    ax.barh(names, [ratio for _, ratio in charted], color=colours)
    for y, goal in enumerate(goals):
        if goal is not None:
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("ratio to the baseline measured in the same run "
                  "(black tick: the goal; green: met, orange: missed)")
    ax.set_title("Stockstream benchmarks")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _goal(goal: str) -> float | None:
    """The ratio a ``>= x`` goal asks for (other goals are not ratios)."""
    if goal.startswith(">="):
        try:
            return float(goal[2:])
        except ValueError:
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--only", action="append", default=[], help="run only these modules")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for name in BENCHMARKS:
        if args.only and not any(part in name for part in args.only):
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            print(f"skipping {name}: {missing}", file=sys.stderr)
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(quick=args.quick))
    print(_table(rows))
    RESULTS.mkdir(exist_ok=True)
    document = {
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor(), "cpus": _cpus()},
        "rows": [r.as_dict() for r in rows],
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    _chart(rows, RESULTS / "latest.png")
    print(f"\nwritten: {RESULTS / 'latest.json'}, {RESULTS / 'latest.png'}")
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
