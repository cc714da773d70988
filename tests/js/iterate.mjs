#!/usr/bin/env node
// The graphql-ws client's async-iterator API, as the Directus guide uses it:
//   for await (const result of createClient({...}).iterate({ query })) { ... }
// Driven by the Rust end-to-end tests.
//
// Every happening is printed as one JSON line on stdout:
//   {"kind":"connected"}                  connection acknowledged
//   {"kind":"next","payload":{data,errors}}  one result from the iterator
//   {"kind":"complete"}                   the iterator finished (server completed)
//   {"kind":"error","error":..}           the iterator threw
//   {"kind":"closed","code":N,"reason":".."}
//
// Usage:
//   node iterate.mjs --url ws://HOST:PORT/graphql [--token T] --query Q [--variables JSON]
//        [--op-name N] [--count N]
//
// --count N   leave the loop after N results (the client then sends `complete` and the
//             script exits 0); otherwise run until the server completes or the test kills it.

import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    query: { type: 'string' },
    variables: { type: 'string' },
    'op-name': { type: 'string' },
    count: { type: 'string' },
  },
  strict: true,
});

if (!opts.url || opts.query === undefined) {
  process.stderr.write('iterate.mjs: --url and --query are required\n');
  process.exit(2);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function errorJson(err) {
  if (Array.isArray(err)) return err;
  if (err instanceof Error) return { message: err.message };
  if (err && typeof err === 'object' && 'code' in err) {
    return { code: err.code, reason: String(err.reason ?? '') };
  }
  return err;
}

const count = opts.count === undefined ? Infinity : Number(opts.count);
const client = createClient({
  url: opts.url,
  webSocketImpl: WebSocket,
  connectionParams: opts.token === undefined ? {} : { access_token: opts.token },
  retryAttempts: 0,
  on: {
    connected: () => emit({ kind: 'connected' }),
    closed: (event) => emit({ kind: 'closed', code: event?.code, reason: String(event?.reason ?? '') }),
  },
});

const subscription = client.iterate({
  query: opts.query,
  variables: opts.variables === undefined ? undefined : JSON.parse(opts.variables),
  operationName: opts['op-name'],
});

let code = 0;
let seen = 0;
try {
  for await (const result of subscription) {
    emit({ kind: 'next', payload: result });
    seen += 1;
    if (seen >= count) break; // calls subscription.return(): the client sends `complete`
  }
  if (seen < count) emit({ kind: 'complete' });
} catch (err) {
  emit({ kind: 'error', error: errorJson(err) });
  code = 1;
}
await client.dispose();
process.stdout.write('', () => process.exit(code));
