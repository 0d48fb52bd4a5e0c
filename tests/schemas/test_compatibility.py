"""The compatibility checker on fixture pairs (old schema, new schema).

Every breaking rule has at least one pair that the checker must reject with a finding
naming the field and the rule; every additive change must pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from contracts.registry import (
    INDEX_FILE,
    RULES,
    Incompatibility,
    compare_registries,
    compare_schemas,
)

Schema = dict[str, Any]

#: A data schema shaped like the ones pydantic generates for the contract models.
BASE: Schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:stockstream:schemas:Example:v1",
    "title": "ExampleV1",
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        "on_hand": {"type": "integer"},
        "quantity": {"type": "integer", "minimum": 1},
        "reason": {"type": "string", "enum": ["damaged", "found", "other"]},
        "channel": {"type": "string"},
        "reference": {
            "anyOf": [{"type": "string", "maxLength": 200}, {"type": "null"}],
            "default": None,
        },
        "expires_at": {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
            "default": None,
        },
        "line": {"$ref": "#/$defs/Line"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "specversion": {"const": "1.0", "type": "string"},
    },
    "required": ["sku", "on_hand", "quantity", "reason", "channel", "line"],
    "$defs": {
        "Line": {
            "type": "object",
            "properties": {"price": {"type": "integer"}, "unit": {"type": "string"}},
            "required": ["price"],
        }
    },
}


def changed(mutate: Callable[[Schema], object]) -> Schema:
    new = copy.deepcopy(BASE)
    mutate(new)
    return new


def props(s: Schema) -> Schema:
    return s["properties"]  # type: ignore[no-any-return]


def _rename_quantity(s: Schema) -> None:
    props(s)["qty"] = props(s).pop("quantity")
    s["required"] = [("qty" if r == "quantity" else r) for r in s["required"]]


def _add_required_note(s: Schema) -> None:
    props(s)["note"] = {"type": "string"}
    s["required"].append("note")


# (id, mutation, field, rule, a phrase the detail must contain)
BREAKING: list[tuple[str, Callable[[Schema], object], str, str, str]] = [
    ("removed optional field", lambda s: props(s).pop("reference"),
     "reference", "removed-field", "field removed"),
    ("removed required field", lambda s: (props(s).pop("channel"), s["required"].remove("channel")),
     "channel", "removed-field", "consumers that read it break"),
    ("renamed field", _rename_quantity, "quantity", "renamed-field", "possibly renamed to 'qty'"),
    ("changed type", lambda s: props(s).__setitem__("quantity", {"type": "string"}),
     "quantity", "changed-type", "from integer to string"),
    ("made nullable", lambda s: props(s).__setitem__(
        "on_hand", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
     "on_hand", "changed-type", "from integer to integer|null"),
    ("new required field", _add_required_note, "note", "new-required-field", "no default"),
    ("optional became required", lambda s: s["required"].append("reference"),
     "reference", "new-required-field", "was optional"),
    ("required became optional", lambda s: s["required"].remove("quantity"),
     "quantity", "required-became-optional", "may now be missing"),
    ("narrowed enum", lambda s: props(s)["reason"]["enum"].remove("other"),
     "reason", "narrowed-enum", "'other'"),
    ("free text became an enum", lambda s: props(s)["channel"].__setitem__("enum", ["pos"]),
     "channel", "narrowed-enum", "now restricted to ['pos']"),
    ("changed const", lambda s: props(s)["specversion"].__setitem__("const", "2.0"),
     "specversion", "narrowed-enum", "'1.0'"),
    ("raised minimum", lambda s: props(s)["quantity"].__setitem__("minimum", 2),
     "quantity", "narrowed-range", "minimum raised from 1 to 2"),
    ("added minimum", lambda s: props(s)["on_hand"].__setitem__("minimum", 0),
     "on_hand", "narrowed-range", "minimum 0 added"),
    ("added maximum", lambda s: props(s)["quantity"].__setitem__("maximum", 100),
     "quantity", "narrowed-range", "maximum 100 added"),
    ("lowered maxLength inside anyOf", lambda s: props(s)["reference"]["anyOf"][0].__setitem__(
        "maxLength", 100), "reference", "narrowed-range", "maxLength lowered from 200 to 100"),
    ("added exclusiveMinimum", lambda s: props(s)["quantity"].__setitem__(
        "exclusiveMinimum", 5), "quantity", "narrowed-range", "exclusiveMinimum 5 added"),
    ("changed pattern", lambda s: props(s)["sku"].__setitem__("pattern", "^[A-Z]{1,64}$"),
     "sku", "narrowed-pattern", "^[A-Z]{1,64}$"),
    ("added pattern", lambda s: props(s)["channel"].__setitem__("pattern", "^[a-z]+$"),
     "channel", "narrowed-pattern", "from None"),
    ("changed format", lambda s: props(s)["expires_at"]["anyOf"][0].__setitem__(
        "format", "date"), "expires_at", "changed-format", "'date-time' to 'date'"),
    ("closed object", lambda s: s.__setitem__("additionalProperties", False),
     "", "closed-object", "no longer allowed"),
    ("nested field removed behind $ref", lambda s: s["$defs"]["Line"]["properties"].pop("unit"),
     "line.unit", "removed-field", "field removed"),
    ("nested type changed behind $ref", lambda s: s["$defs"]["Line"]["properties"].__setitem__(
        "price", {"type": "number"}), "line.price", "changed-type", "integer to number"),
    ("array items narrowed", lambda s: props(s)["tags"]["items"].__setitem__("maxLength", 8),
     "tags[]", "narrowed-range", "maxLength 8 added"),
]

ADDITIVE: list[tuple[str, Callable[[Schema], object]]] = [
    ("identical", lambda s: None),
    ("new optional field", lambda s: props(s).__setitem__(
        "note", {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None})),
    ("new optional field with a default", lambda s: props(s).__setitem__(
        "priority", {"type": "integer", "default": 0})),
    ("widened enum", lambda s: props(s)["reason"]["enum"].append("correction")),
    ("lowered minimum", lambda s: props(s)["quantity"].__setitem__("minimum", 0)),
    ("removed minimum", lambda s: props(s)["quantity"].pop("minimum")),
    ("raised maxLength", lambda s: props(s)["reference"]["anyOf"][0].__setitem__(
        "maxLength", 500)),
    ("removed pattern", lambda s: props(s)["sku"].pop("pattern")),
    ("documentation only", lambda s: s.update(title="Renamed", description="Reworded.")),
    ("field documentation only", lambda s: props(s)["on_hand"].__setitem__(
        "description", "Units on hand after this event.")),
    ("new optional nested field behind $ref", lambda s: s["$defs"]["Line"]["properties"]
     .__setitem__("currency", {"type": "string", "default": "EUR"})),
    ("inlined $ref with the same schema", lambda s: props(s).__setitem__(
        "line", copy.deepcopy(BASE["$defs"]["Line"]))),
]


@pytest.mark.parametrize(("case", "mutate", "field", "rule", "phrase"), BREAKING,
                         ids=[b[0] for b in BREAKING])
def test_checker_rejects_every_breaking_change_naming_field_and_rule(
    case: str, mutate: Callable[[Schema], object], field: str, rule: str, phrase: str
) -> None:
    findings = compare_schemas(BASE, changed(mutate), subject="Example v1")

    matching = [f for f in findings if (f.field, f.rule) == (field, rule)]
    assert matching, f"{case}: expected {rule} on {field!r}, got {[str(f) for f in findings]}"
    assert phrase in matching[0].detail
    where = f" field '{field}':" if field else ""
    assert str(matching[0]).startswith(f"Example v1:{where} {rule}: ")


@pytest.mark.parametrize(("case", "mutate"), ADDITIVE, ids=[a[0] for a in ADDITIVE])
def test_checker_accepts_every_additive_change(
    case: str, mutate: Callable[[Schema], object]
) -> None:
    assert compare_schemas(BASE, changed(mutate), subject="Example v1") == []


def test_every_schema_rule_has_a_breaking_fixture() -> None:
    schema_rules = {rule for _, _, _, rule, _ in BREAKING}
    registry_rules = {"deleted-event-type", "renamed-event-type", "changed-event-metadata",
                      "changed-version-without-new-file"}
    assert schema_rules | registry_rules == set(RULES)


def test_a_rename_also_reports_the_new_required_field() -> None:
    findings = compare_schemas(BASE, changed(_rename_quantity), subject="Example v1")

    assert Incompatibility("Example v1", "qty", "new-required-field",
                           "new field is required and has no default: events valid under "
                           "the old schema lack it") in findings


# ---------------------------------------------------------------- registry level


def entry(name: str, version: int, status: str = "current") -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "status": status,
        "schema": f"events/{name}.v{version}.json",
        "cloudevents_type": f"Stockstream.{name}.v{version}",
        "dataschema": f"urn:stockstream:schemas:{name}:v{version}",
    }


def registry(*entries: dict[str, Any], schemas: dict[str, Schema] | None = None
             ) -> dict[str, Schema]:
    files: dict[str, Schema] = {INDEX_FILE: {"events": list(entries)}}
    for e in entries:
        files[e["schema"]] = (schemas or {}).get(e["schema"], BASE)
    return files


def rules_of(findings: list[Incompatibility]) -> set[tuple[str, str]]:
    return {(f.subject, f.rule) for f in findings}


def test_deleting_a_current_event_type_is_breaking() -> None:
    old = registry(entry("StockAdjusted", 1), entry("StockReceived", 1))
    new = registry(entry("StockReceived", 1))

    findings = compare_registries(old, new)

    assert rules_of(findings) == {("StockAdjusted v1", "deleted-event-type")}


def test_renaming_an_event_type_is_reported_as_a_possible_rename() -> None:
    old = registry(entry("StockAdjusted", 1), entry("StockReceived", 1))
    new = registry(entry("StockCorrected", 1), entry("StockReceived", 1))

    findings = compare_registries(old, new)

    assert rules_of(findings) == {("StockAdjusted v1", "renamed-event-type")}
    assert "possibly renamed to StockCorrected" in findings[0].detail


def test_changing_the_dataschema_of_an_existing_version_is_breaking() -> None:
    moved = entry("StockAdjusted", 1) | {"dataschema": "https://example.org/adjusted"}

    findings = compare_registries(registry(entry("StockAdjusted", 1)), registry(moved))

    assert rules_of(findings) == {("StockAdjusted v1", "changed-event-metadata")}


def test_a_breaking_edit_of_an_existing_version_asks_for_a_new_version() -> None:
    narrowed = changed(lambda s: props(s)["reason"]["enum"].remove("other"))
    new = registry(entry("StockAdjusted", 1),
                   schemas={"events/StockAdjusted.v1.json": narrowed})

    findings = compare_registries(registry(entry("StockAdjusted", 1)), new)

    assert ("StockAdjusted v1", "narrowed-enum") in rules_of(findings)
    summary = [f for f in findings if f.rule == "changed-version-without-new-file"]
    assert len(summary) == 1
    assert "publish the change as StockAdjusted v2" in summary[0].detail


def test_adding_the_next_version_alongside_the_old_one_is_compatible() -> None:
    changed_v2 = changed(lambda s: props(s)["reason"]["enum"].remove("other"))
    new = registry(entry("StockAdjusted", 1, "deprecated"), entry("StockAdjusted", 2),
                   schemas={"events/StockAdjusted.v2.json": changed_v2})

    assert compare_registries(registry(entry("StockAdjusted", 1)), new) == []


def test_retiring_a_deprecated_version_is_compatible() -> None:
    old = registry(entry("StockAdjusted", 1, "deprecated"), entry("StockAdjusted", 2))
    new = registry(entry("StockAdjusted", 2))

    assert compare_registries(old, new) == []


def test_deleting_a_version_that_was_never_deprecated_is_breaking() -> None:
    old = registry(entry("StockAdjusted", 1), entry("StockReceived", 1))
    new = registry(entry("StockAdjusted", 2), entry("StockReceived", 1))

    assert rules_of(compare_registries(old, new)) == {("StockAdjusted v1", "deleted-event-type")}
