"""The composition roots: which adapters make up the service, decided in one place per host.

- :func:`composition.embedded.embedded_services` — the embedded host (SQLite files, the
  embedded broker), for each of its processes;
- :func:`composition.azure.azure_services` — Azure (Cosmos DB, Service Bus);

each building one typed, frozen :class:`~composition.services.Services`. Triggers (through
``functions.container``), the embedded host, the CLI and the benchmarks ask a root; none
of them constructs an adapter or patches a service afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.telemetry import Telemetry
from application.ports import Clock
from application.settings import Settings
from composition.services import (
    OpenedOnFirstUse,
    ReconciliationServices,
    ReconciliationUnavailable,
    Services,
)

if TYPE_CHECKING:
    from composition.embedded import EmbeddedProcess


def build_services(
    settings: Settings,
    clock: Clock | None = None,
    *,
    telemetry: Telemetry | None = None,
    process: EmbeddedProcess | None = None,
) -> Services:
    """The services for ``settings``: Azure when ``STOCKSTREAM_EVENT_STORE=cosmos``,
    otherwise the embedded ``process``'s (default ``COMMANDS``; ``process`` means nothing
    to Azure, where each function reads the parts it needs).

    Each root is imported when it is chosen, so importing ``function_app`` (which reaches
    this module through ``functions.container``) loads neither host's adapters."""
    if settings.event_store == "cosmos":
        from composition.azure import azure_services

        return azure_services(settings, clock, telemetry=telemetry)
    from composition.embedded import EmbeddedProcess, embedded_services

    return embedded_services(settings, clock, telemetry=telemetry,
                             process=process or EmbeddedProcess.COMMANDS)


__all__ = [
    "OpenedOnFirstUse",
    "ReconciliationServices",
    "ReconciliationUnavailable",
    "Services",
    "build_services",
]
