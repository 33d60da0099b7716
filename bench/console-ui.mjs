#!/usr/bin/env node
// Console, browser side (npm run bench:console-ui; issue 11). Starts the built
// server on a temporary SQLite data dir holding BENCH_AUDIT_EVENTS (default
// 1,000,000) audit events, and measures in Debian's Chromium (/usr/bin/chromium,
// driven by playwright-core), median of BENCH_REPS (default 7):
//  1) first load, cold (a new browser context each time, nothing cached):
//     navigation start → the sign-in form in the DOM, and the load event;
//  2) the audit explorer drawing a 100-row page: the /audit/{account} response's
//     last byte (resource timing) → the 100th row in the DOM (JSON parse and
//     render included), alternating newest-first and oldest-first;
//  3) the first-load JavaScript, gzipped (what index.html loads: main.js).
// Times are taken inside the page (performance.now), so no CDP round trip is counted.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { loadServerConfig } from '../dist/config.js';
import { startServer, createAccountIn } from '../dist/server.js';

const CHROMIUM = '/usr/bin/chromium';
const EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000);
const REPS = Number(process.env.BENCH_REPS ?? 7);
if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  process.exit(2);
}
if (!existsSync(new URL('../dist/ui/main.js', import.meta.url))) {
  console.error('the console is not built: npm run build');
  process.exit(2);
}

const dataDir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'coffer-bench-console-ui-'));
const config = loadServerConfig({ 'data-dir': dataDir, host: '127.0.0.1', port: '0' }, { COFFER_DATA_KEY: randomBytes(32).toString('base64') });
const server = await startServer(config, { log: () => {} });
const account = 'bench';
const { api_key } = await createAccountIn(server.vault, account);
const url = server.url;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x) => `${x.toFixed(1).padStart(7)} ms`;
const load = () => `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;

/** Counts, in the page, when the sign-in form appears and each time the audit table fills to 100 rows. */
const OBSERVER = `(() => {
  window.__bench = { form: null, full: [] };
  let rows = 0;
  new MutationObserver(() => {
    if (window.__bench.form === null && document.querySelector('input[name=secret]')) window.__bench.form = performance.now();
    const n = document.querySelectorAll('table.events tbody tr').length;
    if (n === 100 && rows !== 100) window.__bench.full.push(performance.now());
    rows = n;
  }).observe(document, { childList: true, subtree: true });
})();`;

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  // Events as bench/console.mjs seeds them (valid rows, not a valid chain): 30 days from a minute from now.
  const db = server.vault.services.store.db;
  const span = 30 * 86_400_000;
  const start = Math.ceil((Date.now() + 60_000) / 60_000) * 60_000;
  const seed = db.prepare(`WITH RECURSIVE n(i) AS (SELECT CAST(? AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
    INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, message, prev_hash, hash)
    SELECT ? + i, strftime('%Y-%m-%dT%H:%M:%fZ', ? / 1000.0 + i * ?, 'unixepoch'),
      '${account}', CASE WHEN i % 3 = 0 THEN 'authn' ELSE 'fetch' END, CASE WHEN i % 3 = 0 THEN 'authenticate' ELSE 'fetch' END,
      CASE WHEN i % 3 <> 0 AND i % 17 = 0 THEN 'failure' ELSE 'success' END,
      '${account}:host:h' || (i % 2000),
      CASE WHEN i % 3 = 0 THEN '${account}:host:h' || (i % 2000) ELSE '${account}:variable:app' || (i % 100) || '/secret' || (i % 20000) END,
      'seeded event ' || i, zeroblob(32), zeroblob(32)
    FROM n`);
  const t0 = performance.now();
  const firstSeq = Number(db.prepare('SELECT coalesce(max(seq), 0) AS s FROM audit_events').get().s) + 1;
  for (let done = 0; done < EVENTS; done += 250_000) {
    const n = Math.min(250_000, EVENTS - done);
    await server.vault.services.store.tx(async () => seed.run(done, done + n, firstSeq, start, span / 1000 / EVENTS));
  }
  console.log(`sqlite: seeded ${EVENTS.toLocaleString()} events in ${((performance.now() - t0) / 1000).toFixed(1)} s   (${load()})`);

  // 1) First load, cold.
  const formAt = [];
  const loadAt = [];
  for (let i = 0; i < REPS; i++) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.addInitScript(OBSERVER);
    await page.goto(`${url}/ui/`, { waitUntil: 'load' });
    await page.waitForSelector('input[name=secret]');
    formAt.push(await page.evaluate('window.__bench.form'));
    loadAt.push(await page.evaluate('performance.getEntriesByType("navigation")[0].loadEventEnd'));
    await ctx.close();
  }
  console.log(`first load (cold, loopback): sign-in form drawn ${fmt(median(formAt))}, load event ${fmt(median(loadAt))}   (target ≤ 1000 ms)`);

  // 2) A 100-row page of the audit explorer, response → drawn.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await ctx.newPage();
  await page.addInitScript(OBSERVER);
  await page.goto(`${url}/ui/`);
  await page.fill('input[name=account]', account);
  await page.fill('input[name=login]', 'admin');
  await page.fill('input[name=secret]', api_key);
  await page.click('button[type=submit]');
  // The chain badge walks the whole chain once at sign-in: let it finish so it does not share the measurements.
  await page.waitForSelector('.badge:not(.running)', { timeout: 600_000 });
  const draws = [];
  const responses = [];
  for (let i = 0; i <= REPS; i++) {
    if (i > 0) {
      await page.selectOption('select[name=order]', i % 2 ? 'asc' : 'desc');
      await page.click('form.filters button[type=submit]');
    }
    await page.waitForFunction((k) => window.__bench.full.length > k, i, { timeout: 60_000 });
    const { drawn, entry } = await page.evaluate((k) => {
      const pages = performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname === '/audit/bench' && e.name.includes('limit=100'));
      const last = pages[pages.length - 1];
      return { drawn: window.__bench.full[k], entry: { start: last.requestStart, end: last.responseEnd } };
    }, i);
    if (i === 0) continue; // the first page also waited for sign-in
    draws.push(drawn - entry.end);
    responses.push(entry.end - entry.start);
  }
  await ctx.close();
  console.log(`audit explorer, 100 rows over ${EVENTS.toLocaleString()} events: response ${fmt(median(responses))} (request → last byte), drawn ${fmt(median(draws))} after the response   (target ≤ 300 ms)`);

  // 3) First-load JavaScript.
  const js = readFileSync(new URL('../dist/ui/main.js', import.meta.url));
  console.log(`first-load JavaScript: ${(gzipSync(js, { level: 9 }).length / 1024).toFixed(1)} KB gzipped (${(js.length / 1024).toFixed(1)} KB minified)   (budget 150 KB)`);
} finally {
  await browser.close();
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
