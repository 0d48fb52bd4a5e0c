"""The drift report's CSV opens in a spreadsheet as text and numbers, never as formulas."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from application.count_files import read_count_file
from application.holds import HoldPolicy
from functions.container import Container, ReconciliationServices
from reports.drift import write_report
from tests.reconciliation.conftest import count_row, instant

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3",
            "@SUM(A1:A9)", "\tindent", "\rreturn"]


def test_text_cells_a_spreadsheet_would_run_are_neutralised_and_numbers_stay_numbers(
        container: Container, services: ReconciliationServices, tmp_path: Path):
    container.commands.receive("SKU-1", "STORE-1", 10)
    t = instant()
    rows = [count_row("SKU-1", 4, t)]  # applied: drift -6
    rows += [count_row(text, 1, t) for text in FORMULAS]  # rejected: not a SKU
    rows += [{**count_row("SKU-2", 1, t), "location": "=1+1", "count_id": "@C"}]
    path = tmp_path / "counts.json"  # JSON keeps every character as it was sent
    path.write_text(json.dumps(rows))
    session = services.reconciler.reconcile(read_count_file(path), policy=HoldPolicy())

    written = write_report(session, tmp_path / "reports")

    with written.csv.open(newline="", encoding="utf-8") as handle:
        cells = list(csv.DictReader(handle))
    assert cells[0]["drift_units"] == "-6" and cells[0]["counted"] == "4"  # numbers
    assert cells[0]["sku"] == "SKU-1"
    rejected = cells[1:]
    assert [r["sku"] for r in rejected[:-1]] == ["'" + text for text in FORMULAS]
    assert (rejected[-1]["location"], rejected[-1]["count_id"]) == ("'=1+1", "'@C")
    for row in cells:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
            assert not value.startswith("-") or value.lstrip("-").replace(".", "").isdigit()


@pytest.mark.parametrize(("value", "cell"), [
    (-5, -5), (-2.5, -2.5), (0, 0), (None, ""), ("", ""), ("SKU-1", "SKU-1"),
    ("-5", "'-5"), ("=A1", "'=A1"), ("a=b", "a=b"), ("\nx", "'\nx"), ("\rx", "'\rx"),
])
def test_a_spreadsheet_cell_quotes_only_text_that_starts_like_a_formula(value, cell):
    from reports.drift import spreadsheet_cell

    assert spreadsheet_cell(value) == cell
