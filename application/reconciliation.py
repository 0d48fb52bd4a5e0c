"""Reconciliation: physical counts in, ordinary ``StockCounted`` corrections out.

A *count session* is one batch of physical counts (a count file, or an HTTP batch). Each
row ``sku, location, counted, counted_at, count_id`` goes through the approval gate
(:class:`~application.holds.ApprovalGate`) that every count passes, whatever its route,
and from there through :meth:`StockCommands.record_count`, which folds the stream and
decides; reconciliation reads no stream to decide anything.

Contracts a caller may rely on:

* **Idempotent.** A count id the aggregate already recorded with the same figures is
  ``unchanged`` and emits nothing; with other figures it is ``rejected``. A row held for
  approval stays held (one hold, however often the file is imported); a row whose hold
  was dismissed stays unrecorded (``unchanged``). Whether a count id was already
  recorded is the aggregate's answer (``CommandResult.already_recorded``), never
  inferred here.
* **Malformed rows are named.** Rows the count file refused (``application.count_files``)
  are ``rejected`` with their reason; a row whose ``counted_at`` lies outside the count
  window (``STOCKSTREAM_COUNT_MAX_AGE`` back, five minutes ahead) is rejected before
  anything is applied.
* **All or nothing means nothing.** With ``all_or_nothing`` every row is decided first
  (window, identifiers, and the aggregate's own decision in a dry run that writes
  nothing); if any is refused, nothing is applied or held.
* **Large drifts wait.** A drift above the hold policy is held by the gate (nothing on the
  stream) and applied only by approval; dismissal drops it without an event.
* **Drift is measured once.** An applied row's drift is the ``delta`` and
  ``previous_on_hand`` of the event recorded, a held row's those of the event the
  aggregate would have recorded; never a second computation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from application.commands import CommandResult
from application.count_files import CountFile, CountLine
from application.holds import (
    Approval,
    ApprovalGate,
    Held,
    HeldCount,
    Hold,
    HoldDismissed,
    HoldPolicy,
    UnknownHold,
    drift_percent,
)
from application.ports import DriftRecorder, SessionHistory, StockItemStore
from domain.errors import DomainError
from domain.stock_item import StockItem

Outcome = Literal["applied", "unchanged", "held", "rejected", "skipped"]
"""What happened to one row: a correction was recorded; the count id was already
recorded (nothing emitted); held for approval; refused (with a reason); not applied
because another row was refused under all-or-nothing."""


# ------------------------------------------------------------------- results


@dataclass(frozen=True)
class CountResult:
    """What one row did, with its drift (applied: from the event; held: as assessed)."""

    line: int
    sku: str | None
    location: str | None
    count_id: str | None
    outcome: Outcome
    counted: int | None = None
    counted_at: datetime | None = None
    on_hand_at_count: int | None = None
    drift_units: int | None = None
    drift_percent: float | None = None
    expired_units: int = 0
    """Units released by reservation expiry here between the previous count and this one
    (read only for a row that drifted: there is nothing to explain otherwise)."""
    reason: str | None = None
    hold_id: str | None = None


@dataclass(frozen=True)
class SessionSummary:
    """A session's totals, kept for drift over time across sessions."""

    session_id: str
    finished_at: datetime
    rows: int
    applied: int
    unchanged: int
    held: int
    rejected: int
    skipped: int
    abs_drift_units: int
    net_drift_units: int
    mean_abs_drift_percent: float | None
    max_abs_drift_units: int


@dataclass
class SessionResult:
    """A count session: every row's result, in file order, and how it went overall."""

    session_id: str
    source: str
    position: Literal["line", "index"]
    started_at: datetime
    finished_at: datetime
    all_or_nothing: bool
    results: list[CountResult] = field(default_factory=list)

    def with_outcome(self, outcome: Outcome) -> list[CountResult]:
        return [r for r in self.results if r.outcome == outcome]

    @property
    def complete(self) -> bool:
        """True when every row was applied or already recorded (nothing held or refused)."""
        return all(r.outcome in ("applied", "unchanged") for r in self.results)

    @property
    def applied_none(self) -> bool:
        """All-or-nothing refused the whole session because some row was refused."""
        return bool(self.with_outcome("skipped"))

    def summary(self) -> SessionSummary:
        applied = [r for r in self.results if r.outcome == "applied"]
        units = [r.drift_units or 0 for r in applied]
        percents = [abs(r.drift_percent) for r in applied if r.drift_percent is not None]
        return SessionSummary(
            session_id=self.session_id,
            finished_at=self.finished_at,
            rows=len(self.results),
            applied=len(applied),
            unchanged=len(self.with_outcome("unchanged")),
            held=len(self.with_outcome("held")),
            rejected=len(self.with_outcome("rejected")),
            skipped=len(self.with_outcome("skipped")),
            abs_drift_units=sum(abs(u) for u in units),
            net_drift_units=sum(units),
            mean_abs_drift_percent=sum(percents) / len(percents) if percents else None,
            max_abs_drift_units=max((abs(u) for u in units), default=0),
        )


# ------------------------------------------------------------- drift context


_CONTEXT_CHUNK = 64
_CONTEXT_CHUNK_MAX = 1024


def expired_since_previous_count(store: StockItemStore, line: CountLine, version: int) -> int:
    """Units released by reservation expiry at the line's SKU-location after the previous
    count's ``counted_at`` and at or before this one's.

    Read backwards from version ``version`` in growing chunks, and only as far as the
    previous count: a fast mover counted yesterday costs a few small reads however long
    its stream (a stream never counted is read to its start).
    """
    previous: datetime | None = None
    releases: list[tuple[datetime, int]] = []
    upto, chunk = version, _CONTEXT_CHUNK
    while upto > 0:
        after = max(0, upto - chunk)
        for event in reversed(store.events(line.sku, line.location, after=after,
                                           limit=upto - after)):
            if previous is not None and event.timestamp <= previous:
                upto = 0  # everything older is before the previous count
                break
            if isinstance(event, StockItem.Counted) and event.count_id != line.count_id and (
                    event.counted_at < line.counted_at) and (
                    previous is None or event.counted_at > previous):
                previous = event.counted_at
            elif (isinstance(event, StockItem.Released) and event.reason == "expired"
                  and event.timestamp <= line.counted_at):
                releases.append((event.timestamp, event.quantity))
        else:
            upto = after
        chunk = min(chunk * 2, _CONTEXT_CHUNK_MAX)
    return sum(q for at, q in releases if previous is None or at > previous)


# ---------------------------------------------------------------- the service


class Reconciler:
    """Runs count sessions through the approval gate (the same one every count passes),
    and approves or dismisses what it held."""

    def __init__(
        self,
        gate: ApprovalGate,
        history: SessionHistory | None = None,
        drift: DriftRecorder | None = None,
    ) -> None:
        self.gate = gate
        self.commands = gate.commands
        self.store = gate.commands.store
        self.clock = gate.clock
        self.held = gate.holds
        self.history = history
        self.drift = drift

    def reconcile(
        self,
        counts: CountFile,
        *,
        policy: HoldPolicy | None = None,
        all_or_nothing: bool = False,
        session_id: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> SessionResult:
        """Apply a count session; see the module's contracts.

        ``policy`` defaults to the gate's (the settings'). ``progress`` is called with the
        number of rows just finished. Raises ``StoreUnavailable`` if a store fails; rows
        already applied stay applied and importing the file again finishes the rest (it
        is idempotent).
        """
        started = self.clock.now()
        session = SessionResult(
            session_id or f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            counts.source, counts.position, started, started, all_or_nothing)
        refused = [CountResult(r.line, r.sku, r.location, r.count_id, "rejected",
                               reason=r.reason) for r in counts.rejected]
        lines: list[CountLine] = []
        for line in counts.lines:
            why = self.gate.window.refusal(line.counted_at, started)
            if why is None:
                lines.append(line)
            else:
                refused.append(self._rejected(line, why))
        if progress and refused:
            progress(len(refused))
        if all_or_nothing:
            # Every row is decided (by the aggregate, through the gate, writing nothing)
            # before any is applied, so a refusal found late still stops them all.
            for line in lines:
                try:
                    self.gate.record_count(line.sku, line.location, line.count_id,
                                           line.counted, line.counted_at, policy=policy,
                                           dry_run=True)
                except HoldDismissed:
                    pass  # not a refusal: it is reported as unchanged
                except DomainError as error:
                    refused.append(self._rejected(line, error.message))
            if refused:
                rejected_lines = {r.line for r in refused}
                session.results = sorted(refused + [
                    CountResult(line.line, line.sku, line.location, line.count_id, "skipped",
                                line.counted, line.counted_at,
                                reason="not applied: other rows were rejected")
                    for line in lines if line.line not in rejected_lines
                ], key=lambda r: r.line)
                if progress:
                    progress(len(lines))
                session.finished_at = self.clock.now()
                return session
        results = list(refused)
        for line in lines:
            results.append(self._one(session.session_id, line, policy))
            if progress:
                progress(1)
        session.results = sorted(results, key=lambda r: r.line)
        session.finished_at = self.clock.now()
        if self.history is not None and (session.with_outcome("applied")
                                         or session.with_outcome("held")):
            self.history.record(session.summary())
        return session

    @staticmethod
    def _rejected(line: CountLine, reason: str) -> CountResult:
        return CountResult(line.line, line.sku, line.location, line.count_id, "rejected",
                           line.counted, line.counted_at, reason=reason)

    def _one(self, session_id: str, line: CountLine, policy: HoldPolicy | None) -> CountResult:
        base = CountResult(line.line, line.sku, line.location, line.count_id, "unchanged",
                           line.counted, line.counted_at)
        try:
            decision = self.gate.record_count(line.sku, line.location, line.count_id,
                                              line.counted, line.counted_at, policy=policy,
                                              session_id=session_id)
        except HoldDismissed as dismissed:
            return replace(base, hold_id=dismissed.details.get("hold_id"),
                           reason="held earlier and dismissed by an approver")
        except DomainError as error:
            return replace(base, outcome="rejected", reason=error.message)
        if isinstance(decision, Held):
            hold = decision.hold
            assert isinstance(hold, HeldCount)
            result = replace(base, outcome="held", hold_id=hold.hold_id,
                             on_hand_at_count=hold.on_hand_at_count,
                             drift_units=hold.drift_units, drift_percent=hold.drift_percent,
                             reason=hold.reason)
            version = decision.position.version
        else:
            result = self._applied(base, decision)
            version = decision.item.version if decision.item is not None else 0
        if result.drift_units:
            # Context for a person looking at a drift (none to explain otherwise).
            result = replace(result, expired_units=expired_since_previous_count(
                self.store, line, version))
        return result

    def _applied(self, base: CountResult, result: CommandResult) -> CountResult:
        if result.already_recorded:
            return base  # the aggregate says it had it already: nothing emitted
        event = next(e for e in result.events if isinstance(e, StockItem.Counted)
                     and e.count_id == base.count_id)
        percent = drift_percent(event.delta, event.previous_on_hand)
        if self.drift is not None:
            self.drift.record_drift(event.delta, percent if percent is not None else (
                100.0 if event.delta else 0.0))
        return replace(base, outcome="applied", on_hand_at_count=event.previous_on_hand,
                       drift_units=event.delta, drift_percent=percent)

    # ------------------------------------------------------------ approvals

    def approve(self, count_id: str, sku: str | None = None,
                location: str | None = None) -> list[CountResult]:
        """Apply every pending hold of ``count_id`` (narrowed to a SKU and/or location)
        through the gate; see :meth:`ApprovalGate.approve`. Approving again finds nothing
        pending and returns an empty list."""
        try:
            approvals = self.gate.approve_target(count_id, sku, location)
        except UnknownHold:
            return []
        return [self.approval_result(a) for a in approvals]

    def dismiss(self, count_id: str, sku: str | None = None,
                location: str | None = None) -> list[Hold]:
        """Drop every pending hold of ``count_id`` without an event; returns them."""
        try:
            return self.gate.dismiss_target(count_id, sku, location)
        except UnknownHold:
            return []

    def approval_result(self, approval: Approval) -> CountResult:
        """An approval as a row result (a count's figures, or an adjustment's delta)."""
        hold = approval.hold
        count = hold if isinstance(hold, HeldCount) else None
        base = CountResult(0, hold.sku, hold.location,
                           count.count_id if count else None, approval.outcome,
                           count.counted if count else None,
                           count.counted_at if count else None, hold_id=hold.hold_id,
                           reason=approval.refusal)
        if approval.result is not None and count is not None:
            applied = self._applied(base, approval.result)
            return applied if applied.outcome == "applied" else base
        if approval.outcome == "applied":
            return replace(base, drift_units=hold.applied_delta)
        return base
