"""The stock domain: pure, no I/O. ``StockItem`` is the only aggregate."""

from domain.errors import DomainError
from domain.identifiers import event_id, stream_name, stream_uuid
from domain.stock_item import Position, Reservation, StockItem

__all__ = [
    "DomainError",
    "Position",
    "Reservation",
    "StockItem",
    "event_id",
    "stream_name",
    "stream_uuid",
]
