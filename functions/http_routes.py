"""The route mechanism of every HTTP function: declaring a route, and matching a path.

Every HTTP function of the app, whatever its blueprint, is declared with
:meth:`HttpBlueprint.http`: it registers the Azure Functions HTTP trigger (wrapped by
``functions.http_answers.answering_problems``: problem documents and command metrics)
and records a :class:`Route` with what the OpenAPI document needs (models for the body,
the query and each response, problem statuses, headers). The blueprints' routes
(``functions.blueprints``) and the API's own two (its document and the catch-all) make the
one route table, ``functions.http_openapi.ROUTE_TABLE``: the Azure registration,
``openapi.json``, the catch-all's 404/405 and the schemathesis fault suite all come from
it, so the contract, the fuzzing and the code cannot drift apart.

Azure Functions routes HTTP triggers with ASP.NET Core route templates under the prefix
``api``: ``stock/{sku}/{location}`` has literal segments and parameters, ``{*path}`` is a
catch-all, ``{name?}`` is optional and ``{name:constraint}`` carries a constraint (which
this module accepts but does not enforce: our handlers validate every value). When
several templates match, literal segments win over parameters and parameters over a
catch-all, as in ASP.NET. The embedded host dispatches with this module, and the
catch-all function answers 404 or 405 with it, so both agree on what matches.

Routes are matched through a :class:`RouteIndex`, built once from the table (by the
embedded host at start-up, by the catch-all at import): a dict from a literal first
segment to the routes that may match under it, in precedence order, so a request tries
only those few templates, each parsed once.

A route that takes GET takes HEAD too (RFC 9110 §9.3.2: HEAD is GET without the body), and
``Allow`` says so.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote

import azure.functions as func
from pydantic import BaseModel

from functions.http_answers import AsyncHandler, Handler, answering_problems

NONBLOCKING = "stockstream_nonblocking"
"""The attribute :meth:`HttpBlueprint.http` sets on a function declared ``blocking=False``."""

BODY_LIMIT = "stockstream_max_body_bytes"
"""The attribute :meth:`HttpBlueprint.http` sets on a function with its own body limit."""

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

    @cached_property
    def catch_all(self) -> bool:
        """Whether the template is nothing but ``{*name}``: the function that takes what
        no other does (it answers 404/405). A catch-all under a literal prefix
        (``console/{*path}``) is an ordinary route, whose methods ``Allow`` lists.
        Worked out once: the host asks it of every state-changing request."""
        return all(s.catch_all for s in self.segments)

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
    blocking: bool = True
    """False: it never holds a thread waiting on I/O — a coroutine function, or one
    declared ``blocking=False`` — so the embedded host runs it on its event loop instead
    of handing it to a worker thread."""
    max_body_bytes: int | None = None
    """Its own body limit (declared ``max_body_bytes``), else the host's."""

    def accepts(self, method: str) -> bool:
        return self.methods is None or method in self.methods or (
            method == "HEAD" and "GET" in self.methods)

    @property
    def catch_all(self) -> bool:
        """Whether this function takes whatever no other does (it answers 404/405)."""
        return self.template.catch_all

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        return self.template.match(segments)


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
            blocking=not (getattr(function.get_user_function(), NONBLOCKING, False)
                          or inspect.iscoroutinefunction(function.get_user_function())),
            max_body_bytes=getattr(function.get_user_function(), BODY_LIMIT, None),
        ))
    return sorted(found, key=lambda f: f.template.precedence)


class Routed(Protocol):
    """What :func:`allowed_methods` reads of a route: a declared :class:`Route` or a
    function of the app as the host sees it (:class:`HttpFunction`)."""

    @property
    def methods(self) -> Collection[str] | None: ...

    @property
    def catch_all(self) -> bool: ...

    def match(self, segments: Sequence[str]) -> dict[str, str] | None: ...


def allowed_methods(routes: Iterable[Routed], segments: Sequence[str]) -> list[str]:
    """Every method some route other than a catch-all accepts at ``segments`` (sorted),
    HEAD included where GET is."""
    allowed: set[str] = set()
    for route in routes:
        if route.catch_all or route.methods is None:
            continue
        if route.match(segments) is not None:
            allowed.update(route.methods)
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


R = TypeVar("R", bound=Routed)


class RouteIndex(Generic[R]):
    """The routes of a table, indexed once by their literal first segment and by how many
    segments they can match.

    ``candidates`` gives, in the table's order, only the routes that may match a path: those
    whose first segment is the path's first segment (case-insensitively, as ASP.NET) or a
    parameter or a catch-all, and whose length fits the path's (a reservation's path has
    five segments, so the fourteen ``stock/...`` routes narrow to the two of that length
    and the catch-all). The table's order is kept, so the first route that matches and
    takes the method is the one a walk of the whole table would have chosen.
    """

    def __init__(self, routes: Iterable[R]) -> None:
        self.routes: tuple[R, ...] = tuple(routes)
        literal: dict[str, list[int]] = {}
        anywhere: list[int] = []
        for index, route in enumerate(self.routes):
            first = _first_literal(route)
            if first is None:
                anywhere.append(index)
            else:
                literal.setdefault(first, []).append(index)
        lengths = [_lengths(route) for route in self.routes]
        # Paths at least this long are matched by unbounded routes only, and all of them
        # are long enough for every such route: one bucket.
        self._longest = 1 + max((n for pair in lengths for n in pair if n is not None),
                                default=0)

        def by_length(indexes: Iterable[int]) -> tuple[tuple[R, ...], ...]:
            ordered = sorted(set(indexes))
            return tuple(tuple(self.routes[i] for i in ordered if _fits(lengths[i], n))
                         for n in range(self._longest + 1))

        self._anywhere = by_length(anywhere)
        self._all = by_length(range(len(self.routes)))
        self._by_first = {first: by_length([*indexes, *anywhere])
                          for first, indexes in literal.items()}
        self._described = tuple(r for r in self.routes
                                if not r.catch_all and r.methods is not None)
        described = [i for i in range(len(self.routes))
                     if not self.routes[i].catch_all and self.routes[i].methods is not None]
        self._described_by_first = {
            first: tuple(self.routes[i] for i in described if i in {*indexes, *anywhere})
            for first, indexes in literal.items()}
        self._described_anywhere = tuple(self.routes[i] for i in described if i in anywhere)

    def candidates(self, segments: Sequence[str]) -> tuple[R, ...]:
        """The routes that may match ``segments``, in the table's order."""
        length = min(len(segments), self._longest)
        if not segments:
            return self._all[length]
        return self._by_first.get(segments[0].lower(), self._anywhere)[length]

    def matches(self, segments: Sequence[str]) -> list[tuple[R, dict[str, str]]]:
        """Every route that matches ``segments`` with its parameters, in the table's order."""
        return [(route, params) for route in self.candidates(segments)
                if (params := route.match(segments)) is not None]

    def allowed_methods(self, segments: Sequence[str]) -> list[str]:
        """:func:`allowed_methods` of the whole table, from the candidates only."""
        if not segments:
            routes = self._described
        else:
            routes = self._described_by_first.get(segments[0].lower(),
                                                  self._described_anywhere)
        return allowed_methods(routes, segments)


def _parsed(route: Routed) -> RouteTemplate | None:
    """The parsed template of a declared route or of a function as the host sees it."""
    template = getattr(route, "template", None)
    parsed = template if isinstance(template, RouteTemplate) else getattr(route, "parsed", None)
    return parsed if isinstance(parsed, RouteTemplate) else None


def _first_literal(route: Routed) -> str | None:
    """The route's literal first segment, lower-cased; None when it is a parameter."""
    parsed = _parsed(route)
    if parsed is None or not parsed.segments:
        return None
    first = parsed.segments[0]
    return None if first.literal is None else first.literal.lower()


def _fits(lengths: tuple[int, int | None], n: int) -> bool:
    least, most = lengths
    return least <= n and (most is None or n <= most)


def _lengths(route: Routed) -> tuple[int, int | None]:
    """How many path segments the route can match: at least its required segments, at
    most all of them (None: no bound, it has a catch-all or no template we can read)."""
    parsed = _parsed(route)
    if parsed is None:
        return 0, None
    required = sum(1 for s in parsed.segments if not (s.optional or s.catch_all))
    unbounded = any(s.catch_all for s in parsed.segments)
    return required, None if unbounded else len(parsed.segments)


# ------------------------------------------------------------ declaring routes

Response = type[BaseModel] | str | None
"""What a status answers with: a model, a named non-model body (``"CloudEvents"``,
``"OpenAPI"``, ``"OpenMetrics"``, ``"PNG"``) or nothing (a 304)."""


@dataclass(frozen=True)
class Route:
    """One HTTP function: its binding and what the OpenAPI document says about it."""

    name: str
    template: str
    methods: tuple[str, ...]
    auth_level: func.AuthLevel | None
    summary: str
    request: type[BaseModel] | None = None
    request_required: bool = True
    query: type[BaseModel] | None = None
    responses: dict[int, Response] = field(default_factory=dict)
    problems: tuple[int, ...] = ()
    headers: tuple[str, ...] = ()
    documented: bool = True
    """False: served, but left out of ``openapi.json`` (the console's files are routes
    of the app, not operations of the API)."""
    max_body_bytes: int | None = None
    """Its own body limit, when it is not the API's (``MAX_BODY_BYTES``)."""

    @cached_property
    def parsed(self) -> RouteTemplate:
        return RouteTemplate.parse(self.template)

    @property
    def catch_all(self) -> bool:
        return self.parsed.catch_all

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        return self.parsed.match(segments)

    @property
    def bound_methods(self) -> list[str]:
        """The methods its trigger lists: HEAD wherever GET (RFC 9110 §9.3.2), because
        Azure routes a method only to a trigger that lists it (the embedded host answers
        HEAD without the body)."""
        methods = list(self.methods)
        return [*methods, "HEAD"] if "GET" in methods and "HEAD" not in methods else methods


class HttpBlueprint(func.Blueprint):
    """A blueprint whose HTTP functions are declared with :meth:`http` and listed in
    :attr:`routes`. Its other triggers (timers, queues) are declared as on any blueprint."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.routes: list[Route] = []

    def http(
        self,
        name: str,
        template: str,
        methods: list[str],
        *,
        summary: str,
        auth_level: func.AuthLevel | None = None,
        request: type[BaseModel] | None = None,
        request_required: bool = True,
        query: type[BaseModel] | None = None,
        responses: dict[int, Response],
        problems: tuple[int, ...] = (),
        headers: tuple[str, ...] = (),
        measured: bool = True,
        documented: bool = True,
        blocking: bool = True,
        max_body_bytes: int | None = None,
    ) -> Callable[[Handler | AsyncHandler], Any]:
        """Register the decorated handler as the HTTP function ``name`` and record its
        :class:`Route`. ``auth_level`` None is the app's (function keys); ``problems`` are
        the statuses of its own refusals (the document adds the protocol ones: 400, 401,
        404, 405, 413, 415, 422, 503 as they apply). ``measured=False`` keeps its
        state-changing requests out of the command metric; ``documented=False`` keeps the
        route out of ``openapi.json``; ``blocking=False`` says the handler never waits on
        I/O (no store, no file, no lock held by a writer), so the embedded host may run it
        on its event loop: only for handlers that answer from memory. A coroutine handler
        runs on the event loop without it (it awaits what it waits for). ``max_body_bytes``
        replaces the API's body limit for this route (the embedded host reads up to it;
        the handler parses with it)."""

        def register(handler: Handler | AsyncHandler) -> Any:
            route = Route(name, template, tuple(methods), auth_level, summary, request,
                          request_required, query, responses, problems, headers, documented,
                          max_body_bytes)
            self.routes.append(route)
            answer = answering_problems(handler, measured=measured)
            if not blocking:
                setattr(answer, NONBLOCKING, True)
            if max_body_bytes is not None:
                setattr(answer, BODY_LIMIT, max_body_bytes)
            routed = self.route(route=template, methods=route.bound_methods,
                                auth_level=auth_level)(answer)
            return self.function_name(name)(routed)

        return register
