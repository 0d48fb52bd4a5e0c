"""The embedded host: the whole service on one machine, no cloud, no Docker.

:class:`EmbeddedHost` asks the composition root for this process's services (the
embedded root's ``HOST`` process: SQLite under the data directory, and readers of the
pipeline), starts the event pipeline (relay, projections, timers) in its worker process,
and serves the Functions app's HTTP triggers with uvicorn. ``run`` serves in the
foreground until SIGINT or SIGTERM (``python -m local``); ``start``/``stop`` serve from a
background thread (tests and benchmarks).

Safety: without keys (``STOCKSTREAM_API_KEYS`` or ``STOCKSTREAM_ADMIN_KEYS``) nobody is
authenticated, so the host refuses to listen anywhere but loopback and says so at start-up.

Speed: uvicorn runs on uvloop and parses with httptools (``uvicorn[standard]``) when they
are installed (requirements.txt has them), else on asyncio and h11; either way the header
timeout below holds (:func:`http_protocol`). On httptools a response leaves in one
``send`` (:class:`OneSendResponse`): uvicorn writes the head and the body apart.

Slow clients: three timeouts (settings) bound what a connection may hold. Idle: a
connection with no request under way is closed after ``idle_timeout_seconds`` — uvicorn's
``timeout_keep_alive``, which uvicorn arms only after an answer; this host arms it when a
connection opens too. Headers: once a request's first byte arrived, its headers must be
complete within ``header_timeout_seconds`` (uvicorn has no such timeout:
:class:`HeaderTimeoutHttpToolsProtocol` and :class:`HeaderTimeoutH11Protocol` add it).
Body: the ASGI application (``FunctionsHost``) gives the body ``body_timeout_seconds`` once
the request is admitted and answers 408 after that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

import azure.functions as func
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from application.settings import Settings
from composition import Services, build_services
from composition.embedded import EmbeddedProcess
from functions import problems
from functions.console import HOME as CONSOLE
from functions.container import use_services
from local.asgi import FunctionsHost
from local.heap import settle_heap

log = logging.getLogger("stockstream.host")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7071


class PipelineHandle(Protocol):
    def stop(self) -> None: ...


class InsecureBinding(ValueError):
    """A non-loopback address was asked for while no API keys are configured."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keyed(settings: Settings) -> bool:
    """Whether the host authenticates requests: some key of either level is set."""
    return bool(settings.api_keys or settings.admin_keys)


class HeaderTimer:
    """A header timeout for a uvicorn HTTP protocol, and the idle timeout from the start.

    uvicorn cancels its keep-alive (idle) timer on every byte and re-arms it only after an
    answer, so a client that sends half a request line, or never its last header, holds
    the connection for ever. A protocol mixing this in starts the header timer at a
    request's first byte (:meth:`_start_header_timer`) and stops it once the head is parsed
    (:meth:`_stop_header_timer`); further bytes do not reset it, and when it fires the
    connection is closed without an answer (nothing was parsed), as on a bad request line.
    """

    header_timeout: float = 10.0
    if TYPE_CHECKING:  # what the uvicorn protocols this is mixed into provide
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport
        timeout_keep_alive: int
        timeout_keep_alive_task: asyncio.TimerHandle | None

        def timeout_keep_alive_handler(self) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeout(cls, seconds: float) -> type[Self]:
        """This protocol with a header timeout of ``seconds`` (uvicorn takes a class)."""
        return type(cls.__name__, (cls,), {"header_timeout": seconds})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _start_header_timer(self) -> None:
        if self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()  # nothing parsed, so no answer

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused gets a problem document like every other 400
        (uvicorn's own answer is plain text), then the connection closes."""
        body = json.dumps(problems.malformed_request(msg).to_json()).encode()
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: "
            + problems.PROBLEM_CONTENT_TYPE.encode() + b"; charset=utf-8\r\n"
            + b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)
        self.transport.close()


class HeaderTimeoutH11Protocol(HeaderTimer, H11Protocol):
    """uvicorn's h11 protocol with the header and idle timeouts of :class:`HeaderTimer`.

    The timer runs while h11 waits for a request (``their_state`` IDLE) and has part of one
    buffered. The h11 protocol is chosen explicitly (not ``auto``) because this class
    watches h11's state.
    """

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()  # a pipelined request may be half-buffered already

    def _watch_head(self) -> None:
        waiting = (self.conn.their_state is h11.IDLE and not self.transport.is_closing()
                   and bool(self.conn.trailing_data[0]))
        if waiting:
            self._start_header_timer()
        else:
            self._stop_header_timer()


class OneSendResponse(asyncio.Transport):
    """The transport as one response's uvicorn cycle sees it: the head, which uvicorn
    writes on its own, is held and sent with the first piece of the body, so a response
    costs one ``send`` (one system call, one TCP segment) instead of two. On loopback
    under ``wrk`` the two sends were about 40 % of the event loop's time on a 404.

    Only the head of a started response is held (a ``100 Continue`` goes out at once);
    it is sent by the next write, by :meth:`flush` (the protocol calls it when the
    response is complete, as a HEAD or 304 writes no body) or before a close. A cycle
    uses nothing else of its transport (``write``, ``close``, ``is_closing``)."""

    def __init__(self, cycle: Any, fd: int | None) -> None:
        super().__init__()
        self._cycle = cycle
        self._transport: asyncio.Transport = cycle.transport
        self._fd = fd
        """The connection's socket, written directly (None: only through the transport)."""
        self._held: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._head_seen and self._cycle.response_started:
            self._head_seen, self._held = True, bytes(data)  # the head: wait for the body
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._send(data)

    def _send(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data``: straight to the socket when nothing is queued before it, with
        the interpreter lock released during the system call (the transport's own write
        holds it, and on loopback the send is a fifth of the loop's time), then whatever
        the socket did not take through the transport, which keeps it in order."""
        fd = self._fd
        if (fd is not None and not self._transport.get_write_buffer_size()
                and not self._transport.is_closing()):  # a closing one's fd may be reused
            try:
                sent = os.write(fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport sees the same error and reports it its way
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._send(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


_COMMON_METHOD = re.compile(
    rb"(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)(?: |$)|(?:G|GE|H|HE|HEA|P|PO|POS|PU|PA|PAT|PATC"
    rb"|D|DE|DEL|DELE|DELET|O|OP|OPT|OPTI|OPTIO|OPTION)$|\r?\n")
"""What httptools parses as a request's start (or a prefix of one; blank lines between
requests are skipped); anything else is served by h11."""

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 serves
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

if HttpToolsProtocol is not None:
    class HeaderTimeoutHttpToolsProtocol(HeaderTimer, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header and idle timeouts of
        :class:`HeaderTimer`.

        httptools calls ``on_message_begin`` at a request's first byte and
        ``on_headers_complete`` once its head is parsed: the timer runs in between, from
        the first byte, whatever arrives meanwhile. A pipelined request begun while the one
        before it is still being answered gets its timer once that answer is complete (as
        h11 only reads it then).

        httptools (llhttp) knows a fixed list of methods and refuses any other with a bare
        400, where h11 takes any token and the host answers 405 with ``Allow``. So a
        connection whose next request does not begin with a common method is handed to
        :class:`HeaderTimeoutH11Protocol` (as uvicorn hands one to a WebSocket protocol).
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = False

        def data_received(self, data: bytes) -> None:
            between = (not self._in_head and (self.cycle is None or self.cycle.response_complete)
                       and not self.pipeline)
            if between and not _COMMON_METHOD.match(data):
                self._hand_to_h11(data)
                return
            super().data_received(data)

        def _hand_to_h11(self, data: bytes) -> None:
            self._stop_header_timer()
            self._unset_keepalive_if_required()
            self.connections.discard(self)
            protocol = HeaderTimeoutH11Protocol.with_timeout(self.header_timeout)(
                config=self.config, server_state=self.server_state, app_state=self.app_state,
                _loop=self.loop)
            protocol.connection_made(self.transport)
            self.transport.set_protocol(protocol)
            protocol.data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            if self.cycle is None or self.cycle.response_complete:
                self._start_header_timer()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_header_timer()
            super().on_headers_complete()
            if self.cycle is not None and not isinstance(self.cycle.transport, OneSendResponse):
                self.cycle.transport = OneSendResponse(self.cycle, self._socket_fd())

        _fd: int | None = -1  # not looked up yet

        def _socket_fd(self) -> int | None:
            """The connection's socket, for :class:`OneSendResponse` to write directly;
            None when it must not (TLS: the transport encrypts) or cannot."""
            if self._fd == -1:
                sock = self.transport.get_extra_info("socket")
                plain = self.transport.get_extra_info("sslcontext") is None
                self._fd = sock.fileno() if sock is not None and plain else None
            return self._fd

        def on_response_complete(self) -> None:
            if self.cycle is not None and isinstance(self.cycle.transport, OneSendResponse):
                self.cycle.transport.flush()  # a HEAD or a 304 writes no body: its head now
            super().on_response_complete()
            if self._in_head:  # a pipelined request is half-buffered already
                self._start_header_timer()


def http_protocol(header_timeout: float) -> type[Any]:
    """The uvicorn HTTP protocol with a header timeout: httptools when installed (about
    twice as fast to parse as h11), else h11."""
    if HttpToolsProtocol is not None:
        return HeaderTimeoutHttpToolsProtocol.with_timeout(header_timeout)
    return HeaderTimeoutH11Protocol.with_timeout(header_timeout)


def server_config(app: Any, settings: Settings, *, lifespan: Literal["on", "off"] = "on"
                  ) -> uvicorn.Config:
    """How the embedded host runs uvicorn: its HTTP protocol (header timeout, one send per
    response), the idle timeout, no access log of uvicorn's own (the host logs its
    line), and the event loop uvicorn picks (uvloop when installed)."""
    return uvicorn.Config(
        app, lifespan=lifespan, access_log=False, log_config=None,
        timeout_graceful_shutdown=10, backlog=1024,
        http=http_protocol(settings.header_timeout_seconds), loop="auto",
        timeout_keep_alive=settings.idle_timeout_seconds)


def start_pipeline(services: Services) -> PipelineHandle | None:
    """Start the embedded pipeline (relay, broker, projections, timers) on SQLite, in
    worker processes of its own (``python -m local.worker``, one relaying and one
    consuming); ``services`` (the embedded root's ``HOST`` process) read what they write.

    With ``STOCKSTREAM_EVENT_STORE=cosmos`` the host serves the command path against Cosmos
    DB only: the relay of a Cosmos store is the change-feed function in Azure.
    """
    if services.settings.event_store != "sqlite":
        log.warning("event store is %s: the embedded pipeline runs on SQLite only; "
                    "availability and ops status answer 503", services.settings.event_store)
        return None
    from local.worker import SplitWorker

    return SplitWorker(services.settings.data_dir)


class EmbeddedHost:
    """One embedded Stockstream: services, pipeline and HTTP server, started and stopped
    together. The services are installed process-wide (``use_services``) while running.

    ``services`` injects services built elsewhere (the host then does not close them);
    with the pipeline they must be the embedded root's ``HOST`` process's."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        app: func.FunctionApp | None = None,
        services: Services | None = None,
        with_pipeline: bool = True,
        workers: int = 32,
    ) -> None:
        if not keyed(settings) and not is_loopback(host):
            raise InsecureBinding(
                f"refusing to listen on {host}: STOCKSTREAM_API_KEYS is not set, so requests "
                "would not be authenticated; set keys (or STOCKSTREAM_ADMIN_KEYS) or listen "
                "on 127.0.0.1"
            )
        if app is None:
            from function_app import app as function_app

            app = function_app
        self.settings = settings
        self.services = services
        self._own_services = services is None
        self._with_pipeline = with_pipeline
        self._pipeline: PipelineHandle | None = None
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say
        # so, and without it Nagle holds each response body back ~40 ms for an ACK.
        self.socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.host = host
        self.socket.listen(1024)
        self.port: int = self.socket.getsockname()[1]
        self._ready = threading.Event()
        self._foreground = False
        self.asgi = FunctionsHost(app, api_keys=settings.api_keys,
                                  admin_keys=settings.admin_keys,
                                  allowed_origins=settings.allowed_origins,
                                  body_timeout=settings.body_timeout_seconds, workers=workers,
                                  on_startup=self._start_services,
                                  on_shutdown=self._stop_services, home=CONSOLE)
        self.server = uvicorn.Server(server_config(self.asgi, settings))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------ services

    def _start_services(self) -> None:
        if self.services is None:
            process = EmbeddedProcess.HOST if self._with_pipeline else EmbeddedProcess.COMMANDS
            self.services = build_services(self.settings, process=process)
        use_services(self.services)
        if self._with_pipeline:
            self._pipeline = start_pipeline(self.services)
        if not keyed(self.settings):
            log.warning("STOCKSTREAM_API_KEYS is not set: requests are not authenticated, so "
                        "the host listens on loopback (%s) only", self.host)
        log.info("Stockstream listening on %s (data in %s)", self.url, self.settings.data_dir)
        if self._foreground:
            settle_heap()
        self._ready.set()

    def _stop_services(self) -> None:
        try:
            if self._pipeline is not None:
                self._pipeline.stop()
                self._pipeline = None
        finally:
            use_services(None)
            if self._own_services and self.services is not None:
                self.services.close()
                self.services = None
            log.info("Stockstream stopped")

    # ------------------------------------------------------------- serving

    def run(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (uvicorn shuts down gracefully).

        The process then serves until it is stopped, so its heap is settled once the
        services are started (``local.heap``); ``start`` (a host inside another program)
        leaves the program's heap alone."""
        self._foreground = True
        self._serve()

    def _serve(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self, timeout: float = 30.0) -> EmbeddedHost:
        """Serve from a background thread; returns once start-up completed.

        The socket is already listening, so a request sent now queues until served.
        """
        self._thread = threading.Thread(target=self._serve, name="embedded-host", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the embedded host did not start")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving (graceful: in-flight requests finish) and stop the services."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.socket.close()

    def __enter__(self) -> EmbeddedHost:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
