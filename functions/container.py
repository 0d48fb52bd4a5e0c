"""The Azure Functions worker's services: built once per process, on first use.

Azure Functions runs many invocations on one worker, so SDK clients and stores are
created once per process by the composition root that the settings choose
(``composition.build_services``: Azure on Cosmos DB settings, the embedded root on
SQLite), lazily, so importing ``function_app`` stays cheap and a cold start opens
connections only when a function needs them. Triggers only read services from here.

Tests and the embedded host install their own services with :func:`use_services`.
"""

from __future__ import annotations

import threading

from application.settings import load
from composition import Services, build_services

_lock = threading.Lock()
_services: Services | None = None


def get_services() -> Services:
    """The process's services, built from the environment on first use.

    Once built they are read without the lock (a reference read is atomic), as every
    request asks for them two or three times; the lock only makes one thread build."""
    global _services
    services = _services
    if services is not None:
        return services
    with _lock:
        if _services is None:
            _services = build_services(load())
        return _services


def use_services(services: Services | None) -> None:
    """Install ``services`` for this process (None: build from settings on next use).

    The caller keeps ownership: installing or uninstalling closes nothing."""
    global _services
    with _lock:
        _services = services
