"""Payload models of every published event type and version, and the CloudEvents envelope.

They live in the consumer's package, ``stockstream_contract.models``
(``packages/stockstream-contract``, installable without the domain or the Azure SDKs), so
downstream teams and this repository read the one copy; this module re-exports it for the
producer's side. A new event type or version is a model there, then ``make schemas``.
"""

from stockstream_contract.models import *  # noqa: F403 - every model, whatever is added
