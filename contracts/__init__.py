"""The wire contract: what downstream teams receive (CloudEvents 1.0, docs/downstream.md).

The pydantic models here are the single source of truth for the event schemas; the
registry in ``schemas/`` is generated from them.
"""

from contracts.cloudevents import from_cloudevent_type, to_cloudevent, wire_type

__all__ = ["from_cloudevent_type", "to_cloudevent", "wire_type"]
