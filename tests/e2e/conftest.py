"""Start the real embedded host (``python -m local``) on a free port and talk to it over
real sockets. Each host gets its own data directory; its log goes to a file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.sqlite import SQLiteStockItems

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningHost:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path

    def client(self) -> httpx.Client:
        """A keep-alive client. TCP_NODELAY: httpx writes headers and body separately, and
        Nagle's algorithm would hold the body back for a delayed ACK (~40 ms a request)."""
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        return httpx.Client(base_url=self.url, timeout=30.0, transport=transport)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        """Until ``text`` is in the log: INFO lines reach it in blocks, within a quarter
        of a second (``local.logs``)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert time.monotonic() < deadline, self.log()[-2000:]
            time.sleep(0.02)

    def store(self) -> SQLiteStockItems:
        """A second reader of the host's event store (SQLite WAL: reads never block)."""
        return SQLiteStockItems(self.data_dir / "events.db")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_host(tmp: Path, *extra: str, env: dict[str, str] | None = None,
               timeout: float = 60.0) -> RunningHost:
    """Run ``python -m local --port 0`` and wait until its log says where it listens."""
    data_dir, log_path = tmp / "data", tmp / "host.log"
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("STOCKSTREAM_", "PORT"))}
    full_env.update({"STOCKSTREAM_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "local", "--port", "0", *extra],
                                   cwd=REPO, env=full_env, stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"listening on (http://\S+)", text)
        if found:
            return RunningHost(process, found.group(1), data_dir, log_path)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the host did not start:\n{text}")
        time.sleep(0.05)  # the log file has no change notification to wait on


def module_host(name: str) -> Any:
    """A module-scoped fixture: one embedded host for the tests of a module, on its own
    data directory, stopped cleanly (exit code 0) after them."""

    @pytest.fixture(scope="module")
    def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
        started = start_host(tmp_path_factory.mktemp(name))
        yield started
        assert started.stop() == 0, started.log()

    return running


host = module_host("host")


@pytest.fixture
def client(host: RunningHost) -> Iterator[httpx.Client]:
    with host.client() as c:
        yield c
