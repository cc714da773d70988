#!/usr/bin/env node
// Opens walcast's /status page in a headless Chromium and reads what it shows. Driven by the
// Rust end-to-end tests.
//
// Every happening is printed as one JSON line on stdout:
//   {"kind":"loaded","slot":".."}                  the page has scraped /metrics at least once
//   {"kind":"moving","rate":N,"shown":{..}}        --rate-table's events per second went above 0
//                                                  (the screenshot is taken then)
//   {"kind":"settled","shown":{..},"page":{..}}    --series shows --value
//   {"kind":"error","error":".."}                  anything that went wrong (then exit 1)
// `shown` maps each series of the page's table of samples to the number it shows; `page` holds
// the headline numbers (subscriptions, slow-consumer closes, LSN, lag) and the latency rows.
//
// Usage:
//   node status.mjs --url http://HOST:PORT/status?access_token=T [--rate-table T [--moving-polls N]]
//        [--series S --value V] [--screenshot FILE.png] [--timeout MS] [--chromium PATH]

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    'rate-table': { type: 'string' },
    'moving-polls': { type: 'string', default: '1' },
    series: { type: 'string' },
    value: { type: 'string' },
    screenshot: { type: 'string' },
    timeout: { type: 'string', default: '60000' },
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
  process.stderr.write('status.mjs: --url is required\n');
  process.exit(2);
}
if (!existsSync(opts.chromium)) {
  emit({ kind: 'error', error: `${opts.chromium} is missing: install Chromium` });
  exitAfterFlush(1);
  await new Promise(() => {});
}
const timeout = Number(opts.timeout);
const { chromium } = await import('playwright-core');
const browser = await chromium.launch({
  executablePath: opts.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  timeout,
});

async function shown(page) {
  return page.evaluate(() => {
    const out = {};
    for (const td of document.querySelectorAll('[data-series]')) out[td.dataset.series] = Number(td.textContent);
    return out;
  });
}

let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`pageerror: ${e.message}\n`));
  page.on('requestfailed', (r) => process.stderr.write(`requestfailed: ${r.url()} ${r.failure()?.errorText}\n`));
  const resp = await page.goto(opts.url, { waitUntil: 'load', timeout });
  if (!resp || resp.status() !== 200) throw new Error(`GET ${opts.url}: HTTP ${resp?.status()}`);
  await page.waitForFunction(() => Number(document.body.dataset.polls || 0) >= 1, null, { timeout });
  emit({ kind: 'loaded', slot: await page.textContent('#slot') });

  if (opts['rate-table']) {
    // Scrapes in a row with the table's rate above 0: enough of a line in the charts.
    const moving = page.evaluate(
      ([table, want]) =>
        new Promise((resolve) => {
          let seen = 0;
          let last = Number(document.body.dataset.polls || 0);
          const check = () => {
            const polls = Number(document.body.dataset.polls || 0);
            if (polls !== last) {
              last = polls;
              const el = document.querySelector(`[data-rate-table="${table}"]`);
              seen = el && Number(el.dataset.rate) > 0 ? seen + 1 : 0;
              if (seen >= want) return resolve(Number(el.dataset.rate));
            }
            setTimeout(check, 50);
          };
          check();
        }),
      [opts['rate-table'], Number(opts['moving-polls'])],
    );
    let timer;
    const rate = await Promise.race([
      moving,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${opts['rate-table']} never showed events per second above 0`)),
          timeout,
        );
      }),
    ]);
    clearTimeout(timer);
    // One frame for the charts drawn with this scrape.
    await page.waitForTimeout(100);
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    emit({ kind: 'moving', rate, shown: await shown(page) });
  }

  if (opts.series !== undefined) {
    await page.waitForFunction(
      ([series, value]) => {
        for (const td of document.querySelectorAll('[data-series]')) {
          if (td.dataset.series === series) return Number(td.textContent) === Number(value);
        }
        return false;
      },
      [opts.series, opts.value],
      { timeout, polling: 100 },
    );
    const headline = await page.evaluate(() => {
      const t = (id) => document.getElementById(id).textContent;
      const latency = [...document.querySelectorAll('#latency-table tr.stage')].map((tr) =>
        [...tr.children].map((td) => td.textContent),
      );
      const clients = [...document.querySelectorAll('#clients-table tr')].slice(1).map((tr) =>
        [...tr.children].map((td) => td.textContent),
      );
      return {
        subscriptions: t('subs'),
        slow: t('slow'),
        pings: t('pings'),
        lsn: t('lsn'),
        lagBytes: t('lag-bytes'),
        retained: t('retained'),
        keep: t('keep'),
        latency,
        clients,
      };
    });
    emit({ kind: 'settled', shown: await shown(page), page: headline });
  }
  await browser.close();
  exitAfterFlush(0);
} catch (e) {
  emit({ kind: 'error', error: String(e?.message ?? e) });
  if (opts.screenshot && page) await page.screenshot({ path: opts.screenshot, fullPage: true }).catch(() => {});
  await browser.close().catch(() => {});
  exitAfterFlush(1);
}
