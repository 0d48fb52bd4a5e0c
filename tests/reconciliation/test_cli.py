"""The ``stockstream`` command, run as a separate process on a real data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.embedded_broker import EmbeddedBroker
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.ports import OutgoingMessage
from application.settings import AVAILABILITY_SUBSCRIPTION, TOPIC, load
from functions.container import build_container
from functions.reconciliation import projection_repair
from local.pipeline import ensure_topology, start_pipeline
from projections.availability import ViewRow
from tests.reconciliation.conftest import count_row, csv_text, instant, project

ROOT = Path(__file__).resolve().parents[2]


def stockstream(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOCKSTREAM_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_console_script_is_installed_and_documents_its_exit_codes():
    script = Path(sys.executable).parent / "stockstream"
    assert script.exists(), "run `make venv`: it installs the project (pip install -e .)"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert result.returncode == 0
    assert "0 ok, 1 needs attention, 2 usage error, 3 store unavailable" in " ".join(
        result.stdout.split())


def test_reconcile_applies_a_file_once_and_says_so(tmp_path: Path):
    data = tmp_path / "data"
    t = instant()
    counts = tmp_path / "counts.csv"
    counts.write_text(csv_text([count_row("SKU-1", 5, t), count_row("SKU-2", 3, t)]))

    first = stockstream(data, "reconcile", str(counts))
    second = stockstream(data, "reconcile", str(counts))

    assert first.returncode == 0, first.stderr
    assert "applied          2" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "applied          0" in second.stdout and "unchanged        2" in second.stdout
    reports = sorted(p.suffix for p in (data / "reports").iterdir())
    assert reports.count(".json") == 2 and ".csv" in reports and ".png" in reports


def test_reconcile_with_bad_rows_exits_1_and_names_the_lines(tmp_path: Path):
    data = tmp_path / "data"
    t = instant().isoformat()
    counts = tmp_path / "counts.csv"
    counts.write_text(csv_text([["SKU-1", "STORE-1", "5", t, "C1"],
                                ["SKU-2", "STORE-1", "five", t, "C1"]]))

    strict = stockstream(data, "reconcile", "--all-or-nothing", str(counts))
    lenient = stockstream(data, "reconcile", str(counts), "--report-dir", str(tmp_path / "r"))

    assert strict.returncode == 1
    assert "applied none: 1 row(s) rejected and --all-or-nothing" in strict.stdout
    assert "rejected line 3: counted must be a whole number" in strict.stdout
    assert lenient.returncode == 1
    assert "applied the good rows; rejected 1 row(s)" in lenient.stdout
    assert "applied          1" in lenient.stdout
    assert (tmp_path / "r").is_dir()


def test_held_counts_exit_1_until_approved(tmp_path: Path):
    data = tmp_path / "data"
    t = instant()
    counts = tmp_path / "counts.json"
    counts.write_text("[" + ",".join(
        f'{{"sku": "SKU-1", "location": "STORE-1", "counted": 40, '
        f'"counted_at": "{t.isoformat()}", "count_id": "BIG"}}' for _ in range(1)) + "]")

    held = stockstream(data, "reconcile", "--threshold-units", "10", str(counts))
    approved = stockstream(data, "approve", "BIG")
    nothing = stockstream(data, "approve", "BIG")

    assert held.returncode == 1 and "held index 0: SKU-1|STORE-1 count BIG" in held.stdout
    assert approved.returncode == 0, approved.stderr
    assert "applied SKU-1|STORE-1 count BIG: delta +40" in approved.stdout
    assert nothing.returncode == 1 and "no count BIG is waiting" in nothing.stdout


@pytest.mark.parametrize("args", [
    ["reconcile", "/no/such/file.csv"],
    ["reconcile"],
    ["reconcile", "x.csv", "--threshold-units", "-1"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(tmp_path: Path, args):
    result = stockstream(tmp_path / "data", *args)
    assert result.returncode == 2, result.stderr


def test_an_unavailable_store_exits_3(tmp_path: Path):
    data = tmp_path / "data"
    (data / "events.db").mkdir(parents=True)  # a directory where the database should be
    counts = tmp_path / "counts.csv"
    counts.write_text(csv_text([count_row("SKU-1", 5, instant())]))
    result = stockstream(data, "reconcile", str(counts))
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "store unavailable" in result.stderr


def test_rebuild_projection_checks_then_repairs_a_corrupted_row(tmp_path: Path):
    data = tmp_path / "data"
    container = build_container(load({"STOCKSTREAM_DATA": str(data)}))
    container.commands.receive("SKU-1", "STORE-1", 10)
    container.commands.receive("SKU-2", "STORE-1", 4)
    views = SQLiteAvailabilityViews(data / "views.db")
    repair = projection_repair(container.store, views)
    repair.repair(repair.check(known=[("SKU-1", "STORE-1"), ("SKU-2", "STORE-1")])[1])
    row = next(iter(views.rows("SKU-1")))
    views.replace(ViewRow(row.sku, row.location, row.version, 1, 0, 1, row.updated_at), {})
    views.close()
    container.close()

    check = stockstream(data, "rebuild-projection", "--check")
    fix = stockstream(data, "rebuild-projection")
    after = stockstream(data, "rebuild-projection", "SKU-1", "--check")

    assert check.returncode == 1
    assert "corrupt  SKU-1|STORE-1: row v2 on hand 1" in check.stdout
    assert "2 row(s) checked, 1 mismatched, 0 repaired" in check.stdout
    assert fix.returncode == 0 and "1 repaired" in fix.stdout
    assert after.returncode == 0 and "1 row(s) checked, 0 mismatched" in after.stdout


def test_replay_deadletters_replays_to_the_subscription_and_refuses_unknown_ones(
        tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    broker = EmbeddedBroker(data / "broker.db")
    ensure_topology(broker)
    broker.publish(TOPIC, [OutgoingMessage(f"m{i}", "SKU-1|STORE-1", "x", b"{}",
                                           application_properties={"replayTarget": "all"})
                           for i in range(3)])
    receiver = broker.accept_next_session(TOPIC, AVAILABILITY_SUBSCRIPTION)
    assert receiver is not None
    for message in receiver.receive(3):
        receiver.dead_letter(message, "test", "poison")
    receiver.close()
    broker.close()

    some = stockstream(data, "replay-deadletters", AVAILABILITY_SUBSCRIPTION, "--max", "2")
    rest = stockstream(data, "replay-deadletters", AVAILABILITY_SUBSCRIPTION)
    unknown = stockstream(data, "replay-deadletters", "nobody")

    assert some.returncode == 0, some.stderr
    assert "replayed 2 dead-lettered message(s) to availability; 1 left" in some.stdout
    assert "replayed 1 dead-lettered message(s) to availability; 0 left" in rest.stdout
    assert unknown.returncode == 2 and "no subscription named 'nobody'" in unknown.stderr


def test_due_lists_the_schedule(tmp_path: Path):
    data = tmp_path / "data"
    container = build_container(load({"STOCKSTREAM_DATA": str(data)}))
    pipeline = start_pipeline(container, autostart=False)
    container.commands.receive("SKU-1", "STORE-1", 10)
    project(pipeline)
    pipeline.stop()
    container.close()
    result = stockstream(data, "due")
    assert result.returncode == 0, result.stderr
    assert "A  SKU-1|STORE-1" in result.stdout and "1 count(s) due" in result.stdout
