"""Create the Cosmos DB database and containers for local set-up: ``python -m adapters.cosmos``.

Reads the same settings as the service (``COSMOS__accountEndpoint``, ``COSMOS_KEY``,
``COSMOS_DATABASE``). In Azure the containers come from Bicep; this is for an emulator or
the ``@vercel/cosmosdb-server`` test server, which start empty.
"""

from __future__ import annotations

import sys

from adapters.cosmos import open_cosmos_stock_items
from application.settings import load


def main() -> int:
    settings = load()
    if not settings.cosmos_endpoint:
        print("set COSMOS__accountEndpoint (and COSMOS_KEY for an emulator)", file=sys.stderr)
        return 2
    store = open_cosmos_stock_items(settings)
    try:
        store.create_containers_if_missing()
    finally:
        store.close()
    print(f"containers ready in {settings.cosmos_database} at {settings.cosmos_endpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
