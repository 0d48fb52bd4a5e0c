"""The Cosmos DB test server's starter lives in ``adapters.cosmos.local_server`` (the
benchmarks start it too, and may not import from tests/); this name is kept for tests
written against it."""

from adapters.cosmos.local_server import (
    CosmosServer,
    CosmosServerError,
    closed_port,
    start_cosmos_server,
)

__all__ = ["CosmosServer", "CosmosServerError", "closed_port", "start_cosmos_server"]
