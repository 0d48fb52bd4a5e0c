"""Calling a function object of the app as the Azure Functions worker does."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def invoke(function: Callable[..., Any], *args: Any, **bindings: Any) -> Any:
    """``function``'s answer to ``bindings``: a coroutine function (the stock writes that
    await the group commit) is awaited on an event loop, as the worker runs it."""
    answer = function(*args, **bindings)
    if inspect.iscoroutine(answer):
        return run_coroutine(answer)
    return answer


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on an event loop of its own: in this thread, or in
    another when one runs here already (Playwright's synchronous API leaves one running
    in the test session's thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
