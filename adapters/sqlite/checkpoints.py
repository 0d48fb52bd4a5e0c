"""Relay checkpoints in the event store's own SQLite file (``eventsourcing`` tracking)."""

from __future__ import annotations

from contextlib import suppress

from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder

from application.ports import Checkpoints


class SQLiteCheckpoints(Checkpoints):
    """Checkpoints as ``eventsourcing`` tracking records: monotonic by construction."""

    def __init__(self, recorder: TrackingRecorder) -> None:
        self.recorder = recorder

    def position(self, name: str) -> int:
        return self.recorder.max_tracking_id(name) or 0

    def advance(self, name: str, position: int) -> None:
        # Not beyond the recorded position: another relay instance got there first.
        with suppress(IntegrityError):
            self.recorder.insert_tracking(Tracking(name, position))
