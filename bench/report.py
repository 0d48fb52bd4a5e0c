"""The record of the latest full ``make bench``, and the pages generated from it.

A full run (every module, full size) is committed as ``docs/bench-latest.json`` with its
chart, and the blocks between ``<!-- bench:latest -->`` markers in README.md and
docs/performance.md are rendered from that file alone: so the tables a reader sees are the
figures of one run on one described machine, and a test can tell when someone edited a
figure by hand or ran part of the suite and left the pages behind. Partial runs
(``--only``, ``--quick``) print their table and keep it under ``bench/results/`` only.

``python -m bench.report`` re-renders the chart and the blocks from the committed record
(after a wording change here, say); it never measures anything.
"""

from __future__ import annotations

import json
import operator
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import Row

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "docs" / "bench-latest.json"
CHART = ROOT / "docs" / "images" / "bench-latest.png"
PAGES = {ROOT / "README.md": "docs/images/bench-latest.png",
         ROOT / "docs" / "performance.md": "images/bench-latest.png"}
BEGIN = "<!-- bench:latest -->"
END = "<!-- /bench:latest -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt,
}


def machine() -> dict[str, Any]:
    """What a reader needs to weigh the figures: cores, CPU, OS, Python and how busy the
    machine was (the load average over the last minute when the run started)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count() or 0,
        "load_average": round(os.getloadavg()[0], 2),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def commit() -> str:
    """The commit measured, marked ``+changes`` when the work tree differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def goal_met(row: Row) -> bool | None:
    """Whether the row meets its goal: the ratio is judged when there is a baseline, the
    figure itself otherwise (a lag in ms, oversold units); None when there is no goal."""
    match = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*([0-9.]+)\s*", row.goal)
    if match is None:
        return None
    measured = row.ratio if row.ratio is not None else row.value
    return _COMPARISONS[match[1]](measured, float(match[2]))


def table(rows: list[Row]) -> str:
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


def chart(rows: list[Row], path: Path) -> None:
    """Every ratio as a bar against its goal: green met, orange missed, blue no goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charted = [(r, ratio) for r in rows if (ratio := r.ratio) is not None]
    if not charted:
        return
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(charted) + 1.5))
    names = [r.scenario if len(r.scenario) <= 64 else r.scenario[:63] + "…" for r, _ in charted]
    colours = ["#3b7dd8" if (met := goal_met(r)) is None else ("#2e9e5b" if met else "#d9822b")
               for r, _ in charted]
    ax.barh(names, [ratio for _, ratio in charted], color=colours)
    for y, (row, _) in enumerate(charted):
        if (goal := _goal_ratio(row.goal)) is not None:
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("ratio to the baseline measured in the same run\n"
                  "(black tick: the goal; green: met, orange: missed)")
    ax.set_title("Stockstream benchmarks")
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long scenario names stay whole
    plt.close(fig)


def _goal_ratio(goal: str) -> float | None:
    match = re.fullmatch(r"\s*(>=|>)\s*([0-9.]+)\s*", goal)
    return float(match[2]) if match else None


def rows_of(document: dict[str, Any]) -> list[Row]:
    names = {f.name for f in fields(Row)}
    return [Row(**{k: v for k, v in row.items() if k in names}) for row in document["rows"]]


def render(document: dict[str, Any], chart_link: str) -> str:
    """The generated block of a page: when, what commit, which machine, the table, each
    goal met or missed, and the chart."""
    rows = rows_of(document)
    m = document["machine"]
    when = datetime.fromisoformat(document["measured_at"]).strftime("%Y-%m-%d %H:%M UTC")
    minutes = document.get("duration_seconds", 0) / 60
    goals = [(row, met) for row in rows if (met := goal_met(row)) is not None]
    lines = [
        BEGIN,
        f"Full `make bench` of {when} on commit `{document['commit']}` "
        f"({minutes:.0f} min). Machine: {m['cpus']} CPUs ({m['processor'] or 'unknown CPU'}), "
        f"{m['platform']}, CPython {m['python']}; load average {m['load_average']} when it "
        f"started. Each ratio is to a baseline measured in the same run.",
        "",
        "```",
        table(rows),
        "```",
        "",
        "| goal | measured | met? |",
        "|---|---|---|",
    ]
    for row, met in goals:
        measured = (_ratio_shown(row, met) if row.ratio is not None
                    else f"{row.value:,.1f} {row.unit}")
        lines.append(f"| {row.scenario}: {'ratio ' if row.ratio is not None else ''}"
                     f"{row.goal} | {measured} | {'yes' if met else '**no**'} |")
    met_count = sum(1 for _, met in goals if met)
    lines += ["", f"{met_count} of {len(goals)} goals met.", "",
              f"![Benchmark ratios against their goals]({chart_link})", END]
    return "\n".join(lines)


def _ratio_shown(row: Row, met: bool) -> str:
    """The ratio to two places, or to three when two would read as the other verdict
    (0.996 against ``>= 1.0`` is missed, not "1.00, no")."""
    assert row.ratio is not None
    shown = f"{row.ratio:.2f}"
    rounded = Row(row.scenario, row.unit, float(shown), 1.0, row.goal)
    return shown if goal_met(rounded) is met else f"{row.ratio:.3f}"


def rewrite_pages(document: dict[str, Any]) -> list[Path]:
    """Replace each page's generated block; a page without the markers is left alone."""
    changed = []
    for page, chart_link in PAGES.items():
        text = page.read_text()
        match = _BLOCK.search(text)
        if match is None:
            continue
        new = text[:match.start()] + render(document, chart_link) + text[match.end():]
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def record(document: dict[str, Any], rows: list[Row]) -> None:
    """Keep a full run: the JSON record, its chart and the pages rendered from it."""
    RECORD.write_text(json.dumps(document, indent=2) + "\n")
    chart(rows, CHART)
    rewrite_pages(document)


def main() -> int:
    document = json.loads(RECORD.read_text())
    chart(rows_of(document), CHART)
    changed = rewrite_pages(document)
    for page in changed:
        print(f"rewritten: {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
