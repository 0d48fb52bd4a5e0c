"""Reconciliation: physical counts in, ordinary ``StockCounted`` corrections out.

A *count session* is one batch of physical counts (a count file, or an HTTP batch). Each
row ``sku, location, counted, counted_at, count_id`` goes through
:meth:`StockCommands.record_count`: the on hand *as of ``counted_at``* is folded from the
stream and the correction is applied now, so sales recorded after the count stay on top
of it, and every consumer sees an ordinary event (DESIGN §1, "Reconciliation").

Contracts a caller may rely on:

* **Idempotent.** A count id already recorded on a stream with the same figures is
  ``unchanged`` and emits nothing; with other figures it is ``rejected``. A row held for
  approval stays held (one hold, however often the file is imported).
* **Malformed rows are named.** :func:`read_count_file` rejects a row with its CSV line
  number (the header is line 1) or its JSON index (0-based) and the reason. By default
  the good rows are applied; with ``all_or_nothing`` nothing is applied if any row is bad
  (rows are checked against the streams first, so a refusal found late also stops all).
* **Large drifts wait.** A drift above :class:`HoldPolicy` (units, or percent of the on
  hand at count time) is stored in :class:`HeldCounts` and applied only by
  :meth:`Reconciler.approve`; :meth:`Reconciler.dismiss` drops it without an event.
* **Drift is measured once.** An applied row's drift is the ``delta`` and
  ``previous_on_hand`` of the event recorded, never a second computation.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from application.commands import COUNT_CLOCK_SKEW, StockCommands
from application.ports import Clock, StockItemStore
from domain.errors import DomainError
from domain.identifiers import require_identifier
from domain.stock_item import MAX_QUANTITY, StockItem, movements_after

COUNT_FIELDS = ("sku", "location", "counted", "counted_at", "count_id")
"""The columns of a count file (CSV header) and the members of a JSON count object."""

Outcome = Literal["applied", "unchanged", "held", "rejected", "skipped"]
"""What happened to one row: a correction was recorded; the count id was already
recorded (nothing emitted); held for approval; refused (with a reason); not applied
because another row was refused under all-or-nothing."""

HeldStatus = Literal["pending", "approved", "dismissed"]

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
    """The file as a whole cannot be read (not CSV/JSON, wrong header, not a list)."""


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
        raise ValueError(f"unknown field(s) {', '.join(map(str, extra))}")
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
            raise ValueError(f"counted must be a whole number >= 0; got {counted_raw!r}")
        counted = int(text)
    else:
        if isinstance(counted_raw, bool) or not isinstance(counted_raw, int) or counted_raw < 0:
            raise ValueError(f"counted must be a whole number >= 0; got {counted_raw!r}")
        counted = counted_raw
    if counted > MAX_QUANTITY:
        raise ValueError(f"counted must be at most {MAX_QUANTITY}; got {counted}")
    at_raw = raw["counted_at"]
    try:
        if not isinstance(at_raw, str):
            raise ValueError
        counted_at = datetime.fromisoformat(at_raw.strip())
    except ValueError:
        raise ValueError(f"counted_at must be an ISO-8601 timestamp; got {at_raw!r}") from None
    if counted_at.tzinfo is None:
        raise ValueError(f"counted_at must have a time zone (e.g. Z); got {at_raw!r}")
    return CountLine(line, sku, location, counted, counted_at, count_id)


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
    """A CSV count file: header ``sku,location,counted,counted_at,count_id`` (any order)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if sorted(header) != sorted(COUNT_FIELDS):
        raise CountFileError(
            f"the header must name {','.join(COUNT_FIELDS)}; got {','.join(header) or 'none'}")
    reader.fieldnames = header

    def rows() -> Iterable[tuple[int, Any]]:
        for row in reader:
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
    except json.JSONDecodeError as error:
        raise CountFileError(f"not valid JSON: {error}") from None
    if not isinstance(document, list):
        raise CountFileError("a JSON count file must be an array of count objects")
    return parse_count_rows(document, source)


def parse_count_rows(rows: Sequence[Any], source: str = "") -> CountFile:
    """Counts given as JSON values (a JSON file's array, an HTTP batch), by index."""
    lines, rejected = _collect(enumerate(rows), from_text=False)
    return CountFile(lines, rejected, "index", source)


def read_count_file(path: str | Path) -> CountFile:
    """A count file by its suffix (``.csv``, ``.json``), else by its first character.

    Raises ``CountFileError`` (unreadable as a whole) or ``OSError`` (cannot be opened).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    kind = path.suffix.lower()
    if kind not in (".csv", ".json"):
        kind = ".json" if text.lstrip().startswith("[") else ".csv"
    if kind == ".json":
        return read_count_json(text, str(path))
    return read_count_csv(text, str(path))


# --------------------------------------------------------------------- holds


@dataclass(frozen=True)
class HoldPolicy:
    """When a count's drift is too large to apply without a person looking at it.

    A drift is held when ``|units| > units`` or, with a positive on hand at count time,
    ``|percent| > percent``. ``None`` switches a limit off; both ``None``: never hold.
    """

    units: int | None = None
    percent: float | None = None

    def reason(self, drift_units: int, drift_percent: float | None) -> str | None:
        """Why a drift must be held, or None if it may be applied."""
        if self.units is not None and abs(drift_units) > self.units:
            return f"drift of {drift_units:+d} units exceeds {self.units}"
        if self.percent is not None and drift_percent is not None and (
                abs(drift_percent) > self.percent):
            return f"drift of {drift_percent:+.1f}% exceeds {self.percent:g}%"
        return None


@dataclass(frozen=True)
class HeldCount:
    """A count waiting for approval, with the figures that made it wait."""

    sku: str
    location: str
    count_id: str
    counted: int
    counted_at: datetime
    on_hand_at_count: int
    drift_units: int
    drift_percent: float | None
    reason: str
    session_id: str
    held_at: datetime
    status: HeldStatus = "pending"
    resolved_at: datetime | None = None
    applied_delta: int | None = None


class HeldCounts(ABC):
    """Durable store of counts held for approval (SQLite embedded; Cosmos DB to come).

    A hold is keyed by (sku, location, count_id); holding the same key again is a no-op.
    """

    @abstractmethod
    def hold(self, held: HeldCount) -> bool:
        """Store a pending hold; False (and nothing written) if the key is already held."""

    @abstractmethod
    def find(self, sku: str, location: str, count_id: str) -> HeldCount | None:
        """The hold of one count, whatever its status."""

    @abstractmethod
    def matching(self, count_id: str | None = None, sku: str | None = None,
                 location: str | None = None,
                 status: HeldStatus | None = "pending") -> list[HeldCount]:
        """Holds matching every given filter, oldest first."""

    @abstractmethod
    def resolve(self, held: HeldCount) -> None:
        """Store the new status (``resolved_at``, ``applied_delta``) of an existing hold."""


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
    """Units released by reservation expiry here between the previous count and this one."""
    reason: str | None = None


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


class SessionHistory(ABC):
    """The summaries of past count sessions, oldest first."""

    @abstractmethod
    def record(self, summary: SessionSummary) -> None:
        """Keep a session's summary (the same session id again replaces it)."""

    @abstractmethod
    def sessions(self, limit: int = 365) -> list[SessionSummary]:
        """The latest ``limit`` sessions, oldest first."""


class DriftRecorder(Protocol):
    """Where drift metrics go (``adapters.telemetry.Telemetry`` is one)."""

    def record_drift(self, units: int, percent: float) -> None: ...


def drift_percent(units: int, on_hand_at_count: int) -> float | None:
    """Drift relative to the on hand at count time; None when that was zero."""
    if on_hand_at_count <= 0:
        return None
    return 100.0 * units / on_hand_at_count


# ---------------------------------------------------------------- assessment


@dataclass(frozen=True)
class _Assessment:
    already: Literal["no", "same", "conflict"]
    on_hand_at_count: int
    expired_units: int


def _assess(store: StockItemStore, line: CountLine) -> _Assessment:
    """What the stream says about a count before it is applied: whether its id was
    recorded, the on hand at ``counted_at``, and units released by expiry since the
    previous count (all from one read of the stream)."""
    item = store.get(line.sku, line.location)
    if item is None:
        return _Assessment("no", 0, 0)
    seen = store.recall(line.sku, line.location, StockItem.count_memo(line.count_id))
    if seen is not None:
        same = seen.value == StockItem.count_fingerprint(line.counted, line.counted_at)
        return _Assessment("same" if same else "conflict", 0, 0)
    events = store.events(line.sku, line.location)
    on_hand = item.on_hand - movements_after(events, line.counted_at)
    previous_count: datetime | None = None
    releases: list[tuple[datetime, int]] = []
    for event in events:
        if isinstance(event, StockItem.Counted) and event.counted_at < line.counted_at and (
                previous_count is None or event.counted_at > previous_count):
            previous_count = event.counted_at
        elif isinstance(event, StockItem.Released) and event.reason == "expired":
            releases.append((event.timestamp, event.quantity))
    expired = sum(q for at, q in releases
                  if at <= line.counted_at and (previous_count is None or at > previous_count))
    return _Assessment("no", on_hand, expired)


# ---------------------------------------------------------------- the service


class Reconciler:
    """Runs count sessions through the command service, holds and approves counts."""

    def __init__(
        self,
        commands: StockCommands,
        clock: Clock,
        held: HeldCounts,
        history: SessionHistory | None = None,
        drift: DriftRecorder | None = None,
    ) -> None:
        self.commands = commands
        self.store = commands.store
        self.clock = clock
        self.held = held
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

        ``progress`` is called with the number of rows just finished. Raises
        ``StoreUnavailable`` if the event store fails; rows already applied stay applied
        and importing the file again finishes the rest (it is idempotent).
        """
        policy = policy or HoldPolicy()
        started = self.clock.now()
        session = SessionResult(
            session_id or f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            counts.source, counts.position, started, started, all_or_nothing)
        refused = [CountResult(r.line, r.sku, r.location, r.count_id, "rejected",
                               reason=r.reason) for r in counts.rejected]
        if progress and refused:
            progress(len(refused))
        assessed: dict[int, _Assessment] = {}
        if all_or_nothing:
            # Every refusal is found before anything is applied.
            for line in counts.lines:
                assessment = _assess(self.store, line)
                problem = self._refusal(line, assessment)
                if problem is not None:
                    refused.append(problem)
                assessed[line.line] = assessment
            if refused:
                rejected_lines = {r.line for r in refused}
                session.results = sorted(refused + [
                    CountResult(line.line, line.sku, line.location, line.count_id, "skipped",
                                line.counted, line.counted_at,
                                reason="not applied: other rows were rejected")
                    for line in counts.lines if line.line not in rejected_lines
                ], key=lambda r: r.line)
                if progress:
                    progress(len(counts.lines))
                session.finished_at = self.clock.now()
                return session
        results = list(refused)
        for line in counts.lines:
            assessment = assessed.get(line.line) or _assess(self.store, line)
            results.append(self._one(session.session_id, line, assessment, policy))
            if progress:
                progress(1)
        session.results = sorted(results, key=lambda r: r.line)
        session.finished_at = self.clock.now()
        if self.history is not None and (session.with_outcome("applied")
                                         or session.with_outcome("held")):
            self.history.record(session.summary())
        return session

    def _refusal(self, line: CountLine, assessment: _Assessment) -> CountResult | None:
        reason: str | None = None
        if assessment.already == "conflict":
            reason = (f"count id {line.count_id} was already recorded here with other "
                      "figures")
        elif line.counted_at - self.clock.now() > COUNT_CLOCK_SKEW:
            reason = "counted_at must not be in the future"
        if reason is None:
            return None
        return CountResult(line.line, line.sku, line.location, line.count_id, "rejected",
                           line.counted, line.counted_at, reason=reason)

    def _one(self, session_id: str, line: CountLine, assessment: _Assessment,
             policy: HoldPolicy) -> CountResult:
        base = CountResult(line.line, line.sku, line.location, line.count_id, "unchanged",
                           line.counted, line.counted_at,
                           expired_units=assessment.expired_units)
        refusal = self._refusal(line, assessment)
        if refusal is not None:
            return replace(refusal, expired_units=assessment.expired_units)
        if assessment.already == "same":
            return base
        previous = self.held.find(line.sku, line.location, line.count_id)
        if previous is not None and previous.status != "approved":
            if (previous.counted, previous.counted_at) != (line.counted, line.counted_at):
                return replace(base, outcome="rejected", reason=(
                    f"count id {line.count_id} is held with other figures"))
            if previous.status == "dismissed":
                return replace(base, reason="held earlier and dismissed by an approver")
            return replace(base, outcome="held", on_hand_at_count=previous.on_hand_at_count,
                           drift_units=previous.drift_units,
                           drift_percent=previous.drift_percent, reason=previous.reason)
        units = line.counted - assessment.on_hand_at_count
        percent = drift_percent(units, assessment.on_hand_at_count)
        hold = policy.reason(units, percent)
        if hold is not None and previous is None:
            self.held.hold(HeldCount(
                line.sku, line.location, line.count_id, line.counted, line.counted_at,
                assessment.on_hand_at_count, units, percent, hold, session_id,
                self.clock.now()))
            return replace(base, outcome="held", on_hand_at_count=assessment.on_hand_at_count,
                           drift_units=units, drift_percent=percent, reason=hold)
        return self._apply(base, line.counted, line.counted_at)

    def _apply(self, base: CountResult, counted: int, counted_at: datetime) -> CountResult:
        assert base.sku and base.location and base.count_id
        try:
            result = self.commands.record_count(base.sku, base.location, base.count_id,
                                                counted, counted_at)
        except DomainError as error:
            return replace(base, outcome="rejected", reason=error.message)
        event = next((e for e in result.events if isinstance(e, StockItem.Counted)
                      and e.count_id == base.count_id), None)
        if event is None:
            return base  # recorded meanwhile by someone else: nothing emitted
        percent = drift_percent(event.delta, event.previous_on_hand)
        if self.drift is not None:
            self.drift.record_drift(event.delta, percent if percent is not None else (
                100.0 if event.delta else 0.0))
        return replace(base, outcome="applied", on_hand_at_count=event.previous_on_hand,
                       drift_units=event.delta, drift_percent=percent)

    # ------------------------------------------------------------ approvals

    def approve(self, count_id: str, sku: str | None = None,
                location: str | None = None) -> list[CountResult]:
        """Apply every pending hold of ``count_id`` (narrowed to a SKU and/or location).

        The on hand at count time is folded again from the stream now, so the correction
        is right even if movements were recorded while the count waited. Approving again
        finds nothing pending and returns an empty list.
        """
        results = []
        for held in self.held.matching(count_id, sku, location, "pending"):
            base = CountResult(0, held.sku, held.location, held.count_id, "unchanged",
                               held.counted, held.counted_at)
            outcome = self._apply(base, held.counted, held.counted_at)
            if outcome.outcome != "rejected":
                self.held.resolve(replace(held, status="approved",
                                          resolved_at=self.clock.now(),
                                          applied_delta=outcome.drift_units))
            results.append(outcome)
        return results

    def dismiss(self, count_id: str, sku: str | None = None,
                location: str | None = None) -> list[HeldCount]:
        """Drop every pending hold of ``count_id`` without an event; returns them."""
        dismissed = []
        for held in self.held.matching(count_id, sku, location, "pending"):
            done = replace(held, status="dismissed", resolved_at=self.clock.now())
            self.held.resolve(done)
            dismissed.append(done)
        return dismissed
