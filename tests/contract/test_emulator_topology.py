"""The Service Bus emulator's topology file matches what the suites and the app expect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.topology import AVAILABILITY_SUBSCRIPTION, MAX_DELIVERY_COUNT, TOPIC, replay_rules
from tests.contract.broker_contract import SUBSCRIPTIONS
from tests.contract.broker_contract import TOPIC as CONTRACT_TOPIC

CONFIG = Path(__file__).resolve().parents[2] / "emulators" / "servicebus-config.json"


def _topics() -> dict[str, dict[str, Any]]:
    (namespace,) = json.loads(CONFIG.read_text())["UserConfig"]["Namespaces"]
    return {topic["Name"]: topic for topic in namespace["Topics"]}


def _rules(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"]["CorrelationFilter"]["Properties"]
            for r in subscription["Rules"]]


def test_the_emulator_declares_the_app_topology() -> None:
    topic = _topics()[TOPIC]
    assert topic["Properties"]["RequiresDuplicateDetection"] is True
    (availability,) = topic["Subscriptions"]
    assert availability["Name"] == AVAILABILITY_SUBSCRIPTION
    assert availability["Properties"]["RequiresSession"] is False  # as in bicep/
    assert availability["Properties"]["MaxDeliveryCount"] == MAX_DELIVERY_COUNT
    assert _rules(availability) == replay_rules(AVAILABILITY_SUBSCRIPTION)


def test_the_emulator_declares_the_broker_contract_topology() -> None:
    declared = _topics()[CONTRACT_TOPIC]["Subscriptions"]
    subscriptions = {s["Name"]: s for s in declared}
    assert {name: _rules(s) for name, s in subscriptions.items()} == SUBSCRIPTIONS
