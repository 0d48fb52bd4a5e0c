"""The embedded host: ``python -m local`` (``make serve``) runs Stockstream on one machine.

HTTP is served by uvicorn from the Functions app's own route table (``local.asgi``); the
event pipeline (relay, projections, timers) runs in ``python -m local.worker`` by
``local.pipeline``. Each process asks the embedded composition root
(``composition.embedded``) for the parts it runs.
"""
