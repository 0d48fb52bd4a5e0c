"""Orders on Azure: the order functions, called through the objects ``function_app.app``
registered with real binding objects (``func.HttpRequest``, ``TimerRequest``), on the
services of the Azure composition root over the Cosmos test server (stock streams in
``events``, order and group streams in ``processes``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from azure.functions.timer import TimerRequest

from adapters.clock import ManualClock
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings
from adapters.cosmos.process_streams import CosmosProcessStore
from application.orders import Orders
from application.processes import STALL_AFTER
from application.settings import load
from composition import Services
from composition.azure import azure_services
from functions.container import use_services
from tests.cosmos_server import CosmosServer
from tests.http.conftest import FUNCTIONS, call

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


class Crash(Exception):
    """A process killed at a named point (the driver's crash hook)."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def azure(cosmos_server: CosmosServer, clock: ManualClock) -> Iterator[Services]:
    settings = CosmosSettings(endpoint=cosmos_server.endpoint,
                              database=f"orders-{uuid4().hex[:8]}",
                              key=cosmos_server.key, verify_tls=False)
    CosmosDatastore(settings).create_containers_if_missing()  # Bicep's containers
    container = azure_services(load({
        "STOCKSTREAM_EVENT_STORE": "cosmos",
        "COSMOS__accountEndpoint": settings.endpoint,
        "COSMOS_KEY": settings.key or "",
        "COSMOS_DATABASE": settings.database,
    }), clock)
    use_services(container)
    yield container
    use_services(None)
    container.close()


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

    def crash_after_first_hold(point: str) -> None:
        if point == "after-record":
            raise Crash(point)

    interrupted = Orders(azure.orders.orders, azure.orders.groups, azure.commands,
                         azure.store, clock, crash_point=crash_after_first_hold)
    with pytest.raises(Crash):
        interrupted.place("ORD-9", "web", [
            {"sku": sku, "location": "S1", "quantity": 2},
            {"sku": sku, "location": "S2", "quantity": 2}])
    assert reservations(azure, sku, "S1") == {"ORD-9": 2}
    assert reservations(azure, sku, "S2") == {}  # killed part way

    FUNCTIONS["sweep_orders"].get_user_function()(TimerRequest(past_due=False))
    assert reservations(azure, sku, "S2") == {}  # not stalled yet: a request may be driving it

    clock.advance(STALL_AFTER.total_seconds())
    FUNCTIONS["sweep_orders"].get_user_function()(TimerRequest(past_due=False))

    assert reservations(azure, sku, "S2") == {"ORD-9": 2}
    order = call("get_order", "GET", {"order_id": "ORD-9"})
    assert (order.status, order.body["status"]) == (200, "held")


def test_the_process_store_of_the_azure_root_is_the_cosmos_one(azure: Services) -> None:
    assert any(isinstance(c, CosmosProcessStore) for c in azure.closers)
