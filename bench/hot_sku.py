"""A hot SKU-location: 32 concurrent HTTP clients reserving on one stream, vs the same
clients spread over 256 SKU-locations, both against the real ``function_app`` served by
the embedded host in its own process.

A flash sale keeps reservations open (a checkout holds stock for minutes), so the hot
stream carries every reservation made during the run. Reported: the hot rate and its
ratio to the uniform rate (goal ≥ 0.5); p99 latency; optimistic-concurrency conflict
retries in the server (counted around the store's ``save``); and oversold units, from
the final position against the 201s the clients received (must be 0).

The server's ``--serve`` mode prints its URL, serves until SIGTERM, then prints the
conflict count. Run alone with ``python -m bench.hot_sku [--quick]``.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import Row, ServerProcess

CLIENTS = 32
UNIFORM_ITEMS = 256
STOCK_ON_HAND = 10_000_000



def _client(url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=url, timeout=60.0, transport=transport)


def serve(data_dir: Path) -> None:
    """The real app on the embedded host, with conflicts counted around ``save``."""
    from application.ports import ConcurrencyConflict
    from application.settings import load
    from composition.embedded import embedded_services
    from function_app import app
    from local.host import EmbeddedHost

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = dataclasses.replace(load({}), data_dir=data_dir)
    container = embedded_services(settings)
    conflicts = [0]
    save = container.store.save

    def counting_save(item: Any) -> Any:
        try:
            return save(item)
        except ConcurrencyConflict:
            conflicts[0] += 1
            raise

    container.store.save = counting_save  # type: ignore[method-assign]
    host = EmbeddedHost(settings, port=0, app=app, services=container, with_pipeline=False)
    print(host.url, flush=True)
    # uvicorn re-raises SIGTERM once it has stopped; ignore it so the count gets printed.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    host.run()
    print(f"conflicts {conflicts[0]}", flush=True)
    container.close()


class Server(ServerProcess):
    """The hot-SKU server subprocess; ``stop`` returns the conflicts it counted."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__("bench.hot_sku", data_dir)

    def conflicts(self) -> int:
        for line in self.stop().splitlines():
            if line.startswith("conflicts "):
                return int(line.split()[1])
        return -1


@dataclasses.dataclass
class Outcome:
    rate: float
    p99_ms: float
    granted: int
    refused: int


def drive(url: str, skus: list[str], count: int, tag: str) -> Outcome:
    """``count`` reservations by ``CLIENTS`` keep-alive clients over ``skus``."""
    per_client = count // CLIENTS
    start = threading.Barrier(CLIENTS + 1)
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        mine: list[float] = []
        codes: list[int] = []
        with _client(url) as c:
            c.get("/api/openapi.json")
            start.wait()
            for i in range(per_client):
                n = k * per_client + i
                began = time.perf_counter()
                answer = c.put(f"/api/stock/{skus[n % len(skus)]}/STORE-1/reservations/{tag}-{n}",
                               json={"quantity": 1, "channel": "web"})
                mine.append(time.perf_counter() - began)
                codes.append(answer.status_code)
        with lock:
            latencies.extend(mine)
            statuses.extend(codes)

    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client, k) for k in range(CLIENTS)]
        start.wait()
        started = time.perf_counter()
        for future in running:
            future.result()
        elapsed = time.perf_counter() - started
    unexpected = {s for s in statuses if s not in (201, 503)}
    if unexpected:
        raise RuntimeError(f"unexpected statuses {unexpected}")
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98] * 1000
    granted = statuses.count(201)
    return Outcome(granted / elapsed, p99, granted, statuses.count(503))


def _receive(url: str, skus: list[str]) -> None:
    with _client(url) as c:
        for sku in skus:
            c.post(f"/api/stock/{sku}/STORE-1/receipts",
                   json={"quantity": STOCK_ON_HAND}).raise_for_status()


def run(quick: bool = False) -> list[Row]:
    count = 1600 if quick else 3200  # 100 open reservations per client at the end
    uniform_skus = [f"SKU-{n}" for n in range(UNIFORM_ITEMS)]
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "uniform")
        try:
            _receive(server.url, uniform_skus)
            uniform = drive(server.url, uniform_skus, count, "u")
        finally:
            uniform_conflicts = server.conflicts()
        server = Server(Path(tmp) / "hot")
        try:
            _receive(server.url, ["HOT"])
            hot = drive(server.url, ["HOT"], count, "h")
            with _client(server.url) as c:
                position = c.get("/api/stock/HOT/STORE-1").json()
        finally:
            hot_conflicts = server.conflicts()
    oversold = max(0, position["reserved"] - position["on_hand"])
    consistent = position["reserved"] == hot.granted == len(position["reservations"])
    note = (f"{hot.granted} granted, {hot.refused} answered 503; {hot_conflicts} conflict retries "
            f"(uniform: {uniform_conflicts}); oversold units {oversold}; position matches "
            f"the 201s: {consistent}")
    if oversold or not consistent:
        raise RuntimeError(f"hot SKU broke a guarantee: {note}")
    return [
        Row(f"hot SKU-location: reservations, {CLIENTS} clients, 1 stream", "reservations/s",
            hot.rate, uniform.rate, ">= 0.5",
            f"baseline: same clients over {UNIFORM_ITEMS} SKU-locations; {note}"),
        Row("hot SKU-location: p99 latency", "ms", hot.p99_ms, uniform.p99_ms, "",
            "baseline: uniform p99"),
        Row("hot SKU-location: conflict retries in the server", "retries", hot_conflicts,
            None, "", "per-stream lock in StockCommands serialises one process's commands"),
        Row("hot SKU-location: oversold units", "units", oversold, None, "== 0", note),
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(Path(argv[1]))
        return 0
    for row in run(quick="--quick" in argv):
        ratio = f" ratio {row.ratio:.2f}" if row.ratio is not None else ""
        print(f"{row.scenario}: {row.value:,.1f} {row.unit}{ratio} ({row.note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
