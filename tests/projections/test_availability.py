"""The availability projection, fed the CloudEvents of real streams.

What the view may rely on: each event's change (figures, the reservation expiry it sets
or clears), applied once and in order whatever the delivery does (duplicates, gaps),
what ``handle`` answers, a rebuild from the stream, and the lag it reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import ManualClock
from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.commands import StockCommands
from application.views import AvailabilityChange, ViewRow
from contracts.cloudevents import to_cloudevent
from domain import StockItem
from projections.availability import AvailabilityProjection, projection_status

SKU, LOCATION = "SKU-1", "STORE-1"
FAR = timedelta(days=30)


class ViewsWithoutLag(SQLiteAvailabilityViews):
    """A view store that keeps no lag of its own (the port's default)."""

    def last_lag_seconds(self) -> float | None:
        return None


class Parts:
    def __init__(self, tmp_path: Path, views: SQLiteAvailabilityViews) -> None:
        self.clock = ManualClock()
        self.store = SQLiteStockItems(tmp_path / "events.db")
        self.commands = StockCommands(self.store, self.clock)
        self.views = views
        self.history_reads: list[tuple[int, int]] = []
        self.projection = AvailabilityProjection(views, self.history)

    def history(self, sku: str, location: str, after: int, upto: int) -> list[StockItem.Event]:
        self.history_reads.append((after, upto))
        return self.store.events(sku, location, after=after, limit=upto - after)

    def documents(self, after: int = 0) -> list[dict[str, Any]]:
        return [to_cloudevent(e) for e in self.store.events(SKU, LOCATION, after=after)]

    def deliver(self, after: int = 0) -> list[str]:
        return [self.projection.handle(d) for d in self.documents(after)]

    def row(self) -> ViewRow:
        (row,) = self.views.rows(SKU)
        return row

    def overdue(self) -> list[tuple[str, str]]:
        return self.views.overdue_reservations(self.clock.now() + FAR, 10)

    def close(self) -> None:
        self.views.close()
        self.store.close()


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(tmp_path, ViewsWithoutLag(tmp_path / "views.db"))
    yield p
    p.close()


def the_stream_now(parts: Parts) -> tuple[int, int, int, int]:
    item = parts.store.get(SKU, LOCATION)
    assert item is not None
    return item.version, item.on_hand, item.reserved, item.available


def the_row(parts: Parts) -> tuple[int, int, int, int]:
    row = parts.row()
    return row.version, row.on_hand, row.reserved, row.available


# --------------------------------------------------------------- each event's change


def test_a_reservation_with_a_ttl_sets_its_expiry_and_one_without_clears_it(
    parts: Parts,
) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    parts.commands.reserve(SKU, LOCATION, "order-1", 2, "web", ttl_seconds=60)
    parts.commands.reserve(SKU, LOCATION, "order-2", 1, "web")
    with_ttl, without = parts.documents(after=2)

    set_ = AvailabilityChange.from_cloudevent(with_ttl)
    cleared = AvailabilityChange.from_cloudevent(without)

    assert set_.reservation_expiry == ("order-1", parts.clock.now() + timedelta(seconds=60))
    assert cleared.reservation_expiry == ("order-2", None)
    assert (set_.closed_reservation, cleared.closed_reservation) == (None, None)


@pytest.mark.parametrize("close", ["release", "fulfil"])
def test_a_release_or_fulfilment_closes_its_reservation(parts: Parts, close: str) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    parts.commands.reserve(SKU, LOCATION, "order-1", 2, "web", ttl_seconds=60)
    getattr(parts.commands, close)(SKU, LOCATION, "order-1")
    (closing,) = parts.documents(after=3)

    change = AvailabilityChange.from_cloudevent(closing)

    assert (change.closed_reservation, change.reservation_expiry) == ("order-1", None)


def test_every_change_carries_the_stream_position_after_its_event(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    parts.commands.set_policy(SKU, LOCATION, 2, 0)
    parts.commands.adjust(SKU, LOCATION, -1, "damaged")
    parts.commands.record_count(SKU, LOCATION, "count-1", 7, datetime.now(UTC))
    events = parts.store.events(SKU, LOCATION)

    changes = [AvailabilityChange.from_cloudevent(to_cloudevent(e)) for e in events]

    assert [(c.sku, c.location, c.version, c.on_hand, c.reserved, c.available)
            for c in changes] == [
        (SKU, LOCATION, 1, 0, 0, 0), (SKU, LOCATION, 2, 10, 0, 10),
        (SKU, LOCATION, 3, 10, 0, 8), (SKU, LOCATION, 4, 9, 0, 7),
        (SKU, LOCATION, 5, 7, 0, 5),
    ]
    assert [c.occurred_at for c in changes] == [e.timestamp for e in events]
    assert all((c.reservation_expiry, c.closed_reservation) == (None, None) for c in changes)


# ---------------------------------------------------------- delivery, in any order


def test_release_and_fulfilment_clear_the_expiry_the_sweep_would_find(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    parts.commands.reserve(SKU, LOCATION, "order-1", 2, "web", ttl_seconds=60)
    parts.commands.reserve(SKU, LOCATION, "order-2", 3, "web", ttl_seconds=60)
    parts.deliver()
    assert parts.overdue() == [(SKU, LOCATION)]

    parts.commands.release(SKU, LOCATION, "order-1")
    parts.commands.fulfil(SKU, LOCATION, "order-2")
    assert parts.deliver(after=4) == ["applied", "applied"]

    assert parts.overdue() == []
    assert the_row(parts) == the_stream_now(parts)


def test_each_event_is_applied_once_and_a_redelivery_is_a_duplicate(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    parts.commands.reserve(SKU, LOCATION, "order-1", 2, "web")

    first = parts.deliver()
    again = parts.deliver()

    assert first == ["applied", "applied", "applied"]
    assert again == ["duplicate", "duplicate", "duplicate"]
    assert the_row(parts) == the_stream_now(parts) == (3, 10, 2, 8)
    assert parts.history_reads == []


@pytest.mark.parametrize("missing", [1, 2, 3])
def test_a_gap_is_filled_from_the_stream_however_small(parts: Parts, missing: int) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    for n in range(missing):
        parts.commands.reserve(SKU, LOCATION, f"order-{n}", 1, "web", ttl_seconds=60)
    documents = parts.documents()
    parts.projection.handle(documents[0])  # version 1; the next `missing` are lost

    outcome = parts.projection.handle(documents[-1])

    assert outcome == "caught-up"
    assert parts.history_reads == [(1, 2 + missing)]
    assert the_row(parts) == the_stream_now(parts)
    assert parts.overdue() == [(SKU, LOCATION)]
    assert [parts.projection.handle(d) for d in documents] == ["duplicate"] * len(documents)


def test_a_catch_up_skips_what_another_consumer_applied_meanwhile(parts: Parts) -> None:
    for quantity in (1, 2, 3, 4):
        parts.commands.receive(SKU, LOCATION, quantity)
    documents = parts.documents()
    everything = parts.store.events(SKU, LOCATION)
    parts.projection.handle(documents[0])
    # A history that also returns what is already in the view (another consumer got there
    # first): those are skipped, and the rest still applied.
    parts.projection.history = lambda sku, location, after, upto: everything[:upto]

    assert parts.projection.handle(documents[-1]) == "caught-up"
    assert the_row(parts) == the_stream_now(parts) == (5, 10, 0, 10)


def test_a_row_that_keeps_moving_under_the_projection_is_left_to_the_other_writer(
    tmp_path: Path,
) -> None:
    class Racing(ViewsWithoutLag):
        """Another writer always moves the row just before this one writes."""

        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self.attempts = 0

        def apply(self, change: AvailabilityChange) -> bool:
            self.attempts += 1
            return False

        def version_of(self, sku: str, location: str) -> int:
            return 1

    racing = Racing(tmp_path / "views.db")
    parts = Parts(tmp_path, racing)
    parts.commands.receive(SKU, LOCATION, 10)
    outcome = parts.projection.handle(parts.documents()[1])
    assert outcome == "duplicate"
    assert 1 < racing.attempts <= 10
    parts.close()


# ------------------------------------------------------------------------ rebuild


def test_a_rebuild_keeps_open_expiries_and_drops_cleared_ones(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 20)
    for n in range(1, 5):
        parts.commands.reserve(SKU, LOCATION, f"order-{n}", 1, "web", ttl_seconds=60 * n)
    parts.commands.release(SKU, LOCATION, "order-1")
    parts.commands.fulfil(SKU, LOCATION, "order-2")
    parts.commands.reserve(SKU, LOCATION, "order-3", 2, "web")  # keeps its expiry
    parts.commands.reserve(SKU, LOCATION, "order-5", 1, "web")  # never had one
    events = parts.store.events(SKU, LOCATION)
    parts.views.replace(ViewRow(SKU, LOCATION, 1, 0, 0, 0, parts.clock.now()),
                        {"order-1": parts.clock.now(), "stale": parts.clock.now()})

    parts.projection.rebuild_stream(SKU, LOCATION, events)

    last = events[-1]
    assert parts.row() == ViewRow(SKU, LOCATION, last.originator_version, last.on_hand,
                                  last.reserved, last.available, last.timestamp)
    now = parts.clock.now()
    assert parts.views.overdue_reservations(now + timedelta(minutes=2), 10) == []
    assert parts.views.overdue_reservations(now + timedelta(minutes=3), 10) == [(SKU, LOCATION)]
    assert parts.deliver(after=last.originator_version) == []


def test_a_reservation_set_again_without_an_expiry_drops_out_of_a_rebuild(
    parts: Parts,
) -> None:
    parts.commands.receive(SKU, LOCATION, 20)
    parts.commands.reserve(SKU, LOCATION, "order-1", 1, "web", ttl_seconds=60)
    parts.commands.reserve(SKU, LOCATION, "order-1", 2, "web")
    *earlier, again = parts.store.events(SKU, LOCATION)
    assert isinstance(again, StockItem.Reserved) and again.expires_at is not None
    # Streams written before a reservation kept its earlier expiry hold such an event.
    # (The library makes each event class a dataclass; mypy sees the base's fields only.)
    events = [*earlier, replace(again, expires_at=None)]  # type: ignore[call-arg]

    parts.projection.rebuild_stream(SKU, LOCATION, events)

    assert parts.overdue() == []
    assert parts.row().version == 4


def test_a_rebuild_of_a_reservation_released_without_ever_expiring(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 20)
    parts.commands.reserve(SKU, LOCATION, "order-1", 1, "web")
    parts.commands.fulfil(SKU, LOCATION, "order-1")
    parts.commands.reserve(SKU, LOCATION, "order-2", 1, "web")
    parts.commands.release(SKU, LOCATION, "order-2")

    parts.projection.rebuild_stream(SKU, LOCATION, parts.store.events(SKU, LOCATION))

    assert the_row(parts) == the_stream_now(parts)
    assert parts.overdue() == []


def test_rebuilding_from_no_events_changes_nothing(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    parts.deliver()
    before = parts.row()
    parts.projection.rebuild_stream(SKU, LOCATION, [])
    assert parts.row() == before


# ---------------------------------------------------------------------------- lag


def test_the_lag_is_the_time_from_the_event_to_the_view(parts: Parts) -> None:
    assert parts.projection.status() == projection_status(parts.views, None)
    assert parts.projection.status().lag_seconds is None
    parts.commands.receive(SKU, LOCATION, 10)
    documents = parts.documents()
    ten_seconds_ago = (datetime.now(UTC) - timedelta(seconds=10)).isoformat()
    documents[0]["time"] = ten_seconds_ago

    parts.projection.handle(documents[0])

    lag = parts.projection.last_lag_seconds
    assert lag is not None and 10 <= lag < 60
    status = parts.projection.status()
    assert (status.name, status.position, status.lag_seconds) == ("availability", 1, lag)


def test_an_event_from_a_clock_ahead_shows_no_negative_lag(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 10)
    document = parts.documents()[0]
    document["time"] = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    parts.projection.handle(document)
    assert parts.projection.last_lag_seconds == 0.0


def test_a_view_store_that_keeps_the_lag_is_believed_over_this_process(tmp_path: Path) -> None:
    views = SQLiteAvailabilityViews(tmp_path / "views.db")
    parts = Parts(tmp_path, views)
    parts.commands.receive(SKU, LOCATION, 10)
    parts.deliver()
    stored = views.last_lag_seconds()
    assert stored is not None
    assert projection_status(views, 999.0) == projection_status(views, None)
    assert projection_status(views, 999.0).lag_seconds == stored
    assert projection_status(views).position == 2
    parts.close()


# ------------------------------------------------------------ stock states (§5.3)


def test_the_row_follows_moves_incoming_and_transfers_and_a_rebuild_agrees(
        parts: Parts) -> None:
    now = parts.clock.now()
    parts.commands.receive(SKU, LOCATION, 20)
    parts.commands.move_state(SKU, LOCATION, 5, "sellable", "damaged", "dented")
    parts.commands.move_state(SKU, LOCATION, 2, "sellable", "quality_control")
    parts.commands.set_incoming(SKU, LOCATION, "PO-1", 8, now + timedelta(days=2))
    parts.commands.expect_transfer(SKU, LOCATION, "T-1", 6, now + timedelta(days=1), "DC-1")

    assert parts.deliver() == ["applied"] * 6
    row = parts.row()
    assert (row.on_hand, row.sellable, row.held, row.available) == (
        20, 13, {"damaged": 5, "quality_control": 2}, 13)
    assert (row.incoming_total, row.in_transit) == (14, 6)

    parts.commands.receive_transfer(SKU, LOCATION, "T-1", 6, 6, "DC-1")
    parts.commands.receive(SKU, LOCATION, 3, "PO-1")
    assert parts.deliver(after=6) == ["applied", "applied"]
    row = parts.row()
    assert (row.on_hand, row.sellable, row.incoming_total, row.in_transit) == (29, 22, 5, 0)

    events = parts.store.events(SKU, LOCATION)
    parts.views.replace(ViewRow(SKU, LOCATION, 1, 0, 0, 0, now), {})
    parts.projection.rebuild_stream(SKU, LOCATION, events)
    assert parts.row() == row


def test_a_document_published_before_stock_states_reads_as_nothing_held(parts: Parts) -> None:
    parts.commands.receive(SKU, LOCATION, 4)
    document = parts.documents()[-1]
    data = {k: v for k, v in document["data"].items()
            if k not in ("sellable", "held", "incoming_total", "in_transit")}

    change = AvailabilityChange.from_cloudevent({**document, "data": data})

    assert (change.on_hand, change.sellable, change.held, change.incoming_total,
            change.in_transit) == (4, 4, {"damaged": 0, "quality_control": 0}, 0, 0)
