"""Stockstream's metrics and structured logs: the signals operators alert and chart on.

Every custom metric name lives here, once, as a constant. The Bicep alerts
(``bicep/modules/alerts.bicep``) and the workbook (``bicep/workbook.json``) query these
names in Application Insights' ``customMetrics`` table, and ``tests/infra`` checks that they
reference nothing else, so renaming a constant without updating them fails the build.

Contract:

* :func:`configure_telemetry` returns a :class:`Telemetry`. When the settings carry an
  Application Insights connection string it installs the Azure Monitor OpenTelemetry
  distro once per process (metrics and the ``stockstream`` logger's records are exported;
  the Functions host already records requests and dependencies, so tracing is off). Without a
  connection string (the embedded host, tests) the meter is a no-op: recording costs nothing
  and never fails.
* :class:`Telemetry` has one method per metric. Callers pass plain numbers; a method never
  raises for a value the instrument can hold (negative lags from clock skew are clamped to 0).
* :func:`log_for_stream` writes a log record that carries the stream id and event id both as
  record attributes (exported as ``customDimensions``) and as ``key=value`` text in the
  message, so the record is searchable even where only the text survives (host-forwarded
  worker logs).

The caller (relay, projections, timers) decides *when* to record; this module only decides
*what* a signal is called and which attributes it has.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Meter, NoOpMeter

from application.settings import Settings

METER_NAME = "stockstream"
"""Instrumentation scope of every Stockstream metric."""

LOGGER_NAME = "stockstream"
"""Root logger whose records are exported to Application Insights."""

# Metric names (part of the operations contract: alerts and the workbook query them).
OUTBOX_LAG_SECONDS = "stockstream.outbox.lag_seconds"
"""Histogram, seconds: age of an event when the relay published it (now − committed at)."""

RELAY_PUBLISHED = "stockstream.relay.published"
"""Counter, events: events the relay handed to the broker."""

PROJECTION_LAG_SECONDS = "stockstream.projection.lag_seconds"
"""Histogram, seconds, attribute ``projection``: age of an event when a projection applied it."""

DEAD_LETTER_DEPTH = "stockstream.deadletter.depth"
"""Gauge, messages, attribute ``subscription``: messages in its dead-letter queue."""

SUBSCRIPTION_BACKLOG = "stockstream.subscription.active_messages"
"""Gauge, messages, attribute ``subscription``: active (not yet settled) messages in it."""

DRIFT_UNITS = "stockstream.reconciliation.drift_units"
"""Histogram, units: absolute difference between a physical count and the recorded on hand."""

DRIFT_PERCENT = "stockstream.reconciliation.drift_percent"
"""Histogram, percent: the same difference relative to the recorded on hand."""

COMMAND_DURATION = "stockstream.command.duration"
"""Histogram, seconds, attributes ``command`` and ``outcome``: time to decide and save a command."""

METRIC_NAMES: frozenset[str] = frozenset({
    OUTBOX_LAG_SECONDS,
    RELAY_PUBLISHED,
    PROJECTION_LAG_SECONDS,
    DEAD_LETTER_DEPTH,
    SUBSCRIPTION_BACKLOG,
    DRIFT_UNITS,
    DRIFT_PERCENT,
    COMMAND_DURATION,
})
"""Every custom metric Stockstream emits."""

COMMAND_OUTCOMES: frozenset[str] = frozenset(
    {"applied", "unchanged", "rejected", "conflict", "error"})
"""Values of the ``outcome`` attribute: took effect, already had (idempotent repeat), refused
by an invariant (4xx), lost an optimistic-concurrency race after retries, failed (5xx)."""


class Telemetry:
    """Records Stockstream's metrics on one OpenTelemetry meter.

    Build it with :func:`configure_telemetry` in the hosts, or directly with any ``Meter``
    (tests pass a meter from an SDK ``MeterProvider`` with an in-memory reader).
    """

    def __init__(self, meter: Meter) -> None:
        self._outbox_lag = meter.create_histogram(
            OUTBOX_LAG_SECONDS, unit="s",
            description="Age of an event when the relay published it.")
        self._published = meter.create_counter(
            RELAY_PUBLISHED, unit="{event}", description="Events published by the relay.")
        self._projection_lag = meter.create_histogram(
            PROJECTION_LAG_SECONDS, unit="s",
            description="Age of an event when a projection applied it.")
        self._dead_letters = meter.create_gauge(
            DEAD_LETTER_DEPTH, unit="{message}",
            description="Messages in a subscription's dead-letter queue.")
        self._backlog = meter.create_gauge(
            SUBSCRIPTION_BACKLOG, unit="{message}",
            description="Active messages waiting in a subscription.")
        self._drift_units = meter.create_histogram(
            DRIFT_UNITS, unit="{unit}",
            description="Absolute difference between a physical count and the recorded on hand.")
        self._drift_percent = meter.create_histogram(
            DRIFT_PERCENT, unit="%",
            description="Count drift relative to the recorded on hand.")
        self._command_duration = meter.create_histogram(
            COMMAND_DURATION, unit="s", description="Time to decide and save a command.")

    def record_outbox_lag(self, seconds: float) -> None:
        """An event was ``seconds`` old when published (clamped at 0 against clock skew).

        Record it from the relay for each published event *and* from the status timer as
        the age of the oldest unpublished event: a stalled relay publishes nothing, and only
        the timer's sample then keeps the relay-lag alert able to fire.
        """
        self._outbox_lag.record(max(0.0, float(seconds)))

    def record_published(self, count: int) -> None:
        """The relay published ``count`` events (0 records nothing; negative is a bug)."""
        if count < 0:
            raise ValueError(f"published count must be >= 0; got {count}")
        if count:
            self._published.add(count)

    def record_projection_lag(self, name: str, seconds: float) -> None:
        """Projection ``name`` applied an event ``seconds`` after it was committed."""
        self._projection_lag.record(max(0.0, float(seconds)), {"projection": name})

    def record_dead_letter_depth(self, subscription: str, count: int) -> None:
        """Subscription ``subscription`` has ``count`` dead-lettered messages right now."""
        self._dead_letters.set(max(0, int(count)), {"subscription": subscription})

    def record_backlog(self, subscription: str, count: int) -> None:
        """Subscription ``subscription`` has ``count`` active messages right now."""
        self._backlog.set(max(0, int(count)), {"subscription": subscription})

    def record_drift(self, units: int, percent: float) -> None:
        """A physical count differed from the recorded on hand by ``units`` (``percent`` %).

        The sign of a correction is in the event; the metric is its magnitude.
        """
        self._drift_units.record(abs(int(units)))
        self._drift_percent.record(abs(float(percent)))

    def record_command(self, name: str, seconds: float, outcome: str) -> None:
        """Command ``name`` took ``seconds`` and ended with ``outcome`` (see COMMAND_OUTCOMES)."""
        if outcome not in COMMAND_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(COMMAND_OUTCOMES)}; got {outcome!r}")
        self._command_duration.record(
            max(0.0, float(seconds)), {"command": name, "outcome": outcome})


_configure_lock = threading.Lock()
_azure_monitor_configured = False


def configure_telemetry(settings: Settings) -> Telemetry:
    """The process's :class:`Telemetry`: exported to Application Insights when configured.

    Installs the Azure Monitor distro at most once per process (it sets OpenTelemetry's
    global providers, which cannot be replaced). With ``AZURE_CLIENT_ID`` set, export
    authenticates with that managed identity (the Bicep disables Application Insights'
    key-based ingestion); otherwise with the connection string alone.
    """
    global _azure_monitor_configured
    connection_string = settings.appinsights_connection_string
    if not connection_string:
        return Telemetry(NoOpMeter(METER_NAME))
    with _configure_lock:
        if not _azure_monitor_configured:
            _install_azure_monitor(connection_string, settings.azure_client_id)
            _azure_monitor_configured = True
    return Telemetry(metrics.get_meter(METER_NAME))


def _install_azure_monitor(connection_string: str, client_id: str | None) -> None:
    # Imported here: the distro pulls in many instrumentations; hosts without a
    # connection string never pay for them.
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    options: dict[str, Any] = {
        "connection_string": connection_string,
        "logger_name": LOGGER_NAME,
        "resource": Resource.create({"service.name": "stockstream"}),
        # Requests and dependencies are recorded by the Functions host already.
        "disable_tracing": True,
    }
    if client_id:
        from azure.identity import ManagedIdentityCredential

        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    configure_azure_monitor(**options)


def stream_fields(stream_id: str, event_id: str | None = None) -> dict[str, str]:
    """The log attributes that identify a stream (and one of its events)."""
    fields = {"stream_id": stream_id}
    if event_id is not None:
        fields["event_id"] = event_id
    return fields


def log_for_stream(
    logger: logging.Logger,
    level: int,
    message: str,
    *,
    stream_id: str,
    event_id: str | None = None,
    fields: Mapping[str, str | int | float | bool] | None = None,
    exc_info: bool = False,
) -> None:
    """Log ``message`` about a stream, with ``stream_id``/``event_id`` (and ``fields``) attached.

    The identifiers become attributes of the record (``record.stream_id``...) and are
    appended to the text as ``key=value`` pairs in a fixed order.
    """
    attributes: dict[str, str | int | float | bool] = {**stream_fields(stream_id, event_id)}
    if fields:
        clash = set(fields) & set(attributes)
        if clash:
            raise ValueError(f"fields may not override {sorted(clash)}")
        attributes.update(fields)
    text = " ".join([message, *(f"{key}={value}" for key, value in attributes.items())])
    logger.log(level, text, extra=attributes, exc_info=exc_info)
