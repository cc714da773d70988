#!/usr/bin/env node
// Drives walcast's GraphiQL page in a headless Chromium, as a person would: opens the page,
// types an operation into the query editor (or keeps the one the page opens on), presses the
// run button and watches the response pane. Driven by the Rust end-to-end tests.
//
// Every happening is printed as one JSON line on stdout:
//   {"kind":"loaded","introspection":{..},"editor":"..","docs":".."}  page up, schema fetched;
//                                                  the editor's text and the docs pane's text
//   {"kind":"ready"}                               the run button was pressed
//   {"kind":"result","text":".."}                  the response pane holds every --expect text
//   {"kind":"error","error":"..","response":".."}  anything that went wrong (then exit 1)
// Browser console messages and page errors go to stderr.
//
// Usage:
//   node graphiql.mjs --url http://HOST:PORT/graphql?access_token=T [--query Q] --expect TEXT
//        [--expect TEXT ...] [--timeout MS] [--screenshot FILE.png] [--chromium PATH]
//
// --query Q      typed into the editor; without it the page's own document runs
// --timeout MS   how long to wait for the page, and then for the expected text (default 30000)
// --chromium     the browser binary (default /usr/bin/chromium: Debian's `chromium` package)
// --screenshot   a PNG of the page when the script ends, for a person to look at

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    query: { type: 'string' },
    expect: { type: 'string', multiple: true, default: [] },
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
  process.stderr.write('graphiql.mjs: --url is required\n');
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
let introspection = null;

async function responseText() {
  return page
    .evaluate(() => {
      const cm = document.querySelector('.graphiql-response .CodeMirror');
      if (cm && cm.CodeMirror) return cm.CodeMirror.getValue();
      const pane = document.querySelector('.graphiql-response');
      return pane ? pane.textContent : '';
    })
    .catch((e) => `(response pane unreadable: ${e.message})`);
}

async function finish(code) {
  if (opts.screenshot && page) {
    await page.screenshot({ path: opts.screenshot, fullPage: true }).catch((e) => {
      process.stderr.write(`screenshot failed: ${e.message}\n`);
    });
  }
  await browser.close().catch(() => {});
  exitAfterFlush(code);
}

async function fail(error) {
  const response = page ? await responseText() : '';
  emit({ kind: 'error', error: String(error?.message ?? error), response });
  await finish(1);
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
  // The schema request GraphiQL makes on load: its answer decides whether the editor knows
  // the types (and so whether the run button does anything sensible).
  const introspected = page
    .waitForResponse(
      (r) =>
        r.request().method() === 'POST' &&
        (r.request().postData() ?? '').includes('IntrospectionQuery'),
      { timeout },
    )
    .then(async (r) => {
      let body = null;
      try {
        body = await r.json();
      } catch {
        body = null;
      }
      introspection = {
        status: r.status(),
        errors: body?.errors ?? null,
        hasSchema: Boolean(body?.data?.__schema),
      };
    });

  const resp = await page.goto(opts.url, { waitUntil: 'load', timeout });
  if (!resp || resp.status() !== 200) throw new Error(`GET ${opts.url}: HTTP ${resp?.status()}`);
  await page.waitForSelector('.graphiql-query-editor .CodeMirror', { timeout });
  await introspected;
  // The docs pane fills in once GraphiQL has the schema.
  const docs = await page
    .waitForFunction(
      () => {
        const pane = document.querySelector('.graphiql-doc-explorer');
        return pane && /Subscription/.test(pane.textContent) ? pane.textContent : false;
      },
      null,
      { timeout },
    )
    .then((h) => h.jsonValue())
    .catch(() => null);
  const editor = await page.evaluate(
    () => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue(),
  );
  emit({ kind: 'loaded', introspection, editor, docs });

  if (opts.query !== undefined) {
    await page.evaluate((q) => {
      document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
    }, opts.query);
    // GraphiQL reads the editor's value on change; give React one frame to see it.
    await page.waitForTimeout(200);
  }
  await page.click('.graphiql-execute-button', { timeout });
  emit({ kind: 'ready' });

  const deadline = Date.now() + timeout;
  let text = '';
  for (;;) {
    text = await responseText();
    if (opts.expect.every((e) => text.includes(e))) break;
    if (Date.now() > deadline) {
      throw new Error(`the response pane never showed ${JSON.stringify(opts.expect)}`);
    }
    await page.waitForTimeout(100);
  }
  emit({ kind: 'result', text });
  await finish(0);
} catch (e) {
  await fail(e);
}
