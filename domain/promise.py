"""Available to promise: what a SKU-location can promise per UTC day.

For each day d = 0 .. N−1, day 0 being the UTC day of ``as_of``::

    ATP(d) = sellable − reserved − safety_stock + incoming due before the end of day d

where "due before the end of day d" includes every entry whose ``expected_at`` is already
past (overdue supply is still expected). The figure is not clamped at 0: a location that
is short today says by how much, and the day supply covers it. Incoming quantities are
never negative, so ATP never decreases from one day to the next.

Pure: a function of a :class:`~domain.stock_item.Position` and a moment, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from domain.errors import InvalidQuantity
from domain.identifiers import require_quantity
from domain.stock_item import Position, require_timestamp

DEFAULT_PROMISE_DAYS = 14
MAX_PROMISE_DAYS = 90


@dataclass(frozen=True)
class PromiseDay:
    """What can be promised for delivery from this location by the end of ``date``."""

    date: date
    available_to_promise: int


@dataclass(frozen=True)
class AvailableToPromise:
    """ATP of one SKU-location over ``len(days)`` UTC days from ``as_of``'s day."""

    sku: str
    location: str
    as_of: datetime
    version: int
    days: tuple[PromiseDay, ...]


def available_to_promise(
    position: Position, as_of: datetime, days: int = DEFAULT_PROMISE_DAYS
) -> AvailableToPromise:
    """ATP per UTC day for ``days`` days (1 to :data:`MAX_PROMISE_DAYS`) from ``as_of``.

    Raises ``InvalidQuantity`` (field ``days``) for a day count out of range and
    ``InvalidRequest`` for a naive or out-of-range ``as_of``.
    """
    require_quantity("days", days, minimum=1)
    if days > MAX_PROMISE_DAYS:
        raise InvalidQuantity(f"days must be at most {MAX_PROMISE_DAYS}; got {days}",
                              field="days")
    require_timestamp("as_of", as_of)
    first = as_of.astimezone(UTC).date()
    base = position.sellable - position.reserved - position.safety_stock
    due = sorted((e.expected_at, e.quantity) for e in position.incoming)
    arrived = 0
    i = 0
    promised: list[PromiseDay] = []
    for d in range(days):
        day = first + timedelta(days=d)
        end_of_day = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
        while i < len(due) and due[i][0] < end_of_day:
            arrived += due[i][1]
            i += 1
        promised.append(PromiseDay(day, base + arrived))
    return AvailableToPromise(position.sku, position.location, as_of, position.version,
                              tuple(promised))
