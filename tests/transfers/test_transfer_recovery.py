"""A transfer killed anywhere between its steps (between the source's step and the
destination's above all) is driven to its end by the next request for it or by the
sweep, and no unit is lost or counted twice: the crash hook of the process driver (the
one orders use) kills it at each point in turn."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from application.processes import CRASH_POINTS, STALL_AFTER
from application.transfers import Transfers
from tests.transfers.conftest import DC, STORE, World, request

POINTS = CRASH_POINTS


class Crash(Exception):
    """The process died here."""


def crashing(point: str, hit: int) -> Callable[[str], None]:
    seen = {"n": 0}

    def crash_point(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == hit:
                raise Crash(f"{name} #{hit}")

    return crash_point


def crash_in(world: World, command: Callable[[Transfers], object], point: str,
             hit: int) -> bool:
    """Run ``command`` on a transfer service that dies at ``point`` (its ``hit``-th
    time); whether it died."""
    try:
        command(world.transfers(crash_point=crashing(point, hit)))
    except Crash:
        return True
    return False


def assert_conserved(world: World, total: int) -> None:
    transfer = world.transfer("T-1")
    assert transfer is not None
    assert transfer.shipped == transfer.received + transfer.lost + transfer.in_transit
    assert world.on_hand(DC) + world.on_hand(STORE) + transfer.in_transit + transfer.lost \
        == total
    if transfer.status == "shipped":
        assert world.incoming(STORE, "T-1") == transfer.in_transit
    else:
        assert world.incoming(STORE, "T-1") == 0


@pytest.mark.parametrize("hit", [1, 2])
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("by", ["next request", "sweep"])
def test_a_shipment_killed_anywhere_is_finished_by_the_next_request_or_the_sweep(
        world: World, point: str, hit: int, by: str):
    world.commands.receive("SKU-T", DC, 30)
    world.transfers().request(request())

    died = crash_in(world, lambda t: t.ship("T-1"), point, hit)

    if not died:  # the shipment has fewer points than that: nothing to recover
        assert world.transfer("T-1").status == "shipped"  # type: ignore[union-attr]
        return
    if by == "sweep":
        world.clock.advance(STALL_AFTER.total_seconds() + 1)
        world.transfers().sweep()
        transfer = world.transfer("T-1")
        assert transfer is not None
    else:
        view = world.transfers().get("T-1")
        assert view.status == "shipped"
        transfer = world.transfer("T-1")
    assert transfer is not None
    assert (transfer.status, transfer.shipped) == ("shipped", 10)
    assert world.on_hand(DC) == 20
    assert world.incoming(STORE, "T-1") == 10
    assert_conserved(world, 30)
    assert world.transfer_events("T-1").count("ShipmentTaken") == 1


def test_between_the_sources_step_and_the_destinations_the_sweep_adds_the_incoming(
        world: World):
    world.commands.receive("SKU-T", DC, 30)
    world.transfers().request(request())
    # Killed after the source's step, before the destination's (the driver records the
    # results of consecutive steps in one write, so neither is recorded yet).
    assert crash_in(world, lambda t: t.ship("T-1"), "after-step", 1)
    assert world.on_hand(DC) == 20 and world.incoming(STORE, "T-1") == 0
    assert world.transfer("T-1").status == "shipping"  # type: ignore[union-attr]

    assert world.transfers().sweep() == 0  # not stalled yet: a request may be driving it
    world.clock.advance(STALL_AFTER.total_seconds() + 1)
    assert world.transfers().sweep() == 1

    assert world.incoming(STORE, "T-1") == 10
    assert world.transfer("T-1").status == "shipped"  # type: ignore[union-attr]
    assert world.transfers().sweep() == 0  # at rest: no longer due


@pytest.mark.parametrize("point", POINTS)
def test_a_receipt_and_a_close_killed_anywhere_are_finished_once(world: World, point: str):
    world.commands.receive("SKU-T", DC, 30)
    world.transfers().request(request())
    world.transfers().ship("T-1")

    assert crash_in(world, lambda t: t.receive("T-1", 7), point, 1)
    assert world.transfers().receive("T-1", 7).status == "received"
    assert crash_in(world, lambda t: t.close("T-1"), point, 1)
    world.clock.advance(STALL_AFTER.total_seconds() + 1)
    world.transfers().sweep()

    transfer = world.transfer("T-1")
    assert transfer is not None
    assert (transfer.status, transfer.received, transfer.lost) == ("closed", 7, 3)
    assert (world.on_hand(DC), world.on_hand(STORE)) == (20, 7)
    assert_conserved(world, 30)
    destination = world.stock.get("SKU-T", STORE)
    assert destination is not None and destination.incoming == {}
    assert world.transfer_events("T-1").count("LossRecorded") == 1
