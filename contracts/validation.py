"""Validating a received event against the schema registry: ``validate_cloudevent``.

The one copy lives in the consumer's package, ``stockstream_contract.validation`` (with
the registry as its package data); this module re-exports it for the application's
consumers, so the service and downstream teams validate alike.
"""

from stockstream_contract.validation import *  # noqa: F403 - the whole module, one copy
