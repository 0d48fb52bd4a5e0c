"""A hello-world ASGI app on uvicorn: the floor under any route of any host.

Standalone: imports nothing of Stockstream's. ``python -m bench.baselines.hello --serve DIR``
listens on a free loopback port and prints its URL first (``DIR`` is unused).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


async def app(scope: MutableMapping[str, Any],
              receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
              send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


def serve(app: Any) -> None:
    """Serve ``app`` on a free loopback port with uvicorn's defaults (uvloop and httptools
    when installed), no access log; print the URL first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                            backlog=1024)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    serve(app)
    sys.exit(0)
