"""``asyncapi.yaml`` parses with the real AsyncAPI parser and matches ``WIRE_TYPES``.

The parser (``@asyncapi/parser`` from npm, installed by ``make node``) runs in a small
Node script that prints its diagnostics as JSON lines; errors fail the test, warnings are
printed (``pytest -s`` or ``-rA`` shows them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from contracts.processes import PUBLISHED_WIRE_TYPES as WIRE_TYPES
from contracts.registry import ASYNCAPI_FILE, asyncapi_document, message_key

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "schemas" / "parse_asyncapi.cjs"


def parse(document: Path) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is required for the AsyncAPI check"
    assert (ROOT / "node_modules" / "@asyncapi" / "parser").is_dir(), "run `make node` first"
    done = subprocess.run([node, str(SCRIPT), str(document)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    diagnostics = [d for d in lines if not d.get("summary")]
    summaries = [d for d in lines if d.get("summary")]
    assert summaries, done.stdout + done.stderr
    return done.returncode, diagnostics, summaries[0]


@pytest.fixture(scope="module")
def parsed() -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    return parse(ROOT / ASYNCAPI_FILE)


def test_the_asyncapi_document_parses_without_errors(parsed: Any) -> None:
    code, diagnostics, summary = parsed
    for d in diagnostics:
        if d["severity"] != "error":
            print(f"AsyncAPI {d['severity']}: {d['code']} at {d['path']}: {d['message']}")

    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert errors == []
    assert code == 0
    assert summary["parsed"] is True


def test_it_has_one_message_per_wire_type_in_every_operation(parsed: Any) -> None:
    _, _, summary = parsed

    assert sorted(m["name"] for m in summary["messages"]) == sorted(w.type for w in WIRE_TYPES)
    keys = sorted(message_key(w) for w in WIRE_TYPES)
    operations = {o["id"]: o for o in summary["operations"]}
    assert set(operations) == {"publishInventoryEvent", "replayDeadLetteredEvent"}
    for operation in operations.values():
        assert operation["action"] == "send"
        assert sorted(operation["messages"]) == keys


def test_payloads_resolve_to_the_registry_schemas(parsed: Any) -> None:
    _, _, summary = parsed
    by_name = {m["name"]: m for m in summary["messages"]}

    for wire in WIRE_TYPES:
        envelope, specific = by_name[wire.type]["payload"]["schema"]["allOf"]
        assert envelope["$id"] == "urn:stockstream:schemas:CloudEvent:v1"
        assert specific["properties"]["type"]["const"] == wire.type
        assert specific["properties"]["data"]["$id"] == wire.schema_uri
        assert set(wire.model.model_fields) <= set(specific["properties"]["data"]["properties"])


def test_it_documents_the_filterable_properties_and_the_replay_semantics() -> None:
    doc = asyncapi_document()
    headers = doc["components"]["schemas"]["ApplicationProperties"]
    channel = doc["channels"]["inventoryEvents"]

    assert set(headers["required"]) == {"type", "sku", "location", "sequence", "replayTarget"}
    process_headers = doc["components"]["schemas"]["ProcessApplicationProperties"]
    assert set(process_headers["required"]) == {"type", "process", "processId", "sequence",
                                                "replayTarget"}
    assert channel["x-servicebus"]["processMessageId"] == "{process}:{processId}:{sequence}"
    assert channel["x-servicebus"]["processSessionId"] == "{process}:{processId}"
    assert channel["address"] == "inventory-events"
    assert channel["x-servicebus"]["messageId"] == "{sku}|{location}:{sequence}"
    assert channel["x-servicebus"]["sessionId"] == "{sku}|{location}"
    rules = channel["x-servicebus"]["exampleSubscription"]["rules"]
    assert any("replayTarget = 'all'" in r["sqlExpression"] for r in rules)
    assert any("replayTarget = 'web-shop'" in r["sqlExpression"] for r in rules)
    assert "<id>:replay:<n>" in doc["operations"]["replayDeadLetteredEvent"]["description"]


def test_stock_messages_keep_their_headers_and_process_messages_have_their_own() -> None:
    """Existing subscriptions filter on ``sku`` / ``location`` / stock types: a stock
    message's headers are unchanged, and an order's or a transfer's message's lack
    ``sku`` and ``location`` so no such rule can select it."""
    messages = asyncapi_document()["components"]["messages"]
    for wire in WIRE_TYPES:
        ref = messages[message_key(wire)]["headers"]["$ref"]
        expected = ("ProcessApplicationProperties" if wire.name.startswith(("Order", "Transfer"))
                    else "ApplicationProperties")
        assert ref == f"#/components/schemas/{expected}", wire.type


def test_the_parser_reports_a_broken_reference_as_an_error(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    broken = (ROOT / ASYNCAPI_FILE).read_text().replace(
        "events/StockReceived.v1.json", "events/StockReceived.v9.json")
    (tmp_path / ASYNCAPI_FILE).write_text(broken)

    code, diagnostics, _ = parse(tmp_path / ASYNCAPI_FILE)

    assert code != 0
    assert any(d["severity"] == "error" and "StockReceived.v9.json" in d["message"]
               for d in diagnostics)
