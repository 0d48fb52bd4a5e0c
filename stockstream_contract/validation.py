"""Validate an incoming CloudEvent against the schema registry (``schemas/``).

A consumer calls :func:`validate_cloudevent` on every message body before it applies the
event, and acts on the outcome:

- it returns the :class:`RegisteredEvent` the document was validated as: apply it;
- it raises :class:`SchemaValidationFailed`: the document is malformed for its declared
  type and version. Dead-letter the message with ``reason`` and ``description`` (the
  description names the failing field path, e.g. ``data.quantity``);
- it raises :class:`UnknownEventType`: a well-formed envelope of a type or version this
  build's registry does not hold (a newer version, a new event type). Skip or park it;
  never fail on it, because producers add versions ahead of consumers.

The two exceptions share a base, :class:`EventRejected`, for code that only needs the
reason; catch :class:`UnknownEventType` first when treating them differently.

Validators are compiled once per registry directory and schema (the registry is read-only
at run time). The registry ships inside this package (``stockstream_contract/schemas``,
package data; in the repository a link to ``schemas/`` at its root, which ``make schemas``
writes), so ``pip install`` of the contract package brings it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError


def _default_registry() -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "schemas"
    # A deployment that did not keep the repository's link finds the registry beside it.
    return packaged if (packaged / "index.json").is_file() else here.parent / "schemas"


DEFAULT_REGISTRY = _default_registry()
"""The registry this package ships (package data), generated from the wire models."""

_TYPE = re.compile(r"^Stockstream\.(?P<name>[A-Za-z]+)\.v(?P<version>[0-9]+)$")
_MAX_ERRORS_LISTED = 5


class EventRejected(Exception):
    """An incoming event cannot be applied; ``reason`` and ``description`` say why."""

    reason: str = "EventRejected"

    def __init__(self, description: str, *, field: str = "") -> None:
        super().__init__(description)
        self.description = description
        self.field = field


class SchemaValidationFailed(EventRejected):
    """The document breaks the registered schema of its type and version.

    ``field`` is the path of the first failing field (``data.quantity``, ``time``).
    Dead-letter it with ``reason`` (``SchemaValidationFailed``) and ``description``.
    """

    reason = "SchemaValidationFailed"


class UnknownEventType(EventRejected):
    """A well-formed envelope whose type or version the registry does not hold.

    ``known_versions`` lists the versions of the same event name this build knows
    (empty for a new event name). Skip or park the event; do not dead-letter it as poison.
    """

    reason = "UnknownEventType"

    def __init__(self, description: str, *, event_type: str, known_versions: tuple[int, ...]):
        super().__init__(description, field="type")
        self.event_type = event_type
        self.known_versions = known_versions


@dataclass(frozen=True)
class RegisteredEvent:
    """The registry entry an event was validated against."""

    name: str
    version: int
    status: str
    cloudevents_type: str
    dataschema: str

    @property
    def deprecated(self) -> bool:
        return self.status == "deprecated"


def _date_time(value: object) -> bool:
    """RFC 3339 date-time: ISO 8601 with a date, a time and an offset (or ``Z``)."""
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
                        value):
        return False
    try:
        return datetime.fromisoformat(value.replace("z", "Z")).tzinfo is not None
    except ValueError:
        return False


_FORMATS = FormatChecker()
# jsonschema checks date-time only with an optional package installed; check it always,
# because a naive or garbled timestamp would be mis-ordered by every consumer.
_FORMATS.checks("date-time")(_date_time)


class Registry:
    """The schemas of one registry directory, with their compiled validators."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        self.envelope = self._compile(index["envelope"]["schema"])
        self.events: dict[str, RegisteredEvent] = {}
        self._schema_files: dict[str, str] = {}
        self._validators: dict[str, _Validator] = {}
        for entry in index["events"]:
            event = RegisteredEvent(
                name=entry["name"],
                version=int(entry["version"]),
                status=entry["status"],
                cloudevents_type=entry["cloudevents_type"],
                dataschema=entry["dataschema"],
            )
            self.events[event.cloudevents_type] = event
            self._schema_files[event.cloudevents_type] = entry["schema"]

    def _compile(self, relative: str) -> _Validator:
        schema = json.loads((self.directory / relative).read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        return _Validator(
            Draft202012Validator(schema, format_checker=_FORMATS),
            fastjsonschema.compile(schema, formats={"date-time": _date_time}),
        )

    def data_validator(self, cloudevents_type: str) -> _Validator:
        """The compiled validator of a registered type's ``data`` (compiled on first use)."""
        validator = self._validators.get(cloudevents_type)
        if validator is None:
            validator = self._compile(self._schema_files[cloudevents_type])
            self._validators[cloudevents_type] = validator
        return validator

    def validate(self, doc: Any) -> RegisteredEvent:
        """See :func:`validate_cloudevent`."""
        if not isinstance(doc, Mapping):
            raise SchemaValidationFailed(
                f"the message body is a JSON {type(doc).__name__}, not a CloudEvent object",
                field="",
            )
        _raise_first(self.envelope, doc, prefix="", what="CloudEvents envelope")
        event_type = str(doc["type"])
        event = self.events.get(event_type)
        if event is None:
            match = _TYPE.match(event_type)
            name = match.group("name") if match else event_type
            known = tuple(sorted(e.version for e in self.events.values() if e.name == name))
            if known:
                description = (f"{event_type} is not in this build's registry (known versions "
                               f"of {name}: {', '.join(f'v{v}' for v in known)}); skip or "
                               "park it until this consumer is upgraded")
            else:
                description = (f"{event_type} is an event type this build's registry does not "
                               "hold; skip or park it")
            raise UnknownEventType(description, event_type=event_type, known_versions=known)
        _raise_first(self.data_validator(event_type), doc["data"], prefix="data",
                     what=f"{event_type} ({event.dataschema})")
        return event


def _path(prefix: str, error: ValidationError) -> str:
    parts = [prefix] if prefix else []
    parts.extend(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [
            name for name in error.validator_value if name not in error.instance
        ]
        if missing:
            parts.append(str(missing[0]))
    return ".".join(parts) if parts else "(document)"


@dataclass(frozen=True)
class _Validator:
    """One schema, compiled twice: a fast gate for the common case (a valid event, a few
    microseconds with ``fastjsonschema``) and the reference validator (``jsonschema``,
    draft 2020-12) that explains a failure field by field."""

    explain: Draft202012Validator
    gate: Callable[[Any], Any]

    def passes(self, instance: Any) -> bool:
        try:
            self.gate(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


def _raise_first(validator: _Validator, instance: Any, *, prefix: str, what: str) -> None:
    if validator.passes(instance):
        return
    errors = sorted(validator.explain.iter_errors(instance),
                    key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))
    if not errors:
        return
    listed = [f"{_path(prefix, e)}: {e.message}" for e in errors[:_MAX_ERRORS_LISTED]]
    more = len(errors) - len(listed)
    description = f"{what}: " + "; ".join(listed) + (f"; and {more} more" if more else "")
    raise SchemaValidationFailed(description, field=_path(prefix, errors[0]))


@lru_cache(maxsize=8)
def load_registry(directory: Path = DEFAULT_REGISTRY) -> Registry:
    """The registry in ``directory``, read and compiled once per process."""
    return Registry(directory)


def validate_cloudevent(doc: Any, registry: Path | None = None) -> RegisteredEvent:
    """Validate a parsed CloudEvent (envelope, then ``data`` for its type and version).

    Returns the registry entry it matched. Raises :class:`SchemaValidationFailed` (the
    description names the failing field path) or :class:`UnknownEventType` (a type or
    version this registry does not hold: skip or park, never fail).
    """
    return load_registry(registry or DEFAULT_REGISTRY).validate(doc)


def validate_message_body(
    body: bytes | str, registry: Path | None = None
) -> tuple[dict[str, Any], RegisteredEvent]:
    """Parse a message body (UTF-8 JSON) and validate it; returns the document and its entry.

    A body that is not UTF-8 JSON raises :class:`SchemaValidationFailed` like any other
    malformed event, so a consumer has one path to the dead-letter queue.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SchemaValidationFailed(f"the message body is not UTF-8 JSON: {error}") from error
    event = validate_cloudevent(doc, registry)
    return doc, event
