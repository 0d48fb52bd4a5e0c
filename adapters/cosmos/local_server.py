"""Runs ``@vercel/cosmosdb-server`` (npm) on this machine: a Cosmos DB REST server on HTTPS,
for the tests (``tests/conftest.py``'s ``cosmos_server`` fixture) and the benchmarks
(``bench.hot_sku_azure``). Never used by a host.

The server speaks the Cosmos DB REST protocol well enough for the real ``azure-cosmos``
SDK (batches, queries, upserts, etags); its known bugs are listed in
``docs/cosmos.md`` and ``eventsourcing-notes.md`` §7.12. It uses a self-signed
certificate, so clients of *this* server turn TLS verification off; nothing else does.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from adapters.cosmos.persistence import CosmosDatastore, CosmosSettings

ROOT = Path(__file__).resolve().parents[2]
SERVER_BIN = ROOT / "node_modules" / ".bin" / "cosmosdb-server"
# The server accepts any well-formed key; this is the public key of Microsoft's emulator.
ACCOUNT_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
PATCHES = Path(__file__).resolve().parent / "local_server_patches.js"
_READY = re.compile(rb"Ready to accept HTTPS connections at [^\s]*:(\d+)")
START_TIMEOUT_SECONDS = 30.0


class CosmosServerError(RuntimeError):
    """The test server could not be started."""


@dataclass
class CosmosServer:
    """A running test server: where it listens and the key its clients use."""

    process: subprocess.Popen[bytes]
    port: int
    key: str = ACCOUNT_KEY

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_cosmos_server() -> CosmosServer:
    """Start the server on a free port chosen by the OS and wait until it answers TLS.

    Port 0 lets the kernel pick the port, so parallel test runs never collide; the
    server prints the port it got, which is read from its output.
    """
    if not SERVER_BIN.exists():
        raise CosmosServerError(
            f"{SERVER_BIN} is missing: run `make node` (npm ci) to install the test server"
        )
    process = subprocess.Popen(
        [str(SERVER_BIN), "--port", "0", "--host", "127.0.0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # Fixes of the server's own bugs (local_server_patches.js), for this server only.
        env={**os.environ, "NODE_NO_WARNINGS": "1", "NODE_OPTIONS": f"--require {PATCHES}"},
    )
    try:
        port = _read_port(process)
        server = CosmosServer(process, port)
        _wait_until_answering(server)
        # Keep reading its output so a chatty server never blocks on a full pipe.
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
    except BaseException:
        process.kill()
        process.wait(timeout=5)
        raise
    return server


def _read_port(process: subprocess.Popen[bytes]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    output = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=remaining):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break  # the server exited
            output += chunk
            match = _READY.search(output)
            if match:
                return int(match.group(1))
    raise CosmosServerError(
        f"cosmosdb-server did not start (exit code {process.poll()}): {output.decode()!r}"
    )


def _drain(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    try:
        while os.read(process.stdout.fileno(), 65536):
            pass
    except (OSError, ValueError):
        pass  # closed by stop()


def _wait_until_answering(server: CosmosServer) -> None:
    """Complete a TLS handshake with the server, retrying until the start deadline."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return
        except OSError as error:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise CosmosServerError(f"cosmosdb-server does not answer: {error}") from error
            time.sleep(0.05)  # a connect loop: nothing to await but the socket itself


def fresh_database(server: Any, prefix: str) -> CosmosSettings:
    """A database of its own on ``server`` (anything with ``endpoint`` and ``key``: this
    test server, or a live account), with the containers Bicep provisions in Azure."""
    settings = CosmosSettings(endpoint=server.endpoint, database=f"{prefix}-{uuid4().hex[:8]}",
                              key=server.key, verify_tls=False)
    CosmosDatastore(settings).create_containers_if_missing()
    return settings


def closed_port() -> int:
    """A port nothing listens on (bound, then released: connecting is refused), for a
    store that must be unreachable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
