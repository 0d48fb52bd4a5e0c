"""How the embedded host's processes log: one line per record on stderr, INFO by default.

One place for it, so the host (``python -m local``), its worker and the benchmarks that
stand for ``python -m local`` log alike.

The host makes a record for every request it answers (the access line), so what a record
costs is paid per request; on a 404 it was a quarter of the host's CPU. Three things make
it cheap, none of which changes a line:

- a record does not collect the thread, process or multiprocessing names, which no line
  shows (the ``logging`` HOWTO's own advice for a hot path, "Optimization");
- the time prefix is formatted once a second, not once a record (:class:`LineFormatter`);
- lines are written to stderr in blocks rather than one system call each
  (:class:`BufferedStreamHandler`), as nginx buffers its access log: a WARNING or worse
  goes out at once with everything before it, the rest within ``FLUSH_INTERVAL``
  seconds, and all of it when logging shuts down (``logging.shutdown`` at exit; a
  process killed outright loses at most that interval's INFO lines).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

FLUSH_INTERVAL = 0.25
"""Seconds an INFO line may wait in the buffer before it reaches stderr."""

BUFFER_BYTES = 64 * 1024


class LineFormatter(logging.Formatter):
    """The standard formatter, with ``asctime`` (local time, to the millisecond, as the
    default ``%Y-%m-%d %H:%M:%S,mmm``) formatted once per second of records."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._prefix = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # a race only formats the same second twice
            self._prefix = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._prefix},{int(record.msecs):03d}"


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes to a block-buffered copy of the stream and flushes it
    when a WARNING or worse arrives, every ``interval`` seconds, and on close."""

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL) -> None:
        buffered = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(stream.fileno(), "w", closefd=False), BUFFER_BYTES),
            encoding=stream.encoding or "utf-8", errors="backslashreplace",
            line_buffering=False, write_through=False)
        super().__init__(buffered)
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(interval,),
                                         name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flush_every(self, interval: float) -> None:
        while not self._closed.wait(interval):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()


def configure_logging(level: int = logging.INFO, *, prefix: str = "") -> None:
    """Log records of ``level`` and above to stderr; ``prefix`` goes before the logger's
    name (the worker process says ``worker``)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(FORMAT.replace("%(name)s", f"{prefix}%(name)s")))
    logging.basicConfig(level=level, handlers=[handler])
