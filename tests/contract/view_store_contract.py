"""The contract every ``AvailabilityViews`` adapter must pass (SQLite, Cosmos DB).

Written against ``projections.availability`` (the port) only. An adapter proves itself by
subclassing ``ViewStoreContract`` and filling in :meth:`ViewStoreContract.open_views`.
The reference behaviour is the SQLite view; the projection relies on every clause here:
a change is written only at exactly the next version, atomically with that version, so
redeliveries are no-ops and concurrent consumers cannot both apply one event.
"""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from application.ports import AvailabilityViews
from application.views import AvailabilityChange, ViewRow

LOCATION = "STORE-1"
OTHER_LOCATION = "STORE-2"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TOKYO = timezone(timedelta(hours=9))


def change(
    sku: str,
    version: int,
    on_hand: int,
    reserved: int = 0,
    *,
    location: str = LOCATION,
    expiry: tuple[str, datetime | None] | None = None,
    closed: str | None = None,
    at: datetime | None = None,
    damaged: int = 0,
    quality_control: int = 0,
    incoming_total: int = 0,
    in_transit: int = 0,
) -> AvailabilityChange:
    """The change an event at ``version`` makes (available = sellable − reserved)."""
    return AvailabilityChange(
        sku=sku,
        location=location,
        version=version,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - damaged - quality_control - reserved,
        occurred_at=at or T0 + timedelta(minutes=version),
        reservation_expiry=expiry,
        closed_reservation=closed,
        damaged=damaged,
        quality_control=quality_control,
        incoming_total=incoming_total,
        in_transit=in_transit,
    )


class ViewStoreContract(ABC):
    """Behaviour of the availability view store that every back end must show.

    Each test starts from an empty store of its own (``events_applied`` and
    ``overdue_reservations`` look at every row, so tests cannot share one).
    """

    @abstractmethod
    def open_views(self) -> AvailabilityViews:
        """A new instance on this test's store, empty at the test's start.

        Two calls give two independent instances (own connections) on the *same* data,
        like two worker processes.
        """

    # ------------------------------------------------------------------ plumbing

    @pytest.fixture(autouse=True)
    def _views(self) -> Iterator[None]:
        self._opened: list[AvailabilityViews] = []
        self.sku = f"SKU-{uuid.uuid4().hex[:12]}"
        yield
        for views in self._opened:
            views.close()

    def views(self) -> AvailabilityViews:
        views = self.open_views()
        self._opened.append(views)
        return views

    def apply_all(self, views: AvailabilityViews, *changes: AvailabilityChange) -> None:
        for c in changes:
            assert views.apply(c), f"version {c.version} was not applied"

    def row(self, views: AvailabilityViews, location: str = LOCATION) -> ViewRow:
        (found,) = [r for r in views.rows(self.sku) if r.location == location]
        return found

    # ----------------------------------------------------------------- the empty view

    def test_a_sku_never_seen_has_no_rows_zeros_and_version_zero(self) -> None:
        views = self.views()

        availability = views.for_sku(self.sku)

        assert views.version_of(self.sku, LOCATION) == 0
        assert (availability.on_hand, availability.reserved, availability.available) == (0, 0, 0)
        assert availability.locations == []
        assert list(views.rows(self.sku)) == []
        assert views.events_applied() == 0
        assert views.overdue_reservations(T0 + 1000 * HOUR, 10) == []

    # ----------------------------------------------------------------- apply in order

    def test_changes_apply_in_order_and_the_row_reflects_the_last(self) -> None:
        views = self.views()

        applied = [
            views.apply(change(self.sku, 1, 0)),
            views.apply(change(self.sku, 2, 20)),
            views.apply(change(self.sku, 3, 20, 3, expiry=("order-1", T0 + HOUR))),
        ]

        assert applied == [True, True, True]
        assert views.version_of(self.sku, LOCATION) == 3
        assert self.row(views) == ViewRow(
            self.sku, LOCATION, 3, 20, 3, 17, T0 + timedelta(minutes=3)
        )

    def test_a_duplicate_or_older_version_changes_nothing(self) -> None:
        views = self.views()
        self.apply_all(views, change(self.sku, 1, 0), change(self.sku, 2, 20),
                       change(self.sku, 3, 20, 3, expiry=("order-1", T0 + HOUR)))
        before = self.row(views)

        duplicate = views.apply(change(self.sku, 3, 99, 0))
        older = views.apply(change(self.sku, 2, 55, 0))
        first = views.apply(change(self.sku, 1, 0, expiry=("order-2", T0)))

        assert (duplicate, older, first) == (False, False, False)
        assert self.row(views) == before
        assert views.overdue_reservations(T0 + HOUR - timedelta(seconds=1), 10) == []
        assert views.overdue_reservations(T0 + HOUR, 10) == [(self.sku, LOCATION)]

    def test_a_version_beyond_the_next_is_refused(self) -> None:
        views = self.views()
        self.apply_all(views, change(self.sku, 1, 5))

        skipped = views.apply(change(self.sku, 3, 9))
        never_started = views.apply(change(self.sku, 2, 7, location=OTHER_LOCATION))

        assert (skipped, never_started) == (False, False)
        assert views.version_of(self.sku, LOCATION) == 1
        assert self.row(views).on_hand == 5
        assert views.version_of(self.sku, OTHER_LOCATION) == 0
        assert [r.location for r in views.rows(self.sku)] == [LOCATION]

    # ----------------------------------------------------------------- batches

    def test_applies_in_a_batch_see_each_other_and_all_are_there_after_it(self) -> None:
        views = self.views()

        with views.batch():
            applied = [views.apply(change(self.sku, 1, 0)),
                       views.apply(change(self.sku, 2, 20)),
                       views.apply(change(self.sku, 2, 99)),  # a duplicate inside the batch
                       views.apply(change(self.sku, 1, 4, location=OTHER_LOCATION))]
            assert views.version_of(self.sku, LOCATION) == 2

        assert applied == [True, True, False, True]
        assert (self.row(views).version, self.row(views).on_hand) == (2, 20)
        assert views.version_of(self.sku, OTHER_LOCATION) == 1

    # ----------------------------------------------------------------- concurrency

    @pytest.mark.parametrize("version", [1, 2])
    def test_of_concurrent_appliers_of_the_same_change_exactly_one_wins(
        self, version: int
    ) -> None:
        writers = 6
        setup = self.views()
        self.apply_all(setup, *(change(self.sku, v, 10) for v in range(1, version)))
        instances = [self.views() for _ in range(writers)]
        start = threading.Barrier(writers)
        results: list[bool] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def apply(views: AvailabilityViews, n: int) -> None:
            try:
                start.wait(timeout=30)
                # Same version, different figures: a second write would show.
                won = views.apply(change(self.sku, version, 100 + n))
                with lock:
                    results.append(won)
            except BaseException as error:  # reported below, not lost in the thread
                errors.append(error)

        threads = [
            threading.Thread(target=apply, args=(views, n)) for n, views in enumerate(instances)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

        assert errors == []
        assert sorted(results) == [False] * (writers - 1) + [True]
        assert setup.version_of(self.sku, LOCATION) == version
        assert 100 <= self.row(setup).on_hand < 100 + writers

    # ----------------------------------------------------------------- reading a SKU

    def test_for_sku_gives_a_row_per_location_and_the_totals(self) -> None:
        views = self.views()
        other_sku = f"{self.sku}-other"
        self.apply_all(
            views,
            change(self.sku, 1, 0, location=OTHER_LOCATION),
            change(self.sku, 2, 5, location=OTHER_LOCATION),
            change(self.sku, 1, 0),
            change(self.sku, 2, 20),
            change(self.sku, 3, 20, 4, expiry=("order-1", None)),
            change(other_sku, 1, 50),
        )

        availability = views.for_sku(self.sku)

        assert availability.sku == self.sku
        assert (availability.on_hand, availability.reserved, availability.available) == (25, 4, 21)
        assert [
            (r.location, r.on_hand, r.reserved, r.available, r.version)
            for r in availability.locations
        ] == [(LOCATION, 20, 4, 16, 3), (OTHER_LOCATION, 5, 0, 5, 2)]
        assert availability.locations[0].updated_at == T0 + timedelta(minutes=3)
        assert [r.location for r in views.rows(self.sku)] == [LOCATION, OTHER_LOCATION]
        assert {(r.sku, r.location) for r in views.rows()} == {
            (self.sku, LOCATION), (self.sku, OTHER_LOCATION), (other_sku, LOCATION)
        }

    # ------------------------------------------------------------ stock states (§5.3)

    def test_the_row_keeps_held_incoming_and_in_transit_and_the_totals_add_them(self) -> None:
        views = self.views()
        self.apply_all(
            views,
            change(self.sku, 1, 0),
            change(self.sku, 2, 20),
            change(self.sku, 3, 20, 2, damaged=5, quality_control=1, incoming_total=12,
                   in_transit=10),
            change(self.sku, 1, 0, location=OTHER_LOCATION),
            change(self.sku, 2, 8, location=OTHER_LOCATION, quality_control=3,
                   incoming_total=4),
        )

        row = self.row(views)
        availability = views.for_sku(self.sku)

        assert (row.damaged, row.quality_control, row.incoming_total, row.in_transit) == \
            (5, 1, 12, 10)
        assert (row.sellable, row.available) == (14, 12)
        first, second = availability.locations
        assert (first.sellable, first.held, first.incoming_total, first.in_transit) == \
            (14, {"damaged": 5, "quality_control": 1}, 12, 10)
        assert (second.sellable, second.held, second.incoming_total, second.in_transit) == \
            (5, {"damaged": 0, "quality_control": 3}, 4, 0)
        assert (availability.on_hand, availability.sellable, availability.held,
                availability.incoming_total, availability.in_transit, availability.available) \
            == (28, 19, {"damaged": 5, "quality_control": 4}, 16, 10, 17)

    def test_a_later_change_sets_the_states_absolutely(self) -> None:
        views = self.views()
        self.apply_all(views, change(self.sku, 1, 10, damaged=4, incoming_total=6, in_transit=6),
                       change(self.sku, 2, 10))

        row = self.row(views)

        assert (row.damaged, row.quality_control, row.incoming_total, row.in_transit) == \
            (0, 0, 0, 0)
        assert row.sellable == 10

    def test_replace_writes_the_states_too(self) -> None:
        views = self.views()
        repaired = ViewRow(self.sku, LOCATION, 3, 9, 1, 4, T0, damaged=2,
                           quality_control=1, incoming_total=5, in_transit=5)

        views.replace(repaired, {})

        assert self.row(views) == repaired
        assert views.for_sku(self.sku).held == {"damaged": 2, "quality_control": 1}

    def test_events_applied_is_the_sum_of_the_rows_versions(self) -> None:
        views = self.views()
        self.apply_all(
            views,
            change(self.sku, 1, 0), change(self.sku, 2, 3), change(self.sku, 3, 4),
            change(self.sku, 1, 0, location=OTHER_LOCATION),
            change(self.sku, 2, 1, location=OTHER_LOCATION),
        )

        assert views.events_applied() == 5

    # ----------------------------------------------------------- reservation expiries

    def test_an_expiring_reservation_is_overdue_only_once_due(self) -> None:
        views = self.views()
        self.apply_all(views, change(self.sku, 1, 10),
                       change(self.sku, 2, 10, 2, expiry=("order-1", T0 + HOUR)))

        assert views.overdue_reservations(T0 + HOUR - timedelta(microseconds=1), 10) == []
        assert views.overdue_reservations(T0 + HOUR, 10) == [(self.sku, LOCATION)]
        # A time in another zone is the same instant.
        tokyo = (T0 + HOUR).astimezone(TOKYO)
        assert views.overdue_reservations(tokyo, 10) == [(self.sku, LOCATION)]

    def test_release_and_fulfilment_clear_their_reservations_expiry(self) -> None:
        views = self.views()
        self.apply_all(
            views,
            change(self.sku, 1, 10),
            change(self.sku, 2, 10, 2, expiry=("order-1", T0 + HOUR)),
            change(self.sku, 3, 10, 5, expiry=("order-2", T0 + 2 * HOUR)),
        )

        self.apply_all(views, change(self.sku, 4, 10, 3, closed="order-1"))  # released
        assert views.overdue_reservations(T0 + HOUR, 10) == []
        assert views.overdue_reservations(T0 + 2 * HOUR, 10) == [(self.sku, LOCATION)]

        self.apply_all(views, change(self.sku, 5, 7, 0, closed="order-2"))  # fulfilled
        assert views.overdue_reservations(T0 + 100 * HOUR, 10) == []

    def test_a_reservation_set_again_without_expiry_is_no_longer_overdue(self) -> None:
        views = self.views()
        self.apply_all(
            views,
            change(self.sku, 1, 10),
            change(self.sku, 2, 10, 2, expiry=("order-1", T0 + HOUR)),
            change(self.sku, 3, 10, 3, expiry=("order-1", None)),
        )

        assert views.overdue_reservations(T0 + 100 * HOUR, 10) == []

    def test_overdue_names_each_location_once_and_honours_the_limit(self) -> None:
        views = self.views()
        self.apply_all(
            views,
            change(self.sku, 1, 10),
            change(self.sku, 2, 10, 1, expiry=("order-1", T0)),
            change(self.sku, 3, 10, 2, expiry=("order-2", T0 + HOUR)),
            change(self.sku, 1, 10, location=OTHER_LOCATION),
            change(self.sku, 2, 10, 1, location=OTHER_LOCATION, expiry=("order-3", T0)),
        )

        everything = views.overdue_reservations(T0 + 2 * HOUR, 10)
        limited = views.overdue_reservations(T0 + 2 * HOUR, 1)

        assert sorted(everything) == [(self.sku, LOCATION), (self.sku, OTHER_LOCATION)]
        assert len(limited) == 1 and limited[0] in everything

    # ----------------------------------------------------------------------- repair

    def test_replace_overwrites_the_row_and_its_expiries(self) -> None:
        views = self.views()
        self.apply_all(views, change(self.sku, 1, 10),
                       change(self.sku, 2, 10, 2, expiry=("order-1", T0 + HOUR)))
        repaired = ViewRow(self.sku, LOCATION, 7, 30, 6, 24, T0 + 3 * HOUR)

        views.replace(repaired, {"order-9": T0 + 5 * HOUR})

        assert self.row(views) == repaired
        assert views.version_of(self.sku, LOCATION) == 7
        assert views.overdue_reservations(T0 + 4 * HOUR, 10) == []
        assert views.overdue_reservations(T0 + 5 * HOUR, 10) == [(self.sku, LOCATION)]
        assert views.apply(change(self.sku, 8, 30, 0, closed="order-9"))
        assert views.overdue_reservations(T0 + 100 * HOUR, 10) == []

    def test_replace_creates_a_row_that_was_missing(self) -> None:
        views = self.views()
        row = ViewRow(self.sku, OTHER_LOCATION, 4, 8, 0, 8, T0)

        views.replace(row, {})

        assert list(views.rows(self.sku)) == [row]
        assert views.events_applied() == 4

    # ----------------------------------------------------------------- durability

    def test_the_view_survives_reopening(self) -> None:
        writer = self.open_views()
        self.apply_all(writer, change(self.sku, 1, 10),
                       change(self.sku, 2, 10, 2, expiry=("order-1", T0 + HOUR)))
        writer.close()

        reader = self.views()

        assert reader.version_of(self.sku, LOCATION) == 2
        assert self.row(reader) == ViewRow(
            self.sku, LOCATION, 2, 10, 2, 8, T0 + timedelta(minutes=2)
        )
        assert reader.overdue_reservations(T0 + HOUR, 10) == [(self.sku, LOCATION)]
        assert reader.events_applied() == 2
        assert reader.apply(change(self.sku, 3, 10, 0, closed="order-1"))

