"""The benchmark tables in README.md and docs/performance.md are the latest full
``make bench``, rendered from its committed record, with each goal judged the same way."""

from __future__ import annotations

import json

import pytest

from bench import report
from bench.__main__ import selected
from bench.common import Row


def test_the_pages_show_the_recorded_full_run_as_rendered() -> None:
    document = json.loads(report.RECORD.read_text())
    assert document["full"], "the record must be a full run (no --quick, no --only)"
    assert report.CHART.exists()
    for page, chart_link in report.PAGES.items():
        text = page.read_text()
        assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1, page
        block = text[text.index(report.BEGIN):text.index(report.END) + len(report.END)]
        assert block == report.render(document, chart_link), (
            f"{page.name}'s benchmark block differs from docs/bench-latest.json: "
            "run `make bench` (or `python -m bench.report` after a wording change)")


def test_the_record_names_the_machine_and_the_commit() -> None:
    document = json.loads(report.RECORD.read_text())
    assert document["machine"]["cpus"] >= 1
    assert document["machine"]["processor"]
    assert document["commit"] and document["commit"] != "unknown"
    assert document["rows"]


@pytest.mark.parametrize(("row", "met"), [
    (Row("ratio met", "x/s", 150.0, 100.0, ">= 1.0"), True),
    (Row("ratio missed", "x/s", 99.0, 100.0, ">= 1.0"), False),
    (Row("lag under the bound", "ms", 80.0, None, "< 100"), True),
    (Row("lag over the bound", "ms", 100.0, None, "< 100"), False),
    (Row("nothing oversold", "units", 0.0, None, "== 0"), True),
    (Row("something oversold", "units", 2.0, None, "== 0"), False),
    (Row("no goal", "ms", 5.0, 4.0, ""), None),
])
def test_a_goal_is_judged_on_the_ratio_when_there_is_a_baseline(row: Row, met: bool | None) -> None:
    assert report.goal_met(row) is met


def a_record(*rows: Row) -> dict[str, object]:
    """A full run's record of ``rows`` on a described machine."""
    return {
        "measured_at": "2026-12-03T08:00:00+00:00", "duration_seconds": 600, "commit": "abc",
        "full": True,
        "machine": {"python": "3.11.7", "platform": "Linux", "processor": "CPU", "cpus": 2,
                    "load_average": 0.5},
        "rows": [row.as_dict() for row in rows],
    }


def test_a_block_names_every_goal_met_or_missed() -> None:
    block = report.render(a_record(Row("fast", "x/s", 3.0, 1.0, ">= 2"),
                                   Row("slow", "x/s", 1.0, 2.0, ">= 1.0")), "images/chart.png")
    assert "| fast: ratio >= 2 | 3.00 | yes |" in block
    assert "| slow: ratio >= 1.0 | 0.50 | **no** |" in block
    assert "1 of 2 goals met." in block
    assert "2 CPUs (CPU)" in block and "commit `abc`" in block


def test_a_ratio_that_rounds_onto_its_goal_is_shown_to_three_places() -> None:
    block = report.render(a_record(Row("just short", "x/s", 99.6, 100.0, ">= 1.0")), "c.png")
    assert "| just short: ratio >= 1.0 | 0.996 | **no** |" in block


@pytest.mark.parametrize(("only", "chosen"), [
    ([], {"bench.hot_sku", "bench.hot_sku_azure", "bench.command_path"}),
    (["hot_sku"], {"bench.hot_sku"}),
    (["bench.hot_sku"], {"bench.hot_sku"}),
    (["hot_sku_azure"], {"bench.hot_sku_azure"}),
    (["hot_sku", "command_path"], {"bench.hot_sku", "bench.command_path"}),
    (["hot"], set()),
])
def test_only_selects_modules_by_their_whole_name(only: list[str], chosen: set[str]) -> None:
    modules = {"bench.hot_sku", "bench.hot_sku_azure", "bench.command_path"}
    assert {name for name in modules if selected(name, only)} == chosen
