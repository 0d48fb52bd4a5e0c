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
  process killed outright loses at most that interval's INFO lines);
- the access line needs no record at all (:func:`info_line`): when the one handler that
  would see it is this module's, its line is formatted and buffered directly, the same
  text the record would have made. Making a ``LogRecord`` and passing it through the
  logger, the handler and the formatter cost 6.5–6.8 µs a line; without it, 3.3–5.0 µs.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import sys
import threading
import time
from typing import TextIO, cast

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
        return self._asctime(record.created)

    def _asctime(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # a race only formats the same second twice
            self._prefix = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._prefix},{int((created - second) * 1000):03d}"  # LogRecord's msecs

    def line(self, created: float, levelname: str, name: str, message: str) -> str | None:
        """What :meth:`format` makes of a record of these, without the record; None when
        this formatter's format names anything else of a record (then only a record
        says it)."""
        if not self._plain:
            return None
        return cast(str, self._fmt) % {"asctime": self._asctime(created),
                                       "levelname": levelname, "name": name,
                                       "message": message}

    @functools.cached_property
    def _plain(self) -> bool:
        return (type(self._style) is logging.PercentStyle and isinstance(self._fmt, str)
                and set(_FIELD.findall(self._fmt)) <= _LINE_FIELDS)


_FIELD = re.compile(r"%\((\w+)\)")
_LINE_FIELDS = frozenset({"asctime", "levelname", "name", "message"})


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

    def write_line(self, text: str) -> None:
        """An INFO line already formatted (:func:`info_line`), as :meth:`emit` writes one."""
        self.acquire()
        try:
            self.stream.write(text + self.terminator)
        finally:
            self.release()

    def _flush_every(self, interval: float) -> None:
        while not self._closed.wait(interval):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()


def info_line(logger: logging.Logger, message: str) -> None:
    """Log ``message`` at INFO on ``logger``, which the caller found enabled for INFO.

    When the one handler that would see the record is a :class:`BufferedStreamHandler`
    with a :class:`LineFormatter` (as :func:`configure_logging` sets up) and no filter is
    on the way, its line is written without making the record; otherwise (a test's
    capturing handler, another set-up) the record is made and handled as usual. The
    decision is taken on every call, so a handler added later is never bypassed."""
    handler = _only_handler(logger)
    if handler is not None:
        formatter = handler.formatter
        if type(formatter) is LineFormatter:
            text = formatter.line(time.time(), "INFO", logger.name, message)
            if text is not None:
                handler.write_line(text)
                return
    # Made directly: ``logger.info`` would walk the stack for the caller.
    logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (),
                                    None))


def _only_handler(logger: logging.Logger) -> BufferedStreamHandler | None:
    """The handler an INFO record of ``logger`` would reach, if it reaches exactly one,
    a :class:`BufferedStreamHandler` that takes INFO, and no filter stands on its way."""
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None or handler.filters or handler.level > logging.INFO:
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found if type(found) is BufferedStreamHandler else None


def configure_logging(level: int = logging.INFO, *, prefix: str = "") -> None:
    """Log records of ``level`` and above to stderr; ``prefix`` goes before the logger's
    name (the worker process says ``worker``)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(FORMAT.replace("%(name)s", f"{prefix}%(name)s")))
    logging.basicConfig(level=level, handlers=[handler])
