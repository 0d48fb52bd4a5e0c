"""The commands of a batch (``POST /api/stock/batch``), each answered by its single route.

A batch command is turned into the request its single route would have received (method,
route parameters, JSON body, ``Idempotency-Key`` and ``If-Match`` headers) and given to
that route's own answering handler, so a command's status and body are exactly what the
single route answers: one parser, one validator, one set of problem documents.

Each stream's commands run one after another in request order; different streams run
side by side on up to :data:`BATCH_LANES` threads, so on the embedded host their
commands meet in the command service's group commit and share transactions and fsyncs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import azure.functions as func

from functions.http_answers import Handler
from functions.requests import BatchCommand

BATCH_LANES = 32
"""Streams of one batch served at the same time (threads of the batch's own pool)."""

SINGLE_ROUTES: Mapping[str, tuple[str, str, str, bool]] = {
    # op: (function, method, path after stock/{sku}/{location}, body required)
    "receive": ("receive_stock", "POST", "receipts", True),
    "adjust": ("adjust_stock", "POST", "adjustments", True),
    "policy": ("set_policy", "PUT", "policy", True),
    "reserve": ("reserve_stock", "PUT", "reservations/{order_id}", True),
    "release": ("release_reservation", "DELETE", "reservations/{order_id}", False),
    "fulfil": ("fulfil_reservation", "POST", "reservations/{order_id}/fulfilment", False),
    "count": ("record_count", "POST", "counts", True),
}
"""Each ``op`` and the HTTP function that answers it alone."""


def single_request(command: BatchCommand, base_url: str) -> tuple[str, func.HttpRequest]:
    """The function that answers ``command`` alone, and the request it would have got."""
    name, method, tail, body_required = SINGLE_ROUTES[command.op]
    params = {"sku": command.sku, "location": command.location}
    if "{order_id}" in tail:
        params["order_id"] = command.order_id or ""
    path = "/".join(quote(params[part[1:-1]], safe="") if part.startswith("{") else part
                    for part in f"{{sku}}/{{location}}/{tail}".split("/"))
    fields = command.model_extra or {}
    body = json.dumps(fields).encode() if fields or body_required else b""
    headers = {"content-type": "application/json"} if body else {}
    if command.idempotency_key is not None:
        headers["idempotency-key"] = command.idempotency_key
    if command.if_match is not None:
        headers["if-match"] = command.if_match
    return name, func.HttpRequest(method, f"{base_url}/stock/{path}", headers=headers,
                                  params={}, route_params=params, body=body)


def answer_batch(commands: Sequence[BatchCommand], handlers: Mapping[str, Handler],
                 base_url: str) -> func.HttpResponse:
    """The batch's answer: each command's ``{index, status, body}`` in request order
    (``functions.responses.BatchOut``; see the module).

    Each body is the single route's JSON as it wrote it, placed in the answer as it is:
    validating and re-serialising 500 bodies that our own models just wrote took a third
    of a batch's CPU (py-spy), and they are already valid JSON of their own schemas."""
    results: list[bytes] = [b"" for _ in commands]

    def run_lane(indexes: list[int]) -> None:
        for index in indexes:
            name, request = single_request(commands[index], base_url)
            response = handlers[name](request)
            results[index] = b'{"index":%d,"status":%d,"body":%s}' % (
                index, int(response.status_code), response.get_body() or b"{}")

    lanes: dict[tuple[str, str], list[int]] = {}
    for index, command in enumerate(commands):
        lanes.setdefault((command.sku, command.location), []).append(index)
    if len(lanes) <= 1:
        for lane in lanes.values():
            run_lane(lane)
    else:
        with ThreadPoolExecutor(min(BATCH_LANES, len(lanes)),
                                thread_name_prefix="batch") as pool:
            list(pool.map(run_lane, lanes.values()))
    return func.HttpResponse(b'{"results":[' + b",".join(results) + b"]}", status_code=200,
                             mimetype="application/json", charset="utf-8")
