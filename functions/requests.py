"""The HTTP API's request bodies and query strings as pydantic models, and the parsing
every handler shares.

These models are the single source of the requests' wire shapes: the handlers parse
requests with them, and ``functions.http_openapi`` generates the OpenAPI document from
them, so the document cannot drift from the code (answers: ``functions.responses``).

Request bodies are strict: an integer field takes a JSON integer only (no ``1.5``, no
``"3"``, no ``true``), unknown members are refused (a typo such as ``quantiy`` must not
silently reserve the default), and every number has bounds, so huge numbers get a 422
rather than reaching the domain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol, TypeVar

import azure.functions as func
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from application.commands import ExpectedVersion
from domain.identifiers import IDENTIFIER_PATTERN, MAX_IDENTIFIER_LENGTH
from domain.promise import DEFAULT_PROMISE_DAYS, MAX_PROMISE_DAYS
from domain.stock_item import (
    MAX_NOTE_LENGTH,
    MAX_QUANTITY,
    MAX_REASON_LENGTH,
    MAX_TTL_SECONDS,
    AdjustmentReason,
    StockState,
)
from functions.problems import (
    FieldError,
    malformed_if_match,
    malformed_json,
    payload_too_large,
    too_many_commands,
    unsupported_media_type,
    validation_failed,
)

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted; a larger one gets 413."""

MAX_REPLAY_MESSAGES = 1000

BATCH_MAX_COMMANDS = 500
"""Most commands one ``POST /api/stock/batch`` may carry; more is 413."""
BATCH_MAX_BODY_BYTES = 1024 * 1024
"""The batch route's body limit (1 MiB; every other route keeps ``MAX_BODY_BYTES``)."""

Identifier = Annotated[
    str, Field(pattern=IDENTIFIER_PATTERN, min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_QUANTITY)]
Delta = Annotated[int, Field(strict=True, ge=-MAX_QUANTITY, le=MAX_QUANTITY)]

_STREAM_ETAG = re.compile(r'^"(0|[1-9][0-9]{0,15})"$')
"""A stream version as an entity tag (``ETag: "<version>"``): strong, decimal, quoted."""

_JSON_MEDIA_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$", re.IGNORECASE)


class RequestBody(BaseModel):
    """Base of every request body: unknown members refused, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiptRequest(RequestBody):
    """A receipt of goods at a location."""

    quantity: Quantity = Field(description="Units received (1 to 10^9).")
    reference: str | None = Field(
        default=None, max_length=200, description="Delivery note, ASN or PO reference. "
        "Naming an open incoming entry reduces it by the quantity received."
    )
    state: StockState = Field(default="sellable", description="The state received into.")


class AdjustmentRequest(RequestBody):
    """A correction of on hand by a signed delta, for a reason."""

    delta: Delta = Field(description="Signed, non-zero change of on hand.")
    reason: AdjustmentReason
    note: str | None = Field(
        default=None, max_length=MAX_NOTE_LENGTH,
        description="Free text, e.g. what happened to the goods."
    )
    state: StockState = Field(default="sellable", description="The state corrected.")


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
    state: StockState = Field(default="sellable",
                              description="The state counted; the count corrects it only.")


# ------------------------------------------- stock states and incoming


class StateMoveRequest(RequestBody):
    """Move units from one stock state to another; on hand stays."""

    quantity: Quantity
    from_state: StockState = Field(alias="from", description="The state the units leave.")
    to_state: StockState = Field(alias="to", description="The state the units enter.")
    reason: str | None = Field(default=None, min_length=1, max_length=MAX_REASON_LENGTH,
                               description="Why, e.g. 'dented in delivery'.")


class IncomingRequest(RequestBody):
    """An expected receipt, set absolutely: ``quantity`` 0 cancels it."""

    quantity: Amount = Field(description="Units expected (0 cancels the entry).")
    expected_at: AwareDatetime = Field(description="When the units are due (ISO-8601, zoned).")


class PromiseQuery(BaseModel):
    """Query string of the available-to-promise route: how many UTC days."""

    model_config = ConfigDict(extra="ignore")

    days: Annotated[int, Field(ge=1, le=MAX_PROMISE_DAYS)] = DEFAULT_PROMISE_DAYS


class ReplayRequest(RequestBody):
    """How many dead-lettered messages to replay (default: all)."""

    max_messages: Annotated[int, Field(strict=True, ge=1, le=MAX_REPLAY_MESSAGES)] | None = None


class EventsQuery(BaseModel):
    """Query string of the events route: ``after`` a version, at most ``limit`` events."""

    model_config = ConfigDict(extra="ignore")

    after: Annotated[int, Field(ge=0, le=2**53)] = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 1000


# ---------------------------------------------------- availability (orders, §5.2)


class AvailabilityQuery(BaseModel):
    """Query string of the availability route: totals over a location group's locations
    only (``location_group``), or over every location (absent)."""

    model_config = ConfigDict(extra="ignore")

    location_group: Identifier | None = None


# ------------------------------------------------------------ batch (§5.1)

BatchOp = Literal["receive", "adjust", "policy", "reserve", "release", "fulfil", "count"]


class BatchCommand(BaseModel):
    """One command of a batch: ``op``, the stream, and the fields of the single route's
    body beside them (checked by that route, as if sent alone); ``order_id`` for the
    reservation commands; ``idempotency_key`` and ``if_match`` in the headers' syntax."""

    model_config = ConfigDict(extra="allow", frozen=True)

    op: BatchOp = Field(description="The single route it stands for: receive (receipts), "
                        "adjust (adjustments), policy, reserve, release, fulfil, count.")
    sku: str = Field(max_length=1024)
    location: str = Field(max_length=1024)
    order_id: str | None = Field(default=None, max_length=1024,
                                 description="reserve, release, fulfil: the order.")
    idempotency_key: str | None = Field(default=None, max_length=1024,
                                        description="As the Idempotency-Key header.")
    if_match: str | None = Field(default=None, max_length=1024,
                                 description='As the If-Match header: *, "3", "0".')


class BatchRequest(RequestBody):
    """Up to 500 commands, each atomic on its own stream as if sent alone; commands on one
    stream take effect in request order; the batch is not all-or-nothing."""

    commands: list[BatchCommand] = Field(max_length=BATCH_MAX_COMMANDS)


def parse_batch(req: func.HttpRequest) -> BatchRequest:
    """The batch envelope, or a :class:`Problem` raised: 413 over 1 MiB or over 500
    commands (whatever else is wrong with it), then as :func:`parse_body`.
    What each command's fields say is left to its single route.

    The body is parsed once when it is good (a large body's second parse, to count its
    commands first, was a few per cent of a batch); only a refused one is read again,
    by :func:`parse_body`, to say what is wrong as every route says it."""
    body = req.get_body() or b""
    if len(body) <= BATCH_MAX_BODY_BYTES and is_json_media_type(req.headers.get("content-type")):
        try:
            return BatchRequest.model_validate_json(body, strict=True)
        except ValidationError as error:
            if any(d["type"] == "too_long" and d["loc"] == ("commands",)
                   for d in error.errors(include_url=False, include_input=False)):
                raise too_many_commands(BATCH_MAX_COMMANDS) from None
    return parse_body(req, BatchRequest, limit=BATCH_MAX_BODY_BYTES)


# -------------------------------------------------------------------- parsing

M = TypeVar("M", bound=BaseModel)


class CommandRequest(Protocol):
    """What a stock-write route's parse step reads of its request: the route parameters,
    the headers (names in lower case) and the body. A ``func.HttpRequest`` is one; a
    batch's command is read as one (``functions.batch.BatchCommandRequest``) without
    building an HTTP request, so both go through the same parse step."""

    @property
    def route_params(self) -> Mapping[str, str]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def get_body(self) -> bytes: ...


def parse_body(req: CommandRequest, model: type[M], *, required: bool = True,
               limit: int = MAX_BODY_BYTES) -> M:
    """The request's JSON body as ``model``, or a :class:`Problem` raised.

    413 over ``limit`` (``MAX_BODY_BYTES`` unless the route has its own); an empty body
    is ``model()`` when not ``required``, else 400; 415 unless the Content-Type is JSON;
    400 for malformed JSON; 422 naming every invalid field.
    """
    body = req.get_body() or b""
    if len(body) > limit:
        raise payload_too_large(limit)
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


def parse_if_match(value: str | None) -> ExpectedVersion | None:
    """The expectation of an ``If-Match`` value (None when absent): ``*`` (the stream
    exists) or a comma-separated list of quoted stream versions (``"0"``: it does not).
    Anything else, weak tags included (RFC 9110 compares If-Match strongly, and our tags
    are versions), is a 400 ``malformed-if-match``: a client that sends a condition we
    cannot read must not have its write applied unconditionally."""
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return ExpectedVersion.exists()
    versions: list[int] = []
    for part in text.split(","):
        found = _STREAM_ETAG.match(part.strip())
        if found is None:
            raise malformed_if_match(value)
        versions.append(int(found.group(1)))
    return ExpectedVersion.at(*versions)


def if_match(req: CommandRequest) -> ExpectedVersion | None:
    """The request's ``If-Match`` expectation (see :func:`parse_if_match`)."""
    return parse_if_match(req.headers.get("if-match"))


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
