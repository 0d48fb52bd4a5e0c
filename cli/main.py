"""``stockstream``: the operator's command-line tool for the embedded data directory.

Commands (``stockstream COMMAND --help`` for each)::

    reconcile FILE [--all-or-nothing] [--threshold-units N] [--threshold-percent P]
                   [--no-hold] [--report-dir DIR]
    approve HOLD_ID|COUNT_ID [--sku SKU] [--location LOCATION]
    dismiss HOLD_ID|COUNT_ID [--sku SKU] [--location LOCATION]
    held
    due [--class A|B|C] [--all] [--limit N]
    replay-deadletters SUBSCRIPTION [--max N]
    rebuild-projection [SKU] [--check]

It works on ``STOCKSTREAM_DATA`` (or ``--data DIR``) through the same composition root
as the hosts, so it may run while ``make serve`` runs (SQLite allows one writer at a
time; each command is short). Progress bars go to stderr when it is a terminal; the
summary goes to stdout.

Exit codes (scripts may rely on them):

* ``0`` — done: every row applied or already recorded; nothing mismatched left unrepaired.
* ``1`` — done, but something needs a person: rows rejected, held or skipped
  (``reconcile``), mismatches found (``rebuild-projection --check``), nothing pending to
  approve or dismiss.
* ``2`` — usage error: bad arguments, a count file that cannot be read as a whole (missing,
  not UTF-8, not CSV or JSON, nested too deeply, a CSV field over 128 KiB), bad settings,
  unknown subscription. Nothing was changed.
* ``3`` — a store (event store, broker, views, reconciliation tables) is unavailable;
  retry later. ``reconcile`` is idempotent, so running it again finishes the rest.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from application.count_files import CountFileError, read_count_file
from application.holds import HeldCount, Hold, HoldPolicy, UnknownHold
from application.ports import BrokerUnavailable, StoreUnavailable
from application.reconciliation import SessionResult
from application.settings import SettingsError, load
from composition import ReconciliationServices, ReconciliationUnavailable, Services, build_services
from composition.embedded import EmbeddedProcess
from composition.files import EmbeddedFiles
from contracts.topology import TOPIC
from domain.errors import DomainError

OK, ATTENTION, USAGE, UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input from the operator; exit code 2."""


@contextmanager
def _progress(total: int | None, unit: str, desc: str) -> Iterator[Callable[[int], None]]:
    bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=None,
               dynamic_ncols=True, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def _open(args: argparse.Namespace,
          process: EmbeddedProcess = EmbeddedProcess.COMMANDS) -> Services:
    """The services of the data directory, from the composition root (the embedded
    ``process``: the command path alone, or ``OPERATOR`` to read the pipeline's files)."""
    env = dict(os.environ)
    if args.data:
        env["STOCKSTREAM_DATA"] = args.data
    try:
        settings = load(env)
    except SettingsError as error:
        raise UsageError(str(error)) from None
    try:
        return build_services(settings, process=process)
    except (OSError, sqlite3.Error) as error:
        raise StoreUnavailable(str(error)) from error


def _reconciliation(services: Services) -> ReconciliationServices:
    try:
        return services.reconciliation.get()
    except ReconciliationUnavailable as error:
        raise UsageError(str(error)) from None


# ------------------------------------------------------------------ commands


def reconcile(args: argparse.Namespace, out: TextIO) -> int:
    try:
        counts = read_count_file(args.file)
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {args.file}: {error}") from None
    except CountFileError as error:
        raise UsageError(f"{args.file}: {error}") from None
    opened = _open(args)
    try:
        services = _reconciliation(opened)
        policy = services.policy
        if args.no_hold:
            policy = HoldPolicy()
        elif args.threshold_units is not None or args.threshold_percent is not None:
            policy = HoldPolicy(
                args.threshold_units if args.threshold_units is not None else policy.units,
                args.threshold_percent if args.threshold_percent is not None
                else policy.percent)
        with _progress(counts.rows, "row", "reconciling") as advance:
            session = services.reconciler.reconcile(
                counts, policy=policy, all_or_nothing=args.all_or_nothing, progress=advance)
        from reports.drift import write_report

        report_dir = Path(args.report_dir) if args.report_dir else (
            EmbeddedFiles(opened.settings.data_dir).reports)
        history = services.reconciler.history
        written = write_report(session, report_dir,
                               () if history is None else history.sessions())
        _print_session(session, out)
        out.write(f"report: {written.json}\n        {written.csv}\n")
        for chart in written.charts:
            out.write(f"        {chart}\n")
        if written.charts_skipped:
            out.write(f"        ({written.charts_skipped})\n")
        return OK if session.complete else ATTENTION
    finally:
        opened.close()


def _print_session(session: SessionResult, out: TextIO) -> None:
    summary = session.summary()
    where = "line" if session.position == "line" else "index"
    out.write(f"session {session.session_id}: {summary.rows} rows from "
              f"{session.source or 'input'}\n")
    if session.applied_none:
        out.write(f"applied none: {summary.rejected} row(s) rejected and --all-or-nothing "
                  f"was given ({summary.skipped} good row(s) not applied)\n")
    elif summary.rejected:
        out.write(f"applied the good rows; rejected {summary.rejected} row(s)\n")
    out.write(f"  applied    {summary.applied:>7}  (drift {summary.abs_drift_units} units "
              f"absolute, {summary.net_drift_units:+d} net)\n")
    out.write(f"  unchanged  {summary.unchanged:>7}  (count id already recorded)\n")
    out.write(f"  held       {summary.held:>7}  (waiting for approval)\n")
    out.write(f"  rejected   {summary.rejected:>7}\n")
    if summary.skipped:
        out.write(f"  skipped    {summary.skipped:>7}  (not applied: all-or-nothing)\n")
    for result in session.with_outcome("rejected"):
        out.write(f"  rejected {where} {result.line}: {result.reason}\n")
    for result in session.with_outcome("held"):
        out.write(f"  held {where} {result.line}: {result.sku}|{result.location} count "
                  f"{result.count_id}: {result.reason} — stockstream approve "
                  f"{result.hold_id}\n")


def _what(hold: Hold) -> str:
    if isinstance(hold, HeldCount):
        return f"{hold.sku}|{hold.location} count {hold.count_id}"
    return f"{hold.sku}|{hold.location} adjustment {hold.delta:+d} ({hold.adjustment_reason})"


def approve(args: argparse.Namespace, out: TextIO) -> int:
    """Approve or dismiss what ``args.target`` names: a hold id, or a count id's holds."""
    opened = _open(args)
    try:
        gate = _reconciliation(opened).gate
        try:
            if args.command == "dismiss":
                dismissed = gate.dismiss_target(args.target, args.sku, args.location)
                for hold in dismissed:
                    out.write(f"dismissed {hold.hold_id}: {_what(hold)}\n")
                out.write(f"{len(dismissed)} hold(s) dismissed\n")
                return OK
            approvals = gate.approve_target(args.target, args.sku, args.location)
        except UnknownHold:
            out.write(f"no count {args.target} is waiting for approval\n")
            return ATTENTION
        except DomainError as error:
            out.write(f"{args.target}: {error.message}\n")
            return ATTENTION
        for a in approvals:
            text = (f"delta {a.hold.applied_delta:+d}" if a.outcome == "applied"
                    and a.hold.applied_delta is not None
                    else a.refusal or ("already recorded" if a.outcome == "unchanged"
                                       else a.outcome))
            out.write(f"{a.outcome} {_what(a.hold)}: {text}\n")
        applied = sum(1 for a in approvals if a.outcome in ("applied", "unchanged"))
        out.write(f"{applied} hold(s) approved and applied\n")
        return OK if applied == len(approvals) else ATTENTION
    finally:
        opened.close()


def held(args: argparse.Namespace, out: TextIO) -> int:
    opened = _open(args)
    try:
        pending = _reconciliation(opened).gate.holds.matching(status="pending")
        for h in pending:
            if isinstance(h, HeldCount):
                percent = "" if h.drift_percent is None else f" ({h.drift_percent:+.1f}%)"
                out.write(f"{h.hold_id}  {h.sku}|{h.location}  count {h.count_id}: counted "
                          f"{h.counted}, on hand {h.on_hand_at_count} at "
                          f"{h.counted_at.isoformat()}: drift {h.drift_units:+d}{percent}\n")
            else:
                out.write(f"{h.hold_id}  {h.sku}|{h.location}  adjustment {h.delta:+d} "
                          f"({h.adjustment_reason}) on hand {h.on_hand_before}: {h.reason}\n")
        out.write(f"{len(pending)} hold(s) waiting for approval\n")
        return OK
    finally:
        opened.close()


def due(args: argparse.Namespace, out: TextIO) -> int:
    opened = _open(args)
    try:
        services = _reconciliation(opened)
        rows = services.schedule.schedule(opened.clock.now(), due_only=not args.all,
                                          velocity_class=args.velocity_class,
                                          limit=args.limit)
        for r in rows:
            last = r.last_counted_at.isoformat() if r.last_counted_at else "never"
            out.write(f"{r.velocity_class}  {r.sku}|{r.location}  {r.units_per_day:.2f}/day  "
                      f"last counted {last}  due {r.due_at.isoformat()}\n")
        cadence = ", ".join(f"{k} every {v}d" for k, v in services.cadence.every_days.items())
        out.write(f"{len(rows)} count(s) {'listed' if args.all else 'due'} ({cadence})\n")
        return OK
    finally:
        opened.close()


def replay_deadletters(args: argparse.Namespace, out: TextIO) -> int:
    opened = _open(args, EmbeddedProcess.OPERATOR)
    try:
        broker, replay = opened.broker, opened.replay
        if broker is None or replay is None:
            raise UsageError(
                "no Service Bus to replay from: give SERVICEBUS__fullyQualifiedNamespace "
                "with the Azure settings" if opened.settings.event_store == "cosmos"
                else "this host has no broker to replay from")
        if args.subscription not in broker.subscriptions(TOPIC):
            raise UsageError(f"no subscription named {args.subscription!r}")
        depth = broker.counts(TOPIC, args.subscription).dead_lettered
        total = depth if args.max is None else min(depth, args.max)
        replayed = 0
        with _progress(total, "msg", f"replaying {args.subscription}") as advance:
            while args.max is None or replayed < args.max:
                batch = 100 if args.max is None else min(100, args.max - replayed)
                done = replay.replay(args.subscription, batch)
                if not done:
                    break
                replayed += done
                advance(done)
        left = broker.counts(TOPIC, args.subscription).dead_lettered
        out.write(f"replayed {replayed} dead-lettered message(s) to {args.subscription}; "
                  f"{left} left in its dead-letter queue\n")
        return OK
    finally:
        opened.close()


def rebuild_projection(args: argparse.Namespace, out: TextIO) -> int:
    opened = _open(args, EmbeddedProcess.OPERATOR)
    try:
        repair = opened.repair
        if repair is None:
            raise UsageError("this host has no availability view to rebuild")
        # Every stream in the event store (not the ledger's or the view's idea of them):
        # a stream the view has no row for is a mismatch, never silently skipped.
        known = [key for key in opened.store.stream_keys()
                 if args.sku is None or key[0] == args.sku]
        total = sum(1 for _ in repair.views.rows(args.sku))
        with _progress(total, "row", "comparing") as advance:
            report = repair.run(args.sku, known, fix=not args.check, progress=advance)
        for m in report.mismatches:
            row = "no row" if m.row is None else (
                f"v{m.row.version} on hand {m.row.on_hand} reserved {m.row.reserved} "
                f"available {m.row.available}")
            out.write(f"{m.kind:<8} {m.sku}|{m.location}: row {row}; stream "
                      f"v{m.stream.version} on hand {m.stream.on_hand} reserved "
                      f"{m.stream.reserved} available {m.stream.available}\n")
        out.write(f"{len(known)} stream(s) in the event store; {report.checked} row(s) "
                  f"checked, {len(report.mismatches)} mismatched, {report.repaired} repaired\n")
        return ATTENTION if args.check and report.mismatches else OK
    finally:
        opened.close()


# ------------------------------------------------------------------ parsing


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0; got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="stockstream", description="Stockstream operations on the embedded data "
        "directory. Exit codes: 0 ok, 1 needs attention, 2 usage error, 3 store unavailable.")
    top.add_argument("--data", help="data directory (default: STOCKSTREAM_DATA or ./data)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rec = commands.add_parser("reconcile", help="apply a count file (CSV or JSON)")
    rec.add_argument("file", help="CSV with header sku,location,counted,counted_at,count_id "
                     "or a JSON array of such objects")
    rec.add_argument("--all-or-nothing", action="store_true",
                     help="apply nothing if any row is rejected")
    rec.add_argument("--threshold-units", type=_non_negative_int, metavar="N",
                     help="hold counts whose drift exceeds N units "
                          "(default STOCKSTREAM_DRIFT_HOLD_UNITS)")
    rec.add_argument("--threshold-percent", type=_percent, metavar="P",
                     help="hold counts whose drift exceeds P%% of the on hand at count time "
                          "(default STOCKSTREAM_DRIFT_HOLD_PERCENT)")
    rec.add_argument("--no-hold", action="store_true", help="hold nothing for approval")
    rec.add_argument("--report-dir", metavar="DIR",
                     help="where the drift report goes (default DATA/reports)")
    rec.set_defaults(run=reconcile)

    for name, text in (("approve", "apply"), ("dismiss", "drop")):
        sub = commands.add_parser(
            name, help=f"{text} a held count or adjustment (HOLD_ID), or every pending hold "
                       "of COUNT_ID")
        sub.add_argument("target", metavar="HOLD_ID|COUNT_ID")
        sub.add_argument("--sku")
        sub.add_argument("--location")
        sub.set_defaults(run=approve)

    commands.add_parser("held", help="list counts and adjustments waiting for approval"
                        ).set_defaults(run=held)

    due_parser = commands.add_parser("due", help="SKU-locations due for a count")
    due_parser.add_argument("--class", dest="velocity_class", choices=["A", "B", "C"])
    due_parser.add_argument("--all", action="store_true", help="list every SKU-location")
    due_parser.add_argument("--limit", type=_positive_int)
    due_parser.set_defaults(run=due)

    rep = commands.add_parser("replay-deadletters",
                              help="replay a subscription's dead letters to it alone")
    rep.add_argument("subscription")
    rep.add_argument("--max", type=_positive_int, metavar="N")
    rep.set_defaults(run=replay_deadletters)

    reb = commands.add_parser("rebuild-projection",
                              help="compare the availability view with the streams, repair")
    reb.add_argument("sku", nargs="?")
    reb.add_argument("--check", action="store_true", help="report only, repair nothing")
    reb.set_defaults(run=rebuild_projection)
    return top


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; returns its exit code (see the module docstring)."""
    out = out or sys.stdout
    args = parser().parse_args(argv)  # exits 2 on a usage error
    try:
        code: int = args.run(args, out)
        return code
    except UsageError as error:
        print(f"stockstream: error: {error}", file=sys.stderr)
        return USAGE
    except (StoreUnavailable, BrokerUnavailable, sqlite3.OperationalError) as error:
        print(f"stockstream: store unavailable: {error}", file=sys.stderr)
        return UNAVAILABLE


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
