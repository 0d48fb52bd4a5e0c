"""``python -m local.worker``: the embedded pipeline as its own process.

The relay, the availability consumers and the expiry sweep, without HTTP. The embedded
host (``python -m local``) starts the pipeline apart from itself and supervises it, as
Azure runs the pipeline's functions apart from the HTTP ones: commands and the pipeline
then each have a Python interpreter (and its lock) to themselves. The host starts two
workers, ``--role relay`` (the relay, its checkpoint, the metrics sampling) and ``--role
consumer`` (the availability consumer, the expiry and process sweeps), so relaying and
consuming do not queue behind each other either; ``--role all`` (the default) runs every
part in one process. Settings as for the host; ``--data`` overrides ``STOCKSTREAM_DATA``.
Stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import get_args

from application.settings import SettingsError, load
from composition.embedded import EmbeddedProcess, embedded_services
from local.heap import settle_heap
from local.logs import configure_logging
from local.pipeline import Role, start_pipeline

log = logging.getLogger(__name__)

READY = "pipeline ready"

RELAY_POLL_SECONDS = 0.005
"""Commands are committed by another process, so the relay finds them by polling; a
poll is one indexed read of the last position, cheap enough to do every 5 ms. A split
worker's consumer finds what the relaying process published the same way."""


class WorkerProcess:
    """Runs ``python -m local.worker --role ROLE`` for a host, restarts it if it dies,
    stops it cleanly. The worker's output goes to the host's stderr, so one terminal
    shows both."""

    RESTART_DELAY_SECONDS = 1.0

    def __init__(self, data_dir: Path, role: Role = "all") -> None:
        self.data_dir = data_dir
        self.role = role
        self._stopping = threading.Event()
        self._spawning = threading.Lock()
        self._process = self._spawn()
        self._monitor = threading.Thread(target=self._supervise, name=f"worker-{role}-monitor",
                                         daemon=True)
        self._monitor.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "STOCKSTREAM_DATA": str(self.data_dir.resolve())}
        # Its own session: Ctrl-C in the terminal reaches the host only, which then stops
        # the worker in order (rather than both racing, and the supervisor restarting it).
        return subprocess.Popen([sys.executable, "-m", "local.worker", "--role", self.role,
                                 "--parent", str(os.getpid())], env=env,
                                cwd=Path(__file__).resolve().parents[1],
                                start_new_session=True)

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.error("the pipeline worker (%s) exited (%s); restarting it", self.role, code)
            if self._stopping.wait(self.RESTART_DELAY_SECONDS):
                return
            with self._spawning:
                if self._stopping.is_set():
                    return
                self._process = self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the worker and wait for its clean shutdown (SIGKILL after ``timeout``)."""
        with self._spawning:
            self._stopping.set()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._monitor.join(timeout)


class SplitWorker:
    """The host's pipeline: a relaying worker and a consuming one, each supervised and
    restarted on its own. What one publishes and the other has not consumed when they
    stop stays in the broker for the next start."""

    def __init__(self, data_dir: Path) -> None:
        self.relay = WorkerProcess(data_dir, "relay")
        self.consumer = WorkerProcess(data_dir, "consumer")

    def stop(self, timeout: float = 30.0) -> None:
        self.consumer.stop(timeout)
        self.relay.stop(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.worker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data directory (default: STOCKSTREAM_DATA or ./data)")
    parser.add_argument("--parent", type=int,
                        help="stop when this process (the supervising host) is gone")
    parser.add_argument("--role", choices=get_args(Role), default="all",
                        help="relay, consumer, or all of the pipeline (default)")
    args = parser.parse_args(argv)
    configure_logging(prefix="worker ")
    try:
        settings = load()
    except SettingsError as error:
        print(f"python -m local.worker: {error}", file=sys.stderr)
        return 2
    if args.data:
        settings = dataclasses.replace(settings, data_dir=Path(args.data))
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    process = EmbeddedProcess.CONSUMER if args.role == "consumer" else EmbeddedProcess.WORKER
    services = embedded_services(settings, process=process)
    pipeline = start_pipeline(services, relay_interval=RELAY_POLL_SECONDS, role=args.role)
    settle_heap()
    print(READY, flush=True)
    # A worker whose host was killed outright is re-parented: it stops too, rather than
    # running on beside the next host's worker.
    while not stopping.wait(1.0):
        if args.parent is not None and os.getppid() != args.parent:
            log.warning("the host went away; the pipeline worker stops")
            break
    pipeline.stop()
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
