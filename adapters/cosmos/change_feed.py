"""Reading the ``events`` container's change feed: documents back into stored events.

The inverse of ``persistence.event_document``, for the relay function: the Functions
change-feed trigger hands over documents as written (plus Cosmos's system properties).
"""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent


def stored_event_from_document(document: dict[str, Any]) -> StoredEvent | None:
    """The stored event a change-feed document holds, or None for any other document."""
    try:
        return StoredEvent(
            originator_id=UUID(str(document["originator_id"])),
            originator_version=int(document["originator_version"]),
            topic=str(document["topic"]),
            state=base64.b64decode(document["state"]),
        )
    except (KeyError, ValueError, TypeError):
        return None


def document_age_seconds(document: dict[str, Any], now_epoch: float) -> float | None:
    """Seconds since Cosmos DB committed the document (its ``_ts``), for relay lag."""
    ts = document.get("_ts")
    return max(now_epoch - float(ts), 0.0) if isinstance(ts, int | float) else None
