"""Route templates as Azure Functions reads them, and matching a path against them.

Azure Functions routes HTTP triggers with ASP.NET Core route templates under the prefix
``api``: ``stock/{sku}/{location}`` has literal segments and parameters, ``{*path}`` is a
catch-all, ``{name?}`` is optional and ``{name:constraint}`` carries a constraint (which
this module accepts but does not enforce: our handlers validate every value). When
several templates match, literal segments win over parameters and parameters over a
catch-all, as in ASP.NET. The embedded host dispatches with this module, and the
catch-all function answers 404 or 405 with it, so both agree on what matches.

A route that takes GET takes HEAD too (RFC 9110 §9.3.2: HEAD is GET without the body), and
``Allow`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import azure.functions as func

ROUTE_PREFIX = "api"
"""host.json's ``extensions.http.routePrefix`` (the Azure default)."""

_PARAMETER = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*?)?(\?)?\}$")


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


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP trigger of the app, as the host dispatches to it."""

    name: str
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    anonymous: bool
    arg_name: str
    user_function: Callable[..., Any]
    admin: bool = False  # AuthLevel.ADMIN: only an admin (master) key opens it

    def accepts(self, method: str) -> bool:
        return self.methods is None or method in self.methods or (
            method == "HEAD" and "GET" in self.methods)

    @property
    def catch_all(self) -> bool:
        """Whether this function takes whatever no other does (it answers 404/405): its
        template is nothing but a catch-all. A catch-all under a literal prefix
        (``console/{*path}``) is an ordinary route, whose methods ``Allow`` lists."""
        return all(s.catch_all for s in self.template.segments)


def http_functions(app: func.FunctionApp) -> list[HttpFunction]:
    """The app's HTTP triggers, most specific route first (as ASP.NET orders them)."""
    found: list[HttpFunction] = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "httpTrigger":
            continue
        methods = getattr(trigger, "methods", None)
        auth = getattr(trigger, "auth_level", None)
        name = str(function.get_function_name())
        found.append(HttpFunction(
            name=name,
            template=RouteTemplate.parse(str(getattr(trigger, "route", None) or name)),
            methods=frozenset(str(getattr(m, "value", m)).upper() for m in methods)
            if methods else None,
            anonymous=auth == func.AuthLevel.ANONYMOUS,
            arg_name=trigger.name,
            user_function=function.get_user_function(),
            admin=auth == func.AuthLevel.ADMIN,
        ))
    return sorted(found, key=lambda f: f.template.precedence)


def allowed_methods(functions: Iterable[HttpFunction], segments: Sequence[str]) -> list[str]:
    """Every method some route other than a catch-all accepts at ``segments`` (sorted),
    HEAD included where GET is."""
    allowed: set[str] = set()
    for function in functions:
        if function.catch_all or function.methods is None:
            continue
        if function.template.match(segments) is not None:
            allowed.update(function.methods)
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)
