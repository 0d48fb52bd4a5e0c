"""HTTP path, measured with ``wrk`` (Debian's package) against separate server processes.

Every server is its own process on the same uvicorn, driven in alternating rounds by the
same ``wrk`` (one thread, 16 keep-alive connections), so the load generator is not a
Python client competing for the same cores:

- ours: the embedded host as ``make serve`` runs it (``local.host.EmbeddedHost``, the
  real ``function_app``, INFO logging to a file, every request logged), without the
  event pipeline (``bench.pipeline_lag`` measures that);
- ``bench.baselines.crud_reservations``: a plain ASGI + SQLite CRUD reservation service
  that imports nothing of ours (one transaction with ``synchronous=FULL`` per request);
- ``bench.baselines.hello``: a hello-world ASGI app;
- in full runs, the OLD baseline too, printed beside the new ones so a reader sees both:
  a one-function CRUD app (one SQLite ``UPDATE``) served by our own host. It shares our
  host's overhead, so its ratio flatters us and no goal is judged on it.

Scenarios: ``PUT .../reservations/{order_id}`` with a new order id every request over 256
SKU-locations (ours vs the CRUD service, and vs the old in-host CRUD), and ``GET`` of a
route that answers 404 vs the hello world. Each figure is the median over the rounds.

Where a 404's cost goes: two more servers join the 404 rounds, our host with INFO off and
the hello world served by uvicorn as our host sets it up (``local.host.server_config``),
and every server's CPU during each run (``/proc/PID/stat``) divided by its requests is
reported against the hello world's: the protocol, then our ASGI application and the
catch-all function, then the access line.
Without ``wrk`` the benchmark is skipped with a message (``apt-get install -y wrk``).
Run alone with ``python -m bench.http_reservations [--quick]``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import azure.functions as func

from bench.common import Row, ServerProcess, print_rows

CONNECTIONS = 16
STOCK_ITEMS = 256
STOCK_ON_HAND = 1_000_000

RESERVE_LUA = """
local prefix, tag = "/api/stock", "r"
local n = 0
local body = '{"quantity": 1, "channel": "web"}'
local headers = {["Content-Type"] = "application/json"}
function init(args)
  -- A tag of its own per run: rounds reuse the arguments, and an order id already
  -- reserved would be a repeat (200, nothing written), not a new reservation.
  math.randomseed(os.time())
  prefix = args[1]
  tag = string.format("%s-%d-%d", args[2], os.time(), math.random(1000000))
end
function request()
  n = n + 1
  local path = string.format("%s/SKU-%d/STORE-1/reservations/%s-%d", prefix,
                             n % 256, tag, n)
  return wrk.format("PUT", path, headers, body)
end
"""


# ------------------------------------------------------------------ old baseline


def crud_app(path: Path) -> func.FunctionApp:
    """The old baseline, as it was (shares our host's overhead): a one-function app served
    by our own host, reserving by one SQLite UPDATE of the stock row (WAL,
    ``synchronous=FULL``), or 409."""
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
    """Run a server in this process (``--serve KIND DIR``); prints its URL first.

    ``ours`` and ``old-crud``: our host, logging as ``python -m local`` sets it (INFO, so
    every request is logged); ``ours-quiet``: our host with INFO off; ``protocol``: the
    hello world served by uvicorn as our host sets it up (its HTTP protocol and timeouts),
    without our ASGI application."""
    from application.settings import load
    from local.host import EmbeddedHost, server_config
    from local.logs import configure_logging

    configure_logging(logging.WARNING if kind in ("ours-quiet", "protocol") else logging.INFO)
    settings = dataclasses.replace(load({}), data_dir=data_dir)
    if kind == "protocol":
        import socket

        import uvicorn

        from bench.baselines.hello import app as hello

        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listening.bind(("127.0.0.1", 0))
        listening.listen(1024)
        print(f"http://127.0.0.1:{listening.getsockname()[1]}", flush=True)
        uvicorn.Server(server_config(hello, settings, lifespan="off")).run(sockets=[listening])
        return
    if kind == "old-crud":
        app = crud_app(data_dir / "crud.db")
    else:
        from function_app import app
    host = EmbeddedHost(settings, port=0, app=app, with_pipeline=False)
    print(host.url, flush=True)
    host.run()


def servers(data_dir: Path, kinds: list[str]) -> dict[str, ServerProcess]:
    started: dict[str, ServerProcess] = {}
    for kind in kinds:
        directory = data_dir / kind
        if kind in ("ours", "old-crud", "ours-quiet", "protocol"):
            started[kind] = ServerProcess("bench.http_reservations", directory, kind)
        else:
            started[kind] = ServerProcess(f"bench.baselines.{kind}", directory)
    return started


# ------------------------------------------------------------------- load


@dataclasses.dataclass(frozen=True)
class WrkRun:
    rate: float
    requests: int
    unexpected: int  # non-2xx/3xx answers, socket errors
    server_cpu: float | None = None  # seconds of the server's CPU during the run

    @classmethod
    def parse(cls, output: str, *, errors_expected: bool) -> WrkRun:
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
        requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                            r"timeout (\d+)", output)
        unexpected = sum(int(g) for g in sockets.groups()) if sockets else 0
        if non2xx and not errors_expected:
            unexpected += int(non2xx.group(1))
        return cls(rate, requests, unexpected)


def wrk(url: str, seconds: float, *, script: Path | None = None,
        args: tuple[str, ...] = (), errors_expected: bool = False,
        connections: int = CONNECTIONS) -> WrkRun:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if args:
        command += ["--", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return WrkRun.parse(done.stdout, errors_expected=errors_expected)


def receive_stock(url: str) -> None:
    """Stock every SKU-location of our host (the CRUD baselines create theirs)."""
    for n in range(STOCK_ITEMS):
        request = urllib.request.Request(
            f"{url}/api/stock/SKU-{n}/STORE-1/receipts", method="POST",
            data=json.dumps({"quantity": STOCK_ON_HAND}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status in (200, 201), answer.status


def alternate(targets: dict[str, tuple[str, dict[str, object]]], rounds: int,
              seconds: float, servers: dict[str, ServerProcess] | None = None
              ) -> dict[str, list[WrkRun]]:
    """Each target's runs: every round runs every target once, the order alternating. A
    target named in ``servers`` has its server's CPU during each run measured too."""
    runs: dict[str, list[WrkRun]] = {name: [] for name in targets}
    names = list(targets)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else list(reversed(names)):
            url, options = targets[name]
            server = (servers or {}).get(name)
            before = server.cpu_seconds() if server else 0.0
            run = wrk(url, seconds, **options)  # type: ignore[arg-type]
            if server:
                run = dataclasses.replace(run, server_cpu=server.cpu_seconds() - before)
            if run.unexpected:
                raise RuntimeError(f"{name}: {run.unexpected} unexpected answers or errors")
            runs[name].append(run)
    return runs


def median_rate(runs: list[WrkRun]) -> float:
    return statistics.median(r.rate for r in runs)


def run(quick: bool = False) -> list[Row]:
    if shutil.which("wrk") is None:
        print("skipping bench.http_reservations: wrk is not installed "
              "(apt-get install -y wrk)", file=sys.stderr)
        return []
    rounds, seconds = (2, 3.0) if quick else (5, 8.0)
    kinds = ["ours", "crud_reservations", "hello", "ours-quiet", "protocol"] + (
        [] if quick else ["old-crud"])
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "reserve.lua"
        script.write_text(RESERVE_LUA)
        running = servers(Path(tmp), kinds)
        try:
            receive_stock(running["ours"].url)

            def reserving(name: str, prefix: str) -> tuple[str, dict[str, object]]:
                tag = name.replace("_", "-")
                return running[name].url, {"script": script, "args": (prefix, tag)}

            writers = {"ours": reserving("ours", "/api/stock"),
                       "crud_reservations": reserving("crud_reservations", "/api/crud")}
            if "old-crud" in running:
                writers["old-crud"] = reserving("old-crud", "/api/crud")
            for name, (url, options) in writers.items():  # warm-up, new order ids
                wrk(url, 1, script=script, args=(options["args"][0], f"warm-{name}"))  # type: ignore[index]
            for name, (_url, options) in writers.items():
                options["args"] = (options["args"][0], f"{name}-measured")  # type: ignore[index]
            writes = alternate(writers, rounds, seconds)
            not_found: dict[str, object] = {"errors_expected": True}
            reads = alternate({
                "ours": (f"{running['ours'].url}/api/no-such-route", not_found),
                "hello": (running["hello"].url, {}),
                "ours-quiet": (f"{running['ours-quiet'].url}/api/no-such-route", not_found),
                "protocol": (running["protocol"].url, {}),
            }, rounds, seconds, servers=running)
        finally:
            for server in running.values():
                server.stop()
    ours_rate = median_rate(writes["ours"])
    rows = [
        Row(scenario=f"HTTP (wrk): new reservations, {CONNECTIONS} conns, "
                     f"{STOCK_ITEMS} SKU-locations",
            unit="reservations/s", value=ours_rate,
            baseline=median_rate(writes["crud_reservations"]), goal=">= 1.0",
            note="baseline: a plain ASGI + SQLite CRUD service (fsync per request), own "
                 "process, same uvicorn"),
        Row(scenario="HTTP (wrk): a route that answers 404 vs hello world",
            unit="requests/s", value=median_rate(reads["ours"]),
            baseline=median_rate(reads["hello"]), goal=">= 0.5",
            note="baseline: a hello-world ASGI app on the same uvicorn"),
    ]
    rows += cost_of_a_request(reads)
    if "old-crud" in writes:
        rows.append(Row(
            scenario="HTTP (wrk): reservations vs the OLD baseline (CRUD on our own host)",
            unit="reservations/s", value=ours_rate,
            baseline=median_rate(writes["old-crud"]), goal="",
            note="old baseline: one SQLite UPDATE in a one-function app served by our own "
                 "host, so it shares our overhead; shown beside the new ones, no goal"))
    return rows


def cost_of_a_request(reads: dict[str, list[WrkRun]]) -> list[Row]:
    """Where a 404's cost goes, as the server's CPU a request (median over the rounds)
    against the hello world's: rates say what a machine's other load allows, CPU a request
    what the server does. The 404 goal (≥ 0.5 of the hello world's rate) needs ours at no
    more than twice the hello world's CPU."""
    def per_request(name: str) -> float:
        return statistics.median((r.server_cpu or 0.0) / r.requests * 1e6 for r in reads[name])

    hello = per_request("hello")
    parts = [
        ("protocol", "the hello world on our host's uvicorn set-up (header timeouts, one "
                     "send)", "what our HTTP protocol adds to uvicorn's"),
        ("ours-quiet", "our host's 404, INFO off", "+ our ASGI application, the catch-all "
                                                   "function and its func objects"),
        ("ours", "our host's 404, INFO on (as make serve)", "+ the access line"),
    ]
    return [Row(scenario=f"HTTP (wrk): server CPU a request, {label}",
                unit="µs CPU/request", value=per_request(name), baseline=hello, goal="",
                note=f"baseline: the hello world's CPU a request; {note}; no goal: the "
                     "404 goal needs the last row at most 2.0")
            for name, label, note in parts]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1], Path(argv[2]))
        return 0
    print_rows(run(quick="--quick" in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
