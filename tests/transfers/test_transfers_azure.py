"""Transfers on Azure: the transfer functions, called through the objects
``function_app.app`` registered with real binding objects (``func.HttpRequest``,
``TimerRequest``, ``func.DocumentList``), on the services of the Azure composition root
over the Cosmos test server (stock streams in ``events``, transfer streams in
``processes``): the fixtures of :mod:`tests.azure_processes`, as orders' Azure tests use."""

from __future__ import annotations

from uuid import uuid4

import pytest
from azure.functions.timer import TimerRequest

from adapters.clock import ManualClock
from adapters.cosmos.persistence import CosmosDatastore
from adapters.embedded_broker import EmbeddedBroker
from application.processes import STALL_AFTER
from application.transfers import Transfers
from composition import Services
from contracts.processes import TRANSFER
from contracts.topology import AVAILABILITY_SUBSCRIPTION
from tests.azure_processes import Crash, published_process, relay_the_processes_twice
from tests.functions.test_pipeline_functions import received
from tests.http.conftest import FUNCTIONS, call

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

DC, STORE = "DC-1", "STORE-1"


def transfer_body(sku: str, quantity: int = 4) -> dict[str, object]:
    return {"sku": sku, "from_location": DC, "to_location": STORE, "quantity": quantity}


def units(azure: Services, sku: str, location: str) -> tuple[int, int]:
    """(on hand, incoming under transfer ids and references) of a SKU-location."""
    item = azure.store.get(sku, location)
    if item is None:
        return 0, 0
    return item.on_hand, sum(int(e["quantity"]) for e in item.incoming.values())


def transfer_versions(azure: Services, transfer_id: str) -> int:
    assert azure.transfers is not None
    transfer = azure.transfers.transfers.get(transfer_id)
    return 0 if transfer is None else transfer.version


def test_a_transfer_driven_through_the_azure_functions_moves_stock_on_cosmos(
        azure: Services) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, DC, 10)
    assert isinstance(azure.transfers, Transfers)
    assert isinstance(azure.transfers.transfers.app.factory.datastore,  # type: ignore[attr-defined]
                      CosmosDatastore)
    route = {"transfer_id": "T-1"}

    requested = call("request_transfer", "PUT", route, transfer_body(sku))
    again = call("request_transfer", "PUT", route, transfer_body(sku))
    other = call("request_transfer", "PUT", route, transfer_body(sku, quantity=5))
    assert (requested.status, requested.body["status"]) == (201, "requested")
    assert (again.status, again.body) == (200, requested.body)
    assert (other.status, other.problem_code) == (409, "transfer-conflict")

    shipped = call("ship_transfer", "POST", route)
    version = transfer_versions(azure, "T-1")
    assert call("ship_transfer", "POST", route).body == shipped.body  # a repeat
    assert transfer_versions(azure, "T-1") == version  # ... records nothing
    assert (shipped.status, shipped.body["status"], shipped.body["in_transit"]) == (
        200, "shipped", 4)
    assert units(azure, sku, DC) == (6, 0)
    assert units(azure, sku, STORE) == (0, 4)

    received_ = call("receive_transfer", "POST", route, {"quantity": 3})
    assert (received_.status, received_.body["status"]) == (200, "received")
    assert units(azure, sku, STORE) == (3, 0)
    closed = call("close_transfer", "POST", route)
    read = call("get_transfer", "GET", route)

    assert (closed.status, read.status, read.body) == (200, 200, closed.body)
    assert {k: closed.body[k] for k in ("status", "shipped", "received", "lost",
                                        "in_transit")} == {
        "status": "closed", "shipped": 4, "received": 3, "lost": 1, "in_transit": 0}
    assert units(azure, sku, DC)[0] + units(azure, sku, STORE)[0] + 1 == 10  # + lost
    short = call("request_transfer", "PUT", {"transfer_id": "T-2"}, transfer_body(sku, 7))
    refused = call("ship_transfer", "POST", {"transfer_id": "T-2"})
    assert (short.status, refused.status, refused.problem_code) == (
        201, 409, "insufficient-stock")
    assert refused.body["available"] == 6
    assert call("cancel_transfer", "DELETE", {"transfer_id": "T-2"}).body["status"] == (
        "cancelled")
    assert call("get_transfer", "GET", {"transfer_id": "T-9"}).status == 404


def test_the_sweep_timer_finishes_a_shipment_killed_between_the_two_locations(
        azure: Services, clock: ManualClock) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, DC, 10)
    assert azure.transfers is not None
    assert call("request_transfer", "PUT", {"transfer_id": "T-5"},
                transfer_body(sku)).status == 201

    def crash_after_the_sources_step(point: str) -> None:
        if point == "after-step":
            raise Crash(point)

    interrupted = Transfers(azure.transfers.transfers, azure.commands, clock,
                            crash_point=crash_after_the_sources_step)
    with pytest.raises(Crash):
        interrupted.ship("T-5")
    assert units(azure, sku, DC) == (6, 0)
    assert units(azure, sku, STORE) == (0, 0)  # killed before the destination's step
    sweep = FUNCTIONS["sweep_transfers"].get_user_function()

    sweep(TimerRequest(past_due=False))
    assert units(azure, sku, STORE) == (0, 0)  # not stalled yet: a request may drive it

    clock.advance(STALL_AFTER.total_seconds() + 1)
    sweep(TimerRequest(past_due=False))

    transfer = azure.transfers.transfers.get("T-5")  # as stored: no request drove it
    assert transfer is not None and (transfer.status, transfer.shipped) == ("shipped", 4)
    assert units(azure, sku, STORE) == (0, 4)
    assert units(azure, sku, DC) == (6, 0)  # shipped once
    assert azure.transfers.transfers.due(clock.now() + STALL_AFTER * 10, 10) == []


def test_a_transfers_events_go_out_in_its_session_valid_against_the_registry(
        azure: Services, broker: EmbeddedBroker) -> None:
    sku = f"SKU-{uuid4().hex[:8]}"
    azure.commands.receive(sku, DC, 10)
    route = {"transfer_id": "T-7"}
    assert call("request_transfer", "PUT", route, transfer_body(sku)).status == 201
    assert call("ship_transfer", "POST", route).status == 200
    assert call("receive_transfer", "POST", route, {"quantity": 4}).status == 200
    assert call("close_transfer", "POST", route).status == 200

    relay_the_processes_twice(azure)

    # Its versions once each (no wake-up companion), in its session, valid.
    messages = received(broker)
    documents = published_process(messages, TRANSFER, "T-7",
                                  transfer_versions(azure, "T-7"))
    assert {d["type"] for d in documents} == {w.type for w in TRANSFER.wire_types} - {
        "Stockstream.TransferShipmentRefused.v1", "Stockstream.TransferCancelled.v1"}
    requested = next(d for d in documents if d["type"] == "Stockstream.TransferRequested.v1")
    assert {k: requested["data"][k] for k in ("sku", "from_location", "to_location",
                                              "quantity")} == {
        "sku": sku, "from_location": DC, "to_location": STORE, "quantity": 4}
    consumer = azure.consumers[AVAILABILITY_SUBSCRIPTION]
    assert {consumer.process(m.body) for m in messages} == {"skipped"}
