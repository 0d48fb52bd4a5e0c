"""The batch route: commands per second in 500-command batches vs the same commands sent
one request each: over HTTP with ``wrk`` against the embedded host (the row the goal is
for), and in process through the HTTP functions the app registers.

Over HTTP: one server process as ``bench.http_reservations`` starts it (our host, INFO
logging, no pipeline), ``wrk`` with 16 keep-alive connections sending either one new
reservation per request or a batch of 500 new reservations per request over the same 256
SKU-locations, in alternating rounds; commands per second = requests per second × the
commands a request carries.

In process means: each side calls the function object with a real ``func.HttpRequest``
(parsing, the command service, the answer) and no HTTP server is involved, so what is
compared is the work per command, not uvicorn's. The single commands come from 16
callers awaiting the route's coroutine function on one event loop (as the host awaits
them, so they too meet in the group commit); the batches
from one thread, each batch's commands queued as one group of the group commit
(``StockCommands.run_many``) and decided in that thread.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import azure.functions as func

from bench.common import Row, services
from bench.http_reservations import (
    CONNECTIONS,
    RESERVE_LUA,
    alternate,
    median_rate,
    receive_stock,
    servers,
)
from composition import Services
from function_app import app
from functions.container import use_services

LOCATIONS = 256
BATCH = 500
CALLERS = 16
_FUNCTIONS = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


def _reserve_request(i: int) -> func.HttpRequest:
    params = {"sku": f"SKU-{i % LOCATIONS}", "location": "STORE-1", "order_id": f"o-{i}"}
    return func.HttpRequest(
        "PUT", f"http://localhost/api/stock/{params['sku']}/STORE-1/reservations/o-{i}",
        headers={"content-type": "application/json"}, params={}, route_params=params,
        body=json.dumps({"quantity": 1, "channel": "web"}).encode())


def _batch_request(start: int) -> func.HttpRequest:
    commands = [{"op": "reserve", "sku": f"SKU-{i % LOCATIONS}", "location": "STORE-1",
                 "order_id": f"o-{i}", "quantity": 1, "channel": "web"}
                for i in range(start, start + BATCH)]
    return func.HttpRequest("POST", "http://localhost/api/stock/batch",
                            headers={"content-type": "application/json"}, params={},
                            route_params={}, body=json.dumps({"commands": commands}).encode())


def _stocked(data_dir: Path) -> Services:
    opened = services(data_dir)
    use_services(opened)
    for n in range(LOCATIONS):
        opened.commands.receive(f"SKU-{n}", "STORE-1", 1_000_000)
    return opened


def single_rate(data_dir: Path, count: int) -> float:
    opened = _stocked(data_dir)
    reserve = _FUNCTIONS["reserve_stock"]

    async def callers() -> float:
        async def caller(lane: int) -> None:
            for i in range(lane, count, CALLERS):
                assert (await reserve(_reserve_request(i))).status_code == 201

        started = time.perf_counter()
        await asyncio.gather(*(caller(lane) for lane in range(CALLERS)))
        return count / (time.perf_counter() - started)

    result = asyncio.run(callers())
    opened.close()
    return result


def batch_rate(data_dir: Path, count: int) -> float:
    opened = _stocked(data_dir)
    submit = _FUNCTIONS["submit_batch"]
    requests = [_batch_request(start) for start in range(0, count, BATCH)]
    started = time.perf_counter()
    for request in requests:
        answer = submit(request)
        assert answer.status_code == 200
        assert {r["status"] for r in json.loads(answer.get_body())["results"]} == {201}
    result = len(requests) * BATCH / (time.perf_counter() - started)
    opened.close()
    return result


BATCH_CONNECTIONS = 2
"""Connections sending batches: two keep the host busy (a batch is 500 commands) without
queueing batches behind one another for longer than a round lasts."""

BATCH_LUA = """
local n = 0
local BATCH = 500
local headers = {["Content-Type"] = "application/json"}
function request()
  local commands = {}
  for i = 1, BATCH do
    n = n + 1
    commands[i] = string.format(
      '{"op":"reserve","sku":"SKU-%d","location":"STORE-1","order_id":"b-%d",'
      .. '"quantity":1,"channel":"web"}', n % 256, n)
  end
  return wrk.format("POST", "/api/stock/batch", headers,
                    '{"commands":[' .. table.concat(commands, ",") .. ']}')
end
"""


def http_rows(quick: bool) -> list[Row]:
    """Singles vs batches over HTTP with wrk (see the module); none without wrk."""
    if shutil.which("wrk") is None:
        print("skipping the batch route over HTTP: wrk is not installed "
              "(apt-get install -y wrk)", file=sys.stderr)
        return []
    rounds, seconds = (2, 4.0) if quick else (3, 8.0)
    with tempfile.TemporaryDirectory() as tmp:
        single_script, batch_script = Path(tmp) / "single.lua", Path(tmp) / "batch.lua"
        single_script.write_text(RESERVE_LUA)
        batch_script.write_text(BATCH_LUA)
        running = servers(Path(tmp), ["ours"])
        try:
            url = running["ours"].url
            receive_stock(url)
            runs = alternate({
                "single": (url, {"script": single_script, "args": ("/api/stock", "s")}),
                "batch": (url, {"script": batch_script,
                                "connections": BATCH_CONNECTIONS}),
            }, rounds, seconds)
        finally:
            running["ours"].stop()
    return [Row(
        scenario=f"batch route (wrk): {BATCH}-command batches vs single commands",
        unit="commands/s",
        value=median_rate(runs["batch"]) * BATCH,
        baseline=median_rate(runs["single"]),
        goal=">= 3",
        note=f"wrk, {CONNECTIONS} connections for singles, {BATCH_CONNECTIONS} for batches, "
             "against the embedded host (INFO logging, no "
             "pipeline); new reservations over 256 SKU-locations; medians of alternating "
             "rounds",
    )]


def run(quick: bool = False) -> list[Row]:
    """Over HTTP (see :func:`http_rows`), then in process: three alternating rounds on
    fresh files; the medians."""
    count = 2000 if quick else 5000
    singles, batches = [], []
    try:
        for _ in range(3):
            with tempfile.TemporaryDirectory() as tmp:
                singles.append(single_rate(Path(tmp) / "single", count))
                batches.append(batch_rate(Path(tmp) / "batch", count))
    finally:
        use_services(None)
    return [*http_rows(quick), Row(
        scenario=f"batch route (in process): {BATCH}-command batches vs singles",
        unit="commands/s",
        value=statistics.median(batches),
        baseline=statistics.median(singles),
        goal=">= 3",
        note=f"in process through the HTTP function objects (no server): single commands "
             f"from {CALLERS} callers on one event loop vs batches from one; reservations "
             f"over {LOCATIONS} SKU-locations; medians of 3 alternating rounds",
    )]


if __name__ == "__main__":
    for row in run():
        print(row.as_dict())
