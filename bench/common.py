"""What every benchmark shares: the row it reports and a timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One scenario: its figure, the baseline's in the same run, and the goal for the ratio."""

    scenario: str
    unit: str
    value: float
    baseline: float | None = None
    goal: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def rate(operation: Callable[[int], None], count: int) -> float:
    """Operations per second of ``operation(i)`` for i in range(count), run back to back."""
    started = time.perf_counter()
    for i in range(count):
        operation(i)
    return count / (time.perf_counter() - started)
