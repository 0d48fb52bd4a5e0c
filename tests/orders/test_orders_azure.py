"""Orders on Azure: the order functions, called through the objects ``function_app.app``
registered with real binding objects (``func.HttpRequest``, ``TimerRequest``), on the
services of the Azure composition root over the Cosmos test server (stock streams in
``events``, order and group streams in ``processes``): the fixtures of
:mod:`tests.azure_processes`, which ``conftest.py`` brings in."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from azure.functions.timer import TimerRequest

from adapters.clock import ManualClock
from adapters.cosmos.persistence import CosmosDatastore
from adapters.cosmos.process_streams import CosmosProcessStore
from adapters.embedded_broker import EmbeddedBroker
from application.orders import Orders
from application.processes import STALL_AFTER
from composition import Services
from contracts.processes import ORDER
from contracts.topology import AVAILABILITY_SUBSCRIPTION
from tests.azure_processes import (
    Crash,
    processes_change_feed,
    published_process,
    relay_the_processes_twice,
)
from tests.functions.test_pipeline_functions import received
from tests.http.conftest import FUNCTIONS, call

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def reservations(azure: Services, sku: str, location: str) -> dict[str, int]:
    item = azure.store.get(sku, location)
    return {} if item is None else {k: r["quantity"] for k, r in item.reservations.items()}


def cart(sku: str, *lines: tuple[str, int]) -> dict[str, Any]:
    return {"channel": "web",
            "lines": [{"sku": sku, "location": loc, "quantity": q} for loc, q in lines]}


def test_an_order_placed_through_the_azure_functions_holds_its_lines_in_cosmos(
        azure: Services) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, "S1", 5)
    azure.commands.receive(sku, "S2", 5)
    assert isinstance(azure.orders, Orders)
    assert isinstance(azure.orders.orders.app.factory.datastore, CosmosDatastore)  # type: ignore[attr-defined]

    placed = call("place_order", "PUT", {"order_id": "ORD-1"}, cart(sku, ("S1", 2), ("S2", 3)))
    again = call("place_order", "PUT", {"order_id": "ORD-1"}, cart(sku, ("S1", 2), ("S2", 3)))
    read = call("get_order", "GET", {"order_id": "ORD-1"})

    assert placed.status == 201 and placed.body["status"] == "held"
    assert [(ln["location"], ln["held"]) for ln in placed.body["lines"]] == [("S1", 2), ("S2", 3)]
    assert (again.status, again.body) == (200, placed.body)
    assert (read.status, read.body) == (200, placed.body)
    assert reservations(azure, sku, "S1") == {"ORD-1": 2}
    assert reservations(azure, sku, "S2") == {"ORD-1": 3}
    short = call("place_order", "PUT", {"order_id": "ORD-2"}, cart(sku, ("S1", 3), ("S2", 3)))
    assert (short.status, short.problem_code) == (409, "insufficient-stock")
    assert reservations(azure, sku, "S2") == {"ORD-1": 3}  # ORD-2's hold compensated
    assert call("release_order", "DELETE", {"order_id": "ORD-1"}).status == 200
    assert reservations(azure, sku, "S1") == reservations(azure, sku, "S2") == {}


def test_a_location_group_is_defined_and_sourced_from_on_azure(azure: Services) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, "S2", 4)
    defined = call("define_location_group", "PUT", {"group": "EAST"},
                   {"locations": ["S1", "S2"], "strategy": "priority"})
    assert (defined.status, defined.body["locations"]) == (200, ["S1", "S2"])

    placed = call("place_order", "PUT", {"order_id": "ORD-G"}, {
        "channel": "pos", "lines": [{"sku": sku, "location_group": "EAST", "quantity": 4}]})

    assert placed.status == 201
    assert placed.body["lines"][0]["location"] == "S2"
    assert call("get_location_group", "GET", {"group": "EAST"}).body == defined.body


def test_the_sweep_timer_drives_an_interrupted_order_to_its_end(
        azure: Services, clock: ManualClock) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, "S1", 5)
    azure.commands.receive(sku, "S2", 5)
    assert azure.orders is not None

    def crash_before_holds(point: str) -> None:
        if point == "before-step":  # the intent recorded, no hold taken yet
            raise Crash(point)

    interrupted = Orders(azure.orders.orders, azure.orders.groups, azure.commands,
                         azure.store, clock, crash_point=crash_before_holds)
    with pytest.raises(Crash):
        interrupted.place("ORD-9", "web", [
            {"sku": sku, "location": "S1", "quantity": 2},
            {"sku": sku, "location": "S2", "quantity": 2}])
    assert reservations(azure, sku, "S1") == reservations(azure, sku, "S2") == {}

    FUNCTIONS["sweep_orders"].get_user_function()(TimerRequest(past_due=False))
    assert reservations(azure, sku, "S2") == {}  # not stalled yet: a request may be driving it

    clock.advance(STALL_AFTER.total_seconds())
    FUNCTIONS["sweep_orders"].get_user_function()(TimerRequest(past_due=False))

    assert reservations(azure, sku, "S1") == reservations(azure, sku, "S2") == {"ORD-9": 2}
    order = call("get_order", "GET", {"order_id": "ORD-9"})
    assert (order.status, order.body["status"]) == (200, "held")


def test_the_process_store_of_the_azure_root_is_the_cosmos_one(azure: Services) -> None:
    assert any(isinstance(c, CosmosProcessStore) for c in azure.closers)


# ------------------------------------------------------------- order events relayed


def test_the_process_relay_has_its_own_leases_and_an_infinite_retry_policy() -> None:
    function = FUNCTIONS["relay_process_events"]
    retry = function.get_settings_dict("retry_policy")
    assert retry is not None
    assert (retry["strategy"], retry["max_retry_count"]) == ("exponential_backoff", "-1")
    (trigger,) = [json.loads(b) if isinstance(b, str) else b
                  for b in function.get_raw_bindings()]
    assert trigger["type"] == "cosmosDBTrigger" and trigger["connection"] == "COSMOS"
    assert (trigger["containerName"], trigger["leaseContainerName"]) == ("processes", "leases")
    assert trigger["leaseContainerPrefix"] == "process-relay-"
    (stock,) = [json.loads(b) if isinstance(b, str) else b
                for b in FUNCTIONS["relay_events"].get_raw_bindings()]
    assert stock["leaseContainerPrefix"] != trigger["leaseContainerPrefix"]
    assert trigger["startFromBeginning"] is True


def test_an_orders_events_go_out_in_its_session_valid_against_the_registry(
        azure: Services, broker: EmbeddedBroker) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, "S1", 5)
    assert call("define_location_group", "PUT", {"group": "EAST"},
                {"locations": ["S1"], "strategy": "priority"}).status == 200
    assert call("place_order", "PUT", {"order_id": "ORD-7"}, {
        "channel": "web", "lines": [{"sku": sku, "location_group": "EAST", "quantity": 2}],
    }).status == 201
    assert azure.orders is not None
    order = azure.orders.orders.get("ORD-7")
    assert order is not None

    relay_the_processes_twice(azure)

    # Its versions once each (no group event, no wake-up companion), in its session.
    documents = published_process(received(broker), ORDER, "ORD-7", order.version)
    types = [d["type"] for d in documents]
    assert "Stockstream.OrderLineHeld.v1" in types and "Stockstream.OrderPlaced.v1" in types
    placed = next(d for d in documents if d["type"] == "Stockstream.OrderPlaced.v1")
    assert placed["data"]["groups"] == {"EAST": {"locations": ["S1"], "strategy": "priority"}}


def test_the_availability_consumer_skips_order_events(
        azure: Services, broker: EmbeddedBroker) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, "S1", 5)
    assert call("place_order", "PUT", {"order_id": "ORD-8"},
                cart(sku, ("S1", 1))).status == 201
    FUNCTIONS["relay_process_events"].get_user_function()(
        documents=processes_change_feed(azure))
    consumer = azure.consumers[AVAILABILITY_SUBSCRIPTION]
    assert azure.availability is not None
    before = azure.availability.for_sku(sku)

    outcomes = {consumer.process(m.body) for m in received(broker)}

    assert outcomes == {"skipped"}
    assert azure.availability.for_sku(sku) == before
