"""Drift charts (PNG, matplotlib's Agg backend: no display needed).

* the distribution of a session's drift in units (applied counts), with held counts
  marked, so a skew to one side (systematic loss) stands out from noise;
* drift over time across sessions: total absolute drift and net drift per session, and
  the mean absolute drift percent — a growing line is the early warning of a pipeline bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.dates import date2num

from application.reconciliation import SessionResult, SessionSummary


def distribution_chart(session: SessionResult, path: Path) -> None:
    """Histogram of applied drifts (units); held drifts as marks on the axis."""
    applied = [r.drift_units or 0 for r in session.with_outcome("applied")]
    held = [r.drift_units or 0 for r in session.with_outcome("held")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if applied:
        ax.hist(applied, bins=min(50, max(5, len(set(applied)))), color="#3b7dd8",
                label=f"applied ({len(applied)})")
    if held:
        ax.plot(held, [0] * len(held), "v", color="#d83b3b", markersize=9,
                label=f"held for approval ({len(held)})")
    ax.axvline(0, color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel("drift (units): counted − on hand at count time")
    ax.set_ylabel("SKU-locations")
    ax.set_title(f"Drift distribution, session {session.session_id}")
    if applied or held:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def history_chart(sessions: Sequence[SessionSummary], path: Path) -> None:
    """Absolute and net drift per session, and mean absolute drift percent, over time."""
    fig, units_axis = plt.subplots(figsize=(9, 4.5))
    times = [float(date2num(s.finished_at)) for s in sessions]  # type: ignore[no-untyped-call]
    units_axis.xaxis_date()
    units_axis.plot(times, [s.abs_drift_units for s in sessions], "o-", color="#3b7dd8",
                    label="absolute drift (units)")
    units_axis.plot(times, [s.net_drift_units for s in sessions], "s--", color="#6a6a6a",
                    label="net drift (units)")
    units_axis.set_ylabel("units")
    percent_axis = units_axis.twinx()
    percent_axis.plot(times, [s.mean_abs_drift_percent or 0.0 for s in sessions], "^:",
                      color="#d8873b", label="mean |drift| %")
    percent_axis.set_ylabel("percent")
    handles = units_axis.get_legend_handles_labels()
    more = percent_axis.get_legend_handles_labels()
    units_axis.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left")
    units_axis.set_title(f"Drift over time ({len(sessions)} count sessions)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
