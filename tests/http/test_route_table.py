"""One route table: what the app registers, what the embedded host dispatches, what the
route declarations say and what ``openapi.json`` documents are the same routes.

A function registered without the route mechanism, or a route missing from the committed
document (not regenerated, or left out by the generator), fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from function_app import app
from functions.http_openapi import DOCUMENT_PATH, ROUTE_TABLE
from functions.http_routes import ROUTE_PREFIX
from local.asgi import FunctionsHost

Operation = tuple[str, str]
"""(path as the document writes it, lower-case method)."""

CATCH_ALL = "unmatched_route"


def registered() -> set[Operation]:
    """Every route and method the app's HTTP triggers take, HEAD and the catch-all aside
    (HEAD is GET without the body; the catch-all is no route of the contract)."""
    operations: set[Operation] = set()
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger.get_binding_name() != "httpTrigger" or \
                function.get_function_name() == CATCH_ALL:
            continue
        for method in trigger.methods:
            name = str(getattr(method, "value", method)).lower()
            if name != "head":
                operations.add((f"/{ROUTE_PREFIX}/{trigger.route}", name))
    return operations


def dispatched() -> set[Operation]:
    """Every route and method the embedded host dispatches to a function (not the
    catch-all), HEAD aside."""
    host = FunctionsHost(app, workers=1)  # its worker thread starts with a request only
    return {(f"/{ROUTE_PREFIX}/{function.template.template}", method.lower())
            for function in host.functions if not function.catch_all
            for method in function.methods or () if method != "HEAD"}


def documented(document: dict[str, Any]) -> set[Operation]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def served_api() -> set[tuple[str, str]]:
    """Everything served except what is declared undocumented: the console's files, which
    are pages of the app and not operations of the API."""
    undocumented = {(f"/{ROUTE_PREFIX}/{r.template}", m.lower())
                    for r in ROUTE_TABLE if not r.documented for m in r.methods}
    assert {r.name for r in ROUTE_TABLE if not r.documented} == {"console"}
    return registered() - undocumented


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    return loaded


def test_the_embedded_host_dispatches_exactly_what_the_app_registers():
    assert dispatched() == registered()
    assert any(path.startswith("/api/reconciliation/") for path, _ in registered())


def test_every_http_function_is_declared_through_the_route_table():
    functions = {f.get_function_name() for f in app.get_functions()
                 if f.get_trigger().get_binding_name() == "httpTrigger"}
    assert [r.name for r in ROUTE_TABLE].count(CATCH_ALL) == 1
    assert {r.name for r in ROUTE_TABLE} == functions
    assert {(f"/{ROUTE_PREFIX}/{r.template}", m.lower())
            for r in ROUTE_TABLE if not r.catch_all for m in r.methods} == registered()


def test_openapi_json_documents_every_route_the_host_serves_and_no_other(
        document: dict[str, Any]):
    served = served_api()
    missing, unserved = served - documented(document), documented(document) - served
    assert not missing, f"routes missing from openapi.json (run make openapi): {missing}"
    assert not unserved, f"openapi.json documents routes nobody serves: {unserved}"


def test_the_comparison_notices_a_route_left_out_of_the_document(document: dict[str, Any]):
    trimmed = {**document, "paths": {p: item for p, item in document["paths"].items()
                                     if p != "/api/reconciliation/held"}}
    assert served_api() - documented(trimmed) == {("/api/reconciliation/held", "get")}


def test_every_operation_names_its_function_and_has_its_request_and_response_schemas(
        document: dict[str, Any]):
    routes = {r.name: r for r in ROUTE_TABLE}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            route = routes[operation["operationId"]]
            assert path == f"/{ROUTE_PREFIX}/{route.template}"
            assert method.upper() in route.methods
            successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
            assert successes and all("content" in r for r in successes.values()), (
                path, method)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (path, status)
            if route.request is not None:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body == {"$ref": f"#/components/schemas/{route.request.__name__}"}
            else:
                assert "requestBody" not in operation, (path, method)


def test_the_reconciliation_routes_declare_their_models_and_problem_statuses(
        document: dict[str, Any]):
    counts = document["paths"]["/api/reconciliation/counts"]["post"]
    assert counts["requestBody"]["required"] is True
    assert set(counts["responses"]) >= {"200", "400", "401", "413", "415", "422", "503"}
    approval = document["paths"]["/api/reconciliation/held/{hold_id}/approval"]["post"]
    assert set(approval["responses"]) >= {"200", "404", "409", "422"}
    assert "Admin level" in approval["description"]
    due = document["paths"]["/api/reconciliation/due"]["get"]
    assert {p["name"] for p in due["parameters"]} == {"class", "limit", "all"}
    schemas = document["components"]["schemas"]
    assert schemas["HoldsOut"]["type"] == "array"
    assert set(schemas["CountSessionOut"]["properties"]) >= {"session_id", "applied",
                                                             "results"}
