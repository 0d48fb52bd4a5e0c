"""Outgoing messages shaped as the relay publishes them."""

from __future__ import annotations

import json
from datetime import datetime

from application.ports import OutgoingMessage


def event_message(
    sku: str = "SKU-1",
    location: str = "store-7",
    version: int = 1,
    *,
    type_: str = "Stockstream.StockReceived.v1",
    padding: int = 0,
    replay_target: str = "all",
    scheduled: datetime | None = None,
) -> OutgoingMessage:
    """The message of event ``{sku}|{location}:{version}``; ``padding`` grows the body."""
    stream = f"{sku}|{location}"
    body = json.dumps(
        {"id": f"{stream}:{version}", "type": type_, "subject": stream, "pad": "x" * padding}
    ).encode()
    return OutgoingMessage(
        message_id=f"{stream}:{version}",
        session_id=stream,
        subject=type_,
        body=body,
        application_properties={
            "type": type_,
            "sku": sku,
            "location": location,
            "sequence": version,
            "replayTarget": replay_target,
        },
        scheduled_enqueue_time=scheduled,
    )
