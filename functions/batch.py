"""The commands of a batch (``POST /api/stock/batch``), each answered as its single route.

A batch command is turned into the request its single route would have received (method,
route parameters, JSON body, ``Idempotency-Key`` and ``If-Match`` headers) and given to
that route's own parse step (``functions.http.STOCK_WRITES``): one parser, one validator,
one set of problem documents. What it parses to is a planned command and the route's
answer step, so a command's status and body are exactly what the single route answers.

The planned commands are then run together (``StockCommands.run_many``): on the embedded
host they are queued as one group of the group commit, decided one after another on the
cached states in this thread and written in one SQLite transaction per group, with no
thread and no request object per command. Counts and adjustments pass the approval gate
(which may hold them), so they run alone after the group, in request order, as do the
later commands of their stream: a stream's commands take effect in request order.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol
from urllib.parse import quote

import azure.functions as func

from adapters.telemetry import counting_commits
from application.commands import CommandResult, StockCommand
from functions.container import get_services
from functions.http_answers import answer_or_problem, record_command
from functions.requests import BatchCommand

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


class PlannedWrite(Protocol):
    """What a single route's parse step gives (``functions.http.StockWrite``)."""

    @property
    def command(self) -> StockCommand | None: ...

    @property
    def answer(self) -> Callable[[CommandResult], func.HttpResponse]: ...

    def run(self) -> func.HttpResponse: ...


Parse = Callable[[func.HttpRequest], PlannedWrite]


def single_request(command: BatchCommand, base_url: str) -> tuple[str, func.HttpRequest]:
    """The function that answers ``command`` alone, and the request it would have got."""
    name, method, tail, body_required = SINGLE_ROUTES[command.op]
    params = {"sku": command.sku, "location": command.location}
    if "{order_id}" in tail:
        params["order_id"] = command.order_id or ""
    path = "/".join(_quoted(params[part[1:-1]]) if part.startswith("{") else part
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


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def _quoted(segment: str) -> str:
    """``segment`` as a URL path segment (most identifiers need no quoting: checked first,
    as ``quote`` cost a tenth of a batch)."""
    return segment if _UNRESERVED.fullmatch(segment) else quote(segment, safe="")


def answer_batch(commands: Sequence[BatchCommand], parsers: Mapping[str, Parse],
                 base_url: str) -> func.HttpResponse:
    """The batch's answer: each command's ``{index, status, body}`` in request order
    (``functions.responses.BatchOut``; see the module).

    Each command is recorded in the command metric under its single route's name, as if
    sent alone (its time: its share of the batch). Each body is the single route's JSON
    as it wrote it, placed in the answer as it is: validating and re-serialising 500
    bodies that our own models just wrote took a third of a batch's CPU (py-spy)."""
    started = time.perf_counter()
    answers: list[func.HttpResponse | None] = [None] * len(commands)
    outcomes: list[str] = ["" for _ in commands]
    requests: list[tuple[str, func.HttpRequest]] = []
    planned: list[PlannedWrite | None] = []
    for index, command in enumerate(commands):
        name, request = single_request(command, base_url)
        requests.append((name, request))
        try:
            planned.append(parsers[name](request))
        except Exception as error:  # its refusal, answered as the single route answers it
            planned.append(None)
            answers[index], outcomes[index] = answer_or_problem(_answering(None, error),
                                                                request)

    grouped: list[int] = []
    alone: list[int] = []
    streams_alone: set[tuple[str, str]] = set()
    for index, write in enumerate(planned):
        if write is None:
            continue
        stream = (commands[index].sku, commands[index].location)
        if write.command is None or stream in streams_alone:
            streams_alone.add(stream)  # a gated command: its stream's later ones wait
            alone.append(index)
        else:
            grouped.append(index)

    if grouped:
        results = get_services().commands.run_many(
            [_command(planned[i]) for i in grouped])
        for index, result in zip(grouped, results, strict=True):
            answers[index], outcomes[index] = answer_or_problem(
                _answering(planned[index], result), requests[index][1])
            if outcomes[index] == "succeeded":
                assert isinstance(result, CommandResult)
                outcomes[index] = "applied" if result.events else "unchanged"
    for index in alone:
        write = _planned(planned[index])
        with counting_commits() as commits:
            answers[index], outcomes[index] = answer_or_problem(_running(write),
                                                                requests[index][1])
        if outcomes[index] == "succeeded":
            outcomes[index] = "applied" if commits[0] else "unchanged"

    share = (time.perf_counter() - started) / max(1, len(commands))
    parts: list[bytes] = []
    for index, answer in enumerate(answers):
        assert answer is not None
        record_command(requests[index][0], share, outcomes[index])
        parts.append(b'{"index":%d,"status":%d,"body":%s}' % (
            index, int(answer.status_code), answer.get_body() or b"{}"))
    return func.HttpResponse(b'{"results":[' + b",".join(parts) + b"]}", status_code=200,
                             mimetype="application/json", charset="utf-8")


def _planned(write: PlannedWrite | None) -> PlannedWrite:
    assert write is not None
    return write


def _command(write: PlannedWrite | None) -> StockCommand:
    command = _planned(write).command
    assert command is not None
    return command


def _answering(write: PlannedWrite | None, result: CommandResult | Exception
               ) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """A handler answering ``result`` with the answer step of ``write``; an exception is
    raised in it, to be answered as the single route answers it (``answer_or_problem``)."""

    def answer(_req: func.HttpRequest) -> func.HttpResponse:
        if isinstance(result, Exception):
            raise result
        return _planned(write).answer(result)

    return answer


def _running(write: PlannedWrite) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """A handler running ``write`` alone, as its single route does."""
    return lambda _req: write.run()
