/** `coffer audit query` (table, filters, --json, --ndjson, --follow) and `coffer audit verify` (online and offline) against a real server. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { runCli, tempHome } from '../helpers/cli.js';
import { openRawDb } from '../helpers/raw-db.js';

let srv: TestServer;
let api: Client;
let admin: string;
let home: string;
let env: NodeJS.ProcessEnv;
let aliceEnv: NodeJS.ProcessEnv;
let alice: string;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const load = await api.loadPolicy(admin, 'POST', 'root', '- !user alice\n- !variable db/pw\n- !variable other\n- !permit\n  role: !user alice\n  privilege: [read, execute]\n  resource: !variable db/pw\n');
  const aliceKey = load.json.created_roles[`${srv.account}:user:alice`].api_key;
  await api.setSecret(admin, 'db/pw', 'canary-value-123');
  alice = await api.login('alice', aliceKey);
  expect((await api.getSecret(alice, 'db/pw')).status).toBe(200);
  expect((await api.getSecret(alice, 'other')).status).toBe(404);
  home = tempHome();
  const base = { HOME: home, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: srv.account };
  env = { ...base, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey };
  aliceEnv = { ...base, CONJUR_AUTHN_LOGIN: 'alice', CONJUR_AUTHN_API_KEY: aliceKey };
});
afterAll(async () => {
  await srv.close();
  rmSync(home, { recursive: true, force: true });
});

describe('coffer audit query', () => {
  it('shows matching events oldest first as an aligned table with account-relative ids', async () => {
    const r = await runCli(['audit', 'query', '--action', 'fetch', '--role', 'user:alice'], { env });
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME +ACTION +RESULT +ROLE +RESOURCE +DETAIL$/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ +fetch\/fetch +success +user:alice +variable:db\/pw +cucumber:user:alice fetched/);
    expect(lines[2]).toMatch(/ fetch\/fetch +failure +user:alice +variable:other +/);
    // Columns line up: RESULT starts at the same offset on every line.
    const at = lines[0]!.indexOf('RESULT');
    expect(lines.slice(1).every((l) => /^(success|failure)/.test(l.slice(at)))).toBe(true);
    expect(r.out).not.toContain('canary-value-123');
  });

  it('filters by result, resource and time, and limits', async () => {
    const failures = await runCli(['audit', 'query', '--result', 'failure', '--resource', 'variable:other', '--json'], { env });
    const events = JSON.parse(failures.out).events as any[];
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.result === 'failure' && e.resource === 'cucumber:variable:other')).toBe(true);
    const recent = await runCli(['audit', 'query', '--since', '1h', '--limit', '2', '--json'], { env });
    expect(JSON.parse(recent.out).events).toHaveLength(2);
    const future = await runCli(['audit', 'query', '--since', '2999-01-01T00:00:00Z'], { env });
    expect(future.out.trim().split('\n')).toHaveLength(1); // the header only
    const old = await runCli(['audit', 'query', '--until', '2000-01-01', '--json'], { env });
    expect(JSON.parse(old.out).events).toEqual([]);
  });

  it('--ndjson pages through everything (one event per line), newest first', async () => {
    const all = (await api.request('GET', `/audit/${srv.account}?limit=1000`, { token: admin })).json.events;
    const r = await runCli(['audit', 'query', '--ndjson'], { env });
    const lines = r.out.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThanOrEqual(all.length);
    expect(lines[0].seq).toBeGreaterThan(lines[lines.length - 1].seq);
    const limited = await runCli(['audit', 'query', '--ndjson', '--limit', '3'], { env });
    expect(limited.out.trimEnd().split('\n')).toHaveLength(3);
  });

  it('--follow prints new events as they happen until interrupted', async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    const running = runCli(['audit', 'query', '--follow', '--interval', '50ms', '--ndjson', '--action', 'fetch', '--limit', '1'], {
      env,
      signal: ac.signal,
      onOut: (l) => seen.push(l),
    });
    await new Promise((r) => setTimeout(r, 150));
    const initial = seen.length;
    expect((await api.getSecret(alice, 'db/pw')).status).toBe(200);
    for (let i = 0; i < 100 && seen.length === initial; i++) await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    const r = await running;
    expect(r.code).toBe(0);
    const fresh = seen.slice(initial).map((l) => JSON.parse(l));
    expect(fresh).toEqual([expect.objectContaining({ action: 'fetch', role: 'cucumber:user:alice', resource: 'cucumber:variable:db/pw' })]);
  });

  it('a role without the audit privilege sees an empty table, not an error', async () => {
    const r = await runCli(['audit', 'query', '--action', 'fetch'], { env: aliceEnv });
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
  });

  it('bad flags are usage errors (2); a bad filter the server refuses is exit 1', async () => {
    for (const args of [
      ['audit', 'query', '--result', 'maybe'],
      ['audit', 'query', '--since', 'yesterday-ish'],
      ['audit', 'query', '--json', '--ndjson'],
      ['audit', 'query', '--follow', '--until', '1h'],
      ['audit', 'query', '--limit', 'none'],
      ['audit', 'frobnicate'],
    ]) {
      const r = await runCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
    }
    const r = await runCli(['audit', 'query', '--resource', 'nokind'], { env });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^coffer: querying the audit log: /);
  });
});

describe('coffer audit verify', () => {
  it('online: OK exits 0; a role without audit on root gets exit 4', async () => {
    const r = await runCli(['audit', 'verify'], { env });
    expect([r.code, r.out]).toEqual([0, expect.stringMatching(/^audit chain OK: \d+ events verified \(last seq \d+\)\n$/)]);
    const j = await runCli(['audit', 'verify', '--json'], { env });
    expect(JSON.parse(j.out).ok).toBe(true);
    const denied = await runCli(['audit', 'verify'], { env: aliceEnv });
    expect(denied.code).toBe(4);
  });

  it('offline with --data-dir (--database on PostgreSQL) still works', async () => {
    const where = srv.database ? ['--database', srv.database] : ['--data-dir', srv.dataDir];
    const r = await runCli(['audit', 'verify', ...where], { env: { COFFER_DATA_KEY: srv.dataKey } });
    expect([r.code, r.out]).toEqual([0, expect.stringMatching(/^audit chain OK: /)]);
  });

  it('a tampered chain is reported with the first bad sequence number and exit 3', async () => {
    const db = await openRawDb(srv);
    try {
      await db.withAuditEditable(() => db.run("UPDATE audit_events SET message = message || ' (edited)' WHERE seq = 3"));
    } finally {
      await db.close();
    }
    const r = await runCli(['audit', 'verify'], { env });
    expect(r.code).toBe(3);
    expect(r.out).toMatch(/^audit chain BROKEN at seq 3: event 3 was modified \(hash mismatch\)\n1 broken sequence number\(s\) among \d+ events read: 3\n?$/);
  });
});
