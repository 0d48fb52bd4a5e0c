"""Schemathesis against the running embedded host (subprocess, pipeline on, real sockets):
requests generated from the committed ``openapi.json`` (OpenAPI 3.1), both valid ones
(positive) and ones that break the schema (negative), for every operation.

Zero 5xx; every 4xx is a problem document; every operation of the document is called
(``tests/http/test_route_table.py`` holds the document to every route the host serves, so
that is every route). ``STOCKSTREAM_FAULT_REQUESTS`` requests at least (2,000 in
``make faults``; fewer in ``make test``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.e2e.conftest import RunningHost, start_host
from tests.events import only

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.json"
TARGET = int(os.environ.get("STOCKSTREAM_FAULT_REQUESTS", "400"))
MAX_ROUNDS = 20


@pytest.fixture(scope="module")
def fuzzed_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    running = start_host(tmp_path_factory.mktemp("schemathesis"))
    yield running
    assert running.stop() == 0, running.log()


def test_schemathesis_finds_no_server_error(fuzzed_host: RunningHost, reliability: Any) -> None:
    schema = schemathesis.openapi.from_path(str(DOCUMENT))
    operations = [result.ok() for result in only(schema.get_all_operations(), Ok)]
    assert len(operations) >= 12
    statuses: Counter[int] = Counter()
    by_operation: dict[str, Counter[int]] = {op.label: Counter() for op in operations}
    failures: list[str] = []
    session = requests.Session()
    per_operation = max(10, TARGET // (2 * len(operations)))

    def exercise(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=fuzzed_host.url, session=session, timeout=30)
        statuses[response.status_code] += 1
        by_operation[case.operation.label][response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {case.as_curl_command()}\n"
                            f"{response.text[:300]}")
        elif response.status_code >= 400 and case.method.upper() != "HEAD":
            content_type = (response.headers.get("content-type") or [""])[0]
            if not content_type.startswith("application/problem+json"):
                failures.append(f"{response.status_code} without a problem document: "
                                f"{case.as_curl_command()}")

    for _ in range(MAX_ROUNDS):
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=per_operation, deadline=None, database=None,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                def run(case: schemathesis.Case[Any]) -> None:
                    exercise(case)

                try:
                    run()
                except Unsatisfiable:  # nothing to break (e.g. no parameters, no body)
                    assert mode is GenerationMode.NEGATIVE, operation.label
        if statuses.total() >= TARGET:
            break
    session.close()
    print("schemathesis statuses:", sorted(statuses.items()))
    for label, counted in by_operation.items():
        print(f"  {label}: {sorted(counted.items())}")
    reliability.record("schemathesis from openapi.json", requests=statuses.total(),
                       server_errors=sum(n for code, n in statuses.items() if code >= 500),
                       failures=len(failures))

    assert not failures, f"{len(failures)} failures, e.g.:\n" + "\n".join(failures[:3])
    assert statuses.total() >= TARGET, statuses
    assert all(by_operation.values()), [label for label, n in by_operation.items() if not n]
    assert any(200 <= status < 300 for status in statuses), statuses
    assert any(400 <= status < 500 for status in statuses), statuses
    assert "Traceback" not in fuzzed_host.log()
