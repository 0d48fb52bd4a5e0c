"""What every benchmark shares: the row it reports, a timer, and the services under test
(from the embedded composition root, as the host builds them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from application.settings import load
from composition import Services
from composition.embedded import EmbeddedProcess, embedded_services
from composition.files import EmbeddedFiles
from local.heap import settle_heap


@dataclass(frozen=True)
class Row:
    """One scenario: its figure, the baseline's in the same run, and the goal for the ratio."""

    scenario: str
    unit: str
    value: float
    baseline: float | None = None
    goal: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def print_rows(rows: list[Row]) -> None:
    """A module run alone (``python -m bench.MODULE``) prints its rows, each with its ratio."""
    for row in rows:
        against = (f" vs baseline {row.baseline:,.0f} -> ratio {row.ratio:.2f}"
                   if row.ratio is not None and row.baseline is not None else "")
        print(f"{row.scenario}: {row.value:,.0f} {row.unit}{against} (goal {row.goal})")


def services(data_dir: Path, process: EmbeddedProcess = EmbeddedProcess.COMMANDS) -> Services:
    """The embedded services of ``process`` on ``data_dir`` (default settings otherwise),
    in a heap settled as the host settles its own once started (``local.heap``)."""
    built = embedded_services(load({"STOCKSTREAM_DATA": str(data_dir)}), process=process)
    settle_heap()
    return built


def files(data_dir: Path) -> EmbeddedFiles:
    """The files the embedded host keeps under ``data_dir``."""
    return EmbeddedFiles(data_dir)


def rate(operation: Callable[[int], None], count: int) -> float:
    """Operations per second of ``operation(i)`` for i in range(count), run back to back."""
    started = time.perf_counter()
    for i in range(count):
        operation(i)
    return count / (time.perf_counter() - started)


def interleaved_rates(operations: dict[str, Callable[[int], None]],
                      count: int) -> dict[str, float]:
    """Operations per second of each ``operation(i)``, for i in range(count), run
    interleaved: the i-th of every operation in turn (the order rotating), each timed on
    its own. Drift on a shared machine (other processes, fsync latency that varies from
    second to second) then falls on every operation alike, which blocks of rounds
    cannot promise when one fsync costs 0.3 ms in one second and 1.5 ms in the next."""
    names = list(operations)
    spent = dict.fromkeys(names, 0.0)
    for i in range(count):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            operations[name](i)
            spent[name] += time.perf_counter() - started
    return {name: count / seconds for name, seconds in spent.items()}


def threaded_rate(operation: Callable[[int], None], count: int, threads: int) -> float:
    """Operations per second of ``operation(i)`` for i in range(count), spread over
    ``threads`` threads (thread t runs i = t, t + threads, ...), as a host's workers would
    send them."""

    def lane(start: int) -> None:
        for i in range(start, count, threads):
            operation(i)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lane, range(threads)))
    return count / (time.perf_counter() - started)


class ServerProcess:
    """A benchmark's HTTP server as a subprocess (``python -m MODULE --serve ARGS``): it
    prints its URL on its first line; ``stop`` sends SIGTERM and returns what it printed
    after that (a server may report figures of its own)."""

    def __init__(self, module: str, data_dir: Path, *args: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = (data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--serve", *args, str(data_dir)],
            stdout=subprocess.PIPE, stderr=self.log, cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the server did not start; see {data_dir}/server.log")

    def cpu_seconds(self) -> float:
        """The CPU the server used so far, user and system (``/proc/PID/stat``): divided by
        the requests of a run, what a request costs the server whatever else the machine
        runs, which its rate is not."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=60)
        self.log.close()
        return out.decode()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.stop()
