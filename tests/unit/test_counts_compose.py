"""Counts compose by when they were taken, not by when they arrived.

On hand = the figure of the count with the latest ``counted_at`` plus every non-count
movement recorded after that moment. A count older than the latest applied one is
recorded as superseded and changes nothing; two counts of one moment agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from adapters.clock import ManualClock, SystemClock
from adapters.sqlite import SQLiteStockItems
from application.commands import CountWindow, StockCommands
from domain import StockItem
from domain.errors import DomainError, InvalidRequest
from tests.events import only

SKU, LOCATION = "SKU-1", "STORE-1"


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[StockCommands]:
    store = SQLiteStockItems(tmp_path / "events.db")
    yield StockCommands(store, SystemClock())
    store.close()


def test_two_devices_counting_one_shelf_at_one_moment_correct_once(
    commands: StockCommands,
) -> None:
    commands.receive(SKU, LOCATION, 100)
    t1 = datetime.now(UTC)
    first = commands.record_count(SKU, LOCATION, "aisle3-dev1", 90, t1)
    second = commands.record_count(SKU, LOCATION, "aisle3-dev2", 90, t1)
    assert (first.position.on_hand, second.position.on_hand) == (90, 90)


def test_twenty_rows_of_one_count_file_agree(commands: StockCommands) -> None:
    commands.receive(SKU, LOCATION, 1500)
    counted_at = datetime.now(UTC)  # "1019 at 08:00", twenty times over
    for row in range(20):
        result = commands.record_count(SKU, LOCATION, f"file-row-{row}", 1019, counted_at)
    assert result.position.on_hand == 1019


def test_a_count_before_the_latest_applied_one_is_superseded(commands: StockCommands) -> None:
    commands.receive(SKU, LOCATION, 50)
    now = datetime.now(UTC)
    commands.record_count(SKU, LOCATION, "late-count", 40, now)
    result = commands.record_count(SKU, LOCATION, "early-count", 10, now - timedelta(hours=2))
    (counted,) = result.events
    assert isinstance(counted, StockItem.Counted)
    assert counted.superseded and counted.delta == 0
    assert result.position.on_hand == 40


def test_sales_after_the_count_stay_on_top_of_it(commands: StockCommands) -> None:
    commands.receive(SKU, LOCATION, 30)
    counted_at = datetime.now(UTC)
    commands.reserve(SKU, LOCATION, "order-1", 4, "pos")
    commands.fulfil(SKU, LOCATION, "order-1")  # recorded after the count was taken
    result = commands.record_count(SKU, LOCATION, "count-1", 25, counted_at)
    (counted,) = only(result.events, StockItem.Counted)
    assert result.position.on_hand == 21
    assert (counted.previous_on_hand, counted.delta) == (30, -5)


@pytest.mark.parametrize("offset", [timedelta(days=7, minutes=1), timedelta(days=-1),
                                    timedelta(days=365)])
def test_a_count_outside_the_window_is_refused_and_records_nothing(
    tmp_path: Path, offset: timedelta,
) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    clock = ManualClock()
    commands = StockCommands(store, clock)
    commands.receive(SKU, LOCATION, 40)
    with pytest.raises(InvalidRequest) as refused:
        commands.record_count(SKU, LOCATION, "wrong-year", 40, clock.now() - offset)
    assert refused.value.details["field"] == "counted_at"
    assert [type(e).__name__ for e in store.events(SKU, LOCATION)] == ["Created", "Received"]
    store.close()


def test_the_count_window_is_a_setting(tmp_path: Path) -> None:
    store = SQLiteStockItems(tmp_path / "events.db")
    clock = ManualClock()
    commands = StockCommands(store, clock, count_window=CountWindow(timedelta(days=30)))
    result = commands.record_count(SKU, LOCATION, "c", 5, clock.now() - timedelta(days=20))
    assert result.position.on_hand == 5
    store.close()


# ------------------------------------------------------------------ the property


@dataclass(frozen=True)
class Count:
    figure: int
    counted_at: datetime
    order: int


class CountsCompose(RuleBasedStateMachine):
    """Random receipts, sales and counts with past, equal and out-of-order ``counted_at``."""

    def __init__(self) -> None:
        super().__init__()
        self._directory = TemporaryDirectory()
        self.store = SQLiteStockItems(Path(self._directory.name) / "events.db")
        self.commands = StockCommands(self.store, SystemClock())
        self.start = datetime.now(UTC)
        self.movements: list[tuple[datetime, int]] = []  # (recorded at, change to on hand)
        self.counts: list[Count] = []
        self.moments: list[datetime] = [self.start - timedelta(hours=1)]
        self.orders = 0

    def teardown(self) -> None:
        self.store.close()
        self._directory.cleanup()

    def _record(self, result: object) -> None:
        for event in getattr(result, "events", []):
            if isinstance(event, StockItem.Counted):
                continue
            self.moments.append(event.timestamp)
            if event.movement:
                self.movements.append((event.timestamp, event.movement))

    @rule(quantity=st.integers(1, 40))
    def receive(self, quantity: int) -> None:
        self._record(self.commands.receive(SKU, LOCATION, quantity))

    @rule(quantity=st.integers(1, 10))
    def sell(self, quantity: int) -> None:
        self.orders += 1
        order = f"order-{self.orders}"
        try:
            self._record(self.commands.reserve(SKU, LOCATION, order, quantity, "pos"))
        except DomainError:
            return
        self._record(self.commands.fulfil(SKU, LOCATION, order))

    @rule(delta=st.integers(-10, 10).filter(bool))
    def adjust(self, delta: int) -> None:
        with contextlib.suppress(DomainError):
            self._record(self.commands.adjust(SKU, LOCATION, delta, "found"))

    @rule(figure=st.integers(0, 80), pick=st.integers(0, 10**6),
          how=st.sampled_from(["at-an-event", "between-events", "as-an-earlier-count", "now"]))
    def count(self, figure: int, pick: int, how: str) -> None:
        moments = sorted(self.moments)
        if how == "at-an-event":
            counted_at = moments[pick % len(moments)]
        elif how == "between-events" and len(moments) > 1:
            i = pick % (len(moments) - 1)
            counted_at = moments[i] + (moments[i + 1] - moments[i]) / 2
        elif how == "as-an-earlier-count" and self.counts:
            counted_at = self.counts[pick % len(self.counts)].counted_at
        else:
            counted_at = datetime.now(UTC)
        count_id = f"count-{len(self.counts)}"
        self.commands.record_count(SKU, LOCATION, count_id, figure, counted_at)
        self.counts.append(Count(figure, counted_at, len(self.counts)))

    @invariant()
    def on_hand_is_the_latest_count_plus_the_movements_recorded_after_it(self) -> None:
        item = self.store.get(SKU, LOCATION)
        on_hand = 0 if item is None else item.on_hand
        if not self.counts:
            expected = sum(change for _, change in self.movements)
        else:
            latest = max(self.counts, key=lambda c: (c.counted_at, c.order))
            expected = latest.figure + sum(
                change for at, change in self.movements if at > latest.counted_at)
        assert on_hand == expected


TestCountsCompose = CountsCompose.TestCase
# 40 examples, or the profile's number if fewer (make mutation runs this once per mutant).
TestCountsCompose.settings = settings(
    max_examples=min(40, settings().max_examples), stateful_step_count=25, deadline=None
)
