"""The contract every ``StockItemStore`` adapter must pass (SQLite, Cosmos DB).

Written against ``application.ports`` (plus the ``eventsourcing`` application behind
``EventSourcedStockItems`` where the contract is about it: one stream per save,
snapshots), as ``eventsourcing``'s recorder test cases are written against its
persistence interfaces. An adapter proves itself by subclassing ``EventStoreContract``
and filling in :meth:`EventStoreContract.open_store`.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.event_store import SNAPSHOT_INTERVAL, EventSourcedStockItems
from application.ports import ConcurrencyConflict, MultiStreamSave, StoreUnavailable
from domain.stock_item import StockItem
from tests.events import only

LOCATION = "STORE-1"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class EventStoreContract(ABC):
    """Behaviour of the event-store port that every back end must show.

    Each test works on streams of its own (a fresh SKU), so a back end may share one
    database between tests.
    """

    @abstractmethod
    def open_store(self, *, reachable: bool = True) -> EventSourcedStockItems:
        """A new store instance on this test's database.

        Two calls give two independent instances (own caches, own connections) on the
        *same* data, like two worker processes. With ``reachable=False`` the store's
        back end cannot be reached (an unreachable endpoint with a short timeout, a
        database file that cannot be opened): opening it or its first use must raise
        ``StoreUnavailable``.
        """

    # ------------------------------------------------------------------ plumbing

    @pytest.fixture(autouse=True)
    def _stores(self) -> Iterator[None]:
        self._opened: list[EventSourcedStockItems] = []
        self.sku = f"SKU-{uuid.uuid4().hex[:12]}"
        yield
        for store in self._opened:
            store.close()

    def store(self) -> EventSourcedStockItems:
        store = self.open_store()
        self._opened.append(store)
        return store

    def new_item(self, sku: str | None = None) -> StockItem:
        return StockItem.create(sku or self.sku, LOCATION)

    # ---------------------------------------------------------------- round trip

    def test_a_saved_stream_reads_back_with_the_same_state_and_version(self) -> None:
        writer, reader = self.store(), self.store()
        item = self.new_item()
        item.receive(20, reference="PO-1", idempotency_key="receipt-1")
        item.reserve("order-1", 3, "web", T0 + timedelta(hours=1))
        saved = writer.save(item)

        loaded = reader.get(self.sku, LOCATION)

        assert [type(e).__name__ for e in saved] == ["Created", "Received", "Reserved"]
        assert loaded is not None
        assert loaded.version == 3
        assert loaded.position() == item.position()
        assert loaded.reservations == item.reservations

    def test_a_fresh_read_sees_what_another_instance_appended(self) -> None:
        first, second = self.store(), self.store()
        item = self.new_item()
        item.receive(5)
        first.save(item)
        assert second.get(self.sku, LOCATION) is not None  # cached at version 2 there

        later = first.get(self.sku, LOCATION)
        assert later is not None
        later.receive(7)
        first.save(later)

        seen = second.get(self.sku, LOCATION)
        assert seen is not None and (seen.version, seen.on_hand) == (3, 12)

    def test_an_unknown_stream_is_none_and_has_no_events(self) -> None:
        store = self.store()
        assert store.get(self.sku, LOCATION) is None
        assert store.events(self.sku, LOCATION) == []

    def test_every_stream_is_listed_once_by_sku_and_location_whatever_its_length(
            self) -> None:
        writer, reader = self.store(), self.store()
        long = self.new_item()
        for n in range(1, 6):
            long.receive(n)
        writer.save(long)
        other = StockItem.create(self.sku, "STORE-B")
        writer.save(other)
        writer.save(self.new_item(f"{self.sku}-X"))

        mine = [key for key in reader.stream_keys() if key[0].startswith(self.sku)]

        assert sorted(mine) == [(self.sku, LOCATION), (self.sku, "STORE-B"),
                                (f"{self.sku}-X", LOCATION)]

    # -------------------------------------------------------------- concurrency

    def test_a_save_from_a_stale_copy_conflicts_and_writes_nothing(self) -> None:
        one, two = self.store(), self.store()
        item = self.new_item()
        item.receive(10)
        one.save(item)
        mine = one.get(self.sku, LOCATION)
        theirs = two.get(self.sku, LOCATION)
        assert mine is not None and theirs is not None
        mine.reserve("order-1", 4, "pos")
        one.save(mine)

        theirs.receive(1)
        theirs.reserve("order-2", 2, "web")  # two events: the whole batch must fail
        with pytest.raises(ConcurrencyConflict):
            two.save(theirs)

        events = self.store().events(self.sku, LOCATION)
        assert [type(e).__name__ for e in events] == ["Created", "Received", "Reserved"]
        assert [e.originator_version for e in events] == [1, 2, 3]
        after = two.get(self.sku, LOCATION)
        assert after is not None
        assert (after.version, after.on_hand, after.reserved) == (3, 10, 4)

    def test_creating_a_stream_that_exists_conflicts(self) -> None:
        one, two = self.store(), self.store()
        first, second = self.new_item(), self.new_item()
        first.receive(1)
        second.receive(2)
        one.save(first)

        with pytest.raises(ConcurrencyConflict):
            two.save(second)

        stored = self.store().get(self.sku, LOCATION)
        assert stored is not None and stored.on_hand == 1

    def test_a_save_of_two_streams_is_refused_and_writes_neither(self) -> None:
        store = self.store()
        a, b = self.new_item(), self.new_item(f"{self.sku}-B")
        a.receive(1)
        b.receive(2)

        with pytest.raises(MultiStreamSave):
            store.app.save(a, b)

        assert store.get(a.sku, LOCATION) is None
        assert store.get(b.sku, LOCATION) is None

    # ------------------------------------------------------- several streams at once

    atomic_across_streams: bool = False
    """Whether the back end writes several streams in one atomic write (``save_many``)."""

    def test_save_many_of_one_stream_is_a_save(self) -> None:
        store = self.store()
        item = self.new_item()
        item.receive(3, idempotency_key="k-1")

        (saved,) = store.save_many([item])

        assert [type(e).__name__ for e in saved] == ["Created", "Received"]
        assert store.recall(self.sku, LOCATION, StockItem.key_memo("k-1")) is not None

    def test_save_many_writes_every_stream_and_its_memos_or_refuses_before_writing(
            self) -> None:
        store = self.store()
        a, b = self.new_item(), self.new_item(f"{self.sku}-B")
        a.receive(1, idempotency_key="ka")
        b.receive(2, idempotency_key="kb")
        b.reserve("order-1", 1, "web")

        if not self.atomic_across_streams:
            with pytest.raises(MultiStreamSave):
                store.save_many([a, b])
            assert self.store().get(a.sku, LOCATION) is None
            assert self.store().get(b.sku, LOCATION) is None
            return
        saved = store.save_many([a, b])

        reader = self.store()
        assert [len(events) for events in saved] == [2, 3]
        assert [type(e).__name__ for e in reader.events(b.sku, LOCATION)] == [
            "Created", "Received", "Reserved"]
        assert reader.recall(a.sku, LOCATION, StockItem.key_memo("ka")) is not None
        assert reader.recall(b.sku, LOCATION, StockItem.key_memo("kb")) is not None
        assert reader.recall(a.sku, LOCATION, StockItem.key_memo("kb")) is None

    def test_save_many_with_one_stale_stream_writes_none_of_them(self) -> None:
        if not self.atomic_across_streams:
            pytest.skip("this back end writes one stream at a time")
        one, two = self.store(), self.store()
        stale = self.new_item()
        stale.receive(1)
        one.save(stale)
        theirs = two.get(self.sku, LOCATION)
        assert theirs is not None
        stale.receive(1)
        one.save(stale)
        fresh = self.new_item(f"{self.sku}-B")
        fresh.receive(5, idempotency_key="kb")
        theirs.receive(9)

        with pytest.raises(ConcurrencyConflict):
            two.save_many([fresh, theirs])

        reader = self.store()
        assert reader.get(fresh.sku, LOCATION) is None
        assert reader.recall(fresh.sku, LOCATION, StockItem.key_memo("kb")) is None
        after = reader.get(self.sku, LOCATION)
        assert after is not None and after.on_hand == 2

    # ------------------------------------------------------------------- reads

    def test_events_after_a_version_come_oldest_first_up_to_the_limit(self) -> None:
        store = self.store()
        item = self.new_item()
        for quantity in range(1, 10):
            item.receive(quantity)
        store.save(item)  # versions 1..10

        page = store.events(self.sku, LOCATION, after=3, limit=4)
        rest = store.events(self.sku, LOCATION, after=7)
        everything = store.events(self.sku, LOCATION)

        assert [e.originator_version for e in page] == [4, 5, 6, 7]
        assert [e.quantity for e in only(page, StockItem.Received)] == [3, 4, 5, 6]
        assert [e.originator_version for e in rest] == [8, 9, 10]
        assert [e.originator_version for e in everything] == list(range(1, 11))
        assert store.events(self.sku, LOCATION, after=10) == []
        assert all(e.originator_id == item.id for e in everything)

    def test_events_since_a_moment_come_newest_first_from_the_end_of_the_stream(
        self,
    ) -> None:
        store = self.store()
        item = self.new_item()
        for quantity in range(1, 150):  # more than one page read backwards
            item.receive(quantity)
            if len(item.pending_events) >= 50:
                store.save(item)
        store.save(item)
        events = store.events(self.sku, LOCATION)
        moment = events[99].timestamp  # version 100

        since = store.events_since(self.sku, LOCATION, moment, version=140)

        assert [e.originator_version for e in since] == list(range(140, 100, -1))
        assert store.events_since(self.sku, LOCATION, events[-1].timestamp,
                                  version=item.version) == []

    # ------------------------------------------------------------------- memos

    def test_memos_are_recalled_with_the_version_that_wrote_them(self) -> None:
        writer, reader = self.store(), self.store()
        item = self.new_item()
        item.receive(20, reference="PO-1", idempotency_key="receipt-1")  # version 2
        item.reserve("order-1", 3, "web")
        item.fulfil("order-1", 2)  # version 4
        item.reserve("order-2", 1, "web")
        item.release("order-2")  # version 6
        item.record_count("count-1", 17, T0)  # version 7
        writer.save(item)

        def recall(memo: str) -> tuple[str, int] | None:
            found = reader.recall(self.sku, LOCATION, memo)
            return None if found is None else (found.value, found.version)

        assert recall(StockItem.key_memo("receipt-1")) == ("receipt:20:PO-1", 2)
        assert recall(StockItem.order_memo("order-1")) == ("fulfilled:2", 4)
        assert recall(StockItem.order_memo("order-2")) == ("cancelled", 6)
        assert recall(StockItem.count_memo("count-1")) == (
            StockItem.count_fingerprint(17, T0), 7)
        assert recall(StockItem.key_memo("never-sent")) is None
        assert reader.recall(f"{self.sku}-other", LOCATION,
                             StockItem.key_memo("receipt-1")) is None

    def test_recall_many_finds_what_recall_finds_one_by_one(self) -> None:
        writer, reader = self.store(), self.store()
        item, other = self.new_item(), self.new_item(f"{self.sku}-B")
        item.receive(20, idempotency_key="receipt-1")
        item.reserve("order-1", 3, "web")
        item.release("order-1")
        other.receive(1, idempotency_key="receipt-1")
        writer.save(item)
        writer.save(other)
        wanted = [(self.sku, LOCATION, StockItem.key_memo("receipt-1")),
                  (self.sku, LOCATION, StockItem.order_memo("order-1")),
                  (self.sku, LOCATION, StockItem.order_memo("never")),
                  (other.sku, LOCATION, StockItem.key_memo("receipt-1")),
                  (other.sku, LOCATION, StockItem.order_memo("order-1"))]

        found = reader.recall_many(wanted)

        assert found == {key: reader.recall(*key) for key in wanted
                         if reader.recall(*key) is not None}
        assert [(v.value, v.version) for v in found.values()] == [
            ("receipt:20:", 2), ("cancelled", 4), ("receipt:1:", 2)]

    def test_a_save_that_conflicts_writes_no_memo(self) -> None:
        first, second = self.store(), self.store()
        item = self.new_item()
        first.save(item)
        stale = second.get(self.sku, LOCATION)
        assert stale is not None
        item.receive(1)
        first.save(item)
        stale.receive(5, idempotency_key="lost-race")
        with pytest.raises(ConcurrencyConflict):
            second.save(stale)
        assert first.recall(self.sku, LOCATION, StockItem.key_memo("lost-race")) is None

    def test_the_newest_memo_of_a_name_answers(self) -> None:
        store = self.store()
        item = self.new_item()
        item.receive(1, idempotency_key="k")
        store.save(item)
        # The same name written again (as after its window passed): the newer one counts.
        item.receive(2, idempotency_key="k-other")
        item.trigger_event(StockItem.Received, sku=self.sku, location=LOCATION, on_hand=5,
                           reserved=0, available=5, quantity=2, reference=None,
                           idempotency_key="k")
        store.save(item)
        found = store.recall(self.sku, LOCATION, StockItem.key_memo("k"))
        assert found is not None and (found.value, found.version) == ("receipt:2:", 4)

    # ------------------------------------- stock states, incoming supply, transfers

    def test_state_incoming_and_transfer_events_read_back_with_their_state_and_memos(
            self) -> None:
        """Every stock event of §5.3 (a state move, an expected receipt, a transfer's
        shipment at its source, and at its destination its incoming entry, receipt and
        loss) round-trips through the store, and the transfer memos that make each step
        idempotent are recalled from it."""
        writer, reader = self.store(), self.store()
        source = self.new_item()
        source.receive(20)
        source.move(3, "sellable", "damaged", reason="dented", idempotency_key="m-1")
        source.set_incoming("PO-9", 5, T0 + timedelta(days=1))
        source.ship_transfer("T-1", 4, "STORE-B")
        destination = StockItem.create(self.sku, "STORE-B")
        destination.expect_transfer("T-1", 4, T0 + timedelta(days=2), LOCATION)
        destination.receive_transfer("T-1", 3, 4, LOCATION)
        destination.record_transit_loss("T-1", 1, LOCATION)
        writer.save(source)
        writer.save(destination)

        loaded_source = reader.get(self.sku, LOCATION)
        loaded_destination = reader.get(self.sku, "STORE-B")

        assert [type(e).__name__ for e in reader.events(self.sku, LOCATION)] == [
            "Created", "Received", "StateMoved", "IncomingSet", "TransferShipped"]
        assert [type(e).__name__ for e in reader.events(self.sku, "STORE-B")] == [
            "Created", "IncomingSet", "TransferReceived", "TransitLost"]
        assert loaded_source is not None and loaded_destination is not None
        assert _state(loaded_source) == _state(source)
        assert _state(loaded_destination) == _state(destination)
        at_source, at_destination = loaded_source.position(), loaded_destination.position()
        assert (at_source.sellable, at_source.held, at_source.incoming_total) == (
            13, {"damaged": 3, "quality_control": 0}, 5)
        assert (at_destination.sellable, at_destination.incoming_total) == (3, 0)
        def recall(location: str, memo: str) -> tuple[str, int] | None:
            found = reader.recall(self.sku, location, memo)
            return None if found is None else (found.value, found.version)

        assert recall(LOCATION, StockItem.transfer_memo("T-1")) == ("shipped:4", 5)
        assert recall("STORE-B", StockItem.transfer_memo("T-1")) == ("closed:3:1", 4)
        assert recall(LOCATION, StockItem.key_memo("m-1")) is not None

    # --------------------------------------------------------------- snapshots

    def test_a_snapshot_is_taken_at_100_events_and_a_reload_from_it_equals_a_full_replay(
        self,
    ) -> None:
        writer = self.store()
        item = self.new_item()
        self._make_history(writer, item, until_version=SNAPSHOT_INTERVAL + 7)
        assert item.version == SNAPSHOT_INTERVAL + 7

        assert writer.flush_snapshots(timeout=30)  # written after the saves, off their path
        snapshots = list(writer.app.snapshots.get(item.id))  # type: ignore[union-attr]
        assert [s.originator_version for s in snapshots] == [SNAPSHOT_INTERVAL]

        reader = self.store()
        reads: list[Any] = []
        select_events = reader.app.recorder.select_events

        def spy(originator_id: Any, **kwargs: Any) -> Any:
            reads.append(kwargs.get("gt"))
            return select_events(originator_id, **kwargs)

        reader.app.recorder.select_events = spy  # type: ignore[method-assign]
        from_snapshot = reader.get(self.sku, LOCATION)
        full_replay = self._replay(writer.events(self.sku, LOCATION))

        assert reads == [SNAPSHOT_INTERVAL]  # only the events after the snapshot were read
        assert from_snapshot is not None
        assert from_snapshot.version == full_replay.version == SNAPSHOT_INTERVAL + 7
        assert _state(from_snapshot) == _state(full_replay) == _state(item)

    @staticmethod
    def _make_history(store: EventSourcedStockItems, item: StockItem, until_version: int) -> None:
        """Varied commands (stock states, incoming supply and transfers both ways among
        them), saved ten events at a time, until the stream has that version."""
        n = 0
        while item.version < until_version:
            step = n % 12
            if step == 0:
                item.receive(5, reference=f"PO-{n}", idempotency_key=f"receipt-{n}")
            elif step == 1:
                item.reserve(f"order-{n}", 2, "web", T0 + timedelta(minutes=n))
            elif step == 2:
                item.fulfil(f"order-{n - 1}", 1)
            elif step == 3:
                item.reserve(f"order-{n}", 1, "pos")
            elif step == 4:
                item.release(f"order-{n - 1}")
            elif step == 5:
                item.record_count(f"count-{n}", item.on_hand + 1, T0 + timedelta(hours=n))
            elif step == 6:
                item.move(1, "sellable", "quality_control", idempotency_key=f"move-{n}")
            elif step == 7:
                item.set_incoming(f"PO-{n}", 3, T0 + timedelta(days=n))
            elif step == 8:
                item.ship_transfer(f"T-out-{n}", 1, "STORE-B")
            elif step == 9:
                item.expect_transfer(f"T-in-{n}", 2, T0 + timedelta(days=n), "DC-9")
            elif step == 10:
                item.receive_transfer(f"T-in-{n - 1}", 1, 2, "DC-9")
            else:
                item.record_transit_loss(f"T-in-{n - 2}", 1, "DC-9")
            n += 1
            if len(item.pending_events) >= 10 or item.version >= until_version:
                store.save(item)

    @staticmethod
    def _replay(events: list[StockItem.Event]) -> StockItem:
        aggregate: StockItem | None = None
        for event in events:
            aggregate = event.mutate(aggregate)
        assert aggregate is not None
        return aggregate

    # ------------------------------------------------------------- availability

    def test_an_unreachable_store_raises_store_unavailable(self) -> None:
        try:
            store = self.open_store(reachable=False)
        except StoreUnavailable:
            return  # refused when opened: what a back end that connects eagerly does
        self._opened.append(store)
        with pytest.raises(StoreUnavailable):
            store.get(self.sku, LOCATION)
        with pytest.raises(StoreUnavailable):
            store.events(self.sku, LOCATION)
        item = self.new_item()
        item.receive(1)
        with pytest.raises(StoreUnavailable):
            store.save(item)


def _state(item: StockItem) -> dict[str, Any]:
    """The aggregate's state without the timestamps of when it was last touched."""
    state = {k: v for k, v in vars(item).items() if k not in ("_modified_on", "_pending_events")}
    state["position"] = item.position()
    return state
