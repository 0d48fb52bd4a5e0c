"""Every setting Stockstream reads, in one place, with defaults and validation.

``SETTINGS`` is the declaration: name, default, where it applies and what it does. The
README, ``local.settings.example.json`` and the Bicep app settings are checked against
it by tests, so an operator finds every setting where they look. Code reads settings only
through :func:`load` (or ``Settings`` fields), never ``os.environ`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

Scope = Literal["local", "azure", "both"]


@dataclass(frozen=True)
class Setting:
    """One documented setting."""

    name: str
    default: str | None
    scope: Scope
    description: str


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
            "for approval; empty: no percent limit."),
    Setting("STOCKSTREAM_COUNT_CADENCE", "A=1,B=7,C=30", "both",
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
            "held for approval; empty: no percent limit."),
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
    servicebus_namespace: str | None
    azure_client_id: str | None
    appinsights_connection_string: str | None
    deprecated_versions_until: date | None = None
    port: int = 7071
    drift_hold_units: int | None = None
    drift_hold_percent: float | None = 50.0
    count_cadence: str = "A=1,B=7,C=30"
    idempotency_window: timedelta = timedelta(days=7)
    count_max_age: timedelta = timedelta(days=7)
    admin_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    header_timeout_seconds: int = 10
    body_timeout_seconds: int = 30
    idle_timeout_seconds: int = 5
    adjustment_hold_units: int | None = None
    adjustment_hold_percent: float | None = None


def _get(env: Mapping[str, str], name: str) -> str | None:
    if name not in SETTING_NAMES:
        raise KeyError(f"{name} is not a declared setting")
    value = env.get(name)
    if value is None or value.strip() == "":
        default = next(s.default for s in SETTINGS if s.name == name)
        return default
    return value.strip()


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise SettingsError(f"PORT must be a TCP port number (0-65535); got {value!r}")
    return int(value)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    store = _get(env, "STOCKSTREAM_EVENT_STORE") or "sqlite"
    if store not in ("sqlite", "cosmos"):
        raise SettingsError(f"STOCKSTREAM_EVENT_STORE must be 'sqlite' or 'cosmos'; got {store!r}")
    endpoint = _get(env, "COSMOS__accountEndpoint")
    if store == "cosmos" and not endpoint:
        raise SettingsError("STOCKSTREAM_EVENT_STORE=cosmos needs COSMOS__accountEndpoint")
    raw_keys = _get(env, "STOCKSTREAM_API_KEYS") or ""
    keys = tuple(k.strip() for k in raw_keys.split(",") if k.strip())
    return Settings(
        data_dir=Path(_get(env, "STOCKSTREAM_DATA") or "./data"),
        api_keys=keys,
        event_store=store,  # type: ignore[arg-type]
        cosmos_endpoint=endpoint,
        cosmos_key=_get(env, "COSMOS_KEY"),
        cosmos_database=_get(env, "COSMOS_DATABASE") or "stockstream",
        servicebus_namespace=_get(env, "SERVICEBUS__fullyQualifiedNamespace"),
        azure_client_id=_get(env, "AZURE_CLIENT_ID"),
        appinsights_connection_string=_get(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        port=_port(_get(env, "PORT") or "7071"),
        drift_hold_units=_limit(env, "STOCKSTREAM_DRIFT_HOLD_UNITS", int),
        drift_hold_percent=_limit(env, "STOCKSTREAM_DRIFT_HOLD_PERCENT", float),
        count_cadence=_cadence(_get(env, "STOCKSTREAM_COUNT_CADENCE") or "A=1,B=7,C=30"),
        adjustment_hold_units=_limit(env, "STOCKSTREAM_ADJUSTMENT_HOLD_UNITS", int),
        adjustment_hold_percent=_limit(env, "STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT", float),
        deprecated_versions_until=_date(env, "STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL"),
        idempotency_window=_duration("STOCKSTREAM_IDEMPOTENCY_WINDOW",
                                     _get(env, "STOCKSTREAM_IDEMPOTENCY_WINDOW") or "7d"),
        count_max_age=_duration("STOCKSTREAM_COUNT_MAX_AGE",
                                _get(env, "STOCKSTREAM_COUNT_MAX_AGE") or "7d"),
        admin_keys=_list(env, "STOCKSTREAM_ADMIN_KEYS"),
        allowed_origins=_list(env, "STOCKSTREAM_ALLOWED_ORIGINS"),
        header_timeout_seconds=_seconds(env, "STOCKSTREAM_HEADER_TIMEOUT_SECONDS"),
        body_timeout_seconds=_seconds(env, "STOCKSTREAM_BODY_TIMEOUT_SECONDS"),
        idle_timeout_seconds=_seconds(env, "STOCKSTREAM_IDLE_TIMEOUT_SECONDS"),
    )


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated setting; blanks around and between items ignored."""
    return tuple(item.strip() for item in (_get(env, name) or "").split(",") if item.strip())


def _seconds(env: Mapping[str, str], name: str) -> int:
    """A timeout: whole seconds, at least 1."""
    value = _get(env, name) or ""
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
    value = _get(env, name)
    if value is None:
        return None
    try:
        number = kind(value)
    except ValueError:
        number = -1
    if not 0 <= number < float("inf"):
        raise SettingsError(f"{name} must be a number >= 0 or empty; got {value!r}")
    return number


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, value: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s`` or a whole number of seconds; more than zero."""
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not number.isdigit() or int(number) == 0 or int(number) * _UNITS[unit] > 10 * 365 * 86400:
        raise SettingsError(
            f"{name} must be a duration such as 7d, 36h, 90m or 3600 (seconds), at most ten "
            f"years; got {value!r}")
    return timedelta(seconds=int(number) * _UNITS[unit])


def _cadence(value: str) -> str:
    parts = dict(p.strip().partition("=")[::2] for p in value.split(","))
    if sorted(parts) != ["A", "B", "C"] or not all(
            v.strip().isdigit() and int(v) >= 1 for v in parts.values()):
        raise SettingsError(
            f"STOCKSTREAM_COUNT_CADENCE must look like A=1,B=7,C=30 (days >= 1); got {value!r}")
    return value
