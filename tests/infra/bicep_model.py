"""Read the Bicep templates offline (pycep-parser) into something tests can ask questions of.

pycep gives a syntax tree as nested dicts: string literals and identifiers both come back as
plain strings, expressions as ``{"operator": ...}`` or ``{"function": ...}`` dicts, and a
resource's body sits under ``config`` (under ``config.config`` for loops and conditions).
The helpers here unwrap those shapes; they do not evaluate Bicep.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP = ROOT / "bicep"
MAIN = BICEP / "main.bicep"


def bicep_files() -> list[Path]:
    return sorted(BICEP.rglob("*.bicep"))


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """The parsed template (cached: parsing is the slow part)."""
    # pycep types the tree as a TypedDict of its top-level keys; the tests index deeper.
    return cast(dict[str, Any], BicepParser().parse(file_path=path))


def module(name: str) -> dict[str, Any]:
    return parse(BICEP / "modules" / f"{name}.bicep")


@dataclass(frozen=True)
class Resource:
    file: str
    symbol: str
    type: str
    api_version: str
    body: dict[str, Any]
    loop: dict[str, Any] | None
    condition: Any
    existing: bool = False
    """A reference to a resource (``existing``), not one the template deploys."""

    @property
    def properties(self) -> dict[str, Any]:
        value = self.body.get("properties", {})
        return value if isinstance(value, dict) else {}


def resources(parsed: dict[str, Any], file: str = "") -> Iterator[Resource]:
    for symbol, resource in parsed.get("resources", {}).items():
        config = resource["config"]
        loop = None
        condition = None
        if "loop_type" in config or ("condition" in config and "config" in config):
            loop = config.get("loop_type")
            condition = config.get("condition")
            config = config["config"]
        yield Resource(file, symbol, resource["type"], resource["api_version"], config, loop,
                       condition, bool(resource.get("existing")))


def all_resources() -> list[Resource]:
    return [r for path in bicep_files()
            for r in resources(parse(path), str(path.relative_to(BICEP)))]


def of_type(resource_type: str, parsed: dict[str, Any] | None = None) -> list[Resource]:
    """The resources of ``resource_type`` the templates deploy (references left out)."""
    pool = all_resources() if parsed is None else list(resources(parsed))
    return [r for r in pool if r.type.lower() == resource_type.lower() and not r.existing]


def one(resource_type: str, parsed: dict[str, Any] | None = None, **where: Any) -> Resource:
    found = [r for r in of_type(resource_type, parsed)
             if all(r.body.get(k) == v for k, v in where.items())]
    assert len(found) == 1, f"expected one {resource_type} {where}, found {len(found)}"
    return found[0]


def function(node: Any, name: str) -> dict[str, Any] | None:
    """The parameters of ``node`` if it is a call of function ``name`` (pycep's snake name)."""
    if isinstance(node, dict) and "function" in node and node["function"]["type"] == name:
        params: dict[str, Any] = node["function"]["parameters"]
        return params
    return None


def accessor(node: Any) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None if ``node`` is not a plain property access."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict) and "operator" in node:
        op = node["operator"]
        if op["type"] == "property_accessor":
            head = accessor(op["operands"]["operand_1"])
            tail = accessor(op["operands"]["operand_2"])
            if head is not None and tail is not None:
                return head + tail
    return None


def walk(node: Any) -> Iterator[Any]:
    """Every value in a parsed subtree, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def strings(node: Any) -> list[str]:
    return [v for v in walk(node) if isinstance(v, str)]


def resolve_role_id(node: Any, parsed: dict[str, Any]) -> str | None:
    """The role GUID of a ``subscriptionResourceId('...roleDefinitions', <id>)`` expression."""
    params = function(node, "subscription_resource_id")
    if params is None or params["resource_type"] != "Microsoft.Authorization/roleDefinitions":
        return None
    return resolve_string(params["resource_name_1"], parsed)


GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def resolve_string(node: Any, parsed: dict[str, Any]) -> str | None:
    """A literal, or a variable (or variable property) holding one, resolved."""
    path = accessor(node)
    if path is None:
        return None
    variables = parsed.get("variables", {})
    if path[0] in variables:
        value: Any = variables[path[0]]["value"]
        for key in path[1:]:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value if isinstance(value, str) else None
    return path[0] if len(path) == 1 else None
