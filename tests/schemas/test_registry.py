"""The committed registry: in step with the models, deterministic, and guarded by the check.

The end-to-end tests work on a temporary copy of the packages the registry is generated
from, edit a contract model there and run ``python -m contracts.registry`` in it, as
``make schemas`` / ``make schemas-check`` do.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from contracts.cloudevents import WIRE_TYPES, WireType
from contracts.events import StockReceivedV1
from contracts.processes import PUBLISHED_WIRE_TYPES
from contracts.registry import (
    EXIT_INCOMPATIBLE,
    EXIT_OK,
    EXIT_STALE,
    INDEX_FILE,
    build_registry,
    check,
    check_files,
    committed_files,
    compare_registries,
    expected_files,
    render_json,
    statuses,
)
from domain.stock_item import StockItem

ROOT = Path(__file__).resolve().parents[2]

#: Keywords whose meaning is the same in draft-07 and 2020-12, so the AsyncAPI document
#: may declare the registry's schemas as draft-07 (its parser knows no later draft).
PORTABLE_KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "title", "description", "default", "examples",
    "deprecated", "type", "properties", "required", "additionalProperties", "items",
    "enum", "const", "anyOf", "oneOf", "allOf", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
    "maxItems", "uniqueItems",
}


def _keywords(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    found |= _keywords(sub)
            elif key not in ("enum", "const", "default", "examples"):
                found |= _keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _keywords(item)
    return found


# ------------------------------------------------------------------ committed state


def test_schemas_check_passes_on_the_committed_registry() -> None:
    out = io.StringIO()

    assert check(ROOT, out=out) == EXIT_OK, out.getvalue()
    assert "matches the contract models" in out.getvalue()


def test_index_lists_every_wire_type_with_its_type_and_dataschema() -> None:
    index = json.loads((ROOT / "schemas" / INDEX_FILE).read_text())

    listed = {(e["name"], e["version"]): e for e in index["events"]}
    assert set(listed) == {(w.name, w.version) for w in PUBLISHED_WIRE_TYPES}
    for wire in PUBLISHED_WIRE_TYPES:
        e = listed[(wire.name, wire.version)]
        assert e["cloudevents_type"] == wire.type
        assert e["dataschema"] == wire.schema_uri
        assert e["status"] in ("current", "deprecated")
        schema = json.loads((ROOT / "schemas" / e["schema"]).read_text())
        assert schema["$id"] == wire.schema_uri


def test_every_registry_file_is_a_valid_draft_2020_12_schema_portable_to_draft_07() -> None:
    for path, doc in build_registry().items():
        if path == INDEX_FILE:
            continue
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(doc)
        Draft7Validator.check_schema(doc)
        assert _keywords(doc) <= PORTABLE_KEYWORDS, (path, _keywords(doc) - PORTABLE_KEYWORDS)


def test_generation_is_deterministic_and_canonical() -> None:
    first, second = expected_files(), expected_files()

    assert first == second
    for path, text in first.items():
        if path.endswith(".json"):
            assert render_json(json.loads(text)) == text


def test_a_registry_file_edited_by_hand_is_reported_stale() -> None:
    committed = committed_files(ROOT)
    path = "schemas/events/StockReceived.v1.json"
    committed[path] = committed[path].replace('"Goods were received', '"Goods arrived')

    report = check_files(committed, expected_files())

    assert report.exit_code == EXIT_STALE
    assert report.stale == (f"{path}: differs from what the models generate",)


# ------------------------------------------------------------- one-line v2 design


class StockReceivedV2(StockReceivedV1):
    """A fixture v2 of a type that has only v1: adds a carrier."""

    carrier: str | None = None


def test_a_new_version_is_one_wire_type_line_and_deprecates_the_old_one() -> None:
    with_v2 = (*PUBLISHED_WIRE_TYPES,
               WireType("StockReceived", 2, StockReceivedV2, StockItem.Received))

    status = statuses(with_v2)
    new = build_registry(with_v2)

    assert status[("StockReceived", 1)] == "deprecated"
    assert status[("StockReceived", 2)] == "current"
    assert new["events/StockReceived.v1.json"]["deprecated"] is True
    assert "deprecated" not in new["events/StockReceived.v2.json"]
    assert compare_registries(build_registry(), new) == []


def test_stock_adjusted_v2_is_current_and_v1_deprecated_in_the_committed_registry() -> None:
    status = statuses(WIRE_TYPES)
    assert status[("StockAdjusted", 1)] == "deprecated"
    assert status[("StockAdjusted", 2)] == "current"


def test_a_wire_type_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        statuses((*WIRE_TYPES, WIRE_TYPES[0]))


# ------------------------------------------------ the command line on a repo copy


def repo_copy(tmp_path: Path) -> Path:
    for package in ("contracts", "stockstream_contract", "domain", "application", "schemas"):
        shutil.copytree(ROOT / package, tmp_path / package, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "asyncapi.yaml", tmp_path / "asyncapi.yaml")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"the fixture edit no longer applies to {path}"
    path.write_text(text.replace(old, new, 1))


def registry_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "contracts.registry", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_check_fails_after_an_incompatible_model_edit_and_generate_refuses(
    tmp_path: Path,
) -> None:
    repo = repo_copy(tmp_path)
    edit(repo / "stockstream_contract" / "models.py",
         "    delta: int\n    reason: AdjustmentReasonV1",
         "    delta: int\n    reason_code: AdjustmentReasonV1")
    committed_before = committed_files(repo)

    checked = registry_cli(repo, "check")
    generated = registry_cli(repo, "generate")

    assert checked.returncode == EXIT_INCOMPATIBLE, checked.stdout + checked.stderr
    assert ("StockAdjusted v1: field 'reason': renamed-field: field removed, possibly renamed "
            "to 'reason_code'") in checked.stdout
    assert "StockAdjusted v1: changed-version-without-new-file" in checked.stdout
    assert generated.returncode == EXIT_INCOMPATIBLE
    assert "Nothing written" in generated.stdout
    assert committed_files(repo) == committed_before


def test_check_fails_on_a_narrowed_range_in_a_model(tmp_path: Path) -> None:
    repo = repo_copy(tmp_path)
    edit(repo / "stockstream_contract" / "models.py",
         "reference: str | None = Field(default=None, max_length=200)",
         "reference: str | None = Field(default=None, max_length=100)")

    checked = registry_cli(repo, "check")

    assert checked.returncode == EXIT_INCOMPATIBLE
    assert ("StockReceived v1: field 'reference': narrowed-range: maxLength lowered from 200 "
            "to 100") in checked.stdout


def test_an_additive_edit_is_stale_until_regenerated_then_passes(tmp_path: Path) -> None:
    repo = repo_copy(tmp_path)
    edit(repo / "stockstream_contract" / "models.py", "    delta: int\n",
         "    delta: int\n    note: str | None = None\n")

    stale = registry_cli(repo, "check")
    generated = registry_cli(repo, "generate")
    checked = registry_cli(repo, "check")

    assert stale.returncode == EXIT_STALE, stale.stdout + stale.stderr
    assert "schemas/events/StockAdjusted.v1.json: differs" in stale.stdout
    assert "Run `make schemas`" in stale.stdout
    assert generated.returncode == EXIT_OK, generated.stdout + generated.stderr
    assert checked.returncode == EXIT_OK, checked.stdout + checked.stderr
    schema = json.loads((repo / "schemas/events/StockAdjusted.v1.json").read_text())
    assert "note" in schema["properties"]
    assert "note" not in schema["required"]
