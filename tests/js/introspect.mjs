#!/usr/bin/env node
// What GraphQL tooling (GraphiQL, codegen, IDE plugins) does with a server: sends graphql-js'
// standard introspection query over HTTP POST, builds a client-side schema from the answer and
// validates documents against it. Driven by the Rust end-to-end tests.
//
// Prints one JSON line on stdout and exits 0:
//   {"kind":"schema","status":200,"sdl":"..","validation":[[..errors of document 1..], ..]}
// or {"kind":"error","error":"..","body":..} and exits 1.
//
// Usage:
//   node introspect.mjs --url http://HOST:PORT/graphql [--token T] [--validate DOC ...]

import { parseArgs } from 'node:util';
import { buildClientSchema, getIntrospectionQuery, parse, printSchema, validate } from 'graphql';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    validate: { type: 'string', multiple: true, default: [] },
  },
  strict: true,
});

function done(obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

if (!opts.url) {
  process.stderr.write('introspect.mjs: --url is required\n');
  process.exit(2);
}

let status;
let body;
try {
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(opts.url, {
    method: 'POST',
    headers,
    body: JSON.stringify({ query: getIntrospectionQuery(), operationName: 'IntrospectionQuery' }),
  });
  status = res.status;
  body = await res.json();
  if (!body.data) throw new Error('no data in the introspection answer');
  const schema = buildClientSchema(body.data);
  const validation = opts.validate.map((doc) =>
    validate(schema, parse(doc)).map((e) => e.message),
  );
  done({ kind: 'schema', status, sdl: printSchema(schema), validation }, 0);
} catch (e) {
  done({ kind: 'error', status: status ?? null, error: String(e?.message ?? e), body: body ?? null }, 1);
}
