/**
 * The audit chain of a real server, checked by a verifier written from the
 * documented format (test/helpers/independent-chain.ts, nothing imported from
 * src/audit/), and attacker-style tampering with a copy of its database: each
 * break must be flagged by the independent verifier, by `GET /audit/{acct}/verify`
 * and by `coffer audit verify --data-dir` (`--database` on PostgreSQL), at the
 * right sequence number. On PostgreSQL the copy is a database of its own in the
 * same cluster (test/helpers/raw-db.ts, copyDatabase: pg_dump replayed).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { runCli } from '../helpers/cli.js';
import { copyDatabase, openRawDb, type RawDb, type RawDbTarget } from '../helpers/raw-db.js';
import { documentedHash, HASHED_COLUMNS, verifyIndependently, ZERO_HASH, type RawEvent } from '../helpers/independent-chain.js';

let srv: TestServer;
let api: Client;
let admin: string;
/** The variable id and user agent carry non-ASCII text, so the UTF-8 step of the format is exercised. */
const VAR = 'ci/pässwört-✓';
const AGENT = 'independent-chain-test/1.0 (ümlaut)';

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const load = await api.loadPolicy(admin, 'POST', 'root', `
- !user reader
- !host app
- !variable "${VAR}"
- !permit
  role: !host app
  privilege: [ read, execute ]
  resource: !variable "${VAR}"
- !permit
  role: !user reader
  privilege: read
  resource: !variable "${VAR}"
`);
  expect(load.status).toBe(201);
  const keys = load.json.created_roles;
  const app = await api.login('host/app', keys[`${srv.account}:host:app`].api_key);
  const reader = await api.login('reader', keys[`${srv.account}:user:reader`].api_key);
  // A failed authentication, a secret written, fetched, fetched without execute (denied), and a missing one.
  const badAuth = await api.request('POST', `/authn/${srv.account}/reader/authenticate`, { body: 'not-the-key' });
  expect(badAuth.status).toBe(401);
  expect((await api.setSecret(admin, VAR, 'value-1')).status).toBe(201);
  const fetched = await api.request('GET', `/secrets/${srv.account}/variable/${encodeURIComponent(VAR)}`, { token: app, headers: { 'User-Agent': AGENT } });
  expect(fetched.text).toBe('value-1');
  expect((await api.getSecret(reader, VAR)).status).toBe(403);
  expect((await api.getSecret(app, 'ci/missing')).status).toBe(404);
});
afterAll(() => srv?.close());

/** Every event, read with plain SQL in sequence order (the column list is the documented one of independent-chain.ts, not taken from src/). */
const readEvents = (db: RawDb) => db.all<RawEvent>(`SELECT ${HASHED_COLUMNS.join(', ')}, prev_hash, hash FROM audit_events ORDER BY seq`);

async function eventsIn(dir: RawDbTarget): Promise<RawEvent[]> {
  const db = await openRawDb(dir);
  try {
    return await readEvents(db);
  } finally {
    await db.close();
  }
}

const readLive = () => eventsIn(srv);

/** A consistent copy of the live database in a directory (PostgreSQL: a database) of its own, tampered with by `tamper` (append-only triggers lifted). */
async function tamperedCopy(tamper: (db: RawDb) => Promise<void>): Promise<RawDbTarget> {
  const dir = await copyDatabase(srv);
  const db = await openRawDb(dir);
  try {
    await db.withAuditEditable(() => tamper(db));
  } finally {
    await db.close();
  }
  return dir;
}

/** What the server (on the copy) and the offline command say about the copy's chain. */
async function serverVerdicts(dir: RawDbTarget): Promise<{ http: any; httpStatus: number; cli: any; cliCode: number }> {
  // Offline first: the server appends its own events (the login, the verify) to the copy.
  const where = dir.database ? ['--database', dir.database] : ['--data-dir', dir.dataDir];
  const cli = await runCli(['audit', 'verify', ...where, '--json'], { env: {} });
  const copy = await startTestServer({ dataDir: dir.dataDir, dataKey: srv.dataKey, account: srv.account, ...(dir.database ? { flags: { database: dir.database } } : {}) });
  try {
    const c = new Client(copy.url, srv.account);
    const token = await c.login('admin', srv.adminKey);
    const r = await c.request('GET', `/audit/${srv.account}/verify`, { token });
    return { http: r.json, httpStatus: r.status, cli: JSON.parse(cli.out), cliCode: cli.code };
  } finally {
    await copy.close();
  }
}

/** A seq in the middle of the chain with a successor. */
const middle = (events: RawEvent[]) => events[Math.floor(events.length / 2)]!.seq;

describe('independent audit-chain verifier', () => {
  it('accepts the real chain, recomputing every hash from the documented format', async () => {
    const events = await readLive();
    expect(events.length).toBeGreaterThanOrEqual(10);
    // The traffic above is on record: authn success and failure, policy load, secret set, fetch allowed and denied.
    const actions = new Set(events.map((e) => `${e.action}/${e.result}`));
    for (const a of ['authn/success', 'authn/failure', 'policy/success', 'update/success', 'fetch/success', 'fetch/failure']) {
      expect(actions, a).toContain(a);
    }
    expect(events.some((e) => e.user_agent === AGENT && e.action === 'fetch')).toBe(true);
    expect(events.some((e) => typeof e.resource_id === 'string' && e.resource_id.endsWith(VAR))).toBe(true);
    const report = verifyIndependently(events);
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ ok: true, events: events.length });
    // The documented genesis, and every link by value.
    expect(events[0]!.seq).toBe(1);
    expect(Buffer.from(events[0]!.prev_hash).equals(ZERO_HASH)).toBe(true);
    for (let i = 1; i < events.length; i++) expect(Buffer.from(events[i]!.prev_hash).equals(events[i - 1]!.hash)).toBe(true);
  });

  it('agrees with the server and the offline command on the untouched chain', async () => {
    const dir = await tamperedCopy(async () => {});
    const n = (await eventsIn(dir)).length;
    expect(verifyIndependently(await eventsIn(dir)).ok).toBe(true);
    const v = await serverVerdicts(dir);
    expect(v.cliCode).toBe(0);
    expect(v.cli).toMatchObject({ ok: true, events: n, last_seq: n });
    expect(v.httpStatus).toBe(200);
    expect(v.http).toMatchObject({ ok: true });
  });

  it('an attacker rewrites event N, recomputes its hash and fixes N+1\'s prev_hash: the break at N+1 is flagged by all three', async () => {
    const target = middle(await readLive());
    const dir = await tamperedCopy(async (db) => {
      const [row] = (await readEvents(db)).filter((e) => e.seq === target);
      const forged = { ...row!, message: `${row!.message} (nothing happened)` };
      const { prev_hash, hash: _old, ...columns } = forged;
      const hash = documentedHash(Buffer.from(prev_hash), columns);
      await db.run('UPDATE audit_events SET message = ?, hash = ? WHERE seq = ?', forged.message, hash, target);
      await db.run('UPDATE audit_events SET prev_hash = ? WHERE seq = ?', hash, target + 1);
    });
    const after = await eventsIn(dir);
    // Event N and its link now look right; N+1's own hash (which covers its prev_hash) no longer matches.
    const report = verifyIndependently(after);
    expect(report.badSeqs).toEqual([target + 1]);
    expect(report.problems).toEqual([{ seq: target + 1, kind: 'hash' }]);
    const v = await serverVerdicts(dir);
    expect(v.cliCode).toBe(3);
    expect(v.cli).toMatchObject({ ok: false, first_bad_seq: target + 1, reason: `event ${target + 1} was modified (hash mismatch)` });
    expect(v.httpStatus).toBe(409);
    // Flagged at N+1, not N: the server accepted the forged event N, whose hash this test computed from the
    // documentation alone, so the server hashes exactly as documented.
    expect(v.http).toMatchObject({ ok: false, first_bad_seq: target + 1 });
  });

  it('a changed prev_hash column alone is flagged at that event', async () => {
    const target = middle(await readLive());
    const dir = await tamperedCopy(async (db) => {
      await db.run('UPDATE audit_events SET prev_hash = ? WHERE seq = ?', Buffer.alloc(32, 7), target);
    });
    const report = verifyIndependently(await eventsIn(dir));
    expect(report.badSeqs).toEqual([target]);
    expect(report.problems).toEqual([{ seq: target, kind: 'link' }, { seq: target, kind: 'hash' }]);
    const v = await serverVerdicts(dir);
    expect(v.cliCode).toBe(3);
    expect(v.cli).toMatchObject({ ok: false, first_bad_seq: target });
    expect(v.httpStatus).toBe(409);
    expect(v.http).toMatchObject({ ok: false, first_bad_seq: target });
  });

  it('a deleted row is flagged at the gap', async () => {
    const target = middle(await readLive());
    const dir = await tamperedCopy(async (db) => {
      await db.run('DELETE FROM audit_events WHERE seq = ?', target);
    });
    const report = verifyIndependently(await eventsIn(dir));
    expect(report.badSeqs).toEqual([target + 1]);
    expect(report.problems).toEqual([{ seq: target + 1, kind: 'gap', expectedSeq: target }, { seq: target + 1, kind: 'link' }]);
    const v = await serverVerdicts(dir);
    expect(v.cliCode).toBe(3);
    expect(v.cli).toMatchObject({ ok: false, first_bad_seq: target, reason: `event ${target} is missing (next is ${target + 1})` });
    expect(v.httpStatus).toBe(409);
    expect(v.http).toMatchObject({ ok: false, first_bad_seq: target });
  });

  it('two rows swapped in order (their seq numbers exchanged) are flagged', async () => {
    const target = middle(await readLive());
    const dir = await tamperedCopy(async (db) => {
      await db.run('UPDATE audit_events SET seq = -1 WHERE seq = ?', target);
      await db.run('UPDATE audit_events SET seq = ? WHERE seq = ?', target, target + 1);
      await db.run('UPDATE audit_events SET seq = ? WHERE seq = -1', target + 1);
    });
    const after = await eventsIn(dir);
    const before = await readLive();
    expect(after.find((e) => e.seq === target)!.hash).toEqual(before.find((e) => e.seq === target + 1)!.hash);
    const report = verifyIndependently(after);
    expect(report.badSeqs).toEqual([target, target + 1, target + 2]);
    const v = await serverVerdicts(dir);
    expect(v.cliCode).toBe(3);
    expect(v.cli).toMatchObject({ ok: false, first_bad_seq: target });
    expect(v.httpStatus).toBe(409);
    expect(v.http).toMatchObject({ ok: false, first_bad_seq: target });
  });
});
