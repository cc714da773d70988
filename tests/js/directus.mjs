// The real Directus SDK (`@directus/sdk`, `realtime()`) against walcast's /websocket, one
// scenario per run, driven by crates/walcast/tests/e2e_directus.rs. Prints one JSON line per
// thing the SDK reports ({"kind": ...}); the Rust side writes to Postgres in between.
//
//   node directus.mjs SCENARIO HTTP_URL TOKEN [ARGS...]
//
// Node 20 has no global WebSocket: the `ws` package goes in through the SDK's `globals`, with
// one message event per task as browsers dispatch them. By default `ws` emits every message of
// one TCP read in the same tick, and the SDK's subscription iterator, which listens for one
// message at a time, would miss all but the first of a burst.
import { createDirectus, graphql, realtime, staticToken } from '@directus/sdk';
import WS from 'ws';

class WebSocket extends WS {
  constructor(address, protocols, options) {
    super(address, protocols, { allowSynchronousEvents: false, ...options });
  }
}

// `strict:SCENARIO` runs SCENARIO with the SDK's authMode 'strict' (the token in the URL).
const [named, url, token, ...args] = process.argv.slice(2);
const strict = named.startsWith('strict:');
const scenario = strict ? named.slice('strict:'.length) : named;
const out = (kind, rest = {}) => console.log(JSON.stringify({ kind, ...rest }));
const fail = (e) => {
  out('error', { error: e instanceof Error ? e.message : e });
  process.exit(1);
};

/// Raw frames of the socket the SDK opened (connect() resolves with it), as they arrive.
function rawFrames(ws, each) {
  ws.addEventListener('message', (ev) => {
    try {
      each(JSON.parse(ev.data));
    } catch {
      each({ unparsed: String(ev.data) });
    }
  });
}

function client(options = {}, tok = token) {
  let c = createDirectus(url, { globals: { WebSocket } });
  if (tok) c = c.with(staticToken(tok));
  const mode = strict ? { authMode: 'strict' } : {};
  return c.with(graphql()).with(realtime({ reconnect: false, ...mode, ...options }));
}

/// Prints every message of a subscription, tagged with `tag`, and the error the SDK throws
/// for a refused subscription.
async function print(subscription, tag) {
  try {
    for await (const message of subscription) out('message', { tag, message });
    out('ended', { tag });
  } catch (e) {
    out('subscribe_error', { tag, error: e instanceof Error ? e.message : e });
  }
}

const scenarios = {
  // The seed's code as written, with a static token.
  async seed() {
    const client = createDirectus(url, { globals: { WebSocket } })
      .with(staticToken(token))
      .with(graphql())
      .with(realtime());
    await client.connect();
    out('connected');
    const { subscription } = await client.subscribe(
      `subscription { articles_mutated { key event data { id title } } }`,
    );
    out('subscribed');
    for await (const message of subscription) out('message', { message });
  },

  // subscribe(collection, {event, query}) with init, then changes; ARGS: the options as JSON,
  // repeated for more subscriptions on the same socket.
  async collection() {
    const c = client();
    await c.connect();
    out('connected');
    for (const [i, json] of args.entries()) {
      const options = JSON.parse(json);
      const { subscription } = await c.subscribe('articles', { uid: `s${i}`, ...options });
      print(subscription, `s${i}`).catch(fail);
    }
  },

  // Two subscriptions; the first is unsubscribed after its init. Reports the server's
  // confirmation, and anything the first still gets after it.
  async unsubscribe() {
    const c = client();
    const ws = await c.connect();
    let confirmed = false;
    rawFrames(ws, (m) => {
      if (m.type === 'subscription' && m.event === 'unsubscribe') {
        confirmed = true;
        out('unsubscribed', { message: m });
      } else if (confirmed && m.uid === 'gone') {
        out('after_unsubscribe', { message: m });
      }
    });
    const gone = await c.subscribe('articles', { uid: 'gone', query: { fields: ['id', 'title'] } });
    const stays = await c.subscribe('articles', { uid: 'stays', query: { fields: ['id', 'title'] } });
    // The SDK's iterator only sees messages that arrive while it is being iterated: both are
    // iterated from now on.
    print(stays.subscription, 'stays').catch(fail);
    for await (const m of gone.subscription) {
      out('message', { tag: 'gone', message: m });
      if (m.event === 'init') {
        gone.unsubscribe();
        break;
      }
    }
  },

  // connect() with the token given; reports how the SDK refuses it.
  async refused() {
    const c = client(args[0] ? { authMode: args[0] } : {});
    try {
      await c.connect();
      out('connected');
      const { subscription } = await c.subscribe('articles', { uid: 'x' });
      for await (const m of subscription) out('message', { message: m });
    } catch (e) {
      // A rejected handshake is a string; a refused upgrade the socket's ErrorEvent.
      out('refused', { error: typeof e === 'string' ? e : e?.message ?? String(e) });
    }
    process.exit(0);
  },

  // Connects with TOKEN, which expires soon; the SDK's token is then changed to ARGS[0], which
  // it sends when walcast reports TOKEN_EXPIRED. The subscription carries on.
  async refresh() {
    const c = client();
    const ws = await c.connect();
    rawFrames(ws, (m) => {
      if (m.type === 'auth') out('auth', { message: m });
    });
    await c.setToken(args[0]);
    const { subscription } = await c.subscribe('articles', {
      uid: 'r',
      query: { fields: ['id', 'title'] },
    });
    print(subscription, 'r').catch(fail);
  },

  // Re-authenticates on the open socket with ARGS[0] by sending an auth message itself.
  async reauth() {
    const c = client();
    const ws = await c.connect();
    rawFrames(ws, (m) => {
      if (m.type === 'auth') out('auth', { message: m });
    });
    const { subscription } = await c.subscribe('articles', {
      uid: 'r',
      query: { fields: ['id', 'title'] },
    });
    let first = true;
    for await (const m of subscription) {
      out('message', { tag: 'r', message: m });
      if (first) {
        first = false;
        c.sendMessage({ type: 'auth', access_token: args[0] });
      }
    }
  },

  // One client with the SDK's heartbeat (it answers pings), one without; and a ping of ours.
  async heartbeat() {
    const answering = client();
    const ws = await answering.connect();
    let pings = 0;
    rawFrames(ws, (m) => {
      if (m.type === 'ping') {
        pings += 1;
        if (pings === 3) out('pinged', { pings, open: ws.readyState === WebSocket.OPEN });
      }
    });
    answering.onWebSocket('message', (m) => {
      if (m.type === 'pong') out('pong', { message: m });
    });
    answering.sendMessage({ type: 'ping' });
    const silent = client({ heartbeat: false });
    const sws = await silent.connect();
    let silentPings = 0;
    rawFrames(sws, (m) => {
      if (m.type === 'ping') silentPings += 1;
    });
    sws.addEventListener('close', (ev) => {
      out('silent_closed', { code: ev.code, reason: ev.reason, pings: silentPings, answering_open: ws.readyState === WebSocket.OPEN });
    });
  },

  // items: read, create, update, delete as Directus answers them; ARGS: the messages as JSON,
  // sent one after the other (each after the answer to the one before).
  async items() {
    const c = client();
    await c.connect();
    const waiting = new Map();
    c.onWebSocket('message', (m) => {
      if (m.type === 'items' && waiting.has(m.uid)) {
        waiting.get(m.uid)(m);
        waiting.delete(m.uid);
      }
    });
    for (const [i, json] of args.entries()) {
      const uid = `i${i}`;
      const answer = await new Promise((resolve) => {
        waiting.set(uid, resolve);
        c.sendMessage({ ...JSON.parse(json), type: 'items', uid });
      });
      out('answer', { message: answer });
    }
    process.exit(0);
  },
};

const run = scenarios[scenario];
if (!run) fail(`unknown scenario ${scenario}`);
run().catch(fail);
