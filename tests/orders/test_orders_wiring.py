"""The embedded root wires orders: ``processes.db`` beside ``events.db`` for every process
but the operator's, and the pipeline's order sweep at ``STOCKSTREAM_ORDER_SWEEP_INTERVAL``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.sqlite import SQLiteStockItems
from adapters.sqlite.process_streams import SQLiteProcessStore
from application.settings import SettingsError, load
from composition.embedded import EmbeddedProcess, embedded_services
from composition.files import EmbeddedFiles
from local.pipeline import start_pipeline
from tests.orders.conftest import line


@pytest.mark.parametrize("process", [EmbeddedProcess.COMMANDS, EmbeddedProcess.HOST,
                                     EmbeddedProcess.WORKER, EmbeddedProcess.PIPELINE])
def test_every_process_but_the_operator_has_orders_in_processes_db(
        tmp_path: Path, process: EmbeddedProcess):
    services = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}), process=process)
    try:
        assert services.orders is not None and services.location_groups is not None
        services.location_groups.define("G1", ["S1"], "priority")
        assert EmbeddedFiles(tmp_path).processes.exists()
        if services.pipeline is not None:
            assert services.pipeline.orders is services.orders
    finally:
        services.close()


@pytest.mark.parametrize("process", [EmbeddedProcess.HOST, EmbeddedProcess.PIPELINE])
def test_the_ops_status_outbox_counts_an_orders_events_beside_the_stock_events(
        tmp_path: Path, process: EmbeddedProcess):
    services = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path)}), process=process)
    try:
        assert services.orders is not None and services.ops is not None
        services.commands.receive("A", "S1", 10)
        services.orders.place("o-1", "web", [line("A", 2)])
        processes = SQLiteProcessStore(EmbeddedFiles(tmp_path).processes)
        order_events = processes.max_position()  # the store holds the order's events only
        processes.close()

        outbox = services.ops.status().outbox

        assert order_events > 0
        assert isinstance(services.store, SQLiteStockItems)  # the embedded host's store
        assert outbox.depth == services.store.max_position() + order_events
    finally:
        services.close()


def test_the_operator_has_no_orders(tmp_path: Path):
    settings = load({"STOCKSTREAM_DATA": str(tmp_path)})
    embedded_services(settings).close()  # create the files first
    services = embedded_services(settings, process=EmbeddedProcess.OPERATOR)
    try:
        assert services.orders is None and services.location_groups is None
    finally:
        services.close()


def test_the_sweep_interval_is_a_duration_of_60_seconds_by_default():
    assert load({}).order_sweep_interval.total_seconds() == 60
    assert load({"STOCKSTREAM_ORDER_SWEEP_INTERVAL": "2m"}).order_sweep_interval \
        .total_seconds() == 120
    with pytest.raises(SettingsError, match="STOCKSTREAM_ORDER_SWEEP_INTERVAL"):
        load({"STOCKSTREAM_ORDER_SWEEP_INTERVAL": "0"})


def test_the_pipeline_sweeps_orders_at_the_setting(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    services = embedded_services(
        load({"STOCKSTREAM_DATA": str(tmp_path), "STOCKSTREAM_ORDER_SWEEP_INTERVAL": "1"}),
        process=EmbeddedProcess.PIPELINE)
    assert services.orders is not None
    swept: list[int] = []
    original = services.orders.sweep

    def counting(limit: int = 100) -> int:
        swept.append(limit)
        return original(limit)

    monkeypatch.setattr(services.orders, "sweep", counting)
    pipeline = start_pipeline(services)
    try:
        assert pipeline.order_sweep_interval == 1.0
        deadline = time.monotonic() + 10
        while not swept and time.monotonic() < deadline:
            time.sleep(0.1)
        assert swept, "the order sweep did not run within 10 s at a 1 s interval"
    finally:
        pipeline.stop()
        services.close()
