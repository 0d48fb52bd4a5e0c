"""Orders: 5-line all-or-nothing orders against 5 single-line reservations (issue 15).

A 5-line order holds what 5 single reservations hold, plus its own stream (the intent,
then the outcome) and the process's bookkeeping; its 5 holds are one group of the group
commit (one fsync), where the 5 single reservations, one after another, pay one each.
The goal: per line held, an order runs at ≥ 0.7 of the rate of single-line reservations,
measured side by side in one run, on the same stock spread (256 SKU-locations, a line
on each of 5 consecutive ones):

- in process: ``Orders.place`` vs 5 × ``StockCommands.reserve``, from the embedded
  composition root, an order and its 5 reservations interleaved (each timed alone);
- over HTTP: ``wrk`` (one thread, 16 keep-alive connections) against one embedded host
  process (``bench.http_reservations``' server, without the pipeline), alternating
  ``PUT /api/orders/{id}/reservation`` (5 lines) and ``PUT .../reservations/{id}``
  (one line) rounds (median).

The figure is lines held per second (orders/s × 5) against reservations per second.
Run alone with ``python -m bench.orders [--quick]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import Row, interleaved_rates, print_rows, services
from bench.http_reservations import (
    CONNECTIONS,
    RESERVE_LUA,
    STOCK_ITEMS,
    STOCK_ON_HAND,
    alternate,
    median_rate,
    receive_stock,
    servers,
    wrk,
)

LINES = 5
GOAL = ">= 0.7"

ORDER_LUA = """
local tag = "o"
local n = 0
local headers = {["Content-Type"] = "application/json"}
function init(args)
  math.randomseed(os.time())  -- a tag per run: an order placed again is a repeat
  tag = string.format("%s-%d-%d", args[1], os.time(), math.random(1000000))
end
function request()
  n = n + 1
  local lines = {}
  for k = 0, 4 do
    lines[#lines + 1] = string.format(
      '{"sku": "SKU-%d", "location": "STORE-1", "quantity": 1}', (5 * n + k) % 256)
  end
  local body = '{"channel": "web", "lines": [' .. table.concat(lines, ", ") .. ']}'
  return wrk.format("PUT", string.format("/api/orders/%s-%d/reservation", tag, n),
                    headers, body)
end
"""


def cart(n: int) -> list[dict[str, object]]:
    """Order ``n``'s lines: one unit on each of 5 consecutive SKU-locations."""
    return [{"sku": f"SKU-{(LINES * n + k) % STOCK_ITEMS}", "location": "STORE-1",
             "quantity": 1} for k in range(LINES)]


def in_process(count: int) -> tuple[float, float]:
    """(lines held per second by orders, single reservations per second), an order and
    its 5 single reservations interleaved (``interleaved_rates``)."""
    with tempfile.TemporaryDirectory() as tmp:
        built = services(Path(tmp))
        try:
            orders, commands = built.orders, built.commands
            assert orders is not None, "the embedded root builds the order service"
            for n in range(STOCK_ITEMS):
                commands.receive(f"SKU-{n}", "STORE-1", STOCK_ON_HAND)

            def place(i: int) -> None:
                answer = orders.place(f"o-{i}", "web", cart(i))
                assert answer.created

            def reserve(i: int) -> None:
                for k, line in enumerate(cart(i)):
                    commands.reserve(str(line["sku"]), "STORE-1", f"r-{i}-{k}", 1, "web")

            rates = interleaved_rates({"orders": place, "single": reserve}, count)
        finally:
            built.close()
    return LINES * rates["orders"], LINES * rates["single"]


def over_http(rounds: int, seconds: float) -> tuple[float, float] | None:
    """(lines held per second by orders, single reservations per second) with wrk."""
    if shutil.which("wrk") is None:
        print("skipping the HTTP part of bench.orders: wrk is not installed "
              "(apt-get install -y wrk)", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        order_script, reserve_script = Path(tmp) / "order.lua", Path(tmp) / "reserve.lua"
        order_script.write_text(ORDER_LUA)
        reserve_script.write_text(RESERVE_LUA)
        host = servers(Path(tmp), ["ours"])["ours"]
        try:
            receive_stock(host.url)
            wrk(host.url, 1, script=order_script, args=("warm",))
            wrk(host.url, 1, script=reserve_script, args=("/api/stock", "warm"))
            runs = alternate({
                "orders": (host.url, {"script": order_script, "args": ("order",)}),
                "single": (host.url, {"script": reserve_script,
                                      "args": ("/api/stock", "single")}),
            }, rounds, seconds)
        finally:
            host.stop()
    return LINES * median_rate(runs["orders"]), median_rate(runs["single"])


def run(quick: bool = False) -> list[Row]:
    lines, single = in_process(200 if quick else 2000)
    rows = [Row(
        scenario=f"orders in process: lines held/s, {LINES}-line orders vs single",
        unit="lines/s", value=lines, baseline=single, goal=GOAL,
        note=f"{LINES}-line all-or-nothing orders (Orders.place) vs {LINES} single-line "
             "reservations (StockCommands.reserve), interleaved, same stock spread")]
    http_rounds, seconds = (2, 3.0) if quick else (5, 8.0)
    measured = over_http(http_rounds, seconds)
    if measured is not None:
        rows.append(Row(
            scenario=f"orders over HTTP (wrk, {CONNECTIONS} conns): lines held/s vs single",
            unit="lines/s", value=measured[0], baseline=measured[1], goal=GOAL,
            note=f"PUT /api/orders/{{id}}/reservation ({LINES} lines) vs PUT "
                 ".../reservations/{id}, one embedded host, alternating wrk rounds"))
    return rows


def main(argv: list[str]) -> int:
    print_rows(run(quick="--quick" in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
