#!/usr/bin/env node
// Opens walcast's live example page (/examples/live) in a headless Chromium and reports what
// its table shows, as a person would see it. Driven by the Rust end-to-end tests.
//
// Every happening is printed as one JSON line on stdout:
//   {"kind":"loaded","status":"..","state":".."}     page up; the status line and its state
//   {"kind":"rows","state":"..","status":"..","columns":[..],"rows":[{"key":"1","text":".."}..]}
//                                                    the table changed (first: as loaded)
//   {"kind":"error","error":".."}                    anything that went wrong (then exit 1)
// Browser console messages, page errors and failed requests go to stderr.
//
// Usage:
//   node live.mjs --url http://HOST:PORT/examples/live?access_token=T [--duration MS]
//        [--timeout MS] [--screenshot FILE.png] [--chromium PATH]
//
// --duration MS  watch this long, then exit 0 (default 120000; the tests kill it sooner)
// --timeout MS   how long the page may take to load (default 30000)
// --chromium     the browser binary (default /usr/bin/chromium: Debian's `chromium` package)
// --screenshot   a PNG of the page, rewritten after every change, for a person to look at

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    duration: { type: 'string', default: '120000' },
    timeout: { type: 'string', default: '30000' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
  strict: true,
});

let exiting = false;
function emit(obj) {
  if (exiting) return;
  process.stdout.write(JSON.stringify(obj) + '\n');
}
function exitAfterFlush(code) {
  exiting = true;
  process.stdout.write('', () => process.exit(code));
}

if (!opts.url) {
  process.stderr.write('live.mjs: --url is required\n');
  process.exit(2);
}
const timeout = Number(opts.timeout);
if (!existsSync(opts.chromium)) {
  emit({
    kind: 'error',
    error: `${opts.chromium} is missing: install Chromium (Debian: apt-get install chromium)`,
  });
  exitAfterFlush(1);
  await new Promise(() => {});
}

const { chromium } = await import('playwright-core');

const browser = await chromium.launch({
  executablePath: opts.chromium,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  timeout,
});
let page;

async function finish(code) {
  await browser.close().catch(() => {});
  exitAfterFlush(code);
}
// The Rust side ends a run with SIGTERM or SIGKILL; close the browser on the polite one.
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish(0));

// What the table shows: column names and one object per row (`key` from data-key).
function snapshot() {
  return page.evaluate(() => {
    const statusEl = document.getElementById('status');
    const columns = [...document.querySelectorAll('#rows thead th')].map((th) => th.textContent);
    const rows = [...document.querySelectorAll('#rows tbody tr')].map((tr) => {
      const row = { key: tr.dataset.key };
      for (const td of tr.querySelectorAll('td')) row[td.dataset.field] = td.textContent;
      return row;
    });
    return { state: statusEl?.dataset.state ?? null, status: statusEl?.textContent ?? null, columns, rows };
  });
}

try {
  const context = await browser.newContext();
  page = await context.newPage();
  page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`pageerror: ${e.message}\n`));
  page.on('response', (r) => {
    if (r.status() >= 400) process.stderr.write(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}\n`);
  });
  page.on('requestfailed', (r) =>
    process.stderr.write(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}\n`),
  );
  // Offline: anything the page asks of another origin fails loudly here.
  const origin = new URL(opts.url).origin;
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith(origin.replace(/^http/, 'ws'))) return route.continue();
    process.stderr.write(`blocked (not offline): ${url}\n`);
    return route.abort();
  });

  const resp = await page.goto(opts.url, { waitUntil: 'load', timeout });
  if (!resp || resp.status() !== 200) throw new Error(`GET ${opts.url}: HTTP ${resp?.status()}`);
  await page.waitForFunction(() => typeof graphqlWs === 'object', null, { timeout });
  const first = await snapshot();
  emit({ kind: 'loaded', status: first.status, state: first.state });

  const deadline = Date.now() + Number(opts.duration);
  let last = '';
  while (Date.now() < deadline) {
    const now = await snapshot();
    const text = JSON.stringify(now);
    if (text !== last) {
      last = text;
      emit({ kind: 'rows', ...now });
      if (opts.screenshot) {
        await page.screenshot({ path: opts.screenshot, fullPage: true }).catch((e) => {
          process.stderr.write(`screenshot failed: ${e.message}\n`);
        });
      }
    }
    await page.waitForTimeout(100);
  }
  await finish(0);
} catch (e) {
  emit({ kind: 'error', error: String(e?.message ?? e) });
  await finish(1);
}
