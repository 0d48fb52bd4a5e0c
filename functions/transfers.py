"""Transfers between locations as Azure Functions HTTP triggers, and the transfer sweep's
timer.

The routes call :class:`~application.transfers.Transfers` from the process's services;
their request and answer models are here because nothing else uses them. Refusals are
the domain's (``functions.problems`` maps them): 404 ``unknown-transfer``; 409
``transfer-conflict`` (another request under the id, a receipt of another quantity),
``transfer-status-conflict`` (naming the transfer's ``transfer_status``) and
``insufficient-stock`` (with ``available``); 422 for anything invalid, nothing recorded.
Both hosts keep transfer streams in their process store (SQLite, Cosmos DB).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import azure.functions as func
from pydantic import AwareDatetime, Field

from application.transfers import Transfers
from domain.identifiers import require_identifier
from domain.transfer import TransferRequest, TransferView
from functions.container import get_services
from functions.http_answers import etag, json_response, unless_not_modified
from functions.http_routes import ROUTE_PREFIX, HttpBlueprint
from functions.requests import Identifier, Quantity, RequestBody, parse_body
from functions.responses import ResponseBody, Utc

log = logging.getLogger(__name__)

TRANSFER_SWEEP_SCHEDULE = "45 * * * * *"
"""NCRONTAB of the Azure transfer sweep: every minute, at second 45 (apart from the
order sweep at 15). The embedded worker sweeps every ``STOCKSTREAM_ORDER_SWEEP_INTERVAL``."""
TRANSFER_SWEEP_BATCH = 100

bp = HttpBlueprint()


class TransferRequestBody(RequestBody):
    """Move ``quantity`` units of ``sku`` from one location to another."""

    sku: Identifier
    from_location: Identifier
    to_location: Identifier = Field(description="Another location than from_location.")
    quantity: Quantity
    expected_at: AwareDatetime | None = Field(
        default=None, description="When the units are due at the destination (default: "
                                  "the shipment's time).")


class TransferReceiptRequest(RequestBody):
    """The transfer's one receipt at the destination (at most what was shipped)."""

    quantity: Quantity


class TransferOut(ResponseBody):
    """A transfer: what it moves and how far it got (shipped = received + lost +
    in_transit)."""

    transfer_id: str
    sku: str
    from_location: str
    to_location: str
    quantity: int
    shipped: int
    received: int
    lost: int
    in_transit: int = Field(description="Shipped, not received, not recorded as lost.")
    status: Literal["requested", "shipping", "shipped", "receiving", "received", "closing",
                    "closed", "cancelled"]
    expected_at: Utc | None = Field(description="When the units are due at the destination "
                                                "(null until shipment if none was given).")


def _transfers() -> Transfers:
    transfers = get_services().transfers
    if transfers is None:  # a composition root that serves HTTP always builds them
        raise RuntimeError("this host's services have no transfer streams")
    return transfers


def _transfer_id(req: func.HttpRequest) -> str:
    return require_identifier("transfer_id", req.route_params.get("transfer_id"))


def _answer(transfer: TransferView, status: int = 200,
            headers: dict[str, str] | None = None) -> func.HttpResponse:
    """The transfer, with its own stream's version as the ``ETag``."""
    return json_response(TransferOut.of(transfer), status,
                         {**etag(transfer.version), **(headers or {})})


TRANSFER = "transfers/{transfer_id}"


@bp.http("request_transfer", TRANSFER, ["PUT"],
         summary="Request a transfer of `quantity` units of `sku` from `from_location` to "
                 "`to_location`: 201 (status `requested`); the same body again 200; another "
                 "body 409 `transfer-conflict`.",
         request=TransferRequestBody, responses={200: TransferOut, 201: TransferOut},
         problems=(409, 422, 503), headers=("ETag",))
def request_transfer(req: func.HttpRequest) -> func.HttpResponse:
    transfer_id = _transfer_id(req)
    body = parse_body(req, TransferRequestBody)
    request = TransferRequest.of(transfer_id, body.sku, body.from_location, body.to_location,
                                 body.quantity, body.expected_at)
    answer = _transfers().request(request)
    if answer.created:
        return _answer(answer.transfer, 201,
                       {"Location": f"/{ROUTE_PREFIX}/transfers/{transfer_id}"})
    return _answer(answer.transfer)


@bp.http("get_transfer", TRANSFER, ["GET"],
         summary="The transfer (after driving any work a crash left on it to its end); 404 "
                 "`unknown-transfer`.",
         responses={200: TransferOut, 304: None}, problems=(404, 422, 503),
         headers=("ETag",))
def get_transfer(req: func.HttpRequest) -> func.HttpResponse:
    transfer = _transfers().get(_transfer_id(req))
    return unless_not_modified(req, transfer.version, lambda: _answer(transfer))


@bp.http("ship_transfer", TRANSFER + "/shipment", ["POST"],
         summary="Ship: the source's sellable goes down by the quantity (409 "
                 "`insufficient-stock` with `available` when it cannot spare them: reserved "
                 "units and safety stock stay), the destination's incoming up with the "
                 "transfer id as reference. A repeat changes nothing; a cancelled transfer "
                 "409 `transfer-status-conflict`.",
         responses={200: TransferOut}, problems=(404, 409, 422, 503),
         headers=("ETag",))
def ship_transfer(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(_transfers().ship(_transfer_id(req)))


@bp.http("receive_transfer", TRANSFER + "/receipt", ["POST"],
         summary="The transfer's one receipt: the destination's sellable up by `quantity` "
                 "(at most what was shipped), its incoming entry closed, the rest in transit "
                 "until close. The same quantity again changes nothing; another 409 "
                 "`transfer-conflict`; before shipment 409 `transfer-status-conflict`.",
         request=TransferReceiptRequest, responses={200: TransferOut},
         problems=(404, 409, 422, 503), headers=("ETag",))
def receive_transfer(req: func.HttpRequest) -> func.HttpResponse:
    transfer_id = _transfer_id(req)
    body = parse_body(req, TransferReceiptRequest)
    return _answer(_transfers().receive(transfer_id, body.quantity))


@bp.http("close_transfer", TRANSFER + "/close", ["POST"],
         summary="Close: what was shipped and not received is recorded as lost in transit "
                 "at the destination. A repeat changes nothing; before shipment 409 "
                 "`transfer-status-conflict`.",
         responses={200: TransferOut}, problems=(404, 409, 422, 503),
         headers=("ETag",))
def close_transfer(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(_transfers().close(_transfer_id(req)))


@bp.http("cancel_transfer", TRANSFER, ["DELETE"],
         summary="Cancel a transfer not yet shipped; a repeat changes nothing; after "
                 "shipment 409 `transfer-status-conflict`.",
         responses={200: TransferOut}, problems=(404, 409, 422, 503),
         headers=("ETag",))
def cancel_transfer(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(_transfers().cancel(_transfer_id(req)))


@bp.function_name("sweep_transfers")
@bp.timer_trigger(arg_name="timer", schedule=TRANSFER_SWEEP_SCHEDULE, run_on_startup=False)
def sweep_transfers(timer: func.TimerRequest) -> None:
    """Every minute: drive transfers a crash left part way (between the source's step
    and the destination's) to their end."""
    transfers = _transfers()
    started = datetime.now()
    swept = transfers.sweep(TRANSFER_SWEEP_BATCH)
    log.info("transfer sweep drove %d transfers to their end in %.3fs", swept,
             (datetime.now() - started).total_seconds())
