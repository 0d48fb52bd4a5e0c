"""The broker contract against Azure Service Bus or its emulator (opt-in, live).

Runs when ``STOCKSTREAM_LIVE=1`` and either ``SERVICEBUS__fullyQualifiedNamespace``
(Entra ID through ``DefaultAzureCredential``; ``AZURE_CLIENT_ID`` picks a user-assigned
identity) or ``STOCKSTREAM_SERVICEBUS_CONNECTION_STRING`` (the emulator, or a SAS key)
is set. The identity needs Data Owner on the namespace: the tests send, receive and read
runtime properties, and create the contract topology when it is missing.

Topology (``BrokerContract``'s docstring): topic ``contract-events`` with duplicate
detection (10 min); session subscriptions ``alpha``, ``beta`` and ``store-1-receipts``
(max delivery count 3, lock 60 s) with the correlation rules in ``SUBSCRIPTIONS``. It is
created through the administration client if absent and checked if present; the emulator
has no administration endpoint, so declare it in the emulator's ``Config.json`` (see
docs/servicebus.md). Each test starts by draining the subscriptions it may share with
earlier runs. Tests that need to move the broker's clock are skipped.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from application.settings import load

SETTINGS = load()
LIVE = os.environ.get("STOCKSTREAM_LIVE") == "1"
NAMESPACE = SETTINGS.servicebus_namespace or ""
CLIENT_ID = SETTINGS.azure_client_id
# Emulator/SAS only, so not a service setting: the deployed app always uses its identity.
CONNECTION_STRING = os.environ.get("STOCKSTREAM_SERVICEBUS_CONNECTION_STRING", "").strip()

if not LIVE or not (NAMESPACE or CONNECTION_STRING):
    pytest.skip(
        "live Service Bus contract: set STOCKSTREAM_LIVE=1 and SERVICEBUS__fullyQualifiedNamespace "
        "(or STOCKSTREAM_SERVICEBUS_CONNECTION_STRING for the emulator)",
        allow_module_level=True,
    )

from azure.core.exceptions import AzureError, ResourceNotFoundError  # noqa: E402
from azure.servicebus.management import (  # noqa: E402
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
)

from adapters.servicebus import ServiceBusBroker  # noqa: E402
from tests.contract.broker_contract import (  # noqa: E402
    DUPLICATE_WINDOW,
    LOCK_DURATION,
    MAX_DELIVERY_COUNT,
    SUBSCRIPTIONS,
    TOPIC,
    BrokerContract,
)
from tests.servicebus.contract_support import ServiceBusCountsContract, drain  # noqa: E402

pytestmark = pytest.mark.live

DRAIN_WAIT = 2.0


def _open_broker() -> ServiceBusBroker:
    if CONNECTION_STRING:
        return ServiceBusBroker.from_connection_string(CONNECTION_STRING)
    return ServiceBusBroker.from_namespace(NAMESPACE, client_id=CLIENT_ID)


def _admin() -> ServiceBusAdministrationClient:
    if CONNECTION_STRING:
        return ServiceBusAdministrationClient.from_connection_string(CONNECTION_STRING)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=CLIENT_ID)
    return ServiceBusAdministrationClient(NAMESPACE, credential)


def ensure_topology(admin: ServiceBusAdministrationClient) -> None:
    """Create the contract topology where missing; fail on one that differs."""
    try:
        topic = admin.get_topic(TOPIC)
    except ResourceNotFoundError:
        topic = admin.create_topic(
            TOPIC,
            requires_duplicate_detection=True,
            duplicate_detection_history_time_window=DUPLICATE_WINDOW,
        )
    assert topic.requires_duplicate_detection, f"{TOPIC} needs duplicate detection"
    window = topic.duplicate_detection_history_time_window
    assert isinstance(window, timedelta) and window >= DUPLICATE_WINDOW, (
        f"{TOPIC}: duplicate window")
    for name, rules in SUBSCRIPTIONS.items():
        try:
            sub = admin.get_subscription(TOPIC, name)
        except ResourceNotFoundError:
            sub = admin.create_subscription(
                TOPIC,
                name,
                requires_session=True,
                max_delivery_count=MAX_DELIVERY_COUNT,
                lock_duration=LOCK_DURATION,
            )
            admin.delete_rule(TOPIC, name, "$Default")
            for index, rule in enumerate(rules):
                admin.create_rule(
                    TOPIC, name, f"rule-{index}", filter=CorrelationRuleFilter(properties={**rule})
                )
        assert sub.requires_session, f"{name} must be session-enabled"
        assert sub.max_delivery_count == MAX_DELIVERY_COUNT, f"{name}: max delivery count"
        assert sub.lock_duration == LOCK_DURATION, f"{name}: lock duration"


class TestServiceBusBroker(ServiceBusCountsContract, BrokerContract):
    controllable_clock = False
    settle_wait = 3.0
    arrival_wait = 15.0
    _prepared: set[Path] = set()  # noqa: RUF012 - per-run memo of drained test dirs
    _topology_checked = False

    def make_broker(self, tmp_path: Path) -> ServiceBusBroker:
        cls = type(self)
        if not cls._topology_checked:
            admin = _admin()
            try:
                ensure_topology(admin)
            except AzureError as error:
                # The emulator has no administration endpoint: trust its Config.json.
                if not CONNECTION_STRING:
                    raise
                print(f"topology not checked ({error}); relying on the emulator's config")
            finally:
                admin.close()
            cls._topology_checked = True
        broker = _open_broker()
        if tmp_path not in cls._prepared:
            # A first open starts from empty subscriptions; a reopen (same tmp_path) must
            # find what the test left, so it is not drained.
            drain(broker, DRAIN_WAIT)
            cls._prepared.add(tmp_path)
        return broker

