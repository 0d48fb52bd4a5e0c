"""The event schema registry: generated from the contract models, and guarded by CI.

The registry under ``schemas/`` is what downstream teams build against:

- ``schemas/events/<Name>.v<N>.json``: one JSON Schema (draft 2020-12) per event type and
  version, for the CloudEvents ``data`` member; its ``$id`` is the event's ``dataschema``;
- ``schemas/cloudevent.json``: the CloudEvents envelope every event travels in;
- ``schemas/index.json``: every type and version, its status (``current`` or
  ``deprecated``), schema file, CloudEvents ``type`` and ``dataschema``;
- ``asyncapi.yaml`` (repository root): the topic, its messages (by reference to the files
  above), the Service Bus properties and the replay semantics.

The single source of truth is :data:`contracts.processes.PUBLISHED_WIRE_TYPES` (the stock
types of :data:`contracts.cloudevents.WIRE_TYPES` and every published process kind's) and
the pydantic models in :mod:`contracts.events`. The highest version of an event name is ``current``;
every lower version still listed is ``deprecated`` (published in parallel until it is
retired). Publishing a breaking change is therefore one new ``WireType`` line next to the
old one, plus ``make schemas``.

``python -m contracts.registry check`` (``make schemas-check``) compares the models with
the committed registry and exits non-zero when

- a change is backward-incompatible (exit 1): each finding names the type, version, field
  and rule (see :func:`compare_schemas` and :func:`compare_registries`);
- the registry is merely stale (exit 3): compatible, but not regenerated. This fails too,
  so the committed registry never lies about what the service publishes.

``python -m contracts.registry generate`` (``make schemas``) rewrites the registry, but
refuses (exit 1, nothing written) when the models break compatibility with the committed
registry: regenerating must not be a way to make a breaking change pass the check.
``--allow-breaking`` overrides that for a deliberate, reviewed break.

The comparison functions are pure (documents in, findings out) so they are tested on
fixture pairs without files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.cloudevents import CONTENT_TYPE, WireType
from contracts.events import CloudEvent
from contracts.processes import (
    PROCESS_KINDS,
    PROCESS_WIRE_TYPES,
    PUBLISHED_WIRE_TYPES,
)
from contracts.topology import TOPIC
from domain.identifiers import IDENTIFIER_PATTERN

JsonDoc = dict[str, Any]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
REGISTRY_DIR = "schemas"
INDEX_FILE = "index.json"
ENVELOPE_FILE = "cloudevent.json"
EVENTS_DIR = "events"
ENVELOPE_ID = "urn:stockstream:schemas:CloudEvent:v1"
ASYNCAPI_FILE = "asyncapi.yaml"

CURRENT = "current"
DEPRECATED = "deprecated"

EXIT_OK = 0
EXIT_INCOMPATIBLE = 1
EXIT_STALE = 3


# ------------------------------------------------------------------------ generation


def event_schema_file(name: str, version: int) -> str:
    """The registry-relative path of an event type and version's data schema."""
    return f"{EVENTS_DIR}/{name}.v{version}.json"


def statuses(wire_types: Sequence[WireType]) -> dict[tuple[str, int], str]:
    """``current`` for the highest version of each event name, ``deprecated`` below it.

    Raises ``ValueError`` if a name and version is listed twice or a version is below 1.
    """
    seen: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    for wire in wire_types:
        key = (wire.name, wire.version)
        if key in seen:
            raise ValueError(f"{wire.name} v{wire.version} is listed twice in WIRE_TYPES")
        if wire.version < 1:
            raise ValueError(f"{wire.name} has version {wire.version}; versions start at 1")
        seen.add(key)
        highest[wire.name] = max(highest.get(wire.name, 0), wire.version)
    return {key: CURRENT if highest[key[0]] == key[1] else DEPRECATED for key in seen}


def data_schema(wire: WireType, status: str = CURRENT) -> JsonDoc:
    """The JSON Schema of ``wire``'s ``data`` member, as its pydantic model reads it.

    Validation mode: a field with a default is optional, so adding one is additive.
    """
    schema: JsonDoc = {
        "$schema": DRAFT_2020_12,
        "$id": wire.schema_uri,
        **wire.model.model_json_schema(mode="validation"),
    }
    if status == DEPRECATED:
        schema["deprecated"] = True
    return schema


def envelope_schema() -> JsonDoc:
    """The JSON Schema of the CloudEvents envelope (``data`` checked per type apart)."""
    return {
        "$schema": DRAFT_2020_12,
        "$id": ENVELOPE_ID,
        **CloudEvent.model_json_schema(mode="validation"),
    }


def index_document(wire_types: Sequence[WireType]) -> JsonDoc:
    """The machine-readable index of the registry."""
    status = statuses(wire_types)
    events = [
        {
            "name": wire.name,
            "version": wire.version,
            "status": status[(wire.name, wire.version)],
            "schema": event_schema_file(wire.name, wire.version),
            "cloudevents_type": wire.type,
            "dataschema": wire.schema_uri,
        }
        for wire in sorted(wire_types, key=lambda w: (w.name, w.version))
    ]
    return {
        "envelope": {"schema": ENVELOPE_FILE, "id": ENVELOPE_ID},
        "events": events,
    }


def build_registry(wire_types: Sequence[WireType] = PUBLISHED_WIRE_TYPES) -> dict[str, JsonDoc]:
    """Every registry file (path relative to ``schemas/``) and its document."""
    status = statuses(wire_types)
    files: dict[str, JsonDoc] = {
        INDEX_FILE: index_document(wire_types),
        ENVELOPE_FILE: envelope_schema(),
    }
    for wire in wire_types:
        files[event_schema_file(wire.name, wire.version)] = data_schema(
            wire, status[(wire.name, wire.version)]
        )
    return files


def render_json(doc: Any) -> str:
    """Canonical text of a registry file: sorted keys, two-space indent, final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------- compatibility


@dataclass(frozen=True)
class Incompatibility:
    """One backward-incompatible difference between a committed schema and the models.

    ``subject`` names the event type and version (or the envelope), ``field`` the dotted
    path of the field (empty for the whole event), ``rule`` the broken rule.
    """

    subject: str
    field: str
    rule: str
    detail: str

    def __str__(self) -> str:
        where = f" field '{self.field}':" if self.field else ""
        return f"{self.subject}:{where} {self.rule}: {self.detail}"


#: The rules the checker enforces, for documentation and tests.
RULES = (
    "removed-field",
    "renamed-field",
    "changed-type",
    "new-required-field",
    "required-became-optional",
    "narrowed-enum",
    "narrowed-range",
    "narrowed-pattern",
    "changed-format",
    "closed-object",
    "deleted-event-type",
    "renamed-event-type",
    "changed-event-metadata",
    "changed-version-without-new-file",
)

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_MAX_DEPTH = 32


def compare_schemas(old: JsonDoc, new: JsonDoc, *, subject: str = "") -> list[Incompatibility]:
    """Every way a document valid under ``old`` (and a consumer built on it) breaks on ``new``.

    Compatible (not reported): a new optional field, a widened enum or range, a removed
    pattern or bound, new documentation. Reported: see :data:`RULES`. A pattern or format
    that changed at all is reported, because the checker cannot prove that the new one
    accepts everything the old one did. Local ``$ref`` s (``#/$defs/...``) are followed.
    """
    findings: list[Incompatibility] = []
    _compare(old, old, new, new, "", subject, findings, 0)
    unique: list[Incompatibility] = []
    for finding in findings:
        if finding not in unique:
            unique.append(finding)
    return unique


def _resolve(schema: Any, root: JsonDoc) -> JsonDoc:
    """``schema`` with a local ``$ref`` replaced by its target (siblings kept)."""
    if not isinstance(schema, dict):
        return {} if schema is True else {"not": {}}
    resolved: JsonDoc = schema
    hops = 0
    while isinstance(resolved.get("$ref"), str) and resolved["$ref"].startswith("#/"):
        target: Any = root
        for part in resolved["$ref"][2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        siblings = {k: v for k, v in resolved.items() if k != "$ref"}
        resolved = {**target, **siblings}
        hops += 1
        if hops > _MAX_DEPTH:
            break
    return resolved


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _branches(schema: Any, root: JsonDoc) -> dict[str, JsonDoc]:
    """The schema's alternatives by JSON type (``anyOf``/``oneOf`` flattened)."""
    s = _resolve(schema, root)
    alternatives = s.get("anyOf") or s.get("oneOf")
    if isinstance(alternatives, list) and alternatives:
        out: dict[str, JsonDoc] = {}
        for alternative in alternatives:
            out.update(_branches(alternative, root))
        return out
    types = s.get("type")
    if types is None:
        values = s.get("enum", [s["const"]] if "const" in s else None)
        if isinstance(values, list):
            types = sorted({_json_type(v) for v in values})
        elif "properties" in s:
            types = "object"
        else:
            types = "any"
    if isinstance(types, str):
        types = [types]
    return {str(t): s for t in types}


def _allowed_values(schema: JsonDoc) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _compare(
    old: Any,
    old_root: JsonDoc,
    new: Any,
    new_root: JsonDoc,
    path: str,
    subject: str,
    findings: list[Incompatibility],
    depth: int,
) -> None:
    if depth > _MAX_DEPTH:
        return

    def report(rule: str, detail: str) -> None:
        findings.append(Incompatibility(subject, path, rule, detail))

    old_branches = _branches(old, old_root)
    new_branches = _branches(new, new_root)
    if set(old_branches) != set(new_branches):
        report(
            "changed-type",
            f"type changed from {'|'.join(sorted(old_branches))} "
            f"to {'|'.join(sorted(new_branches))}",
        )
    for type_name in sorted(set(old_branches) & set(new_branches)):
        o, n = old_branches[type_name], new_branches[type_name]
        old_values, new_values = _allowed_values(o), _allowed_values(n)
        if new_values is not None:
            if old_values is None:
                report("narrowed-enum", f"now restricted to {new_values!r}")
            else:
                dropped = [v for v in old_values if v not in new_values]
                if dropped:
                    report("narrowed-enum", f"values no longer allowed: {dropped!r}")
        for key in _LOWER_BOUNDS:
            if key in n and (key not in o or n[key] > o[key]):
                report("narrowed-range", f"{key} raised from {o[key]!r} to {n[key]!r}"
                       if key in o else f"{key} {n[key]!r} added")
        for key in _UPPER_BOUNDS:
            if key in n and (key not in o or n[key] < o[key]):
                report("narrowed-range", f"{key} lowered from {o[key]!r} to {n[key]!r}"
                       if key in o else f"{key} {n[key]!r} added")
        if "multipleOf" in n and n["multipleOf"] != o.get("multipleOf"):
            report("narrowed-range", f"multipleOf changed from {o.get('multipleOf')!r} "
                   f"to {n['multipleOf']!r}")
        if n.get("uniqueItems") is True and o.get("uniqueItems") is not True:
            report("narrowed-range", "uniqueItems added")
        if "pattern" in n and n["pattern"] != o.get("pattern"):
            report("narrowed-pattern", f"pattern changed from {o.get('pattern')!r} "
                   f"to {n['pattern']!r}")
        if "format" in n and n["format"] != o.get("format"):
            report("changed-format", f"format changed from {o.get('format')!r} "
                   f"to {n['format']!r}")
        if type_name in ("object", "any"):
            _compare_object(o, old_root, n, new_root, path, subject, findings, depth)
        if type_name in ("array", "any") and ("items" in o or "items" in n):
            _compare(o.get("items", True), old_root, n.get("items", True), new_root,
                     f"{path}[]", subject, findings, depth + 1)


def _compare_object(
    old: JsonDoc,
    old_root: JsonDoc,
    new: JsonDoc,
    new_root: JsonDoc,
    path: str,
    subject: str,
    findings: list[Incompatibility],
    depth: int,
) -> None:
    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    old_required = set(old.get("required", []))
    new_required = set(new.get("required", []))
    removed = sorted(set(old_props) - set(new_props))
    added = sorted(set(new_props) - set(old_props))
    for name in removed:
        if added:
            findings.append(Incompatibility(
                subject, at(name), "renamed-field",
                f"field removed, possibly renamed to {', '.join(repr(a) for a in added)}: "
                "a rename is a removal plus an addition, and consumers reading "
                f"{name!r} break",
            ))
        else:
            findings.append(Incompatibility(
                subject, at(name), "removed-field",
                "field removed: consumers that read it break",
            ))
    for name in added:
        if name in new_required:
            findings.append(Incompatibility(
                subject, at(name), "new-required-field",
                "new field is required and has no default: events valid under the old "
                "schema lack it",
            ))
    for name in sorted(set(old_props) & set(new_props)):
        if name in new_required and name not in old_required:
            findings.append(Incompatibility(
                subject, at(name), "new-required-field",
                "field was optional and is now required (give it a default)",
            ))
        if name in old_required and name not in new_required:
            findings.append(Incompatibility(
                subject, at(name), "required-became-optional",
                "field was always present and may now be missing",
            ))
        _compare(old_props[name], old_root, new_props[name], new_root, at(name), subject,
                 findings, depth + 1)
    old_extra = old.get("additionalProperties", True)
    new_extra = new.get("additionalProperties", True)
    if new_extra is False and old_extra is not False:
        findings.append(Incompatibility(
            subject, path, "closed-object",
            "additional properties are no longer allowed",
        ))


def _events_of(index: Mapping[str, Any]) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {(str(e["name"]), int(e["version"])): e for e in index.get("events", [])}


def compare_registries(
    old: Mapping[str, JsonDoc], new: Mapping[str, JsonDoc]
) -> list[Incompatibility]:
    """Every backward-incompatible difference from the ``old`` registry to the ``new`` one.

    Both map registry-relative paths to documents and hold ``index.json``. A version
    listed in ``old`` but not in ``new`` is a deleted event type unless it was already
    ``deprecated`` (retiring a version after its deprecation period is the policy). A
    breaking change to an existing version is additionally reported once as
    ``changed-version-without-new-file``: it must ship as a new version instead.
    """
    old_index, new_index = old.get(INDEX_FILE), new.get(INDEX_FILE)
    if old_index is None or new_index is None:
        return []
    old_events, new_events = _events_of(old_index), _events_of(new_index)
    old_names = {name for name, _ in old_events}
    new_names = {name for name, _ in new_events}
    findings: list[Incompatibility] = []
    for name, version in sorted(set(old_events) - set(new_events)):
        if old_events[(name, version)].get("status") == DEPRECATED:
            continue
        subject = f"{name} v{version}"
        appeared = sorted(new_names - old_names)
        if name not in new_names and appeared:
            findings.append(Incompatibility(
                subject, "", "renamed-event-type",
                f"event type no longer published, possibly renamed to "
                f"{', '.join(appeared)}: consumers subscribed to "
                f"{old_events[(name, version)].get('cloudevents_type')} stop receiving it",
            ))
        else:
            findings.append(Incompatibility(
                subject, "", "deleted-event-type",
                "a current version is no longer published; deprecate it first (add the "
                "next version alongside it) and retire it after the deprecation period",
            ))
    for key in sorted(set(old_events) & set(new_events)):
        name, version = key
        subject = f"{name} v{version}"
        o, n = old_events[key], new_events[key]
        for attribute in ("cloudevents_type", "dataschema"):
            if o.get(attribute) != n.get(attribute):
                findings.append(Incompatibility(
                    subject, "", "changed-event-metadata",
                    f"{attribute} changed from {o.get(attribute)!r} to {n.get(attribute)!r}",
                ))
        old_schema, new_schema = old.get(str(o.get("schema"))), new.get(str(n.get("schema")))
        if old_schema is None or new_schema is None:
            continue
        breaks = compare_schemas(old_schema, new_schema, subject=subject)
        findings.extend(breaks)
        if breaks:
            findings.append(Incompatibility(
                subject, "", "changed-version-without-new-file",
                f"the schema of an existing version changed incompatibly; keep "
                f"{name} v{version} as it is and publish the change as {name} "
                f"v{max(v for nm, v in new_events if nm == name) + 1}: a new "
                "WireType in contracts/cloudevents.py WIRE_TYPES next to the old one, "
                "then `make schemas`",
            ))
    if ENVELOPE_FILE in old and ENVELOPE_FILE in new:
        findings.extend(compare_schemas(old[ENVELOPE_FILE], new[ENVELOPE_FILE],
                                        subject="CloudEvents envelope"))
    return findings


# ------------------------------------------------------------------------- AsyncAPI


def message_key(wire: WireType) -> str:
    """The AsyncAPI component name of a wire type (``StockAdjustedV1``)."""
    return f"{wire.name}V{wire.version}"


def asyncapi_document(wire_types: Sequence[WireType] = PUBLISHED_WIRE_TYPES) -> JsonDoc:
    """The AsyncAPI 3.0 document of the ``inventory-events`` topic, from ``wire_types``.

    Message payloads reference the registry files; the schema format is declared as
    draft-07 because the AsyncAPI parser supports no later JSON Schema draft, and the
    registry uses only keywords that mean the same in draft-07 and 2020-12 (tested).
    """
    status = statuses(wire_types)
    ordered = sorted(wire_types, key=lambda w: (w.name, w.version))
    channel_ref = "#/channels/inventoryEvents"
    message_refs = [
        {"$ref": f"{channel_ref}/messages/{message_key(w)}"} for w in ordered
    ]
    messages: JsonDoc = {}
    for wire in ordered:
        deprecated = status[(wire.name, wire.version)] == DEPRECATED
        summary = (wire.model.__doc__ or wire.name).strip().splitlines()[0]
        messages[message_key(wire)] = {
            "name": wire.type,
            "title": f"{wire.name} v{wire.version}"
            + (" (deprecated)" if deprecated else ""),
            "summary": summary,
            "contentType": CONTENT_TYPE,
            "headers": {"$ref": "#/components/schemas/" + (
                "ProcessApplicationProperties" if wire in PROCESS_WIRE_TYPES
                else "ApplicationProperties")},
            "correlationId": {"$ref": "#/components/correlationIds/EventId"},
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-07",
                "schema": {
                    "allOf": [
                        {"$ref": f"./{REGISTRY_DIR}/{ENVELOPE_FILE}"},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": wire.type},
                                "dataschema": {"const": wire.schema_uri},
                                "data": {
                                    "$ref": f"./{REGISTRY_DIR}/"
                                    f"{event_schema_file(wire.name, wire.version)}"
                                },
                            },
                        },
                    ]
                },
            },
            "tags": [{"name": DEPRECATED if deprecated else CURRENT}],
        }
    types = [w.type for w in ordered if w not in PROCESS_WIRE_TYPES]
    process_types = [w.type for w in ordered if w in PROCESS_WIRE_TYPES]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Stockstream inventory events",
            "version": "1.0.0",
            "description": _ASYNCAPI_INFO,
            "license": {"name": "MIT"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "azure": {
                "host": "{namespace}.servicebus.windows.net",
                "protocol": "amqp",
                "protocolVersion": "1.0",
                "description": "The Azure Service Bus namespace (AMQP 1.0 over TLS, port 5671).",
                "variables": {
                    "namespace": {"description": "The Service Bus namespace name."}
                },
            }
        },
        "channels": {
            "inventoryEvents": {
                "address": TOPIC,
                "title": "Inventory events topic",
                "description": _ASYNCAPI_CHANNEL,
                "messages": {
                    message_key(w): {"$ref": f"#/components/messages/{message_key(w)}"}
                    for w in ordered
                },
                "x-servicebus": {
                    "entity": "topic",
                    "requiresDuplicateDetection": True,
                    "duplicateDetectionHistoryTimeWindow": "at least P1D",
                    "supportOrdering": True,
                    "messageId": "{sku}|{location}:{sequence}",
                    "sessionId": "{sku}|{location}",
                    "processMessageId": "{process}:{processId}:{sequence}",
                    "processSessionId": "{process}:{processId}",
                    "subject": "the CloudEvents type",
                    "contentType": CONTENT_TYPE,
                    "exampleSubscription": _example_subscription(types),
                },
            }
        },
        "operations": {
            "publishInventoryEvent": {
                "action": "send",
                "channel": {"$ref": channel_ref},
                "title": "Publish an event",
                "summary": "The relay publishes every stored event once per stream version.",
                "description": _ASYNCAPI_PUBLISH,
                "messages": message_refs,
            },
            "replayDeadLetteredEvent": {
                "action": "send",
                "channel": {"$ref": channel_ref},
                "title": "Replay a dead-lettered event to one subscription",
                "summary": "Re-publishes a dead-lettered event to the subscription that "
                "failed it.",
                "description": _ASYNCAPI_REPLAY,
                "messages": message_refs,
            },
        },
        "components": {
            "schemas": {
                "ApplicationProperties": _application_properties(types),
                "ProcessApplicationProperties": _process_application_properties(
                    process_types),
            },
            "correlationIds": {
                "EventId": {
                    "description": "The CloudEvents id `{sku}|{location}:{sequence}` (a "
                    "process's event: `{process}:{processId}:{sequence}`): the "
                    "same for an original and its replays, so consumers dedupe on it.",
                    "location": "$message.payload#/id",
                }
            },
            "messages": messages,
        },
    }


def _application_properties(types: Sequence[str]) -> JsonDoc:
    identifier = IDENTIFIER_PATTERN
    return {
        "type": "object",
        "description": "Service Bus application properties of every message: what a "
        "subscription rule can filter on (SQL or correlation filters).",
        "required": ["type", "sku", "location", "sequence", "replayTarget"],
        "properties": {
            "type": {
                "type": "string",
                "description": "The CloudEvents type, `Stockstream.<Name>.v<N>`. New types "
                "and versions appear over time: filter on the ones you handle.",
                "examples": list(types),
            },
            "sku": {"type": "string", "pattern": identifier},
            "location": {"type": "string", "pattern": identifier},
            "sequence": {
                "type": "integer",
                "minimum": 1,
                "description": "The stream version of the event (1, 2, ... per "
                "SKU-location, without gaps).",
            },
            "replayTarget": {
                "type": "string",
                "description": "`all` on a normal publication; the name of one "
                "subscription on a replay of a dead-lettered event.",
            },
        },
    }


def _process_application_properties(types: Sequence[str]) -> JsonDoc:
    kinds = [kind.name for kind in PROCESS_KINDS]
    return {
        "type": "object",
        "description": "Service Bus application properties of a process's event (an "
        "order's, a transfer's): no `sku` or `location`, so a rule on those, or on stock "
        "types, never selects it; filter on `process` (or `type`) to receive them.",
        "required": ["type", "process", "processId", "sequence", "replayTarget"],
        "properties": {
            "type": {
                "type": "string",
                "description": "The CloudEvents type, `Stockstream.<Name>.v<N>`.",
                "examples": list(types),
            },
            "process": {
                "type": "string",
                "enum": kinds,
                "description": "The kind of process; the prefix of the session id.",
            },
            "processId": {
                "type": "string",
                "pattern": IDENTIFIER_PATTERN,
                "description": "The process's id (an order's `order_id`, a transfer's "
                "`transfer_id`).",
            },
            "sequence": {
                "type": "integer",
                "minimum": 1,
                "description": "The process stream's version of the event (1, 2, ... per "
                "process, without gaps).",
            },
            "replayTarget": {
                "type": "string",
                "description": "`all` on a normal publication; the name of one "
                "subscription on a replay of a dead-lettered event.",
            },
        },
    }


def _example_subscription(types: Sequence[str]) -> JsonDoc:
    wanted = [t for t in types if ".StockReserved." in t or ".ReservationReleased." in t
              or ".ReservationFulfilled." in t] or list(types[:1])
    listed = ", ".join(f"'{t}'" for t in wanted)
    return {
        "name": "web-shop",
        "requiresSession": True,
        "maxDeliveryCount": 10,
        "deadLetteringOnMessageExpiration": True,
        "rules": [
            {
                "name": "$Default",
                "filterType": "SqlFilter",
                "sqlExpression": f"replayTarget = 'all' AND type IN ({listed}) "
                "AND location LIKE 'store-%'",
            },
            {
                "name": "replay",
                "filterType": "SqlFilter",
                "sqlExpression": f"replayTarget = 'web-shop' AND type IN ({listed})",
            },
        ],
        "note": "Overwrite $Default with the live filter, after creating the replay rule, "
        "so no accept-everything rule remains whether or not Azure removed it. Rules are "
        "OR'ed and a matching message is copied once.",
    }


_ASYNCAPI_INFO = """\
Every change to the stock of a SKU at a location, and every step of an order across
SKU-locations and of a transfer between locations, published by Stockstream as a
CloudEvents 1.0 JSON document (structured mode) on one Azure Service Bus topic.

Generated by `python -m contracts.registry generate` (`make schemas`) from the contract
models; do not edit by hand. The JSON Schemas live in `schemas/` (draft 2020-12;
`schemas/index.json` lists every type, version and status). A guide for downstream teams
is in `docs/downstream.md`.

Every stock event's `data` carries the SKU, the location and the position *after* the
event (`on_hand`, `reserved`, `available`): apply it as "at sequence V the position is X"
(set, not add), which is idempotent by construction. An order's events (`Stockstream.Order*`)
name the order instead, in sessions `order:{order_id}`; a transfer's
(`Stockstream.Transfer*`) name the transfer, in sessions `transfer:{transfer_id}`.
"""

_ASYNCAPI_CHANNEL = """\
One topic for every event. Sessions partition it by SKU-location:

- **Message id** `{sku}|{location}:{sequence}` (the CloudEvents `id`). Duplicate detection
  on the topic drops a re-publication of the same event within its window.
- **Session id** `{sku}|{location}` (the CloudEvents `subject`). Order holds per session
  (FIFO) up to a dead-lettered message; across sessions there is no order.
- **Subject** the CloudEvents `type`; **content type** `application/cloudevents+json`.
- **Application properties** `type`, `sku`, `location`, `sequence`, `replayTarget`, for
  subscription rules (see `ApplicationProperties`).

Processes (orders, transfers) publish on the same topic in sessions of their own: message id
`{process}:{processId}:{sequence}` (`order:ORD-1:3`), session id `{process}:{processId}`
(`order:ORD-1`), and application properties `type`, `process`, `processId`, `sequence`,
`replayTarget` (see `ProcessApplicationProperties`) without `sku` or `location`, so a
rule filtering on those or on stock types never selects them. Filter on
`process = 'order'` or `process = 'transfer'` (`transfer:T-1:2`, session `transfer:T-1`)
to receive them. Their `data` names the process (`order_id`, `transfer_id`) and carries
no position: a transfer's units move as stock events of its two locations
(`StockTransferShipped`, `StockIncomingSet`, `StockTransferReceived`, `StockTransitLost`).

Every subscription needs two kinds of rule (rules are OR'ed): one accepting
`replayTarget = 'all'` (normal traffic) and one accepting `replayTarget = '<its own name>'`
(replays meant for it). `x-servicebus.exampleSubscription` shows a downstream team's
subscription with SQL filters.
"""

_ASYNCAPI_PUBLISH = """\
Published at least once by the relay (change feed or poller) after the event was committed
to its stream. `replayTarget` is `all`; the Service Bus message id is the CloudEvents id, so
a relay retry within the duplicate-detection window is dropped by the topic. A consumer
still sees a redelivery when it abandons a message or loses its lock: dedupe on the
CloudEvents `id` (or `sequence` per `subject`).
"""

_ASYNCAPI_REPLAY = """\
A message a subscription dead-lettered is re-published with the same body and session id,
`replayTarget` set to that subscription's name (so only it receives the copy) and a new
message id `<id>:replay:<n>` (n = 1, 2, ...), so duplicate detection does not drop it. The
CloudEvents `id` inside is unchanged. A replayed event usually arrives *after* newer events
of its session: consumers compare `sequence` with what they applied per `subject`.
"""


# ---------------------------------------------------------------------------- files


def render_yaml(doc: JsonDoc) -> str:
    """Stable YAML text: keys in the document's order, multi-line strings as blocks."""
    import yaml  # a tool dependency (requirements-dev.txt), only needed to write

    # A private subclass, so the representer does not change yaml.SafeDumper globally.
    dumper_class: Any = type("_RegistryDumper", (yaml.SafeDumper,), {})

    def _str(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    dumper_class.add_representer(str, _str)
    text: str = yaml.dump(doc, Dumper=dumper_class, sort_keys=False, allow_unicode=True,
                          width=100, default_flow_style=False)
    return "# Generated by `make schemas` (python -m contracts.registry generate). " \
        "Do not edit.\n" + text


def expected_files(wire_types: Sequence[WireType] = PUBLISHED_WIRE_TYPES) -> dict[str, str]:
    """Every generated file (path relative to the repository root) and its text."""
    files = {
        f"{REGISTRY_DIR}/{path}": render_json(doc)
        for path, doc in build_registry(wire_types).items()
    }
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document(wire_types))
    return files


def committed_files(root: Path) -> dict[str, str]:
    """The generated files as they are in the work tree at ``root`` (registry and AsyncAPI)."""
    files: dict[str, str] = {}
    registry = root / REGISTRY_DIR
    if registry.is_dir():
        for path in sorted(registry.rglob("*.json")):
            files[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
    asyncapi = root / ASYNCAPI_FILE
    if asyncapi.is_file():
        files[ASYNCAPI_FILE] = asyncapi.read_text(encoding="utf-8")
    return files


def _registry_docs(files: Mapping[str, str]) -> dict[str, JsonDoc]:
    """Parse the registry part of ``files``; an unparsable file is left out."""
    prefix = f"{REGISTRY_DIR}/"
    docs: dict[str, JsonDoc] = {}
    for path, text in files.items():
        if path.startswith(prefix) and path.endswith(".json"):
            try:
                docs[path[len(prefix):]] = json.loads(text)
            except json.JSONDecodeError:
                continue
    return docs


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found: breaking changes, and files that are not as generated."""

    incompatibilities: tuple[Incompatibility, ...]
    stale: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        if self.incompatibilities:
            return EXIT_INCOMPATIBLE
        return EXIT_STALE if self.stale else EXIT_OK


def check_files(committed: Mapping[str, str], expected: Mapping[str, str]) -> CheckReport:
    """Compare committed generated files with the ones the models produce (pure)."""
    incompatibilities = compare_registries(_registry_docs(committed), _registry_docs(expected))
    stale: list[str] = []
    for path in sorted(set(committed) | set(expected)):
        if path not in committed:
            stale.append(f"{path}: missing")
        elif path not in expected:
            stale.append(f"{path}: not generated from the models (remove it)")
        elif committed[path] != expected[path]:
            stale.append(f"{path}: differs from what the models generate")
    return CheckReport(tuple(incompatibilities), tuple(stale))


def _print_incompatibilities(report: CheckReport, out: Any) -> None:
    print(f"BACKWARD-INCOMPATIBLE event contract changes ({len(report.incompatibilities)}):",
          file=out)
    for finding in report.incompatibilities:
        print(f"  {finding}", file=out)
    print("Breaking changes ship as a new version published alongside the old one "
          "(docs/downstream.md, deprecation policy).", file=out)


def check(root: Path, out: Any = sys.stdout) -> int:
    """``make schemas-check``: 0 when the registry matches the models, else 1 or 3."""
    report = check_files(committed_files(root), expected_files())
    if report.incompatibilities:
        _print_incompatibilities(report, out)
    elif report.stale:
        print("The schema registry is stale (compatible, but not generated from the "
              "current models):", file=out)
        for line in report.stale:
            print(f"  {line}", file=out)
        print("Run `make schemas` and commit the result.", file=out)
    else:
        count = len(PUBLISHED_WIRE_TYPES)
        print(f"Schema registry matches the contract models ({count} event versions).",
              file=out)
    return report.exit_code


def generate(root: Path, *, allow_breaking: bool = False, out: Any = sys.stdout) -> int:
    """``make schemas``: write the registry and AsyncAPI document; refuse breaking changes."""
    committed = committed_files(root)
    expected = expected_files()
    report = check_files(committed, expected)
    if report.incompatibilities and not allow_breaking:
        _print_incompatibilities(report, out)
        print("Nothing written. Use --allow-breaking only for a deliberate, reviewed break.",
              file=out)
        return EXIT_INCOMPATIBLE
    for path in committed:
        if path not in expected:
            (root / path).unlink()
    written = 0
    for path, text in expected.items():
        if committed.get(path) != text:
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written += 1
    print(f"Schema registry generated: {written} file(s) written, "
          f"{len(expected)} up to date in total.", file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.registry",
        description="Generate or check the event schema registry (schemas/, asyncapi.yaml).",
    )
    parser.add_argument("command", choices=("generate", "check"))
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="repository root (default: the current directory)")
    parser.add_argument("--allow-breaking", action="store_true",
                        help="generate even if the change is backward-incompatible")
    args = parser.parse_args(argv)
    if args.command == "generate":
        return generate(args.root, allow_breaking=args.allow_breaking)
    return check(args.root)


if __name__ == "__main__":
    sys.exit(main())
