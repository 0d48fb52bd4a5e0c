"""The reliability suite's table: each test records what it measured; the run prints it.

``make faults`` (and ``make test``) end with one table of the figures that matter to a
retailer: events lost, duplicates counted, units oversold, server errors.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

_FIGURES: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


class Reliability:
    """What a fault test measured, added up per scenario across its runs."""

    def record(self, scenario: str, **figures: int) -> None:
        for name, value in figures.items():
            _FIGURES[scenario][name] += value


@pytest.fixture(scope="session")
def reliability() -> Reliability:
    return Reliability()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability")
    for scenario, figures in _FIGURES.items():
        shown = ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in figures.items())
        terminalreporter.write_line(f"{scenario:<44} {shown}")
