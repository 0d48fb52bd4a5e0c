"""``POST /api/stock/batch`` (docs/http-api.md, *Batches*): up to 500 commands, each
answered with exactly the status and body its single route gives, in request order.

Called through the function object the app registered with real ``func.HttpRequest``
objects against a real SQLite event store; the body limit over real sockets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.settings import load
from composition import Services
from composition.embedded import embedded_services
from functions.container import get_services, use_services
from functions.responses import BatchOut
from tests.azure_processes import azure, broker, clock  # noqa: F401 - fixtures
from tests.host.conftest import LocalHost, serve
from tests.http.conftest import Answer, call

STREAM = {"sku": "SKU-1", "location": "STORE-1"}


def batch(commands: Any, **kwargs: Any) -> Answer:
    return call("submit_batch", "POST", {}, {"commands": commands}, **kwargs)


def version(container: Services, sku: str = "SKU-1", location: str = "STORE-1") -> int:
    return container.queries.position(sku, location).version


def without_moments(value: Any) -> Any:
    """A body without the instants that depend on when it was answered."""
    if isinstance(value, dict):
        return {k: without_moments(v) for k, v in value.items() if k != "expires_at"}
    if isinstance(value, list):
        return [without_moments(v) for v in value]
    return value


MIXED: list[dict[str, Any]] = [
    {"op": "receive", **STREAM, "quantity": 10, "idempotency_key": "asn-1"},
    {"op": "reserve", **STREAM, "order_id": "o-1", "quantity": 4, "channel": "web"},
    {"op": "reserve", "sku": "SKU-2", "location": "STORE-1", "order_id": "o-2",
     "quantity": 1, "channel": "web"},  # nothing there: 409
    {"op": "receive", "sku": "SKU-2", "location": "STORE-1", "quantity": 3},
    {"op": "reserve", **STREAM, "order_id": "o-3", "quantity": 7, "channel": "pos"},  # 409
    {"op": "fulfil", **STREAM, "order_id": "o-1"},
    {"op": "release", **STREAM, "order_id": "never"},  # 404
    {"op": "adjust", **STREAM, "delta": -1, "reason": "damaged"},
    {"op": "policy", **STREAM, "safety_stock": 1, "oversell_buffer": 0},
    {"op": "count", **STREAM, "count_id": "c-1", "counted": 4,
     "counted_at": datetime.now(UTC).isoformat()},
    {"op": "receive", **STREAM, "quantity": 0},  # 422 from the receipt route
    {"op": "receive", "sku": "bad sku!", "location": "STORE-1", "quantity": 1},  # 422
    {"op": "receive", **STREAM, "quantity": 10, "idempotency_key": "asn-1"},  # a repeat
]

SINGLE = {  # op: (function, method, path parameters beyond the stream)
    "receive": ("receive_stock", "POST"), "adjust": ("adjust_stock", "POST"),
    "policy": ("set_policy", "PUT"), "reserve": ("reserve_stock", "PUT"),
    "release": ("release_reservation", "DELETE"), "fulfil": ("fulfil_reservation", "POST"),
    "count": ("record_count", "POST"),
}


BODY_REQUIRED = {"receive", "adjust", "policy", "reserve", "count"}


def sent_alone(command: dict[str, Any]) -> Answer:
    """What the single route answers to ``command`` sent on its own (its fields as the
    body, ``{}`` when it has none and the route requires one)."""
    fields = dict(command)
    op = fields.pop("op")
    params = {"sku": fields.pop("sku"), "location": fields.pop("location")}
    if op in ("reserve", "release", "fulfil"):
        params["order_id"] = fields.pop("order_id", "")
    headers = {}
    if "idempotency_key" in fields:
        headers["Idempotency-Key"] = fields.pop("idempotency_key")
    if "if_match" in fields:
        headers["If-Match"] = fields.pop("if_match")
    name, method = SINGLE[op]
    body = fields if fields or op in BODY_REQUIRED else None
    return call(name, method, params, body, headers=headers)


@pytest.fixture
def twin(tmp_path: Path, container: Services) -> Iterator[Services]:
    """A second service on its own files, for the same commands sent one by one."""
    other = embedded_services(load({"STOCKSTREAM_DATA": str(tmp_path / "twin")}))
    yield other
    other.close()
    use_services(container)


def test_each_result_is_what_the_single_route_answers_in_request_order(
        container: Services, twin: Services) -> None:
    answer = batch(MIXED)
    use_services(twin)
    alone = [sent_alone(command) for command in MIXED]

    assert answer.status == 200
    assert BatchOut.model_validate(answer.body).results[0].index == 0  # its documented shape
    results = answer.body["results"]
    assert [r["index"] for r in results] == list(range(len(MIXED)))
    assert [r["status"] for r in results] == [a.status for a in alone]
    assert [r["status"] for r in results] == [200, 201, 409, 200, 409, 200, 404, 200, 200,
                                              200, 422, 422, 200]
    assert [without_moments(r["body"]) for r in results] == [
        without_moments(a.body) for a in alone]


REQUIRED, OPTIONAL = True, False
FIELDS: dict[str, dict[str, tuple[bool, list[Any], list[Any]]]] = {
    # op: each field of its single route: required?, good values, bad values
    "receive": {"quantity": (REQUIRED, [1, 3, 20], [0, "2", 1.5]),
                "reference": (OPTIONAL, ["asn-1"], [7]),
                "state": (OPTIONAL, ["sellable", "damaged"], ["frozen"])},
    "adjust": {"delta": (REQUIRED, [-2, 5], [0]),
               "reason": (REQUIRED, ["damaged", "found"], ["whim"]),
               "note": (OPTIONAL, ["dropped"], [None])},
    "policy": {"safety_stock": (REQUIRED, [0, 1], [-1]),
               "oversell_buffer": (REQUIRED, [0, 2], [True])},
    "reserve": {"quantity": (REQUIRED, [1, 2, 50], [0]),
                "channel": (REQUIRED, ["web", "pos"], ["bad channel!"]),
                "ttl_seconds": (OPTIONAL, [60], [0])},
    "release": {},
    "fulfil": {"quantity": (OPTIONAL, [1, 2], [0])},
    "count": {"count_id": (REQUIRED, ["c-1", "c-2"], ["bad id!"]),
              "counted": (REQUIRED, [0, 4, 30], [-1]),
              "counted_at": (REQUIRED, [datetime.now(UTC).isoformat()],
                             ["yesterday", 1_700_000_000])},
}
"""Every field of each op's single route, with good and bad values (the ``counted_at``
of a count is fixed when the module loads: well inside the count window)."""

ORDERS = ("reserve", "release", "fulfil")


@st.composite
def batch_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A command, mostly well formed: each required field present, most values good."""
    op = draw(st.sampled_from(sorted(FIELDS)))
    sku = draw(st.sampled_from(["SKU-1", "SKU-1", "SKU-1", "SKU-2", "SKU-2", "bad sku!"]))
    command: dict[str, Any] = {"op": op, "sku": sku, "location": "STORE-1"}
    for name, (required, good, bad) in FIELDS[op].items():
        if draw(st.integers(0, 9)) < (9 if required else 3):
            command[name] = draw(st.sampled_from(bad if draw(st.integers(0, 7)) == 0
                                                 else good))
    if op in ORDERS:
        command["order_id"] = draw(st.sampled_from(["o-1", "o-2", "o-3", "no way!"]))
    extras: dict[str, list[object]] = {
        "idempotency_key": ["k-1"], "if_match": ["*", '"0"', '"2"', "W/1"], "quantiy": [1]}
    for name, values in extras.items():
        if draw(st.integers(0, 5)) == 0:
            command[name] = draw(st.sampled_from(values))
    return command


def comparable(body: Any) -> Any:
    """A body without what differs between two services by construction: instants that
    depend on when it was answered, and hold ids (random)."""
    if isinstance(body, dict):
        return {k: comparable(v) for k, v in body.items() if k not in ("expires_at", "hold_id")}
    if isinstance(body, list):
        return [comparable(v) for v in body]
    return body


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(commands=st.lists(batch_commands(), min_size=1, max_size=12))
def test_each_command_answers_exactly_as_its_single_route_whatever_it_says(
        tmp_path_factory: pytest.TempPathFactory, commands: list[dict[str, Any]]) -> None:
    """Any mix of ops, streams, good and bad fields, keys and conditions: a batch's
    results are, status and body, what each command sent alone, in order, is answered."""
    directory = tmp_path_factory.mktemp("property")
    batched = embedded_services(load({"STOCKSTREAM_DATA": str(directory / "batch")}))
    alone = embedded_services(load({"STOCKSTREAM_DATA": str(directory / "alone")}))
    try:
        use_services(batched)
        results = batch(commands).body["results"]
        use_services(alone)
        answers = [sent_alone(command) for command in commands]
    finally:
        use_services(None)
        batched.close()
        alone.close()

    assert [(r["index"], r["status"]) for r in results] == [
        (index, a.status) for index, a in enumerate(answers)]
    assert [comparable(r["body"]) for r in results] == [comparable(a.body) for a in answers]


def test_each_command_counts_in_the_command_metric_under_its_route_and_outcome(
        container: Services) -> None:
    batch([{"op": "receive", **STREAM, "quantity": 5, "idempotency_key": "k"},
           {"op": "receive", **STREAM, "quantity": 5, "idempotency_key": "k"},
           *[{"op": "reserve", **STREAM, "order_id": f"o-{n}", "quantity": 2,
              "channel": "web"} for n in range(3)],
           {"op": "release", **STREAM, "order_id": "never"}])

    lines = container.telemetry.openmetrics().splitlines()
    counts = {line.split("{", 1)[1].rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1])
              for line in lines if line.startswith("stockstream_command_duration_count")}
    assert counts == {
        'command="receive_stock",outcome="applied"}': 1,
        'command="receive_stock",outcome="unchanged"}': 1,
        'command="reserve_stock",outcome="applied"}': 2,
        'command="reserve_stock",outcome="rejected"}': 1,
        'command="release_reservation",outcome="rejected"}': 1,
    }


def test_commands_on_one_stream_take_effect_in_request_order(container: Services) -> None:
    commands = [{"op": "receive", **STREAM, "quantity": 5}]
    commands += [{"op": "reserve", **STREAM, "order_id": f"o-{n}", "quantity": 1,
                  "channel": "web"} for n in range(7)]
    commands += [{"op": "receive", **STREAM, "quantity": 1}]

    results = batch(commands).body["results"]

    assert [r["status"] for r in results] == [200] + [201] * 5 + [409] * 2 + [200]
    assert [r["body"].get("version") for r in results if r["status"] < 300] == list(
        range(2, 9))


def test_a_batch_over_many_streams_records_every_command(container: Services) -> None:
    commands = [{"op": "receive", "sku": f"SKU-{n % 40}", "location": "STORE-1",
                 "quantity": 1} for n in range(400)]

    results = batch(commands).body["results"]

    assert {r["status"] for r in results} == {200}
    assert {container.queries.position(f"SKU-{n}", "STORE-1").on_hand
            for n in range(40)} == {10}


def test_if_match_and_idempotency_key_take_the_headers_syntax(container: Services) -> None:
    results = batch([
        {"op": "receive", **STREAM, "quantity": 2, "if_match": '"0"'},
        {"op": "receive", **STREAM, "quantity": 2, "if_match": '"0"'},
        {"op": "receive", **STREAM, "quantity": 2, "if_match": "W/1"},
        {"op": "receive", **STREAM, "quantity": 2, "if_match": "*",
         "idempotency_key": "k"},
    ]).body["results"]

    assert [r["status"] for r in results] == [200, 412, 400, 200]
    assert results[1]["body"]["version"] == 2
    assert results[2]["body"]["type"].endswith("malformed-if-match")
    assert version(container) == 3


def test_more_than_500_commands_is_413_and_records_nothing(container: Services) -> None:
    commands = [{"op": "receive", **STREAM, "quantity": 1}] * 501

    answer = batch(commands)

    assert answer.status == 413
    assert answer.problem_code == "too-many-commands"
    assert version(container) == 0


def test_500_commands_are_taken(container: Services) -> None:
    answer = batch([{"op": "receive", **STREAM, "quantity": 1}] * 500)

    assert answer.status == 200
    assert version(container) == 501


@pytest.mark.parametrize("envelope", [
    {"commands": "receive"},
    {"commands": [{"op": "receive", **STREAM, "quantity": 1}, 7]},
    {"commands": [{"op": "receive", **STREAM, "quantity": 1}, {"op": "teleport", **STREAM}]},
    {"commands": [{"op": "receive", **STREAM, "quantity": 1}, {"op": "receive", "sku": "S"}]},
    {"commands": [{"op": "receive", **STREAM, "quantity": 1}], "atomic": True},
    {},
])
def test_a_malformed_envelope_is_422_and_records_nothing(container: Services,
                                                        envelope: dict[str, Any]) -> None:
    answer = call("submit_batch", "POST", {}, envelope)

    assert answer.status == 422
    assert answer.problem_code == "validation-failed"
    assert version(container) == 0


def test_a_batch_that_is_not_json_is_refused_and_records_nothing(container: Services) -> None:
    assert call("submit_batch", "POST", {}, raw=b'{"commands": [').status == 400
    deep = b'{"commands": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert call("submit_batch", "POST", {}, raw=deep).status == 400
    text = call("submit_batch", "POST", {}, raw=b"commands",
                headers={"Content-Type": "text/plain"})
    assert text.status == 415
    assert version(container) == 0


# ------------------------------------------------------- the body limit, per route


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    with serve(tmp_path_factory.mktemp("batch")) as running:
        yield running


def test_the_batch_route_takes_a_body_over_64_kib_that_a_single_route_refuses(
        host: LocalHost) -> None:
    padding = "x" * 190
    commands = [{"op": "receive", "sku": "SKU-BIG", "location": "STORE-1", "quantity": 1,
                 "reference": padding} for _ in range(400)]  # about 100 KiB
    body = json.dumps({"commands": commands})
    assert 64 * 1024 < len(body) < 1024 * 1024

    answer = host.call("POST", "/api/stock/batch", json_body={"commands": commands})
    single = host.call("POST", "/api/stock/SKU-BIG/STORE-1/receipts",
                       json_body={"quantity": 1, "reference": "y" * 70_000})

    assert answer.status == 200, answer
    assert {r["status"] for r in answer.json()["results"]} == {200}
    assert single.status == 413


def test_the_batch_route_refuses_a_body_over_1_mib(host: LocalHost) -> None:
    commands = [{"op": "receive", "sku": "SKU-HUGE", "location": "STORE-1", "quantity": 1,
                 "reference": "x" * 190}] * 500
    commands[0] = {**commands[0], "note": "y" * (1024 * 1024)}

    answer = host.call("POST", "/api/stock/batch", json_body={"commands": commands})

    assert answer.status == 413
    assert answer.problem_code == "payload-too-large"
    assert host.call("GET", "/api/stock/SKU-HUGE/STORE-1").json()["version"] == 0


# ------------------------------------------------------- on Azure (Cosmos DB)


@pytest.mark.usefixtures("azure")
def test_on_azure_a_batch_runs_each_streams_commands_in_order() -> None:
    """Cosmos DB writes one stream per transactional batch: the batch's commands run
    stream by stream, each stream's in request order, with the same answers."""
    commands = [{"op": "receive", **STREAM, "quantity": 3},
                {"op": "receive", "sku": "SKU-2", "location": "STORE-1", "quantity": 1}]
    commands += [{"op": "reserve", **STREAM, "order_id": f"o-{n}", "quantity": 1,
                  "channel": "web"} for n in range(4)]
    commands += [{"op": "release", **STREAM, "order_id": "o-0"},
                 {"op": "reserve", "sku": "SKU-2", "location": "STORE-1", "order_id": "o-9",
                  "quantity": 2, "channel": "web"}]

    results = batch(commands).body["results"]

    assert [r["status"] for r in results] == [200, 200, 201, 201, 201, 409, 200, 409]
    assert [r["body"].get("version") for r in results if r["status"] < 300] == [
        2, 2, 3, 4, 5, 6]
    assert version(get_services()) == 6
