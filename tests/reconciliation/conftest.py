"""Reconciliation fixtures: a real SQLite data directory, a clock that can be moved ahead."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.settings import load
from functions.container import (
    Container,
    ReconciliationServices,
    build_container,
    reconciliation_services,
)
from local.pipeline import Pipeline, start_pipeline


@dataclass
class MovableClock:
    """The machine clock plus an offset: reservations can expire without waiting.

    Event timestamps come from the machine clock, so counts use real times.
    """

    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def instant() -> datetime:
    """A real moment strictly after every event recorded so far and strictly before every
    event recorded afterwards (waits for the clock to tick, without sleeping)."""
    moment = datetime.now(UTC)
    while datetime.now(UTC) <= moment:
        pass
    return moment


def csv_text(rows: list[dict[str, Any]] | list[list[str]], header: str | None = None) -> str:
    out = io.StringIO()
    out.write((header or "sku,location,counted,counted_at,count_id") + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        if isinstance(row, dict):
            writer.writerow([row["sku"], row["location"], row["counted"],
                             row["counted_at"], row["count_id"]])
        else:
            writer.writerow(row)
    return out.getvalue()


def count_row(sku: str, counted: int, at: datetime, count_id: str = "C1",
              location: str = "STORE-1") -> dict[str, Any]:
    return {"sku": sku, "location": location, "counted": counted,
            "counted_at": at.isoformat(), "count_id": count_id}


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def container(tmp_path: Path, clock: MovableClock) -> Iterator[Container]:
    c = build_container(load({"STOCKSTREAM_DATA": str(tmp_path)}), clock)
    yield c
    c.close()


@pytest.fixture
def services(container: Container) -> ReconciliationServices:
    return reconciliation_services(container)


@pytest.fixture
def pipeline(container: Container) -> Iterator[Pipeline]:
    """The embedded pipeline, wired and not started: tests move events with :func:`project`."""
    p = start_pipeline(container, autostart=False)
    yield p
    p.stop()


def project(pipeline: Pipeline) -> None:
    """Publish what is committed and let the availability subscription's consumer apply it
    (to the availability view and the movement ledger), as the running pipeline does."""
    pipeline.relay.drain()
    while pipeline.consumer.run_once(0.0):
        pass
