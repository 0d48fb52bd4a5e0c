"""The embedded root wires transfers beside orders (``processes.db``, every process but
the operator's), the pipeline worker sweeps them with orders at
``STOCKSTREAM_ORDER_SWEEP_INTERVAL``, and the Azure root leaves them out (503)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from application.settings import load
from composition.embedded import EmbeddedProcess, embedded_services
from local.pipeline import start_pipeline
from tests.transfers.conftest import request


@pytest.mark.parametrize("process", [EmbeddedProcess.COMMANDS, EmbeddedProcess.HOST,
                                     EmbeddedProcess.WORKER, EmbeddedProcess.PIPELINE])
def test_every_process_but_the_operator_has_transfers_in_processes_db(
        tmp_path: Path, process: EmbeddedProcess):
    services = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}), process=process)
    try:
        assert services.transfers is not None
        assert services.transfers.request(request()).created
        if services.pipeline is not None:
            assert services.pipeline.transfers is services.transfers
    finally:
        services.close()


def test_the_operator_has_no_transfers(tmp_path: Path):
    settings = load({"STOCKSTREAM_DATA": str(tmp_path)})
    embedded_services(settings).close()
    services = embedded_services(settings, process=EmbeddedProcess.OPERATOR)
    try:
        assert services.transfers is None
    finally:
        services.close()


def test_the_pipeline_sweeps_transfers_at_the_setting(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    services = embedded_services(
        load({"STOCKSTREAM_DATA": str(tmp_path), "STOCKSTREAM_ORDER_SWEEP_INTERVAL": "1"}),
        process=EmbeddedProcess.PIPELINE)
    assert services.transfers is not None and services.orders is not None
    swept: list[int] = []
    original = services.transfers.sweep

    def counting(limit: int = 100) -> int:
        swept.append(limit)
        return original(limit)

    def failing(limit: int = 100) -> int:
        raise RuntimeError("the order sweep failed")

    monkeypatch.setattr(services.transfers, "sweep", counting)
    monkeypatch.setattr(services.orders, "sweep", failing)  # does not keep transfers' turn
    pipeline = start_pipeline(services)
    try:
        deadline = time.monotonic() + 10
        while not swept and time.monotonic() < deadline:
            time.sleep(0.1)
        assert swept, "the transfer sweep did not run within 10 s at a 1 s interval"
    finally:
        pipeline.stop()
        services.close()
