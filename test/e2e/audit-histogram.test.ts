/**
 * End to end: GET /audit/{account}/histogram against GET /audit/{account}
 * as the oracle — for every bucket size, aligned and unaligned ranges, each
 * filter, an account-wide auditor (served by the rollup of migration 0009)
 * and a scoped one (served by the audit read), the counts per bucket are
 * those of the events the audit read returns for the same filter and caller.
 * Also: a caller who may audit nothing counts nothing, too many buckets is
 * 422, and the parameters are checked like the audit read's.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let srv: TestServer;
let api: Client;
const A = 'cucumber';
const keys = new Map<string, string>();
let t0 = 0;
let t1 = 0;

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const SIZE = { minute: MINUTE, hour: HOUR, day: DAY } as const;
type Bucket = keyof typeof SIZE;
const iso = (ms: number) => new Date(ms).toISOString();

const POLICY = `
- !user auditor
- !user reader
- !user nobody
- !policy
  id: ci
  body:
  - !variable a
  - !variable b
- !policy
  id: other
  body:
  - !variable c
- !permit
  role: !user auditor
  privilege: [ audit ]
  resource: !policy ci
- !permit
  role: !user reader
  privilege: [ execute ]
  resource: !variable ci/a
`;

const token = (login: string) => api.login(login, keys.get(login)!);

interface Event {
  seq: number;
  time: string;
  action: string;
  result: string;
}

/** Every event the audit read shows `login` for the filter, oldest first. */
async function auditEvents(login: string, filter: string, tokenJson?: string): Promise<Event[]> {
  const t = tokenJson ?? (await token(login));
  const out: Event[] = [];
  let cursor = '';
  for (;;) {
    const r = await api.request('GET', `/audit/${A}?order=asc&limit=1000${filter}${cursor}`, { token: t });
    expect(r.status, r.text).toBe(200);
    out.push(...r.json.events);
    if (r.json.next_cursor === null) return out;
    cursor = `&cursor=${r.json.next_cursor}`;
  }
}

/** The histogram the audit read implies. */
function expected(events: Event[], bucket: Bucket, since: number, until: number) {
  const size = SIZE[bucket];
  const first = Math.floor(since / size) * size;
  const count = Math.ceil((until - first) / size);
  const buckets = Array.from({ length: count }, (_, i) => ({ start: iso(first + i * size), fetches: 0, fetch_failures: 0, failures: 0, total: 0 }));
  for (const e of events) {
    const b = buckets[Math.floor((Date.parse(e.time) - first) / size)]!;
    b.total++;
    if (e.result === 'failure') b.failures++;
    if (e.action === 'fetch') b.fetches++;
    if (e.action === 'fetch' && e.result === 'failure') b.fetch_failures++;
  }
  return { bucket, since: iso(since), until: iso(until), buckets };
}

async function histogram(login: string, query: string, tokenJson?: string) {
  return api.request('GET', `/audit/${A}/histogram?${query}`, { token: tokenJson ?? (await token(login)) });
}

/** Asserts the histogram equals the one implied by the audit read for the same caller, range and filter. */
async function agrees(login: string, bucket: Bucket, since: number, until: number, filter = '') {
  const range = `&since=${iso(since)}&until=${iso(until)}`;
  // One token for both reads: a login is itself an event (authn), and reads are not audited.
  const t = await token(login);
  const events = await auditEvents(login, `${range}${filter}`, t);
  const r = await histogram(login, `bucket=${bucket}${range}${filter}`, t);
  expect(r.status, r.text).toBe(200);
  expect(r.json).toEqual(expected(events, bucket, since, until));
  return { events, body: r.json };
}

beforeAll(async () => {
  srv = await startTestServer({ account: A });
  api = new Client(srv.url, A);
  keys.set('admin', srv.adminKey);
  const admin = await token('admin');
  const r = await api.loadPolicy(admin, 'POST', 'root', POLICY);
  expect(r.status, r.text).toBe(201);
  for (const login of ['auditor', 'reader', 'nobody']) keys.set(login, r.json.created_roles[`${A}:user:${login}`].api_key);
  for (const v of ['ci/a', 'ci/b', 'other/c']) expect((await api.setSecret(admin, v, `value-of-${v}`)).status).toBe(201);
  // Activity spread over several minutes, hours and two days: each round moves the clock 7 h 13 min 17 s.
  t0 = srv.clock.nowMs();
  for (let round = 0; round < 7; round++) {
    srv.clock.advance(7 * 3600 + 13 * 60 + 17);
    const adminToken = await token('admin');
    const readerToken = await token('reader');
    for (let i = 0; i <= round % 3; i++) expect((await api.getSecret(adminToken, 'ci/a')).status).toBe(200);
    expect((await api.getSecret(adminToken, 'other/c')).status).toBe(200);
    expect((await api.getSecret(adminToken, 'ci/missing')).status).toBe(404);
    expect((await api.getSecret(readerToken, 'ci/a')).status).toBe(200);
    expect((await api.getSecret(readerToken, 'ci/b')).status).toBe(404); // cannot see it: a failed fetch
    srv.clock.advance(45);
    expect((await api.getSecret(readerToken, 'ci/a')).status).toBe(200);
  }
  t1 = srv.clock.nowMs() + 1000;
});

afterAll(async () => {
  await srv?.close();
});

describe('GET /audit/{account}/histogram', () => {
  it('day, hour and minute buckets agree with the audit read for an account-wide auditor (admin), aligned or not', async () => {
    const day = await agrees('admin', 'day', t0 - 5000, t1);
    expect(day.events.length).toBeGreaterThan(40);
    expect(day.body.buckets.reduce((n: number, b: { total: number }) => n + b.total, 0)).toBe(day.events.length);
    await agrees('admin', 'hour', t0, t1);
    await agrees('admin', 'hour', Math.floor(t0 / HOUR) * HOUR, Math.ceil(t1 / HOUR) * HOUR);
    // Minutes over the busiest 6 hours, starting and ending mid-minute (partial pieces counted from the events).
    await agrees('admin', 'minute', t0 + 7 * HOUR + 13 * MINUTE + 30_000, t0 + 13 * HOUR + 20_500);
    // A range inside one minute, and one ending just after a round's first events.
    await agrees('admin', 'minute', t0 + 7 * HOUR + 13 * MINUTE + 17_000, t0 + 7 * HOUR + 14 * MINUTE + 2_000);
    await agrees('admin', 'day', t0 + 14 * HOUR + 26 * MINUTE + 34_100, t0 + 29 * HOUR);
  });

  it('counts fetches, fetch failures and failures as the openapi says, with action and result filters', async () => {
    const all = await agrees('admin', 'hour', t0, t1);
    const sum = (k: string) => all.body.buckets.reduce((n: number, b: Record<string, number>) => n + b[k]!, 0);
    expect(sum('fetches')).toBe(all.events.filter((e) => e.action === 'fetch').length);
    expect(sum('fetch_failures')).toBe(all.events.filter((e) => e.action === 'fetch' && e.result === 'failure').length);
    expect(sum('failures')).toBe(all.events.filter((e) => e.result === 'failure').length);
    expect(sum('fetch_failures')).toBeGreaterThan(0);
    expect(sum('fetches')).toBeLessThan(sum('total'));
    await agrees('admin', 'hour', t0, t1, '&action=fetch');
    await agrees('admin', 'hour', t0, t1, '&result=failure');
    await agrees('admin', 'minute', t0 + 7 * HOUR, t0 + 8 * HOUR, '&action=fetch&result=failure');
    await agrees('admin', 'day', t0, t1, '&action=authn&result=success');
  });

  it('agrees with the audit read for resource, role and q filters', async () => {
    const byResource = await agrees('admin', 'hour', t0, t1, `&resource=${encodeURIComponent('variable:ci/a')}`);
    expect(byResource.events.length).toBeGreaterThan(0);
    const byRole = await agrees('admin', 'hour', t0, t1, `&role=${encodeURIComponent(`${A}:user:reader`)}&result=failure`);
    expect(byRole.events.length).toBe(7);
    await agrees('admin', 'day', t0, t1, `&q=${encodeURIComponent('ci/missing')}`);
  });

  it('is scoped like the audit read: an auditor of policy ci counts only the events about ci', async () => {
    const scoped = await agrees('auditor', 'hour', t0, t1);
    const everything = await auditEvents('admin', `&since=${iso(t0)}&until=${iso(t1)}`);
    expect(scoped.events.length).toBeGreaterThan(0);
    expect(scoped.events.length).toBeLessThan(everything.length);
    await agrees('auditor', 'minute', t0 + 7 * HOUR + 13 * MINUTE, t0 + 8 * HOUR, '&action=fetch');
    await agrees('auditor', 'day', t0, t1, '&result=failure');
    // other/c is not under ci: nothing about it is counted for the auditor.
    const c = await agrees('auditor', 'day', t0, t1, `&resource=${encodeURIComponent('variable:other/c')}`);
    expect(c.events).toEqual([]);
  });

  it('reads the rollup by its primary key and the range ends by the time index (SQLite plans: no table scan)', async () => {
    const store = srv.server.vault.services.store;
    const plan = await store.audit.explainCounts(
      { account: A, grain: 'm', fromKey: '2026-01-01T00:00', toKey: '2026-01-01T01:00', action: 'fetch' },
      { account: A, since: '2026-01-01T00:00:10.000Z', until: '2026-01-01T00:01:00.000Z', result: 'failure' },
    );
    if (store.backend === 'sqlite') {
      expect(plan.join('\n')).toContain('SEARCH audit_counts USING PRIMARY KEY (account=? AND grain=? AND start>? AND start<?)');
      expect(plan.join('\n')).toContain('SEARCH audit_events USING INDEX audit_events_account_time (account=? AND time>? AND time<?)');
      expect(plan.filter((l) => /^SCAN/.test(l))).toEqual([]);
    } else {
      expect(plan.length).toBeGreaterThan(0);
    }
  });

  it('a caller who may audit nothing gets zero counts (not 403)', async () => {
    const r = await histogram('nobody', `bucket=day&since=${iso(t0)}&until=${iso(t1)}`);
    expect(r.status, r.text).toBe(200);
    expect(r.json.buckets.length).toBeGreaterThan(0);
    expect(r.json.buckets.every((b: { total: number }) => b.total === 0)).toBe(true);
  });

  it('refuses more than 1,500 buckets with 422 telling to use a bigger bucket', async () => {
    const r = await histogram('admin', `bucket=minute&since=${iso(t0)}&until=${iso(t0 + 2 * DAY)}`);
    expect(r.status, r.text).toBe(422);
    expect(r.json.error.message).toContain('use a bigger bucket');
    const days = await histogram('admin', `bucket=day&since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z`);
    expect(days.status).toBe(422);
    expect(days.json.error.message).toContain('shorter range');
    // Exactly 1,500 minutes is fine.
    const ok = await histogram('admin', `bucket=minute&since=${iso(Math.floor(t0 / MINUTE) * MINUTE)}&until=${iso(Math.floor(t0 / MINUTE) * MINUTE + 1500 * MINUTE)}`);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json.buckets).toHaveLength(1500);
  });

  it('checks its parameters like the audit read (422)', async () => {
    const range = `&since=${iso(t0)}&until=${iso(t1)}`;
    const cases: [string, string][] = [
      [`since=${iso(t0)}&until=${iso(t1)}`, "'bucket'"],
      [`bucket=week${range}`, "'bucket'"],
      [`bucket=hour&until=${iso(t1)}`, "'since' and 'until' are required"],
      [`bucket=hour&since=${iso(t0)}`, "'since' and 'until' are required"],
      [`bucket=hour&since=yesterday&until=${iso(t1)}`, "'since' must be an ISO 8601 time"],
      [`bucket=hour&since=${iso(t1)}&until=${iso(t0)}`, "'until' must be after 'since'"],
      [`bucket=hour${range}&result=maybe`, "'result'"],
      [`bucket=hour${range}&q=ab`, "'q' must be at least 3 characters"],
      [`bucket=hour${range}&resource=nokind`, 'Invalid id'],
    ];
    for (const [query, message] of cases) {
      const r = await histogram('admin', query);
      expect(r.status, query).toBe(422);
      expect(r.json.error.message, query).toContain(message);
    }
  });
});
