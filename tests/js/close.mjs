#!/usr/bin/env node
// Close handshakes as the `ws` and `graphql-ws` libraries see them.
//
//   node close.mjs --url URL --protocol SUB --mode close|invalid-utf8|binary|idle [--token T]
//   node close.mjs --url URL --mode lazy-retry --token T --bad QUERY --good QUERY
//
// close, invalid-utf8, binary, idle (ws library, sub-protocol SUB): connect, send the protocol's
// init with the token and wait for its ack, then
//   close         close with 1000 and report what the library says the close was;
//   invalid-utf8  send a text frame that is not UTF-8;
//   binary        send a binary frame;
//   idle          answer nothing, not even pings (the library's automatic pong is turned off).
// Printed: {"kind":"acked"}, then {"kind":"closed","code":N,"reason":"..","pings":N}.
//
// lazy-retry (graphql-ws client with its default lazy mode): subscribes with --bad (refused with
// a GraphQL error), then with --good on the same client. Printed: {"kind":"error","error":..}
// for the first, {"kind":"subscribed"} once the second is sent, {"kind":"next","payload":..}
// for each of its results, and {"kind":"closed",..} if the client sees the socket close.

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', default: 'graphql-transport-ws' },
    mode: { type: 'string' },
    token: { type: 'string' },
    bad: { type: 'string' },
    good: { type: 'string' },
  },
  strict: true,
});

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(message) {
  process.stderr.write(`close.mjs: ${message}\n`);
  process.exit(2);
}

if (!opts.url) fail('--url is required');

if (opts.mode === 'lazy-retry') {
  const client = createClient({
    url: opts.url,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    connectionParams: () => (opts.token ? { access_token: opts.token } : {}),
    on: { closed: (e) => emit({ kind: 'closed', code: e?.code, reason: e?.reason }) },
  });
  await new Promise((resolve) => {
    client.subscribe({ query: opts.bad }, {
      next: (payload) => emit({ kind: 'next', payload }),
      error: (error) => {
        emit({ kind: 'error', error: Array.isArray(error) ? error : String(error?.message ?? error) });
        resolve();
      },
      complete: resolve,
    });
  });
  client.subscribe({ query: opts.good }, {
    next: (payload) => emit({ kind: 'next', payload }),
    error: (error) => emit({ kind: 'failed', error: Array.isArray(error) ? error : String(error?.code ?? error?.message ?? error) }),
    complete: () => emit({ kind: 'complete' }),
  });
  emit({ kind: 'subscribed' });
} else {
  const idle = opts.mode === 'idle';
  const ws = new WebSocket(opts.url, opts.protocol, { autoPong: !idle });
  let pings = 0;
  ws.on('ping', () => {
    pings += 1;
  });
  ws.on('unexpected-response', (_req, res) => {
    emit({ kind: 'unexpected-response', status: res.statusCode });
    process.exit(0);
  });
  ws.on('error', (e) => emit({ kind: 'error', error: String(e.message) }));
  ws.on('close', (code, reason) => {
    emit({ kind: 'closed', code, reason: reason.toString(), pings });
    process.stdout.write('', () => process.exit(0));
  });
  ws.on('open', () => {
    const payload = opts.token ? { access_token: opts.token } : {};
    const type = opts.protocol === 'graphql-subscriptions' ? 'init' : 'connection_init';
    ws.send(JSON.stringify({ type, payload }));
  });
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (msg.type !== 'connection_ack' && msg.type !== 'init_success') return;
    emit({ kind: 'acked' });
    switch (opts.mode) {
      case 'close':
        ws.close(1000, 'bye');
        break;
      case 'invalid-utf8':
        ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
        break;
      case 'binary':
        ws.send(Buffer.from([1, 2, 3]), { binary: true });
        break;
      case 'idle':
        break;
      default:
        fail(`unknown --mode ${opts.mode}`);
    }
  });
}
