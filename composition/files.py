"""The files of the embedded host's data directory, named in one place.

Apart from :mod:`composition.embedded` (which opens them) so that whoever only needs a
path (the drift report routes, the CLI's default report directory) imports no adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedFiles:
    """The files of the embedded host under its data directory (the one place they are
    named). SQLite files are safe to share between the host's processes."""

    data_dir: Path

    @property
    def events(self) -> Path:
        """The event store, which is the outbox (and keeps the relay's checkpoint)."""
        return self.data_dir / "events.db"

    @property
    def broker(self) -> Path:
        return self.data_dir / "broker.db"

    @property
    def views(self) -> Path:
        """The availability projection."""
        return self.data_dir / "views.db"

    @property
    def reconciliation(self) -> Path:
        """Holds, count sessions and the movement ledger."""
        return self.data_dir / "reconciliation.db"

    @property
    def processes(self) -> Path:
        """Order and location-group streams, with the orders' wake-up index
        (``adapters.sqlite.process_streams``)."""
        return self.data_dir / "processes.db"

    @property
    def worker_metrics(self) -> Path:
        """The snapshot of what the pipeline worker measured, served by the host."""
        return self.data_dir / "metrics" / "worker.json"

    @property
    def consumer_metrics(self) -> Path:
        """The snapshot of what the pipeline worker's consuming process measured, served
        by the host with the worker's."""
        return self.data_dir / "metrics" / "worker-consumer.json"

    @property
    def reports(self) -> Path:
        """Where ``stockstream reconcile`` writes drift reports by default (its
        ``--report-dir``), and where the drift report routes read them
        (``functions.drift_reports``)."""
        return self.data_dir / "reports"
