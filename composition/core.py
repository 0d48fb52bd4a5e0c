"""The parts every host wires the same way: the command service and the approval gate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from adapters.telemetry import Telemetry, note_commit
from application.commands import CountWindow, StockCommands
from application.holds import ApprovalGate, HoldPolicy
from application.ports import Clock, HoldStore, SessionHistory, StockItemStore
from application.reconciliation import Reconciler
from application.settings import Settings
from domain.stock_item import StockItem

CommitObserver = Callable[[list[StockItem.Event]], None]


def stock_commands(
    store: StockItemStore, clock: Clock, settings: Settings,
    observers: Sequence[CommitObserver] = (), *, group_commit: bool = False,
    per_stream: bool = False,
) -> StockCommands:
    """The command service; every save is counted for the HTTP layer's command outcome
    (``note_commit``: applied vs unchanged), then told to ``observers`` (e.g. to wake the
    embedded relay). ``group_commit`` for a store that writes several streams in one
    atomic write (SQLite): concurrent commands then share a transaction and its fsync;
    with ``per_stream`` too (Cosmos DB), each stream's concurrent commands share one
    transactional batch, and streams do not wait for each other."""
    commands = StockCommands(store, clock, count_window=CountWindow(settings.count_max_age),
                             group_commit=group_commit, per_stream=per_stream)
    commands.after_commit.append(note_commit)
    commands.after_commit.extend(observers)
    return commands


def reconciler(
    settings: Settings, commands: StockCommands, clock: Clock, telemetry: Telemetry,
    holds: HoldStore, history: SessionHistory,
) -> Reconciler:
    """The approval gate with the settings' policies, and count sessions through it."""
    gate = ApprovalGate(
        commands, clock, holds,
        counts=HoldPolicy(settings.drift_hold_units, settings.drift_hold_percent),
        adjustments=HoldPolicy(settings.adjustment_hold_units,
                               settings.adjustment_hold_percent),
    )
    return Reconciler(gate, history, telemetry)
