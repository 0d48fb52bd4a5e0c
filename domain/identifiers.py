"""Identifiers and the stream name: the one place that says what a SKU-location is called.

A stream is named ``{sku}|{location}``. Identifiers are case-sensitive and opaque:
``ABC`` and ``abc`` are two SKUs, because retailers' item masters are, and folding case
here would merge two items' stock silently.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from domain.errors import InvalidIdentifier, InvalidQuantity

MAX_IDENTIFIER_LENGTH = 64
"""Longest SKU, location or order id (a stream name is two of them and a ``|``)."""
IDENTIFIER_PATTERN = rf"^[A-Za-z0-9._-]{{1,{MAX_IDENTIFIER_LENGTH}}}$"
"""What a SKU, location or order id looks like: the domain checks it, and the HTTP models
and ``openapi.json`` state it, from here. The consumers' contract package declares the
same pattern for the wire (``stockstream_contract.vocabulary``; a test pins them equal)."""
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

# Fixed forever: stored streams are found by uuid5(NAMESPACE, stream name).
STOCKSTREAM_NAMESPACE = UUID("6f1c2a9e-4b7d-5c3e-9a21-5d0e7b3f8c44")


def require_identifier(kind: str, value: Any) -> str:
    """Return ``value`` if it is a valid identifier, else raise :class:`InvalidIdentifier`."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidIdentifier(
            f"{kind} must be 1 to {MAX_IDENTIFIER_LENGTH} characters of letters, digits, "
            f"'.', '_' or '-'; "
            f"got {value!r}",
            field=kind,
            value=value if isinstance(value, str | int) else repr(value),
        )
    return value


def require_quantity(kind: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is a whole number (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuantity(f"{kind} must be a whole number; got {value!r}", field=kind)
    if minimum is not None and value < minimum:
        raise InvalidQuantity(f"{kind} must be at least {minimum}; got {value}", field=kind)
    return value


def stream_name(sku: str, location: str) -> str:
    """The stream (and Cosmos partition, and Service Bus session) of a SKU-location."""
    return f"{require_identifier('sku', sku)}|{require_identifier('location', location)}"


@lru_cache(maxsize=65536)
def stream_uuid(sku: str, location: str) -> UUID:
    """The aggregate id that ``eventsourcing`` stores the stream under (memoised: hot path)."""
    return uuid5(STOCKSTREAM_NAMESPACE, stream_name(sku, location))


def event_id(sku: str, location: str, version: int) -> str:
    """The deterministic id of an event: the Service Bus ``MessageId`` and CloudEvents ``id``."""
    return f"{stream_name(sku, location)}:{version}"
