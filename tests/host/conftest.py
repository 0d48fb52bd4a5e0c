"""The embedded host in this process, on a free port, spoken to over raw sockets.

These tests pin what the host does with HTTP itself (framing, keys, origins, timeouts,
logging), so they write the bytes by hand: an HTTP client library would refuse to send
most of what is sent here (half a body, a forged Host, a newline in a path). The host
runs without the event pipeline; its access log is captured by :class:`AccessLog`.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from application.settings import load
from local.host import EmbeddedHost

_ids = itertools.count(1)


def fresh_sku() -> str:
    """A SKU no other test touched, so tests sharing a host do not interact."""
    return f"SKU-H{next(_ids)}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_code(self) -> str:
        assert self.headers["content-type"].startswith("application/problem+json"), self
        document = self.json()
        assert {"type", "title", "status", "detail"} <= set(document)
        assert document["status"] == self.status
        return str(document["type"]).rsplit(":", 1)[-1]


class Raw:
    """One client connection; requests and replies as bytes, nothing validated."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, target: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, host: str | None = None) -> None:
        """Send one request; ``Content-Length`` is added when there is a body."""
        lines = [f"{method} {target} HTTP/1.1",
                 f"Host: {host if host is not None else f'127.0.0.1:{self.port}'}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None and not any(k.lower() == "content-length" for k in headers or {}):
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def reply(self, *, head: bool = False) -> Reply:
        """The next response (an interim 100 is a response of its own)."""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        top, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            assert key not in headers, f"{key} sent twice: {top!r}"
            headers[key] = value.strip()
        bodiless = head or status in (204, 304) or status < 200
        length = 0 if bodiless else int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Reply(status, headers, body)

    def exchange(self, method: str, target: str, **kwargs: Any) -> Reply:
        self.request(method, target, **kwargs)
        return self.reply(head=method == "HEAD")

    def wait_closed(self) -> None:
        """Return once the server closed the connection (raises on the socket timeout)."""
        while True:
            try:
                if not self.sock.recv(65536):
                    return
            except ConnectionResetError:
                return

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server; unread: {self._buffer!r}")
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AccessLog(logging.Handler):
    """Every message of the ``stockstream.host`` logger, with a way to await one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.lines.append(record.getMessage())
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The first line ``predicate`` accepts, once it is logged."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if predicate(line)]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no such log line; logged: {self.lines[-20:]}"
                self._changed.wait(remaining)

    def matching(self, text: str) -> list[str]:
        with self._changed:
            return [line for line in self.lines if text in line]


@dataclass
class LocalHost:
    embedded: EmbeddedHost
    log: AccessLog
    key: str | None = None

    @property
    def port(self) -> int:
        return self.embedded.port

    def raw(self, timeout: float = 10.0) -> Raw:
        return Raw(self.port, timeout)

    def call(self, method: str, target: str, *, json_body: Any = None,
             headers: dict[str, str] | None = None, key: str | None = None) -> Reply:
        """One request on a new connection; the host's key unless ``key`` is given."""
        all_headers = {"Connection": "close"}
        if json_body is not None:
            all_headers["Content-Type"] = "application/json"
        if key or self.key:
            all_headers["x-functions-key"] = key or self.key or ""
        all_headers.update(headers or {})
        body = None if json_body is None else json.dumps(json_body).encode()
        with self.raw() as raw:
            return raw.exchange(method, target, body=body, headers=all_headers)

    def events(self, sku: str, location: str = "STORE-1") -> list[dict[str, Any]]:
        reply = self.call("GET", f"/api/stock/{sku}/{location}/events")
        assert reply.status == 200, reply
        return list(reply.json())


@contextmanager
def serve(tmp: Path, env: dict[str, str] | None = None, *, key: str | None = None,
          bind: str = "127.0.0.1") -> Iterator[LocalHost]:
    """An embedded host without the pipeline, settings from ``env``, its log captured."""
    settings = load({"STOCKSTREAM_DATA": str(tmp / f"data-{next(_ids)}"), **(env or {})})
    logger = logging.getLogger("stockstream.host")
    handler, level = AccessLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    host = EmbeddedHost(settings, host=bind, port=0, with_pipeline=False)
    try:
        host.start()
        yield LocalHost(host, handler, key)
    finally:
        host.stop()
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """A host without keys (loopback only, as ``make serve`` starts by default)."""
    with serve(tmp_path_factory.mktemp("keyless")) as running:
        yield running
