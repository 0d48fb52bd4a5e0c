"""Reconciliation: physical counts in, ordinary ``StockCounted`` corrections out.

A *count session* is one batch of physical counts (a count file, or an HTTP batch). Each
row ``sku, location, counted, counted_at, count_id`` goes through the approval gate
(:class:`~application.holds.ApprovalGate`) that every count passes, whatever its route,
and from there through :meth:`StockCommands.record_count`, which folds the stream and
decides; reconciliation reads no stream to decide anything (DESIGN §1, "Reconciliation").

Contracts a caller may rely on:

* **Idempotent.** A count id the aggregate already recorded with the same figures is
  ``unchanged`` and emits nothing; with other figures it is ``rejected``. A row held for
  approval stays held (one hold, however often the file is imported); a row whose hold
  was dismissed stays unrecorded (``unchanged``).
* **Malformed rows are named.** :func:`read_count_file` rejects a row with its CSV line
  number (the header is line 1) or its JSON index (0-based) and the reason; a row whose
  ``counted_at`` lies outside the count window (``STOCKSTREAM_COUNT_MAX_AGE`` back, five
  minutes ahead) is rejected before anything is applied. A file that cannot be read as a
  whole (not CSV or JSON, nested too deeply, a field over the CSV field limit) raises
  :class:`CountFileError` and nothing is applied.
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

import csv
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from application.commands import CommandResult
from application.holds import (
    Approval,
    ApprovalGate,
    HeldCount,
    HeldStatus,
    Hold,
    HoldDismissed,
    HoldPolicy,
    UnknownHold,
    drift_percent,
)
from application.holds import Held as Held
from application.ports import DriftRecorder, HoldStore, SessionHistory, StockItemStore
from domain.errors import DomainError
from domain.identifiers import require_identifier
from domain.stock_item import MAX_QUANTITY, StockItem

__all__ = ["HeldCount", "HeldStatus", "HoldPolicy", "HoldStore", "drift_percent"]

COUNT_FIELDS = ("sku", "location", "counted", "counted_at", "count_id")
"""The columns of a count file (CSV header) and the members of a JSON count object."""

Outcome = Literal["applied", "unchanged", "held", "rejected", "skipped"]
"""What happened to one row: a correction was recorded; the count id was already
recorded (nothing emitted); held for approval; refused (with a reason); not applied
because another row was refused under all-or-nothing."""

_DIGITS = re.compile(r"^[0-9]+$")

# ------------------------------------------------------------------ count files


@dataclass(frozen=True)
class CountLine:
    """One well-formed count row; ``line`` is its CSV line number or JSON index."""

    line: int
    sku: str
    location: str
    counted: int
    counted_at: datetime
    count_id: str


@dataclass(frozen=True)
class RejectedLine:
    """A row that was refused, where it is and why (identifiers when they were readable)."""

    line: int
    reason: str
    sku: str | None = None
    location: str | None = None
    count_id: str | None = None


@dataclass(frozen=True)
class CountFile:
    """A parsed count file: the good rows and the refused ones, in file order.

    ``position`` says what ``line`` means: ``"line"`` (CSV line, header = 1) or
    ``"index"`` (JSON array index, from 0).
    """

    lines: list[CountLine]
    rejected: list[RejectedLine]
    position: Literal["line", "index"] = "line"
    source: str = ""

    @property
    def rows(self) -> int:
        return len(self.lines) + len(self.rejected)


class CountFileError(ValueError):
    """The file as a whole cannot be read (not CSV/JSON, wrong header, not a list, nested
    too deeply, a CSV field over the reader's limit); nothing in it is applied."""


def parse_count_row(raw: Mapping[str, Any], line: int, *, from_text: bool) -> CountLine:
    """One row as a :class:`CountLine`; raises ``ValueError`` naming what is wrong.

    ``from_text``: values come from CSV (``counted`` is digits); otherwise from JSON
    (``counted`` must be a JSON integer, not ``"3"``, ``3.0`` or ``true``).
    """
    missing = [name for name in COUNT_FIELDS if raw.get(name) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    extra = sorted(set(raw) - set(COUNT_FIELDS))
    if extra:
        raise ValueError(f"unknown field(s) {_shown(', '.join(map(str, extra)))}")
    try:
        sku = require_identifier("sku", raw["sku"])
        location = require_identifier("location", raw["location"])
        count_id = require_identifier("count_id", raw["count_id"])
    except DomainError as error:
        raise ValueError(error.message) from None
    counted_raw = raw["counted"]
    if from_text:
        text = str(counted_raw).strip()
        if not _DIGITS.match(text):
            raise ValueError(f"counted must be a whole number >= 0; got {_shown(counted_raw)}")
        # Bounded before int(): a huge digit string is refused, not converted.
        counted = int(text) if len(text.lstrip("0")) <= 10 else MAX_QUANTITY + 1
    else:
        if isinstance(counted_raw, bool) or not isinstance(counted_raw, int) or counted_raw < 0:
            raise ValueError(f"counted must be a whole number >= 0; got {_shown(counted_raw)}")
        counted = counted_raw
    if counted > MAX_QUANTITY:
        raise ValueError(f"counted must be at most {MAX_QUANTITY}; got {_shown(counted_raw)}")
    at_raw = raw["counted_at"]
    try:
        if not isinstance(at_raw, str):
            raise ValueError
        counted_at = datetime.fromisoformat(at_raw.strip())
    except ValueError:
        raise ValueError("counted_at must be an ISO-8601 timestamp; "
                         f"got {_shown(at_raw)}") from None
    if counted_at.utcoffset() is None:
        raise ValueError(f"counted_at must have a time zone (e.g. Z); got {_shown(at_raw)}")
    return CountLine(line, sku, location, counted, counted_at, count_id)


def _shown(value: Any) -> str:
    """A refused value as a reason shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _collect(rows: Iterable[tuple[int, Any]], *, from_text: bool) -> tuple[
        list[CountLine], list[RejectedLine]]:
    lines: list[CountLine] = []
    rejected: list[RejectedLine] = []
    seen: dict[tuple[str, str, str], CountLine] = {}
    for number, raw in rows:
        if not isinstance(raw, Mapping):
            rejected.append(RejectedLine(number, "a count must be an object with "
                                         + ", ".join(COUNT_FIELDS)))
            continue
        try:
            parsed = parse_count_row(raw, number, from_text=from_text)
        except ValueError as error:
            ids = {k: raw.get(k) if isinstance(raw.get(k), str) else None
                   for k in ("sku", "location", "count_id")}
            rejected.append(RejectedLine(number, str(error), **ids))
            continue
        key = (parsed.sku, parsed.location, parsed.count_id)
        first = seen.get(key)
        if first is not None and (first.counted, first.counted_at) != (
                parsed.counted, parsed.counted_at):
            rejected.append(RejectedLine(
                number, f"count id {parsed.count_id} for {parsed.sku}|{parsed.location} "
                f"conflicts with row {first.line}", parsed.sku, parsed.location,
                parsed.count_id))
            continue
        seen.setdefault(key, parsed)
        lines.append(parsed)
    return lines, rejected


def read_count_csv(text: str, source: str = "") -> CountFile:
    """A CSV count file: header ``sku,location,counted,counted_at,count_id`` (any order).

    Raises :class:`CountFileError` for a wrong header or a file the CSV reader refuses (a
    field over its limit of 128 KiB, a NUL byte), naming the line.
    """
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise CountFileError(f"not a readable CSV file (line 1): {error}") from None
    if sorted(header) != sorted(COUNT_FIELDS):
        raise CountFileError(
            f"the header must name {','.join(COUNT_FIELDS)}; got {_shown(','.join(header))}"
            if header else f"the header must name {','.join(COUNT_FIELDS)}; got none")
    reader.fieldnames = header

    def rows() -> Iterable[tuple[int, Any]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise CountFileError(
                    f"not a readable CSV file (line {reader.line_num}): {error}") from None
            if None in row:  # more cells than the header
                yield reader.line_num, {**{k: v for k, v in row.items() if k is not None},
                                        "extra cells": "x"}
                continue
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            yield reader.line_num, {k: v for k, v in row.items()}

    lines, rejected = _collect(rows(), from_text=True)
    return CountFile(lines, rejected, "line", source)


def read_count_json(text: str, source: str = "") -> CountFile:
    """A JSON count file: an array of objects with the five count fields."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise CountFileError("not a count file: JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, or a number too long to convert
        raise CountFileError(f"not valid JSON: {_shown(str(error))}") from None
    if not isinstance(document, list):
        raise CountFileError("a JSON count file must be an array of count objects")
    return parse_count_rows(document, source)


def parse_count_rows(rows: Sequence[Any], source: str = "") -> CountFile:
    """Counts given as JSON values (a JSON file's array, an HTTP batch), by index."""
    lines, rejected = _collect(enumerate(rows), from_text=False)
    return CountFile(lines, rejected, "index", source)


def read_count_file(path: str | Path) -> CountFile:
    """A count file by its suffix (``.csv``, ``.json``), else by its first character.

    Raises ``CountFileError`` (unreadable as a whole), ``OSError`` (cannot be opened) or
    ``UnicodeDecodeError`` (not UTF-8).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    kind = path.suffix.lower()
    if kind not in (".csv", ".json"):
        kind = ".json" if text.lstrip().startswith("[") else ".csv"
    if kind == ".json":
        return read_count_json(text, str(path))
    return read_count_csv(text, str(path))


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
        event = next((e for e in result.events if isinstance(e, StockItem.Counted)
                      and e.count_id == base.count_id), None)
        if event is None:
            return base  # the aggregate had it already: nothing emitted
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
