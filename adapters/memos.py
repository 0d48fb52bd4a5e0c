"""Memos: what a stream's events make a repeat recognisable by, kept beside the events.

An idempotency key, a closed order or a count id must be recognised for a time window
(``STOCKSTREAM_IDEMPOTENCY_WINDOW``) however many a SKU-location sees, yet the aggregate's
state (and its snapshot) must not grow with them. So every save hands its events' memos
(:meth:`domain.stock_item.StockItem.Event.memos`) to the recorder, which writes them in
the *same* atomic write as the events: one SQLite transaction, one Cosmos DB transactional
batch. A memo found is therefore never ahead of what the events say, and one whose events
committed is never missing. Each persistence module that the event store runs on
implements :class:`MemoRecorder`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent

MEMOS = "memos"
"""The keyword argument of ``insert_events`` that carries a save's memos."""


STREAM_MEMOS = "stream_memos"
"""The keyword argument of ``insert_events`` that carries the memos of a save across
several streams, each as ``(stream id, StreamMemo)``; only a recorder whose class says
``atomic_across_streams = True`` is given it."""


class StreamMemo(NamedTuple):
    """One memo of one event, kept until ``expires_at``."""

    memo: str
    value: str
    version: int
    expires_at: datetime


@runtime_checkable
class MemoRecorder(Protocol):
    """A recorder that keeps memos (``insert_events(..., memos=[...])``) and finds them."""

    def select_memo(
        self, originator_id: UUID | str, memo: str, now: datetime
    ) -> tuple[str, int] | None:
        """The value and version of ``memo`` in the stream if it has not expired by ``now``."""
        ...


@runtime_checkable
class MemoBatchRecorder(Protocol):
    """A memo recorder that also finds many memos in one read."""

    def select_memos(
        self, wanted: Sequence[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], tuple[str, int]]:
        """The value and version of each ``(stream, memo)`` found unexpired by ``now``
        (``stream``: the originator id as text, ``UUID.hex``), by key."""
        ...


@runtime_checkable
class StreamStartRecorder(Protocol):
    """A recorder that can list every stream it holds, by each stream's first event.

    Operators need every stream, not only those a projection or ledger has seen: a check
    that read only the rows it already knew would call a missing row an all-clear.
    """

    def select_stream_starts(self, topic: str) -> Iterator[StoredEvent]:
        """The version-1 event of every stream whose first event has ``topic``, in no
        particular order (streamed: a store may hold millions)."""
        ...
