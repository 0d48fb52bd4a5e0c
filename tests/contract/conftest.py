"""Fixtures shared by the contract suites: the Cosmos DB test server, once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cosmos_server import CosmosServer, start_cosmos_server


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosServer]:
    """``@vercel/cosmosdb-server`` on a free port over HTTPS; ``.endpoint`` and ``.key``.

    Started once per test session and killed at its end. Tests isolate themselves by
    database name (or by stream), since the server starts empty and is shared.
    """
    server = start_cosmos_server()
    try:
        yield server
    finally:
        server.stop()
