"""Count sessions through the real command service and SQLite event store."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.count_files import CountFileError, parse_count_rows, read_count_file
from application.holds import HeldCount, HoldPolicy
from composition import ReconciliationServices, Services
from domain.stock_item import StockItem
from tests.events import only
from tests.reconciliation.conftest import MovableClock, count_row, csv_text, instant

NO_HOLD = HoldPolicy()
_skus = itertools.count()

# A movement is (kind, quantity): a sale (reserve + fulfil), a receipt, or an adjustment.
movement = st.one_of(
    st.tuples(st.just("sale"), st.integers(1, 40)),
    st.tuples(st.just("receipt"), st.integers(1, 40)),
    st.tuples(st.just("adjust"), st.integers(-40, 40).filter(bool)),
)


def move(container: Services, sku: str, kind: str, quantity: int, n: int) -> int:
    """Record a movement; returns its effect on on hand."""
    c = container.commands
    if kind == "sale":
        c.reserve(sku, "STORE-1", f"order-{n}", quantity, "pos")
        c.fulfil(sku, "STORE-1", f"order-{n}")
        return -quantity
    if kind == "receipt":
        c.receive(sku, "STORE-1", quantity)
        return quantity
    c.adjust(sku, "STORE-1", quantity, "correction")
    return quantity


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(movement, max_size=4), after=st.lists(movement, max_size=4),
       counted=st.integers(0, 500))
def test_a_count_at_t_keeps_the_movements_recorded_after_t_on_top(
        container: Services, services: ReconciliationServices, before, after, counted):
    sku = f"SKU-{next(_skus)}"
    container.commands.receive(sku, "STORE-1", 1000)
    on_hand_at_t = 1000 + sum(move(container, sku, k, q, i) for i, (k, q) in enumerate(before))
    t = instant()
    moved_after = sum(move(container, sku, k, q, 100 + i) for i, (k, q) in enumerate(after))

    session = services.reconciler.reconcile(
        parse_count_rows([count_row(sku, counted, t)]), policy=NO_HOLD)

    (result,) = session.results
    assert result.outcome == "applied"
    assert result.on_hand_at_count == on_hand_at_t
    assert result.drift_units == counted - on_hand_at_t
    assert container.queries.position(sku, "STORE-1").on_hand == counted + moved_after


@pytest.mark.parametrize(("before", "after"), [
    ([], [("sale", 5)]),
    ([("sale", 3)], [("receipt", 10), ("sale", 7)]),
    ([("receipt", 4), ("adjust", -2)], []),
    ([("sale", 1), ("sale", 2)], [("adjust", 9), ("sale", 3), ("receipt", 1)]),
])
def test_a_count_file_applies_the_correction_now_and_keeps_later_sales(
        container: Services, services: ReconciliationServices, tmp_path: Path, before, after):
    sku = f"SKU-{next(_skus)}"
    container.commands.receive(sku, "STORE-1", 100)
    for i, (k, q) in enumerate(before):
        move(container, sku, k, q, i)
    t = instant()
    moved_after = sum(move(container, sku, k, q, 50 + i) for i, (k, q) in enumerate(after))
    path = tmp_path / "counts.csv"
    path.write_text(csv_text([count_row(sku, 77, t)]))

    services.reconciler.reconcile(read_count_file(path), policy=NO_HOLD)

    assert container.queries.position(sku, "STORE-1").on_hand == 77 + moved_after


def test_importing_the_same_file_twice_emits_nothing_the_second_time(
        container: Services, services: ReconciliationServices, tmp_path: Path):
    container.commands.receive("SKU-A", "STORE-1", 10)
    t = instant()
    path = tmp_path / "counts.csv"
    path.write_text(csv_text([count_row("SKU-A", 8, t), count_row("SKU-B", 3, t),
                              count_row("SKU-A", 5, t, location="STORE-2")]))
    first = services.reconciler.reconcile(read_count_file(path), policy=NO_HOLD)
    position = container.store.max_position()  # type: ignore[attr-defined]

    second = services.reconciler.reconcile(read_count_file(path), policy=NO_HOLD)

    assert [r.outcome for r in first.results] == ["applied"] * 3
    assert [r.outcome for r in second.results] == ["unchanged"] * 3
    assert container.store.max_position() == position  # type: ignore[attr-defined]
    assert second.complete


def test_malformed_rows_are_rejected_with_line_numbers_and_the_good_ones_applied(
        container: Services, services: ReconciliationServices, tmp_path: Path):
    t = instant().isoformat()
    path = tmp_path / "counts.csv"
    path.write_text(csv_text([
        ["SKU-1", "STORE-1", "4", t, "C1"],                  # line 2
        ["SKU-2", "STORE-1", "-3", t, "C1"],                 # line 3: negative
        ["SKU-3", "STORE-1", "5", "2026-01-01T10:00", "C1"],  # line 4: no zone
        ["SKU/4", "STORE-1", "5", t, "C1"],                  # line 5: bad sku
        ["SKU-5", "STORE-1", "6", t, "C1"],                  # line 6
        ["SKU-6", "STORE-1", "6", t],                        # line 7: missing count_id
    ]))
    counts = read_count_file(path)

    session = services.reconciler.reconcile(counts, policy=NO_HOLD)

    rejected = {r.line: str(r.reason) for r in session.with_outcome("rejected")}
    assert sorted(rejected) == [3, 4, 5, 7]
    assert "counted" in rejected[3] and "time zone" in rejected[4]
    assert "sku" in rejected[5] and "count_id" in rejected[7]
    assert [r.line for r in session.with_outcome("applied")] == [2, 6]
    assert container.queries.position("SKU-1", "STORE-1").on_hand == 4
    assert container.queries.position("SKU-5", "STORE-1").on_hand == 6
    assert not session.complete and not session.applied_none


def test_all_or_nothing_applies_none_when_a_row_is_malformed(
        container: Services, services: ReconciliationServices):
    t = instant().isoformat()
    counts = parse_count_rows([
        {"sku": "SKU-1", "location": "L", "counted": 4, "counted_at": t, "count_id": "C1"},
        {"sku": "SKU-2", "location": "L", "counted": "4", "counted_at": t, "count_id": "C1"},
        {"sku": "SKU-3", "location": "L", "counted": 4.0, "counted_at": t, "count_id": "C1"},
    ])

    session = services.reconciler.reconcile(counts, policy=NO_HOLD, all_or_nothing=True)

    assert [(r.line, r.outcome) for r in session.results] == [
        (0, "skipped"), (1, "rejected"), (2, "rejected")]
    assert session.applied_none
    assert container.store.max_position() == 0  # type: ignore[attr-defined]


def test_all_or_nothing_also_stops_for_a_count_id_recorded_with_other_figures(
        container: Services, services: ReconciliationServices):
    t = instant()
    services.reconciler.reconcile(parse_count_rows([count_row("SKU-1", 4, t)]), policy=NO_HOLD)
    position = container.store.max_position()  # type: ignore[attr-defined]
    counts = parse_count_rows([count_row("SKU-2", 9, t), count_row("SKU-1", 5, t)])

    session = services.reconciler.reconcile(counts, policy=NO_HOLD, all_or_nothing=True)

    assert [r.outcome for r in session.results] == ["skipped", "rejected"]
    assert "different figures" in (session.results[1].reason or "")  # the aggregate's word
    assert container.store.max_position() == position  # type: ignore[attr-defined]
    # Without the flag the good row goes in and the conflicting one is refused.
    session = services.reconciler.reconcile(counts, policy=NO_HOLD)
    assert [r.outcome for r in session.results] == ["applied", "rejected"]


def test_json_count_files_reject_rows_by_index_and_conflicting_duplicates(tmp_path: Path):
    t = instant().isoformat()
    path = tmp_path / "counts.json"
    path.write_text(json.dumps([
        {"sku": "A", "location": "L", "counted": 1, "counted_at": t, "count_id": "C"},
        {"sku": "A", "location": "L", "counted": 2, "counted_at": t, "count_id": "C"},
        "not an object",
        {"sku": "B", "location": "L", "counted": True, "counted_at": t, "count_id": "C"},
        {"sku": "B", "location": "L", "counted": 1, "counted_at": t, "count_id": "C", "x": 1},
    ]))
    counts = read_count_file(path)
    assert counts.position == "index"
    assert [line.line for line in counts.lines] == [0]
    assert [r.line for r in counts.rejected] == [1, 2, 3, 4]
    assert "conflicts with row 0" in counts.rejected[0].reason


@pytest.mark.parametrize("text", ["sku,location,counted\nA,L,1\n", "{}", "[1,"])
def test_a_file_that_is_not_a_count_file_is_refused_as_a_whole(tmp_path: Path, text: str):
    path = tmp_path / ("counts.json" if text[0] in "[{" else "counts.csv")
    path.write_text(text)
    with pytest.raises(CountFileError):
        read_count_file(path)


def test_a_large_drift_is_held_until_approved_and_approval_applies_it(
        container: Services, services: ReconciliationServices, clock: MovableClock):
    container.commands.receive("SKU-1", "STORE-1", 100)
    t = instant()
    container.commands.receive("SKU-1", "STORE-1", 5)  # after the count: stays on top
    counts = parse_count_rows([count_row("SKU-1", 40, t, "BIG"), count_row("SKU-2", 3, t)])
    policy = HoldPolicy(units=20)

    session = services.reconciler.reconcile(counts, policy=policy)

    assert [r.outcome for r in session.results] == ["held", "applied"]
    assert session.results[0].drift_units == -60
    assert container.queries.position("SKU-1", "STORE-1").on_hand == 105
    position = container.store.max_position()  # type: ignore[attr-defined]
    again = services.reconciler.reconcile(counts, policy=policy)
    assert [r.outcome for r in again.results] == ["held", "unchanged"]
    assert container.store.max_position() == position  # type: ignore[attr-defined]
    assert len(services.reconciler.held.matching("BIG")) == 1

    approved = services.reconciler.approve("BIG")

    assert [(r.outcome, r.drift_units) for r in approved] == [("applied", -60)]
    assert container.queries.position("SKU-1", "STORE-1").on_hand == 45
    assert services.reconciler.approve("BIG") == []
    assert services.reconciler.reconcile(counts, policy=policy).results[0].outcome == (
        "unchanged")
    (held,) = services.reconciler.held.matching("BIG", status="approved")
    assert held.applied_delta == -60


def test_a_percent_threshold_holds_and_a_dismissed_count_emits_nothing(
        container: Services, services: ReconciliationServices):
    container.commands.receive("SKU-1", "STORE-1", 10)
    t = instant()
    counts = parse_count_rows([count_row("SKU-1", 16, t, "P")])
    session = services.reconciler.reconcile(counts, policy=HoldPolicy(percent=50))
    assert session.results[0].outcome == "held"
    assert session.results[0].drift_percent == pytest.approx(60.0)
    position = container.store.max_position()  # type: ignore[attr-defined]

    assert [h.count_id for h in only(services.reconciler.dismiss("P"), HeldCount)] == ["P"]

    assert services.reconciler.approve("P") == []
    again = services.reconciler.reconcile(counts, policy=HoldPolicy(percent=50))
    assert again.results[0].outcome == "unchanged"
    assert container.store.max_position() == position  # type: ignore[attr-defined]


def test_applied_drift_is_recorded_as_metrics_from_the_event(
        container: Services, services: ReconciliationServices):
    recorded: list[tuple[int, float]] = []

    class Recorder:
        def record_drift(self, units: int, percent: float) -> None:
            recorded.append((units, percent))

    services.reconciler.drift = Recorder()
    container.commands.receive("SKU-1", "STORE-1", 20)
    t = instant()
    services.reconciler.reconcile(
        parse_count_rows([count_row("SKU-1", 15, t), count_row("SKU-9", 2, t)]),
        policy=NO_HOLD)
    assert recorded == [(-5, -25.0), (2, 100.0)]


def test_expired_reservations_since_the_previous_count_are_the_drift_context(
        container: Services, services: ReconciliationServices, clock: MovableClock):
    c = container.commands
    c.receive("SKU-1", "STORE-1", 50)
    c.reserve("SKU-1", "STORE-1", "old", 4, "web", ttl_seconds=60)
    clock.offset += timedelta(seconds=120)
    c.expire_overdue("SKU-1", "STORE-1")  # 4 units released by expiry, before the 1st count
    first = instant()
    services.reconciler.reconcile(parse_count_rows([count_row("SKU-1", 50, first, "C1")]),
                                  policy=NO_HOLD)
    c.reserve("SKU-1", "STORE-1", "o1", 3, "web", ttl_seconds=60)
    c.reserve("SKU-1", "STORE-1", "o2", 2, "web", ttl_seconds=60)
    c.reserve("SKU-1", "STORE-1", "o3", 1, "web")  # cancelled, not expired
    c.release("SKU-1", "STORE-1", "o3")
    clock.offset += timedelta(seconds=120)
    c.expire_overdue("SKU-1", "STORE-1")
    released = [e for e in container.store.events("SKU-1", "STORE-1")
                if isinstance(e, StockItem.Released)]
    assert sorted(e.reason for e in released) == ["cancelled", "expired", "expired", "expired"]
    second = instant()

    session = services.reconciler.reconcile(
        parse_count_rows([count_row("SKU-1", 48, second, "C2")]), policy=NO_HOLD)

    assert session.results[0].expired_units == 5
    assert session.results[0].drift_units == -2
