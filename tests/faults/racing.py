"""Races over real sockets: many clients released at once, one observer reading throughout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

from tests.e2e.conftest import RunningHost

T = TypeVar("T")


def race(host: RunningHost, clients: int, shop: Callable[[int, threading.Barrier], T],
         observe: Callable[[httpx.Client], None]) -> list[T]:
    """``shop(k, start)`` for each client ``k`` on a thread of its own (each waits on
    ``start``, so they set off together once connected), while one more thread calls
    ``observe`` with its own client over and over until the last client has finished.
    Returns what each client returned, in client order."""
    racing = threading.Event()

    def observer_loop() -> None:
        with host.client() as c:
            while racing.is_set():
                observe(c)

    start = threading.Barrier(clients)
    racing.set()
    observer = threading.Thread(target=observer_loop)
    observer.start()
    try:
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(lambda k: shop(k, start), range(clients)))
    finally:
        racing.clear()
        observer.join(30)
