"""Drift reports over HTTP: the latest reports of count sessions, and their charts.

``stockstream reconcile`` writes each session's report (``reports.drift``) into the data
directory's ``reports`` folder (``composition.files.EmbeddedFiles.reports``), the CLI's
default for ``--report-dir``. These routes read that folder; a report written elsewhere
(another ``--report-dir``) is not listed. In Azure nothing writes there, so the list is
empty: reports live where the CLI ran.

* ``GET /api/reports/drift?limit=N`` — the N (default 5, at most 50) most recently written
  reports, newest first, each with its totals, largest drifts, held rows and the names and
  URLs of its charts.
* ``GET /api/reports/drift/charts/{chart}`` — one chart (PNG) by the name a report lists.

Both are function-level routes (keys as every other route) declared with ``HttpBlueprint.http``, so
they are in ``openapi.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from composition.files import EmbeddedFiles
from domain.identifiers import require_identifier
from functions import problems
from functions.container import get_services
from functions.http_answers import json_response
from functions.http_routes import ROUTE_PREFIX, HttpBlueprint
from functions.requests import parse_query
from functions.responses import ResponseBody
from reports.drift import chart_file, latest_reports

bp = HttpBlueprint()

CHARTS_PATH = f"/{ROUTE_PREFIX}/reports/drift/charts"


class DriftReportsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=50)] = 5


class DriftTotalsOut(ResponseBody):
    rows: int = 0
    applied: int = 0
    unchanged: int = 0
    held: int = 0
    rejected: int = 0
    skipped: int = 0
    with_drift: int = 0
    abs_drift_units: int = 0
    net_drift_units: int = 0
    mean_abs_drift_percent: float | None = None
    max_abs_drift_units: int = 0
    expired_units: int = 0


class DriftRowOut(ResponseBody):
    """One count of a session, as the report's CSV has it."""

    sku: str | None = None
    location: str | None = None
    count_id: str | None = None
    outcome: str
    counted: int | None = None
    counted_at: str | None = None
    on_hand_at_count: int | None = None
    drift_units: int | None = None
    drift_percent: float | None = None
    expired_units: int = 0
    reason: str | None = None
    hold_id: str | None = None


class DriftChartOut(ResponseBody):
    name: str
    url: str = Field(description="Where the chart is served (a PNG, same keys as this route).")


class DriftReportOut(ResponseBody):
    session_id: str
    source: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    all_or_nothing: bool = False
    applied_none: bool = False
    totals: DriftTotalsOut
    top_drifts: list[DriftRowOut] = Field(description="The largest drifts, largest first.")
    held: list[DriftRowOut] = Field(description="Counts waiting for approval.")
    charts: list[DriftChartOut]
    charts_skipped: str | None = None


class DriftReportsOut(ResponseBody):
    reports: list[DriftReportOut] = Field(description="Newest first.")


def _report(document: dict[str, Any]) -> DriftReportOut:
    charts = [c for c in document.get("charts", []) if isinstance(c, str)]
    return DriftReportOut.model_validate({
        **{k: document.get(k) for k in ("session_id", "source", "started_at", "finished_at",
                                        "charts_skipped")},
        "all_or_nothing": bool(document.get("all_or_nothing")),
        "applied_none": bool(document.get("applied_none")),
        "totals": document.get("totals") or {},
        "top_drifts": document.get("top_drifts") or [],
        "held": document.get("held") or [],
        "charts": [{"name": c, "url": f"{CHARTS_PATH}/{c}"} for c in charts],
    })


def _directory() -> Path:
    return EmbeddedFiles(get_services().settings.data_dir).reports


@bp.http("list_drift_reports", "reports/drift", ["GET"],
        summary="The latest drift reports of count sessions (those `stockstream reconcile` "
                "wrote into the data directory), newest first, with their charts' URLs.",
        query=DriftReportsQuery, responses={200: DriftReportsOut}, problems=(422,))
def list_drift_reports(req: func.HttpRequest) -> func.HttpResponse:
    query = parse_query(req, DriftReportsQuery)
    documents = latest_reports(_directory(), query.limit)
    return json_response(DriftReportsOut(reports=[_report(d) for d in documents]))


@bp.http("get_drift_chart", "reports/drift/charts/{chart}", ["GET"],
        summary="A drift report's chart (PNG), by the name its report lists.",
        responses={200: "PNG", 304: None}, problems=(404, 422), headers=("ETag",))
def get_drift_chart(req: func.HttpRequest) -> func.HttpResponse:
    name = require_identifier("chart", req.route_params.get("chart"))
    path = chart_file(_directory(), name)
    if path is None:
        raise problems.Problem(404, "not-found", "Not found", f"no drift chart named {name}")
    try:
        body = path.read_bytes()
    except OSError:
        raise problems.Problem(404, "not-found", "Not found",
                               f"no drift chart named {name}") from None
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in [t.strip() for t in (req.headers.get("if-none-match") or "").split(",")]:
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(body, status_code=200, mimetype="image/png", headers={
        **headers, "Content-Type": "image/png", "X-Content-Type-Options": "nosniff"})
