"""Projection reconciliation, the drift report files, and the count schedule."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.cadence import CadenceError, CadencePolicy, classify
from application.count_files import parse_count_rows
from application.holds import HoldPolicy
from application.views import ViewRow
from composition import ReconciliationServices, Services
from contracts.cloudevents import to_cloudevent
from local.pipeline import Pipeline
from projections.repair import ProjectionRepair
from reports.drift import write_report
from tests.reconciliation.conftest import count_row, instant, project


@pytest.fixture
def views(container: Services) -> SQLiteAvailabilityViews:
    """The availability view the container's projection repair works on."""
    assert isinstance(container.availability, SQLiteAvailabilityViews)
    return container.availability


def projection_repair(container: Services) -> ProjectionRepair:
    assert container.repair is not None
    return container.repair


def project_everything(container: Services, views: SQLiteAvailabilityViews) -> None:
    """Feed every committed event to the projection, as the pipeline would."""
    repair = projection_repair(container)
    for record in container.store.read_after(0, 10_000):  # type: ignore[attr-defined]
        repair.projection.handle(to_cloudevent(record.event))


def test_a_corrupted_projection_row_is_detected_and_repaired_from_the_stream(
        container: Services, views: SQLiteAvailabilityViews):
    c = container.commands
    c.receive("SKU-1", "STORE-1", 10)
    c.reserve("SKU-1", "STORE-1", "o1", 3, "web", ttl_seconds=600)
    c.receive("SKU-1", "STORE-2", 7)
    c.receive("SKU-2", "STORE-1", 1)
    project_everything(container, views)
    repair = projection_repair(container)
    assert repair.run().mismatches == []
    good = next(r for r in views.rows("SKU-1") if r.location == "STORE-1")
    views.replace(ViewRow(good.sku, good.location, good.version, 99, 0, 99, good.updated_at),
                  {})

    report = repair.run()

    (mismatch,) = report.mismatches
    assert (mismatch.sku, mismatch.location, mismatch.kind) == ("SKU-1", "STORE-1", "corrupt")
    assert mismatch.row is not None and mismatch.row.on_hand == 99
    assert (mismatch.stream.on_hand, mismatch.stream.reserved) == (10, 3)
    assert report.checked == 3 and report.repaired == 1
    assert next(r for r in views.rows("SKU-1") if r.location == "STORE-1") == good
    # The reservation's expiry is back in the index the expiry sweep reads.
    later = datetime.now(UTC) + timedelta(hours=1)
    assert views.overdue_reservations(later, 10) == [("SKU-1", "STORE-1")]
    assert repair.run().mismatches == []


def test_a_row_that_lost_its_held_and_incoming_figures_is_repaired_from_the_stream(
        container: Services, views: SQLiteAvailabilityViews):
    """A row written without the stock-state figures (as before the columns existed)
    disagrees with a stream that holds stock, and the repair restores them."""
    c = container.commands
    c.receive("SKU-1", "STORE-1", 10)
    c.move_state("SKU-1", "STORE-1", 4, "sellable", "damaged")
    c.set_incoming("SKU-1", "STORE-1", "PO-1", 6, datetime.now(UTC) + timedelta(days=1))
    project_everything(container, views)
    repair = projection_repair(container)
    assert repair.run().mismatches == []
    [good] = views.rows("SKU-1")
    views.replace(ViewRow(good.sku, good.location, good.version, good.on_hand, good.reserved,
                          good.available, good.updated_at), {})

    report = repair.run()

    (mismatch,) = report.mismatches
    assert mismatch.kind == "corrupt"
    assert mismatch.row is not None and (mismatch.row.damaged, mismatch.row.incoming_total) \
        == (0, 0)
    assert (mismatch.stream.damaged, mismatch.stream.incoming_total) == (4, 6)
    assert list(views.rows("SKU-1")) == [good]


def test_rows_behind_and_streams_without_a_row_are_reported_and_check_only_repairs_nothing(
        container: Services, views: SQLiteAvailabilityViews):
    c = container.commands
    c.receive("SKU-1", "STORE-1", 10)
    project_everything(container, views)
    c.receive("SKU-1", "STORE-1", 5)  # not projected: the row is behind
    c.receive("SKU-3", "STORE-1", 2)  # never projected: no row
    repair = projection_repair(container)
    known = [("SKU-1", "STORE-1"), ("SKU-3", "STORE-1")]

    checked = repair.run(known=known, fix=False)
    assert sorted((m.sku, m.kind) for m in checked.mismatches) == [
        ("SKU-1", "behind"), ("SKU-3", "missing")]
    assert checked.repaired == 0

    fixed = repair.run(known=known)
    assert fixed.repaired == 2
    assert {(r.sku, r.on_hand) for r in views.rows()} == {("SKU-1", 15), ("SKU-3", 2)}
    assert repair.run("SKU-1").mismatches == []


def test_the_drift_report_is_written_as_json_csv_and_png_charts(
        container: Services, services: ReconciliationServices, tmp_path: Path):
    container.commands.receive("SKU-1", "STORE-1", 10)
    container.commands.receive("SKU-2", "STORE-1", 10)
    for session_no, counted in enumerate((8, 7)):
        t = instant()
        session = services.reconciler.reconcile(parse_count_rows([
            count_row("SKU-1", counted, t, f"S{session_no}"),
            count_row("SKU-2", 30, t, f"S{session_no}"),
            {"sku": "bad sku"},
        ]), policy=HoldPolicy(units=15))
    history = services.reconciler.history.sessions()  # type: ignore[union-attr]
    assert len(history) == 2

    written = write_report(session, tmp_path / "reports", history)

    document = json.loads(written.json.read_text())
    assert (document["totals"]["applied"], document["totals"]["held"],
            document["totals"]["rejected"]) == (1, 1, 1)
    assert document["top_drifts"][0]["drift_units"] == -1  # 8 → 7 in the second session
    assert [h["sku"] for h in document["held"]] == ["SKU-2"]
    assert document["held"][0]["drift_units"] == 20
    assert document["rejected"][0]["position"] == 2
    with written.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["outcome"] for r in rows] == ["applied", "held", "rejected"]
    assert len(written.charts) == 2
    for chart in written.charts:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_velocity_classes_split_by_share_of_units_moved():
    units = {("A", "L"): 800, ("B", "L"): 150, ("C", "L"): 45, ("D", "L"): 5, ("E", "L"): 0}
    classes = classify(units, CadencePolicy())
    assert classes == {("A", "L"): "A", ("B", "L"): "B", ("C", "L"): "C", ("D", "L"): "C",
                       ("E", "L"): "C"}


@pytest.mark.parametrize("text", ["A=1,B=7", "A=0,B=7,C=30", "A=1,B=x,C=3", "A=1,B=2,D=3"])
def test_a_cadence_that_misses_a_class_or_a_day_count_is_refused(text: str):
    with pytest.raises(CadenceError):
        CadencePolicy.parse(text)


def test_the_schedule_counts_fast_movers_more_often(
        container: Services, services: ReconciliationServices, pipeline: Pipeline):
    c = container.commands
    for _ in range(20):
        c.receive("FAST", "STORE-1", 50)
    c.receive("SLOW", "STORE-1", 1)
    c.receive("NEW", "STORE-1", 1)
    t = instant()
    services.reconciler.reconcile(parse_count_rows([
        count_row("FAST", 1000, t), count_row("SLOW", 1, t)]), policy=HoldPolicy())
    project(pipeline)
    schedule = services.schedule
    now = container.clock.now()

    due_now = schedule.schedule(now)
    assert [(r.sku, r.velocity_class, r.last_counted_at) for r in due_now] == [
        ("NEW", "C", None)]
    everything = {r.sku: r for r in schedule.schedule(now, due_only=False)}
    assert everything["FAST"].velocity_class == "A"
    assert everything["SLOW"].velocity_class == "C"
    assert everything["FAST"].units_per_day == pytest.approx(1000 / 28)
    assert everything["FAST"].due_at == t + timedelta(days=1)

    in_two_days = [r.sku for r in schedule.schedule(now + timedelta(days=2))]
    assert in_two_days == ["FAST", "NEW"]  # most overdue first
    in_a_month = schedule.schedule(now + timedelta(days=31), velocity_class="C")
    # A month on, FAST's movement is out of the 28-day window: it is a slow mover now.
    assert [r.sku for r in in_a_month] == ["FAST", "SLOW", "NEW"]
