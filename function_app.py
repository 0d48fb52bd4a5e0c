"""The Azure Functions app: the only entry point in Azure (Python v2 programming model).

Functions are grouped in blueprints under ``functions/`` (listed in
``functions.blueprints``); this file only creates the app and registers them, then the
API's own routes (``functions.http_openapi``: ``openapi.json`` and the catch-all 404/405),
last and once. Keys are required by default (``AuthLevel.FUNCTION``): channels send
``x-functions-key``. The embedded host (``python -m local``) reads this same app's route
table, so local and Azure routes are one list.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions import http_openapi
from functions.blueprints import BLUEPRINTS


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

# Blueprints, one per concern (add new ones to functions.blueprints.BLUEPRINTS), then
# the routes that read the whole route table: the document and the catch-all.
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
app.register_functions(http_openapi.bp)
