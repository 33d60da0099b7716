/** End to end: secrets, encryption at rest, fail-closed audit, audit query (issue: secrets and audit). */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { openRawDb } from '../helpers/raw-db.js';

const CANARY = 'canary-Zq8xP3vLm7';
let srv: TestServer;
let api: Client;
let admin: string;
let host: string;
let reader: string;
let auditor: string;
const A = () => srv.account;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', `
- !host exec
- !user reader
- !user auditor
- !policy
  id: ci
  body:
  - !variable db
  - !variable
    id: json
    mime_type: application/json
  - !variable bin
  - !variable empty
- !policy
  id: other
  body:
  - !variable x
- !permit
  role: !host exec
  privilege: [ read, execute ]
  resource: [ !variable ci/db, !variable ci/json, !variable ci/bin, !variable ci/empty ]
- !permit
  role: !user reader
  privilege: read
  resource: !variable ci/db
- !permit
  role: !user auditor
  privilege: [ read, audit ]
  resource: !policy ci
`);
  expect(r.status).toBe(201);
  const keys = r.json.created_roles;
  host = await api.login('host/exec', keys[`${A()}:host:exec`].api_key);
  reader = await api.login('reader', keys[`${A()}:user:reader`].api_key);
  auditor = await api.login('auditor', keys[`${A()}:user:auditor`].api_key);
});
afterAll(() => srv.close());

describe('secrets', () => {
  it('stores versions and fetches latest or a given version, raw, octet-stream by default', async () => {
    expect((await api.setSecret(admin, 'ci/db', 'v-1')).status).toBe(201);
    expect((await api.setSecret(admin, 'ci/db', 'v-2')).status).toBe(201);
    const latest = await api.getSecret(host, 'ci/db');
    expect(latest.text).toBe('v-2');
    expect(latest.headers.get('content-type')).toBe('application/octet-stream');
    expect((await api.getSecret(host, 'ci/db', '?version=1')).text).toBe('v-1');
    expect((await api.getSecret(host, 'ci/db', '?version=3')).status).toBe(404);
    expect((await api.getSecret(host, 'ci/db', '?version=abc')).status).toBe(422);
    // Unencoded slashes and a trailing slash (Ruby) work too.
    expect((await api.request('GET', `/secrets/${A()}/variable/ci/db/`, { token: host })).text).toBe('v-2');
  });

  it('writing the same value again creates no version; 21 writes keep 20 and numbers keep rising', async () => {
    await api.setSecret(admin, 'ci/db', 'v-2');
    let show = await api.request('GET', `/resources/${A()}/variable/ci/db`, { token: admin });
    expect(show.json.secrets.map((s: any) => s.version)).toEqual([1, 2]);
    for (let i = 3; i <= 22; i++) await api.setSecret(admin, 'ci/db', `v-${i}`);
    show = await api.request('GET', `/resources/${A()}/variable/ci/db`, { token: admin });
    expect(show.json.secrets).toHaveLength(20);
    expect(show.json.secrets[0]).toEqual({ version: 3, expires_at: null });
    expect((await api.getSecret(host, 'ci/db', '?version=1')).status).toBe(404);
  });

  it('answers Conjur\'s CONJ00076E 404 for empty, missing and invisible variables', async () => {
    for (const id of ['ci/empty', 'ci/nope']) {
      const r = await api.getSecret(host, id);
      expect(r.status).toBe(404);
      expect(r.json).toEqual({ error: { code: 'not_found', message: `CONJ00076E Variable ${A()}:variable:${id} is empty or not found.` } });
    }
    await api.setSecret(admin, 'other/x', 'hidden');
    expect((await api.getSecret(host, 'other/x')).status).toBe(404);
    expect((await api.getSecret(reader, 'ci/db')).status).toBe(403);
    expect((await api.getSecret(reader, 'ci/db')).text).toBe('');
    expect((await api.setSecret(reader, 'ci/db', 'x')).status).toBe(403);
    expect((await api.request('POST', `/secrets/${A()}/group/x`, { token: admin, body: 'x' })).status).toBe(404);
  });

  it('refuses an empty value with 422', async () => {
    const r = await api.setSecret(admin, 'ci/db', '');
    expect(r.status).toBe(422);
    expect(r.json.error.message).toBe("'value' may not be empty");
  });

  it('uses conjur/mime_type and round-trips binary values', async () => {
    await api.setSecret(admin, 'ci/json', '{"a":1}');
    const j = await api.getSecret(host, 'ci/json');
    expect(j.headers.get('content-type')).toBe('application/json');
    const bin = Buffer.from([0, 255, 1, 254, 10, 13, 0x80]);
    await api.setSecret(admin, 'ci/bin', bin);
    expect((await api.getSecret(host, 'ci/bin')).bytes.equals(bin)).toBe(true);
  });

  it('batch GET: all-or-nothing, base64 on request, 406 for binary without it', async () => {
    const ids = `${A()}:variable:ci/db,${A()}:variable:ci/json`;
    const r = await api.request('GET', `/secrets?variable_ids=${encodeURIComponent(ids)}`, { token: host });
    expect(r.status).toBe(200);
    expect(r.json[`${A()}:variable:ci/json`]).toBe('{"a":1}');
    const withBin = `${A()}:variable:ci/bin`;
    expect((await api.request('GET', `/secrets?variable_ids=${withBin}`, { token: host })).status).toBe(406);
    const b64 = await api.request('GET', `/secrets/?variable_ids=${withBin}`, { token: host, headers: { 'Accept-Encoding': 'Base64' } });
    expect(b64.headers.get('content-encoding')).toBe('base64');
    expect(Buffer.from(b64.json[withBin], 'base64')).toEqual(Buffer.from([0, 255, 1, 254, 10, 13, 0x80]));
    expect((await api.request('GET', `/secrets?variable_ids=${A()}:variable:ci/db,${A()}:variable:ci/empty`, { token: host })).status).toBe(404);
    expect((await api.request('GET', `/secrets?variable_ids=${A()}:variable:ci/db,${A()}:variable:other/x`, { token: host })).status).toBe(403);
    for (const bad of ['', ',,,', `${A()}:variable:ci/db,`]) {
      expect((await api.request('GET', `/secrets?variable_ids=${bad}`, { token: host })).status).toBe(422);
    }
  });

  it('batch POST: per-variable results, base64 for binary values', async () => {
    const r = await api.request('POST', `/secrets/${A()}/batch`, {
      token: host,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ids: ['ci/db', `${A()}:variable:ci/bin`, 'ci/empty', 'other/x'] }),
    });
    expect(r.status).toBe(200);
    expect(r.json.values[`${A()}:variable:ci/db`]).toBe('v-22');
    expect(r.json.base64).toEqual([`${A()}:variable:ci/bin`]);
    expect(r.json.errors[`${A()}:variable:ci/empty`].code).toBe('not_found');
    expect(r.json.errors[`${A()}:variable:other/x`].code).toBe('not_found');
    const tooMany = await api.request('POST', `/secrets/${A()}/batch`, { token: host, body: JSON.stringify({ ids: Array.from({ length: 1001 }, (_, i) => `v${i}`) }) });
    expect(tooMany.status).toBe(422);
  });
});

describe('encryption at rest', () => {
  it('stores no plaintext, and a ciphertext swapped between variables fails with 500, never the other value', async () => {
    await api.setSecret(admin, 'ci/empty', CANARY);
    const db = await openRawDb(srv);
    const all = await db.all<{ ciphertext: Buffer }>('SELECT ciphertext FROM secrets');
    expect(all.some((r) => r.ciphertext.includes(Buffer.from(CANARY)))).toBe(false);
    const src = (await db.get('SELECT * FROM secrets WHERE resource_id = ?', `${A()}:variable:ci/empty`)) as any;
    await db.run('UPDATE secrets SET nonce = ?, ciphertext = ?, key_version = ? WHERE resource_id = ?', src.nonce, src.ciphertext, src.key_version, `${A()}:variable:ci/json`);
    await db.close();
    const r = await api.getSecret(host, 'ci/json');
    expect(r.status).toBe(500);
    expect(r.text).not.toContain(CANARY);
    await api.setSecret(admin, 'ci/json', '{"a":2}');
  });
});

describe('audit', () => {
  it('records fetches (allowed and denied) with the right fields and no secret values', async () => {
    const r = await api.request('GET', `/audit/${A()}?action=fetch&resource=variable:ci/db&limit=5`, { token: admin });
    expect(r.status).toBe(200);
    const ok = r.json.events.find((e: any) => e.result === 'success');
    expect(ok).toMatchObject({ action: 'fetch', operation: 'fetch', role: `${A()}:host:exec`, resource: `${A()}:variable:ci/db`, client_ip: '127.0.0.1' });
    expect(ok.request_id).toBeTruthy();
    expect(typeof ok.version).toBe('number');
    const denied = await api.request('GET', `/audit/${A()}?action=fetch&result=failure&role=user:reader`, { token: admin });
    expect(denied.json.events[0]).toMatchObject({ result: 'failure', reason: 'Forbidden' });
    const everything = await api.request('GET', `/audit/${A()}?limit=1000`, { token: admin, headers: { Accept: 'application/json' } });
    expect(everything.text).not.toContain(CANARY);
    expect(everything.text).not.toContain(srv.adminKey);
    const db = await openRawDb(srv);
    const dump = JSON.stringify(await db.all('SELECT * FROM audit_events'));
    await db.close();
    expect(dump).not.toContain(CANARY);
    expect(srv.logs.join('\n')).not.toContain(CANARY);
  });

  it('pages with a cursor and exports NDJSON', async () => {
    const p1 = await api.request('GET', `/audit/${A()}?limit=2`, { token: admin });
    expect(p1.json.events).toHaveLength(2);
    const p2 = await api.request('GET', `/audit/${A()}?limit=2&cursor=${p1.json.next_cursor}`, { token: admin });
    expect(p2.json.events[0].seq).toBeLessThan(p1.json.events[1].seq);
    const nd = await api.request('GET', `/audit/${A()}`, { token: admin, headers: { Accept: 'application/x-ndjson' } });
    const lines = nd.text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(10);
    expect(lines[0].seq).toBeGreaterThan(lines[1].seq);
  });

  it('an auditor of policy ci sees ci events only; a host sees none', async () => {
    const r = await api.request('GET', `/audit/${A()}?limit=1000`, { token: auditor });
    expect(r.json.events.length).toBeGreaterThan(0);
    for (const e of r.json.events) expect(e.resource).toMatch(new RegExp(`^${A()}:[a-z_]+:ci(/|$)`));
    expect(r.json.events.some((e: any) => e.resource === `${A()}:variable:other/x`)).toBe(false);
    const none = await api.request('GET', `/audit/${A()}`, { token: host });
    expect(none.json.events).toEqual([]);
  });

  it('verifies the chain and detects tampering', async () => {
    const ok = await api.request('GET', `/audit/${A()}/verify`, { token: admin });
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ ok: true });
    expect((await api.request('GET', `/audit/${A()}/verify`, { token: auditor })).status).toBe(403);
    // Edit one event's message in the live database (the append-only triggers lifted for it), then put it back.
    const db = await openRawDb(srv);
    const target = (await db.get("SELECT seq, message FROM audit_events WHERE action = 'fetch' AND result = 'failure' ORDER BY seq LIMIT 1")) as { seq: number; message: string };
    const setMessage = (m: string) => db.withAuditEditable(() => db.run('UPDATE audit_events SET message = ? WHERE seq = ?', m, target.seq));
    try {
      await setMessage(target.message.replace('tried to fetch', 'fetched').replace(': Forbidden', ''));
      expect((await db.get<{ message: string }>('SELECT message FROM audit_events WHERE seq = ?', target.seq))!.message).not.toBe(target.message);
      const broken = await api.request('GET', `/audit/${A()}/verify`, { token: admin });
      expect(broken.status).toBe(409);
      expect(broken.json).toMatchObject({ ok: false, first_bad_seq: target.seq, reason: `event ${target.seq} was modified (hash mismatch)` });
    } finally {
      await setMessage(target.message);
      await db.close();
    }
    expect((await api.request('GET', `/audit/${A()}/verify`, { token: admin })).json).toMatchObject({ ok: true });
  });

  it('fails closed: when the audit write fails, a fetch is 503 with no value bytes', async () => {
    const db = await openRawDb(srv);
    const restore = await db.failAuditInserts();
    const r = await api.getSecret(host, 'ci/empty');
    expect(r.status).toBe(503);
    expect(r.text).not.toContain(CANARY);
    const denied = await api.getSecret(reader, 'ci/db');
    expect(denied.status).toBe(503);
    await restore();
    await db.close();
    expect((await api.getSecret(host, 'ci/empty')).text).toBe(CANARY);
  });
});
