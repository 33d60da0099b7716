/**
 * End to end: who may read which audit events (an `auditors` group on policy
 * `ci`), every query filter and the paging against the full list, the online
 * verification seen from one account of several (and tampering), fail-closed
 * for every write path, and canaries in error bodies.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openRawDb } from '../helpers/raw-db.js';
import { Client } from '../helpers/http.js';
import { createAccountIn } from '../../src/server.js';

const CANARY = 'canary-audit-api-Pz4Kw9';
let srv: TestServer;
let api: Client;
let admin: string;
let exec: string;
let alice: string;
let mallory: string;
let keys: Record<string, { api_key: string }>;
let phase2: string;
const A = () => srv.account;

interface Event {
  seq: number;
  time: string;
  action: string;
  result: string;
  role: string | null;
  resource: string | null;
  message: string;
}

async function events(token: string, query = ''): Promise<Event[]> {
  const r = await api.request('GET', `/audit/${A()}?limit=1000${query}`, { token });
  expect(r.status, r.text).toBe(200);
  expect(r.json.next_cursor).toBeNull();
  return r.json.events;
}
const seqs = (list: Event[]) => list.map((e) => e.seq);

/** What an auditor of policy `ci` may read: ci itself, everything under ci/, the users of ci and ci/sub. */
const aboutCi = (resource: string | null) =>
  resource !== null &&
  (resource === `${A()}:policy:ci` || new RegExp(`^${A()}:[^:]+:ci/`).test(resource) || /^[^:]+:user:[^:]+@ci(-sub)?$/.test(resource));

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', `
- !group auditors
- !user alice
- !user mallory
- !host exec
- !grant
  role: !group auditors
  member: !user alice
- !policy
  id: ci
  body:
  - !variable db
  - !user bob
  - !policy
    id: sub
    body:
    - !variable deep
    - !user carol
- !policy
  id: other
  body:
  - !variable "x:ci/y"
  - !variable plain
- !policy
  id: CI
  body:
  - !variable z
- !permit
  role: !group auditors
  privilege: [ read, audit ]
  resource: !policy ci
- !permit
  role: !host exec
  privilege: [ read, execute ]
  resource: [ !variable ci/db, !variable ci/sub/deep, !variable "other/x:ci/y", !variable other/plain, !variable CI/z ]
`);
  expect(r.status, r.text).toBe(201);
  keys = r.json.created_roles;
  const key = (kind: string, id: string) => keys[`${A()}:${kind}:${id}`]!.api_key;
  exec = await api.login('host/exec', key('host', 'exec'));
  alice = await api.login('alice', key('user', 'alice'));
  mallory = await api.login('mallory', key('user', 'mallory'));
  for (const id of ['ci/db', 'ci/sub/deep', 'other/x:ci/y', 'other/plain', 'CI/z']) {
    expect((await api.setSecret(admin, id, `${CANARY}-${id}`)).status).toBe(201);
    expect((await api.getSecret(exec, id)).status).toBe(200);
  }
  expect((await api.getSecret(exec, 'ci/missing')).status).toBe(404);
  await api.login('bob@ci', key('user', 'bob@ci'));
  await api.login('carol@ci-sub', key('user', 'carol@ci-sub'));
  // Phase 2, two minutes later on the server's (injected) clock; tokens live 8 minutes.
  srv.clock.advance(120);
  phase2 = new Date(srv.clock.nowMs()).toISOString();
  expect((await api.getSecret(exec, 'ci/db')).status).toBe(200);
  expect((await api.getSecret(mallory, 'ci/db')).status).toBe(404);
  expect((await api.request('POST', `/authn/${A()}/bob@ci/authenticate`, { body: 'wrong' })).status).toBe(401);
});
afterAll(() => srv.close());

describe('who may read which events', () => {
  it('a member of an auditors group with audit on policy ci sees exactly the events about ci, its nested policies and their users', async () => {
    const all = await events(admin);
    const mine = await events(alice);
    expect(seqs(mine)).toEqual(seqs(all.filter((e) => aboutCi(e.resource))));
    const resources = new Set(mine.map((e) => e.resource));
    for (const r of [`${A()}:variable:ci/db`, `${A()}:variable:ci/sub/deep`, `${A()}:variable:ci/missing`, `${A()}:user:bob@ci`, `${A()}:user:carol@ci-sub`]) {
      expect(resources.has(r), r).toBe(true);
    }
    // Look-alikes of other policies stay hidden: an id containing ":ci/", another case, another policy.
    for (const r of [`${A()}:variable:other/x:ci/y`, `${A()}:variable:CI/z`, `${A()}:variable:other/plain`, `${A()}:user:mallory`, `${A()}:policy:root`]) {
      expect(resources.has(r), r).toBe(false);
      expect(all.some((e) => e.resource === r), `admin sees ${r}`).toBe(true);
    }
    const denied = mine.find((e) => e.action === 'authn' && e.result === 'failure');
    expect(denied).toMatchObject({ resource: `${A()}:user:bob@ci` });
  });

  it('a role without audit gets an empty page, not 403; a token is required', async () => {
    for (const token of [mallory, exec]) {
      const r = await api.request('GET', `/audit/${A()}`, { token });
      expect(r.status).toBe(200);
      expect(r.json).toEqual({ events: [], next_cursor: null });
    }
    expect((await api.request('GET', `/audit/${A()}`)).status).toBe(401);
  });

  it('the same scope applies to the NDJSON export', async () => {
    const r = await api.request('GET', `/audit/${A()}?order=asc`, { token: alice, headers: { Accept: 'application/x-ndjson' } });
    expect(r.headers.get('content-type')).toContain('application/x-ndjson');
    const lines = r.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Event);
    expect(seqs(lines)).toEqual(seqs(await events(alice, '&order=asc')));
    expect(lines.every((e) => aboutCi(e.resource))).toBe(true);
  });
});

describe('filters', () => {
  // The query is built when the test runs (phase2 is known only after beforeAll).
  const cases: [string, () => string, (e: Event) => boolean][] = [
    ['action', () => '&action=authn', (e) => e.action === 'authn'],
    ['result', () => '&result=failure', (e) => e.result === 'failure'],
    ['resource (kind:id)', () => '&resource=variable:ci/db', (e) => e.resource === `${A()}:variable:ci/db`],
    ['resource (full id with a colon inside)', () => `&resource=${encodeURIComponent(`${A()}:variable:other/x:ci/y`)}`, (e) => e.resource === `${A()}:variable:other/x:ci/y`],
    ['role', () => '&role=host:exec', (e) => e.role === `${A()}:host:exec`],
    ['q (substring of the message)', () => `&q=${encodeURIComponent('tried to fetch')}`, (e) => e.message.includes('tried to fetch')],
    ['since', () => `&since=${encodeURIComponent(phase2)}`, (e) => e.time >= phase2],
    ['until', () => `&until=${encodeURIComponent(phase2)}`, (e) => e.time < phase2],
    ['combined', () => '&action=fetch&result=failure&role=user:mallory', (e) => e.action === 'fetch' && e.result === 'failure' && e.role === `${A()}:user:mallory`],
  ];
  it.each(cases)('%s', async (_name, query, keep) => {
    const all = await events(admin);
    const filtered = await events(admin, query());
    expect(filtered.length).toBeGreaterThan(0);
    expect(seqs(filtered)).toEqual(seqs(all.filter(keep)));
  });

  it('q matches % and _ literally, not as wildcards', async () => {
    expect(await events(admin, `&q=${encodeURIComponent('tried%fetch')}`)).toEqual([]);
    expect(await events(admin, `&q=${encodeURIComponent('tried_to')}`)).toEqual([]);
    expect((await events(admin, `&q=${encodeURIComponent('tried to')}`)).length).toBeGreaterThan(0);
  });

  it('since and until split the events into the two phases; order=asc reverses the order', async () => {
    const all = await events(admin);
    const before = await events(admin, `&until=${encodeURIComponent(phase2)}`);
    const after = await events(admin, `&since=${encodeURIComponent(phase2)}`);
    expect(before.length).toBeGreaterThan(0);
    expect(after.length).toBeGreaterThan(0);
    expect([...seqs(after), ...seqs(before)]).toEqual(seqs(all));
    expect(seqs(await events(admin, '&order=asc'))).toEqual(seqs(all).reverse());
  });

  it.each([
    ['result=maybe', "'result' must be 'success' or 'failure'"],
    ['order=sideways', "'order' must be 'asc' or 'desc'"],
    ['limit=0', "'limit' must be an integer from 1 to 1000"],
    ['limit=1001', "'limit' must be an integer from 1 to 1000"],
    ['limit=ten', "'limit' must be an integer from 1 to 1000"],
    ['cursor=abc', "'cursor' must be the next_cursor of a previous page"],
    ['since=yesterday', "'since' must be an ISO 8601 time"],
    ['until=soon', "'until' must be an ISO 8601 time"],
    ['resource=nocolon', "Invalid id: 'nocolon'"],
  ])('refuses %s with 422 and says why', async (query, message) => {
    const r = await api.request('GET', `/audit/${A()}?${query}`, { token: admin });
    expect(r.status).toBe(422);
    expect(r.json.error.message).toContain(message);
  });
});

describe('paging', () => {
  it.each(['desc', 'asc'])('cursor pages (%s) add up to the full list, without gaps or repeats', async (order) => {
    for (const token of [admin, alice]) {
      const all = await events(token, `&order=${order}`);
      const paged: Event[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const r = await api.request('GET', `/audit/${A()}?limit=4&order=${order}${cursor ? `&cursor=${cursor}` : ''}`, { token });
        expect(r.status).toBe(200);
        expect(r.json.events.length).toBeLessThanOrEqual(4);
        paged.push(...r.json.events);
        cursor = r.json.next_cursor;
        expect(++pages).toBeLessThan(500);
      } while (cursor !== null);
      expect(seqs(paged)).toEqual(seqs(all));
      expect(pages).toBeGreaterThan(1);
    }
  });

  it('the NDJSON export starts after the cursor', async () => {
    const all = await events(admin);
    const cursor = all[5]!.seq;
    const r = await api.request('GET', `/audit/${A()}?cursor=${cursor}`, { token: admin, headers: { Accept: 'application/x-ndjson' } });
    expect(seqs(r.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Event))).toEqual(seqs(all.slice(6)));
  });
});

describe('online verification', () => {
  it("needs audit on root; reports this account's own counts in snake_case, even with other accounts on the server", async () => {
    expect((await api.request('GET', `/audit/${A()}/verify`, { token: alice })).status).toBe(403);
    const other = await createAccountIn(srv.server.vault, 'acme2');
    const otherApi = new Client(srv.url, 'acme2');
    const otherAdmin = await otherApi.login('admin', other.api_key);
    expect((await otherApi.loadPolicy(otherAdmin, 'POST', 'root', '- !variable a\n- !variable b\n')).status).toBe(201);

    const count = async (client: Client, token: string) => {
      const r = await client.request('GET', `/audit/${client.account}?order=asc`, { token, headers: { Accept: 'application/x-ndjson' } });
      return r.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Event);
    };
    const mine = await count(api, admin);
    const theirs = await count(otherApi, otherAdmin);
    const v = await api.request('GET', `/audit/${A()}/verify`, { token: admin });
    expect(v.status).toBe(200);
    expect(v.json).toEqual({ ok: true, account: A(), events: mine.length, last_seq: mine.at(-1)!.seq });
    const w = await otherApi.request('GET', '/audit/acme2/verify', { token: otherAdmin });
    expect(w.json).toEqual({ ok: true, account: 'acme2', events: theirs.length, last_seq: theirs.at(-1)!.seq });
    // Neither count is the server-wide one.
    const db = await openRawDb(srv);
    const total = await db.count('FROM audit_events');
    await db.close();
    expect(v.json.events + w.json.events).toBeLessThanOrEqual(total);
    expect(v.json.events).toBeLessThan(total);
  });

  it("detects another account's edited or deleted event and a later one of its own (409, snake_case report of every break)", async () => {
    expect((await api.request('GET', '/whoami', { token: admin })).status).toBe(200); // an event of this account after acme2's
    const db = await openRawDb(srv);
    const target = (await db.get("SELECT * FROM audit_events WHERE account = 'acme2' ORDER BY seq LIMIT 1")) as Record<string, unknown> & { seq: number; message: string };
    const mine = (await db.get('SELECT count(*) AS n, max(seq) AS last FROM audit_events WHERE account = ?', A())) as { n: number; last: number };
    const later = (await db.get('SELECT seq, message FROM audit_events WHERE account = ? AND seq > ? ORDER BY seq DESC LIMIT 1', A(), target.seq)) as { seq: number; message: string };
    await db.withAuditEditable(async () => {
      try {
        await db.run('UPDATE audit_events SET message = ? WHERE seq = ?', `${target.message.slice(0, -1)}#`, target.seq);
        await db.run('UPDATE audit_events SET message = ? WHERE seq = ?', `${later.message}!`, later.seq);
        let r = await api.request('GET', `/audit/${A()}/verify`, { token: admin });
        expect(r.status).toBe(409);
        expect(r.json).toEqual({
          ok: false,
          account: A(),
          events: mine.n,
          last_seq: mine.last,
          first_bad_seq: target.seq,
          reason: `event ${target.seq} was modified (hash mismatch)`,
          bad_seqs: [target.seq, later.seq],
          bad_count: 2,
        });

        await db.run('UPDATE audit_events SET message = ? WHERE seq = ?', target.message, target.seq);
        await db.run('UPDATE audit_events SET message = ? WHERE seq = ?', later.message, later.seq);
        expect((await api.request('GET', `/audit/${A()}/verify`, { token: admin })).status).toBe(200);

        await db.run('DELETE FROM audit_events WHERE seq = ?', target.seq);
        r = await api.request('GET', `/audit/${A()}/verify`, { token: admin });
        expect(r.status).toBe(409);
        expect(r.json).toMatchObject({ ok: false, first_bad_seq: target.seq, reason: `event ${target.seq} is missing (next is ${target.seq + 1})`, bad_seqs: [target.seq], bad_count: 1 });
      } finally {
        const cols = Object.keys(target);
        await db.run(`INSERT INTO audit_events (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')}) ON CONFLICT DO NOTHING`, ...Object.values(target));
      }
    }).finally(() => db.close());
    expect((await api.request('GET', `/audit/${A()}/verify`, { token: admin })).json.ok).toBe(true);
  });
});

describe('fail closed on every path', () => {
  it('when the audit log cannot be written: 503, no value bytes, nothing written, no token issued', async () => {
    const db = await openRawDb(srv);
    const versions = () => db.count('FROM secrets');
    const before = await versions();
    const restore = await db.failAuditInserts();
    try {
      const id = `${A()}:variable:ci/db`;
      const replies = [
        await api.request('GET', `/secrets?variable_ids=${encodeURIComponent(id)}`, { token: exec }),
        await api.request('GET', `/secrets?variable_ids=${encodeURIComponent(id)}`, { token: exec, headers: { 'Accept-Encoding': 'base64' } }),
        await api.request('POST', `/secrets/${A()}/batch`, { token: exec, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ids: ['ci/db', 'ci/sub/deep'] }) }),
        await api.getSecret(exec, 'ci/db'),
        await api.setSecret(admin, 'ci/db', `${CANARY}-new`),
        await api.loadPolicy(admin, 'POST', 'root', '- !variable never-created\n'),
        await api.request('POST', `/authn/${A()}/host%2Fexec/authenticate`, { body: keys[`${A()}:host:exec`]!.api_key }),
      ];
      for (const r of replies) {
        expect(r.status).toBe(503);
        expect(r.json.error.code).toBe('service_unavailable');
        expect(r.text).not.toContain(CANARY);
        expect(r.bytes.includes(Buffer.from(Buffer.from(`${CANARY}-ci/db`).toString('base64')))).toBe(false);
        expect(r.text).not.toContain('"signature"');
      }
    } finally {
      await restore();
    }
    expect(await versions()).toBe(before);
    await db.close();
    expect((await api.getSecret(exec, 'ci/db')).text).toBe(`${CANARY}-ci/db`);
    expect((await api.request('GET', `/resources/${A()}/variable/never-created`, { token: admin })).status).toBe(404);
  });
});

describe('canaries', () => {
  it('a value, an API key or a password sent with a refused request appears in no error body, log or event', async () => {
    const basic = (login: string, secret: string) => `Basic ${Buffer.from(`${login}:${secret}`).toString('base64')}`;
    const replies = [
      await api.setSecret(mallory, 'ci/db', CANARY),
      await api.setSecret(admin, 'ci/nope', CANARY),
      await api.request('POST', `/secrets/${A()}/group/x`, { token: admin, body: CANARY }),
      await api.request('POST', `/secrets/${A()}/variable/ci%2Fdb`, { token: admin, body: `${CANARY}${'x'.repeat(1024 * 1024)}` }),
      await api.request('POST', `/authn/${A()}/alice/authenticate`, { body: CANARY }),
      await api.request('GET', `/authn/${A()}/login`, { headers: { Authorization: basic('alice', CANARY) } }),
      await api.request('PUT', `/authn/${A()}/password`, { headers: { Authorization: basic('alice', CANARY) }, body: `${CANARY}-A1!` }),
      // Refused (a newline), then accepted: neither the refused nor the new password is written anywhere.
      await api.request('PUT', `/authn/${A()}/password`, { headers: { Authorization: basic('alice', keys[`${A()}:user:alice`]!.api_key) }, body: `${CANARY}\nx` }),
      await api.request('PUT', `/authn/${A()}/password`, { headers: { Authorization: basic('alice', keys[`${A()}:user:alice`]!.api_key) }, body: CANARY }),
      await api.request('POST', `/secrets/${A()}/batch`, { token: exec, headers: { 'Content-Type': 'application/json' }, body: `{"ids": ${CANARY}` }),
    ];
    expect(replies.map((r) => r.status)).toEqual([404, 404, 404, 413, 401, 401, 401, 422, 204, 422]);
    const login = await api.request('GET', `/authn/${A()}/login`, { headers: { Authorization: basic('alice', CANARY) } });
    expect(login.status).toBe(200);
    for (const r of replies) expect(r.text).not.toContain(CANARY);
    expect(srv.logs.join('\n')).not.toContain(CANARY);
    const db = await openRawDb(srv);
    const dump = JSON.stringify(await db.all('SELECT * FROM audit_events'));
    await db.close();
    expect(dump).not.toContain(CANARY);
    const everything = await api.request('GET', `/audit/${A()}?limit=1000`, { token: admin });
    expect(everything.text).not.toContain(CANARY);
  });
});
