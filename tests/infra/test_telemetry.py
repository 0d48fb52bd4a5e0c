"""The telemetry module emits the documented metric names with the documented attributes."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from adapters import telemetry
from adapters.telemetry import Telemetry, configure_telemetry, log_for_stream
from application.settings import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorded():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(provider.get_meter(telemetry.METER_NAME)), reader
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    if data is None:  # nothing recorded yet
        return out
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            assert scope.scope.name == telemetry.METER_NAME
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_each_method_emits_its_documented_metric_name_and_attributes(recorded):
    t, reader = recorded
    t.record_outbox_lag(2.5)
    t.record_published(3)
    t.record_projection_lag("availability", 1.25)
    t.record_dead_letter_depth("availability", 4)
    t.record_backlog("erp-sync", 17)
    t.record_drift(-6, -12.5)
    t.record_command("reserve", 0.02, "applied")
    t.record_outbox(7, 95.5)

    points = _points(reader)

    assert set(points) == telemetry.METRIC_NAMES
    assert points[telemetry.OUTBOX_DEPTH][0].value == 7
    assert points[telemetry.OUTBOX_OLDEST_AGE][0].value == 95.5
    assert points[telemetry.OUTBOX_LAG_SECONDS][0].max == 2.5
    assert points[telemetry.RELAY_PUBLISHED][0].value == 3
    (lag,) = points[telemetry.PROJECTION_LAG_SECONDS]
    assert dict(lag.attributes) == {"projection": "availability"} and lag.sum == 1.25
    (dead,) = points[telemetry.DEAD_LETTER_DEPTH]
    assert dict(dead.attributes) == {"subscription": "availability"} and dead.value == 4
    (backlog,) = points[telemetry.SUBSCRIPTION_BACKLOG]
    assert dict(backlog.attributes) == {"subscription": "erp-sync"} and backlog.value == 17
    assert points[telemetry.DRIFT_UNITS][0].sum == 6
    assert points[telemetry.DRIFT_PERCENT][0].sum == 12.5
    (command,) = points[telemetry.COMMAND_DURATION]
    assert dict(command.attributes) == {"command": "reserve", "outcome": "applied"}


def test_metric_names_match_the_brief_contract():
    assert {
        "stockstream.outbox.lag_seconds",
        "stockstream.relay.published",
        "stockstream.projection.lag_seconds",
        "stockstream.deadletter.depth",
        "stockstream.reconciliation.drift_units",
        "stockstream.command.duration",
    } <= telemetry.METRIC_NAMES


def test_dead_letter_depth_is_kept_per_subscription_and_latest_value_wins(recorded):
    t, reader = recorded
    t.record_dead_letter_depth("availability", 5)
    t.record_dead_letter_depth("erp-sync", 1)
    t.record_dead_letter_depth("availability", 0)

    points = _points(reader)[telemetry.DEAD_LETTER_DEPTH]
    depth = {p.attributes["subscription"]: p.value for p in points}

    assert depth == {"availability": 0, "erp-sync": 1}


def test_negative_lag_from_clock_skew_is_recorded_as_zero(recorded):
    t, reader = recorded
    t.record_outbox_lag(-3.0)
    assert _points(reader)[telemetry.OUTBOX_LAG_SECONDS][0].min == 0.0


def test_publishing_nothing_records_nothing_and_negative_count_is_refused(recorded):
    t, reader = recorded
    t.record_published(0)
    assert telemetry.RELAY_PUBLISHED not in _points(reader)
    with pytest.raises(ValueError):
        t.record_published(-1)


def test_an_undocumented_command_outcome_is_refused(recorded):
    t, _ = recorded
    with pytest.raises(ValueError, match="outcome"):
        t.record_command("reserve", 0.1, "ok-ish")


def test_without_a_connection_string_telemetry_is_kept_locally_and_exported_nowhere():
    t = configure_telemetry(load({}))
    # Every method works, nothing global was installed, and the process can list it all.
    t.record_outbox_lag(1)
    t.record_published(1)
    t.record_projection_lag("availability", 1)
    t.record_dead_letter_depth("availability", 1)
    t.record_backlog("availability", 1)
    t.record_drift(1, 1)
    t.record_command("receive", 1, "applied")
    t.record_outbox(0, None)
    assert telemetry._azure_monitor_configured is False
    assert {f.name for f in t.families()} == telemetry.METRIC_NAMES


def test_an_empty_outbox_has_age_zero_and_the_relay_batch_records_count_and_lags(recorded):
    t, reader = recorded
    t.record_outbox(0, None)
    t.record_relay_batch([0.5, 3.0])
    points = _points(reader)
    assert points[telemetry.OUTBOX_OLDEST_AGE][0].value == 0.0
    assert points[telemetry.RELAY_PUBLISHED][0].value == 2
    lag = points[telemetry.OUTBOX_LAG_SECONDS][0]
    assert (lag.count, lag.max) == (2, 3.0)


def test_commits_are_counted_only_inside_a_counting_context():
    telemetry.note_commit([])  # outside: nothing to count, nothing fails
    with telemetry.counting_commits() as outer:
        telemetry.note_commit([])
        with telemetry.counting_commits() as inner:
            telemetry.note_commit([])
        telemetry.note_commit([])
    assert (outer[0], inner[0]) == (2, 1)


def test_the_local_reader_renders_openmetrics_text():
    t = telemetry.local_telemetry()
    t.record_command("reserve_stock", 0.003, "applied")
    t.record_published(2)
    t.record_backlog("availability", 4)
    text = t.openmetrics()
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    assert "# TYPE stockstream_command_duration histogram" in lines
    assert ('stockstream_command_duration_bucket{command="reserve_stock",outcome="applied",'
            'le="0.005"} 1') in lines
    assert ('stockstream_command_duration_bucket{command="reserve_stock",outcome="applied",'
            'le="+Inf"} 1') in lines
    assert ('stockstream_command_duration_count{command="reserve_stock",outcome="applied"} 1'
            in lines)
    assert "# TYPE stockstream_relay_published counter" in lines
    assert "stockstream_relay_published_total 2" in lines
    assert 'stockstream_subscription_active_messages{subscription="availability"} 4' in lines


class _IngestionEndpoint(ThreadingHTTPServer):
    """A stand-in Application Insights ingestion endpoint that keeps what it receives."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.startswith("/v2.1/track"):
                    outer.bodies.append(body)
                reply = b'{"itemsReceived": 1, "itemsAccepted": 1, "errors": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_with_a_connection_string_metrics_are_exported_to_application_insights(tmp_path):
    endpoint = _IngestionEndpoint()
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/"
    # A separate interpreter: the distro installs process-global providers.
    script = textwrap.dedent(f"""
        import os
        from opentelemetry import metrics
        from adapters.telemetry import configure_telemetry
        from application.settings import load
        cs = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
              "IngestionEndpoint={url};LiveEndpoint={url}")
        t = configure_telemetry(load({{"APPLICATIONINSIGHTS_CONNECTION_STRING": cs}}))
        t.record_dead_letter_depth("availability", 3)
        assert metrics.get_meter_provider().force_flush(timeout_millis=20000)
        print("flushed")
        os._exit(0)  # skip the distro's other exporters' shutdown
    """)
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
            timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                             "TMPDIR": str(tmp_path)},
        )
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    assert result.returncode == 0, result.stderr[-3000:]
    envelopes = [json.loads(line) for body in endpoint.bodies
                 for line in body.decode().splitlines() if line.strip()]
    envelopes = [e for batch in envelopes for e in (batch if isinstance(batch, list) else [batch])]
    ours = [e for e in envelopes if e.get("data", {}).get("baseType") == "MetricData"
            and e["data"]["baseData"]["metrics"][0]["name"] == telemetry.DEAD_LETTER_DEPTH]
    assert ours, [e.get("data", {}).get("baseType") for e in envelopes]
    base = ours[0]["data"]["baseData"]
    assert base["properties"] == {"subscription": "availability"}
    assert base["metrics"][0]["value"] == 3


def test_stream_log_records_carry_stream_and_event_ids(caplog):
    logger = logging.getLogger("stockstream.relay")
    with caplog.at_level(logging.INFO, logger="stockstream"):
        log_for_stream(logger, logging.INFO, "published", stream_id="SKU-1|STORE-9",
                       event_id="SKU-1|STORE-9:4", fields={"attempt": 2})

    (record,) = caplog.records
    assert record.stream_id == "SKU-1|STORE-9"
    assert record.event_id == "SKU-1|STORE-9:4"
    assert record.attempt == 2
    assert record.getMessage() == (
        "published stream_id=SKU-1|STORE-9 event_id=SKU-1|STORE-9:4 attempt=2")


def test_stream_log_fields_cannot_override_the_identifiers():
    with pytest.raises(ValueError):
        log_for_stream(logging.getLogger("stockstream"), logging.INFO, "x",
                       stream_id="a|b", fields={"stream_id": "c|d"})


def test_merged_sources_keep_every_sources_points_under_one_family():
    from adapters.openmetrics import Family, Point, merged

    relayed = Family("stockstream_relay_published", "counter",
                     points=(Point(labels={"topic": "t"}, value=4.0),))
    swept = Family("stockstream_expiry_released", "counter",
                   points=(Point(labels={}, value=1.0),))
    also_relayed = Family("stockstream_relay_published", "counter",
                          points=(Point(labels={"topic": "u"}, value=2.0),))

    families = {f.name: f for f in merged([relayed], [swept, also_relayed], [])}

    assert set(families) == {"stockstream_relay_published", "stockstream_expiry_released"}
    assert [p.value for p in families["stockstream_relay_published"].points] == [4.0, 2.0]
    assert families["stockstream_expiry_released"] == swept
