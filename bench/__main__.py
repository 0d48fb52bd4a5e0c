"""``python -m bench [--quick] [--only NAME]``: every benchmark, one table, JSON and a chart.

``--only`` names a module, with or without its ``bench.`` prefix (``--only hot_sku`` runs
``bench.hot_sku`` and not ``bench.hot_sku_azure``, which has its own name); repeat it to
run several.

Each benchmark module in this package exposes ``run(quick) -> list[Row]``. The table
prints each scenario's figure, the baseline measured in the same run, the ratio and the
goal; ``bench/results/latest.json`` and ``latest.png`` keep every run's. A full run (no
``--quick``, no ``--only``) is also the record the pages show: ``bench.report`` writes
``docs/bench-latest.json``, its chart, and the generated blocks of README.md and
docs/performance.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import report
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


def selected(name: str, only: list[str]) -> bool:
    """Whether ``--only`` (``only``; empty: everything) names the module ``name``: by its
    whole name, with or without the package prefix. Never by a part of it, so that one
    module's name inside another's (``hot_sku`` in ``hot_sku_azure``) selects one."""
    return not only or any(part in (name, name.removeprefix("bench.")) for part in only)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only this module (bench.NAME or NAME; repeatable)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    started_at, started, machine = datetime.now(UTC), time.monotonic(), report.machine()
    full = not args.quick and not args.only
    for name in BENCHMARKS:
        if not selected(name, args.only):
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as missing:
            print(f"skipping {name}: {missing}", file=sys.stderr)
            full = False
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(quick=args.quick))
    print(report.table(rows))
    RESULTS.mkdir(exist_ok=True)
    document = {
        "measured_at": started_at.isoformat(),
        "duration_seconds": round(time.monotonic() - started),
        "commit": report.commit(),
        "full": full,
        "machine": machine,
        "rows": [r.as_dict() for r in rows],
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    report.chart(rows, RESULTS / "latest.png")
    print(f"\nwritten: {RESULTS / 'latest.json'}, {RESULTS / 'latest.png'}")
    if full:
        report.record(document, rows)
        print(f"recorded as the latest full run: {report.RECORD.relative_to(report.ROOT)}, "
              "README.md and docs/performance.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
