"""Where the embedded pipeline's lag accumulates: each stage stamped, for every event.

A diagnostic beside ``bench.pipeline_lag`` (not part of ``make bench``): the same paced
load from this process, the same watcher process, and the pipeline in a process of its
own, built by the embedded root for the worker as ``python -m local.worker`` builds it
(every part in that one process, ``--role all``: the host's two processes, relaying and
consuming, are measured by ``bench.pipeline_lag``).
In that process the calls between the stages are wrapped to note the time (nothing else
changes: each wrapper calls the original and returns what it returned), so for each
reservation it reports the gaps

    committed → read by the relay → published → taken by the consumer
    → applied (the visit's view commit) → settled (after the relay's publish, in one
    transaction with the next visit's take) → seen by the watcher

as p50 / p90 / p99 / max, the end-to-end lag they add up to, how long the relay's
checkpoint steps and the consumer's visits took, and the worker's and the command
process's CPU share over the load (the watcher's is a few hundredths of a core, as it
reads the view only when it changed). Run: ``python -m bench.pipeline_stages RATE
[SECONDS]``; the wrappers cost a few microseconds an event, so read the lag from
``bench.pipeline_lag`` and the shares here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adapters.sqlite.availability_views import SQLiteAvailabilityViews
from application.settings import load
from bench.common import services
from bench.pipeline_lag import (
    _percentile,
    _stock,
    await_view,
    paced_reservations,
    start_watcher,
)
from composition.embedded import EmbeddedProcess, embedded_services
from local.pipeline import start_pipeline
from local.worker import RELAY_POLL_SECONDS

STAGES = ("committed", "read", "published", "taken", "applied", "settled", "seen")
Stamps = dict[str, dict[str, float]]


def _key(sku: object, location: object, version: object) -> str:
    return f"{sku}|{location}|{version}"


def _stamped_worker(data_dir: str, stop_file: str, out_file: str) -> None:
    """In its own process: the worker's pipeline, its stage boundaries stamped."""
    container = embedded_services(load({"STOCKSTREAM_DATA": data_dir}),
                                  process=EmbeddedProcess.WORKER)
    pipeline = start_pipeline(container, relay_interval=RELAY_POLL_SECONDS, autostart=False)
    stamps: Stamps = {stage: {} for stage in STAGES[1:6]}
    spans: dict[str, list[float]] = {"broker sync": [], "checkpoint write": [],
                                     "visit (take to settled)": [], "visit size": []}
    relay, broker, store = pipeline.relay, pipeline.broker, pipeline.relay.outbox
    in_visit: list[str] = []
    taken_at, applied_at = [0.0], [0.0]

    def wrap(target: object, name: str, around: Callable[..., Any]) -> None:
        setattr(target, name, around(getattr(target, name)))

    def read_after(original: Callable[..., Sequence[Any]]) -> Callable[..., Sequence[Any]]:
        def read(position: int, limit: int) -> Sequence[Any]:
            records = original(position, limit)
            now = time.time()
            for record in records:
                event = record.event
                stamps["read"][_key(event.sku, event.location, event.originator_version)] = now
            return records
        return read

    def publish(original: Callable[..., None]) -> Callable[..., None]:
        def publish(topic: str, messages: Sequence[Any]) -> None:
            original(topic, messages)
            now = time.time()
            for message in messages:
                p = message.application_properties
                stamps["published"][_key(p.get("sku"), p.get("location"), p.get("sequence"))] = now
        return publish

    def accept(original: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        def accept(*args: Any) -> list[Any]:
            taken = original(*args)
            stamp_taken(taken)
            return taken
        return accept

    def stamp_taken(taken: list[Any]) -> None:
        now = taken_at[0] = time.time()
        for _receiver, messages in taken:
            for message in messages:
                p = message.application_properties
                key = _key(p.get("sku"), p.get("location"), p.get("sequence"))
                stamps["taken"][key] = now
                in_visit.append(key)

    def applied(original: Callable[..., Any]) -> Callable[..., Any]:
        def apply(*args: Any) -> Any:
            result = original(*args)
            applied_at[0] = time.time()
            return result
        return apply

    def settled(now: float) -> None:
        for key in in_visit:
            stamps["applied"][key], stamps["settled"][key] = applied_at[0], now
        spans["visit (take to settled)"].append(now - taken_at[0])
        spans["visit size"].append(len(in_visit))
        in_visit.clear()

    def settle(original: Callable[..., int]) -> Callable[..., int]:
        def settle(handled: Any) -> int:
            count = original(handled)
            settled(time.time())
            return count
        return settle

    def settle_and_accept(original: Callable[..., Any]) -> Callable[..., Any]:
        # The settlement and the next take are one transaction: both stamped at its end.
        def settle_and_accept(handled: Any, *args: Any) -> Any:
            count, taken = original(handled, *args)
            settled(time.time())
            stamp_taken(taken)
            return count, taken
        return settle_and_accept

    def timed(span: str, original: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            started = time.time()
            original(*args)
            spans[span].append(time.time() - started)
        return call

    wrap(store, "read_after", read_after)
    wrap(broker, "publish", publish)
    wrap(broker, "accept_next_sessions", accept)
    wrap(broker, "settle_sessions", settle)
    wrap(broker, "settle_and_accept_next_sessions", settle_and_accept)
    wrap(pipeline.consumer, "_apply", applied)
    if relay.before_checkpoint is not None:
        relay.before_checkpoint = timed("broker sync", relay.before_checkpoint)
    wrap(relay.checkpoints, "advance", lambda original: timed("checkpoint write", original))
    pipeline.start()
    while not Path(stop_file).exists():
        time.sleep(0.05)
    pipeline.stop()
    container.close()
    Path(out_file).write_text(json.dumps({"stamps": stamps, "spans": spans}))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stages(directory: Path, rate: float, seconds: float) -> list[str]:
    """The report's lines for a run at ``rate`` reservations/s for ``seconds``."""
    container = services(directory, EmbeddedProcess.HOST)
    _stock(container.commands)
    spawn = multiprocessing.get_context("spawn")
    worker_stop, worker_out = directory / "stop-worker", directory / "stages.json"
    worker = spawn.Process(target=_stamped_worker,
                           args=(str(directory), str(worker_stop), str(worker_out)))
    worker.start()
    views, store = container.availability, container.store
    assert isinstance(views, SQLiteAvailabilityViews)
    while views.events_applied() < store.max_position():  # type: ignore[attr-defined]
        time.sleep(0.01)
    stop_watching = start_watcher(directory)
    pids = {"worker": worker.pid or 0, "commands": os.getpid()}
    cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    committed = {_key(*key): at for key, at in
                 paced_reservations(container.commands, rate, seconds).items()}
    wall = time.perf_counter() - started
    shares = {name: (_cpu_seconds(pid) - cpu[name]) / wall for name, pid in pids.items()}
    await_view(views, store.max_position(), 30)  # type: ignore[attr-defined]
    seen = {_key(*key): at for key, at in stop_watching().items()}
    worker_stop.touch()
    worker.join(60)
    container.close()
    measured = json.loads(worker_out.read_text())
    chain = [committed, *(measured["stamps"][s] for s in STAGES[1:6]), seen]
    keys = [k for k in committed if all(k in stage for stage in chain)]

    def line(name: str, values: list[float], unit: str = "ms", scale: float = 1000) -> str:
        v = [x * scale for x in values] or [float("nan")]
        return (f"  {name:28s} p50 {_percentile(v, 50):8.1f}  p90 {_percentile(v, 90):8.1f}"
                f"  p99 {_percentile(v, 99):8.1f}  max {max(v):8.1f} {unit}")

    lines = [f"{rate:.0f} reservations/s asked, {len(committed) / wall:.0f}/s done, "
             f"{len(keys)} of {len(committed)} stamped at every stage; load average "
             f"{os.getloadavg()[0]:.2f}; CPU over the load (cores): "
             + ", ".join(f"{name} {share:.2f}" for name, share in shares.items())]
    for n in range(len(STAGES) - 1):
        lines.append(line(f"{STAGES[n]} → {STAGES[n + 1]}",
                          [chain[n + 1][k] - chain[n][k] for k in keys]))
    lines.append(line("end to end", [seen[k] - committed[k] for k in keys]))
    for span, values in measured["spans"].items():
        if span == "visit size":
            lines.append(line(f"{span} ({len(values)} visits)", values, "events", 1))
        else:
            lines.append(line(f"{span} ({len(values)})", values))
    return lines


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for text in stages(Path(tmp), float(sys.argv[1]),
                           float(sys.argv[2]) if len(sys.argv) > 2 else 6.0):
            print(text)
