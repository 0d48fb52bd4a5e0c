"""The broker contract against ``ServiceBusBroker`` over the SDK-shaped fake namespace.

Not a substitute for the live run (``tests/contract/test_servicebus_broker_live.py``):
the namespace's behaviour here is the fake's. What it does prove offline is that the
adapter's side — conversion of real SDK messages, delivery-count normalisation,
settlement through the held SDK objects, giving back held messages on close, the
dead-letter receiver, validation before sending — meets the same contract as the
embedded broker. Clock-driven tests are skipped as they are live.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.servicebus import ServiceBusBroker
from tests.contract.broker_contract import MAX_DELIVERY_COUNT, SUBSCRIPTIONS, TOPIC, BrokerContract
from tests.servicebus.contract_support import ServiceBusCountsContract
from tests.servicebus.fakes import FakeAdministrationClient, FakeServiceBusClient, Topic


class TestServiceBusBrokerOnFakes(ServiceBusCountsContract, BrokerContract):
    controllable_clock = False
    settle_wait = 0.0
    arrival_wait = 1.0

    @pytest.fixture(autouse=True)
    def _namespaces(self) -> None:
        self.namespaces: dict[Path, Topic] = {}

    def make_broker(self, tmp_path: Path) -> ServiceBusBroker:
        # The same tmp_path is the same namespace: closing and reopening keeps its state.
        topic = self.namespaces.setdefault(
            tmp_path, Topic(TOPIC, SUBSCRIPTIONS, max_delivery_count=MAX_DELIVERY_COUNT)
        )
        client = FakeServiceBusClient({TOPIC: topic})
        return ServiceBusBroker(client, lambda: FakeAdministrationClient(client))  # type: ignore[arg-type, return-value]
