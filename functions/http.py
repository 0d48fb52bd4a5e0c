"""The channel HTTP API as Azure Functions HTTP triggers, in one blueprint.

Each function translates: it parses the request with the models of ``functions.requests``,
calls one application service of the process's services (``functions.container``), and
shapes the answer with the models of ``functions.responses``. Every function is declared
with ``bp.http`` (the one route mechanism, ``functions.http_routes``): that registers it,
wraps it so refusals become problem documents and commands are measured
(``functions.http_answers``), and records what the OpenAPI document says about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from adapters.openmetrics import CONTENT_TYPE as OPENMETRICS_CONTENT_TYPE
from application.commands import CommandResult, StockCommand
from application.holds import ApprovalGate, Held
from application.views import Availability
from composition import Services
from contracts.cloudevents import to_cloudevent
from domain.identifiers import require_identifier
from domain.stock_item import StockItem
from functions import problems
from functions.batch import answer_batch
from functions.container import get_services
from functions.http_answers import (
    etag,
    json_response,
    require_reconciliation,
    unless_not_modified,
)
from functions.http_routes import ROUTE_PREFIX, HttpBlueprint
from functions.orders import group_locations
from functions.requests import (
    BATCH_MAX_BODY_BYTES,
    AdjustmentRequest,
    AvailabilityQuery,
    BatchRequest,
    CommandRequest,
    CountRequest,
    EventsQuery,
    FulfilmentRequest,
    IncomingRequest,
    PolicyRequest,
    PromiseQuery,
    ReceiptRequest,
    ReplayRequest,
    ReservationRequest,
    StateMoveRequest,
    if_match,
    parse_batch,
    parse_body,
    parse_query,
)
from functions.responses import (
    Answer,
    AvailabilityOut,
    AvailableToPromiseOut,
    BatchOut,
    CountOut,
    HeldOut,
    OpsStatusOut,
    PositionOut,
    ReplayOut,
)

bp = HttpBlueprint()


# -------------------------------------------------------------------- helpers


def services() -> Services:
    return get_services()


def approval_gate() -> ApprovalGate:
    """The gate every count and adjustment passes (one hold policy whatever the route)."""
    return require_reconciliation().gate


def held_answer(held: Held) -> Answer:
    """202: the command waits for approval; nothing was recorded (the ETag is the version
    the stream stays at)."""
    return Answer.of(HeldOut.of(held), 202, etag(held.position.version))


def _stock_item(req: CommandRequest) -> tuple[str, str]:
    sku = require_identifier("sku", req.route_params.get("sku"))
    return sku, require_identifier("location", req.route_params.get("location"))


def _order_id(req: CommandRequest) -> str:
    return require_identifier("order_id", req.route_params.get("order_id"))


def _position_answer(result_position: Any, status: int = 200,
                     headers: dict[str, str] | None = None) -> Answer:
    """The position answer, with the stream version it reflects as its ``ETag``."""
    return Answer.of(PositionOut.of(result_position), status,
                     {**etag(result_position.version), **(headers or {})})


def _position(result_position: Any) -> func.HttpResponse:
    return _position_answer(result_position).response()


STOCK = "stock/{sku}/{location}"
RESERVATION = STOCK + "/reservations/{order_id}"

# ------------------------------------------------------------------ positions


@bp.http("get_position", STOCK, ["GET"],
         summary="The position of a SKU-location, read from its stream (strongly consistent).",
         responses={200: PositionOut, 304: None}, problems=(422,), headers=("ETag",))
def get_position(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    position = services().queries.position(sku, location)
    return unless_not_modified(req, position.version, lambda: _position(position))


@bp.http("list_events", STOCK + "/events", ["GET"],
         summary="The stream's events after version `after`, oldest first, as CloudEvents.",
         query=EventsQuery, responses={200: "CloudEvents"}, problems=(422,))
def list_events(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    query = parse_query(req, EventsQuery)
    events = services().queries.events(sku, location, after=query.after, limit=query.limit)
    return json_response([to_cloudevent(e) for e in events])


# ------------------------------------------------------------------ commands
#
# Each stock-write route is three steps, shared with the batch route (functions.batch):
# its parse step (the request → a planned command, or a refusal raised), the command
# (run alone here, in a group by the batch) and its answer step (the result → the
# route's answer, an ``Answer``: status, body bytes, headers). A batch command is read
# as a ``CommandRequest`` and answered by the same steps, so exactly as its single route,
# without an HTTP request or response object per command.
# The routes of plain commands are coroutine functions: they await the group commit
# (``StockCommands.run_async``) instead of holding a thread while it gathers and writes,
# so a request costs one hand-over to the committing thread and one back, not four.
# The gated ones (adjustments, counts) run on a thread: the approval gate is synchronous.


@dataclass(frozen=True)
class StockWrite:
    """A stock-write request, parsed: the planned ``command`` (or, for counts and
    adjustments, the ``gated`` call through the approval gate, which may hold it) and
    the ``answer`` step that turns its result into the route's answer."""

    answer: Callable[[CommandResult], Answer]
    command: StockCommand | None = None
    gated: Callable[[], CommandResult | Held] | None = None

    def run(self) -> func.HttpResponse:
        """Run it alone and answer (what the single route does)."""
        if self.command is not None:
            return self.answer(services().commands.run(self.command)).response()
        return self.run_gated().response()

    def run_gated(self) -> Answer:
        """Run a count or adjustment through the approval gate (on a thread: the gate is
        synchronous) and answer it, held or not."""
        assert self.gated is not None
        outcome = self.gated()
        return held_answer(outcome) if isinstance(outcome, Held) else self.answer(outcome)

    async def run_async(self) -> func.HttpResponse:
        """:meth:`run` for the coroutine routes, whose writes are plain commands: the
        command awaits the group commit instead of holding a thread."""
        assert self.command is not None, "a gated write runs on a thread (run)"
        return self.answer(await services().commands.run_async(self.command)).response()


def parse_receipt(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    body = parse_body(req, ReceiptRequest)
    return StockWrite(_answer_position, services().commands.plan_receive(
        sku, location, body.quantity, body.reference, req.headers.get("idempotency-key"),
        state=body.state, expected=if_match(req)))


def parse_adjustment(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    body = parse_body(req, AdjustmentRequest)
    expected = if_match(req)
    return StockWrite(_answer_position, gated=lambda: approval_gate().adjust(
        sku, location, body.delta, body.reason, req.headers.get("idempotency-key"),
        body.note, state=body.state, expected=expected))


def parse_policy(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    body = parse_body(req, PolicyRequest)
    return StockWrite(_answer_position, services().commands.plan_policy(
        sku, location, body.safety_stock, body.oversell_buffer, expected=if_match(req)))


def parse_reservation(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    order_id = _order_id(req)
    body = parse_body(req, ReservationRequest)

    def answer(result: CommandResult) -> Answer:
        created = any(isinstance(e, StockItem.Reserved) and e.order_id == order_id
                      and e.previous_quantity == 0 for e in result.events)
        if created:
            location_url = f"/{ROUTE_PREFIX}/stock/{sku}/{location}/reservations/{order_id}"
            return _position_answer(result.position_of(order_id), 201,
                                    {"Location": location_url})
        return _position_answer(result.position_of(order_id))

    return StockWrite(answer, services().commands.plan_reserve(
        sku, location, order_id, body.quantity, body.channel, body.ttl_seconds,
        expected=if_match(req)))


def parse_release(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    order_id = _order_id(req)
    return StockWrite(lambda result: _position_answer(result.position_of(order_id)),
                      services().commands.plan_release(sku, location, order_id,
                                                       expected=if_match(req)))


def parse_fulfilment(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    order_id = _order_id(req)
    body = parse_body(req, FulfilmentRequest, required=False)
    return StockWrite(lambda result: _position_answer(result.position_of(order_id)),
                      services().commands.plan_fulfil(sku, location, order_id, body.quantity,
                                                      expected=if_match(req)))


def parse_count(req: CommandRequest) -> StockWrite:
    sku, location = _stock_item(req)
    body = parse_body(req, CountRequest)
    expected = if_match(req)

    def answer(result: CommandResult) -> Answer:
        counted = next((e for e in result.events if isinstance(e, StockItem.Counted)
                        and e.count_id == body.count_id), None)
        position = result.position_of()
        return Answer.of(CountOut.of({"position": position, "correction": counted,
                                      "already_recorded": result.already_recorded}),
                         headers=etag(position.version))

    return StockWrite(answer, gated=lambda: approval_gate().record_count(
        sku, location, body.count_id, body.counted, body.counted_at, state=body.state,
        expected=expected))


def _answer_position(result: CommandResult) -> Answer:
    return _position_answer(result.position_of())


@bp.http("receive_stock", STOCK + "/receipts", ["POST"],
         summary="Record a receipt of goods (into `state`, sellable by default); a "
                 "`reference` naming an open incoming entry reduces it. Honours "
                 "`Idempotency-Key`.",
         request=ReceiptRequest, responses={200: PositionOut}, problems=(409, 422),
         headers=("Idempotency-Key", "If-Match"))
async def receive_stock(req: func.HttpRequest) -> func.HttpResponse:
    return await parse_receipt(req).run_async()


@bp.http("adjust_stock", STOCK + "/adjustments", ["POST"],
         summary="Correct on hand (the stock in `state`, sellable by default) by a delta "
                 "for a reason; 409 if it would go below zero. "
                 "Honours `Idempotency-Key`. 202 when held for approval (the adjustment hold "
                 "policy): nothing recorded until an admin approves it.",
         request=AdjustmentRequest, responses={200: PositionOut, 202: HeldOut},
         problems=(409, 422), headers=("Idempotency-Key", "If-Match"))
def adjust_stock(req: func.HttpRequest) -> func.HttpResponse:
    return parse_adjustment(req).run()


@bp.http("set_policy", STOCK + "/policy", ["PUT"],
         summary="Set safety stock and the oversell buffer.",
         request=PolicyRequest, responses={200: PositionOut}, problems=(422,),
         headers=("If-Match",))
async def set_policy(req: func.HttpRequest) -> func.HttpResponse:
    return await parse_policy(req).run_async()


@bp.http("reserve_stock", RESERVATION, ["PUT"],
         summary="Set the order's reservation (absolute): 201 when new, 200 when unchanged "
                 "or updated; 409 `insufficient-stock` with `available`.",
         request=ReservationRequest, responses={200: PositionOut, 201: PositionOut},
         problems=(409, 422), headers=("If-Match",))
async def reserve_stock(req: func.HttpRequest) -> func.HttpResponse:
    return await parse_reservation(req).run_async()


@bp.http("release_reservation", RESERVATION, ["DELETE"],
         summary="Release (cancel) the order's reservation; repeating it changes nothing; "
                 "404 if it never existed.",
         responses={200: PositionOut}, problems=(404, 422), headers=("If-Match",))
async def release_reservation(req: func.HttpRequest) -> func.HttpResponse:
    return await parse_release(req).run_async()


@bp.http("fulfil_reservation", RESERVATION + "/fulfilment", ["POST"],
         summary="The order shipped (all it reserved, or `quantity`); repeating it changes "
                 "nothing; 409 if the reservation was released or expired.",
         request=FulfilmentRequest, request_required=False, responses={200: PositionOut},
         problems=(404, 409, 422), headers=("If-Match",))
async def fulfil_reservation(req: func.HttpRequest) -> func.HttpResponse:
    return await parse_fulfilment(req).run_async()


@bp.http("record_count", STOCK + "/counts", ["POST"],
         summary="Record a physical count (of `state`, sellable by default: it corrects "
                 "that state only); answers the position and the correction it made "
                 "(null, with `already_recorded`, when the count id was seen). 202 when its "
                 "drift is held for approval (the same hold policy as count files): nothing "
                 "recorded until an admin approves it. `counted_at` at most "
                 "STOCKSTREAM_COUNT_MAX_AGE back and 5 minutes ahead, else 422.",
         request=CountRequest, responses={200: CountOut, 202: HeldOut}, problems=(409, 422),
         headers=("If-Match",))
def record_count(req: func.HttpRequest) -> func.HttpResponse:
    return parse_count(req).run()


STOCK_WRITES: dict[str, Callable[[CommandRequest], StockWrite]] = {
    "receive_stock": parse_receipt, "adjust_stock": parse_adjustment,
    "set_policy": parse_policy, "reserve_stock": parse_reservation,
    "release_reservation": parse_release, "fulfil_reservation": parse_fulfilment,
    "record_count": parse_count,
}
"""The parse step of each stock-write route by function name (the batch's commands)."""


@bp.http("submit_batch", "stock/batch", ["POST"],
         summary="Up to 500 commands (`op`: receive, adjust, policy, reserve, release, "
                 "fulfil, count, with `sku`, `location`, the single route's fields, "
                 "`order_id`, `idempotency_key`, `if_match`) in one request of at most 1 MiB. "
                 "Each is atomic on its own stream as if sent alone, a stream's commands in "
                 "request order; not all-or-nothing. Each result is the status and body the "
                 "single route answers. Over 500 commands 413, a malformed envelope 422: "
                 "nothing recorded.",
         request=BatchRequest, responses={200: BatchOut}, problems=(413, 422),
         measured=False, max_body_bytes=BATCH_MAX_BODY_BYTES)
def submit_batch(req: func.HttpRequest) -> func.HttpResponse:
    return answer_batch(parse_batch(req).commands, STOCK_WRITES)


# ------------------------------------------- stock states and incoming


@bp.http("move_stock_state", STOCK + "/state-moves", ["POST"],
         summary="Move units between stock states (sellable, damaged, quality_control); on "
                 "hand stays. Reserved units never leave sellable (409 "
                 "`insufficient-stock`). Honours `Idempotency-Key`.",
         request=StateMoveRequest, responses={200: PositionOut}, problems=(409, 422),
         headers=("Idempotency-Key", "If-Match"))
def move_stock_state(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    body = parse_body(req, StateMoveRequest)
    result = services().commands.move_state(sku, location, body.quantity, body.from_state,
                                            body.to_state, body.reason,
                                            req.headers.get("idempotency-key"),
                                            expected=if_match(req))
    return _position(result.position_of())


@bp.http("set_incoming", STOCK + "/incoming/{reference}", ["PUT"],
         summary="Set the expected receipt `reference` (absolute): `quantity` units due at "
                 "`expected_at`; quantity 0 cancels it, the same figures again change "
                 "nothing. A transfer's entry changes only with its transfer (409 "
                 "`incoming-conflict`).",
         request=IncomingRequest, responses={200: PositionOut}, problems=(409, 422),
         headers=("If-Match",))
def set_incoming(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    reference = require_identifier("reference", req.route_params.get("reference"))
    body = parse_body(req, IncomingRequest)
    if (transfers := services().transfers) is not None:
        transfers.refuse_reference(sku, location, reference)
    result = services().commands.set_incoming(sku, location, reference, body.quantity,
                                              body.expected_at, expected=if_match(req))
    return _position(result.position_of())


@bp.http("get_available_to_promise", STOCK + "/atp", ["GET"],
         summary="Available to promise per UTC day for `days` days (1 to 90, default 14) "
                 "from today: sellable - reserved - safety_stock + incoming due before the "
                 "end of the day (overdue included); not clamped at 0. Strongly consistent.",
         query=PromiseQuery, responses={200: AvailableToPromiseOut}, problems=(422,))
def get_available_to_promise(req: func.HttpRequest) -> func.HttpResponse:
    sku, location = _stock_item(req)
    query = parse_query(req, PromiseQuery)
    promise = services().queries.available_to_promise(sku, location, query.days)
    return json_response(AvailableToPromiseOut.of(promise))


# ------------------------------------------------------- projections and ops


@bp.http("get_availability", "availability/{sku}", ["GET"],
         summary="Availability of a SKU across locations, from the projection (eventually "
                 "consistent; each row says the version it reflects). With "
                 "`location_group`, the rows and totals of the group's locations only "
                 "(404 for an unknown group).",
         query=AvailabilityQuery, responses={200: AvailabilityOut}, problems=(404, 422, 503))
def get_availability(req: func.HttpRequest) -> func.HttpResponse:
    sku = require_identifier("sku", req.route_params.get("sku"))
    query = parse_query(req, AvailabilityQuery)
    reader = services().availability
    if reader is None:
        raise problems.pipeline_not_running("availability")
    availability = reader.for_sku(sku)
    if query.location_group is not None:
        wanted = group_locations(query.location_group)
        availability = Availability.of(
            sku, [row for row in availability.locations if row.location in wanted])
    return json_response(AvailabilityOut.of(availability))


@bp.http("get_ops_status", "ops/status", ["GET"],
         summary="Outbox depth and age, subscriptions' active and dead-lettered counts and "
                 "lag, projections' positions.",
         responses={200: OpsStatusOut}, problems=(503,))
def get_ops_status(req: func.HttpRequest) -> func.HttpResponse:
    reader = services().ops
    if reader is None:
        raise problems.pipeline_not_running("the ops status")
    return json_response(OpsStatusOut.of(reader.status()))


@bp.http("get_ops_metrics", "ops/metrics", ["GET"],
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


@bp.http("replay_dead_letters", "ops/deadletters/{subscription}/replay", ["POST"],
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
