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


MIXED = [
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


def sent_alone(command: dict[str, Any]) -> Answer:
    """What the single route answers to ``command`` sent on its own."""
    fields = dict(command)
    op = fields.pop("op")
    params = {"sku": fields.pop("sku"), "location": fields.pop("location")}
    if "order_id" in fields:
        params["order_id"] = fields.pop("order_id")
    headers = {}
    if "idempotency_key" in fields:
        headers["Idempotency-Key"] = fields.pop("idempotency_key")
    name, method = SINGLE[op]
    return call(name, method, params, fields or None, headers=headers)


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
