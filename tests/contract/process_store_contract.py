"""The contract every process store must pass (SQLite, Cosmos DB): order and
location-group streams, and the process index the sweep reads.

Written against the port (``application.ports.ProcessStreams`` / ``AggregateStreams``)
as :mod:`tests.contract.event_store_contract` is for stock streams. A back end proves
itself by subclassing :class:`ProcessStoreContract` and filling in
:meth:`ProcessStoreContract.open_store`.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.process_streams import ProcessStore
from application.ports import ConcurrencyConflict, StoreUnavailable
from domain.location_group import LocationGroup
from domain.order import Order, OrderRequest

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FAR_PAST = T0 - timedelta(days=3650)
"""Before any wake-up these tests write: the due query of a store shared between tests
is asked relative to it, so other tests' wake-ups (at or after ``T0``) do not answer."""


class ProcessStoreContract(ABC):
    """Behaviour of the process store that every back end must show.

    Each test works on processes of its own (fresh ids), so a back end may share one
    database between tests; due queries are asked at moments no other test writes.
    """

    @abstractmethod
    def open_store(self, *, reachable: bool = True) -> ProcessStore:
        """A new store instance on this test's database (two calls: two instances on the
        same data, like two workers). With ``reachable=False`` its back end cannot be
        reached: opening it or its first use raises ``StoreUnavailable``."""

    # ------------------------------------------------------------------ plumbing

    @pytest.fixture(autouse=True)
    def _stores(self) -> Iterator[None]:
        self._opened: list[ProcessStore] = []
        self.tag = uuid.uuid4().hex[:10]
        yield
        for store in self._opened:
            store.close()

    def store(self) -> ProcessStore:
        store = self.open_store()
        self._opened.append(store)
        return store

    def placed(self, name: str, *, sku: str = "SKU-1") -> Order:
        """A new order, placed (two events) but not yet driven."""
        order_id = f"{name}-{self.tag}"
        order = Order.create(order_id)
        request = OrderRequest.of(order_id, "web",
                                  [{"sku": sku, "location": "S1", "quantity": 2}])
        order.place(request, T0, {}, lambda sku, location: 10)
        return order

    def key(self, name: str) -> str:
        return f"{name}-{self.tag}"

    # ---------------------------------------------------------------- round trip

    def test_a_saved_order_reads_back_with_its_state_and_version_in_another_instance(
            self) -> None:
        writer, reader = self.store(), self.store()
        order = self.placed("o")
        writer.orders.save(order, wake_at=T0)

        loaded = reader.orders.get(self.key("o"))

        assert loaded is not None
        assert loaded.version == order.version
        assert loaded.view() == order.view()
        assert reader.orders.get(self.key("never-placed")) is None

    def test_a_location_group_reads_back_and_an_unknown_one_is_none(self) -> None:
        writer, reader = self.store(), self.store()
        group = LocationGroup.create(f"EAST-{self.tag}")
        group.define(["S1", "S2"], "most_available")
        writer.groups.save(group)

        loaded = reader.groups.get(f"EAST-{self.tag}")

        assert loaded is not None and loaded.definition == group.definition
        assert reader.groups.get(f"WEST-{self.tag}") is None

    def test_a_stale_save_is_a_conflict_and_records_nothing(self) -> None:
        first, second = self.store(), self.store()
        first.orders.save(self.placed("o"), wake_at=T0)
        stale, fresh = second.orders.get(self.key("o")), first.orders.get(self.key("o"))
        assert stale is not None and fresh is not None
        fresh.request_release()
        first.orders.save(fresh, wake_at=T0 + timedelta(seconds=1))
        stale.request_release("expired")

        with pytest.raises(ConcurrencyConflict):
            second.orders.save(stale, wake_at=None)

        final = self.store().orders.get(self.key("o"))
        assert final is not None and final.version == fresh.version

    # ------------------------------------------------------------------ wake-ups

    def test_a_wake_up_is_due_from_its_moment_longest_overdue_first(self) -> None:
        store = self.store()
        base = FAR_PAST - timedelta(hours=1) + timedelta(minutes=int(self.tag[:4], 16) % 50)
        store.orders.save(self.placed("late"), wake_at=base + timedelta(seconds=30))
        store.orders.save(self.placed("early"), wake_at=base + timedelta(seconds=10))

        assert store.orders.due(base + timedelta(seconds=9), 10) == []
        assert store.orders.due(base + timedelta(seconds=10), 10) == [self.key("early")]
        assert store.orders.due(base + timedelta(seconds=30), 10) == [
            self.key("early"), self.key("late")]
        assert store.orders.due(base + timedelta(seconds=30), 1) == [self.key("early")]

    def test_a_wake_up_moves_and_clears_with_the_events_of_its_save(self) -> None:
        store = self.store()
        moment = FAR_PAST + timedelta(days=1, seconds=int(self.tag[:4], 16))
        store.orders.save(self.placed("o"), wake_at=moment)
        assert self.key("o") in store.orders.due(moment, 1000)
        order = store.orders.get(self.key("o"))
        assert order is not None

        order.place(OrderRequest.of(self.key("o"), "web",
                                    [{"sku": "SKU-1", "location": "S1", "quantity": 2}],
                                    ttl_seconds=300), T0, {}, lambda sku, location: 10)
        store.orders.save(order, wake_at=moment + timedelta(minutes=5))
        assert self.key("o") not in store.orders.due(moment + timedelta(minutes=4), 1000)
        assert self.key("o") in store.orders.due(moment + timedelta(minutes=5), 1000)

        order.request_release()
        assert order.status == "released"
        store.orders.save(order, wake_at=None)
        assert self.key("o") not in store.orders.due(T0 + timedelta(days=3650), 1000)

    def test_a_conflicting_save_leaves_the_wake_up_as_it_was(self) -> None:
        first, second = self.store(), self.store()
        moment = FAR_PAST + timedelta(days=2, seconds=int(self.tag[:4], 16))
        first.orders.save(self.placed("o"), wake_at=moment)
        stale, fresh = second.orders.get(self.key("o")), first.orders.get(self.key("o"))
        assert stale is not None and fresh is not None
        fresh.request_release()
        first.orders.save(fresh, wake_at=moment + timedelta(seconds=1))
        stale.request_release()

        with pytest.raises(ConcurrencyConflict):
            second.orders.save(stale, wake_at=moment + timedelta(days=300))

        assert self.key("o") in first.orders.due(moment + timedelta(seconds=1), 1000)

    def test_a_save_without_a_wake_up_is_never_due(self) -> None:
        store = self.store()
        store.orders.save(self.placed("o"), wake_at=None)
        assert self.key("o") not in store.orders.due(T0 + timedelta(days=3650), 1000)
        assert store.orders.get(self.key("o")) is not None

    # ---------------------------------------------------------------- failures

    def test_an_unreachable_store_is_store_unavailable(self) -> None:
        with pytest.raises(StoreUnavailable):
            store = self.open_store(reachable=False)
            self._opened.append(store)
            store.orders.get(self.key("o"))
