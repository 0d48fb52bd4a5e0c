"""Timestamps at the edges of what Python can represent, counts outside the count window,
and files the CLI cannot read: a 4xx (or exit 2) and nothing applied, never a 5xx, a
traceback or half a session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from application.settings import load
from functions.container import Container, build_container, use_container
from tests.http.conftest import SKU, call
from tests.reconciliation.conftest import count_row, csv_text, instant

ROOT = Path(__file__).resolve().parents[2]

EDGES = [
    "0001-01-01T00:30:00+01:00",  # year 0 in UTC
    "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
]
RELATIVE = {
    "8 days back": timedelta(days=-8),  # older than the 7-day default
    "10 minutes ahead": timedelta(minutes=10),  # beyond 5 minutes ahead
}
OUT_OF_WINDOW = [*EDGES, *RELATIVE]


@pytest.fixture
def counted_at(request: pytest.FixtureRequest) -> str:
    """The parameter as a timestamp, a relative one taken when the test runs (a suite
    running long under load must not age "10 minutes ahead" into the window)."""
    value: str = request.param
    offset = RELATIVE.get(value)
    return value if offset is None else (datetime.now(UTC) + offset).isoformat()


@pytest.fixture
def installed(container: Container) -> Iterator[Container]:
    use_container(container)
    yield container
    use_container(None)


def recorded(container: Container) -> int:
    return container.store.max_position()  # type: ignore[attr-defined,no-any-return]


# ------------------------------------------------------------------------ HTTP


@pytest.mark.parametrize("counted_at", OUT_OF_WINDOW, indirect=True)
def test_a_count_outside_the_window_is_a_422_and_records_nothing(installed: Container,
                                                                 counted_at: str):
    installed.commands.receive("SKU-1", "STORE-1", 10)
    before = recorded(installed)

    answer = call("record_count", "POST", SKU,
                  {"count_id": "C-1", "counted": 3, "counted_at": counted_at})

    assert (answer.status, answer.problem_code) == (422, "invalid-request")
    assert [e["field"] for e in answer.body["errors"]] == ["counted_at"]
    assert recorded(installed) == before


@pytest.mark.parametrize("counted_at", EDGES, indirect=True)
def test_an_all_or_nothing_session_with_an_edge_timestamp_applies_nothing(
        installed: Container, counted_at: str):
    t = instant()
    before = recorded(installed)
    body = {"counts": [count_row("SKU-1", 7, t),
                       {**count_row("SKU-2", 1, t), "counted_at": counted_at},
                       count_row("SKU-3", 2, t)],
            "all_or_nothing": True}

    answer = call("reconcile_counts", "POST", body=body)

    assert (answer.status, answer.problem_code) == (422, "counts-rejected")
    assert [e["field"] for e in answer.body["errors"]] == ["counts.1"]
    assert "counted_at" in answer.body["errors"][0]["message"]
    assert recorded(installed) == before


@pytest.mark.parametrize("counted_at", OUT_OF_WINDOW, indirect=True)
def test_a_session_rejects_an_out_of_window_row_and_applies_the_good_ones(
        installed: Container, counted_at: str):
    t = instant()
    body = {"counts": [count_row("SKU-1", 7, t),
                       {**count_row("SKU-2", 1, t), "counted_at": counted_at}]}

    answer = call("reconcile_counts", "POST", body=body)

    assert answer.status == 200, answer.body
    assert [r["outcome"] for r in answer.body["results"]] == ["applied", "rejected"]
    assert "counted_at" in answer.body["results"][1]["reason"]
    assert installed.queries.position("SKU-2", "STORE-1").version == 0


def test_the_count_window_is_a_setting(tmp_path: Path):
    container = build_container(load({"STOCKSTREAM_DATA": str(tmp_path),
                                      "STOCKSTREAM_COUNT_MAX_AGE": "30d"}))
    use_container(container)
    try:
        ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).isoformat()
        answer = call("record_count", "POST", SKU,
                      {"count_id": "C-1", "counted": 3, "counted_at": ten_days_ago})
        assert answer.status == 200, answer.body
    finally:
        use_container(None)
        container.close()


@pytest.mark.parametrize(("value", "span"), [
    ("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), ("90m", timedelta(minutes=90)),
    ("3600", timedelta(hours=1)), ("", timedelta(days=7)),
])
def test_the_count_max_age_is_a_duration(value: str, span: timedelta):
    assert load({"STOCKSTREAM_COUNT_MAX_AGE": value}).count_max_age == span


@pytest.mark.parametrize("value", ["0", "7w", "-1d", "soon", "100000d"])
def test_a_count_max_age_that_is_not_a_sane_duration_is_refused(value: str):
    from application.settings import SettingsError

    with pytest.raises(SettingsError, match="STOCKSTREAM_COUNT_MAX_AGE"):
        load({"STOCKSTREAM_COUNT_MAX_AGE": value})


# ------------------------------------------------------------------------- CLI


def stockstream(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOCKSTREAM_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def events_in(data: Path) -> int:
    if not (data / "events.db").exists():
        return 0
    container = build_container(load({"STOCKSTREAM_DATA": str(data)}))
    try:
        return container.store.max_position()  # type: ignore[attr-defined,no-any-return]
    finally:
        container.close()


@pytest.mark.parametrize("counted_at", EDGES, indirect=True)
def test_the_cli_rejects_an_edge_timestamp_row_without_a_traceback(tmp_path: Path,
                                                                    counted_at: str):
    data = tmp_path / "data"
    t = instant().isoformat()
    counts = tmp_path / "counts.csv"
    counts.write_text(csv_text([["SKU-1", "STORE-1", "5", t, "C1"],
                                ["SKU-2", "STORE-1", "5", counted_at, "C1"]]))

    strict = stockstream(data, "reconcile", "--all-or-nothing", str(counts))
    assert strict.returncode == 1, strict.stderr
    assert "Traceback" not in strict.stderr
    assert "rejected line 3: counted_at must" in strict.stdout
    assert events_in(data) == 0

    lenient = stockstream(data, "reconcile", str(counts))
    assert lenient.returncode == 1, lenient.stderr
    assert "Traceback" not in lenient.stderr
    assert "applied          1" in lenient.stdout


@pytest.mark.parametrize(("name", "text", "message"), [
    ("nested.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("huge-field.csv", "sku,location,counted,counted_at,count_id\n"
     f"SKU-1,STORE-1,1,{datetime.now(UTC).isoformat()},C1\n"
     f"SKU-2,STORE-1,1,2026-01-01T00:00:00Z,{'x' * 200_000}\n", "field larger than"),
    ("huge-number.json", "[" + "1" * 5000 + "]", "not valid JSON"),
])
def test_the_cli_exits_2_on_a_file_it_cannot_read_and_changes_nothing(
        tmp_path: Path, name: str, text: str, message: str):
    data = tmp_path / "data"
    counts = tmp_path / name
    counts.write_text(text)

    result = stockstream(data, "reconcile", str(counts))

    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert f"stockstream: error: {counts}: " in result.stderr and message in result.stderr
    assert events_in(data) == 0


def test_a_csv_count_too_long_to_convert_is_a_rejected_row(tmp_path: Path):
    data = tmp_path / "data"
    counts = tmp_path / "counts.csv"
    counts.write_text(csv_text([["SKU-1", "STORE-1", "9" * 5000, instant().isoformat(),
                                 "C1"]]))
    result = stockstream(data, "reconcile", str(counts))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "rejected line 2: counted must be at most" in result.stdout


def test_report_times_out_of_range_in_utc_do_not_break_the_report(tmp_path: Path):
    from application.reconciliation import CountResult, SessionResult
    from reports.drift import write_report

    edge = datetime.fromisoformat(EDGES[0])
    session = SessionResult("S1", "x.csv", "line", edge, edge, False, [
        CountResult(2, "SKU-1", "STORE-1", "C1", "rejected", 1, edge, reason="out of window")])

    written = write_report(session, tmp_path)

    rows = json.loads(written.json.read_text())["rows"]
    assert rows[0]["counted_at"] == EDGES[0]
