"""The process-store contract on Cosmos DB (the real ``azure-cosmos`` SDK against the test
server), plus the document layout only Cosmos DB has: the wake-up as a companion
document in the stream's partition, written by the batch of the events.

The test server's batch ``upsert`` is fixed for the tests by
``adapters/cosmos/local_server_patches.js`` (the server mis-parses a batch operation's partition
key); real Cosmos DB needs no such thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import uuid4

import pytest
from azure.cosmos import CosmosClient

from adapters.cosmos.local_server import CosmosServer, closed_port
from adapters.cosmos.process_streams import WAKE_UP_ID, CosmosProcessStore
from tests.contract.process_store_contract import FAR_PAST, ProcessStoreContract

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="module")
def process_database(cosmos_server: CosmosServer) -> Iterator[str]:
    name = f"processes-{uuid4().hex[:8]}"
    store = CosmosProcessStore(cosmos_server.endpoint, name, key=cosmos_server.key,
                               verify_tls=False)
    store.create_containers_if_missing()
    store.close()
    yield name


class TestCosmosProcessStore(ProcessStoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, cosmos_server: CosmosServer, process_database: str) -> None:
        self.server = cosmos_server
        self.database = process_database

    def open_store(self, *, reachable: bool = True) -> CosmosProcessStore:
        if reachable:
            return CosmosProcessStore(self.server.endpoint, self.database,
                                      key=self.server.key, verify_tls=False)
        return CosmosProcessStore(f"https://127.0.0.1:{closed_port()}", self.database,
                                  key=self.server.key, verify_tls=False,
                                  connection_timeout=1.0, retry_total=0)

    def test_the_wake_up_is_one_companion_document_beside_the_events(self) -> None:
        store = self.open_store()
        self._opened.append(store)
        process = self.placed("o")
        moment = FAR_PAST + timedelta(days=5)
        self.streams(store).save(process, wake_at=moment)
        self.kind.step(process)
        self.kind.end(process)
        self.streams(store).save(process, wake_at=None)
        partition = str(self.kind.stream_id(self.key("o")))
        client = CosmosClient(self.server.endpoint, credential=self.server.key,
                              connection_verify=False)
        container = client.get_database_client(self.database).get_container_client(
            "processes")

        documents = list(container.query_items(
            "SELECT * FROM c WHERE c.originator_id = @id",
            parameters=[{"name": "@id", "value": partition}], partition_key=partition))

        wake_ups = [d for d in documents if d["id"] == WAKE_UP_ID]
        assert [(d["kind"], d["key"], d["wake_at"]) for d in wake_ups] == [
            (self.kind.name, self.key("o"), None)]
        events = sorted(int(d["originator_version"]) for d in documents
                        if "originator_version" in d)
        assert events == list(range(1, process.version + 1))
