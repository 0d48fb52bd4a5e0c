"""The commands of a batch (``POST /api/stock/batch``), each answered as its single route.

A batch command is read as the request its single route would have received (route
parameters, JSON body, ``Idempotency-Key`` and ``If-Match`` headers: a
``functions.requests.CommandRequest``, :class:`BatchCommandRequest`) and given to that
route's own parse step (``functions.http.STOCK_WRITES``): one parser, one validator, one
set of problem documents. What it parses to is a planned command and the route's answer
step, whose ``Answer`` (status, body bytes) is placed in the batch's results as it is, so
a command's status and body are exactly what the single route answers. No
``func.HttpRequest``, URL or ``func.HttpResponse`` is built per command: those, and a
metric record per command, were a third of a batch's CPU beside the commands.

The planned commands are then run together (``StockCommands.run_many``): on the embedded
host they are queued as one group of the group commit, decided one after another on the
cached states in this thread and written in one SQLite transaction per group, with no
thread and no request object per command. Counts and adjustments pass the approval gate
(which may hold them), so they run alone after the group, in request order, as do the
later commands of their stream: a stream's commands take effect in request order.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import azure.functions as func

from adapters.telemetry import counting_commits
from application.commands import CommandResult, StockCommand
from functions.container import get_services
from functions.http_answers import problem_for, record_command
from functions.requests import BatchCommand, CommandRequest
from functions.responses import Answer

SINGLE_ROUTES: Mapping[str, tuple[str, bool, bool]] = {
    # op: (function, takes an order id, body required)
    "receive": ("receive_stock", False, True),
    "adjust": ("adjust_stock", False, True),
    "policy": ("set_policy", False, True),
    "reserve": ("reserve_stock", True, True),
    "release": ("release_reservation", True, False),
    "fulfil": ("fulfil_reservation", True, False),
    "count": ("record_count", False, True),
}
"""Each ``op``, the HTTP function that answers it alone, and what its route reads."""

_JSON_HEADERS = {"content-type": "application/json"}


class PlannedWrite(Protocol):
    """What a single route's parse step gives (``functions.http.StockWrite``)."""

    @property
    def command(self) -> StockCommand | None: ...

    @property
    def answer(self) -> Callable[[CommandResult], Answer]: ...

    def run_gated(self) -> Answer: ...


Parse = Callable[[CommandRequest], PlannedWrite]


@dataclass(frozen=True)
class BatchCommandRequest:
    """A batch command as its single route's request reads (a ``CommandRequest``): the
    stream (and order) as route parameters, the route's fields as its JSON body, the
    ``idempotency_key`` and ``if_match`` members as its headers."""

    route_params: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def get_body(self) -> bytes:
        return self.body

    @classmethod
    def of(cls, command: BatchCommand) -> tuple[str, BatchCommandRequest]:
        """The function that answers ``command`` alone, and ``command`` as its request.

        The fields are written back to JSON for the route's parser, which reads JSON in
        strict mode (a datetime from a string, an integer only from an integer): the
        same parser, hence the same refusals, for a few microseconds a command."""
        name, takes_order, body_required = SINGLE_ROUTES[command.op]
        params = {"sku": command.sku, "location": command.location}
        if takes_order:
            params["order_id"] = command.order_id or ""
        fields = command.model_extra
        body = json.dumps(fields).encode() if fields or body_required else b""
        headers = _JSON_HEADERS if body else {}
        if command.idempotency_key is not None or command.if_match is not None:
            headers = dict(headers)
            if command.idempotency_key is not None:
                headers["idempotency-key"] = command.idempotency_key
            if command.if_match is not None:
                headers["if-match"] = command.if_match
        return name, cls(params, headers, body)


def answer_batch(commands: Sequence[BatchCommand], parsers: Mapping[str, Parse]
                 ) -> func.HttpResponse:
    """The batch's answer: each command's ``{index, status, body}`` in request order
    (``functions.responses.BatchOut``; see the module).

    Each command is counted in the command metric under its single route's name and its
    outcome, as if sent alone (its time: its share of the batch), recorded once per
    (route, outcome). Each body is the single route's JSON as it wrote it, placed in the
    answer as it is: validating and re-serialising 500 bodies that our own models just
    wrote took a third of a batch's CPU (py-spy)."""
    started = time.perf_counter()
    answers: list[Answer | None] = [None] * len(commands)
    outcomes: list[str] = [""] * len(commands)
    names: list[str] = []
    planned: list[PlannedWrite | None] = []
    for index, command in enumerate(commands):
        name, request = BatchCommandRequest.of(command)
        names.append(name)
        try:
            planned.append(parsers[name](request))
        except Exception as error:  # its refusal, answered as the single route answers it
            planned.append(None)
            answers[index], outcomes[index] = _refused(error, index, command)

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
            answers[index], outcomes[index] = _answered(
                _planned(planned[index]), result, index, commands[index])
    for index in alone:
        write = _planned(planned[index])
        with counting_commits() as commits:
            try:
                answers[index] = write.run_gated() if write.command is None else (
                    write.answer(get_services().commands.run(write.command)))
                outcomes[index] = "applied" if commits[0] else "unchanged"
            except Exception as error:
                answers[index], outcomes[index] = _refused(error, index, commands[index])

    share = (time.perf_counter() - started) / max(1, len(commands))
    for (name, outcome), count in Counter(zip(names, outcomes, strict=True)).items():
        record_command(name, share, outcome, count)
    parts = [b'{"index":%d,"status":%d,"body":%s}' % (index, answer.status, answer.body)
             for index, answer in enumerate(_all(answers))]
    return func.HttpResponse(b'{"results":[' + b",".join(parts) + b"]}", status_code=200,
                             mimetype="application/json", charset="utf-8")


def _answered(write: PlannedWrite, result: CommandResult | Exception, index: int,
              command: BatchCommand) -> tuple[Answer, str]:
    """A grouped command's answer (its route's answer step, or its refusal) and outcome."""
    if isinstance(result, Exception):
        return _refused(result, index, command)
    try:
        answer = write.answer(result)
    except Exception as error:
        return _refused(error, index, command)
    return answer, "applied" if result.events else "unchanged"


def _refused(error: Exception, index: int, command: BatchCommand) -> tuple[Answer, str]:
    """The problem document the single route answers ``error`` with, and its outcome."""
    problem, outcome = problem_for(
        error, lambda: f"batch command {index} ({command.op} {command.sku!r} "
                       f"{command.location!r})")
    return problem.answer(), outcome


def _all(answers: list[Answer | None]) -> list[Answer]:
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def _planned(write: PlannedWrite | None) -> PlannedWrite:
    assert write is not None
    return write


def _command(write: PlannedWrite | None) -> StockCommand:
    command = _planned(write).command
    assert command is not None
    return command
