"""The operator's tools with Azure settings: ``stockstream`` on Cosmos DB (the test server,
over the real SDK) and Service Bus (the real adapter on the SDK-shaped fakes), and
``/api/ops/status`` on Azure.

Each command either works against Azure through the same composition root as the
functions, or refuses with a message and exit 2; none prints an all-clear it did not check.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import azure.functions as func
import pytest

import cli.main as cli
from adapters.cosmos.local_server import CosmosServer
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings
from adapters.servicebus import ServiceBusBroker
from application.settings import load
from composition.azure import azure_services
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from functions.container import use_services
from tests.functions.test_pipeline_functions import call
from tests.servicebus.builders import event_message
from tests.servicebus.fakes import FakeAdministrationClient, FakeServiceBusClient

NAMESPACE = "stockstream-test.servicebus.windows.net"


@pytest.fixture
def cosmos(cosmos_server: CosmosServer, monkeypatch: pytest.MonkeyPatch) -> CosmosSettings:
    """A database of this test's own with Bicep's containers, named by the Azure settings
    the CLI reads from the environment."""
    settings = CosmosSettings(endpoint=cosmos_server.endpoint,
                              database=f"cli-{uuid4().hex[:8]}",
                              key=cosmos_server.key, verify_tls=False)
    CosmosDatastore(settings).create_containers_if_missing()
    for name, value in azure_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SERVICEBUS__fullyQualifiedNamespace", raising=False)
    return settings


def azure_env(settings: CosmosSettings) -> dict[str, str]:
    return {"STOCKSTREAM_EVENT_STORE": "cosmos",
            "COSMOS__accountEndpoint": settings.endpoint,
            "COSMOS_KEY": settings.key or "", "COSMOS_DATABASE": settings.database}


@pytest.fixture
def servicebus(cosmos: CosmosSettings,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServiceBusClient]:
    """Service Bus settings given; the namespace's client is the SDK-shaped fake (the real
    ``ServiceBusBroker`` adapter runs over it)."""
    client = FakeServiceBusClient({TOPIC: [AVAILABILITY_SUBSCRIPTION, "finance"]})
    opened: list[str] = []

    def from_namespace(namespace: str, **_: Any) -> ServiceBusBroker:
        opened.append(namespace)
        # The fake SDK clients stand in for the real ones, which they do not subclass.
        return ServiceBusBroker(client, lambda: FakeAdministrationClient(client))  # type: ignore[arg-type, return-value]

    monkeypatch.setenv("SERVICEBUS__fullyQualifiedNamespace", NAMESPACE)
    monkeypatch.setattr(ServiceBusBroker, "from_namespace", staticmethod(from_namespace))
    yield client
    assert opened and set(opened) == {NAMESPACE}, "the CLI did not open the namespace given"


def stockstream(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(args), out)
    return code, out.getvalue()


def commit(settings: CosmosSettings, *streams: tuple[str, str, int]) -> None:
    """Receipts committed to Cosmos DB (through the Azure root), never projected."""
    services = azure_services(load(azure_env(settings)))
    try:
        for sku, location, quantity in streams:
            services.commands.receive(sku, location, quantity)
    finally:
        services.close()


# ------------------------------------------------------------ rebuild-projection


def test_rebuild_check_on_cosmos_finds_every_stream_the_view_lacks(cosmos: CosmosSettings):
    sku = f"SKU-{uuid4().hex[:6]}"
    commit(cosmos, (sku, "STORE-1", 5), (sku, "STORE-2", 3), (f"{sku}-B", "STORE-1", 1))

    check_code, check = stockstream("rebuild-projection", "--check")
    fix_code, fix = stockstream("rebuild-projection")
    again_code, again = stockstream("rebuild-projection", "--check")
    one_code, one = stockstream("rebuild-projection", sku, "--check")

    assert check_code == cli.ATTENTION, check
    assert f"missing  {sku}|STORE-1: row no row; stream v2 on hand 5" in check
    assert "3 stream(s) in the event store; 0 row(s) checked, 3 mismatched, 0 repaired" in check
    assert fix_code == cli.OK and "3 mismatched, 3 repaired" in fix
    assert again_code == cli.OK
    assert "3 stream(s) in the event store; 3 row(s) checked, 0 mismatched" in again
    assert one_code == cli.OK and "2 stream(s) in the event store; 2 row(s) checked" in one


def test_rebuild_on_an_empty_cosmos_database_says_it_saw_no_stream(cosmos: CosmosSettings):
    code, out = stockstream("rebuild-projection", "--check")
    assert code == cli.OK
    assert out == "0 stream(s) in the event store; 0 row(s) checked, 0 mismatched, 0 repaired\n"


# ------------------------------------------------------------ replay-deadletters


def test_replay_on_azure_without_a_service_bus_namespace_refuses_with_exit_2(
    cosmos: CosmosSettings, capsys: pytest.CaptureFixture[str],
):
    code, out = stockstream("replay-deadletters", AVAILABILITY_SUBSCRIPTION)
    assert (code, out) == (cli.USAGE, "")
    assert "SERVICEBUS__fullyQualifiedNamespace" in capsys.readouterr().err


def test_replay_on_azure_replays_service_bus_dead_letters_to_that_subscription_only(
    servicebus: FakeServiceBusClient, capsys: pytest.CaptureFixture[str],
):
    topic = servicebus.topics[TOPIC]
    # The fake SDK clients stand in for the real ones, which they do not subclass.
    broker = ServiceBusBroker(servicebus, lambda: FakeAdministrationClient(servicebus))  # type: ignore[arg-type, return-value]
    broker.publish(TOPIC, [event_message(version=v) for v in (1, 2, 3)])
    receiver = broker.accept_next_session(TOPIC, AVAILABILITY_SUBSCRIPTION, max_wait=1)
    assert receiver is not None
    for message in receiver.receive(3, max_wait=1):
        receiver.dead_letter(message, "SchemaMismatch", "poison")
    receiver.close()
    finance_before = topic.subscriptions["finance"].active()

    some_code, some = stockstream("replay-deadletters", AVAILABILITY_SUBSCRIPTION, "--max", "2")
    rest_code, rest = stockstream("replay-deadletters", AVAILABILITY_SUBSCRIPTION)
    unknown_code, _ = stockstream("replay-deadletters", "nobody")

    assert some_code == cli.OK
    assert "replayed 2 dead-lettered message(s) to availability; 1 left" in some
    assert rest_code == cli.OK and "replayed 1 dead-lettered message(s)" in rest
    assert topic.subscriptions[AVAILABILITY_SUBSCRIPTION].active() == 3
    assert topic.subscriptions["finance"].active() == finance_before  # nobody else got them
    assert unknown_code == cli.USAGE
    assert "no subscription named 'nobody'" in capsys.readouterr().err
    broker.close()


# ------------------------------------------------------------ reconciliation commands


def test_reconcile_held_and_due_work_on_cosmos(cosmos: CosmosSettings, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STOCKSTREAM_DATA", str(tmp_path))  # where the drift report goes
    sku = f"SKU-{uuid4().hex[:6]}"
    commit(cosmos, (sku, "STORE-1", 10))
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps([{"sku": sku, "location": "STORE-1", "counted": 9,
                                   "counted_at": datetime.now(UTC).isoformat(),
                                   "count_id": "C1"}]))

    first_code, first = stockstream("reconcile", str(counts), "--no-hold")
    again_code, again = stockstream("reconcile", str(counts), "--no-hold")
    held_code, held = stockstream("held")

    assert first_code == cli.OK and "applied          1  (drift 1 units" in first
    assert again_code == cli.OK and "unchanged        1" in again
    assert held_code == cli.OK and held.endswith("0 hold(s) waiting for approval\n")
    services = azure_services(load(azure_env(cosmos)))
    try:
        item = services.store.get(sku, "STORE-1")
        assert item is not None and item.on_hand == 9
    finally:
        services.close()


# ------------------------------------------------------------ /api/ops/status on Azure


def ops_status(env: dict[str, str]) -> dict[str, Any]:
    """``GET /api/ops/status`` through the HTTP function, on the Azure root for ``env``."""
    services = azure_services(load(env))
    use_services(services)
    try:
        response = call("get_ops_status",
                        req=func.HttpRequest("GET", "/api/ops/status", body=b""))
    finally:
        use_services(None)
        services.close()
    assert response.status_code == 200
    body: dict[str, Any] = json.loads(response.get_body())
    return body


def test_ops_status_on_azure_without_service_bus_says_what_it_did_not_measure(
    cosmos: CosmosSettings,
):
    commit(cosmos, (f"SKU-{uuid4().hex[:6]}", "STORE-1", 1))

    status = ops_status(azure_env(cosmos))

    assert status["outbox"]["depth"] == 2  # measured: created and received, unpublished
    assert status["subscriptions"] == []
    reasons = {u["field"]: u["reason"] for u in status["unmeasured"]}
    assert "SERVICEBUS__fullyQualifiedNamespace" in reasons["subscriptions"]
    assert "projections[availability].lag_seconds" in reasons
    assert status["projections"][0]["lag_seconds"] is None


def test_ops_status_on_azure_reports_no_made_up_lag_for_a_service_bus_backlog(
    cosmos: CosmosSettings, servicebus: FakeServiceBusClient,
):
    # The fake SDK clients stand in for the real ones, which they do not subclass.
    broker = ServiceBusBroker(servicebus, lambda: FakeAdministrationClient(servicebus))  # type: ignore[arg-type, return-value]
    broker.publish(TOPIC, [event_message(version=1)])
    broker.close()

    status = ops_status({**azure_env(cosmos), "SERVICEBUS__fullyQualifiedNamespace": NAMESPACE})

    rows = {s["name"]: s for s in status["subscriptions"]}
    assert rows[AVAILABILITY_SUBSCRIPTION]["active"] == 1
    assert rows[AVAILABILITY_SUBSCRIPTION]["lag_seconds"] is None  # not 0: unknown
    fields = {u["field"] for u in status["unmeasured"]}
    assert f"subscriptions[{AVAILABILITY_SUBSCRIPTION}].lag_seconds" in fields
    assert "subscriptions" not in fields

