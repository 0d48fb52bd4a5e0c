"""The Azure Functions app: the only entry point in Azure (Python v2 programming model).

Functions are grouped in blueprints under ``functions/``; this file only creates the app
and registers them. Keys are required by default (``AuthLevel.FUNCTION``): channels send
``x-functions-key``. The embedded host (``python -m local``) reads this same app's route
table, so local and Azure routes are one list.
"""

from __future__ import annotations

import azure.functions as func

from functions.http import bp as http_api
from functions.pipeline import bp as pipeline
from functions.reconciliation import bp as reconciliation

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Blueprints, one per concern. Add new ones here, one line each.
app.register_functions(http_api)  # channel HTTP API (DESIGN §5)
app.register_functions(pipeline)  # relay, projection consumer, expiry and metrics timers
app.register_functions(reconciliation)  # count sessions, due counts, holds, repair timers
