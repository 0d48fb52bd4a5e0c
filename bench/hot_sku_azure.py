"""A hot SKU-location on Azure: K Functions instances writing one stream in Cosmos DB.

Each writer is a process of its own with the Azure composition root's services
(``composition.azure``: its own `CosmosClient`, its own cache of the stream), as a Functions
instance is; ``THREADS`` threads in it stand for the invocations it runs at once. All of
them reserve one unit each on the same SKU-location, against the Cosmos DB test server
(``@vercel/cosmosdb-server``, started here; ``adapters.cosmos.local_server``). K = 1, 4
and 16 writers, each run with coalescing off and on (``STOCKSTREAM_COSMOS_COALESCE``),
alternating.

What is measured is what the test server can show honestly: the operations each
writer performed (``adapters.cosmos.persistence.RequestTally``: queries and the KB they
returned, batches and their operations, failed batches, snapshot upserts), priced at
Microsoft's documented cost of each (:data:`PRICES`), per acknowledged reservation, and
the conflict retries (failed batches: each is a 409 followed by a re-read and a retry)
per acknowledged reservation. Not its timings (it answers ``Connection: close``, so every
request is a new TLS handshake, and it runs on the same two cores), and not its
``x-ms-request-charge`` headers (always 1). Its batches are not atomic (eventsourcing-notes
§7.12), but an append of contiguous versions conflicts on its first create, so a lost
race writes nothing there either; the run checks that the stream holds exactly the
acknowledged reservations.

Rows: per K, conflict retries per reservation and RU per reservation, coalesced (value)
vs not (baseline); the ratio is coalesced / not (lower is better). Skipped, with a
message, when node or the test server is not available. Run alone with
``python -m bench.hot_sku_azure [--quick]``; ``--writer JSON`` is one writer process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench.common import Row

LOCATION = "STORE-1"
STOCK_ON_HAND = 1_000_000
THREADS = 8
"""Concurrent invocations per Functions instance (Flex Consumption runs 16 HTTP
invocations per instance by default; 8 keeps 16 writers within two cores)."""
WRITERS = (1, 4, 16)

PRICES = {
    # MS-Docs `understand-request-unit-consumption` (azure-facts §4): a write of an item
    # of 1 KB ≈ 4.95 RU, 2 KB ≈ 6.29 RU, 16 KB ≈ 9.52 RU; a point read of 1 KB = 1 RU.
    # Every event and memo document is under 1 KB (docs/cosmos.md, sizes), so each
    # create in a batch is a 1 KB write; a batch is charged the sum of its operations.
    "write_1kb": 4.95,
    "write_2kb": 6.29,
    "write_16kb": 9.52,
    "read_1kb": 1.0,
    # Assumptions, not documented figures (docs/cosmos.md, "How the rows are derived"):
    # a query costs a point read of the whole KB it returns plus a fixed overhead, and a
    # batch refused by a 409 on its first create is charged about one write.
    "query_overhead": 1.5,
    "failed_batch": 4.95,
}


def request_units(tally: dict[str, float]) -> float:
    """The request units of the operations in ``tally`` (a ``RequestTally.snapshot``
    difference), at :data:`PRICES`."""
    upserts = tally["upserts"]
    upsert_each = tally["upsert_kilobytes"] / upserts if upserts else 0.0
    upsert_price = PRICES["write_1kb"] if upsert_each <= 1 else (
        PRICES["write_2kb"] + max(0.0, upsert_each - 2)
        * (PRICES["write_16kb"] - PRICES["write_2kb"]) / 14)
    return (tally["batch_operations"] * PRICES["write_1kb"]
            + tally["failed_batches"] * PRICES["failed_batch"]
            + tally["query_read_units"] * PRICES["read_1kb"]
            + tally["queries"] * PRICES["query_overhead"]
            + upserts * upsert_price)


# ------------------------------------------------------------------- one writer


def writer(spec: dict[str, Any]) -> None:
    """One Functions instance: warm its cache, say ``ready``, wait for ``go`` on stdin,
    make ``spec["commands"]`` reservations from ``THREADS`` threads, print what it did."""
    from adapters.cosmos.persistence import CosmosDatastore
    from application.ports import ConcurrencyConflict, StoreUnavailable
    from application.settings import load
    from composition.azure import azure_services

    warnings.simplefilter("ignore")  # the test server's self-signed certificate, each request
    services = azure_services(load({
        "STOCKSTREAM_EVENT_STORE": "cosmos",
        "COSMOS__accountEndpoint": spec["endpoint"],
        "COSMOS_KEY": spec["key"],
        "COSMOS_DATABASE": spec["database"],
        "STOCKSTREAM_COSMOS_COALESCE": spec["coalesce"],
    }))
    sku, index, count = spec["sku"], spec["index"], spec["commands"]
    services.store.get(sku, LOCATION)  # a warm instance: the stream is in its cache
    datastore: CosmosDatastore = services.store.factory.datastore  # type: ignore[attr-defined]
    print("ready", flush=True)
    sys.stdin.readline()
    before = datastore.tally.snapshot()
    outcomes = {"acknowledged": 0, "gave_up": 0}
    lock = threading.Lock()

    def lane(start: int) -> None:
        for n in range(start, count, THREADS):
            try:
                changed = services.commands.reserve(sku, LOCATION, f"W{index}-{n}", 1,
                                                    "web").changed
                outcome = "acknowledged" if changed else "gave_up"
            except (ConcurrencyConflict, StoreUnavailable):  # HTTP 503, Retry-After
                outcome = "gave_up"
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=lane, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = datastore.tally.snapshot()
    print(json.dumps({**outcomes, "tally": {k: after[k] - before[k] for k in after}}),
          flush=True)
    services.close()


# ------------------------------------------------------------------- one round


@dataclass
class Round:
    """K writers on one fresh stream, coalescing on or off: what they did in all."""

    writers: int
    coalesce: str
    acknowledged: int
    gave_up: int
    tally: dict[str, float]

    @property
    def retries_per_reservation(self) -> float:
        return self.tally["failed_batches"] / max(1, self.acknowledged)

    @property
    def ru_per_reservation(self) -> float:
        return request_units(self.tally) / max(1, self.acknowledged)


def run_round(server: Any, database: str, writers: int, coalesce: str,
              per_writer: int) -> Round:
    """Seed a fresh stream, start ``writers`` writer processes, let them go together,
    and check the stream holds exactly the reservations they acknowledged."""
    from application.settings import load
    from composition.azure import azure_services
    from domain.stock_item import StockItem

    sku = f"HOT-{uuid4().hex[:8]}"
    spec = {"endpoint": server.endpoint, "key": server.key, "database": database,
            "sku": sku, "coalesce": coalesce, "commands": per_writer}
    seed = azure_services(load({"STOCKSTREAM_EVENT_STORE": "cosmos",
                                "COSMOS__accountEndpoint": server.endpoint,
                                "COSMOS_KEY": server.key, "COSMOS_DATABASE": database}))
    try:
        seed.commands.receive(sku, LOCATION, STOCK_ON_HAND)
        processes = [subprocess.Popen(
            [sys.executable, "-m", "bench.hot_sku_azure", "--writer",
             json.dumps({**spec, "index": index})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent) for index in range(writers)]
        try:
            for process in processes:
                assert process.stdout is not None
                if process.stdout.readline().strip() != b"ready":
                    raise RuntimeError("a writer did not start")
            for process in processes:
                assert process.stdin is not None
                process.stdin.write(b"go\n")
                process.stdin.flush()
            reports = [json.loads(process.communicate(timeout=600)[0].splitlines()[-1])
                       for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        acknowledged = sum(r["acknowledged"] for r in reports)
        reserved = [e for e in seed.store.events(sku, LOCATION)
                    if isinstance(e, StockItem.Reserved)]
        if len(reserved) != acknowledged or len({e.order_id for e in reserved}) != acknowledged:
            raise RuntimeError(f"the stream holds {len(reserved)} reservations, "
                               f"{acknowledged} were acknowledged")
    finally:
        seed.close()
    tally = {k: sum(r["tally"][k] for r in reports) for k in reports[0]["tally"]}
    return Round(writers, coalesce, acknowledged, sum(r["gave_up"] for r in reports), tally)


def _merge(rounds: list[Round]) -> Round:
    first = rounds[0]
    return Round(first.writers, first.coalesce, sum(r.acknowledged for r in rounds),
                 sum(r.gave_up for r in rounds),
                 {k: sum(r.tally[k] for r in rounds) for k in first.tally})


def run(quick: bool = False) -> list[Row]:
    from adapters.cosmos.local_server import (
        CosmosServerError,
        fresh_database,
        start_cosmos_server,
    )

    try:
        server = start_cosmos_server()
    except (CosmosServerError, OSError) as error:
        print(f"skipping bench.hot_sku_azure: the Cosmos DB test server is not available "
              f"({error}); `make node` installs it (needs node and npm)", file=sys.stderr)
        return []
    warnings.simplefilter("ignore")  # the test server's self-signed certificate
    per_writer, rounds = (4, 1) if quick else (8, 2)
    rows: list[Row] = []
    try:
        database = fresh_database(server, "hot").database
        for writers in WRITERS:
            measured: dict[str, list[Round]] = {"off": [], "on": []}
            for n in range(rounds):  # alternating which goes first
                for coalesce in (("off", "on") if n % 2 == 0 else ("on", "off")):
                    measured[coalesce].append(
                        run_round(server, database, writers, coalesce, per_writer))
            off, on = _merge(measured["off"]), _merge(measured["on"])
            note = (f"{writers} writer processes x {THREADS} threads, {per_writer} "
                    f"reservations each, {rounds} round(s); coalesced: {on.acknowledged} "
                    f"acknowledged, {on.gave_up} gave up (503), "
                    f"{on.tally['batches']:.0f} batches; not: {off.acknowledged} "
                    f"acknowledged, {off.gave_up} gave up (503), "
                    f"{off.tally['batches']:.0f} batches")
            rows += [
                Row(f"hot SKU on Azure, K={writers}: conflict retries per reservation",
                    "retries", on.retries_per_reservation, off.retries_per_reservation,
                    "< 1 (coalesced/not)", note),
                Row(f"hot SKU on Azure, K={writers}: RU per reservation", "RU",
                    on.ru_per_reservation, off.ru_per_reservation, "< 1 (coalesced/not)",
                    note),
                Row(f"hot SKU on Azure, K={writers}: gave up (503) per 1000", "503s",
                    1000 * on.gave_up / max(1, on.acknowledged + on.gave_up),
                    1000 * off.gave_up / max(1, off.acknowledged + off.gave_up), "", note),
            ]
    finally:
        server.stop()
    return rows


def main(argv: list[str]) -> int:
    if argv[:1] == ["--writer"]:
        writer(json.loads(argv[1]))
        return 0
    for row in run(quick="--quick" in argv):
        against = (f" vs {row.baseline:,.2f} not coalesced (ratio {row.ratio:.2f})"
                   if row.baseline is not None and row.ratio is not None
                   else f" vs {row.baseline}")
        print(f"{row.scenario}: {row.value:,.2f} {row.unit}{against}")
        print(f"    {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

