"""The embedded host: ``python -m local`` (``make serve``) runs Stockstream on one machine.

HTTP is served by uvicorn from the Functions app's own route table (``local.asgi``); the
event pipeline (relay, projections, timers) is started from ``local.pipeline``.
"""
