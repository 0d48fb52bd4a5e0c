"""Every blueprint of the Functions app, in registration order, and the route table their
HTTP functions make.

``function_app`` registers these, then the API's own routes (``functions.http_openapi``:
the OpenAPI document and the catch-all answering 404/405), which read the route table
from here; nothing here imports ``function_app``. A new blueprint is one line in
:data:`BLUEPRINTS`; its HTTP functions are declared with ``HttpBlueprint.http``, so they
reach the document, the catch-all and the fault suite's fuzzing by themselves.
"""

from __future__ import annotations

import azure.functions as func

from functions.console import bp as console
from functions.drift_reports import bp as drift_reports
from functions.http import bp as channel_api
from functions.http_routes import HttpBlueprint, Route
from functions.orders import bp as orders
from functions.pipeline import bp as pipeline
from functions.reconciliation import bp as reconciliation
from functions.transfers import bp as transfers

BLUEPRINTS: tuple[func.Blueprint, ...] = (
    channel_api,  # channel HTTP API
    orders,  # orders and location groups, the order sweep's timer
    transfers,  # transfers between locations, the transfer sweep's timer
    pipeline,  # relay, projection consumer, expiry and metrics timers
    reconciliation,  # count sessions, due counts, holds, repair timers
    drift_reports,  # the drift reports of count sessions, and their charts
    console,  # the operations console's static files (not in openapi.json)
)


def blueprint_routes() -> list[Route]:
    """The HTTP routes the blueprints declare, in registration order."""
    return [route for blueprint in BLUEPRINTS if isinstance(blueprint, HttpBlueprint)
            for route in blueprint.routes]
