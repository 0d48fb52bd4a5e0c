"""The contract every process store must pass (SQLite, Cosmos DB): the streams of every
kind of process (orders, transfers), location-group streams, and the process index the
sweep reads.

Written against the port (``application.ports.ProcessStreams`` / ``AggregateStreams``)
as :mod:`tests.contract.event_store_contract` is for stock streams. A back end proves
itself by subclassing :class:`ProcessStoreContract` and filling in
:meth:`ProcessStoreContract.open_store`; every test about process streams runs once per
kind in :data:`KINDS`.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.process_streams import ProcessStore
from application.ports import ConcurrencyConflict, ProcessStreams, StoreUnavailable
from domain.location_group import LocationGroup
from domain.order import Order, OrderRequest, order_uuid
from domain.transfer import Transfer, TransferRequest, transfer_uuid

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FAR_PAST = T0 - timedelta(days=3650)
"""Before any wake-up these tests write: the due query of a store shared between tests
is asked relative to it, so other tests' wake-ups (at or after ``T0``) do not answer."""


@dataclass(frozen=True)
class Kind:
    """One kind of process as the suite drives it: its streams in a store, how to start
    one (two events, not driven), a further decision that records an event (``step``),
    and one that brings it to rest after that step (``end``)."""

    name: str
    streams: Callable[[ProcessStore], ProcessStreams[Any]]
    stream_id: Callable[[str], UUID]
    start: Callable[[str], Any]
    step: Callable[[Any], None]
    end: Callable[[Any], None]


def _order(order_id: str, ttl_seconds: int | None = None) -> OrderRequest:
    return OrderRequest.of(order_id, "web", [{"sku": "SKU-1", "location": "S1",
                                              "quantity": 2}], ttl_seconds=ttl_seconds)


def _placed_order(order_id: str) -> Order:
    order = Order.create(order_id)
    order.place(_order(order_id), T0, {}, lambda sku, location: 10)
    return order


def _requested_transfer(transfer_id: str) -> Transfer:
    transfer = Transfer.create(transfer_id)
    transfer.place(TransferRequest.of(transfer_id, "SKU-1", "DC", "S1", 4))
    return transfer


def _shipped(transfer: Transfer) -> None:
    """The source's and the destination's steps recorded: at rest, ``shipped``."""
    for record in (transfer.record_shipped, transfer.record_expected):
        step = transfer.next_step()
        assert step is not None
        record(step)
    assert transfer.status == "shipped"


KINDS = (
    Kind("order", lambda store: store.orders, order_uuid, _placed_order,
         lambda order: order.place(_order(order.order_id, ttl_seconds=300), T0, {},
                                   lambda sku, location: 10),
         lambda order: order.request_release()),
    Kind("transfer", lambda store: store.transfers, transfer_uuid, _requested_transfer,
         lambda transfer: transfer.request_shipment(T0), _shipped),
)


class ProcessStoreContract(ABC):
    """Behaviour of the process store that every back end must show.

    Each test works on processes of its own (fresh ids), so a back end may share one
    database between tests; due queries are asked at moments no other test writes.
    The tests of process streams run once per kind (``self.kind``).
    """

    @abstractmethod
    def open_store(self, *, reachable: bool = True) -> ProcessStore:
        """A new store instance on this test's database (two calls: two instances on the
        same data, like two workers). With ``reachable=False`` its back end cannot be
        reached: opening it or its first use raises ``StoreUnavailable``."""

    # ------------------------------------------------------------------ plumbing

    @pytest.fixture(autouse=True, params=KINDS, ids=[k.name for k in KINDS])
    def _stores(self, request: pytest.FixtureRequest) -> Iterator[None]:
        self.kind: Kind = request.param
        self._opened: list[ProcessStore] = []
        self.tag = uuid.uuid4().hex[:10]
        yield
        for store in self._opened:
            store.close()

    def store(self) -> ProcessStore:
        store = self.open_store()
        self._opened.append(store)
        return store

    def streams(self, store: ProcessStore) -> ProcessStreams[Any]:
        """The store's streams of this test's kind of process."""
        return self.kind.streams(store)

    def placed(self, name: str) -> Any:
        """A new process of this test's kind, started (two events) but not yet driven."""
        return self.kind.start(self.key(name))

    def key(self, name: str) -> str:
        return f"{name}-{self.tag}"

    # ---------------------------------------------------------------- round trip

    def test_a_saved_process_reads_back_with_its_state_and_version_in_another_instance(
            self) -> None:
        writer, reader = self.store(), self.store()
        process = self.placed("o")
        self.kind.step(process)
        self.streams(writer).save(process, wake_at=T0)

        loaded = self.streams(reader).get(self.key("o"))

        assert loaded is not None
        assert loaded.version == process.version > 2
        assert loaded.view() == process.view()
        assert self.streams(reader).get(self.key("never-placed")) is None

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
        self.streams(first).save(self.placed("o"), wake_at=T0)
        stale = self.streams(second).get(self.key("o"))
        fresh = self.streams(first).get(self.key("o"))
        assert stale is not None and fresh is not None
        self.kind.step(fresh)
        self.streams(first).save(fresh, wake_at=T0 + timedelta(seconds=1))
        self.kind.step(stale)

        with pytest.raises(ConcurrencyConflict):
            self.streams(second).save(stale, wake_at=None)

        final = self.streams(self.store()).get(self.key("o"))
        assert final is not None and final.version == fresh.version

    # ------------------------------------------------------------------ wake-ups

    def test_a_wake_up_is_due_from_its_moment_longest_overdue_first(self) -> None:
        streams = self.streams(self.store())
        base = FAR_PAST - timedelta(hours=1) + timedelta(minutes=int(self.tag[:4], 16) % 50)
        streams.save(self.placed("late"), wake_at=base + timedelta(seconds=30))
        streams.save(self.placed("early"), wake_at=base + timedelta(seconds=10))

        assert streams.due(base + timedelta(seconds=9), 10) == []
        assert streams.due(base + timedelta(seconds=10), 10) == [self.key("early")]
        assert streams.due(base + timedelta(seconds=30), 10) == [
            self.key("early"), self.key("late")]
        assert streams.due(base + timedelta(seconds=30), 1) == [self.key("early")]

    def test_a_wake_up_moves_and_clears_with_the_events_of_its_save(self) -> None:
        streams = self.streams(self.store())
        moment = FAR_PAST + timedelta(days=1, seconds=int(self.tag[:4], 16))
        streams.save(self.placed("o"), wake_at=moment)
        assert self.key("o") in streams.due(moment, 1000)
        process = streams.get(self.key("o"))
        assert process is not None

        self.kind.step(process)
        streams.save(process, wake_at=moment + timedelta(minutes=5))
        assert self.key("o") not in streams.due(moment + timedelta(minutes=4), 1000)
        assert self.key("o") in streams.due(moment + timedelta(minutes=5), 1000)

        self.kind.end(process)
        assert process.status in ("released", "shipped")
        streams.save(process, wake_at=None)
        assert self.key("o") not in streams.due(T0 + timedelta(days=3650), 1000)

    def test_a_conflicting_save_leaves_the_wake_up_as_it_was(self) -> None:
        first, second = self.store(), self.store()
        moment = FAR_PAST + timedelta(days=2, seconds=int(self.tag[:4], 16))
        self.streams(first).save(self.placed("o"), wake_at=moment)
        stale = self.streams(second).get(self.key("o"))
        fresh = self.streams(first).get(self.key("o"))
        assert stale is not None and fresh is not None
        self.kind.step(fresh)
        self.streams(first).save(fresh, wake_at=moment + timedelta(seconds=1))
        self.kind.step(stale)

        with pytest.raises(ConcurrencyConflict):
            self.streams(second).save(stale, wake_at=moment + timedelta(days=300))

        assert self.key("o") in self.streams(first).due(moment + timedelta(seconds=1), 1000)

    def test_a_save_without_a_wake_up_is_never_due(self) -> None:
        streams = self.streams(self.store())
        streams.save(self.placed("o"), wake_at=None)
        assert self.key("o") not in streams.due(T0 + timedelta(days=3650), 1000)
        assert streams.get(self.key("o")) is not None

    # ---------------------------------------------------------------- failures

    def test_an_unreachable_store_is_store_unavailable(self) -> None:
        with pytest.raises(StoreUnavailable):
            store = self.open_store(reachable=False)
            self._opened.append(store)
            self.streams(store).get(self.key("o"))
