"""A hot SKU-location: ``wrk`` with 32 connections making new reservations on one stream,
vs the same 32 connections spread over 256 SKU-locations, against the real
``function_app`` served by the embedded host in its own process.

The load comes from ``wrk`` (one thread, a Lua script making a unique order id per
request), never from a Python client on the same two cores. Both scenarios run against
one server, in alternating rounds, and the figures are the medians. A flash sale keeps
reservations open (a checkout holds stock for minutes), so the hot stream carries every
reservation made during the run: by the last round, thousands.

Reported: the hot rate and its ratio to the spread rate (goal ≥ 1.0); optimistic-
concurrency conflict retries in the server (counted around the store's ``save``); and
oversold units. The Lua script counts the 201s wrk received; at the end the hot stream's
position is read and checked: reserved ≤ on hand (nothing oversold), reserved = its open
reservations = its ``StockReserved`` events (from the events route), and at least every
201 counted (a request in flight when a round ends may be recorded without wrk reading
its answer, so reserved may exceed the 201s by at most the connections per round). The
run fails otherwise.

The server's ``--serve`` mode prints its URL, serves until SIGTERM, then prints the
conflict count. Run alone with ``python -m bench.hot_sku [--quick]``; without ``wrk``
the benchmark is skipped with a message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import Row, ServerProcess

CONNECTIONS = 32
SPREAD_ITEMS = 256
STOCK_ON_HAND = 10_000_000
HOT = "HOT"

RESERVE_LUA = """
local threads = {}
local n = 0
local items, tag = 1, "r"
local body = '{"quantity": 1, "channel": "web"}'
local headers = {["Content-Type"] = "application/json"}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  -- items: 1 for the hot SKU-location, else how many to spread over. The tag makes
  -- every run's order ids its own: an order id already reserved would be a repeat.
  math.randomseed(os.time())
  items = tonumber(args[1])
  tag = string.format("%s-%d-%d", args[2], os.time(), math.random(1000000))
  created, other = 0, 0
end
function request()
  n = n + 1
  local sku = "HOT"
  if items > 1 then sku = string.format("SKU-%d", n % items) end
  return wrk.format("PUT", string.format("/api/stock/%s/STORE-1/reservations/%s-%d",
                                         sku, tag, n), headers, body)
end
function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local c, o = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
  end
  io.write(string.format("created %d other %d\\n", c, o))
end
"""


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
    save, save_many = container.store.save, container.store.save_many

    def counting(write: Any) -> Any:
        def counted(argument: Any) -> Any:
            try:
                return write(argument)
            except ConcurrencyConflict:
                conflicts[0] += 1
                raise
        return counted

    container.store.save = counting(save)  # type: ignore[method-assign]
    container.store.save_many = counting(save_many)  # type: ignore[method-assign]
    host = EmbeddedHost(settings, port=0, app=app, services=container, with_pipeline=False)
    print(host.url, flush=True)
    # uvicorn re-raises SIGTERM once it has stopped; ignore it so the count gets printed.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    host.run()
    print(f"conflicts {conflicts[0]}", flush=True)
    container.close()


class Server(ServerProcess):
    """The hot-SKU server subprocess; ``conflicts`` stops it and returns its count."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__("bench.hot_sku", data_dir)

    def conflicts(self) -> int:
        for line in self.stop().splitlines():
            if line.startswith("conflicts "):
                return int(line.split()[1])
        return -1


@dataclasses.dataclass(frozen=True)
class Round:
    rate: float
    """201s per second (what wrk counted)."""
    created: int
    other: int
    p99_ms: float


def drive(url: str, script: Path, items: int, tag: str, seconds: float) -> Round:
    """One ``wrk`` round of new reservations over ``items`` SKU-locations (1: the hot one)."""
    done = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout",
         "20s", "--latency", "-s", str(script), url, "--", str(items), tag],
        capture_output=True, text=True, check=True)
    out = done.stdout
    counted = re.search(r"created (\d+) other (\d+)", out)
    elapsed = re.search(r"requests in ([\d.]+)(m?s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if counted is None or elapsed is None or p99 is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    seconds_taken = float(elapsed.group(1)) / (1000 if elapsed.group(2) == "ms" else 1)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    created, other = int(counted.group(1)), int(counted.group(2))
    return Round(created / seconds_taken, created, other, float(p99.group(1)) * scale)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


def _receive(url: str, skus: list[str]) -> None:
    for sku in skus:
        request = urllib.request.Request(
            f"{url}/api/stock/{sku}/STORE-1/receipts", method="POST",
            data=json.dumps({"quantity": STOCK_ON_HAND}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200, answer.status


def settled_position(url: str) -> Any:
    """The hot stream's position once the requests still in flight when wrk stopped have
    been answered (two reads a quarter of a second apart at the same version)."""
    position = _get(f"{url}/api/stock/{HOT}/STORE-1")
    while True:
        time.sleep(0.25)
        again = _get(f"{url}/api/stock/{HOT}/STORE-1")
        if again["version"] == position["version"]:
            return again
        position = again


def reserved_events(url: str) -> int:
    """How many ``StockReserved`` events the hot stream holds (read page by page)."""
    after, count = 0, 0
    while True:
        page = _get(f"{url}/api/stock/{HOT}/STORE-1/events?after={after}&limit=1000")
        count += sum(1 for e in page if e["type"].startswith("Stockstream.StockReserved."))
        if len(page) < 1000:
            return count
        after = int(page[-1]["sequence"])


def run(quick: bool = False) -> list[Row]:
    if shutil.which("wrk") is None:
        print("skipping bench.hot_sku: wrk is not installed (apt-get install -y wrk)",
              file=sys.stderr)
        return []
    rounds, seconds = (2, 3.0) if quick else (5, 6.0)
    runs: dict[str, list[Round]] = {"hot": [], "spread": []}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "reserve.lua"
        script.write_text(RESERVE_LUA)
        server = Server(Path(tmp) / "server")
        try:
            _receive(server.url, [HOT, *(f"SKU-{n}" for n in range(SPREAD_ITEMS))])
            items = {"hot": 1, "spread": SPREAD_ITEMS}
            warm = {name: drive(server.url, script, n, f"warm-{name}", 1)
                    for name, n in items.items()}
            for round_ in range(rounds):
                names = ["hot", "spread"] if round_ % 2 == 0 else ["spread", "hot"]
                for name in names:
                    runs[name].append(drive(server.url, script, items[name],
                                            f"{name}-{round_}", seconds))
            position = settled_position(server.url)
            events = reserved_events(server.url)
        finally:
            conflicts = server.conflicts()
    hot, spread = runs["hot"], runs["spread"]
    created = warm["hot"].created + sum(r.created for r in hot)
    refused = warm["hot"].other + sum(r.other for r in hot)
    slack = CONNECTIONS * (len(hot) + 1)
    oversold = max(0, position["reserved"] - position["on_hand"])
    consistent = (position["reserved"] == len(position["reservations"]) == events
                  and created <= position["reserved"] <= created + slack)
    note = (f"{created} 201s counted on the hot stream, {refused} other answers; position: "
            f"{position['reserved']} reserved, {events} StockReserved events; "
            f"{conflicts} conflict retries; oversold units {oversold}; consistent: "
            f"{consistent}")
    if oversold or refused or not consistent:
        raise RuntimeError(f"hot SKU broke a guarantee: {note}")
    hot_rate = statistics.median(r.rate for r in hot)
    spread_rate = statistics.median(r.rate for r in spread)
    return [
        Row(f"hot SKU-location (wrk): reservations, {CONNECTIONS} conns, 1 stream",
            "reservations/s", hot_rate, spread_rate, ">= 1.0",
            f"baseline: the same {CONNECTIONS} connections over {SPREAD_ITEMS} "
            f"SKU-locations, one server, {len(hot)} alternating rounds, medians; {note}"),
        Row("hot SKU-location: p99 latency", "ms",
            statistics.median(r.p99_ms for r in hot),
            statistics.median(r.p99_ms for r in spread), "", "baseline: spread p99 (wrk)"),
        Row("hot SKU-location: conflict retries in the server", "retries", conflicts,
            None, "", "counted around save and save_many; the group commit decides one "
                      "process's commands one after another"),
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
