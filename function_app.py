"""The Azure Functions app: the only entry point in Azure (Python v2 programming model).

Functions are grouped in blueprints under ``functions/``; this file only creates the app
and registers them. Keys are required by default (``AuthLevel.FUNCTION``): channels send
``x-functions-key``. The embedded host (``python -m local``) reads this same app's route
table, so local and Azure routes are one list.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.http import bp as http_api
from functions.pipeline import bp as pipeline
from functions.reconciliation import bp as reconciliation


class StockstreamApp(func.FunctionApp):
    """A ``FunctionApp`` whose ``get_functions()`` may be called more than once.

    azure-functions 1.26 remembers every name it returned and refuses a second call as
    duplicate names. The Functions worker calls it once, but the embedded host and the
    tests read the route table too; the built list is kept (rebuilt if functions were
    registered since) and a copy returned each time.
    """

    _built: tuple[int, list[Any]] | None = None

    def get_functions(self) -> list[Any]:
        builders = len(self._function_builders)
        if self._built is None or self._built[0] != builders:
            self.functions_bindings = {}
            self._built = (builders, super().get_functions())
        return list(self._built[1])


app = StockstreamApp(http_auth_level=func.AuthLevel.FUNCTION)

# Blueprints, one per concern. Add new ones here, one line each.
app.register_functions(http_api)  # channel HTTP API (DESIGN §5)
app.register_functions(pipeline)  # relay, projection consumer, expiry and metrics timers
app.register_functions(reconciliation)  # count sessions, due counts, holds, repair timers
