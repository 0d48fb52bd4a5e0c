"""Orders and location groups as Azure Functions HTTP triggers, and the
order sweep's timer.

The routes call :class:`~application.orders.Orders` and
:class:`~application.orders.LocationGroups` from the process's services; their request
and answer models are here, apart from ``functions.requests`` / ``functions.responses``,
because nothing else uses them. Refusals are the domain's (``functions.problems`` maps
them: 409 ``insufficient-stock`` with ``lines``, ``order-conflict``, ``order-closed``;
404 ``unknown-order`` / ``unknown-location-group``; 422 for anything invalid, nothing
recorded). Both hosts keep order streams (SQLite ``processes.db``; the Cosmos DB
``processes`` container), so every host that serves HTTP has them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

import azure.functions as func
from pydantic import Field

from application.orders import LocationGroups, Orders
from domain.identifiers import require_identifier
from domain.location_group import MAX_LOCATIONS
from domain.order import MAX_LINES, OrderView
from domain.stock_item import MAX_TTL_SECONDS
from functions.container import get_services
from functions.http_answers import etag, json_response, unless_not_modified
from functions.http_routes import ROUTE_PREFIX, HttpBlueprint
from functions.requests import Identifier, Quantity, RequestBody, parse_body
from functions.responses import ResponseBody, Utc

log = logging.getLogger(__name__)

ORDER_SWEEP_SCHEDULE = "15 * * * * *"
"""NCRONTAB of the Azure order sweep: every minute (at second 15, apart from the expiry
sweep and the metrics timer). ``STOCKSTREAM_ORDER_SWEEP_INTERVAL`` is the embedded
worker's interval; on Azure the timer's schedule is fixed at a minute, the default."""
ORDER_SWEEP_BATCH = 100

bp = HttpBlueprint()


# --------------------------------------------------------------------- requests


class OrderLineRequest(RequestBody):
    """One line of a cart: a SKU at a location, or at one location of a group."""

    sku: Identifier
    location: Identifier | None = Field(
        default=None, description="Hold at this location (exactly one of location and "
                                  "location_group).")
    location_group: Identifier | None = Field(
        default=None, description="Hold at one location of this group, chosen by its "
                                  "strategy; the answer names the location.")
    quantity: Quantity


class OrderRequestBody(RequestBody):
    """Hold a whole cart for an order (absolute: the same body twice is one order)."""

    channel: Identifier = Field(description="The channel holding the stock: pos, web, ...")
    ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_TTL_SECONDS)] | None = Field(
        default=None, description="Release the order's holds automatically after this long; "
                                  "a request differing only in it extends or shortens them.")
    mode: Literal["all_or_nothing", "partial"] = Field(
        default="all_or_nothing",
        description="all_or_nothing: every line held or none (409); partial: each line "
                    "held whole or not at all.")
    lines: list[OrderLineRequest] = Field(min_length=1, max_length=MAX_LINES)


class FulfilmentLineRequest(RequestBody):
    sku: Identifier
    location: Identifier
    quantity: Quantity


class OrderFulfilmentRequest(RequestBody):
    """Which holds shipped (default: every held line in full); the others stay held."""

    lines: list[FulfilmentLineRequest] | None = Field(
        default=None, min_length=1, max_length=MAX_LINES)


class LocationGroupRequest(RequestBody):
    """A group's locations, in priority order, and how a line picks one."""

    locations: list[Identifier] = Field(min_length=1, max_length=MAX_LOCATIONS)
    strategy: Literal["priority", "most_available"] = Field(
        description="priority: the first location in list order that can hold the whole "
                    "line; most_available: the one with the most available.")


# ---------------------------------------------------------------------- answers


class OrderLineOut(ResponseBody):
    sku: str
    location: str | None = Field(description="Where the line is held (chosen from the group "
                                             "when it named one); null until chosen.")
    location_group: str | None = None
    quantity: int
    held: int


class OrderOut(ResponseBody):
    """An order: its status and each line as sent, with what it holds."""

    order_id: str
    status: Literal["placing", "held", "partially_held", "releasing", "released",
                    "fulfilling", "fulfilled", "failed"]
    channel: str
    mode: str
    expires_at: Utc | None
    lines: list[OrderLineOut]


class LocationGroupOut(ResponseBody):
    group: str
    locations: list[str]
    strategy: str


# ---------------------------------------------------------------------- helpers


def _orders() -> Orders:
    orders = get_services().orders
    if orders is None:  # a composition root that serves HTTP always builds them
        raise RuntimeError("this host's services have no order streams")
    return orders


def _groups() -> LocationGroups:
    groups = get_services().location_groups
    if groups is None:
        raise RuntimeError("this host's services have no location-group streams")
    return groups


def _order_id(req: func.HttpRequest) -> str:
    return require_identifier("order_id", req.route_params.get("order_id"))


def _group(req: func.HttpRequest) -> str:
    return require_identifier("group", req.route_params.get("group"))


def _answer(order: OrderView, status: int = 200,
            headers: dict[str, str] | None = None) -> func.HttpResponse:
    """The order, with its own stream's version as the ``ETag``."""
    return json_response(OrderOut.of(order), status, {**etag(order.version), **(headers or {})})


ORDER = "orders/{order_id}/reservation"
GROUP = "location-groups/{group}"


# ------------------------------------------------------------------------ orders


@bp.http("place_order", ORDER, ["PUT"],
         summary="Hold a whole cart (1 to 100 lines) across SKU-locations: 201 when this "
                 "request completed the hold, 200 when it was already held (or only its ttl "
                 "changed). all_or_nothing (default): 409 `insufficient-stock` naming the "
                 "short `lines`, nothing held; partial: each line held whole or not at all. "
                 "409 `order-conflict` for another request on an open order, `order-closed` "
                 "for a released or fulfilled one.",
         request=OrderRequestBody, responses={200: OrderOut, 201: OrderOut},
         problems=(409, 422, 503), headers=("ETag",))
def place_order(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = parse_body(req, OrderRequestBody)
    orders = _orders()
    answer = orders.place(
        order_id, body.channel,
        [line.model_dump(exclude_none=True) for line in body.lines],
        body.mode, body.ttl_seconds)
    if answer.created:
        return _answer(answer.order, 201,
                       {"Location": f"/{ROUTE_PREFIX}/orders/{order_id}/reservation"})
    return _answer(answer.order)


@bp.http("get_order", ORDER, ["GET"],
         summary="The order (after driving any work a crash left on it to its end).",
         responses={200: OrderOut, 304: None}, problems=(404, 422, 503),
         headers=("ETag",))
def get_order(req: func.HttpRequest) -> func.HttpResponse:
    order = _orders().get(_order_id(req))
    return unless_not_modified(req, order.version, lambda: _answer(order))


@bp.http("release_order", ORDER, ["DELETE"],
         summary="Release every hold of the order; a repeat changes nothing; 404 if it was "
                 "never placed, 409 `order-closed` after fulfilment.",
         responses={200: OrderOut}, problems=(404, 409, 422, 503),
         headers=("ETag",))
def release_order(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    return _answer(_orders().release(order_id))


@bp.http("fulfil_order", "orders/{order_id}/fulfilment", ["POST"],
         summary="The order shipped: the named `lines` (default: every held line in full); "
                 "the others stay held. A repeat changes nothing; 409 `order-closed` after "
                 "release.",
         request=OrderFulfilmentRequest, request_required=False, responses={200: OrderOut},
         problems=(404, 409, 422, 503), headers=("ETag",))
def fulfil_order(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = parse_body(req, OrderFulfilmentRequest, required=False)
    lines = None if body.lines is None else [line.model_dump() for line in body.lines]
    return _answer(_orders().fulfil(order_id, lines))


# ------------------------------------------------------------------------ groups


@bp.http("define_location_group", GROUP, ["PUT"],
         summary="Set a location group's locations (1 to 50, in priority order) and "
                 "strategy; the same again records nothing.",
         request=LocationGroupRequest, responses={200: LocationGroupOut},
         problems=(422, 503))
def define_location_group(req: func.HttpRequest) -> func.HttpResponse:
    group = _group(req)
    body = parse_body(req, LocationGroupRequest)
    definition = _groups().define(group, list(body.locations), body.strategy)
    return json_response(LocationGroupOut.of(definition))


@bp.http("get_location_group", GROUP, ["GET"],
         summary="A location group's locations and strategy; 404 if never defined.",
         responses={200: LocationGroupOut}, problems=(404, 422, 503))
def get_location_group(req: func.HttpRequest) -> func.HttpResponse:
    group = _group(req)
    return json_response(LocationGroupOut.of(_groups().get(group)))


def group_locations(group: str) -> frozenset[str]:
    """The locations of ``group`` (for ``GET /api/availability/{sku}?location_group=``):
    404 ``unknown-location-group`` if never defined."""
    return frozenset(_groups().get(group).locations)


# ------------------------------------------------------------------------- sweep


@bp.function_name("sweep_orders")
@bp.timer_trigger(arg_name="timer", schedule=ORDER_SWEEP_SCHEDULE, run_on_startup=False)
def sweep_orders(timer: func.TimerRequest) -> None:
    """Every minute: drive orders a crash left part way to their end, release expired
    ones."""
    orders = _orders()
    started = datetime.now()
    swept = orders.sweep(ORDER_SWEEP_BATCH)
    log.info("order sweep drove %d orders to their end in %.3fs", swept,
             (datetime.now() - started).total_seconds())
