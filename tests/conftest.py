"""Fixtures shared by every suite: the Cosmos DB test server, once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import Phase, settings

from adapters.cosmos.local_server import CosmosServer, start_cosmos_server

# `make mutation` runs the suites once per mutant: fewer examples, the same ones every
# time, and no example database carried from one mutant to the next, so a score does not
# drift, and a failing example is not shrunk. (Tests that need a number of examples of
# their own set it explicitly.)
settings.register_profile("mutation", derandomize=True, database=None, max_examples=25,
                          phases=[Phase.explicit, Phase.generate])  # a failure kills: no shrinking
if os.environ.get("STOCKSTREAM_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["STOCKSTREAM_HYPOTHESIS_PROFILE"])


@dataclass
class LiveCosmos:
    """A real account or the official emulator, named by the environment (opt-in)."""

    endpoint: str
    key: str | None

    def stop(self) -> None:
        """Nothing to stop: it is not ours."""


def live_cosmos() -> LiveCosmos | None:
    """With ``STOCKSTREAM_LIVE=1`` and ``COSMOS__accountEndpoint``, the suites run there."""
    endpoint = os.environ.get("COSMOS__accountEndpoint")  # noqa: SIM112 - Azure's own name
    if os.environ.get("STOCKSTREAM_LIVE") == "1" and endpoint:
        return LiveCosmos(endpoint, os.environ.get("COSMOS_KEY") or None)
    return None


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosServer | LiveCosmos]:
    """``@vercel/cosmosdb-server`` on a free port over HTTPS; ``.endpoint`` and ``.key``.

    Started once per test session and killed at its end. Tests isolate themselves by
    database name (or by stream), since the server starts empty and is shared. With
    ``STOCKSTREAM_LIVE=1`` and ``COSMOS__accountEndpoint`` set, the same suites run
    against that account (real Azure, or the official emulator) instead.
    """
    server: CosmosServer | LiveCosmos = live_cosmos() or start_cosmos_server()
    try:
        yield server
    finally:
        server.stop()
