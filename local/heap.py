"""The long-running processes' heap, settled once start-up is done.

CPython's cyclic garbage collector walks every tracked object of the oldest generation in
each full collection. A started host holds ~80,000 of them, its worker ~50,000 (the modules,
the app and its route table, pydantic's validators, the services), none of which will
ever be garbage, and under load a full collection came every two or three seconds and
took ~100 ms each: a pause of every request and every event in flight, on top of ~9 % of
a reservation's CPU spent collecting. Freezing what start-up made (``gc.freeze``, as the
``gc`` module documents for long-running servers) takes those objects out of every later
collection: a full collection under the same load then takes ~5 ms.

Only processes that serve until they are stopped settle their heap (``python -m local``,
its worker, the benchmarks' servers that stand for them); tests that start a host in
their own process do not, as frozen objects are never collected.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Collect what start-up left as garbage, then freeze everything still alive."""
    gc.collect()
    gc.freeze()
    log.info("start-up done: %d objects frozen out of garbage collection",
             gc.get_freeze_count())
