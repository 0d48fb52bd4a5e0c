"""Reconciliation as functions: count batches, the due-count schedule, holds, and timers.

HTTP routes (problem documents and parsing as in ``functions.http``):

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

Timers (6-field NCRONTAB): the count schedule daily at 05:00 UTC, and projection
reconciliation every hour. Both need the reconciliation store and the view store: SQLite
on the embedded host, Cosmos DB on Azure (``adapters.cosmos.reconciliation``; there the
movement ledger is fed per event by the availability consumer). On a host with neither,
the routes answer 503 and the timers log and return.

The services come from the composition root (``functions.container.reconciliation_services``),
as every other service does; the ``stockstream`` CLI uses the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from adapters.sortable_time import iso_utc
from application.cadence import class_counts
from application.count_files import parse_count_rows
from application.holds import Approval, HeldCount, Hold
from application.ports import StockItemStore
from application.reconciliation import CountResult, SessionResult
from domain.identifiers import require_identifier
from functions import problems
from functions.container import (
    ReconciliationServices,
    ReconciliationUnavailable,
    get_container,
    reconciliation_services,
)
from functions.http import answering_problems, json_response, reconciliation
from functions.requests import Identifier, PositionOut, parse_body, parse_query
from projections.availability import AvailabilityProjection, AvailabilityViews
from projections.repair import ProjectionRepair

log = logging.getLogger("stockstream.reconciliation")

bp = func.Blueprint()  # type: ignore[no-untyped-call]

MAX_BATCH = 500
"""Rows in one HTTP batch (a batch must also fit the 64 KiB body limit); files have none."""

SCHEDULE_TIMER = "0 0 5 * * *"
REPAIR_TIMER = "0 15 * * * *"


# ------------------------------------------------------------------ services


def projection_repair(store: StockItemStore, views: AvailabilityViews) -> ProjectionRepair:
    """Projection reconciliation over ``views``, rebuilding rows from ``store``."""

    def history(sku: str, location: str, after: int, upto: int) -> list[Any]:
        return store.events(sku, location, after=after, limit=upto - after)

    return ProjectionRepair(views, store, AvailabilityProjection(views, history))


def _services() -> ReconciliationServices:
    return reconciliation()


# ------------------------------------------------------------------- models


class CountBatchRequest(BaseModel):
    """A count session over HTTP; each count is judged like a count file's row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: list[Any] = Field(min_length=1, max_length=MAX_BATCH)
    all_or_nothing: bool = False


class DueQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    velocity_class: Literal["A", "B", "C"] | None = Field(default=None, alias="class")
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000
    all: bool = False


class HeldQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Identifier | None = None
    location: Identifier | None = None


def hold_json(hold: Hold) -> dict[str, Any]:
    """A held count or adjustment as JSON: what it would record and why it waits."""
    body: dict[str, Any] = {
        "hold_id": hold.hold_id, "kind": hold.kind, "sku": hold.sku,
        "location": hold.location, "reason": hold.reason, "held_at": iso_utc(hold.held_at),
        "status": hold.status, "resolved_at": iso_utc(hold.resolved_at),
        "applied_delta": hold.applied_delta,
    }
    if isinstance(hold, HeldCount):
        body.update({
            "count_id": hold.count_id, "counted": hold.counted,
            "counted_at": iso_utc(hold.counted_at), "on_hand_at_count": hold.on_hand_at_count,
            "drift_units": hold.drift_units, "drift_percent": hold.drift_percent,
            "session_id": hold.session_id or None})
    else:
        body.update({
            "delta": hold.delta, "adjustment_reason": hold.adjustment_reason,
            "note": hold.note, "idempotency_key": hold.idempotency_key,
            "on_hand_before": hold.on_hand_before, "percent": hold.percent})
    return body


def approval_json(approval: Approval) -> dict[str, Any]:
    """What approving a hold did: ``outcome`` applied (recorded now), unchanged (already
    recorded: a repeat) or rejected (``refusal`` says why; the hold stays pending)."""
    body = {**hold_json(approval.hold), "outcome": approval.outcome,
            "repeated": approval.repeated, "refusal": approval.refusal}
    if approval.result is not None:
        body["position"] = PositionOut.of(approval.result.position_of()).model_dump(
            mode="json")
    return body


def result_json(result: CountResult, position: str = "index") -> dict[str, Any]:
    """One row's outcome as JSON (``position`` names the row's place: index or line)."""
    return {
        position: result.line, "sku": result.sku, "location": result.location,
        "count_id": result.count_id, "outcome": result.outcome, "counted": result.counted,
        "counted_at": iso_utc(result.counted_at), "on_hand_at_count": result.on_hand_at_count,
        "drift_units": result.drift_units, "drift_percent": result.drift_percent,
        "expired_units": result.expired_units, "reason": result.reason,
        "hold_id": result.hold_id,
    }


def session_json(session: SessionResult) -> dict[str, Any]:
    summary = session.summary()
    return {
        "session_id": session.session_id, "applied": summary.applied,
        "unchanged": summary.unchanged, "held": summary.held, "rejected": summary.rejected,
        "skipped": summary.skipped, "applied_none": session.applied_none,
        "results": [result_json(r, session.position) for r in session.results],
    }


# ------------------------------------------------------------------- routes


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def _http(name: str, route: str, methods: list[str],
          auth_level: func.AuthLevel | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        routed = bp.route(route=route, methods=methods, auth_level=auth_level)(
            answering_problems(handler))
        bp.function_name(name)(routed)
        return handler

    return register


@_http("reconcile_counts", "reconciliation/counts", ["POST"])
def reconcile_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Apply a batch of physical counts (see the module docstring)."""
    body = parse_body(req, CountBatchRequest)
    services = _services()
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
    return json_response(session_json(session))


@_http("list_due_counts", "reconciliation/due", ["GET"])
def list_due_counts(req: func.HttpRequest) -> func.HttpResponse:
    """The SKU-locations due for a count now (or, with ``all=true``, every one)."""
    query = parse_query(req, DueQuery)
    services = _services()
    now = get_container().clock.now()
    rows = services.schedule.schedule(now, due_only=not query.all,
                                      velocity_class=query.velocity_class, limit=query.limit)
    return json_response({
        "generated_at": iso_utc(now),
        "cadence_days": services.cadence.every_days,
        "window_days": services.cadence.window_days,
        "by_class": class_counts(rows),
        "due": [{"sku": r.sku, "location": r.location, "velocity_class": r.velocity_class,
                 "units_per_day": round(r.units_per_day, 3),
                 "last_counted_at": iso_utc(r.last_counted_at), "due_at": iso_utc(r.due_at),
                 "overdue": r.overdue} for r in rows],
    })


@_http("list_held_counts", "reconciliation/held", ["GET"])
def list_held_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Counts and adjustments waiting for approval, oldest first."""
    query = parse_query(req, HeldQuery)
    held = _services().gate.holds.matching(None, query.sku, query.location, "pending")
    return json_response([hold_json(h) for h in held])


def _held_target(req: func.HttpRequest) -> tuple[str, str | None, str | None]:
    target = require_identifier("hold_id", req.route_params.get("hold_id"))
    query = parse_query(req, HeldQuery)
    return target, query.sku, query.location


@_http("approve_held_counts", "reconciliation/held/{hold_id}/approval", ["POST"],
       func.AuthLevel.ADMIN)
def approve_held_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Apply a held count or adjustment (by hold id, or a count id's pending holds); 404
    ``no-held-count`` if nothing matches, 409 ``hold-resolved`` if it was dismissed."""
    target, sku, location = _held_target(req)
    approvals = _services().gate.approve_target(target, sku, location)
    return json_response({"approved": [approval_json(a) for a in approvals]})


@_http("dismiss_held_counts", "reconciliation/held/{hold_id}/dismissal", ["POST"],
       func.AuthLevel.ADMIN)
def dismiss_held_counts(req: func.HttpRequest) -> func.HttpResponse:
    """Drop a held count or adjustment without recording anything; 404 ``no-held-count``
    if nothing matches, 409 ``hold-resolved`` if it was approved."""
    target, sku, location = _held_target(req)
    dismissed = _services().gate.dismiss_target(target, sku, location)
    return json_response({"dismissed": [hold_json(h) for h in dismissed]})


# ------------------------------------------------------------------- timers


@bp.function_name("schedule_counts")
@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE_TIMER, run_on_startup=False)
def schedule_counts(timer: func.TimerRequest) -> None:
    """Daily: bring the movement ledger up to date and log the counts due per class."""
    try:
        services = reconciliation_services(get_container())
    except ReconciliationUnavailable as error:
        log.warning("count schedule skipped: %s", error)
        return
    rows = services.schedule.schedule(get_container().clock.now())
    totals = class_counts(rows)
    log.info("counts due: %d (A=%d B=%d C=%d)", len(rows), totals["A"], totals["B"],
             totals["C"], extra={"counts_due": len(rows), **{f"due_{k}": v
                                                             for k, v in totals.items()}})


@bp.function_name("reconcile_projection")
@bp.timer_trigger(arg_name="timer", schedule=REPAIR_TIMER, run_on_startup=False)
def reconcile_projection(timer: func.TimerRequest) -> None:
    """Hourly: compare the availability view with the streams and repair mismatches."""
    container = get_container()
    views = container.availability
    if not isinstance(views, AvailabilityViews):
        log.warning("projection reconciliation skipped: no view store on this host")
        return
    report = projection_repair(container.store, views).run()
    for mismatch in report.mismatches:
        log.warning("projection row %s|%s was %s: row %s, stream %s", mismatch.sku,
                    mismatch.location, mismatch.kind, mismatch.row, mismatch.stream)
    log.info("projection reconciliation: %d rows checked, %d mismatched, %d repaired",
             report.checked, len(report.mismatches), report.repaired)
