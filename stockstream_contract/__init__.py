"""Stockstream's event contract for downstream teams, installable on its own.

``pip install ./packages/stockstream-contract`` (from a checkout of the repository) gives:

- :func:`validate_cloudevent` / :func:`validate_message_body`: check a received CloudEvent
  against the schema registry this package ships (``stockstream_contract/schemas``), and
  learn its registered type and version, or why to dead-letter it;
- ``stockstream_contract.models``: the pydantic models of every event payload and of the
  CloudEvents envelope (the same models the service generates the schemas from).

It depends on pydantic, jsonschema and fastjsonschema only: no domain, no Azure SDK.
"""

from stockstream_contract.validation import (
    DEFAULT_REGISTRY,
    EventRejected,
    RegisteredEvent,
    SchemaValidationFailed,
    UnknownEventType,
    load_registry,
    validate_cloudevent,
    validate_message_body,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "EventRejected",
    "RegisteredEvent",
    "SchemaValidationFailed",
    "UnknownEventType",
    "load_registry",
    "validate_cloudevent",
    "validate_message_body",
]
