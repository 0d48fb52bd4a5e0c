"""The reservation expiry sweep: releases overdue reservations through the aggregate.

Commands already expire overdue reservations of their own stream before deciding; the
sweep finds the streams nobody touches (from the projection's expiry index) so their
stock comes back to available on time and ``ReservationReleased`` (expired) reaches
every consumer.
"""

from __future__ import annotations

import logging

from application.commands import StockCommands
from application.ports import Clock, Overdue

log = logging.getLogger(__name__)

class ExpirySweep:
    """Expires every overdue reservation the index knows of, one stream at a time."""

    def __init__(self, overdue: Overdue, commands: StockCommands, clock: Clock) -> None:
        self.overdue = overdue
        self.commands = commands
        self.clock = clock

    def run_once(self, limit: int = 500) -> int:
        """Sweep up to ``limit`` streams; returns how many reservations were released."""
        released = 0
        for sku, location in self.overdue(self.clock.now(), limit):
            try:
                result = self.commands.expire_overdue(sku, location)
            except Exception:
                log.exception("expiry of %s|%s failed; the next sweep retries", sku, location)
                continue
            released += len(result.events)
        return released
