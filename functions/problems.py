"""RFC 9457 problem documents: the one place that turns a refusal into an HTTP answer.

Every error the API gives is ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; field validation adds ``errors`` (a list naming each field),
stock conflicts add ``available`` (and ``reservable``). A problem ``type`` is
``urn:stockstream:problems:<code>``, where ``<code>`` is the stable code of a domain
refusal (``domain.errors``) or one of the protocol codes below. Clients may switch on the
type; the title and detail are for people and may change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from application.holds import HoldConflict, HoldDismissed, HoldResolved, UnknownHold
from application.ports import ConcurrencyConflict, StoreUnavailable
from domain.errors import (
    CountAlreadyRecorded,
    DomainError,
    FulfilmentConflict,
    IdempotencyKeyReused,
    IncomingConflict,
    InsufficientOnHand,
    InsufficientStock,
    InvalidIdentifier,
    InvalidQuantity,
    InvalidRequest,
    OrderClosed,
    OrderConflict,
    OrderInProgress,
    PreconditionFailed,
    ReservationClosed,
    TransferConflict,
    TransferStatusConflict,
    UnknownGroup,
    UnknownOrder,
    UnknownReservation,
    UnknownTransfer,
)
from functions.responses import Answer

ECHO_LIMIT = 256
"""Characters of a client's value (a path, a header, a field name) a problem repeats."""

PROBLEM_TYPE_PREFIX = "urn:stockstream:problems:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 1
"""What a 503 asks a client to wait before retrying: store hiccups clear in about that."""


def problem_type(code: str) -> str:
    """The problem ``type`` URI of a stable refusal code."""
    return f"{PROBLEM_TYPE_PREFIX}{code}"


@dataclass(frozen=True)
class FieldError:
    """One invalid field: where it is (a JSON-pointer-like path) and what is wrong."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": echo(self.field), "message": echo(self.message, 2 * ECHO_LIMIT)}


@dataclass(eq=False)
class Problem(Exception):
    """An HTTP refusal. Raised anywhere in a request's handling, answered by ``response``."""

    status: int
    code: str
    title: str
    detail: str
    errors: tuple[FieldError, ...] = ()
    extensions: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": problem_type(self.code),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [e.to_json() for e in self.errors]
        body.update(self.extensions)
        return body

    def answer(self) -> Answer:
        """:meth:`response` as an :class:`~functions.responses.Answer` (the batch's)."""
        return Answer(self.status, json.dumps(self.to_json()).encode(), dict(self.headers),
                      PROBLEM_CONTENT_TYPE)

    def response(self) -> func.HttpResponse:
        return func.HttpResponse(
            json.dumps(self.to_json()),
            status_code=self.status,
            headers=dict(self.headers),
            mimetype=PROBLEM_CONTENT_TYPE,
            charset="utf-8",
        )


# ------------------------------------------------------------ protocol problems


def malformed_json(detail: str) -> Problem:
    """The body is not JSON, or a required body is empty: nothing ran."""
    return Problem(400, "malformed-json", "Malformed JSON", detail)


def malformed_request(detail: str) -> Problem:
    """A request the HTTP parser refused (a bad request line, a forbidden byte in a header):
    nothing was routed, so nothing ran."""
    return Problem(400, "malformed-request", "Malformed request", detail)


def unauthorized() -> Problem:
    """Keys are configured and the request has none that is valid (header or ``code``)."""
    return Problem(
        401, "unauthorized", "Unauthorized",
        "a valid x-functions-key header is required",
        headers={"WWW-Authenticate": 'ApiKey header="x-functions-key"'},
    )


def admin_key_required() -> Problem:
    """A function-level key on a route whose function is ``AuthLevel.ADMIN`` (as Azure)."""
    return Problem(
        401, "unauthorized", "Unauthorized",
        "this route needs an admin-level key (x-functions-key header or code parameter)",
        headers={"WWW-Authenticate": 'ApiKey header="x-functions-key"'},
    )


def origin_not_allowed(origin: str) -> Problem:
    """A browser request from another site (the host sends no CORS headers either)."""
    return Problem(403, "origin-not-allowed", "Forbidden",
                   f"requests from origin {echo(origin)} are not allowed")


def misdirected_request(host: str | None) -> Problem:
    """The keyless local host was addressed by a name not its own (DNS rebinding)."""
    return Problem(421, "misdirected-request", "Misdirected request",
                   f"this host answers to localhost and its own addresses, not {echo(host)}")


def echo(value: str | None, limit: int = ECHO_LIMIT) -> str:
    """A client-supplied value as a problem document repeats it: at most ``limit``
    characters, an ellipsis marking the cut."""
    text = "nothing" if value is None else value
    return text if len(text) <= limit else text[:limit] + "…"


def not_found(path: str) -> Problem:
    """No route has this path."""
    return Problem(404, "not-found", "Not found", f"no route matches {echo(path)}")


def method_not_allowed(method: str, path: str, allowed: list[str]) -> Problem:
    """The path exists, the method does not (``Allow`` lists the methods)."""
    return Problem(
        405, "method-not-allowed", "Method not allowed",
        f"{echo(method, 32)} is not allowed on {echo(path)}; allowed: {', '.join(allowed)}",
        headers={"Allow": ", ".join(allowed)},
    )


def request_timeout(seconds: float) -> Problem:
    """The body did not arrive whole in time; the request did not run."""
    return Problem(408, "request-timeout", "Request timeout",
                   f"the request body did not arrive within {seconds:g} seconds; "
                   "nothing was recorded")


def malformed_if_match(value: str) -> Problem:
    """An ``If-Match`` that is neither ``*`` nor a list of quoted stream versions."""
    return Problem(400, "malformed-if-match", "Malformed If-Match",
                   f'If-Match must be * or quoted stream versions such as "3"; '
                   f"got {echo(value, 64)}")


def payload_too_large(limit: int) -> Problem:
    """The body is over the limit (64 KiB for a single command)."""
    return Problem(413, "payload-too-large", "Payload too large",
                   f"the request body must be at most {limit} bytes")


def too_many_commands(limit: int) -> Problem:
    """A batch over its command limit: nothing of it ran."""
    return Problem(413, "too-many-commands", "Too many commands",
                   f"a batch carries at most {limit} commands; nothing was recorded")


def unsupported_media_type(content_type: str | None) -> Problem:
    """A state-changing request whose body is not JSON, or has no Content-Type."""
    return Problem(
        415, "unsupported-media-type", "Unsupported media type",
        "the request body must be application/json; got "
        f"{echo(content_type) if content_type else 'no Content-Type'}",
    )


def validation_failed(errors: list[FieldError]) -> Problem:
    """A field is wrong; ``errors`` lists each field and why. Nothing was recorded."""
    fields = ", ".join(sorted({echo(e.field) for e in errors}))
    return Problem(422, "validation-failed", "Invalid request",
                   f"invalid fields: {fields}", errors=tuple(errors))


def pipeline_not_running(what: str) -> Problem:
    """A read model (availability, ops status) on a host whose pipeline is not running."""
    return Problem(
        503, "pipeline-not-running", "Service unavailable",
        f"{what} needs the event pipeline (relay and projections), and the pipeline is "
        "not running in this host",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def unknown_subscription(name: str) -> Problem:
    """A dead-letter replay naming a subscription the topic does not have."""
    return Problem(404, "unknown-subscription", "Not found", f"no subscription named {name!r}")


def internal_error() -> Problem:
    """A bug: the request failed unexpectedly (logged). Never expected."""
    return Problem(500, "internal-error", "Internal error",
                   "the request failed unexpectedly; it has been logged")


# ------------------------------------------------------------ domain and store

_DOMAIN_STATUS: tuple[tuple[type[DomainError], int, str], ...] = (
    (InvalidIdentifier, 422, "Invalid identifier"),
    (InvalidQuantity, 422, "Invalid quantity"),
    (InvalidRequest, 422, "Invalid request"),
    (PreconditionFailed, 412, "Precondition failed"),
    (InsufficientStock, 409, "Insufficient stock"),
    (InsufficientOnHand, 409, "Insufficient on hand"),
    (UnknownReservation, 404, "Unknown reservation"),
    (ReservationClosed, 409, "Reservation closed"),
    (IdempotencyKeyReused, 409, "Idempotency key reused"),
    (CountAlreadyRecorded, 409, "Count already recorded"),
    (FulfilmentConflict, 409, "Fulfilment conflict"),
    (HoldConflict, 409, "Held with other figures"),
    (HoldDismissed, 409, "Hold dismissed"),
    (HoldResolved, 409, "Hold already resolved"),
    (UnknownHold, 404, "Not found"),
    (IncomingConflict, 409, "Incoming entry conflict"),
    (TransferConflict, 409, "Transfer conflict"),
    (TransferStatusConflict, 409, "Not allowed in the transfer's status"),
    (UnknownTransfer, 404, "Unknown transfer"),
    (UnknownOrder, 404, "Unknown order"),
    (UnknownGroup, 404, "Unknown location group"),
    (OrderConflict, 409, "Order conflict"),
    (OrderClosed, 409, "Order closed"),
    (OrderInProgress, 409, "Order in progress"),
)


def domain_status(kind: type[DomainError]) -> tuple[int, str]:
    """The status and title a refusal of ``kind`` is answered with (422 unless listed)."""
    for listed, status, title in _DOMAIN_STATUS:
        if issubclass(kind, listed):
            return status, title
    return 422, "Invalid request"


def from_domain(error: DomainError) -> Problem:
    """The problem of a domain refusal: its code, its status and its details.

    Validation-kind refusals name their field in ``errors``; every other detail of the
    refusal (``available``, ``reservable``, ``order_id``, ...) becomes an extension member.
    """
    status, title = domain_status(type(error))
    details = dict(error.details)
    errors: tuple[FieldError, ...] = ()
    if status == 422:
        name = str(details.pop("field", "request"))
        details.pop("value", None)
        errors = (FieldError(name, error.message),)
    # Domain messages quote the refused value: cap them, since it may be a whole path.
    return Problem(status, error.code, title, echo(error.message, 2 * ECHO_LIMIT),
                   errors=errors, extensions=_json_safe(details))


def from_store(error: StoreUnavailable | ConcurrencyConflict) -> Problem:
    """A store that could not take the command: 503, retry later (and whether it may have
    been recorded: then only an idempotent repeat is safe)."""
    if isinstance(error, ConcurrencyConflict):
        detail = "the stock item is too busy right now; nothing was recorded"
    elif error.maybe_recorded:
        detail = ("the event store did not confirm the write, so it may have been recorded: "
                  "repeat the same request. Reservations, releases, fulfilments and counts "
                  "are idempotent by their ids; receipts and adjustments are when sent with "
                  "an Idempotency-Key")
    else:
        detail = "the event store is unavailable; nothing was recorded"
    return Problem(503, "store-unavailable", "Service unavailable", detail,
                   headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _json_safe(details: dict[str, Any]) -> dict[str, Any]:
    reserved = {"type", "title", "status", "detail", "errors"}
    return {k: _json_value(v) for k, v in details.items() if k not in reserved}


def _json_value(value: Any) -> Any:
    """A detail as JSON: scalars as they are, lists and string-keyed mappings of them
    member by member (an order's short ``lines``), anything else as text."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)
