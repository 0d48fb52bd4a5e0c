"""Stockstream's metrics and structured logs: the signals operators alert and chart on.

Every custom metric name lives here, once, as a constant. The Bicep alerts
(``bicep/modules/alerts.bicep``) and the workbook (``bicep/workbook.json``) query these
names in Application Insights' ``customMetrics`` table, and ``tests/infra`` checks that they
reference nothing else, so renaming a constant without updating them fails the build.

Contract:

* :func:`configure_telemetry` returns a :class:`Telemetry`. When the settings carry an
  Application Insights connection string it installs the Azure Monitor OpenTelemetry
  distro once per process (metrics and the ``stockstream`` logger's records are exported;
  the Functions host already records requests and dependencies, so tracing is off).
* :class:`Telemetry` has one method per metric. Callers pass plain numbers; a method never
  raises for a value the instrument can hold (negative lags from clock skew are clamped to 0).
* Whatever the exporter, every process keeps what it measured in a local reader:
  :meth:`Telemetry.families` (and :meth:`Telemetry.openmetrics`) list it, which is what
  ``GET /api/ops/metrics`` serves. Without a connection string (the embedded host, tests)
  that local reader is the only one, so recording costs a few microseconds and exports
  nothing.
* :func:`note_commit` is an after-commit observer of the command services; inside
  :func:`counting_commits` it counts the saves that happened, which tells a command that
  took effect (``applied``) from an idempotent repeat (``unchanged``).
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, MetricsData

from adapters.openmetrics import Family, families_from, merge, render
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

OUTBOX_DEPTH = "stockstream.outbox.depth"
"""Gauge, events: events committed and not yet published, as the store tells it against the
relay's position (sampled by the metrics timer)."""

OUTBOX_OLDEST_AGE = "stockstream.outbox.oldest_age_seconds"
"""Gauge, seconds: age of the oldest event committed and not yet published (0 when none),
sampled by the metrics timer. A stalled relay publishes nothing, so this is the sample that
keeps the relay-lag alert able to fire."""

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
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_AGE,
    PROJECTION_LAG_SECONDS,
    DEAD_LETTER_DEPTH,
    SUBSCRIPTION_BACKLOG,
    DRIFT_UNITS,
    DRIFT_PERCENT,
    COMMAND_DURATION,
})
"""Every custom metric Stockstream emits."""

GAUGE_NAMES: frozenset[str] = frozenset({
    OUTBOX_DEPTH, OUTBOX_OLDEST_AGE, DEAD_LETTER_DEPTH, SUBSCRIPTION_BACKLOG,
})
"""Gauges: exported to Application Insights as one value per row, without min or max, so a
query reads them as ``valueSum / valueCount``, never ``valueMax``."""

HISTOGRAM_NAMES: frozenset[str] = frozenset({
    OUTBOX_LAG_SECONDS, PROJECTION_LAG_SECONDS, DRIFT_UNITS, DRIFT_PERCENT, COMMAND_DURATION,
})
"""Histograms: exported with sum, count, min and max per row (``valueMax`` is meaningful)."""

COMMAND_OUTCOMES: frozenset[str] = frozenset(
    {"applied", "unchanged", "rejected", "conflict", "error"})
"""Values of the ``outcome`` attribute: took effect, already had (idempotent repeat), refused
by an invariant (4xx), lost an optimistic-concurrency race after retries, failed (5xx)."""

SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)
"""Histogram buckets of the second-valued metrics (the SDK's default suits milliseconds).
Azure Monitor receives sum, count, min and max whatever the buckets; Prometheus reads them."""

UNITS_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
PERCENT_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)

_commits: ContextVar[list[int] | None] = ContextVar("stockstream_commits", default=None)


def note_commit(events: Sequence[object]) -> None:
    """After-commit observer: one more save in the current :func:`counting_commits`."""
    counter = _commits.get()
    if counter is not None:
        counter[0] += 1


@contextmanager
def counting_commits() -> Iterator[list[int]]:
    """Count the saves (``note_commit`` calls) made in this context; ``[n]`` when done."""
    counter = [0]
    token = _commits.set(counter)
    try:
        yield counter
    finally:
        _commits.reset(token)


class LocalMetricReader(MetricReader):
    """Keeps nothing between collections and exports nothing: :meth:`collect_now` reads
    the process's cumulative metrics on demand (for ``GET /api/ops/metrics``)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._latest: MetricsData | None = None

    def collect_now(self) -> MetricsData | None:
        with self._lock:
            self._latest = None
            self.collect()
            return self._latest

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                         **kwargs: Any) -> None:
        self._latest = metrics_data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class Telemetry:
    """Records Stockstream's metrics on one OpenTelemetry meter.

    Build it with :func:`configure_telemetry` in the hosts, or directly with any ``Meter``
    (tests pass a meter from an SDK ``MeterProvider`` with an in-memory reader).
    """

    def __init__(
        self, meter: Meter, collect: Callable[[], MetricsData | None] | None = None
    ) -> None:
        self._collect = collect
        self._outbox_lag = meter.create_histogram(
            OUTBOX_LAG_SECONDS, unit="s",
            description="Age of an event when the relay published it.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self._published = meter.create_counter(
            RELAY_PUBLISHED, unit="{event}", description="Events published by the relay.")
        self._outbox_depth = meter.create_gauge(
            OUTBOX_DEPTH, unit="{event}",
            description="Events committed and not yet published (sampled).")
        self._outbox_oldest = meter.create_gauge(
            OUTBOX_OLDEST_AGE, unit="s",
            description="Age of the oldest event committed and not yet published (sampled).")
        self._projection_lag = meter.create_histogram(
            PROJECTION_LAG_SECONDS, unit="s",
            description="Age of an event when a projection applied it.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self._dead_letters = meter.create_gauge(
            DEAD_LETTER_DEPTH, unit="{message}",
            description="Messages in a subscription's dead-letter queue.")
        self._backlog = meter.create_gauge(
            SUBSCRIPTION_BACKLOG, unit="{message}",
            description="Active messages waiting in a subscription.")
        self._drift_units = meter.create_histogram(
            DRIFT_UNITS, unit="{unit}",
            description="Absolute difference between a physical count and the recorded on hand.",
            explicit_bucket_boundaries_advisory=UNITS_BUCKETS)
        self._drift_percent = meter.create_histogram(
            DRIFT_PERCENT, unit="%",
            description="Count drift relative to the recorded on hand.",
            explicit_bucket_boundaries_advisory=PERCENT_BUCKETS)
        self._command_duration = meter.create_histogram(
            COMMAND_DURATION, unit="s",
            description="Time an HTTP command took, from request to answer.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)

    # ------------------------------------------------------------------ reading back

    def families(self) -> list[Family]:
        """What this process measured (empty when built without a local reader)."""
        return families_from(self._collect()) if self._collect is not None else []

    def openmetrics(self, sources: Mapping[str, Iterable[Family]] | None = None) -> str:
        """This process's metrics, and other processes' ``sources``, as OpenMetrics text."""
        return render(merge(self.families(), sources or {}))

    # ------------------------------------------------------------------- recording

    def record_outbox_lag(self, seconds: float) -> None:
        """An event was ``seconds`` old when published (clamped at 0 against clock skew)."""
        self._outbox_lag.record(max(0.0, float(seconds)))

    def record_relay_batch(self, ages_seconds: Sequence[float]) -> None:
        """The relay published events this old: the count, and each one's outbox lag."""
        self.record_published(len(ages_seconds))
        for age in ages_seconds:
            self.record_outbox_lag(age)

    def record_outbox(self, depth: int, oldest_age_seconds: float | None) -> None:
        """The outbox holds ``depth`` unpublished events, the oldest this old (None: none).

        Sampled by the metrics timer from the store against the relay's position, so it is
        recorded even when the relay publishes nothing at all.
        """
        self._outbox_depth.set(max(0, int(depth)))
        self._outbox_oldest.set(
            0.0 if oldest_age_seconds is None else max(0.0, float(oldest_age_seconds)))

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

    def record_command(self, name: str, seconds: float, outcome: str, count: int = 1) -> None:
        """``count`` commands ``name`` took ``seconds`` each and ended with ``outcome`` (see
        COMMAND_OUTCOMES). The histogram counts each of them (a batch's commands are
        commands); the checks and the attributes are made once for all."""
        if outcome not in COMMAND_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(COMMAND_OUTCOMES)}; got {outcome!r}")
        value, attributes = max(0.0, float(seconds)), {"command": name, "outcome": outcome}
        record = self._command_duration.record
        for _ in range(count):
            record(value, attributes)


_configure_lock = threading.Lock()
_azure_monitor_configured = False


_azure_reader: LocalMetricReader | None = None


def configure_telemetry(settings: Settings) -> Telemetry:
    """The process's :class:`Telemetry`: exported to Application Insights when configured.

    Installs the Azure Monitor distro at most once per process (it sets OpenTelemetry's
    global providers, which cannot be replaced), with the process's local reader beside
    its exporter. With ``AZURE_CLIENT_ID`` set, export authenticates with that managed
    identity (the Bicep disables Application Insights' key-based ingestion); otherwise with
    the connection string alone. Without a connection string the meter is private to the
    returned object and read only locally.
    """
    global _azure_monitor_configured, _azure_reader
    connection_string = settings.appinsights_connection_string
    if not connection_string:
        return local_telemetry()
    with _configure_lock:
        if not _azure_monitor_configured:
            _azure_reader = LocalMetricReader()
            _install_azure_monitor(connection_string, settings.azure_client_id, _azure_reader)
            _azure_monitor_configured = True
        reader = _azure_reader
    return Telemetry(metrics.get_meter(METER_NAME),
                     reader.collect_now if reader is not None else None)


def local_telemetry(*readers: MetricReader) -> Telemetry:
    """Telemetry on a meter of its own, read locally (and by ``readers``, e.g. tests')."""
    local = LocalMetricReader()
    provider = MeterProvider(metric_readers=[local, *readers])
    return Telemetry(provider.get_meter(METER_NAME), local.collect_now)


def _install_azure_monitor(
    connection_string: str, client_id: str | None, reader: MetricReader
) -> None:
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
        # What this instance measured, for GET /api/ops/metrics.
        "metric_readers": [reader],
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
