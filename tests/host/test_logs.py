"""The host's log lines: the same text as the standard formatter's, written in blocks, a
warning at once with everything before it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.logs import FORMAT, BufferedStreamHandler, LineFormatter, info_line


def record(message: str, level: int = logging.INFO, created: float | None = None
           ) -> logging.LogRecord:
    made = logging.LogRecord("stockstream.host", level, __file__, 1, message, None, None)
    if created is not None:
        made.created, made.msecs = created, (created % 1) * 1000
    return made


def test_a_line_reads_as_the_standard_formatter_writes_it() -> None:
    ours, standard = LineFormatter(FORMAT), logging.Formatter(FORMAT)
    start = 1_780_000_000.0
    for offset in (0.0, 0.001, 0.5, 0.999, 1.0, 1.25, 61.75, 3600.5):
        line = record("GET /api/x 404 1.0ms", created=start + offset)
        assert ours.format(line) == standard.format(line)


@pytest.fixture
def written(tmp_path: Path) -> Iterator[tuple[BufferedStreamHandler, Path]]:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        handler = BufferedStreamHandler(stream, interval=0.2)
        handler.setFormatter(LineFormatter("%(levelname)s %(message)s"))
        yield handler, path
        handler.close()


def test_info_lines_wait_in_the_buffer_then_reach_the_stream(
        written: tuple[BufferedStreamHandler, Path]) -> None:
    handler, path = written
    handler.handle(record("GET /api/a 200 1.0ms"))
    assert path.read_text() == ""  # not one system call per line
    deadline = time.monotonic() + 5
    while path.read_text() == "" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.read_text() == "INFO GET /api/a 200 1.0ms\n"


def test_a_warning_goes_out_at_once_with_every_line_before_it(
        written: tuple[BufferedStreamHandler, Path]) -> None:
    handler, path = written
    handler.handle(record("GET /api/a 200 1.0ms"))
    handler.handle(record("store unavailable", logging.WARNING))
    assert path.read_text() == "INFO GET /api/a 200 1.0ms\nWARNING store unavailable\n"


def test_closing_writes_what_is_buffered(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        handler = BufferedStreamHandler(stream, interval=60)
        handler.setFormatter(LineFormatter("%(message)s"))
        handler.handle(record("GET /api/a 200 1.0ms"))
        handler.close()
    assert path.read_text() == "GET /api/a 200 1.0ms\n"


@pytest.fixture
def host_logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, BufferedStreamHandler, Path]]:
    """A logger with the one handler ``configure_logging`` sets up, outside the logging
    tree (so pytest's own capturing handlers never join it)."""
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        handler = BufferedStreamHandler(stream, interval=60)
        handler.setFormatter(LineFormatter(FORMAT))
        logger = logging.Logger(f"tests.logs.{tmp_path.name}", logging.INFO)
        logger.addHandler(handler)
        yield logger, handler, path
        handler.close()


def test_an_info_line_without_a_record_reads_as_the_record_would(
        host_logger: tuple[logging.Logger, BufferedStreamHandler, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    logger, handler, path = host_logger
    now = 1_780_000_000.987
    monkeypatch.setattr(time, "time", lambda: now)
    info_line(logger, "GET /api/x%0a 404 1.0ms")  # a percent sign is no format
    handler.flush()
    made = logging.LogRecord(logger.name, logging.INFO, __file__, 1, "GET /api/x%0a 404 1.0ms",
                             None, None)
    made.created, made.msecs = now, (now % 1) * 1000
    assert path.read_text() == logging.Formatter(FORMAT).format(made) + "\n"


class Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_another_handler_on_the_way_gets_the_record_and_the_line_is_written_alike(
        host_logger: tuple[logging.Logger, BufferedStreamHandler, Path]) -> None:
    logger, handler, path = host_logger
    collecting = Collecting()
    logger.addHandler(collecting)
    try:
        info_line(logger, "GET /api/a 200 1.0ms")
    finally:
        logger.removeHandler(collecting)
    handler.flush()
    assert [r.getMessage() for r in collecting.records] == ["GET /api/a 200 1.0ms"]
    assert path.read_text().endswith(" INFO tests.logs." + path.parent.name
                                     + ": GET /api/a 200 1.0ms\n")


@pytest.mark.parametrize("shield", ["filter on the logger", "filter on the handler",
                                    "handler level"])
def test_a_filter_or_a_handler_level_above_info_is_obeyed(
        shield: str, host_logger: tuple[logging.Logger, BufferedStreamHandler, Path]) -> None:
    logger, handler, path = host_logger
    if shield == "filter on the logger":
        logger.addFilter(lambda record: "secret" not in record.getMessage())
    elif shield == "filter on the handler":
        handler.addFilter(lambda record: "secret" not in record.getMessage())
    else:
        handler.setLevel(logging.WARNING)
    info_line(logger, "GET /api/secret 200 1.0ms")
    handler.flush()
    assert path.read_text() == ""
