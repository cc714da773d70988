#!/usr/bin/env node
// One GraphQL-over-WebSocket client per protocol, driven by the Rust end-to-end tests.
//
// Every happening is printed as one JSON line on stdout:
//   {"kind":"connected","protocol":".."}              connection acknowledged, with the
//                                                     sub-protocol the server selected
//   {"kind":"next","id":"..","payload":{data,errors}} one execution result
//   {"kind":"error","error":..}                       operation or connection error
//   {"kind":"complete","id":".."}                     operation completed by the server
//   {"kind":"closed","code":N,"reason":".."}          the socket closed
// graphcool adds init_success, init_fail, subscription_success and subscription_fail,
// and prints any other server message as {"kind":"message","message":..}.
//
// Usage:
//   node client.mjs --protocol transport|legacy|graphcool|apollo|apollo-legacy --url ws://HOST:PORT/graphql
//        [--token T] [--keepalive MS] [--no-keepalive] [--query Q] [--variables JSON]
//        [--op-name N] [--count N] [--lazy]
//
// transport      the graphql-ws client, configured as in the Directus guide (keepAlive 30000,
//                async connectionParams returning {access_token}); never retries.
// legacy         subscriptions-transport-ws SubscriptionClient (sub-protocol graphql-ws).
// graphcool      sub-protocol graphql-subscriptions spoken by hand over `ws`.
// apollo         @apollo/client 3 with GraphQLWsLink (graphql-ws underneath).
// apollo-legacy  @apollo/client 3 with WebSocketLink (subscriptions-transport-ws underneath).
//
// --lazy         transport: graphql-ws' own default (connect on the first subscribe);
//                without it the socket opens at once, so `connected` shows even without --query.
//                legacy: SubscriptionClient's `lazy` option.
// --keepalive MS transport: ping interval (default 30000); legacy: how long the client tolerates
//                silence after the first `ka` (library default 30000).
// --no-keepalive transport: keepAlive 0, the graphql-ws default (no pings at all).
// --count N      exit 0 after N `next` lines; otherwise run until killed.

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values: opts } = parseArgs({
  options: {
    protocol: { type: 'string', default: 'transport' },
    url: { type: 'string' },
    token: { type: 'string' },
    keepalive: { type: 'string' },
    'no-keepalive': { type: 'boolean', default: false },
    query: { type: 'string' },
    variables: { type: 'string' },
    'op-name': { type: 'string' },
    count: { type: 'string' },
    lazy: { type: 'boolean', default: false },
  },
  strict: true,
});

function fail(message) {
  process.stderr.write(`client.mjs: ${message}\n`);
  process.exit(2);
}

if (!opts.url) fail('--url is required');

let variables;
if (opts.variables !== undefined) {
  try {
    variables = JSON.parse(opts.variables);
  } catch (e) {
    fail(`--variables is not JSON: ${e.message}`);
  }
}

function intOption(name, value) {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} needs a non-negative integer, got ${value}`);
  return n;
}

const count = intOption('count', opts.count);
const keepAliveOpt = intOption('keepalive', opts.keepalive);
const operationName = opts['op-name'];
const connectionParams = opts.token === undefined ? {} : { access_token: opts.token };

// Close events, Error objects and GraphQL error lists all become plain JSON. Plain objects are
// copied as they are, so a row with columns `code` and `reason` is not taken for a close event.
function toJson(value) {
  if (Array.isArray(value)) return value.map(toJson);
  if (value && typeof value === 'object') {
    const plain = Object.getPrototypeOf(value) === Object.prototype;
    if (!plain && 'code' in value && 'reason' in value && !(value instanceof Error)) {
      return { code: value.code, reason: String(value.reason ?? ''), wasClean: value.wasClean };
    }
    if (value instanceof Error) {
      const out = { message: value.message };
      if (value.name && value.name !== 'Error') out.name = value.name;
      if (value.graphQLErrors?.length) out.graphQLErrors = toJson(value.graphQLErrors);
      if (value.networkError) out.networkError = toJson(value.networkError);
      if (value.errors) out.errors = toJson(value.errors);
      if (value.code !== undefined) out.code = value.code;
      return out;
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
    // DOM-style events (ws' ErrorEvent) keep their fields in prototype getters.
    if (typeof value.type === 'string' && 'target' in value) {
      out.type = value.type;
      if (value.message !== undefined) out.message = String(value.message);
      if (value.error !== undefined) out.error = toJson(value.error);
    }
    return out;
  }
  return value;
}

let nexts = 0;
let exiting = false;

function emit(obj) {
  if (exiting) return;
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Exits only once stdout has been handed to the OS, so the test reads every line.
function exitAfterFlush(code) {
  exiting = true;
  process.stdout.write('', () => process.exit(code));
}

function emitNext(id, payload) {
  // Execution results are JSON already; written verbatim.
  emit({ kind: 'next', id: id == null ? null : String(id), payload });
  nexts += 1;
  if (count !== undefined && nexts >= count) exitAfterFlush(0);
}

function emitClosed(code, reason) {
  emit({ kind: 'closed', code, reason: String(reason ?? '') });
}

// A `ws` WebSocket that reports its own close, for libraries that hide the close code.
class ReportingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('close', (code, reason) => emitClosed(code, reason));
  }
}

// Without --query the client only connects: useful for handshake and keep-alive checks.
const hasQuery = opts.query !== undefined;

async function runTransport() {
  const { createClient } = await import('graphql-ws');
  // The sink never sees its operation id, so the client's id generator records it.
  let operationId = null;
  const client = createClient({
    url: opts.url,
    webSocketImpl: WebSocket,
    keepAlive: opts['no-keepalive'] ? 0 : (keepAliveOpt ?? 30000),
    connectionParams: async () => connectionParams,
    lazy: opts.lazy,
    retryAttempts: 0,
    // With lazy: false graphql-ws logs connection failures itself; `closed` already reports them.
    onNonLazyError: () => {},
    generateID: () => {
      operationId = randomUUID();
      return operationId;
    },
    on: {
      connected: (socket) => emit({ kind: 'connected', protocol: socket.protocol }),
      closed: (event) => emitClosed(event?.code, event?.reason),
    },
  });
  if (!hasQuery) return;
  client.subscribe(
    { query: opts.query, variables, operationName },
    {
      next: (result) => emitNext(operationId, result),
      error: (err) => emit({ kind: 'error', id: operationId, error: toJson(err) }),
      complete: () => emit({ kind: 'complete', id: operationId }),
    },
  );
}

async function runLegacy() {
  const { SubscriptionClient } = await import('subscriptions-transport-ws');
  const options = {
    reconnect: false,
    lazy: opts.lazy,
    connectionParams,
    // Called with the payload of `connection_error`, and with nothing on `connection_ack`.
    connectionCallback: (error) => {
      if (error) emit({ kind: 'error', error: toJson(error) });
    },
  };
  if (keepAliveOpt !== undefined) options.timeout = keepAliveOpt;
  const client = new SubscriptionClient(opts.url, options, ReportingWebSocket);
  // `client.client` is the library's WebSocket.
  client.onConnected(() => emit({ kind: 'connected', protocol: client.client?.protocol }));
  client.onError((err) => emit({ kind: 'error', error: toJson(err) }));
  if (!hasQuery) return;
  const observable = client.request({ query: opts.query, variables, operationName });
  let id;
  observable.subscribe({
    next: (result) => emitNext(id, result),
    error: (err) => emit({ kind: 'error', id: id ?? null, error: toJson(err) }),
    complete: () => emit({ kind: 'complete', id: id ?? null }),
  });
  // Operation ids are "1", "2", ... and this is the only operation.
  id = String(client.nextOperationId);
}

function runGraphcool() {
  const ws = new WebSocket(opts.url, 'graphql-subscriptions');
  const subscriptionId = '1';
  ws.on('open', () => {
    ws.send(JSON.stringify({ type: 'init', payload: connectionParams }));
  });
  ws.on('message', (raw) => {
    let msg;
    try {
      msg = JSON.parse(raw.toString());
    } catch {
      emit({ kind: 'message', text: raw.toString() });
      return;
    }
    switch (msg.type) {
      case 'init_success':
        emit({ kind: 'init_success', payload: msg.payload ?? null });
        emit({ kind: 'connected', protocol: ws.protocol });
        if (hasQuery) {
          const start = { id: subscriptionId, type: 'subscription_start', query: opts.query };
          if (variables !== undefined) start.variables = variables;
          if (operationName !== undefined) start.operationName = operationName;
          ws.send(JSON.stringify(start));
        }
        break;
      case 'init_fail':
        emit({ kind: 'init_fail', payload: msg.payload ?? null });
        break;
      case 'subscription_success':
        emit({ kind: 'subscription_success', id: msg.id ?? null });
        break;
      case 'subscription_fail':
        emit({ kind: 'subscription_fail', id: msg.id ?? null, payload: msg.payload ?? null });
        break;
      case 'subscription_data':
        emitNext(msg.id, msg.payload);
        break;
      case 'subscription_end':
        emit({ kind: 'complete', id: msg.id ?? null });
        break;
      default:
        emit({ kind: 'message', message: msg });
    }
  });
  ws.on('error', (err) => emit({ kind: 'error', error: toJson(err) }));
  ws.on('close', (code, reason) => emitClosed(code, reason));
}

async function runApollo(legacy) {
  const { ApolloClient, InMemoryCache, gql } = await import('@apollo/client/core/index.js');
  let link;
  if (legacy) {
    const { WebSocketLink } = await import('@apollo/client/link/ws/index.js');
    const { SubscriptionClient } = await import('subscriptions-transport-ws');
    const sc = new SubscriptionClient(
      opts.url,
      { reconnect: false, lazy: opts.lazy, connectionParams },
      ReportingWebSocket,
    );
    sc.onConnected(() => emit({ kind: 'connected', protocol: sc.client?.protocol }));
    link = new WebSocketLink(sc);
  } else {
    // GraphQLWsLink tells a close from an error through the global WebSocket, absent in Node 20.
    globalThis.WebSocket ??= WebSocket;
    const { GraphQLWsLink } = await import('@apollo/client/link/subscriptions/index.js');
    const { createClient } = await import('graphql-ws');
    link = new GraphQLWsLink(
      createClient({
        url: opts.url,
        webSocketImpl: WebSocket,
        keepAlive: opts['no-keepalive'] ? 0 : (keepAliveOpt ?? 30000),
        connectionParams: async () => connectionParams,
        lazy: opts.lazy,
        retryAttempts: 0,
        onNonLazyError: () => {},
        on: {
          connected: (socket) => emit({ kind: 'connected', protocol: socket.protocol }),
          closed: (event) => emitClosed(event?.code, event?.reason),
        },
      }),
    );
  }
  if (!hasQuery) return;
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  let document;
  try {
    document = gql(opts.query);
  } catch (e) {
    emit({ kind: 'error', error: toJson(e) });
    return;
  }
  client.subscribe({ query: document, variables, fetchPolicy: 'no-cache', errorPolicy: 'all' }).subscribe({
    next: (result) => emitNext(null, { data: result.data ?? null, errors: result.errors }),
    error: (err) => emit({ kind: 'error', error: toJson(err) }),
    complete: () => emit({ kind: 'complete', id: null }),
  });
}

process.on('uncaughtException', (err) => {
  emit({ kind: 'error', error: toJson(err), uncaught: true });
});

switch (opts.protocol) {
  case 'transport':
    await runTransport();
    break;
  case 'legacy':
    await runLegacy();
    break;
  case 'graphcool':
    runGraphcool();
    break;
  case 'apollo':
    await runApollo(false);
    break;
  case 'apollo-legacy':
    await runApollo(true);
    break;
  default:
    fail(`unknown --protocol ${opts.protocol} (transport, legacy, graphcool, apollo, apollo-legacy)`);
}

// The sockets alone keep the process up only while they are open; the tests decide when it ends.
setInterval(() => {}, 1 << 30);
