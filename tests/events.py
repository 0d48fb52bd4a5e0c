"""The events an aggregate has pending, typed as what a test expects them to be.

``Aggregate.collect_events()`` is typed as the library's protocol, which names none of
our fields; a test that reads ``quantity`` off a ``Reserved`` asserts the kind first,
so a command that records some other event fails the test instead of reading a missing
attribute (or, under mypy, instead of being unchecked).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, StoredEvent

from domain import StockItem

E = TypeVar("E", bound=Aggregate.Event)
T = TypeVar("T")


def only(items: Iterable[Any], kind: type[T]) -> list[T]:
    """``items`` (events, holds, …), each asserted to be a ``kind``."""
    items = list(items)
    assert all(isinstance(item, kind) for item in items), [type(i).__name__ for i in items]
    return [item for item in items if isinstance(item, kind)]


def last(items: Sequence[Any], kind: type[T]) -> T:
    """The last of ``items``, asserted to be a ``kind``."""
    item = items[-1]
    assert isinstance(item, kind), type(item).__name__
    return item


def collected(aggregate: Aggregate, kind: type[E]) -> list[E]:
    """The events ``aggregate`` has pending (collected, so the next call starts afresh),
    each asserted to be a ``kind``."""
    return only(aggregate.collect_events(), kind)


def stock_events(item: StockItem) -> list[StockItem.Event]:
    """The events ``item`` has pending, every one a ``StockItem.Event``."""
    return collected(item, StockItem.Event)


def from_snapshot(mapper: Mapper[UUID], stored: StoredEvent) -> StockItem:
    """The stock item a stored snapshot rebuilds (asserted to be a ``StockItem`` snapshot)."""
    snapshot = mapper.to_domain_event(stored)
    assert isinstance(snapshot, StockItem.Snapshot), type(snapshot).__name__
    item = snapshot.mutate(None)
    assert isinstance(item, StockItem)
    return item
