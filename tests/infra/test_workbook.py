"""The workbook JSON parses, is deployed by Bicep, and charts only metrics that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from adapters import telemetry
from tests.infra import bicep_model as bm

WORKBOOK = bm.BICEP / "workbook.json"

# Platform metrics Stockstream charts or alerts on, as documented by Azure Monitor
# (shared/reference/azure-facts.md §5 "Alert metrics", MS-Docs monitor-service-bus-reference
# and the Cosmos DB and Application Insights metric references).
AZURE_METRICS = {
    "microsoft.servicebus/namespaces": {
        "DeadletteredMessages", "ActiveMessages", "Messages", "ScheduledMessages",
        "IncomingMessages", "OutgoingMessages", "ServerErrors", "UserErrors",
        "ThrottledRequests",
    },
    "microsoft.documentdb/databaseaccounts": {"TotalRequests", "NormalizedRUConsumption"},
    "microsoft.insights/components": {"requests/failed", "requests/count", "exceptions/count"},
}
# Application Insights tables a KQL panel may read besides customMetrics.
AZURE_TABLES = {"customMetrics", "requests", "exceptions", "traces", "dependencies"}

CUSTOM_METRIC = re.compile(r"\bstockstream\.[a-z_.]+[a-z_]")
NAME_FILTER = re.compile(r"name\s*==\s*'([^']+)'")
NAME_IN = re.compile(r"name\s+in\s*\(([^)]*)\)")


def _name_filters(query: str) -> list[str]:
    """The metric names a query filters on: ``name == '...'`` or ``name in ('...', ...)``."""
    names = NAME_FILTER.findall(query)
    for listed in NAME_IN.findall(query):
        names += re.findall(r"'([^']+)'", listed)
    return names


def _workbook() -> dict[str, Any]:
    workbook: dict[str, Any] = json.loads(WORKBOOK.read_text())
    return workbook


def _items(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in node.get("items", []):
        yield item
        if item.get("type") == 12:  # group
            yield from _items(item["content"])


def test_workbook_is_valid_notebook_json():
    workbook = _workbook()
    assert workbook["version"] == "Notebook/1.0"
    names = [i["name"] for i in _items(workbook)]
    assert len(names) == len(set(names)), "item names must be unique"


def test_workbook_is_deployed_from_this_file_with_every_placeholder_replaced():
    parsed = bm.module("workbook")
    load = bm.function(parsed["variables"]["template"]["value"], "load_text_content")
    assert load is not None
    assert (bm.BICEP / "modules" / load["file_path"]).resolve() == WORKBOOK.resolve()
    replaced = {s for s in bm.strings(parsed["variables"]["serialized"]) if s.startswith("__")}
    used = set(re.findall(r"__[A-Z_]+__", WORKBOOK.read_text()))
    assert used == replaced
    resource = bm.one("Microsoft.Insights/workbooks", parsed)
    assert resource.body["kind"] == "shared"
    assert resource.properties["serializedData"] == "serialized"
    assert resource.properties["version"] == "Notebook/1.0"
    assert bm.function(resource.body["name"], "guid") is not None


def _kql_items() -> list[dict[str, Any]]:
    return [i for i in _items(_workbook()) if i["type"] == 3]


def _metric_items() -> list[dict[str, Any]]:
    return [i for i in _items(_workbook()) if i["type"] == 10]


def test_kql_panels_reference_only_metric_names_the_code_emits():
    for item in _kql_items():
        query = item["content"]["query"]
        table = query.split("\n", 1)[0].strip()
        assert table in AZURE_TABLES, (item["name"], table)
        for name in CUSTOM_METRIC.findall(query) + _name_filters(query):
            assert name in telemetry.METRIC_NAMES, (item["name"], name)
        if table == "customMetrics":
            assert _name_filters(query), f"{item['name']} reads every custom metric"


def test_metric_panels_reference_only_azure_platform_metrics():
    for item in _metric_items():
        for metric in item["content"]["metrics"]:
            namespace, _, name = metric["metric"].partition("--")
            assert namespace == metric["namespace"] == item["content"]["resourceType"]
            assert name in AZURE_METRICS[namespace], (item["name"], name)
        assert item["content"]["resourceIds"][0] in ("__SERVICEBUS_ID__", "__COSMOS_ID__")


def test_workbook_shows_the_whole_pipeline_on_one_page():
    charted = set()
    for item in _kql_items():
        charted |= set(_name_filters(item["content"]["query"]))
    for item in _metric_items():
        charted |= {m["metric"].partition("--")[2] for m in item["content"]["metrics"]}
    assert {
        telemetry.COMMAND_DURATION,  # command rate and latency
        telemetry.OUTBOX_LAG_SECONDS, telemetry.RELAY_PUBLISHED,  # outbox lag
        telemetry.OUTBOX_DEPTH, telemetry.OUTBOX_OLDEST_AGE,  # sampled: a stalled relay
        telemetry.SUBSCRIPTION_BACKLOG, telemetry.DEAD_LETTER_DEPTH,  # per subscription
        "ActiveMessages", "DeadletteredMessages",
        telemetry.PROJECTION_LAG_SECONDS,
        "NormalizedRUConsumption", "TotalRequests",  # RU use and throttling
        telemetry.DRIFT_UNITS, telemetry.DRIFT_PERCENT,
    } <= charted
