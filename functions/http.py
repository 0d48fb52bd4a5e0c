"""The channel HTTP API (DESIGN §5) as Azure Functions HTTP triggers, in one blueprint.

Each function translates: it parses the request with the models of ``functions.requests``,
calls one application service from the container, and shapes the answer. Refusals are
raised (domain errors, store failures, :class:`~functions.problems.Problem`) and turned
into RFC 9457 problem documents in one place, :func:`answering_problems`; an unexpected
exception is logged and answered with a 500 problem (a 5xx is a bug). The same place
records every state-changing request as a command metric (its function's name, how long
it took and how it ended), whatever blueprint registered it.

``ROUTES`` records every function with what the OpenAPI document needs, next to the
decorator that registers it, so the document and the route table are one list.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import azure.functions as func
from pydantic import BaseModel

from adapters.openmetrics import CONTENT_TYPE as OPENMETRICS_CONTENT_TYPE
from adapters.telemetry import counting_commits
from application.holds import ApprovalGate, Held
from application.ports import ConcurrencyConflict, StoreUnavailable
from contracts.cloudevents import to_cloudevent
from domain.errors import DomainError
from domain.identifiers import require_identifier
from domain.stock_item import StockItem
from functions import problems
from functions.container import (
    Container,
    ReconciliationServices,
    ReconciliationUnavailable,
    get_container,
    reconciliation_services,
)
from functions.http_routes import ROUTE_PREFIX, RouteTemplate, allowed_methods, http_functions
from functions.requests import (
    AdjustmentRequest,
    AvailabilityOut,
    CorrectionOut,
    CountOut,
    CountRequest,
    EventsQuery,
    FulfilmentRequest,
    HeldOut,
    HoldOut,
    OpsStatusOut,
    PolicyRequest,
    PositionOut,
    ReceiptRequest,
    ReplayOut,
    ReplayRequest,
    ReservationRequest,
    parse_body,
    parse_query,
)

log = logging.getLogger("stockstream.http")

bp = func.Blueprint()  # type: ignore[no-untyped-call]

Handler = Callable[[func.HttpRequest], func.HttpResponse]


@dataclass(frozen=True)
class Route:
    """One HTTP function: its binding and what the OpenAPI document says about it."""

    name: str
    template: str
    methods: tuple[str, ...]
    auth_level: func.AuthLevel | None
    summary: str
    request: type[BaseModel] | None = None
    request_required: bool = True
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | str | None] = field(default_factory=dict)
    problems: tuple[int, ...] = ()
    headers: tuple[str, ...] = ()

    @property
    def parsed(self) -> RouteTemplate:
        return RouteTemplate.parse(self.template)


ROUTES: list[Route] = []
"""Every function of this blueprint, in registration order."""


def _route(
    name: str,
    template: str,
    methods: list[str],
    *,
    summary: str,
    auth_level: func.AuthLevel | None = None,
    request: type[BaseModel] | None = None,
    request_required: bool = True,
    query: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | str | None],
    problems: tuple[int, ...] = (),
    headers: tuple[str, ...] = (),
    measured: bool = True,
) -> Callable[[Handler], Any]:
    """Register ``handler`` as the HTTP function ``name`` and record it in ``ROUTES``.

    ``measured=False`` keeps its state-changing requests out of the command metric.
    """

    def register(handler: Handler) -> Any:
        ROUTES.append(Route(name, template, tuple(methods), auth_level, summary, request,
                            request_required, query, responses, problems, headers))
        # HEAD wherever GET (RFC 9110 §9.3.2): Azure routes a method only to a trigger
        # that lists it; the embedded host answers HEAD without the body.
        bound = [*methods, "HEAD"] if "GET" in methods and "HEAD" not in methods else methods
        routed = bp.route(route=template, methods=bound, auth_level=auth_level)(
            answering_problems(handler, measured=measured)
        )
        return bp.function_name(name)(routed)

    return register


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Requests with these methods change nothing, so they are not commands."""


def answering_problems(handler: Handler, *, measured: bool = True) -> Handler:
    """Turn every refusal ``handler`` raises into its problem document, and record each
    state-changing request as the command ``handler.__name__`` with its duration and
    outcome (``adapters.telemetry.COMMAND_OUTCOMES``): ``applied`` when a save happened,
    ``unchanged`` when it succeeded without one (an idempotent repeat), ``rejected`` for a
    4xx, ``conflict`` when optimistic-concurrency retries ran out, ``error`` for a 5xx."""
    command = handler.__name__

    @functools.wraps(handler)
    def answer(req: func.HttpRequest) -> func.HttpResponse:
        if not measured or (req.method or "").upper() in SAFE_METHODS:
            return _answer(handler, req)[0]
        started = time.perf_counter()
        with counting_commits() as commits:
            response, outcome = _answer(handler, req)
        if outcome == "succeeded":
            outcome = "applied" if commits[0] else "unchanged"
        _record_command(command, time.perf_counter() - started, outcome)
        return response

    return answer


def _answer(handler: Handler, req: func.HttpRequest) -> tuple[func.HttpResponse, str]:
    """The answer to ``req`` and how it ended: succeeded, rejected, conflict or error."""
    try:
        response = handler(req)
    except problems.Problem as problem:
        return problem.response(), "error" if problem.status >= 500 else "rejected"
    except DomainError as error:
        return problems.from_domain(error).response(), "rejected"
    except (StoreUnavailable, ConcurrencyConflict) as error:
        log.warning("%s %s: %s", req.method, loggable_url(req.url), error)
        outcome = "conflict" if isinstance(error, ConcurrencyConflict) else "error"
        return problems.from_store(error).response(), outcome
    except Exception:
        log.exception("unexpected failure in %s %s", req.method, loggable_url(req.url))
        return problems.internal_error().response(), "error"
    status = int(response.status_code)
    return response, "error" if status >= 500 else "rejected" if status >= 400 else "succeeded"


def loggable_url(url: str) -> str:
    """``url`` without its ``code`` query parameters (a function key, as Azure accepts it)
    and capped, so a key never reaches a log and a long URL never floods one."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and unquote_plus(p.partition("=")[0]) != "code"]
    shown = urlunsplit(parts._replace(query="&".join(kept)))
    return shown if len(shown) <= 1024 else shown[:1024] + "…"


def _record_command(command: str, seconds: float, outcome: str) -> None:
    try:
        services().telemetry.record_command(command, seconds, outcome)
    except Exception:  # the answer is decided: a metric never changes it
        log.exception("could not record the command metric of %s", command)


# -------------------------------------------------------------------- helpers


def services() -> Container:
    return get_container()


def reconciliation() -> ReconciliationServices:
    """The container's reconciliation services (holds, sessions, schedule); 503 on a
    host without a reconciliation store."""
    try:
        return reconciliation_services(get_container())
    except ReconciliationUnavailable as error:
        raise problems.Problem(503, "reconciliation-unavailable", "Service unavailable",
                               str(error)) from None


def approval_gate() -> ApprovalGate:
    """The gate every count and adjustment passes (one hold policy whatever the route)."""
    return reconciliation().gate


def held_response(held: Held) -> func.HttpResponse:
    """202: the command waits for approval; nothing was recorded."""
    return json_response(HeldOut(held=HoldOut(hold_id=held.hold.hold_id,
                                              reason=held.hold.reason),
                                 position=PositionOut.of(held.position)), 202)


def json_response(
    body: BaseModel | list[Any] | dict[str, Any], status: int = 200,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return func.HttpResponse(text, status_code=status, headers=headers or {},
                             mimetype="application/json", charset="utf-8")


def _stock_item(req: func.HttpRequest) -> tuple[str, str]:
    sku = require_identifier("sku", req.route_params.get("sku"))
    return sku, require_identifier("location", req.route_params.get("location"))


def _order_id(req: func.HttpRequest) -> str:
    return require_identifier("order_id", req.route_params.get("order_id"))


def _position(result_position: Any, status: int = 200,
              headers: dict[str, str] | None = None) -> func.HttpResponse:
    return json_response(PositionOut.of(result_position), status, headers)


STOCK = "stock/{sku}/{location}"
RESERVATION = STOCK + "/reservations/{order_id}"

# ------------------------------------------------------------------ positions


@_route("get_position", STOCK, ["GET"],
        summary="The position of a SKU-location, read from its stream (strongly consistent).",
        responses={200: PositionOut, 304: None}, problems=(422,), headers=("ETag",))
def get_position(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    position = services().queries.position(sku, location)
    etag = f'"{position.version}"'
    if etag in [t.strip() for t in (req.headers.get("if-none-match") or "").split(",")]:
        return func.HttpResponse(status_code=304, headers={"ETag": etag})
    return _position(position, headers={"ETag": etag})


@_route("list_events", STOCK + "/events", ["GET"],
        summary="The stream's events after version `after`, oldest first, as CloudEvents.",
        query=EventsQuery, responses={200: "CloudEvents"}, problems=(422,))
def list_events(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    query = parse_query(req, EventsQuery)
    events = services().queries.events(sku, location, after=query.after, limit=query.limit)
    return json_response([to_cloudevent(e) for e in events])


# ------------------------------------------------------------------ commands


@_route("receive_stock", STOCK + "/receipts", ["POST"],
        summary="Record a receipt of goods. Honours `Idempotency-Key`.",
        request=ReceiptRequest, responses={200: PositionOut}, problems=(409, 422),
        headers=("Idempotency-Key",))
def receive_stock(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    body = parse_body(req, ReceiptRequest)
    result = services().commands.receive(sku, location, body.quantity, body.reference,
                                         req.headers.get("idempotency-key"))
    return _position(result.position_of())


@_route("adjust_stock", STOCK + "/adjustments", ["POST"],
        summary="Correct on hand by a delta for a reason; 409 if it would go below zero. "
                "Honours `Idempotency-Key`. 202 when held for approval (the adjustment hold "
                "policy): nothing recorded until an admin approves it.",
        request=AdjustmentRequest, responses={200: PositionOut, 202: HeldOut},
        problems=(409, 422), headers=("Idempotency-Key",))
def adjust_stock(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    body = parse_body(req, AdjustmentRequest)
    decision = approval_gate().adjust(sku, location, body.delta, body.reason,
                                      req.headers.get("idempotency-key"), body.note)
    if isinstance(decision, Held):
        return held_response(decision)
    return _position(decision.position_of())


@_route("set_policy", STOCK + "/policy", ["PUT"],
        summary="Set safety stock and the oversell buffer.",
        request=PolicyRequest, responses={200: PositionOut}, problems=(422,))
def set_policy(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    body = parse_body(req, PolicyRequest)
    result = services().commands.set_policy(sku, location, body.safety_stock,
                                            body.oversell_buffer)
    return _position(result.position_of())


@_route("reserve_stock", RESERVATION, ["PUT"],
        summary="Set the order's reservation (absolute): 201 when new, 200 when unchanged "
                "or updated; 409 `insufficient-stock` with `available`.",
        request=ReservationRequest, responses={200: PositionOut, 201: PositionOut},
        problems=(409, 422))
def reserve_stock(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    order_id = _order_id(req)
    body = parse_body(req, ReservationRequest)
    result = services().commands.reserve(sku, location, order_id, body.quantity, body.channel,
                                         body.ttl_seconds)
    created = any(
        isinstance(e, StockItem.Reserved) and e.order_id == order_id and e.previous_quantity == 0
        for e in result.events
    )
    if created:
        location_url = f"/{ROUTE_PREFIX}/stock/{sku}/{location}/reservations/{order_id}"
        return _position(result.position_of(order_id), 201, {"Location": location_url})
    return _position(result.position_of(order_id))


@_route("release_reservation", RESERVATION, ["DELETE"],
        summary="Release (cancel) the order's reservation; repeating it changes nothing; "
                "404 if it never existed.",
        responses={200: PositionOut}, problems=(404, 422))
def release_reservation(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    order_id = _order_id(req)
    result = services().commands.release(sku, location, order_id)
    return _position(result.position_of(order_id))


@_route("fulfil_reservation", RESERVATION + "/fulfilment", ["POST"],
        summary="The order shipped (all it reserved, or `quantity`); repeating it changes "
                "nothing; 409 if the reservation was released or expired.",
        request=FulfilmentRequest, request_required=False, responses={200: PositionOut},
        problems=(404, 409, 422))
def fulfil_reservation(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    order_id = _order_id(req)
    body = parse_body(req, FulfilmentRequest, required=False)
    result = services().commands.fulfil(sku, location, order_id, body.quantity)
    return _position(result.position_of(order_id))


@_route("record_count", STOCK + "/counts", ["POST"],
        summary="Record a physical count; answers the position and the correction it made "
                "(null, with `already_recorded`, when the count id was seen). 202 when its "
                "drift is held for approval (the same hold policy as count files): nothing "
                "recorded until an admin approves it. `counted_at` at most "
                "STOCKSTREAM_COUNT_MAX_AGE back and 5 minutes ahead, else 422.",
        request=CountRequest, responses={200: CountOut, 202: HeldOut}, problems=(409, 422))
def record_count(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    body = parse_body(req, CountRequest)
    decision = approval_gate().record_count(sku, location, body.count_id, body.counted,
                                            body.counted_at)
    if isinstance(decision, Held):
        return held_response(decision)
    result = decision
    counted = next((e for e in result.events if isinstance(e, StockItem.Counted)
                    and e.count_id == body.count_id), None)
    correction = None if counted is None else CorrectionOut(
        count_id=counted.count_id, counted=counted.counted,
        previous_on_hand=counted.previous_on_hand, delta=counted.delta,
        counted_at=counted.counted_at)
    return json_response(CountOut(position=PositionOut.of(result.position_of()),
                                  correction=correction,
                                  already_recorded=result.already_recorded))


# ------------------------------------------------------- projections and ops


@_route("get_availability", "availability/{sku}", ["GET"],
        summary="Availability of a SKU across locations, from the projection (eventually "
                "consistent; each row says the version it reflects).",
        responses={200: AvailabilityOut}, problems=(422, 503))
def get_availability(req: func.HttpRequest) -> func.HttpResponse:
    sku = require_identifier("sku", req.route_params.get("sku"))
    reader = services().availability
    if reader is None:
        raise problems.pipeline_not_running("availability")
    return json_response(AvailabilityOut.of(reader.for_sku(sku)))


@_route("get_ops_status", "ops/status", ["GET"],
        summary="Outbox depth and age, subscriptions' active and dead-lettered counts and "
                "lag, projections' positions.",
        responses={200: OpsStatusOut}, problems=(503,))
def get_ops_status(req: func.HttpRequest) -> func.HttpResponse:
    reader = services().ops
    if reader is None:
        raise problems.pipeline_not_running("the ops status")
    return json_response(OpsStatusOut.of(reader.status()))


@_route("get_ops_metrics", "ops/metrics", ["GET"],
        summary="What this instance measured, as OpenMetrics text for Prometheus: command "
                "latency and outcome, relay and projection lag, outbox depth and age, "
                "subscription backlog and dead letters, count drift. On the embedded host "
                "the pipeline worker's metrics are included (label `process`); in Azure each "
                "instance lists only its own (Application Insights has them all).",
        responses={200: "OpenMetrics"})
def get_ops_metrics(req: func.HttpRequest) -> func.HttpResponse:
    container = services()
    sources = {name: read() for name, read in container.metrics_sources.items()}
    return func.HttpResponse(container.telemetry.openmetrics(sources), status_code=200,
                             headers={"Content-Type": OPENMETRICS_CONTENT_TYPE},
                             mimetype="application/openmetrics-text", charset="utf-8")


@_route("replay_dead_letters", "ops/deadletters/{subscription}/replay", ["POST"],
        auth_level=func.AuthLevel.ADMIN,
        summary="Replay a subscription's dead-lettered messages to that subscription only.",
        request=ReplayRequest, request_required=False, responses={200: ReplayOut},
        problems=(404, 422, 503))
def replay_dead_letters(req: func.HttpRequest) -> func.HttpResponse:
    subscription = require_identifier("subscription", req.route_params.get("subscription"))
    body = parse_body(req, ReplayRequest, required=False)
    replayer = services().replay
    if replayer is None:
        raise problems.pipeline_not_running("dead-letter replay")
    try:
        replayed = replayer.replay(subscription, body.max_messages)
    except KeyError:
        raise problems.unknown_subscription(subscription) from None
    return json_response(ReplayOut(replayed=replayed))


# ----------------------------------------------------------------- the API


@_route("get_openapi", "openapi.json", ["GET"], auth_level=func.AuthLevel.ANONYMOUS,
        summary="This API's OpenAPI 3.1 document.", responses={200: "OpenAPI"})
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    from functions.http_openapi import openapi_document  # built from ROUTES, once

    return json_response(openapi_document())


ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@_route("unmatched_route", "{*path}", ALL_METHODS,
        summary="Answers every request no other function takes: 405 on a known path, "
                "else 404.", responses={}, measured=False)
def unmatched_route(req: func.HttpRequest) -> func.HttpResponse:
    # The whole app's table, so other blueprints' routes get their 405 too. Imported here:
    # function_app imports this module (in Azure too, the worker loads it as function_app).
    from function_app import app

    path = req.route_params.get("path") or ""
    segments = [s for s in path.split("/") if s != ""]
    shown = f"/{ROUTE_PREFIX}/{path}"
    allowed = allowed_methods(http_functions(app), segments)
    if allowed:
        raise problems.method_not_allowed(req.method, shown, allowed)
    raise problems.not_found(shown)
