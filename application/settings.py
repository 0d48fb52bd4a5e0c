"""Every setting Stockstream reads, in one place, with defaults and validation.

``SETTINGS`` is the declaration: name, default, where it applies and what it does; each
default is written here only (:func:`load` falls back to it, ``Settings`` has no defaults
of its own). :attr:`Setting.documented_in` says where an operator finds a setting:
``docs/deploy.md``'s table and ``local.settings.example.json`` always, and the function
app's Bicep app settings for what Azure reads; tests check all three against
``SETTINGS``. :func:`load` validates every value and is the only reader of the process
environment: code uses ``Settings`` fields, never ``os.environ`` (a test scans the code
for reads of undeclared names), and the ``eventsourcing`` stores are handed complete
settings instead of reading the environment themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from application.cadence import DEFAULT_CADENCE, CadenceError, CadencePolicy

Scope = Literal["local", "azure", "both"]

DEPLOY_DOC = "docs/deploy.md"
LOCAL_SETTINGS = "local.settings.example.json"
AZURE_APP_SETTINGS = "bicep/modules/functionapp.bicep"


@dataclass(frozen=True)
class Setting:
    """One documented setting."""

    name: str
    default: str | None
    scope: Scope
    description: str

    @property
    def documented_in(self) -> tuple[str, ...]:
        """The files that list this setting (checked by ``tests/infra``)."""
        azure = (AZURE_APP_SETTINGS,) if self.scope in ("azure", "both") else ()
        return (DEPLOY_DOC, LOCAL_SETTINGS, *azure)


SETTINGS: tuple[Setting, ...] = (
    Setting("STOCKSTREAM_DATA", "./data", "local",
            "Directory of the embedded host's SQLite files (events, views, broker)."),
    Setting("PORT", "7071", "local",
            "TCP port of the embedded host's HTTP server (python -m local --port overrides)."),
    Setting("STOCKSTREAM_API_KEYS", None, "local",
            "Comma-separated function-level keys. With any key set, every local request needs "
            "one, in the x-functions-key header or the code query parameter; admin routes "
            "need an admin key. In Azure, Functions keys do this."),
    Setting("STOCKSTREAM_ADMIN_KEYS", None, "local",
            "Comma-separated admin-level keys, good on every route, as Azure's master key; "
            "admin routes (dead-letter replay, approval of held counts) take only these."),
    Setting("STOCKSTREAM_ALLOWED_ORIGINS", None, "local",
            "Comma-separated origins (scheme://host[:port]) whose browser requests the "
            "embedded host serves besides its own origin; any other Origin gets 403. No CORS "
            "headers are sent either way."),
    Setting("STOCKSTREAM_HEADER_TIMEOUT_SECONDS", "10", "local",
            "Seconds the embedded host waits for a request's headers, from its first byte; "
            "then it closes the connection."),
    Setting("STOCKSTREAM_BODY_TIMEOUT_SECONDS", "30", "local",
            "Seconds the embedded host waits for a whole request body once the request is "
            "admitted; then it answers 408 and the request does not run."),
    Setting("STOCKSTREAM_IDLE_TIMEOUT_SECONDS", "5", "local",
            "Seconds the embedded host keeps a connection open with no request under way "
            "(new, or kept alive after an answer); uvicorn's timeout_keep_alive."),
    Setting("STOCKSTREAM_EVENT_STORE", "sqlite", "both",
            "Where streams live: 'sqlite' (embedded) or 'cosmos' (Azure Cosmos DB)."),
    Setting("COSMOS__accountEndpoint", None, "both",
            "Cosmos DB account endpoint (identity-based connection 'COSMOS' of the "
            "change-feed trigger, and the SDK client's endpoint)."),
    Setting("COSMOS_KEY", None, "local",
            "Cosmos DB account key, for emulators and test servers only; without it "
            "DefaultAzureCredential (managed identity) is used."),
    Setting("COSMOS_DATABASE", "stockstream", "both", "Cosmos DB database name."),
    Setting("STOCKSTREAM_COSMOS_COALESCE", "on", "azure",
            "'on': concurrent commands on one SKU-location in one instance are decided one "
            "after another and written as one Cosmos DB transactional batch (at most 100 "
            "operations), so a hot SKU-location costs one write and at most one conflict per "
            "batch, not per command; 'off': each command is its own batch "
            "(docs/performance.md, 'A hot SKU-location on Azure')."),
    Setting("SERVICEBUS__fullyQualifiedNamespace", None, "azure",
            "Service Bus namespace host (identity-based connection 'SERVICEBUS')."),
    Setting("AZURE_CLIENT_ID", None, "azure",
            "Client id of a user-assigned managed identity, if one is used."),
    Setting("STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL", "2027-05-31", "both",
            "Until this date (inclusive, ISO-8601) the relay also publishes deprecated event "
            "versions (e.g. StockAdjusted.v1) next to the current ones; empty: never."),
    Setting("APPLICATIONINSIGHTS_CONNECTION_STRING", None, "azure",
            "Application Insights connection string; enables OpenTelemetry export."),
    Setting("STOCKSTREAM_DRIFT_HOLD_UNITS", None, "both",
            "Counts whose drift exceeds this many units are held for approval; empty: no "
            "unit limit (docs/reconciliation.md)."),
    Setting("STOCKSTREAM_DRIFT_HOLD_PERCENT", "50", "both",
            "Counts whose drift exceeds this percent of the on hand at count time are held "
            "for approval; empty: the default, 50; off: no percent limit."),
    Setting("STOCKSTREAM_COUNT_CADENCE", DEFAULT_CADENCE, "both",
            "Days between physical counts for each velocity class (A fast, C slow movers)."),
    Setting("STOCKSTREAM_IDEMPOTENCY_WINDOW", "7d", "both",
            "How long a SKU-location recognises an Idempotency-Key, a closed reservation's "
            "order id and a count id, however many it sees (e.g. 7d, 36h, 90m, or seconds)."),
    Setting("STOCKSTREAM_COUNT_MAX_AGE", "7d", "both",
            "How far back a count's counted_at may be (e.g. 7d, 36h, 90m, or seconds); an "
            "older count, or one more than 5 minutes ahead, gets 422."),
    Setting("STOCKSTREAM_ADJUSTMENT_HOLD_UNITS", None, "both",
            "Adjustments whose delta exceeds this many units are held for approval; empty: "
            "no unit limit (docs/http-api.md)."),
    Setting("STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT", None, "both",
            "Adjustments whose delta exceeds this percent of the on hand before them are "
            "held for approval; empty or off: no percent limit."),
    Setting("STOCKSTREAM_ORDER_SWEEP_INTERVAL", "60", "both",
            "How often the process sweep drives orders and transfers left part way (a "
            "crash) to their end and releases expired orders (e.g. 60, 90s, 2m; at least "
            "1 second): no hold of a failed, released or interrupted order outlives it "
            "(docs/orders.md). Azure's timer runs every minute whatever it says."),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)

class SettingsError(ValueError):
    """A setting has a value Stockstream cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Validated settings of one process."""

    data_dir: Path
    api_keys: tuple[str, ...]
    event_store: Literal["sqlite", "cosmos"]
    cosmos_endpoint: str | None
    cosmos_key: str | None
    cosmos_database: str
    cosmos_coalesce: bool
    servicebus_namespace: str | None
    azure_client_id: str | None
    appinsights_connection_string: str | None
    deprecated_versions_until: date | None
    port: int
    drift_hold_units: int | None
    drift_hold_percent: float | None
    count_cadence: str
    idempotency_window: timedelta
    count_max_age: timedelta
    admin_keys: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    header_timeout_seconds: int
    body_timeout_seconds: int
    idle_timeout_seconds: int
    adjustment_hold_units: int | None
    adjustment_hold_percent: float | None
    order_sweep_interval: timedelta


_DECLARED = {s.name: s for s in SETTINGS}


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The setting's value, stripped; its declared default when unset or blank."""
    if name not in _DECLARED:
        raise KeyError(f"{name} is not a declared setting")
    value = env.get(name)
    if value is None or value.strip() == "":
        return _DECLARED[name].default
    return value.strip()


def _text(env: Mapping[str, str], name: str) -> str:
    """A setting that always has a value (its declaration has a default)."""
    value = _get(env, name)
    if value is None:
        raise KeyError(f"{name} has no default")
    return value


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise SettingsError(f"PORT must be a TCP port number (0-65535); got {value!r}")
    return int(value)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    store = _text(env, "STOCKSTREAM_EVENT_STORE")
    if store not in ("sqlite", "cosmos"):
        raise SettingsError(f"STOCKSTREAM_EVENT_STORE must be 'sqlite' or 'cosmos'; got {store!r}")
    endpoint = _get(env, "COSMOS__accountEndpoint")
    if store == "cosmos" and not endpoint:
        raise SettingsError("STOCKSTREAM_EVENT_STORE=cosmos needs COSMOS__accountEndpoint")
    return Settings(
        data_dir=Path(_text(env, "STOCKSTREAM_DATA")),
        api_keys=_list(env, "STOCKSTREAM_API_KEYS"),
        event_store=store,  # type: ignore[arg-type]
        cosmos_endpoint=endpoint,
        cosmos_key=_get(env, "COSMOS_KEY"),
        cosmos_database=_text(env, "COSMOS_DATABASE"),
        cosmos_coalesce=_switch(env, "STOCKSTREAM_COSMOS_COALESCE"),
        servicebus_namespace=_get(env, "SERVICEBUS__fullyQualifiedNamespace"),
        azure_client_id=_get(env, "AZURE_CLIENT_ID"),
        appinsights_connection_string=_get(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        port=_port(_text(env, "PORT")),
        drift_hold_units=_limit(env, "STOCKSTREAM_DRIFT_HOLD_UNITS", int),
        drift_hold_percent=_limit(env, "STOCKSTREAM_DRIFT_HOLD_PERCENT", float),
        count_cadence=_cadence(_text(env, "STOCKSTREAM_COUNT_CADENCE")),
        adjustment_hold_units=_limit(env, "STOCKSTREAM_ADJUSTMENT_HOLD_UNITS", int),
        adjustment_hold_percent=_limit(env, "STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT", float),
        deprecated_versions_until=_date(env, "STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL"),
        idempotency_window=_duration(env, "STOCKSTREAM_IDEMPOTENCY_WINDOW"),
        count_max_age=_duration(env, "STOCKSTREAM_COUNT_MAX_AGE"),
        admin_keys=_list(env, "STOCKSTREAM_ADMIN_KEYS"),
        allowed_origins=_list(env, "STOCKSTREAM_ALLOWED_ORIGINS"),
        header_timeout_seconds=_seconds(env, "STOCKSTREAM_HEADER_TIMEOUT_SECONDS"),
        body_timeout_seconds=_seconds(env, "STOCKSTREAM_BODY_TIMEOUT_SECONDS"),
        idle_timeout_seconds=_seconds(env, "STOCKSTREAM_IDLE_TIMEOUT_SECONDS"),
        order_sweep_interval=_duration(env, "STOCKSTREAM_ORDER_SWEEP_INTERVAL"),
    )


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated setting; blanks around and between items ignored."""
    return tuple(item.strip() for item in (_get(env, name) or "").split(",") if item.strip())


def _switch(env: Mapping[str, str], name: str) -> bool:
    """A setting that is 'on' or 'off'."""
    value = _text(env, name).lower()
    if value not in ("on", "off"):
        raise SettingsError(f"{name} must be 'on' or 'off'; got {value!r}")
    return value == "on"


def _seconds(env: Mapping[str, str], name: str) -> int:
    """A timeout: whole seconds, at least 1."""
    value = _text(env, name)
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise SettingsError(f"{name} must be a whole number of seconds >= 1; got {value!r}")
    return int(value)


def _date(env: Mapping[str, str], name: str) -> date | None:
    raw = env.get(name)
    if raw is not None and raw.strip() == "":
        return None  # set but empty: explicitly never
    value = _get(env, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{name} must be an ISO-8601 date; got {value!r}") from None


def _limit(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    """A hold threshold: a number >= 0, or None for no limit (``off``, or empty where the
    declared default is empty)."""
    value = _get(env, name)
    if value is None or value.lower() == "off":
        return None
    try:
        number = kind(value)
    except ValueError:
        number = -1
    if not 0 <= number < float("inf"):
        raise SettingsError(f"{name} must be a number >= 0, off or empty; got {value!r}")
    return number


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(env: Mapping[str, str], name: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s`` or a whole number of seconds; more than zero."""
    value = _text(env, name)
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not number.isdigit() or int(number) == 0 or int(number) * _UNITS[unit] > 10 * 365 * 86400:
        raise SettingsError(
            f"{name} must be a duration such as 7d, 36h, 90m or 3600 (seconds), at most ten "
            f"years; got {value!r}")
    return timedelta(seconds=int(number) * _UNITS[unit])


def _cadence(value: str) -> str:
    """Validated by the count schedule's own parser (one rule, not two)."""
    try:
        CadencePolicy.parse(value)
    except CadenceError as error:
        raise SettingsError(f"STOCKSTREAM_COUNT_CADENCE: {error}") from None
    return value
