"""How every HTTP function answers, whatever blueprint declares it.

Refusals are raised anywhere in a handler (domain errors, store failures,
:class:`~functions.problems.Problem`) and turned into RFC 9457 problem documents in one
place, :func:`answering_problems`; an unexpected exception is logged and answered with a
500 problem (a 5xx is a bug). The same place records every state-changing request as a
command metric (its function's name, how long it took and how it ended).
``functions.http_routes`` wraps every function it registers with it, so no blueprint can
forget either.

Bodies are written by :func:`json_response` from the models of ``functions.responses``.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import azure.functions as func
from pydantic import BaseModel

from adapters.telemetry import counting_commits
from application.ports import ConcurrencyConflict, StoreUnavailable
from composition import ReconciliationServices, ReconciliationUnavailable
from domain.errors import DomainError
from functions import problems
from functions.container import get_services

log = logging.getLogger("stockstream.http")

Handler = Callable[[func.HttpRequest], func.HttpResponse]
AsyncHandler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Requests with these methods change nothing, so they are not commands."""


def answering_problems(handler: Handler | AsyncHandler, *, measured: bool = True
                       ) -> Handler | AsyncHandler:
    """Turn every refusal ``handler`` raises into its problem document, and record each
    state-changing request as the command ``handler.__name__`` with its duration and
    outcome (``adapters.telemetry.COMMAND_OUTCOMES``): ``applied`` when a save happened,
    ``unchanged`` when it succeeded without one (an idempotent repeat), ``rejected`` for a
    4xx, ``conflict`` when optimistic-concurrency retries ran out, ``error`` for a 5xx.

    A coroutine handler (one that awaits the group commit instead of holding a thread)
    gets a coroutine wrapper doing the same. ``measured=False`` keeps its requests out of
    the command metric."""
    command = handler.__name__
    if inspect.iscoroutinefunction(handler):
        awaited = cast(AsyncHandler, handler)

        @functools.wraps(awaited)
        async def answer_async(req: func.HttpRequest) -> func.HttpResponse:
            if not measured or (req.method or "").upper() in SAFE_METHODS:
                return (await answer_or_problem_async(awaited, req))[0]
            started = time.perf_counter()
            with counting_commits() as commits:
                response, outcome = await answer_or_problem_async(awaited, req)
            return _measured(command, started, commits, response, outcome)

        return answer_async
    called = cast(Handler, handler)

    @functools.wraps(called)
    def answer(req: func.HttpRequest) -> func.HttpResponse:
        if not measured or (req.method or "").upper() in SAFE_METHODS:
            return answer_or_problem(called, req)[0]
        started = time.perf_counter()
        with counting_commits() as commits:
            response, outcome = answer_or_problem(called, req)
        return _measured(command, started, commits, response, outcome)

    return answer


def _measured(command: str, started: float, commits: list[int],
              response: func.HttpResponse, outcome: str) -> func.HttpResponse:
    if outcome == "succeeded":
        outcome = "applied" if commits[0] else "unchanged"
    record_command(command, time.perf_counter() - started, outcome)
    return response


def answer_or_problem(handler: Handler, req: func.HttpRequest
                      ) -> tuple[func.HttpResponse, str]:
    """The answer to ``req`` and how it ended: succeeded, rejected, conflict or error."""
    try:
        response = handler(req)
    except Exception as error:
        return _problem_of(error, req)
    return response, _outcome_of(response)


async def answer_or_problem_async(handler: AsyncHandler, req: func.HttpRequest
                                  ) -> tuple[func.HttpResponse, str]:
    """:func:`answer_or_problem` of a coroutine handler."""
    try:
        response = await handler(req)
    except Exception as error:
        return _problem_of(error, req)
    return response, _outcome_of(response)


def _outcome_of(response: func.HttpResponse) -> str:
    status = int(response.status_code)
    return "error" if status >= 500 else "rejected" if status >= 400 else "succeeded"


def _problem_of(error: Exception, req: func.HttpRequest) -> tuple[func.HttpResponse, str]:
    """The problem document a refusal raised in a handler answers, and its outcome."""
    problem, outcome = problem_for(error, lambda: f"{req.method} {loggable_url(req.url)}")
    return problem.response(), outcome


def problem_for(error: Exception, where: Callable[[], str]) -> tuple[problems.Problem, str]:
    """The problem a refusal raised while answering a command stands for, and its outcome
    (rejected, conflict or error); store failures and unexpected ones are logged, said to
    be in ``where()`` (the request, or the batch command). The one mapping of refusals,
    for single routes and a batch's commands alike."""
    if isinstance(error, problems.Problem):
        return error, "error" if error.status >= 500 else "rejected"
    if isinstance(error, DomainError):
        return problems.from_domain(error), "rejected"
    if isinstance(error, StoreUnavailable | ConcurrencyConflict):
        log.warning("%s: %s", where(), error)
        outcome = "conflict" if isinstance(error, ConcurrencyConflict) else "error"
        return problems.from_store(error), outcome
    log.exception("unexpected failure in %s", where(), exc_info=error)
    return problems.internal_error(), "error"


def loggable_url(url: str) -> str:
    """``url`` without its ``code`` query parameters (a function key, as Azure accepts it)
    and capped, so a key never reaches a log and a long URL never floods one."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and unquote_plus(p.partition("=")[0]) != "code"]
    shown = urlunsplit(parts._replace(query="&".join(kept)))
    return shown if len(shown) <= 1024 else shown[:1024] + "…"


def record_command(command: str, seconds: float, outcome: str, count: int = 1) -> None:
    """``count`` commands ``command`` took ``seconds`` each and ended with ``outcome``
    (a batch records each (route, outcome) of its commands once, with their count)."""
    try:
        get_services().telemetry.record_command(command, seconds, outcome, count)
    except Exception:  # the answer is decided: a metric never changes it
        log.exception("could not record the command metric of %s", command)


def json_response(
    body: BaseModel | list[Any] | dict[str, Any], status: int = 200,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    """A JSON answer: a model as pydantic writes it, a list or dict as ``json.dumps`` does."""
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return func.HttpResponse(text, status_code=status, headers=headers or {},
                             mimetype="application/json", charset="utf-8")


def require_reconciliation() -> ReconciliationServices:
    """The process's reconciliation services (holds, sessions, schedule); a 503
    problem on a host without a reconciliation store."""
    try:
        return get_services().reconciliation.get()
    except ReconciliationUnavailable as error:
        raise problems.Problem(503, "reconciliation-unavailable", "Service unavailable",
                               str(error)) from None


def etag(version: int) -> dict[str, str]:
    """The ``ETag`` header of a stream at ``version`` (what ``If-Match`` names)."""
    return {"ETag": f'"{version}"'}


def unless_not_modified(req: func.HttpRequest, version: int,
                        answer: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """A GET's answer, or 304 when ``If-None-Match`` names the stream's ETag at ``version``.

    Decided in the function, so Azure answers 304 as the embedded host does (whose host
    also turns any 200 with a matching ``ETag`` into a 304)."""
    tag = etag(version)
    condition = req.headers.get("if-none-match") or ""
    named = [t.strip().removeprefix("W/") for t in condition.split(",")]
    if tag["ETag"] in named or "*" in named:
        return func.HttpResponse(status_code=304, headers=tag)
    return answer()

