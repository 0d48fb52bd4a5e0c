// Parse an AsyncAPI document with the real @asyncapi/parser and print what it found.
// Usage: node tests/schemas/parse_asyncapi.cjs <file>   (run from the repository root)
// Prints one JSON object per diagnostic ({severity, code, message, path}), then one
// summary object {summary: true, parsed, messages: [{id, name}], operations: [...]}.
// Exit code: 0 when the document parsed without errors, 1 otherwise.
'use strict';
const fs = require('fs');
const path = require('path');
const { Parser } = require(path.resolve('node_modules/@asyncapi/parser'));

const SEVERITIES = ['error', 'warning', 'information', 'hint'];

(async () => {
  const file = path.resolve(process.argv[2]);
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'), {
    source: file, // resolves the $refs to schemas/ relative to the document
  });
  let errors = 0;
  for (const d of diagnostics) {
    const severity = SEVERITIES[d.severity] || String(d.severity);
    if (severity === 'error') errors += 1;
    console.log(JSON.stringify({ severity, code: d.code, message: d.message, path: d.path.join('.') }));
  }
  const summary = { summary: true, parsed: Boolean(document), messages: [], operations: [] };
  if (document) {
    for (const m of document.allMessages()) {
      const payload = m.payload() ? m.payload().json() : null;
      summary.messages.push({ id: m.id(), name: m.name(), payload });
    }
    for (const o of document.allOperations()) {
      summary.operations.push({ id: o.id(), action: o.action(), messages: o.messages().all().map((m) => m.id()) });
    }
  }
  console.log(JSON.stringify(summary));
  // exitCode, not exit(): exit() cuts a piped stdout off at 64 KiB, mid-summary.
  process.exitCode = errors === 0 && document ? 0 : 1;
})().catch((err) => {
  console.log(JSON.stringify({ severity: 'error', code: 'crash', message: String(err && err.stack || err), path: '' }));
  process.exitCode = 1;
});
