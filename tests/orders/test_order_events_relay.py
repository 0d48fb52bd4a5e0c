"""The embedded relay publishes order events from the process store after a checkpoint
of its own: in the order's session, with deterministic ids, location groups left out,
and again after a crash between publishing and checkpointing (same ids: the topic's
duplicate detection drops them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.clock import ManualClock
from adapters.embedded_broker import EmbeddedBroker
from application.ports import OutgoingMessage
from application.relay import Relay
from contracts.processes import is_process_type
from contracts.topology import TOPIC
from tests.orders.conftest import World, line


class Recording:
    """A publisher that keeps what it was given (and may fail after taking a batch of
    order events, as when the broker's answer is lost)."""

    def __init__(self, *, lose_order_answers: bool = False) -> None:
        self.messages: list[OutgoingMessage] = []
        self.lose_order_answers = lose_order_answers

    def publish(self, topic: str, messages: Any) -> None:
        self.messages.extend(messages)
        if self.lose_order_answers and any(is_process_type(m.subject) for m in messages):
            raise ConnectionError("the answer was lost after the broker took the batch")

    def close(self) -> None:
        pass


def relay(world: World, publisher: Any) -> Relay:
    return Relay(world.stock, publisher, world.stock.checkpoints(), world.clock,
                 processes=world.processes)


def test_order_events_go_out_in_the_orders_session_and_groups_stay_internal(
        world: World) -> None:
    world.commands.receive("A", "S1", 10)
    world.groups.define("EAST", ["S1"], "priority")
    world.orders().place("o-1", "web", [line("A", 2, location=None, group="EAST")])
    publisher = Recording()

    relay(world, publisher).drain()

    orders = [m for m in publisher.messages if is_process_type(m.subject)]
    assert [m.message_id for m in orders] == [
        f"order:o-1:{v}" for v in range(1, len(orders) + 1)]
    assert {m.session_id for m in orders} == {"order:o-1"}
    assert all(m.application_properties["process"] == "order" for m in orders)
    assert not [m for m in publisher.messages if "LocationGroup" in m.subject]
    stock = [m for m in publisher.messages if not is_process_type(m.subject)]
    assert {m.session_id for m in stock} == {"A|S1"}
    checkpoints = world.stock.checkpoints()
    assert checkpoints.position(Relay.PROCESSES_NAME) == world.processes.max_position()


def test_a_crash_between_publish_and_checkpoint_publishes_the_same_ids_again(
        world: World) -> None:
    world.commands.receive("A", "S1", 10)
    world.orders().place("o-1", "web", [line("A", 2)])
    failing = Recording(lose_order_answers=True)
    with pytest.raises(ConnectionError):
        relay(world, failing).pump()
    again = Recording()

    relay(world, again).drain()

    lost = [m.message_id for m in failing.messages if is_process_type(m.subject)]
    assert lost and all(i.startswith("order:o-1:") for i in lost)
    assert [m.message_id for m in again.messages] == lost  # stock was checkpointed
    assert relay(world, Recording()).pump() == 0  # nothing left


def test_the_broker_delivers_order_events_in_order_within_their_session(
        world: World, broker: EmbeddedBroker) -> None:
    world.commands.receive("A", "S1", 10)
    orders = world.orders()
    orders.place("o-1", "web", [line("A", 2)])
    orders.release("o-1")
    relay(world, broker).drain()

    receiver = broker.accept_session(TOPIC, "availability", "order:o-1")
    with receiver:
        batch = receiver.receive(100, 0.0)
        for message in batch:
            receiver.complete(message)
    sequences = [json.loads(m.body)["sequence"] for m in batch]
    assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 4


def test_the_relays_status_counts_order_events_not_yet_published_and_their_age(
        world: World) -> None:
    world.commands.receive("A", "S1", 10)
    world.groups.define("EAST", ["S1"], "priority")
    world.orders().place("o-1", "web", [line("A", 2, location=None, group="EAST")])
    order_events = len(world.order_events("o-1"))
    # Events are stamped when they happen; the relay reads the age on a clock 90 s on.
    later = ManualClock(datetime.now(UTC) + timedelta(seconds=90))
    published = Relay(world.stock, Recording(), world.stock.checkpoints(), later,
                      processes=world.processes)

    # The location group's event is never published, so it is no backlog.
    backlog = published.status()
    assert backlog.depth == world.stock.max_position() + order_events
    assert backlog.oldest_age_seconds == pytest.approx(90, abs=1)
    published.drain()
    world.groups.define("WEST", ["S1"], "priority")  # now the store's last event
    assert published.status().depth == 0
    assert published.status().oldest_age_seconds is None

    # A release: the order's new events and the stock release are the backlog.
    stock_before = world.stock.max_position()
    world.orders().release("o-1")
    later.advance(30)
    released = published.status()
    new_order_events = len(world.order_events("o-1")) - order_events
    assert new_order_events > 0
    assert released.depth == new_order_events + world.stock.max_position() - stock_before
    assert released.oldest_age_seconds == pytest.approx(120, abs=1)


def test_a_relay_without_the_process_store_counts_stock_events_only(world: World) -> None:
    world.commands.receive("A", "S1", 10)
    world.orders().place("o-1", "web", [line("A", 2)])

    stock_only = Relay(world.stock, Recording(), world.stock.checkpoints(), world.clock)

    assert stock_only.status().depth == world.stock.max_position()
