"""The drift report of a count session: JSON, CSV and charts.

Drift of a SKU-location = counted − on hand at count time (units), and the same relative
to the on hand at count time (percent; none when that was zero). Value-free: no prices.
The report has per SKU-location rows, totals, the top drifts by size, the counts held
for approval, and the context of reservation expiry (units released by expiry at each
SKU-location between its previous count and this one) — a drift that matches expired
units points at a release that was never physically put back, not at a pipeline bug.

Files written by :func:`write_report` into a directory, named after the session:
``drift-<session>.json``, ``drift-<session>.csv``, ``drift-<session>-distribution.png``
and ``drift-history.png`` (drift over time across sessions). Charts need matplotlib
(a development requirement); without it they are skipped and the JSON says so.

:func:`latest_reports` and :func:`chart_file` read them back (the HTTP routes of
``functions.drift_reports``, which the operations console shows).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from application.reconciliation import CountResult, SessionResult, SessionSummary
from contracts.times import iso_utc

log = logging.getLogger(__name__)

TOP = 10
CSV_COLUMNS = ("position", "sku", "location", "count_id", "outcome", "counted", "counted_at",
               "on_hand_at_count", "drift_units", "drift_percent", "expired_units", "reason",
               "hold_id")


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
"""Leading characters that make a spreadsheet read a text cell as a formula (OWASP's
CSV-injection list, plus line feed)."""


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet opens as the text or number it is, never as a formula.

    Text starting with ``=``, ``+``, ``-``, ``@``, tab, CR or LF gets a leading single
    quote (the spreadsheets' own "this is text" mark); numbers stay numbers, so a drift of
    -5 is still -5; empty stays empty.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _row(result: CountResult) -> dict[str, Any]:
    return {
        "position": result.line, "sku": result.sku, "location": result.location,
        "count_id": result.count_id, "outcome": result.outcome, "counted": result.counted,
        "counted_at": iso_utc(result.counted_at), "on_hand_at_count": result.on_hand_at_count,
        "drift_units": result.drift_units,
        "drift_percent": None if result.drift_percent is None else round(result.drift_percent,
                                                                         3),
        "expired_units": result.expired_units, "reason": result.reason,
        "hold_id": result.hold_id,
    }


def report_document(session: SessionResult) -> dict[str, Any]:
    """The drift report as a JSON-ready document (see the module docstring)."""
    summary = session.summary()
    applied = session.with_outcome("applied")
    drifted = sorted((r for r in applied if r.drift_units),
                     key=lambda r: (-abs(r.drift_units or 0), r.sku or "", r.location or ""))
    return {
        "session_id": session.session_id,
        "source": session.source,
        "position": session.position,
        "started_at": iso_utc(session.started_at),
        "finished_at": iso_utc(session.finished_at),
        "all_or_nothing": session.all_or_nothing,
        "applied_none": session.applied_none,
        "totals": {
            "rows": summary.rows, "applied": summary.applied, "unchanged": summary.unchanged,
            "held": summary.held, "rejected": summary.rejected, "skipped": summary.skipped,
            "with_drift": len(drifted),
            "abs_drift_units": summary.abs_drift_units,
            "net_drift_units": summary.net_drift_units,
            "mean_abs_drift_percent": summary.mean_abs_drift_percent,
            "max_abs_drift_units": summary.max_abs_drift_units,
            "expired_units": sum(r.expired_units for r in applied),
        },
        "top_drifts": [_row(r) for r in drifted[:TOP]],
        "held": [_row(r) for r in session.with_outcome("held")],
        "rejected": [_row(r) for r in session.with_outcome("rejected")],
        "rows": [_row(r) for r in session.results],
    }


def write_csv(session: SessionResult, path: Path) -> None:
    """Every row of the session, one line each, with the columns of ``CSV_COLUMNS``; text
    cells are neutralised (:func:`spreadsheet_cell`), since rejected rows keep whatever
    the count file said."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for result in session.results:
            writer.writerow({k: spreadsheet_cell(v) for k, v in _row(result).items()})


@dataclass(frozen=True)
class WrittenReport:
    json: Path
    csv: Path
    charts: tuple[Path, ...]
    charts_skipped: str | None = None


def write_report(session: SessionResult, directory: Path,
                 history: Sequence[SessionSummary] = ()) -> WrittenReport:
    """Write the session's JSON, CSV and charts into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"drift-{session.session_id}"
    document = report_document(session)
    charts: tuple[Path, ...] = ()
    skipped: str | None = None
    try:
        from reports.charts import distribution_chart, history_chart
    except ImportError as missing:  # matplotlib is a development requirement
        skipped = f"charts skipped: {missing}"
    else:
        distribution = directory / f"{stem}-distribution.png"
        over_time = directory / "drift-history.png"
        distribution_chart(session, distribution)
        history_chart(history, over_time)
        charts = (distribution, over_time)
    document["charts"] = [p.name for p in charts]
    if skipped:
        document["charts_skipped"] = skipped
    json_path = directory / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    csv_path = directory / f"{stem}.csv"
    write_csv(session, csv_path)
    return WrittenReport(json_path, csv_path, charts, skipped)


# ------------------------------------------------------------------- reading


_CHART_NAME = re.compile(r"drift-[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.png")


def latest_reports(directory: Path, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most recently written drift reports in ``directory`` (the documents
    :func:`report_document` made, with ``charts``), newest first.

    A file that cannot be read or parsed is skipped (and logged), so a report being
    written, or one damaged by hand, never hides the others. No directory: no reports.
    """
    try:
        candidates = [p for p in directory.glob("drift-*.json") if p.is_file()]
    except OSError:
        return []
    candidates.sort(key=lambda p: (_mtime(p), p.name), reverse=True)
    found: list[dict[str, Any]] = []
    for path in candidates:
        if len(found) >= limit:
            break
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            log.warning("skipping drift report %s: %s", path.name, error)
            continue
        if isinstance(document, dict) and isinstance(document.get("session_id"), str):
            found.append(document)
    return found


def chart_file(directory: Path, name: str) -> Path | None:
    """The chart ``name`` (``drift-….png``) in ``directory``, or None when there is no
    such chart. Only a plain file directly in ``directory`` with a chart's name is ever
    returned: no other name, no path, no symbolic link leading out of it."""
    if not _CHART_NAME.fullmatch(name) or ".." in name:
        return None
    path = directory / name
    try:
        if path.is_symlink() or not path.is_file():
            return None
    except OSError:
        return None
    return path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
