"""The words and limits of the wire contract that a consumer validates against.

The domain (``domain/identifiers.py``, ``domain/stock_item.py``) enforces the same rules
on commands; it imports nothing of ours, and this package must install without it, so
the values are declared here for the wire and there for the domain, and
``tests/schemas/test_contract_package.py`` fails the build when the two differ.
"""

from __future__ import annotations

from typing import Literal

MAX_IDENTIFIER_LENGTH = 64
IDENTIFIER_PATTERN = rf"^[A-Za-z0-9._-]{{1,{MAX_IDENTIFIER_LENGTH}}}$"
"""What a SKU, location, order id, channel or reference looks like on the wire."""

AdjustmentReason = Literal[
    "damaged", "expired", "theft", "shrinkage", "found", "returned", "correction", "other",
]
"""Reason codes of ``StockAdjusted`` v2."""
AdjustmentReasonV1 = Literal["damaged", "shrinkage", "found", "correction", "other"]
"""The reason words of the deprecated ``StockAdjusted`` v1."""
ReleaseReason = Literal["cancelled", "expired"]
StockState = Literal["sellable", "damaged", "quality_control"]
MAX_NOTE_LENGTH = 500
