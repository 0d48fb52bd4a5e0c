"""Route templates as Azure Functions reads them, and matching a path against them.

Azure Functions routes HTTP triggers with ASP.NET Core route templates under the prefix
``api``: ``stock/{sku}/{location}`` has literal segments and parameters, ``{*path}`` is a
catch-all, ``{name?}`` is optional and ``{name:constraint}`` carries a constraint (which
this module accepts but does not enforce: our handlers validate every value). When
several templates match, literal segments win over parameters and parameters over a
catch-all, as in ASP.NET. The embedded host dispatches with this module, and the
catch-all function answers 404 or 405 with it, so both agree on what matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

ROUTE_PREFIX = "api"
"""host.json's ``extensions.http.routePrefix`` (the Azure default)."""

_PARAMETER = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(\?)?(?::[^}]*)?\}$")


@dataclass(frozen=True)
class Segment:
    literal: str | None  # None for a parameter
    name: str | None = None
    catch_all: bool = False
    optional: bool = False


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed route template; ``match`` gives its parameters for a request path."""

    template: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        segments: list[Segment] = []
        for part in template.strip("/").split("/"):
            found = _PARAMETER.match(part)
            if found:
                catch_all, name, optional = found.groups()
                segments.append(Segment(None, name, bool(catch_all), bool(optional)))
            elif "{" in part or "}" in part:
                raise ValueError(f"unsupported route segment {part!r} in {template!r}")
            else:
                segments.append(Segment(part))
        return cls(template, tuple(segments))

    @property
    def precedence(self) -> tuple[int, ...]:
        """Sort key: more specific first (literal < parameter < catch-all, per segment)."""
        return tuple(
            0 if s.literal is not None else (2 if s.catch_all else 1) for s in self.segments
        )

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """The route parameters if the decoded path ``segments`` match, else None."""
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.catch_all:
                params[segment.name or ""] = "/".join(segments[index:])
                return params
            if index >= len(segments):
                if segment.optional:
                    continue
                return None
            value = segments[index]
            if segment.literal is not None:
                if value.lower() != segment.literal.lower():  # ASP.NET is case-insensitive
                    return None
            elif value == "":
                return None
            else:
                params[segment.name or ""] = value
        return params if len(segments) <= len(self.segments) else None


def split_path(raw_path: str) -> list[str] | None:
    """The decoded segments after ``/api/``, or None if the path is outside the prefix.

    Segments are split before percent-decoding, so ``%2F`` inside a SKU stays in its
    segment (and is then refused as an invalid identifier) instead of shifting the route.
    """
    parts = raw_path.split("?", 1)[0].split("/")
    if len(parts) < 2 or parts[0] != "" or parts[1].lower() != ROUTE_PREFIX:
        return None
    rest = parts[2:]
    if rest and rest[-1] == "":
        rest = rest[:-1]
    return [unquote(p) for p in rest]


def allowed_methods(
    routes: Iterable[tuple[RouteTemplate, Sequence[str] | None]], segments: Sequence[str]
) -> list[str]:
    """Every method some non-catch-all route accepts at ``segments`` (sorted)."""
    allowed: set[str] = set()
    for template, methods in routes:
        if any(s.catch_all for s in template.segments):
            continue
        if template.match(segments) is not None and methods:
            allowed.update(m.upper() for m in methods)
    return sorted(allowed)
