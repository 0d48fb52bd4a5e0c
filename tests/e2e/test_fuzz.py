"""Property-based fuzzing of the running API, driven by the committed OpenAPI document.

For every documented operation, hypothesis generates requests: valid bodies from the
request schema (``from_schema`` below), valid bodies with one member of the wrong type
or out of range (floats, strings, booleans, huge numbers, null, lists), arbitrary JSON,
malformed bytes, wrong content types, oversized bodies, unknown routes and wrong methods.
Every answer must be below 500; every 4xx must be a problem document; every 2xx must
match its documented schema; and a rejected request must leave the event store as it
was (its last position unchanged).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.identifiers import IDENTIFIER_PATTERN
from tests.e2e.conftest import RunningHost

DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "openapi.json").read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATIONS = [
    (path, method.upper(), operation)
    for path, item in sorted(DOCUMENT["paths"].items())
    for method, operation in sorted(item.items())
]
EXAMPLES = 600
MINIMUM_REQUESTS = 500

IDENTIFIERS = {
    "sku": ["SKU-1", "SKU-2"],
    "location": ["STORE-1"],
    "order_id": ["o-1", "o-2", "o-3"],
    "group": ["EAST", "WEST"],
    "subscription": ["availability", "missing"],
    "hold_id": ["C-1", "count-0123456789abcdef0123"],
    "chart": ["drift-history.png", "drift-missing-distribution.png"],
    "reference": ["PO-1", "PO-2"],
    "transfer_id": ["t-1", "t-2"],
}
printable = st.characters(min_codepoint=32, max_codepoint=126)
invalid_identifier = st.one_of(
    st.text(min_size=0, max_size=80),
    st.text(printable, min_size=65, max_size=80),
    st.sampled_from(["a b", "é", "..%2F", "x" * 65, "%", "'; drop table--"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
wrong_values = st.one_of(
    st.floats(), st.text(max_size=12), st.booleans(), st.none(),
    st.integers(min_value=2**31, max_value=10**40), st.integers(min_value=-(10**40),
                                                                max_value=-1),
    st.lists(st.integers(), max_size=2), st.just({}),
)
OVERSIZED = [
    json.dumps({"quantity": 1, "reference": "x" * 70_000}).encode(),
    b"[" + b"1," * 40_000 + b"1]",
]


def schema(name: str) -> dict[str, Any]:
    return {**SCHEMAS[name], "components": DOCUMENT["components"]}


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the JSON Schema subset our request models use (objects of bounded
    integers, booleans, patterned or enumerated strings, date-times, nullable members, and
    short arrays of such objects)."""
    if "$ref" in node:  # a nested model (an order's lines)
        return from_schema(SCHEMAS[node["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in node:
        return st.one_of([from_schema(option) for option in node["anyOf"]])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = node.get("minItems", 0)
        return st.lists(from_schema(node.get("items", {})), min_size=low,
                        max_size=max(low, min(node.get("maxItems", 3), 3)))
    if kind == "integer":  # mostly small, so commands succeed too; sometimes the bounds
        low, high = node.get("minimum"), node.get("maximum")
        small = st.integers(low if low is not None else -3, min(high or 5, (low or 0) + 5))
        return st.one_of(small, small, st.integers(low, high))
    if kind == "string" and node.get("format") == "date-time":
        return st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    if kind == "string" and "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True)
    if kind == "string":
        return st.text(min_size=node.get("minLength", 0), max_size=node.get("maxLength", 50))
    if kind == "object":
        properties = node.get("properties", {})
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in properties.items() if k in required},
            optional={k: from_schema(v) for k, v in properties.items() if k not in required},
        )
    raise AssertionError(f"no strategy for {node}")


def body_strategy(operation: dict[str, Any]) -> st.SearchStrategy[tuple[str | None, bytes]]:
    """(content type, body) pairs, valid and not."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.one_of(st.just((None, b"")), st.just(("application/json", b"{}")),
                         st.binary(max_size=32).map(lambda b: ("application/json", b)))
    model = schema(content["schema"]["$ref"].rsplit("/", 1)[-1])
    valid = from_schema({k: v for k, v in model.items() if k != "components"})
    members = sorted(model["properties"])
    mutated = st.tuples(valid, st.sampled_from(members), wrong_values).map(
        lambda t: {**t[0], t[1]: t[2]})

    def as_json(value: Any) -> tuple[str | None, bytes]:
        return "application/json", json.dumps(value).encode()

    return st.one_of(
        valid.map(as_json),
        valid.map(as_json),
        mutated.map(as_json),
        json_values.map(as_json),
        valid.map(lambda v: ("application/json", json.dumps(v).encode()[:-1])),
        st.binary(max_size=64).map(lambda b: ("application/json", b)),
        st.tuples(st.sampled_from(["text/plain", "application/xml", "", "multipart/form-data",
                                   "application/x-www-form-urlencoded"]), valid).map(
            lambda t: (t[0], json.dumps(t[1]).encode())),
        st.sampled_from(OVERSIZED).map(lambda b: ("application/json", b)),
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], dict[str, str], bytes]:
    """(method, url path, headers, query, body) of one generated request."""
    if draw(st.integers(0, 19)) == 0:  # an unknown route
        segments = draw(st.lists(st.text(printable, min_size=1, max_size=10), max_size=4))
        return "GET", "/api/" + "/".join(quote(s, safe="") for s in segments), {}, {}, b""
    path, method, operation = draw(st.sampled_from(OPERATIONS))
    for parameter in operation["parameters"]:
        if parameter["in"] == "path":
            name = parameter["name"]
            known = st.sampled_from(IDENTIFIERS[name])
            if name == "order_id":  # new orders too, so reservations get created (201)
                known = known | st.from_regex(IDENTIFIER_PATTERN, fullmatch=True)
            value = draw(known if draw(st.integers(0, 9)) else invalid_identifier)
            path = path.replace("{" + name + "}", quote(value, safe=""))
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    names = {p["name"] for p in operation["parameters"]}
    if "Idempotency-Key" in names and draw(st.booleans()):
        headers["Idempotency-Key"] = draw(st.sampled_from(["k-1", "k-2"])
                                          | st.text(printable, max_size=250).map(str.strip))
    if "after" in names and draw(st.booleans()):
        query["after"] = draw(st.integers(-3, 40).map(str) | st.text(printable, max_size=8))
    if "days" in names and draw(st.booleans()):
        query["days"] = draw(st.integers(-3, 120).map(str) | st.text(printable, max_size=8))
    if "location_group" in names and draw(st.booleans()):
        query["location_group"] = draw(st.sampled_from(IDENTIFIERS["group"])
                                       | invalid_identifier)
    if "limit" in names and draw(st.booleans()):
        query["limit"] = draw(st.integers(-3, 2000).map(str) | st.text(printable, max_size=8))
    content_type, body = draw(body_strategy(operation))
    if content_type is not None:
        headers["Content-Type"] = content_type
    if draw(st.integers(0, 19)) == 0:  # a wrong method on a real path
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    return method, path, headers, query, body


def check_answer(method: str, path: str, operation_path: str | None,
                 answer: httpx.Response) -> None:
    assert answer.status_code < 500, (method, path, answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/problem+json"), \
            (method, path, answer.headers)
        problem = answer.json()
        assert problem["status"] == answer.status_code
        assert str(problem["type"]).startswith("urn:stockstream:problems:")
        assert problem["title"] and problem["detail"]
    elif answer.status_code in (200, 201):
        documented = _documented_schema(method, path, answer.status_code)
        if documented is not None:
            jsonschema.validate(answer.json(), {**documented,
                                                "components": DOCUMENT["components"]})


def _documented_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    segments = path.split("?")[0].strip("/").split("/")
    for template, item in DOCUMENT["paths"].items():
        parts = template.strip("/").split("/")
        if len(parts) == len(segments) and all(
                p.startswith("{") or p == s for p, s in zip(parts, segments, strict=True)):
            response = item.get(method.lower(), {}).get("responses", {}).get(str(status), {})
            found = response.get("content", {}).get("application/json", {}).get("schema")
            if found is not None:
                return dict(found)
    return None


def test_fuzzing_from_the_openapi_document_never_5xx_and_rejections_change_nothing(
        host: RunningHost):
    store = host.store()
    sent: list[int] = []
    with host.client() as c:
        for sku in IDENTIFIERS["sku"]:
            assert c.post(f"/api/stock/{sku}/STORE-1/receipts",
                          json={"quantity": 100}).status_code == 200

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(requests())
        def one_request(request: tuple[str, str, dict[str, str], dict[str, str], bytes]):
            method, path, headers, query, body = request
            before = store.max_position()
            answer = c.request(method, path, headers=headers, params=query, content=body)
            sent.append(answer.status_code)
            check_answer(method, path, None, answer)
            if answer.status_code >= 400:
                after = store.max_position()
                new = store.read_after(before, 100) if after != before else []
                # Only the expiry sweep of the pipeline may write meanwhile.
                assert all(type(r.event).__name__ == "Released" and
                           getattr(r.event, "reason", "") == "expired" for r in new), \
                    (method, path, answer.status_code, [type(r.event) for r in new])

        one_request()
    store.close()
    assert len(sent) >= MINIMUM_REQUESTS
    statuses = set(sent)
    print("fuzzed statuses:", sorted(Counter(sent).items()))
    # The generator reaches both sides: accepted commands and each kind of refusal.
    assert 200 in statuses, statuses
    assert {400, 404, 413, 415, 422} <= statuses, statuses
