"""Reconciliation as functions: count batches, the due-count schedule, holds, and timers.

HTTP routes (declared, parsed and answered as every HTTP function: ``functions.http_routes``,
``functions.requests``, ``functions.responses``):

* ``POST /api/reconciliation/counts`` — a count session over HTTP: ``{counts: [...],
  all_or_nothing?}``; rows are judged one by one exactly as a count file's rows (by index).
  200 with every row's outcome; with ``all_or_nothing`` and a bad row, 422 naming each
  bad row and nothing applied. Hold thresholds come from the settings only: a client
  cannot raise them to skip approval.
* ``GET /api/reconciliation/due`` — the schedule of due counts (``class``, ``limit``,
  ``all``).
* ``GET /api/reconciliation/held`` and ``POST /api/reconciliation/held/{hold_id}/approval``
  or ``/dismissal`` (admin key) — counts and adjustments held for approval, whatever route
  they came by. The path names a hold id; a count id (as before hold ids) also works and
  approves or dismisses every pending hold of that count id (``sku``, ``location`` narrow
  it). Approval applies the held command through the ordinary command service, once.

Their bodies are the models of ``functions.responses`` read from the application's
results. They have always been written with ``json.dumps``'s separators (``", "``,
``": "``) and are kept byte for byte (:func:`_answer`); the stock routes write pydantic's
compact JSON.

Timers (6-field NCRONTAB): the count schedule daily at 05:00 UTC, and projection
reconciliation every hour. Both need the reconciliation store and the view store: SQLite
on the embedded host, Cosmos DB on Azure (``adapters.cosmos.reconciliation``; there the
movement ledger is fed per event by the availability consumer). On a host with neither,
the routes answer 503 and the timers log and return.

The services come from the composition root (``composition``, through
``functions.container``), as every other service does; the ``stockstream`` CLI uses the same.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from application.cadence import VelocityClass, class_counts
from application.count_files import COUNT_FIELDS, parse_count_rows
from composition import ReconciliationUnavailable
from domain.identifiers import IDENTIFIER_PATTERN, require_identifier
from domain.stock_item import MAX_QUANTITY
from functions import problems
from functions.container import get_services
from functions.http_answers import json_response, require_reconciliation
from functions.http_routes import HttpBlueprint
from functions.requests import Identifier, RequestBody, parse_body, parse_query
from functions.responses import (
    ApprovedOut,
    CountSessionOut,
    DismissedOut,
    DueCountsOut,
    HoldsOut,
    Results,
)

log = logging.getLogger("stockstream.reconciliation")

bp = HttpBlueprint()

MAX_BATCH = 500
"""Rows in one HTTP batch (a batch must also fit the 64 KiB body limit); files have none."""

SCHEDULE_TIMER = "0 0 5 * * *"
REPAIR_TIMER = "0 15 * * * *"


# ------------------------------------------------------------------- models


COUNT_ROW_SCHEMA = {
    "type": "object",
    "description": "One count, judged on its own like a count file's row: a bad row is "
                   "refused in the answer (by index), not the batch.",
    "properties": {
        "sku": {"type": "string", "pattern": IDENTIFIER_PATTERN},
        "location": {"type": "string", "pattern": IDENTIFIER_PATTERN},
        "counted": {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY},
        "counted_at": {"type": "string", "format": "date-time"},
        "count_id": {"type": "string", "pattern": IDENTIFIER_PATTERN},
    },
    "required": list(COUNT_FIELDS),
    "additionalProperties": False,
}
"""What the document says a row is; rows are still taken as any JSON value and judged by
``application.reconciliation.parse_count_rows``."""


class CountBatchRequest(RequestBody):
    """A count session over HTTP; each count is judged like a count file's row."""

    counts: list[Annotated[Any, WithJsonSchema(COUNT_ROW_SCHEMA)]] = Field(
        min_length=1, max_length=MAX_BATCH)
    all_or_nothing: bool = False


class DueQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    velocity_class: VelocityClass | None = Field(default=None, alias="class")
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000
    all: bool = False


class HeldQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Identifier | None = None
    location: Identifier | None = None


# ------------------------------------------------------------------- routes


def _answer(body: BaseModel) -> func.HttpResponse:
    """``body`` as these routes have always written it: ``json.dumps`` of its JSON form."""
    return json_response(body.model_dump(mode="json"))


@bp.http("reconcile_counts", "reconciliation/counts", ["POST"],
         summary="Apply a batch of physical counts; each row is judged like a count file's "
                 "row (by index), and every row's outcome is answered. With "
                 "`all_or_nothing` and a bad row: 422 `counts-rejected` naming each bad row, "
                 "nothing applied. Hold thresholds come from the settings only.",
         request=CountBatchRequest, responses={200: CountSessionOut}, problems=(422, 503))
def reconcile_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Apply a batch of physical counts (see the module docstring)."""
    body = parse_body(req, CountBatchRequest)
    services = require_reconciliation()
    session = services.reconciler.reconcile(parse_count_rows(body.counts, "http"),
                                            all_or_nothing=body.all_or_nothing)
    if session.applied_none:
        refused = session.with_outcome("rejected")
        raise problems.Problem(
            422, "counts-rejected", "Counts rejected",
            f"{len(refused)} count(s) rejected; none applied (all_or_nothing)",
            errors=tuple(problems.FieldError(f"counts.{r.line}", r.reason or "rejected")
                         for r in refused),
            extensions={"session_id": session.session_id})
    return _answer(CountSessionOut.of(Results(session, session.summary())))


@bp.http("list_due_counts", "reconciliation/due", ["GET"],
         summary="The SKU-locations due for a count now (with `all=true`, every one), by "
                 "velocity class, with the cadence in force.",
         query=DueQuery, responses={200: DueCountsOut}, problems=(422, 503))
def list_due_counts(req: func.HttpRequest) -> func.HttpResponse:
    """The SKU-locations due for a count now (or, with ``all=true``, every one)."""
    query = parse_query(req, DueQuery)
    services = require_reconciliation()
    now = get_services().clock.now()
    rows = services.schedule.schedule(now, due_only=not query.all,
                                      velocity_class=query.velocity_class, limit=query.limit)
    return _answer(DueCountsOut.of({
        "generated_at": now, "cadence_days": services.cadence.every_days,
        "window_days": services.cadence.window_days, "by_class": class_counts(rows),
        "due": rows}))


@bp.http("list_held_counts", "reconciliation/held", ["GET"],
         summary="Counts and adjustments waiting for approval, oldest first (`sku`, "
                 "`location` narrow the list).",
         query=HeldQuery, responses={200: HoldsOut}, problems=(422, 503))
def list_held_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Counts and adjustments waiting for approval, oldest first."""
    query = parse_query(req, HeldQuery)
    holds = require_reconciliation().gate.holds
    return _answer(HoldsOut.model_validate(
        holds.matching(None, query.sku, query.location, "pending"), from_attributes=True))


def _held_target(req: func.HttpRequest) -> tuple[str, str | None, str | None]:
    target = require_identifier("hold_id", req.route_params.get("hold_id"))
    query = parse_query(req, HeldQuery)
    return target, query.sku, query.location


@bp.http("approve_held_counts", "reconciliation/held/{hold_id}/approval", ["POST"],
         auth_level=func.AuthLevel.ADMIN,
         summary="Apply a held count or adjustment through the ordinary command service, "
                 "once: by hold id, or every pending hold of a count id (`sku`, `location` "
                 "narrow it). 404 `no-held-count` if nothing matches, 409 `hold-resolved` "
                 "if it was dismissed.",
         query=HeldQuery, responses={200: ApprovedOut}, problems=(404, 409, 422, 503))
def approve_held_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Apply a held count or adjustment (by hold id, or a count id's pending holds); 404
    ``no-held-count`` if nothing matches, 409 ``hold-resolved`` if it was dismissed."""
    target, sku, location = _held_target(req)
    approvals = require_reconciliation().gate.approve_target(target, sku, location)
    return _answer(ApprovedOut.of({"approved": [Results(a, a.hold) for a in approvals]}))


@bp.http("dismiss_held_counts", "reconciliation/held/{hold_id}/dismissal", ["POST"],
         auth_level=func.AuthLevel.ADMIN,
         summary="Drop a held count or adjustment without recording anything (by hold id, "
                 "or every pending hold of a count id). 404 `no-held-count` if nothing "
                 "matches, 409 `hold-resolved` if it was approved.",
         query=HeldQuery, responses={200: DismissedOut}, problems=(404, 409, 422, 503))
def dismiss_held_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Drop a held count or adjustment without recording anything; 404 ``no-held-count``
    if nothing matches, 409 ``hold-resolved`` if it was approved."""
    target, sku, location = _held_target(req)
    dismissed = require_reconciliation().gate.dismiss_target(target, sku, location)
    return _answer(DismissedOut.of({"dismissed": dismissed}))


# ------------------------------------------------------------------- timers


@bp.function_name("schedule_counts")
@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE_TIMER, run_on_startup=False)
def schedule_counts(timer: func.TimerRequest) -> None:
    """Daily: bring the movement ledger up to date and log the counts due per class."""
    try:
        services = get_services().reconciliation.get()
    except ReconciliationUnavailable as error:
        log.warning("count schedule skipped: %s", error)
        return
    rows = services.schedule.schedule(get_services().clock.now())
    totals = class_counts(rows)
    log.info("counts due: %d (A=%d B=%d C=%d)", len(rows), totals["A"], totals["B"],
             totals["C"], extra={"counts_due": len(rows), **{f"due_{k}": v
                                                             for k, v in totals.items()}})


@bp.function_name("reconcile_projection")
@bp.timer_trigger(arg_name="timer", schedule=REPAIR_TIMER, run_on_startup=False)
def reconcile_projection(timer: func.TimerRequest) -> None:
    """Hourly: compare the availability view with the streams and repair mismatches."""
    repair = get_services().repair
    if repair is None:
        log.warning("projection reconciliation skipped: no view store on this host")
        return
    report = repair.run()
    for mismatch in report.mismatches:
        log.warning("projection row %s|%s was %s: row %s, stream %s", mismatch.sku,
                    mismatch.location, mismatch.kind, mismatch.row, mismatch.stream)
    log.info("projection reconciliation: %d rows checked, %d mismatched, %d repaired",
             report.checked, len(report.mismatches), report.repaired)
