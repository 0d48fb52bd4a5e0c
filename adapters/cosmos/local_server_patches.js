// Preloaded into @vercel/cosmosdb-server by adapters/cosmos/local_server.py
// (NODE_OPTIONS=--require): fixes of the test server for tests and benchmarks, never
// loaded by a host (and left out of the function app package, .funcignore).
//
// A batch `upsert` / `replace` / `delete` / `read` fails there on partition-key parsing:
// the server parses a per-operation `partitionKey` that the azure-cosmos SDK never sends
// (a batch is scoped to one partition by its x-ms-documentdb-partitionkey header, as in
// real Cosmos DB). This fills each operation's partition key in from the batch's header,
// which is what Cosmos DB means by a batch. The process store upserts a stream's wake-up
// document in the batch of its events (adapters/cosmos/process_streams.py).
"use strict";
const { AsyncLocalStorage } = require("async_hooks");
const operations = require("@vercel/cosmosdb-server/lib/handler/_document-operations");
const batch = require("@vercel/cosmosdb-server/lib/handler/batch-documents");

const header = new AsyncLocalStorage();
const original = batch.default;
batch.default = (account, req, res, params) => {
  const value = req.headers["x-ms-documentdb-partitionkey"];
  return header.run(Array.isArray(value) ? value[0] : value, () =>
    original(account, req, res, params));
};
for (const name of ["upsertOperation", "replaceOperation", "deleteOperation", "readOperation"]) {
  const operation = operations[name];
  operations[name] = (collection, input) =>
    operation(collection, input && input.partitionKey === undefined
      ? { ...input, partitionKey: header.getStore() }
      : input);
}
