"""The HTTP API's answers as pydantic models: the one mapping from application results to
HTTP bodies.

Each model is read from the application's result itself (:meth:`ResponseBody.of`:
``model_validate`` from attributes), so a field is declared once, here, and never copied
field by field. The same models give ``openapi.json`` its response schemas
(``functions.http_openapi``), so the document says what the code writes.

Where a body is not one result but several read together (a count session and its
summary, an approval and its hold), :class:`Results` reads their attributes as one.
Where the wire form is not pydantic's default, the field's type says so: ``Utc`` moments
are converted to UTC, ``IsoUtc`` moments are written by ``contracts.times.iso_utc``
(``+00:00``, the reconciliation answers' form since they were first written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Self

import azure.functions as func
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    WithJsonSchema,
)

from application.cadence import VelocityClass
from application.holds import HeldStatus, HoldKind
from application.reconciliation import Outcome
from contracts.times import iso_utc


class Results:
    """The attributes of several results read as one object (the first that has a name
    wins), so a body joining them is still validated from the results themselves."""

    def __init__(self, *results: object) -> None:
        self._results = results

    def __getattr__(self, name: str) -> Any:
        for result in self._results:
            if hasattr(result, name):
                return getattr(result, name)
        raise AttributeError(name)


class ResponseBody(BaseModel):
    """Base of every answer: immutable, and read from a result's attributes."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    @classmethod
    def of(cls, result: object) -> Self:
        """The body of an application result (a dataclass, an event, :class:`Results`),
        or of a mapping whose values are results (a body composed of several)."""
        return cls.model_validate(result, from_attributes=True)


JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Answer:
    """A route's answer before it is a ``func.HttpResponse``: its status, its JSON body as
    bytes and its headers. A single route answers :meth:`response`; the batch route
    places ``body`` in its results as it is, so a command's body in a batch is the single
    route's, byte for byte, with no response object built and read back per command."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    media_type: str = JSON_CONTENT_TYPE

    @classmethod
    def of(cls, body: BaseModel, status: int = 200,
           headers: Mapping[str, str] | None = None) -> Answer:
        """``body`` as pydantic writes it (what ``functions.http_answers.json_response``
        writes)."""
        return cls(status, body.model_dump_json().encode(), headers or {})

    def response(self) -> func.HttpResponse:
        return func.HttpResponse(self.body, status_code=self.status, headers=dict(self.headers),
                                 mimetype=self.media_type, charset="utf-8")


Utc = Annotated[datetime, AfterValidator(lambda moment: moment.astimezone(UTC))]
"""A moment written in UTC (``...Z``)."""

IsoUtc = Annotated[
    datetime,
    PlainSerializer(iso_utc, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
"""A moment written as ``contracts.times.iso_utc`` does (``...+00:00``)."""


# ------------------------------------------- stock states and incoming


class HeldStockOut(ResponseBody):
    """On-hand units that are not for sale, by state."""

    damaged: int
    quality_control: int


class IncomingOut(ResponseBody):
    """An expected receipt: ``quantity`` units under ``reference`` due at ``expected_at``."""

    reference: str
    quantity: int
    expected_at: Utc


class PromiseDayOut(ResponseBody):
    date: date
    available_to_promise: int


class AvailableToPromiseOut(ResponseBody):
    """Available to promise per UTC day from the day of ``as_of`` (not clamped at 0)."""

    sku: str
    location: str
    as_of: Utc
    days: list[PromiseDayOut]


# ------------------------------------------------------------------ positions


class ReservationOut(ResponseBody):
    order_id: str
    quantity: int
    channel: str
    expires_at: Utc | None


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
    sellable: int = Field(description="On hand less held: the stock that may be sold.")
    held: HeldStockOut = Field(description="On hand not for sale, by state.")
    incoming: list[IncomingOut] = Field(
        description="Expected receipts, by expected_at then reference.")
    incoming_total: int = Field(ge=0, description="Units expected, over every entry.")


class CorrectionOut(ResponseBody):
    """What a count changed: on hand went from ``previous_on_hand`` by ``delta``."""

    count_id: str
    counted: int
    previous_on_hand: int
    delta: int
    counted_at: datetime
    state: str = Field(description="The state counted (the figures are that state's).")


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

    held: HoldOut = Field(validation_alias="hold")
    position: PositionOut


# ------------------------------------------------------- projections and ops


class LocationAvailabilityOut(ResponseBody):
    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime
    sellable: int
    held: HeldStockOut
    incoming_total: int
    in_transit: int = Field(description="The part of incoming_total that transfers bring.")


class AvailabilityOut(ResponseBody):
    """A SKU across locations, from the availability projection (eventually consistent)."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    locations: list[LocationAvailabilityOut]
    sellable: int
    held: HeldStockOut
    incoming_total: int
    in_transit: int = Field(description="The part of incoming_total that transfers bring.")


class OutboxOut(ResponseBody):
    depth: int | None = Field(description="Committed events not yet published; null when "
                              "this host cannot measure it (`unmeasured` says why).")
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


class UnmeasuredOut(ResponseBody):
    field: str = Field(description="Where the figure is, e.g. `outbox.depth` or "
                       "`subscriptions[availability].lag_seconds`.")
    reason: str


class OpsStatusOut(ResponseBody):
    """The pipeline's health: outbox, subscriptions and projections."""

    outbox: OutboxOut
    subscriptions: list[SubscriptionOut]
    projections: list[ProjectionOut]
    unmeasured: list[UnmeasuredOut] = Field(
        description="Every figure that reads null because this host cannot measure it, "
        "and why; a figure it cannot measure is never reported as 0.")


class ReplayOut(ResponseBody):
    replayed: int


# ------------------------------------------------------------- reconciliation


class BatchResultOut(ResponseBody):
    """One command of a batch: its index in the request, and exactly the status and body
    its single route answers (a position, a count's body, a held answer, a problem)."""

    index: int
    status: int
    body: dict[str, Any]


class BatchOut(ResponseBody):
    """A batch's answers, in request order."""

    results: list[BatchResultOut]


class CountResultOut(ResponseBody):
    """One row of a count session: what happened to it and the drift it showed."""

    index: int = Field(validation_alias="line", description="The row's place in `counts`.")
    sku: str | None
    location: str | None
    count_id: str | None
    outcome: Outcome
    counted: int | None
    counted_at: IsoUtc | None
    on_hand_at_count: int | None
    drift_units: int | None
    drift_percent: float | None
    expired_units: int
    reason: str | None
    hold_id: str | None


class CountSessionOut(ResponseBody):
    """A count session over HTTP: how many rows went which way, and every row's result.
    Read from ``Results(session, session.summary())``."""

    session_id: str
    applied: int
    unchanged: int
    held: int
    rejected: int
    skipped: int
    applied_none: bool
    results: list[CountResultOut]


class DueCountOut(ResponseBody):
    sku: str
    location: str
    velocity_class: VelocityClass
    units_per_day: Annotated[float, PlainSerializer(lambda units: round(units, 3),
                                                    return_type=float)]
    last_counted_at: IsoUtc | None
    due_at: IsoUtc
    overdue: bool


class DueCountsOut(ResponseBody):
    """The count schedule at ``generated_at``: the cadence, how many are due per class,
    and the SKU-locations due."""

    generated_at: IsoUtc
    cadence_days: dict[str, int]
    window_days: int
    by_class: dict[str, int]
    due: list[DueCountOut]


class HoldRecordOut(ResponseBody):
    """A held count or adjustment: what it would record and why it waits."""

    hold_id: str
    kind: HoldKind
    sku: str
    location: str
    reason: str
    held_at: IsoUtc
    status: HeldStatus
    resolved_at: IsoUtc | None
    applied_delta: int | None
    state: str = Field(description="The stock state the command concerns.")


class CountHoldOut(HoldRecordOut):
    kind: Literal["count"]
    count_id: str
    counted: int
    counted_at: IsoUtc
    on_hand_at_count: int
    drift_units: int
    drift_percent: float | None
    session_id: Annotated[str | None, BeforeValidator(lambda session: session or None)]


class AdjustmentHoldOut(HoldRecordOut):
    kind: Literal["adjustment"]
    delta: int
    adjustment_reason: str
    note: str | None
    idempotency_key: str | None
    on_hand_before: int
    percent: float | None


HoldRecord = Annotated[CountHoldOut | AdjustmentHoldOut, Field(discriminator="kind")]


class HoldsOut(RootModel[list[HoldRecord]]):
    """Held counts and adjustments, oldest first."""

    model_config = ConfigDict(frozen=True, from_attributes=True)


def _position_after(result: Any) -> Any:
    return None if result is None else result.position_of()


class ApprovalOut(ResponseBody):
    """What approving a hold did: ``outcome`` applied (recorded now), unchanged (already
    recorded: a repeat) or rejected (``refusal`` says why; the hold stays pending).
    Read from ``Results(approval, approval.hold)``, after the hold's own fields."""

    outcome: str = Field(description="applied, unchanged or rejected.")
    repeated: bool
    refusal: str | None
    position: Annotated[PositionOut | None, BeforeValidator(_position_after)] = Field(
        default=None, validation_alias="result", exclude_if=lambda position: position is None,
        description="The position after the command; absent when nothing was applied.")


class CountApprovalOut(ApprovalOut, CountHoldOut):
    pass


class AdjustmentApprovalOut(ApprovalOut, AdjustmentHoldOut):
    pass


class ApprovedOut(ResponseBody):
    approved: list[Annotated[CountApprovalOut | AdjustmentApprovalOut,
                             Field(discriminator="kind")]]


class DismissedOut(ResponseBody):
    dismissed: list[HoldRecord]


# ------------------------------------------------------------------ problems


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
