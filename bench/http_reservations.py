"""HTTP path: reservations per second over HTTP vs a minimal CRUD handler on the same stack.

Both servers are the embedded host (``local.host.EmbeddedHost``: uvicorn, the ASGI
dispatch of ``local.asgi``, a ``func.HttpRequest`` to a registered Functions handler on a
worker thread, per-request logging), each in its own process, driven in turn by the same
16 concurrent keep-alive clients from this process:

- scenario: ``PUT /api/stock/{sku}/{location}/reservations/{order_id}`` of the real
  ``function_app`` (parse and validate with pydantic, load the stream, decide, append the
  events with an fsync, shape the position);
- baseline: ``PUT /api/crud/{sku}/{location}/reservations/{order_id}`` of a one-function
  app that does one SQLite ``UPDATE`` of a stock row (same WAL and ``synchronous=FULL``).

Reservations spread over 256 SKU-locations (the pipeline is not started, so only the
HTTP command path is measured). The ratio of the two rates is the figure; the goal is
at least 0.6. Run alone with ``python -m bench.http_reservations [--quick]``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import azure.functions as func
import httpx

from bench.common import Row, ServerProcess

CLIENTS = 16
STOCK_ITEMS = 256
STOCK_ON_HAND = 1_000_000


# ------------------------------------------------------------------ baseline


def crud_app(path: Path) -> func.FunctionApp:
    """A one-function app: reserve by one SQLite UPDATE of the stock row, or 409."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT, location TEXT, on_hand INTEGER,"
               " reserved INTEGER, PRIMARY KEY (sku, location))")
    db.executemany("INSERT OR IGNORE INTO stock VALUES (?, 'STORE-1', ?, 0)",
                   [(f"SKU-{n}", STOCK_ON_HAND) for n in range(STOCK_ITEMS)])
    db.close()
    connections = threading.local()

    def connection() -> sqlite3.Connection:
        if not hasattr(connections, "db"):
            connections.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            connections.db.execute("PRAGMA synchronous=FULL")
        return connections.db  # type: ignore[no-any-return]

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("crud_reserve")
    @app.route(route="crud/{sku}/{location}/reservations/{order_id}", methods=["PUT"])
    def crud_reserve(req: func.HttpRequest) -> func.HttpResponse:
        quantity = int(json.loads(req.get_body())["quantity"])
        row = connection().execute(
            "UPDATE stock SET reserved = reserved + ? WHERE sku = ? AND location = ?"
            " AND on_hand - reserved >= ? RETURNING on_hand, reserved",
            (quantity, req.route_params["sku"], req.route_params["location"], quantity),
        ).fetchone()
        if row is None:
            return func.HttpResponse('{"title": "insufficient stock"}', status_code=409,
                                     mimetype="application/problem+json")
        return func.HttpResponse(json.dumps({"on_hand": row[0], "reserved": row[1]}),
                                 mimetype="application/json")

    return app


# ------------------------------------------------------------------- serving


def serve(kind: str, data_dir: Path) -> None:
    """Run one server in this process (``--serve api|crud DIR``); prints its URL first."""
    from application.settings import load
    from local.host import EmbeddedHost

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = dataclasses.replace(load({}), data_dir=data_dir)
    if kind == "crud":
        app = crud_app(data_dir / "crud.db")
    else:
        from function_app import app
    host = EmbeddedHost(settings, port=0, app=app, with_pipeline=False)
    print(host.url, flush=True)
    host.run()


def Server(kind: str, data_dir: Path) -> ServerProcess:
    """A server subprocess of this module (``kind``: the real app or the CRUD baseline)."""
    return ServerProcess("bench.http_reservations", data_dir, kind)


# ------------------------------------------------------------------- clients


def _client(url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=url, timeout=60.0, transport=transport)


def reservation_rate(url: str, prefix: str, count: int, tag: str) -> float:
    """Reservations per second by ``CLIENTS`` keep-alive clients, ``count`` in all."""
    per_client = count // CLIENTS
    start = threading.Barrier(CLIENTS + 1)
    failures: list[str] = []

    def client(k: int) -> None:
        with _client(url) as c:
            c.put(f"{prefix}/SKU-{k}/STORE-1/reservations/warm-{tag}-{k}",
                  json={"quantity": 1, "channel": "web"})
            start.wait()
            for i in range(per_client):
                n = k * per_client + i
                answer = c.put(
                    f"{prefix}/SKU-{n % STOCK_ITEMS}/STORE-1/reservations/{tag}-{n}",
                    json={"quantity": 1, "channel": "web"})
                if answer.status_code not in (200, 201):
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client, k) for k in range(CLIENTS)]
        start.wait()
        started = time.perf_counter()
        for future in running:
            future.result()
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} reservations failed, e.g. {failures[0]}")
    return per_client * CLIENTS / elapsed


def _receive_stock(url: str) -> None:
    with _client(url) as c:
        for n in range(STOCK_ITEMS):
            answer = c.post(f"/api/stock/SKU-{n}/STORE-1/receipts",
                            json={"quantity": STOCK_ON_HAND})
            answer.raise_for_status()


def run(quick: bool = False) -> list[Row]:
    count = 1600 if quick else 6400
    with tempfile.TemporaryDirectory() as tmp:
        with Server("crud", Path(tmp) / "crud") as crud:
            crud_rate = reservation_rate(crud.url, "/api/crud", count, "crud")
        with Server("api", Path(tmp) / "api") as api:
            _receive_stock(api.url)
            api_rate = reservation_rate(api.url, "/api/stock", count, "api")
    return [
        Row(
            scenario=f"HTTP path: reservations, {CLIENTS} clients, {STOCK_ITEMS} SKU-locations",
            unit="reservations/s",
            value=api_rate,
            baseline=crud_rate,
            goal=">= 0.6",
            note="baseline: one SQLite UPDATE of a stock row behind the same HTTP stack",
        )
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1], Path(argv[2]))
        return 0
    for row in run(quick="--quick" in argv):
        print(f"{row.scenario}: {row.value:,.0f} {row.unit} vs baseline {row.baseline:,.0f}"
              f" -> ratio {row.ratio:.2f} (goal {row.goal})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
