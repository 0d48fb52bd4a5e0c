"""Every metric and dimension the alerts and the workbook read is emitted by the production
paths, on both hosts; a stalled relay produces the relay-lag signal.

The referenced names are read from the deployment itself: every KQL query over
``customMetrics`` in ``bicep/`` (the log alerts) and in ``bicep/workbook.json`` (the tiles),
so adding a tile or an alert on a metric nobody records fails here.

Azure: the Azure composition root (``composition.azure.azure_services``) on Cosmos DB, here
the ``@vercel/cosmosdb-server`` test server or, with ``STOCKSTREAM_LIVE=1``, a real account, with
the embedded broker standing in for Service Bus. Each function is called as the host calls
it, with real binding objects: HTTP commands with ``func.HttpRequest``, the change feed with
``func.DocumentList`` of the documents Cosmos DB stored, messages with
``func.ServiceBusMessage``, timers with ``TimerRequest``. Embedded: the same HTTP functions,
and the pipeline worker's relay, consumer and metrics loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import function_app
from adapters import telemetry as names
from adapters.clock import ManualClock
from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings
from adapters.embedded_broker import EmbeddedBroker
from adapters.embedded_broker.topology import ensure_topology
from adapters.telemetry import local_telemetry
from application.settings import load
from composition import Services
from composition.azure import azure_services
from composition.embedded import EmbeddedProcess, embedded_services
from functions.container import use_services
from local.pipeline import Pipeline, start_pipeline
from tests.functions.test_pipeline_functions import as_binding, received
from tests.infra import bicep_model as bm
from tests.invoke import invoke

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}
WORKBOOK = bm.BICEP / "workbook.json"
METRIC = re.compile(r"\bstockstream\.[a-z_]+(?:\.[a-z_]+)+")
DIMENSION = re.compile(  # customDimensions.name or customDimensions['name']
    r"customDimensions(?:\.([A-Za-z_]\w*)|\[\s*\\?['\"]([^'\"\\]+)\\?['\"]\s*\])")


# ------------------------------------------------------------ what the deployment reads


def _queries() -> list[tuple[str, str]]:
    """(where, KQL) of every query over customMetrics in the Bicep and the workbook."""
    found = []
    for path in bm.bicep_files():
        for text in bm.strings(bm.parse(path)):
            if "customMetrics" in text:
                found.append((str(path.relative_to(bm.ROOT)), text))

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for query in walk(json.loads(WORKBOOK.read_text())):
        if "customMetrics" in query:
            found.append(("bicep/workbook.json", query))
    return found


def referenced() -> dict[str, set[str]]:
    """Metric name → the dimensions some alert or tile reads with it."""
    wanted: dict[str, set[str]] = {}
    for _, query in _queries():
        metrics = set(METRIC.findall(query))
        dimensions = {a or b for a, b in DIMENSION.findall(query)}
        for metric in metrics:
            wanted.setdefault(metric, set()).update(dimensions)
    return wanted


def test_the_deployment_is_parsed_for_alerts_and_tiles() -> None:
    # A guard for the parser itself: the queries are found and name what we know they do.
    wanted = referenced()
    sources = {where for where, _ in _queries()}
    assert {"bicep/modules/alerts.bicep", "bicep/workbook.json"} <= sources
    assert wanted[names.PROJECTION_LAG_SECONDS] >= {"projection"}
    assert wanted[names.COMMAND_DURATION] >= {"command", "outcome"}
    assert set(wanted) <= names.METRIC_NAMES


def emitted(reader: InMemoryMetricReader) -> dict[str, set[str]]:
    """Metric name → the attribute keys of its points, as the SDK collected them."""
    data = reader.get_metrics_data()
    out: dict[str, set[str]] = {}
    for resource in (data.resource_metrics if data is not None else []):
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                keys = out.setdefault(metric.name, set())
                for point in metric.data.data_points:
                    keys.update(point.attributes or {})
    return out


def missing(reader: InMemoryMetricReader) -> list[str]:
    got = emitted(reader)
    gaps = []
    for metric, dimensions in sorted(referenced().items()):
        if metric not in got:
            gaps.append(f"{metric} is never recorded")
        elif dimensions - got[metric]:
            gaps.append(f"{metric} lacks {sorted(dimensions - got[metric])}")
    return gaps


def values(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [point for resource in (data.resource_metrics if data is not None else [])
            for scope in resource.scope_metrics for metric in scope.metrics
            if metric.name == name for point in metric.data.data_points]


def relay_lag_threshold() -> float:
    return float(bm.parse(bm.MAIN)["parameters"]["relayLagThresholdSeconds"]["default"])


# --------------------------------------------------------------------- calling the host


def call(name: str, **bindings: Any) -> Any:
    return invoke(FUNCTIONS[name].get_user_function(), **bindings)


def http(name: str, method: str, route: dict[str, str], body: Any = None,
         headers: dict[str, str] | None = None) -> func.HttpResponse:
    payload = b"" if body is None else json.dumps(body).encode()
    request = func.HttpRequest(
        method, f"http://localhost/api/{name}",
        headers={**({"Content-Type": "application/json"} if payload else {}), **(headers or {})},
        params={}, route_params=route, body=payload)
    response = call(name, req=request)
    assert isinstance(response, func.HttpResponse)
    return response


def trade_over_http(sku: str) -> None:
    """Commands as channels send them: applied, an idempotent repeat, a refusal, a count."""
    stock = {"sku": sku, "location": "STORE-1"}
    key = {"Idempotency-Key": f"receipt-{sku}"}
    assert http("receive_stock", "POST", stock, {"quantity": 10}, key).status_code == 200
    assert http("receive_stock", "POST", stock, {"quantity": 10}, key).status_code == 200
    reservation = {**stock, "order_id": "order-1"}
    assert http("reserve_stock", "PUT", reservation,
                {"quantity": 4, "channel": "web"}).status_code == 201
    assert http("reserve_stock", "PUT", {**stock, "order_id": "order-2"},
                {"quantity": 99, "channel": "web"}).status_code == 409
    counted = {"sku": sku, "location": "STORE-1", "counted": 7, "count_id": f"C-{sku}",
               "counted_at": datetime.now(UTC).isoformat()}
    answer = http("reconcile_counts", "POST", {}, {"counts": [counted]})
    assert answer.status_code == 200, answer.get_body()


# ------------------------------------------------------------------------------ Azure


@dataclass
class Azure:
    container: Services
    broker: EmbeddedBroker
    reader: InMemoryMetricReader
    clock: ManualClock
    settings: CosmosSettings

    def change_feed(self) -> func.DocumentList:
        """Every event document as stored (with ``_ts``), as the trigger hands them over."""
        events = CosmosDatastore(self.settings).container(self.settings.events_container)
        documents = list(events.query_items("SELECT * FROM c",
                                            enable_cross_partition_query=True))
        return func.DocumentList([func.Document.from_dict(d) for d in documents])


@pytest.fixture
def azure(cosmos_server: Any, tmp_path: Path) -> Iterator[Azure]:
    database = f"metrics-{uuid4().hex[:8]}"
    settings = CosmosSettings(endpoint=cosmos_server.endpoint, database=database,
                              key=cosmos_server.key, verify_tls=False)
    CosmosDatastore(settings).create_containers_if_missing()
    reader = InMemoryMetricReader()
    clock = ManualClock()
    broker = EmbeddedBroker(tmp_path / "broker.db")
    ensure_topology(broker)
    container = azure_services(
        load({"STOCKSTREAM_EVENT_STORE": "cosmos", "COSMOS__accountEndpoint": settings.endpoint,
              "COSMOS_KEY": settings.key or "", "COSMOS_DATABASE": database,
              "STOCKSTREAM_DATA": str(tmp_path)}),
        clock, telemetry=local_telemetry(reader), broker=broker)
    use_services(container)
    try:
        yield Azure(container, broker, reader, clock, settings)
    finally:
        use_services(None)
        container.close()


def test_azure_paths_emit_every_metric_and_dimension_the_alerts_and_workbook_read(
    azure: Azure,
) -> None:
    sku = f"SKU-{uuid4().hex[:6]}"
    trade_over_http(sku)                                                   # HTTP functions
    call("relay_events", documents=azure.change_feed())                    # change feed
    for message in received(azure.broker):                                 # Service Bus
        call("project_availability", message=as_binding(message))
    call("publish_pipeline_metrics", timer=TimerRequest(past_due=False))   # metrics timer
    call("sweep_expired_reservations", timer=TimerRequest(past_due=False))

    assert missing(azure.reader) == []
    outcomes = {p.attributes["outcome"] for p in values(azure.reader, names.COMMAND_DURATION)}
    assert outcomes == {"applied", "unchanged", "rejected"}
    (depth,) = values(azure.reader, names.OUTBOX_DEPTH)
    assert depth.value == 0  # everything committed was published


def test_azure_a_stalled_relay_produces_the_relay_lag_signal(azure: Azure) -> None:
    """Events committed, none published: the metrics timer alone raises the relay lag."""
    threshold = relay_lag_threshold()
    trade_over_http(f"SKU-{uuid4().hex[:6]}")
    azure.clock.advance(threshold + 30)

    call("publish_pipeline_metrics", timer=TimerRequest(past_due=False))

    (depth,) = values(azure.reader, names.OUTBOX_DEPTH)
    (oldest,) = values(azure.reader, names.OUTBOX_OLDEST_AGE)
    assert depth.value == 4  # created, received, reserved, counted
    assert oldest.value > threshold
    assert names.OUTBOX_LAG_SECONDS not in emitted(azure.reader)  # the relay said nothing
    status = http("get_ops_status", "GET", {})
    assert json.loads(status.get_body())["outbox"]["depth"] == 4

    call("relay_events", documents=azure.change_feed())  # the relay recovers
    call("publish_pipeline_metrics", timer=TimerRequest(past_due=False))
    (depth,) = values(azure.reader, names.OUTBOX_DEPTH)
    (oldest,) = values(azure.reader, names.OUTBOX_OLDEST_AGE)
    assert (depth.value, oldest.value) == (0, 0.0)


# --------------------------------------------------------------------------- embedded


@dataclass
class Embedded:
    container: Services
    pipeline: Pipeline
    reader: InMemoryMetricReader
    clock: ManualClock


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    reader = InMemoryMetricReader()
    clock = ManualClock()
    container = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}), clock,
                                  telemetry=local_telemetry(reader),
                                  process=EmbeddedProcess.PIPELINE)
    pipeline = start_pipeline(container, autostart=False)  # the test drives each part
    use_services(container)
    try:
        yield Embedded(container, pipeline, reader, clock)
    finally:
        use_services(None)
        pipeline.stop()
        container.close()


def test_embedded_paths_emit_every_metric_and_dimension_the_alerts_and_workbook_read(
    embedded: Embedded,
) -> None:
    trade_over_http("SKU-1")
    assert embedded.pipeline.relay.drain() == 4           # the worker's relay
    while embedded.pipeline.consumer.run_once():          # the worker's consumer
        pass
    embedded.pipeline.record_metrics()                    # the worker's metrics loop

    assert missing(embedded.reader) == []
    text = http("get_ops_metrics", "GET", {}).get_body().decode()
    assert text.endswith("# EOF\n")
    assert 'stockstream_projection_lag_seconds_count{projection="availability"} 4' in text


def test_embedded_a_stalled_relay_produces_the_relay_lag_signal(embedded: Embedded) -> None:
    threshold = relay_lag_threshold()
    trade_over_http("SKU-1")
    embedded.clock.advance(threshold + 30)

    embedded.pipeline.record_metrics()

    (depth,) = values(embedded.reader, names.OUTBOX_DEPTH)
    (oldest,) = values(embedded.reader, names.OUTBOX_OLDEST_AGE)
    assert (depth.value, oldest.value > threshold) == (4, True)
    status = json.loads(http("get_ops_status", "GET", {}).get_body())
    assert status["outbox"]["depth"] == 4 and status["outbox"]["oldest_age_seconds"] > threshold
    text = http("get_ops_metrics", "GET", {}).get_body().decode()
    assert "stockstream_outbox_depth 4" in text

    embedded.pipeline.relay.drain()
    embedded.pipeline.record_metrics()
    (depth,) = values(embedded.reader, names.OUTBOX_DEPTH)
    assert depth.value == 0


def test_the_embedded_host_serves_what_its_pipeline_worker_measured(tmp_path: Path) -> None:
    """The worker is another process: it writes a snapshot, the host's route merges it."""
    settings = load({"STOCKSTREAM_DATA": str(tmp_path)})
    worker_side = embedded_services(settings, process=EmbeddedProcess.WORKER)
    worker = start_pipeline(worker_side, autostart=False)
    host_side = embedded_services(settings, process=EmbeddedProcess.HOST)
    use_services(host_side)
    try:
        trade_over_http("SKU-1")  # commands answered by the host process
        worker.relay.drain()
        while worker.consumer.run_once():
            pass
        worker.record_metrics()  # the worker's metrics loop writes its snapshot

        text = http("get_ops_metrics", "GET", {}).get_body().decode()
    finally:
        use_services(None)
        worker.stop()
        host_side.close()
        worker_side.close()
    lines = text.splitlines()
    assert 'stockstream_relay_published_total{process="worker"} 4' in lines
    assert ('stockstream_projection_lag_seconds_count{projection="availability",'
            'process="worker"} 4') in lines
    assert ('stockstream_command_duration_count{command="receive_stock",outcome="applied"} 1'
            in lines)
