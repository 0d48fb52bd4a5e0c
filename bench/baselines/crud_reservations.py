"""What a team would write instead: a plain ASGI + SQLite CRUD reservation service.

Standalone: imports nothing of Stockstream's, and runs as its own process on the same
uvicorn (``python -m bench.baselines.crud_reservations --serve DIR``; it prints its URL
first). One table of stock rows, one of reservations keyed by order id.

``PUT /api/crud/{sku}/{location}/reservations/{order_id}`` with ``{"quantity": n}`` sets
the order's reservation (an absolute state: the same PUT twice is one reservation) in one
SQLite transaction, committed with ``synchronous=FULL`` (WAL): an fsync per request. It
answers 201 for a new reservation, 200 for a changed one, 409 when the stock is short,
422 for a bad body. SQLite has one writer, so the one connection is used by one writer
thread, one request at a time, while the event loop parses and answers the others (on
the loop itself the fsync stalls parsing: in a short, noisy comparison here it did 555/s
on the loop against 900–2,200/s with the thread, so the stronger one is the baseline).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn

STOCK_ITEMS = 256
STOCK_ON_HAND = 1_000_000

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def open_store(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT, location TEXT, on_hand INTEGER,"
               " reserved INTEGER, PRIMARY KEY (sku, location))")
    db.execute("CREATE TABLE IF NOT EXISTS reservations (sku TEXT, location TEXT,"
               " order_id TEXT, quantity INTEGER, PRIMARY KEY (sku, location, order_id))")
    db.executemany("INSERT OR IGNORE INTO stock VALUES (?, 'STORE-1', ?, 0)",
                   [(f"SKU-{n}", STOCK_ON_HAND) for n in range(STOCK_ITEMS)])
    return db


class CrudReservations:
    def __init__(self, path: Path) -> None:
        self.db = open_store(path)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="writer")

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive,
                       send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        parts = scope["path"].strip("/").split("/")
        if scope["method"] != "PUT" or len(parts) != 6 or parts[:2] != ["api", "crud"] \
                or parts[4] != "reservations":
            return await _answer(send, 404, {"title": "not found"})
        try:
            quantity = json.loads(body)["quantity"]
            if not isinstance(quantity, int) or quantity <= 0:
                raise ValueError(quantity)
        except (ValueError, KeyError, TypeError):
            return await _answer(send, 422, {"title": "invalid body"})
        status, document = await asyncio.get_running_loop().run_in_executor(
            self.writer, self.reserve, parts[2], parts[3], parts[5], quantity)
        await _answer(send, status, document)

    def reserve(self, sku: str, location: str, order_id: str,
                quantity: int) -> tuple[int, dict[str, Any]]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT quantity FROM reservations WHERE sku = ? AND location = ?"
                             " AND order_id = ?", (sku, location, order_id)).fetchone()
            held = row[0] if row else 0
            stock = db.execute(
                "UPDATE stock SET reserved = reserved + ? WHERE sku = ? AND location = ?"
                " AND on_hand - reserved >= ? RETURNING on_hand, reserved",
                (quantity - held, sku, location, quantity - held)).fetchone()
            if stock is None:
                db.execute("ROLLBACK")
                return 409, {"title": "insufficient stock"}
            db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                       " SET quantity = excluded.quantity",
                       (sku, location, order_id, quantity))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return (200 if row else 201), {
            "sku": sku, "location": location, "order_id": order_id, "quantity": quantity,
            "on_hand": stock[0], "reserved": stock[1],
            "available": stock[0] - stock[1]}


async def _answer(send: Send, status: int, document: dict[str, Any]) -> None:
    payload = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})



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
    if sys.argv[1:2] != ["--serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.baselines.crud_reservations --serve DIR")
    directory = Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    serve(CrudReservations(directory / "crud.db"))
