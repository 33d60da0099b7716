/**
 * The console (/ui/) in a real browser: Debian's Chromium driven by
 * playwright-core, against the real server on loopback. One browser for the
 * file; the flows run in order on one page (the token lives in the page's
 * memory, so a reload signs out and the flows that reload sign in again).
 *
 * Every page visited is checked with axe-core (no serious or critical
 * violation) and saved as a screenshot in .console-shots/ (not committed).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { dbOf } from '../helpers/sqlite.js';
import type { PostgresStore } from '../../src/store/postgres/index.js';
import { buildConsole } from '../../scripts/build-ui.mjs';

const ROOT = resolve(import.meta.dirname, '..', '..');
// A page updates when the browser gets to it: on two cores busy with the rest of the suite, a drawer took over the
// default 1 s poll to appear (and, left open, blocked the next test's click). What a poll waits for is unchanged.
vi.setConfig({ expect: { poll: { timeout: 10_000 } } });
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(ROOT, '.console-shots');
const AXE = readFileSync(join(ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const A = 'acme';
const VAR = 'ci/db/password';
const VAR_ID = `${A}:variable:${VAR}`;
const HOSTILE = '<img src=x onerror=alert(1)>';
const HOSTILE_VAR = `ci/"><img src=x onerror=alert(2)>`;
const EXECUTOR = `${A}:host:ci/executor-01`;
const OUTSIDER = `${A}:host:ci/outsider`;
const SECRET = 'console-canary-Vt9Lq2Rx';
const IDLE_MINUTES = 10;
const TOKEN_TTL = 60;

const POLICY = `
- !policy
  id: ci
  body:
  - !layer executors
  - !host executor-01
  - !host outsider
  - !grant
    role: !layer executors
    member: !host executor-01
  - !variable
    id: db/password
    annotations:
      description: "${HOSTILE}"
  - !variable
    id: '"><img src=x onerror=alert(2)>'
    annotations:
      "<b>name</b>": "<script>alert(3)</script>"
  - !permit
    role: !layer executors
    privileges: [read, execute]
    resource: !variable db/password
  - !permit
    role: !host outsider
    privileges: [read]
    resource: !variable db/password
`;

let srv: TestServer;
let api: Client;
let admin: string;
let executorKey: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const dialogs: string[] = [];
const consoleLines: string[] = [];
const pageErrors: string[] = [];
const requestUrls: string[] = [];
const authHeaders = new Set<string>();
const axeFindings: string[] = [];

/** axe-core on the current page: every serious or critical violation, as text. */
async function checkA11y(name: string): Promise<void> {
  if (!(await page.evaluate('typeof window.axe === "object"'))) await page.evaluate(AXE);
  const result = (await page.evaluate('axe.run(document, { resultTypes: ["violations"] })')) as {
    violations: { id: string; impact: string | null; help: string; nodes: { target: unknown }[] }[];
  };
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      axeFindings.push(`${name}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`);
    }
  }
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** Checks a page with axe and saves its screenshot. */
async function visited(name: string): Promise<void> {
  await checkA11y(name);
  await shot(name);
}

async function signIn(secret: string, login = 'admin'): Promise<void> {
  await page.getByLabel('Account').fill(A);
  await page.getByLabel('Login').fill(login);
  await page.locator('input[name=secret]').fill(secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The events of the API's pages for a filter, every page (newest first). */
async function apiSeqs(filter: Record<string, string>): Promise<number[]> {
  const seqs: number[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ ...filter, limit: '100', ...(cursor ? { cursor } : {}) });
    const r = await api.request('GET', `/audit/${A}?${q}`, { token: admin });
    expect(r.status).toBe(200);
    seqs.push(...(r.json.events as { seq: number }[]).map((e) => e.seq));
    cursor = r.json.next_cursor;
  } while (cursor);
  return seqs;
}

async function tableSeqs(): Promise<number[]> {
  return (await page.locator('table.events tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-seq')))));
}

/** Runs SQL on the audit table with its append-only triggers lifted (either backend). */
async function tamper(seq: number, message: string): Promise<void> {
  const store = srv.server.vault.services.store;
  if (store.backend === 'postgres') {
    const sql = (store as PostgresStore).sql;
    await sql.unsafe('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update');
    await sql`UPDATE audit_events SET message = ${message} WHERE seq = ${seq}`;
    await sql.unsafe('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update');
    return;
  }
  const db = dbOf(store);
  const trigger = (db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_update'").get() as { sql: string }).sql;
  db.exec('DROP TRIGGER audit_events_no_update');
  try {
    db.prepare('UPDATE audit_events SET message = ? WHERE seq = ?').run(message, seq);
  } finally {
    db.exec(trigger);
  }
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)`);
  if (!existsSync(join(ROOT, 'dist', 'ui', 'index.html'))) await buildConsole(undefined, { quiet: true });
  mkdirSync(SHOTS, { recursive: true });
  srv = await startTestServer({ account: A, flags: { 'console-idle-minutes': String(IDLE_MINUTES), 'token-ttl': String(TOKEN_TTL) } });
  api = new Client(srv.url, A);
  admin = await api.login('admin', srv.adminKey);
  const load = await api.loadPolicy(admin, 'POST', 'root', POLICY);
  expect(load.status, load.text).toBe(201);
  executorKey = load.json.created_roles[EXECUTOR].api_key;
  expect((await api.setSecret(admin, VAR, SECRET)).status).toBe(201);
  expect((await api.setSecret(admin, VAR, `${SECRET}-2`)).status).toBe(201);
  expect((await api.setSecret(admin, HOSTILE_VAR, 'x')).status).toBe(201);
  // Enough fetches (130, 20 of them refused) for paging to matter.
  const executor = await api.login('host/ci/executor-01', executorKey);
  for (let i = 0; i < 110; i++) expect((await api.getSecret(executor, VAR)).status).toBe(200);
  for (let i = 0; i < 20; i++) expect((await api.getSecret(executor, HOSTILE_VAR)).status).toBe(404);

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  page = await context.newPage();
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('request', (r: Request) => {
    requestUrls.push(r.url());
    const auth = r.headers().authorization;
    if (auth?.startsWith('Token ')) authHeaders.add(auth);
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await srv?.close();
});

describe('the console in Chromium', { timeout: 60_000 }, () => {
  it('is served at /ui/ with a strict CSP, nosniff and no-referrer, and client routes fall back to index.html', async () => {
    const res = await page.goto(`${srv.url}/ui/`);
    expect(res?.status()).toBe(200);
    const h = res!.headers();
    expect(h['content-security-policy']).toContain("script-src 'self'");
    expect(h['content-security-policy']).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(h['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(h['x-content-type-options']).toBe('nosniff');
    expect(h['referrer-policy']).toBe('no-referrer');
    const deep = await api.request('GET', '/ui/explain?role=x', { skipContract: true });
    expect(deep.status).toBe(200);
    expect(deep.text).toContain('<div id="app">');
    expect(deep.text).toContain(`<meta name="coffer-idle-minutes" content="${IDLE_MINUTES}">`);
    for (const probe of ['/ui/..%2f..%2fpackage.json', '/ui/%2e%2e/%2e%2e/package.json', '/ui/../src/server.ts', '/ui/nope.js']) {
      const r = await api.request('GET', probe, { skipContract: true });
      expect(r.text, probe).not.toContain('"name": "coffer"');
      expect(r.text, probe).not.toContain('import ');
    }
    await expect.poll(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    await visited('signin');
  });

  it('says clearly that a wrong key is wrong', async () => {
    await signIn('not-the-key');
    await expect.poll(() => page.getByRole('alert').textContent()).toBe('Sign-in failed: the account, login or key/password is not right.');
    await expect.poll(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    await visited('signin-failed');
  });

  it('opens the audit explorer with the right key, the chain badge green', async () => {
    await page.locator('input[name=secret]').fill(srv.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('heading', { name: 'Audit log' }).isVisible()).toBe(true);
    await expect.poll(() => page.locator('[data-chain]').getAttribute('data-chain'), { timeout: 15_000 }).toBe('ok');
    await expect.poll(() => page.locator('table.events tbody tr').count()).toBe(100);
    expect(page.url()).not.toContain('token');
    await visited('audit');
  });

  it('shows the same events as the API, filter by filter, paging as the table scrolls', async () => {
    await page.getByLabel('Action').fill('fetch');
    await page.getByLabel('Result').selectOption('success');
    await page.getByRole('button', { name: 'Apply' }).click();
    const expected = await apiSeqs({ action: 'fetch', result: 'success' });
    expect(expected.length).toBeGreaterThan(100);
    await expect.poll(async () => (await tableSeqs()).length).toBe(100);
    expect(await tableSeqs()).toEqual(expected.slice(0, 100));
    await page.locator('table.events tbody tr').last().scrollIntoViewIfNeeded();
    await page.locator('.sentinel').scrollIntoViewIfNeeded();
    await expect.poll(async () => (await tableSeqs()).length, { timeout: 10_000 }).toBe(expected.length);
    expect(await tableSeqs()).toEqual(expected);

    await page.getByLabel('Result').selectOption('failure');
    await page.getByRole('button', { name: 'Apply' }).click();
    const failures = await apiSeqs({ action: 'fetch', result: 'failure' });
    expect(failures.length).toBe(20);
    await expect.poll(() => tableSeqs()).toEqual(failures);

    // Clicking a role's filter button narrows to it, oldest first agrees too.
    await page.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(async () => (await tableSeqs()).length).toBe(100);
    await page.getByRole('button', { name: `Filter by role ${EXECUTOR}` }).first().click();
    await page.getByLabel('Order').selectOption('asc');
    await page.getByRole('button', { name: 'Apply' }).click();
    const byRole = await apiSeqs({ role: EXECUTOR, order: 'asc' });
    await expect.poll(async () => (await tableSeqs()).slice(0, 100)).toEqual(byRole.slice(0, 100));
    expect(new URL(page.url()).searchParams.get('role')).toBe(EXECUTOR);
  });

  it('opens an event in the drawer by keyboard, and closes it with Escape', async () => {
    await page.getByRole('button', { name: 'Clear' }).click();
    await expect.poll(async () => (await tableSeqs()).length).toBe(100);
    await page.locator('table.events tbody tr').first().focus();
    await page.keyboard.press('ArrowDown');
    // The row the arrow moved to: the second of the table as it is now (a new event may have shifted the rows
    // since they were read, so the seq is taken from the focused row itself).
    const focused = (await page.evaluate(
      `(() => { const rows = [...document.querySelectorAll('table.events tbody tr')]; const row = document.activeElement;
        return { index: rows.indexOf(row), seq: row && row.dataset.seq }; })()`,
    )) as { index: number; seq: string | undefined };
    expect(focused.index).toBe(1);
    expect(focused.seq).toMatch(/^\d+$/);
    await page.keyboard.press('Enter');
    const drawer = page.getByRole('dialog', { name: `Event ${focused.seq}` });
    await expect.poll(() => drawer.isVisible()).toBe(true);
    await visited('audit-drawer');
    await page.keyboard.press('Escape');
    await expect.poll(() => drawer.count()).toBe(0);
  });

  it('shows in live mode a fetch a host makes meanwhile', async () => {
    await page.getByLabel('Live').check();
    const executor = await api.login('host/ci/executor-01', executorKey);
    expect((await api.getSecret(executor, VAR)).status).toBe(200);
    const [newest] = await apiSeqs({ action: 'fetch', role: EXECUTOR });
    await expect.poll(() => page.locator(`table.events tbody tr[data-seq="${newest}"]`).count(), { timeout: 15_000 }).toBe(1);
    const row = page.locator(`table.events tbody tr[data-seq="${newest}"]`);
    expect(await row.locator('td').nth(1).textContent()).toBe('fetch');
    expect(await row.locator('td').nth(3).textContent()).toContain(EXECUTOR);
    expect(await row.getAttribute('class')).toContain('fresh');
    await page.getByLabel('Live').uncheck();
  });

  it('draws the timeline from the histogram endpoint', async () => {
    const bars = page.locator('.timeline svg g.bar');
    await expect.poll(() => bars.count(), { timeout: 10_000 }).toBeGreaterThan(0);
    const caption = (await page.locator('.timeline figcaption').textContent()) ?? '';
    expect(caption).toMatch(/Fetches and failures per (minute|hour)/);
    expect(caption).toMatch(/\d+ fetches/);
  });

  it('narrows the table to a bar of the timeline when the bar is clicked', async () => {
    const bar = page.locator('.timeline g.bar').filter({ hasText: /: [1-9]\d* fetches/ }).last();
    await bar.locator('rect.fetch').click();
    await expect.poll(() => new URL(page.url()).searchParams.get('until')).not.toBeNull();
    const params = new URL(page.url()).searchParams;
    const since = params.get('since')!;
    const until = params.get('until')!;
    expect(Date.parse(until) - Date.parse(since)).toBeLessThanOrEqual(3_600_000);
    const expected = await apiSeqs({ since, until });
    expect(expected.length).toBeGreaterThan(0);
    await expect.poll(async () => (await tableSeqs()).slice(0, 100)).toEqual(expected.slice(0, 100));
    await page.getByRole('button', { name: 'Clear' }).click();
  });

  it('exports the current filter as NDJSON, the same events as the API, paging through it', async () => {
    await page.getByLabel('Action').fill('fetch');
    await page.getByRole('button', { name: 'Apply' }).click();
    const expected = await apiSeqs({ action: 'fetch' });
    expect(expected.length).toBeGreaterThan(100);
    await expect.poll(async () => (await tableSeqs()).length).toBe(100);
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: 'Export NDJSON' }).click();
    const file = await (await download).path();
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.map((e) => e.seq)).toEqual(expected);
    const first = await api.request('GET', `/audit/${A}?action=fetch&limit=1`, { token: admin });
    expect(lines[0]).toEqual(first.json.events[0]);
    await (await download).delete();
    await page.getByRole('button', { name: 'Clear' }).click();
  });

  it('renders a hostile annotation and hostile ids as text; no dialog fires', async () => {
    await page.goto(`${srv.url}/ui/`); // a reload: the session is gone, as intended
    await signIn(srv.adminKey);
    await expect.poll(() => page.getByRole('heading', { name: 'Audit log' }).isVisible()).toBe(true);
    await page.getByRole('link', { name: 'Policies' }).click();
    await expect.poll(() => page.getByRole('link', { name: VAR_ID }).count()).toBeGreaterThan(0);
    await visited('policies');
    await page.getByRole('link', { name: VAR_ID }).first().click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(VAR_ID);
    await expect.poll(() => page.locator('td.annotation-value').first().textContent()).toBe(HOSTILE);
    await page.goto(`${srv.url}/ui/`);
    await signIn(srv.adminKey);
    await expect.poll(() => page.getByRole('heading', { name: 'Audit log' }).isVisible()).toBe(true);
    await page.getByRole('link', { name: 'Policies' }).click();
    await page.getByRole('link', { name: `${A}:variable:${HOSTILE_VAR}` }).first().click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(`${A}:variable:${HOSTILE_VAR}`);
    await expect.poll(() => page.locator('td.annotation-value').first().textContent()).toBe('<script>alert(3)</script>');
    expect(await page.locator('td.mono').first().textContent()).toBe('<b>name</b>');
    // The audit table and drawer show the hostile id as text too.
    await page.getByRole('link', { name: 'Audit events about it' }).click();
    await expect.poll(async () => (await tableSeqs()).length).toBeGreaterThan(0);
    expect(await page.locator('table.events tbody a.id', { hasText: HOSTILE_VAR }).count()).toBeGreaterThan(0);
    expect(await page.locator('main img, main script, main b').count()).toBe(0);
    await page.waitForTimeout(300);
    expect(dialogs).toEqual([]);
  });

  it('shows the resource page: permitted roles, versions with dates, reveal (an audited fetch) that hides again, and who can execute it', async () => {
    await page.goto(`${srv.url}/ui/`);
    await signIn(srv.adminKey);
    await expect.poll(() => page.getByRole('heading', { name: 'Audit log' }).isVisible()).toBe(true);
    await page.getByRole('link', { name: 'Policies' }).click();
    await page.getByRole('link', { name: VAR_ID }).first().click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(VAR_ID);
    const permitted = (await api.request('GET', `/resources/${A}/variable/${encodeURIComponent(VAR)}?permitted_roles=true&privilege=execute`, { token: admin })).json as string[];
    await expect.poll(() => page.locator('.permitted .idlist li').count()).toBe(permitted.length);
    expect(permitted).toContain(EXECUTOR);
    expect(permitted).not.toContain(OUTSIDER);
    // Versions 1 and 2, each with the time of its audit event.
    await expect.poll(() => page.locator('table.versions tbody tr').count()).toBe(2);
    await expect.poll(() => page.locator('table.versions tbody tr time').count()).toBe(2);
    expect(await page.locator('main').textContent()).not.toContain(SECRET);
    await visited('resource');
    const fetchesBefore = (await apiSeqs({ action: 'fetch', role: `${A}:user:admin`, resource: VAR_ID })).length;
    await page.getByRole('button', { name: 'Reveal v2' }).click();
    await expect.poll(() => page.locator('code.secret').textContent()).toBe(`${SECRET}-2`);
    expect((await apiSeqs({ action: 'fetch', role: `${A}:user:admin`, resource: VAR_ID })).length).toBe(fetchesBefore + 1);
    await page.getByRole('button', { name: 'Hide' }).click();
    await expect.poll(() => page.locator('code.secret').count()).toBe(0);
    expect(await page.locator('main').textContent()).not.toContain(SECRET);
    // Who can execute this, and why: the executor through the layer.
    const why = page.locator(`ul.why > li[data-role="${EXECUTOR}"]`);
    await expect.poll(() => why.locator('svg.graph').count(), { timeout: 10_000 }).toBe(1);
    expect(await why.locator('svg.graph').textContent()).toContain('layer:ci/executors');
  });

  it('shows the role page: memberships, members and what it reaches by privilege', async () => {
    await page.getByRole('link', { name: EXECUTOR }).first().click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(EXECUTOR);
    await expect.poll(() => page.locator('.two-col').textContent()).toContain(`${A}:layer:ci/executors`);
    await expect.poll(() => page.locator('.reach').textContent(), { timeout: 10_000 }).toContain(VAR_ID);
    expect(await page.locator('.reach-group[data-privilege="execute"]').textContent()).toContain(VAR_ID);
    await visited('role');
  });

  it('explains the layer path, and "no path" for a role without a permit', async () => {
    await page.getByRole('link', { name: 'Explain', exact: true }).click();
    await page.getByLabel('Role').fill('host:ci/executor-01');
    await page.getByLabel('Privilege').fill('execute');
    await page.getByLabel('Resource').fill(`variable:${VAR}`);
    await page.getByRole('button', { name: 'Explain', exact: true }).click();
    await expect.poll(() => page.locator('[data-explain]').getAttribute('data-explain'), { timeout: 10_000 }).toBe('allowed');
    const graph = page.locator('svg.graph');
    expect(await graph.textContent()).toContain('host:ci/executor-01');
    expect(await graph.textContent()).toContain('layer:ci/executors');
    expect(await graph.textContent()).toContain('permit execute');
    // Each step names the policy (and version) that declared it, as the API says.
    const answer = (await api.request('GET', `/explain/${A}?role=${encodeURIComponent(EXECUTOR)}&privilege=execute&resource=${encodeURIComponent(VAR_ID)}`, { token: admin })).json;
    expect(answer.allowed).toBe(true);
    expect(await page.locator('ol.paths > li').count()).toBe(answer.paths.length);
    const listed = (await page.locator('ol.paths').textContent()) ?? '';
    for (const p of answer.paths) {
      expect(listed).toContain(`permit execute (${p.grant.policy.id} v${p.grant.policy.version})`);
      for (const e of p.edges) expect(listed).toContain(`member of (${e.policy.id} v${e.policy.version})`);
    }
    await visited('explain');
    await page.getByLabel('Role').fill('host:ci/outsider');
    await page.getByRole('button', { name: 'Explain', exact: true }).click();
    await expect.poll(() => page.locator('[data-explain]').getAttribute('data-explain'), { timeout: 10_000 }).toBe('none');
    expect(await page.locator('.explain-none').textContent()).toContain('No path');
    await visited('explain-none');
  });

  it('is usable at a phone width (375 px): nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    await page.getByRole('link', { name: 'Audit', exact: true }).click();
    await expect.poll(async () => (await tableSeqs()).length).toBeGreaterThan(0);
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await visited('audit-phone');
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('switches to the dark theme and stays accessible', async () => {
    await page.getByRole('button', { name: 'Switch to dark theme' }).click();
    // The attribute is set when the page renders the change, not by the click itself.
    await expect.poll(() => page.locator('html').getAttribute('data-theme')).toBe('dark');
    await expect.poll(async () => (await tableSeqs()).length).toBeGreaterThan(0);
    await visited('audit-dark');
    await page.getByRole('button', { name: 'Switch to light theme' }).click();
    await expect.poll(() => page.locator('html').getAttribute('data-theme')).toBe('light');
  });

  it('turns the chain badge red, with the first bad sequence number, after a row is tampered with', async () => {
    const [victim] = (await apiSeqs({ action: 'fetch' })).slice(-1);
    const r = await api.request('GET', `/audit/${A}?action=fetch&order=asc&limit=1`, { token: admin });
    const original = r.json.events[0].message as string;
    expect(r.json.events[0].seq).toBe(victim);
    await tamper(victim!, `${original} (edited)`);
    try {
      await page.getByRole('button', { name: 'Verify the chain again' }).click();
      await expect.poll(() => page.locator('[data-chain]').getAttribute('data-chain'), { timeout: 15_000 }).toBe('broken');
      expect(await page.locator('[data-chain]').getAttribute('data-first-bad-seq')).toBe(String(victim));
      expect(await page.locator('[data-chain]').textContent()).toContain(`Chain broken at #${victim}`);
      await visited('audit-broken-chain');
    } finally {
      await tamper(victim!, original);
    }
    await page.getByRole('button', { name: 'Verify the chain again' }).click();
    await expect.poll(() => page.locator('[data-chain]').getAttribute('data-chain'), { timeout: 15_000 }).toBe('ok');
  });

  it('signs out by revoking the token: the same token over HTTP is then 401', async () => {
    const headers = [...authHeaders];
    expect(headers.length).toBeGreaterThan(0);
    const last = headers[headers.length - 1]!;
    expect((await api.request('GET', '/whoami', { headers: { Authorization: last } })).status).toBe(200);
    const revoked = page.waitForRequest((r) => r.method() === 'DELETE' && r.url().endsWith(`/authn/${A}/token`));
    await page.getByRole('button', { name: 'Sign out' }).click();
    await revoked;
    await expect.poll(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    expect((await api.request('GET', '/whoami', { headers: { Authorization: last } })).status).toBe(401);
  });

  it('never puts a token or key in a URL, the console, or storage; no CSP violation, no page error, no dialog', async () => {
    const tokens = [...authHeaders].map((h) => /token="([^"]+)"/.exec(h)![1]!);
    const decoded = tokens.map((t) => Buffer.from(t, 'base64').toString('utf8'));
    const needles = [...tokens, ...decoded.map((d) => JSON.parse(d).signature as string), srv.adminKey, SECRET];
    const storage = String(await page.evaluate('JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])'));
    const cookies = JSON.stringify(await context.cookies());
    for (const n of needles) {
      expect(requestUrls.filter((u) => u.includes(n) || u.includes(encodeURIComponent(n)))).toEqual([]);
      expect(consoleLines.filter((l) => l.includes(n))).toEqual([]);
      expect(storage.includes(n)).toBe(false);
      expect(cookies.includes(n)).toBe(false);
    }
    expect(consoleLines.filter((l) => /Content Security Policy/i.test(l))).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(dialogs).toEqual([]);
  });

  it('finds no serious or critical accessibility violation on any page (axe-core)', () => {
    expect(axeFindings).toEqual([]);
  });

  it(`renews the token before it expires, and signs out after ${IDLE_MINUTES} idle minutes (revoking the token)`, async () => {
    // A context of its own: its clock is installed (faked) without touching the main page's.
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const p = await ctx.newPage();
    const seen: string[] = [];
    p.on('request', (r) => {
      if (r.url().endsWith('/authenticate')) seen.push('authenticate');
      const auth = r.headers().authorization;
      if (auth?.startsWith('Token ')) seen.push(auth);
    });
    await p.clock.install();
    await p.goto(`${srv.url}/ui/`);
    await p.getByLabel('Account').fill(A);
    await p.getByLabel('Login').fill('admin');
    await p.locator('input[name=secret]').fill(srv.adminKey);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => p.getByRole('heading', { name: 'Audit log' }).isVisible()).toBe(true);
    expect(seen.filter((s) => s === 'authenticate').length).toBe(1);
    // At three quarters of the 60 s lifetime the console authenticates again.
    const renewal = p.waitForResponse((r) => r.url().endsWith('/authenticate'), { timeout: 20_000 });
    await p.clock.runFor(TOKEN_TTL * 0.75 * 1000 + 1000);
    expect((await renewal).status()).toBe(200);
    await expect.poll(() => seen.filter((s) => s === 'authenticate').length).toBe(2);
    // The page's next requests carry the new token (under load the answer can land after the click: wait for it).
    await p.getByRole('link', { name: 'Policies' }).click();
    await expect.poll(() => p.getByRole('heading', { name: 'Policies' }).isVisible()).toBe(true);
    const tokens = () => [...new Set(seen.filter((s) => s.startsWith('Token ')))];
    await expect.poll(async () => {
      if (tokens().length < 2) await p.getByRole('link', { name: 'Audit log' }).click();
      return tokens().length;
    }).toBeGreaterThan(1);
    const tokensUsed = tokens();
    // The token a renewal replaces is revoked at once: one live token at a time.
    await expect.poll(async () => (await api.request('GET', '/whoami', { headers: { Authorization: tokensUsed[0]! } })).status).toBe(401);
    // Idle: no key or pointer activity for the configured minutes.
    const revoked = p.waitForRequest((r) => r.method() === 'DELETE' && r.url().endsWith(`/authn/${A}/token`), { timeout: 20_000 });
    await p.clock.runFor(IDLE_MINUTES * 60_000);
    const last = (await revoked).headers().authorization!;
    await expect.poll(() => p.getByRole('heading', { name: 'Sign in' }).isVisible(), { timeout: 15_000 }).toBe(true);
    expect(await p.getByRole('status').first().textContent()).toBe(`Signed out after ${IDLE_MINUTES} minutes without activity.`);
    await expect.poll(async () => (await api.request('GET', '/whoami', { headers: { Authorization: last } })).status).toBe(401);
    await ctx.close();
  });
});
