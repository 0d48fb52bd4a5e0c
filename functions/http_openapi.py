"""The API as a whole: its route table, its OpenAPI 3.1 document, and the two routes that
belong to no blueprint — the document itself and the catch-all answering 404/405.

:data:`ROUTE_TABLE` is every route the blueprints declare (``functions.blueprints``) and
these two. The document is generated from it and the models; the catch-all reads it,
indexed once (:data:`ROUTE_INDEX`), to tell a wrong method (405, with ``Allow``) from an
unknown path (404); it answers from memory, so the embedded host runs it on its event loop
(``blocking=False``); the document's first build takes a while, so it stays on a thread.
``function_app`` registers :data:`bp` after the blueprints, so nothing imports
``function_app``.

Run ``python -m functions.http_openapi`` to (re)write ``openapi.json`` at the repository
root; a test fails when the committed file differs from what this module generates, and
``GET /api/openapi.json`` serves the same document. Nothing here is written by hand per
route: paths, methods, auth, bodies and responses all come from the route declarations.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapters.openmetrics import CONTENT_TYPE as OPENMETRICS_CONTENT_TYPE
from contracts.events import CloudEvent
from domain.identifiers import IDENTIFIER_PATTERN
from functions import problems
from functions.blueprints import blueprint_routes
from functions.http_answers import json_response
from functions.http_routes import ROUTE_PREFIX, HttpBlueprint, Route, RouteIndex
from functions.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX
from functions.requests import BATCH_MAX_BODY_BYTES, MAX_BODY_BYTES
from functions.responses import ProblemOut

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "openapi.json"
VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    200: "OK", 201: "Created (a new reservation)",
    202: "Held for approval: nothing recorded until an admin approves it",
    304: "Not modified (ETag matched)",
    400: "Malformed JSON (or If-Match)", 401: "Missing or wrong x-functions-key", 404: "Not found",
    405: "Method not allowed", 409: "Conflict with the stock item's state",
    412: "If-Match names another stream version; nothing recorded (`version` is the "
         "current one)",
    413: f"Body over {MAX_BODY_BYTES} bytes", 415: "Content-Type is not JSON",
    422: "Invalid fields or identifiers", 503: "Store or pipeline unavailable; retry later",
}


def _documented(route: Route) -> bool:
    return route.documented and not route.catch_all  # the catch-all is no operation


def _models() -> list[tuple[type[BaseModel], Any]]:
    models: list[tuple[type[BaseModel], Any]] = [(ProblemOut, "serialization"),
                                                  (CloudEvent, "serialization")]
    for route in filter(_documented, ROUTE_TABLE):
        if route.request is not None:
            models.append((route.request, "validation"))
        models.extend((m, "serialization") for m in route.responses.values()
                      if isinstance(m, type))
    unique: dict[type[BaseModel], Any] = {}
    for model, mode in models:
        unique.setdefault(model, mode)
    return list(unique.items())


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Problem"),
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="ProblemOut")}}},
    }


def _operation(route: Route, method: str) -> dict[str, Any]:
    template = route.parsed
    parameters: list[dict[str, Any]] = [
        {"name": s.name, "in": "path", "required": True,
         "schema": {"type": "string", "pattern": IDENTIFIER_PATTERN}}
        for s in template.segments if s.name is not None
    ]
    if route.query is not None:
        for name, info in route.query.model_json_schema()["properties"].items():
            parameters.append({"name": name, "in": "query", "required": False,
                               "schema": info})
    if "Idempotency-Key" in route.headers:
        parameters.append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Repeating a request with the same key changes nothing; the same "
                           "key with a different body is 409 idempotency-key-reused.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        })
    if "ETag" in route.headers:
        parameters.append({"name": "If-None-Match", "in": "header", "required": False,
                           "schema": {"type": "string"}})
    if "If-Match" in route.headers:
        parameters.append({
            "name": "If-Match", "in": "header", "required": False,
            "description": 'Write only if the stream is at this version ("3"), exists (*) or '
                           'does not ("0"); else 412 precondition-failed. A repeat of a '
                           "command that took effect answers its success regardless.",
            "schema": {"type": "string"},
        })
    responses: dict[str, Any] = {}
    for status, model in sorted(route.responses.items()):
        response: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "OK")}
        if isinstance(model, type):
            response["content"] = {"application/json": {
                "schema": {"$ref": _REF.format(model=model.__name__)}}}
        elif model == "CloudEvents":
            response["content"] = {"application/json": {"schema": {
                "type": "array", "items": {"$ref": _REF.format(model="CloudEvent")}}}}
        elif model == "OpenAPI":
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        elif model == "PNG":
            response["content"] = {"image/png": {"schema": {
                "type": "string", "contentMediaType": "image/png"}}}
        elif model == "OpenMetrics":
            response["content"] = {OPENMETRICS_CONTENT_TYPE: {"schema": {
                "type": "string",
                "description": "OpenMetrics 1.0 text exposition, ending with `# EOF`."}}}
        if "ETag" in route.headers or "If-Match" in route.headers:
            response["headers"] = {"ETag": {"schema": {"type": "string"},
                                            "description": "The stream version, quoted."}}
        responses[str(status)] = response
    problem_statuses = set(route.problems) | {404, 405}
    if route.request is not None:
        problem_statuses |= {400, 413, 415, 422}
    if "If-Match" in route.headers:
        problem_statuses |= {400, 412}
    if route.auth_level != func.AuthLevel.ANONYMOUS:
        problem_statuses |= {401}
    if route.name not in ("get_openapi",):
        problem_statuses |= {503}
    for status in sorted(problem_statuses):
        responses[str(status)] = _problem(status)
    if route.max_body_bytes is not None and "413" in responses:
        responses["413"] = {**responses["413"], "description":
                            f"Body over {route.max_body_bytes} bytes, or too many commands"}
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if route.request is not None:
        operation["requestBody"] = {
            "required": route.request_required,
            "content": {"application/json": {
                "schema": {"$ref": _REF.format(model=route.request.__name__)}}},
        }
    if route.auth_level == func.AuthLevel.ANONYMOUS:
        operation["security"] = []
    elif route.auth_level == func.AuthLevel.ADMIN:
        operation["description"] = "Admin level: in Azure, send the host's master key."
    return operation


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (deterministic: same code, same document)."""
    _, schemas = models_json_schema(_models(), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in filter(_documented, ROUTE_TABLE):
        item = paths.setdefault(f"/{ROUTE_PREFIX}/{route.template}", {})
        for method in route.methods:
            item[method.lower()] = _operation(route, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stockstream channel API",
            "version": VERSION,
            "description": (
                "Stock positions, receipts, adjustments, reservations, fulfilments and counts "
                "per SKU-location, for every channel. Errors are RFC 9457 problem documents "
                f"whose type is {PROBLEM_TYPE_PREFIX}<code>. Bodies are at most "
                f"{MAX_BODY_BYTES} bytes (the batch route's: {BATCH_MAX_BODY_BYTES})."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        # Relative: the document is served by the API it describes (embedded host or
        # Azure), so clients resolve it against where they fetched it. Paths carry /api.
        "servers": [{"url": "/", "description": "the host that serves this document"}],
        "security": [{"functionKey": []}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
    }


def render() -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write ``openapi.json``; with ``--check``, exit 1 if the committed file is stale."""
    text = render()
    if "--check" in argv:
        current = DOCUMENT_PATH.read_text(encoding="utf-8") if DOCUMENT_PATH.exists() else ""
        if current != text:
            print(f"{DOCUMENT_PATH.name} is stale: run python -m functions.http_openapi",
                  file=sys.stderr)
            return 1
        return 0
    DOCUMENT_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT_PATH}")
    return 0


# ------------------------------------------------- the API's own routes, last


bp = HttpBlueprint()


@bp.http("get_openapi", "openapi.json", ["GET"], auth_level=func.AuthLevel.ANONYMOUS,
         summary="This API's OpenAPI 3.1 document.", responses={200: "OpenAPI"})
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document())


ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.http("unmatched_route", "{*path}", ALL_METHODS,
         summary="Answers every request no other function takes: 405 on a known path, "
                 "else 404.", responses={}, measured=False, blocking=False)
def unmatched_route(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    segments = [s for s in path.split("/") if s != ""]
    shown = f"/{ROUTE_PREFIX}/{path}"
    allowed = ROUTE_INDEX.allowed_methods(segments)
    if allowed:
        raise problems.method_not_allowed(req.method, shown, allowed)
    raise problems.not_found(shown)


ROUTE_TABLE: tuple[Route, ...] = (*blueprint_routes(), *bp.routes)
"""Every HTTP function of the app, in registration order: the one route table."""

ROUTE_INDEX: RouteIndex[Route] = RouteIndex(ROUTE_TABLE)
"""The table indexed once, for the catch-all's 404/405 (no walk of the table per request)."""


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
