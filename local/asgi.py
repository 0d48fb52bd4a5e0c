"""An ASGI application that serves an Azure Functions app's HTTP triggers.

The route table is read from the app itself (``FunctionApp.get_functions()``): each HTTP
trigger's route template, methods, auth level and user function, indexed once at start-up
(``functions.http_routes.RouteIndex``). A request is matched as Azure matches it, converted
to a real ``func.HttpRequest``, handed to the function on a worker thread (the application
services are synchronous and wait on the store), or run on the event loop: a coroutine
function (the stock writes, which await the group commit without holding a thread) is
awaited there, and a function declared ``blocking=False`` (the catch-all: it answers from
memory) called there. The ``func.HttpResponse`` is converted back. So the local routes
are the Azure routes, whose worker runs coroutine functions on its event loop too.

What the Functions host does before a function runs is done here too: the ``api`` route
prefix, keys unless the function is anonymous, and a cap on the request body (larger
bodies are answered 413 without being buffered). A request is admitted from its head
alone — Host, key, Origin, route, Content-Type (:meth:`FunctionsHost._admit`) — before
any of its body is read, so a refused client never gets its body read nor a ``100
Continue``. The body then has the body timeout to arrive (408 after it). A request whose
body did not arrive whole (the client went away before the announced length, or before
the last chunk) never runs.

Every request is logged in one line: method, target, status, milliseconds; 499 (nginx's
"client closed request") names a request abandoned before it arrived whole. The target is
logged as received (percent-encoded, so ``%0a`` stays three characters), with
backslashes, control and non-printable characters escaped and the length capped, so no
request can forge or flood log lines. With INFO off for ``stockstream.host`` the line is
not even formatted.

``GET /`` redirects to ``home`` when one is given (the embedded host: the console).
HEAD is served by every GET route; a 200 with an ``ETag`` that ``If-None-Match`` names
becomes a 304; a method no function takes is 405 with ``Allow`` on a known path, else 404.

Keys work as Azure's: function-level keys open every route but those whose function is
``AuthLevel.ADMIN``; admin-level keys (Azure's master key) open every route. A key comes
in the ``x-functions-key`` header or the ``code`` query parameter, and is compared in
constant time. ``code`` is taken out of the query before anything sees it: the function
(``req.params``, ``req.url``) and the log get the query without it.

Cross-site requests: a browser lets any web page send "simple" requests (form posts,
``text/plain``) to 127.0.0.1, and DNS rebinding lets a page's own name resolve there. So
a state-changing request whose Content-Type is not JSON (or whose body has none) gets
415, whatever its body; a request with an ``Origin`` other than the host's own or a
configured one gets 403; and a host without keys answers 421 to a ``Host`` other than
``localhost`` or its own addresses. No answer carries CORS headers.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from time import perf_counter
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote_plus, urlsplit

import azure.functions as func

from functions import problems
from functions.http_routes import HttpFunction, RouteIndex, http_functions, split_path
from functions.requests import MAX_BODY_BYTES, is_json_media_type
from local.logs import info_line

log = logging.getLogger("stockstream.host")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DRAIN_LIMIT_BYTES = 8 * 1024 * 1024
"""An oversized body is read and discarded up to this much, then the connection is dropped."""

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""What a keyless host answers to, besides the address it is bound to (any port)."""

_HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([^:\[\]]+))(?::[0-9]+)?")
"""``name[:port]`` or ``[ipv6][:port]``, as RFC 9110 §7.2 has it."""

LOGGED_TARGET_LIMIT = 1024
"""Characters of a request target an access-log line shows, escapes included."""

CLIENT_CLOSED_REQUEST = 499
"""Logged, never sent: the client went away before its request arrived whole."""

DEFAULT_BODY_TIMEOUT_SECONDS = 30.0

OWN_HOSTS_REMEMBERED = 256
"""Host headers whose verdict (our own, or 421) a keyless host remembers."""


class _Unread(Enum):
    """Why a request has no body to run with."""

    DISCONNECTED = "disconnected"
    TIMED_OUT = "timed out"
    TOO_LARGE = "too large"


class FunctionsHost:
    """The ASGI application. ``on_startup``/``on_shutdown`` run in the ASGI lifespan."""

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        api_keys: Sequence[str] = (),
        admin_keys: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        workers: int = 32,
        on_startup: Callable[[], None] | None = None,
        on_shutdown: Callable[[], None] | None = None,
        home: str | None = None,
    ) -> None:
        self.functions = http_functions(app)
        self.routes = RouteIndex(self.functions)  # compiled once: no walk per request
        self.home = home  # where GET / redirects (the console), else / is a 404
        self._function_keys = tuple(k.encode() for k in api_keys)
        self._admin_keys = tuple(k.encode() for k in admin_keys)
        self.keyed = bool(self._function_keys or self._admin_keys)
        self._allowed_origins = frozenset(
            o for o in (_origin(text) for text in allowed_origins) if o is not None)
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="http")
        self._own_hosts: dict[tuple[str | None, object], bool] = {}
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            started = perf_counter()
            request = _Request.of(scope)
            status = await self._http(scope, request, receive, send)
            if log.isEnabledFor(logging.INFO):
                info_line(log, f"{_printable(request.method, 32)} "
                               f"{_printable(request.target, LOGGED_TARGET_LIMIT)} {status} "
                               f"{(perf_counter() - started) * 1000:.1f}ms")

    # ------------------------------------------------------------- lifespan

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await loop.run_in_executor(self._executor, self._on_startup)
                except Exception as error:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self._on_shutdown is not None:
                        await loop.run_in_executor(self._executor, self._on_shutdown)
                finally:
                    self._executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ----------------------------------------------------------------- http

    async def _http(self, scope: Scope, request: _Request, receive: Receive,
                    send: Send) -> int:
        if self.home and request.raw_path == "/" and request.method in ("GET", "HEAD"):
            # Outside the route prefix, so no function's: a redirect, which opens nothing.
            return await self._send(scope, func.HttpResponse(
                status_code=302, headers={"Location": self.home}), send)
        admitted = self._admit(scope, request)
        if isinstance(admitted, problems.Problem):
            # Answered from the head alone: an announced body is never read, so the
            # connection cannot be reused (and an unauthenticated client cannot make the
            # host read its body, nor get a 100 Continue: uvicorn sends that on receive).
            return await self._send(scope, admitted.response(), send,
                                    close=_announces_body(request.headers))
        function, params = admitted
        limit = function.max_body_bytes or self.max_body_bytes
        body = await self._read_body(request.headers, receive, limit) \
            if _announces_body(request.headers) else b""
        if body is _Unread.DISCONNECTED:
            return CLIENT_CLOSED_REQUEST  # nobody to answer, and nothing may run
        if body is _Unread.TIMED_OUT:
            return await self._send(scope, problems.request_timeout(
                self.body_timeout).response(), send, close=True)
        if body is _Unread.TOO_LARGE:
            return await self._send(scope, problems.payload_too_large(
                limit).response(), send, close=True)
        response = await self._call(scope, request, function, params, body)
        if "if-none-match" in request.headers and request.method in ("GET", "HEAD") \
                and _not_modified(request.headers, response):
            response = func.HttpResponse(status_code=304, headers={
                k: v for k, v in response.headers.items()
                if k.lower() not in ("content-type", "content-length")})
        return await self._send(scope, response, send)

    async def _send(self, scope: Scope, response: func.HttpResponse, send: Send, *,
                    close: bool = False) -> int:
        status = int(response.status_code)
        payload = response.get_body() or b""
        out: list[tuple[bytes, bytes]] = []
        typed = False
        for key, value in response.headers.items():  # one pass over werkzeug's headers
            name = key.lower()
            if name != "content-length":
                typed = typed or name == "content-type"
                out.append((name.encode("latin-1"), str(value).encode("latin-1")))
        if payload and not typed and response.mimetype:
            charset = f"; charset={response.charset}" if response.charset else ""
            out.append((b"content-type", f"{response.mimetype}{charset}".encode("latin-1")))
        if status in (204, 304):
            payload = b""  # and no Content-Length (RFC 9110 §8.6)
        elif scope["method"] == "HEAD":
            out.append((b"content-length", str(len(payload)).encode()))  # GET's length
            payload = b""
        else:
            out.append((b"content-length", str(len(payload)).encode()))
        if close:
            out.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})
        return status

    def _admit(
        self, scope: Scope, request: _Request
    ) -> tuple[HttpFunction, dict[str, str]] | problems.Problem:
        """The function to run and its route parameters, or the refusal; from the head.

        In order: 421 (keyless host named by another Host), 401 (keys), 403 (Origin),
        404/405 (no route takes it), 415 (a state-changing request that is not JSON).
        """
        method, raw_path, headers = request.method, request.raw_path, request.headers
        segments = split_path(raw_path)
        chosen = None if segments is None else self._route(segments, method)
        anonymous = chosen is not None and chosen[0].anonymous
        if not self.keyed and not self._own_host(headers.get("host"), scope):
            return problems.misdirected_request(headers.get("host"))
        if self.keyed and not anonymous:
            level = self._key_level(request.key)
            if level is None:
                return problems.unauthorized()
            if chosen is not None and chosen[0].admin and level != "admin":
                return problems.admin_key_required()
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, headers, scope):
            return problems.origin_not_allowed(origin)
        if chosen is None:  # a method no function takes, not even the catch-all
            allowed = [] if segments is None else self.routes.allowed_methods(segments)
            if allowed:
                return problems.method_not_allowed(method, raw_path, allowed)
            return problems.not_found(raw_path)
        function, _ = chosen
        if method in STATE_CHANGING and not function.catch_all and not _json_or_nothing(headers):
            return problems.unsupported_media_type(headers.get("content-type"))
        return chosen

    def _route(self, segments: list[str], method: str
               ) -> tuple[HttpFunction, dict[str, str]] | None:
        """The first function in the table's order that takes ``method`` at ``segments``,
        with its route parameters. The method is checked before the path is matched: a
        reservation's path is a candidate of four routes, and only one takes PUT."""
        for function in self.routes.candidates(segments):
            if function.accepts(method) and (params := function.match(segments)) is not None:
                return function, params
        return None

    async def _read_body(self, headers: dict[str, str], receive: Receive,
                         limit: int) -> bytes | _Unread:
        """The whole body, or why there is none to run the request with.

        DISCONNECTED when the client went away before the body arrived whole: a truncated
        body must not be mistaken for an absent one (an empty fulfilment fulfils
        everything). TIMED_OUT when it did not arrive whole within the body timeout.
        TOO_LARGE once it exceeds ``limit`` (the route's own, else the host's): the rest
        is read and discarded up to ``DRAIN_LIMIT_BYTES`` (so the client reads the 413
        rather than a reset), unless more than that is announced.
        """
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > DRAIN_LIMIT_BYTES:
            return _Unread.TOO_LARGE
        body = bytearray()
        too_large = False
        received = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return _Unread.DISCONNECTED
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if not too_large:
                        body += chunk
                        if len(body) > limit:
                            too_large = True
                            body.clear()
                    if not message.get("more_body", False) or received > DRAIN_LIMIT_BYTES:
                        return _Unread.TOO_LARGE if too_large else bytes(body)
        except TimeoutError:
            return _Unread.TIMED_OUT

    async def _call(self, scope: Scope, request: _Request, function: HttpFunction,
                    params: dict[str, str], body: bytes) -> func.HttpResponse:
        """Run ``function`` with a real ``func.HttpRequest``: on a worker thread, or on
        the event loop when it is a coroutine function or declared non-blocking."""
        http_request = func.HttpRequest(
            method=request.method,
            url=_url(scope, request.headers, request.raw_path, request.query),
            headers=request.headers,
            params=dict(parse_qsl(request.query, keep_blank_values=True)) if request.query
            else {},
            route_params=params,
            body=body,
        )
        call = functools.partial(function.user_function, **{function.arg_name: http_request})
        try:
            if function.blocking:
                result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
            else:
                result = call()
                if inspect.isawaitable(result):  # a coroutine function: awaited on the loop
                    result = await result
        except Exception:
            log.exception("function %s failed", function.name)
            return problems.internal_error().response()
        if isinstance(result, func.HttpResponse):
            return result
        if isinstance(result, str | bytes):
            return func.HttpResponse(result)
        log.error("function %s returned %r, not an HttpResponse", function.name, type(result))
        return problems.internal_error().response()

    def _own_host(self, host: str | None, scope: Scope) -> bool:
        """:func:`_own_host`, remembered per Host header and bound address: every request
        of a connection names the same Host, so it is decided once, not parsed per request."""
        server = scope.get("server")
        key = (host, server[0] if server else None)
        known = self._own_hosts.get(key)
        if known is None:
            known = _own_host(host, scope)
            if len(self._own_hosts) >= OWN_HOSTS_REMEMBERED:
                self._own_hosts.clear()  # a flood of made-up names cannot grow it
            self._own_hosts[key] = known
        return known

    def _origin_allowed(self, origin: str, headers: dict[str, str], scope: Scope) -> bool:
        """The host's own origin (scheme and Host of the request) or a configured one."""
        given = _origin(origin)
        own = _origin(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")
        return given is not None and (given == own or given in self._allowed_origins)

    def _key_level(self, key: str) -> Literal["admin", "function"] | None:
        """The level of ``key``, None if it is no key of this host."""
        given = key.encode()
        # Compare against every key, without stopping early, in constant time per key.
        admin = [hmac.compare_digest(given, k) for k in self._admin_keys]
        function = [hmac.compare_digest(given, k) for k in self._function_keys]
        if not given:
            return None
        return "admin" if any(admin) else "function" if any(function) else None


@dataclass(frozen=True)
class _Request:
    """What the host reads of a request before its body: the key taken out of the query."""

    method: str
    headers: dict[str, str]
    raw_path: str
    query: str  # raw, without ``code``
    key: str  # x-functions-key, else the code parameter, else ""

    @classmethod
    def of(cls, scope: Scope) -> _Request:
        headers = _headers(scope["headers"])
        query_string = scope.get("query_string")
        if not query_string:  # most requests: nothing to take the key out of
            return cls(str(scope["method"]).upper(), headers, _raw_path(scope), "",
                       headers.get("x-functions-key") or "")
        parts = [p for p in query_string.decode("latin-1").split("&") if p]
        codes = [p for p in parts if unquote_plus(p.partition("=")[0]) == "code"]
        code = unquote_plus(codes[0].partition("=")[2]) if codes else ""
        return cls(
            method=str(scope["method"]).upper(),
            headers=headers,
            raw_path=_raw_path(scope),
            query="&".join(p for p in parts if p not in codes),
            key=headers.get("x-functions-key") or code,
        )

    @property
    def target(self) -> str:
        """The request target as received, without the key."""
        return self.raw_path + (f"?{self.query}" if self.query else "")


def _printable(text: str, limit: int) -> str:
    """``text`` for a log line: ``\\`` for a backslash, ``\\n``, ``\\r``, ``\\t`` and
    ``\\xNN`` for other control and non-ASCII characters; at most ``limit`` characters,
    an ellipsis marking a cut."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text if len(text) <= limit else text[:limit] + "…"  # nothing to escape
    escaped = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + "…"


def _not_modified(headers: dict[str, str], response: func.HttpResponse) -> bool:
    """A 200 whose ETag ``If-None-Match`` names (weak comparison, RFC 9110 §13.1.2)."""
    condition = headers.get("if-none-match")
    if condition is None or response.status_code != 200:
        return False
    etag = response.headers.get("etag")
    if not etag:
        return False
    given = {t.strip().removeprefix("W/") for t in condition.split(",")}
    return "*" in given or etag.strip().removeprefix("W/") in given


def _announces_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "0").strip()
    return length not in ("", "0") or "transfer-encoding" in headers


def _json_or_nothing(headers: dict[str, str]) -> bool:
    """A JSON Content-Type, or neither a Content-Type nor a body (``curl -X POST``).

    A form's Content-Type is refused even with an empty body: an empty fulfilment or
    replay is a complete command, and browsers send such forms cross-site unasked.
    """
    content_type = headers.get("content-type")
    if content_type is not None:
        return is_json_media_type(content_type)
    return not _announces_body(headers)


def _origin(text: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, without a default port; None if not an origin
    (``null``, a path, no host)."""
    try:
        parts = urlsplit(text.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _own_host(host: str | None, scope: Scope) -> bool:
    """Whether a keyless host may answer a request naming ``host`` (any port)."""
    if host is None:
        return True  # HTTP/1.0 without Host: no browser sends that, so no rebinding either
    name = _host_name(host)
    server = scope.get("server")
    bound = str(server[0]).lower() if server else None
    return name is not None and (name in LOOPBACK_NAMES or name == bound)


def _host_name(host: str) -> str | None:
    """The name of a Host header (an IPv6 literal without its brackets); None if malformed."""
    found = _HOST.fullmatch(host.strip().lower())
    return (found.group(1) or found.group(2)) if found else None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names lower-cased; repeated headers joined with ", " (as RFC 9110 allows)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        return str(raw.decode("latin-1")).split("?", 1)[0]
    return quote(str(scope.get("path", "/")))


def _url(scope: Scope, headers: dict[str, str], raw_path: str, query: str) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{raw_path}" + (f"?{query}" if query else "")
