"""Fixtures: a ``ServiceBusBroker`` over the SDK-shaped fake namespace of ``fakes.py``."""

from __future__ import annotations

import pytest

from adapters.servicebus import ServiceBusBroker
from contracts.topology import AVAILABILITY_SUBSCRIPTION, TOPIC
from tests.servicebus.fakes import FakeAdministrationClient, FakeServiceBusClient

DOWNSTREAM = "replenishment"


@pytest.fixture
def client() -> FakeServiceBusClient:
    return FakeServiceBusClient({TOPIC: [AVAILABILITY_SUBSCRIPTION, DOWNSTREAM]})


@pytest.fixture
def admins(client: FakeServiceBusClient) -> list[FakeAdministrationClient]:
    return []


@pytest.fixture
def broker(client: FakeServiceBusClient, admins: list[FakeAdministrationClient]):
    def admin() -> FakeAdministrationClient:
        made = FakeAdministrationClient(client)
        admins.append(made)
        return made

    broker = ServiceBusBroker(client, admin)  # type: ignore[arg-type]
    yield broker
    broker.close()
