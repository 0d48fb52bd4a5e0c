"""Random transfers between two locations, with receipts, reservations, every transfer
command, crashes at every point of the process driver, and the sweep, on SQLite.

Whenever every transfer is at rest: for each, shipped = received + lost + in transit,
its figures agree with the two stock streams (the destination's incoming entry is what
is in transit while shipped, and nothing after), and the two locations' on hand plus
what is in transit plus what was lost equals every unit ever received (no unit created
or lost by a crash). After the sweep every transfer is at rest.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from application.processes import CRASH_POINTS, STALL_AFTER
from application.transfers import Transfers
from domain.errors import (
    InsufficientStock,
    InvalidRequest,
    ReservationClosed,
    TransferConflict,
    TransferStatusConflict,
    UnknownReservation,
    UnknownTransfer,
)
from domain.transfer import AT_REST, TransferRequest
from tests.transfers.conftest import SKU, World, open_world

LOCATIONS = ("DC-1", "STORE-1")
TRANSFERS = st.sampled_from(["t-1", "t-2"])
POINTS = CRASH_POINTS
CRASHES = st.sampled_from([None, None, None, *POINTS])
"""Most commands run through; the others die at one of the driver's crash points."""
REFUSALS = (InsufficientStock, InvalidRequest, TransferConflict, TransferStatusConflict,
            UnknownTransfer)


class Crash(Exception):
    pass


class TransferMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="transfer-machine-")
        self.world: World = open_world(Path(self.directory))
        self.received = 0
        self.requested: set[str] = set()
        for location in LOCATIONS:
            self.receive_stock(location, 12)

    def teardown(self) -> None:
        self.world.stock.close()
        self.world.processes.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def service(self, point: str | None, hit: int) -> Transfers:
        hits: Counter[str] = Counter()

        def crash_point(name: str) -> None:
            hits[name] += 1
            if name == point and hits[name] == hit:
                raise Crash(name)

        return self.world.transfers(crash_point=crash_point)

    # ------------------------------------------------------------------ rules

    @rule(location=st.sampled_from(LOCATIONS), quantity=st.integers(1, 6))
    def receive_stock(self, location: str, quantity: int) -> None:
        self.world.commands.receive(SKU, location, quantity)
        self.received += quantity

    @rule(location=st.sampled_from(LOCATIONS), quantity=st.integers(0, 6))
    def reserve_for_an_order(self, location: str, quantity: int) -> None:
        with contextlib.suppress(InsufficientStock, UnknownReservation, ReservationClosed):
            if quantity:
                self.world.commands.reserve(SKU, location, "o-1", quantity, "web")
            else:
                self.world.commands.release(SKU, location, "o-1")

    @rule(transfer_id=TRANSFERS, outbound=st.booleans(), quantity=st.integers(1, 6))
    def request(self, transfer_id: str, outbound: bool, quantity: int) -> None:
        source, destination = LOCATIONS if outbound else reversed(LOCATIONS)
        with contextlib.suppress(*REFUSALS):
            self.world.transfers().request(
                TransferRequest.of(transfer_id, SKU, source, destination, quantity))
            self.requested.add(transfer_id)

    def act(self, transfer_id: str, command: str, point: str | None, hit: int,
            *args: int) -> None:
        """Run ``command`` on a service that may die at ``point``; a refusal of a
        transfer at rest records nothing anywhere; an answer leaves it at rest."""
        before = self.world.transfer(transfer_id)
        at_rest_before = before is not None and before.status in AT_REST
        version = None if before is None else before.version
        stock = self.world.stock.max_position()
        try:
            getattr(self.service(point, hit), command)(transfer_id, *args)
        except Crash:
            return
        except REFUSALS as refusal:
            after = self.world.transfer(transfer_id)
            if isinstance(refusal, InsufficientStock):
                assert after is not None and after.status == "requested"
                return  # the refused shipment is recorded on the transfer
            if at_rest_before:
                assert after is not None and after.version == version
                assert self.world.stock.max_position() == stock
            return
        after = self.world.transfer(transfer_id)
        assert after is not None and after.status in AT_REST

    @rule(transfer_id=TRANSFERS, point=CRASHES, hit=st.integers(1, 2))
    def ship(self, transfer_id: str, point: str | None, hit: int) -> None:
        self.act(transfer_id, "ship", point, hit)

    @rule(transfer_id=TRANSFERS, quantity=st.integers(1, 7), point=CRASHES,
          hit=st.integers(1, 2))
    def receive(self, transfer_id: str, quantity: int, point: str | None, hit: int) -> None:
        self.act(transfer_id, "receive", point, hit, quantity)

    @rule(transfer_id=TRANSFERS, point=CRASHES, hit=st.integers(1, 2))
    def close(self, transfer_id: str, point: str | None, hit: int) -> None:
        self.act(transfer_id, "close", point, hit)

    @rule(transfer_id=TRANSFERS, point=CRASHES, hit=st.integers(1, 2))
    def cancel(self, transfer_id: str, point: str | None, hit: int) -> None:
        self.act(transfer_id, "cancel", point, hit)

    @rule(transfer_id=TRANSFERS)
    def read(self, transfer_id: str) -> None:
        self.act(transfer_id, "get", None, 1)

    @rule(transfer_id=TRANSFERS, command=st.sampled_from(["ship", "close", "cancel"]))
    def repeat_changes_nothing(self, transfer_id: str, command: str) -> None:
        try:
            getattr(self.world.transfers(), command)(transfer_id)
        except REFUSALS:
            return
        before = self.world.transfer(transfer_id)
        stock = self.world.stock.max_position()
        getattr(self.world.transfers(), command)(transfer_id)
        after = self.world.transfer(transfer_id)
        assert before is not None and after is not None
        assert after.version == before.version
        assert self.world.stock.max_position() == stock

    @rule()
    def time_passes_and_the_sweep_runs(self) -> None:
        self.world.clock.advance(STALL_AFTER.total_seconds() + 1)
        self.world.transfers().sweep()
        for transfer_id in self.requested:
            transfer = self.world.transfer(transfer_id)
            assert transfer is not None and transfer.status in AT_REST, transfer_id

    # ------------------------------------------------------------- invariants

    @invariant()
    def units_are_conserved_whenever_every_transfer_is_at_rest(self) -> None:
        transfers = [self.world.transfer(t) for t in self.requested]
        if any(t is None or t.status not in AT_REST for t in transfers):
            return  # a crash left one part way: the next request or the sweep ends it
        in_transit = lost = 0
        arriving: Counter[str] = Counter()
        for t in transfers:
            assert t is not None
            assert t.shipped == t.received + t.lost + t.in_transit
            assert t.in_transit >= 0 and t.lost >= 0
            if t.status in ("requested", "cancelled"):
                assert (t.shipped, t.received, t.lost) == (0, 0, 0)
            else:
                assert t.shipped == t.quantity
            if t.status == "shipped":
                assert (t.received, t.lost) == (0, 0)
            if t.status == "closed":
                assert t.in_transit == 0
            expected = t.in_transit if t.status == "shipped" else 0
            assert self.world.incoming(t.to_location, t.transfer_id) == expected
            arriving[t.to_location] += expected
            in_transit += t.in_transit
            lost += t.lost
        on_hand = sum(self.world.on_hand(location) for location in LOCATIONS)
        assert on_hand + in_transit + lost == self.received
        for location in LOCATIONS:
            item = self.world.stock.get(SKU, location)
            if item is not None:
                assert sum(int(e["quantity"]) for e in item.incoming.values()
                           if e["transfer_from"] is not None) == arriving[location]
                assert item.sellable >= 0
                assert item.reserved <= item.sellable


TransferMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_transfers_with_crashes_and_sweeps = TransferMachine.TestCase
