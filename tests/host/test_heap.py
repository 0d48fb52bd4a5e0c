"""A host that serves until stopped settles its heap once started: what start-up made is
frozen out of the garbage collector's full collections (``local.heap``); the host and its
pipeline worker say so in their logs. A host started inside another program does not."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

from application.settings import load
from local.host import EmbeddedHost
from tests.e2e.conftest import start_host


def test_python_m_local_and_its_worker_freeze_what_start_up_made(tmp_path: Path) -> None:
    host = start_host(tmp_path)
    try:
        host.wait_for_log("INFO local.heap: start-up done:", timeout=30)
        host.wait_for_log("INFO worker local.heap: start-up done:", timeout=30)
    finally:
        assert host.stop(signal.SIGTERM) == 0, host.log()


def test_a_host_started_inside_another_program_leaves_its_heap_alone(tmp_path: Path) -> None:
    frozen = gc.get_freeze_count()
    settings = load({"STOCKSTREAM_DATA": str(tmp_path)})
    with EmbeddedHost(settings, port=0, with_pipeline=False):
        assert gc.get_freeze_count() == frozen
