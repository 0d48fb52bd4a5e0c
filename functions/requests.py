"""The HTTP API's bodies as pydantic models, and the parsing every handler shares.

These models are the single source of the wire shapes: the handlers parse requests and
shape responses with them, and ``functions.openapi`` generates the OpenAPI document from
them, so the document cannot drift from the code.

Request bodies are strict: an integer field takes a JSON integer only (no ``1.5``, no
``"3"``, no ``true``), unknown members are refused (a typo such as ``quantiy`` must not
silently reserve the default), and every number has bounds, so huge numbers get a 422
rather than reaching the domain.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import azure.functions as func
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from application.views import Availability, OpsStatus
from domain.identifiers import IDENTIFIER_PATTERN, MAX_IDENTIFIER_LENGTH
from domain.stock_item import (
    MAX_NOTE_LENGTH,
    MAX_QUANTITY,
    MAX_TTL_SECONDS,
    AdjustmentReason,
    Position,
)
from functions.problems import (
    FieldError,
    malformed_json,
    payload_too_large,
    unsupported_media_type,
    validation_failed,
)

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted (DESIGN §5); a larger one gets 413."""

MAX_REPLAY_MESSAGES = 1000

Identifier = Annotated[
    str, Field(pattern=IDENTIFIER_PATTERN, min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_QUANTITY)]
Delta = Annotated[int, Field(strict=True, ge=-MAX_QUANTITY, le=MAX_QUANTITY)]

_JSON_MEDIA_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$", re.IGNORECASE)


class RequestBody(BaseModel):
    """Base of every request body: unknown members refused, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiptRequest(RequestBody):
    """A receipt of goods at a location."""

    quantity: Quantity = Field(description="Units received (1 to 10^9).")
    reference: str | None = Field(
        default=None, max_length=200, description="Delivery note, ASN or PO reference."
    )


class AdjustmentRequest(RequestBody):
    """A correction of on hand by a signed delta, for a reason."""

    delta: Delta = Field(description="Signed, non-zero change of on hand.")
    reason: AdjustmentReason
    note: str | None = Field(
        default=None, max_length=MAX_NOTE_LENGTH,
        description="Free text, e.g. what happened to the goods."
    )


class PolicyRequest(RequestBody):
    """Safety stock held back from sale, and how far the location may oversell."""

    safety_stock: Amount
    oversell_buffer: Amount


class ReservationRequest(RequestBody):
    """An order holds ``quantity`` units here (absolute: the same body twice is one hold)."""

    quantity: Quantity
    channel: Identifier = Field(description="The channel holding the stock: pos, web, wms, ...")
    ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_TTL_SECONDS)] | None = Field(
        default=None, description="Release the reservation automatically after this long."
    )


class FulfilmentRequest(RequestBody):
    """An order shipped; by default all it reserved, or ``quantity`` of it."""

    quantity: Quantity | None = None


class CountRequest(RequestBody):
    """A physical count: on hand was ``counted`` at ``counted_at``."""

    count_id: Identifier = Field(description="The count's id; repeating it is a no-op.")
    counted: Amount
    counted_at: AwareDatetime = Field(description="When the count was taken (ISO-8601, zoned).")


class ReplayRequest(RequestBody):
    """How many dead-lettered messages to replay (default: all)."""

    max_messages: Annotated[int, Field(strict=True, ge=1, le=MAX_REPLAY_MESSAGES)] | None = None


class EventsQuery(BaseModel):
    """Query string of the events route: ``after`` a version, at most ``limit`` events."""

    model_config = ConfigDict(extra="ignore")

    after: Annotated[int, Field(ge=0, le=2**53)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 1000


# ------------------------------------------------------------------ responses


class ResponseBody(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReservationOut(ResponseBody):
    order_id: str
    quantity: int
    channel: str
    expires_at: datetime | None


class PositionOut(ResponseBody):
    """A SKU-location's position at one stream version (strongly consistent)."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    safety_stock: int
    oversell_buffer: int
    available: int
    version: int
    reservations: list[ReservationOut] = Field(
        description="Open reservations: all of them on GET; on a command's answer only the "
                    "reservation the command concerns (see `open_reservations`).")
    open_reservations: int = Field(ge=0, description="How many reservations are open.")

    @classmethod
    def of(cls, position: Position) -> PositionOut:
        return cls(
            sku=position.sku,
            location=position.location,
            on_hand=position.on_hand,
            reserved=position.reserved,
            safety_stock=position.safety_stock,
            oversell_buffer=position.oversell_buffer,
            available=position.available,
            version=position.version,
            reservations=[
                ReservationOut(order_id=r.order_id, quantity=r.quantity, channel=r.channel,
                               expires_at=_utc(r.expires_at))
                for r in position.reservations
            ],
            open_reservations=position.open_reservations,
        )


class CorrectionOut(ResponseBody):
    """What a count changed: on hand went from ``previous_on_hand`` by ``delta``."""

    count_id: str
    counted: int
    previous_on_hand: int
    delta: int
    counted_at: datetime


class CountOut(ResponseBody):
    """The position after a count and its correction (null if it was already recorded)."""

    position: PositionOut
    correction: CorrectionOut | None
    already_recorded: bool


class HoldOut(ResponseBody):
    """Why a command waits for approval, and the id to approve or dismiss it by."""

    hold_id: str = Field(description="Approve with POST /api/reconciliation/held/{hold_id}/"
                                     "approval, or dismiss with .../dismissal (admin key).")
    reason: str


class HeldOut(ResponseBody):
    """A count or adjustment held for approval (202): nothing was recorded; the position
    is as it stands."""

    held: HoldOut
    position: PositionOut


class LocationAvailabilityOut(ResponseBody):
    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime


class AvailabilityOut(ResponseBody):
    """A SKU across locations, from the availability projection (eventually consistent)."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    locations: list[LocationAvailabilityOut]

    @classmethod
    def of(cls, availability: Availability) -> AvailabilityOut:
        return cls.model_validate(availability, from_attributes=True)


class OutboxOut(ResponseBody):
    depth: int
    oldest_age_seconds: float | None


class SubscriptionOut(ResponseBody):
    name: str
    active: int
    dead_lettered: int
    lag_seconds: float | None


class ProjectionOut(ResponseBody):
    name: str
    position: int
    lag_seconds: float | None


class OpsStatusOut(ResponseBody):
    """The pipeline's health: outbox, subscriptions and projections."""

    outbox: OutboxOut
    subscriptions: list[SubscriptionOut]
    projections: list[ProjectionOut]

    @classmethod
    def of(cls, status: OpsStatus) -> OpsStatusOut:
        return cls.model_validate(status, from_attributes=True)


class ReplayOut(ResponseBody):
    replayed: int


class FieldErrorOut(ResponseBody):
    field: str
    message: str


class ProblemOut(BaseModel):
    """An RFC 9457 problem document; extension members (``available``, ...) may follow."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorOut] | None = None


# -------------------------------------------------------------------- parsing

M = TypeVar("M", bound=BaseModel)


def parse_body(req: func.HttpRequest, model: type[M], *, required: bool = True) -> M:
    """The request's JSON body as ``model``, or a :class:`Problem` raised.

    413 over ``MAX_BODY_BYTES``; an empty body is ``model()`` when not ``required``, else
    400; 415 unless the Content-Type is JSON; 400 for malformed JSON; 422 naming every
    invalid field.
    """
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise payload_too_large(MAX_BODY_BYTES)
    if not body.strip():
        if required:
            raise malformed_json("a JSON body is required")
        return model()
    content_type = req.headers.get("content-type")
    if not is_json_media_type(content_type):
        raise unsupported_media_type(content_type)
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as error:
        details = error.errors(include_url=False, include_input=False)
        if any(d["type"] == "json_invalid" for d in details):
            raise malformed_json(f"the body is not valid JSON: {details[0]['msg']}") from None
        raise validation_failed(field_errors(details)) from None


def parse_query(req: func.HttpRequest, model: type[M]) -> M:
    """The query string as ``model``; 422 naming every invalid parameter."""
    try:
        return model.model_validate(dict(req.params))
    except ValidationError as error:
        raise validation_failed(
            field_errors(error.errors(include_url=False, include_input=False))
        ) from None


def field_errors(details: Any) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in d["loc"]) or "body", str(d["msg"]))
        for d in details
    ]


def is_json_media_type(content_type: str | None) -> bool:
    """True for ``application/json`` or ``application/*+json``, parameters allowed."""
    if not content_type:
        return False
    return bool(_JSON_MEDIA_TYPE.match(content_type.split(";", 1)[0].strip()))


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None
