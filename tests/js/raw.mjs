#!/usr/bin/env node
// Raw WebSocket frames, for protocol and close-code checks that a well-behaved client library
// would never produce.
//
//   node raw.mjs --url ws://HOST:PORT/graphql [--protocol graphql-transport-ws] [--send TEXT]...
//                [--delay MS] [--timeout MS]
//
// Each --send is sent verbatim as a text frame once the socket is open (in order, --delay MS
// apart), then every line read from stdin is sent the same way. Printed, one JSON line each:
//   {"kind":"open","protocol":".."}                 handshake done, negotiated sub-protocol
//   {"kind":"frame","text":"..","json":..}          a received text frame (json null if not JSON)
//   {"kind":"binary","base64":".."}                 a received binary frame
//   {"kind":"unexpected-response","status":N}       the upgrade was refused with HTTP status N
//   {"kind":"error","error":".."}                   socket error
//   {"kind":"closed","code":N,"reason":".."}        then the process exits 0
// --timeout MS exits 3 if the socket is still open after MS.

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', multiple: true },
    send: { type: 'string', multiple: true, default: [] },
    delay: { type: 'string', default: '0' },
    timeout: { type: 'string' },
  },
  strict: true,
});

if (!opts.url) {
  process.stderr.write('raw.mjs: --url is required\n');
  process.exit(2);
}

const delayMs = Number(opts.delay);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function exitAfterFlush(code) {
  process.stdout.write('', () => process.exit(code));
}

const ws = new WebSocket(opts.url, opts.protocol ?? []);

ws.on('unexpected-response', (_req, res) => {
  emit({ kind: 'unexpected-response', status: res.statusCode });
  exitAfterFlush(0);
});

ws.on('open', async () => {
  emit({ kind: 'open', protocol: ws.protocol });
  for (const [i, text] of opts.send.entries()) {
    if (i > 0 && delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(text);
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(line);
  });
});

ws.on('message', (data, isBinary) => {
  if (isBinary) {
    emit({ kind: 'binary', base64: Buffer.from(data).toString('base64') });
    return;
  }
  const text = data.toString();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: reported with json null.
  }
  emit({ kind: 'frame', text, json });
});

ws.on('error', (err) => emit({ kind: 'error', error: String(err?.message ?? err) }));

ws.on('close', (code, reason) => {
  emit({ kind: 'closed', code, reason: reason.toString() });
  exitAfterFlush(0);
});

if (opts.timeout !== undefined) {
  setTimeout(() => {
    emit({ kind: 'timeout' });
    exitAfterFlush(3);
  }, Number(opts.timeout));
}
