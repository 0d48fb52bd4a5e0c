"""The composition roots: which adapters make up the service, decided in one place per host.

- :func:`composition.embedded.embedded_services` — the embedded host (SQLite files, the
  embedded broker), for each of its processes;
- :func:`composition.azure.azure_services` — Azure (Cosmos DB, Service Bus);

each building one typed, frozen :class:`~composition.services.Services`. Triggers (through
``functions.container``), the embedded host, the CLI and the benchmarks ask a root; none
of them constructs an adapter or patches a service afterwards.
"""

from __future__ import annotations

from adapters.telemetry import Telemetry
from application.ports import Clock
from application.settings import Settings
from composition.embedded import EmbeddedProcess, embedded_services
from composition.services import (
    OpenedOnFirstUse,
    ReconciliationServices,
    ReconciliationUnavailable,
    Services,
)


def build_services(
    settings: Settings,
    clock: Clock | None = None,
    *,
    telemetry: Telemetry | None = None,
    process: EmbeddedProcess = EmbeddedProcess.COMMANDS,
) -> Services:
    """The services for ``settings``: Azure when ``STOCKSTREAM_EVENT_STORE=cosmos``,
    otherwise the embedded ``process``'s (``process`` means nothing to Azure, where each
    function reads the parts it needs)."""
    if settings.event_store == "cosmos":
        from composition.azure import azure_services

        return azure_services(settings, clock, telemetry=telemetry)
    return embedded_services(settings, clock, telemetry=telemetry, process=process)


__all__ = [
    "EmbeddedProcess",
    "OpenedOnFirstUse",
    "ReconciliationServices",
    "ReconciliationUnavailable",
    "Services",
    "build_services",
    "embedded_services",
]
