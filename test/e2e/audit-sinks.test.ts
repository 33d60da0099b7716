/**
 * End to end through the real `coffer server` process: `--audit-log FILE|-`
 * with `--audit-format json|rfc5424`, what a failing sink does (nothing to the
 * requests; one report on stderr), and that no secret value, API key, password
 * or token reaches the stream, the server's stdout/stderr or the audit table.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, tokenHeader } from '../helpers/http.js';
import { ensureBuilt, runCoffer, startCofferServer, type CofferProcess } from '../helpers/coffer-process.js';
import { auditEventJson } from '../../src/audit/log.js';
import type { AuditRow } from '../../src/store/audit.js';

const ACCOUNT = 'cucumber';
const CANARY_VALUE = 'canary-value-Hq7Zx2Lp9W';
const CANARY_KEY = 'canary-apikey-Mv3Tn8Rb5K';
const CANARY_PASSWORD = 'CAnary-Pw-9xQ7!zLk';

let dir: string;
let key: string;
let adminKey: string;
let execKey: string;
let aliceKey: string;
/** Everything that must never be written anywhere but the response that carries it. */
const secrets: string[] = [CANARY_VALUE, CANARY_KEY, CANARY_PASSWORD];

const running: CofferProcess[] = [];
async function server(args: string[]): Promise<CofferProcess> {
  const s = await startCofferServer(['--data-dir', dir, ...args], { COFFER_DATA_KEY: key });
  running.push(s);
  return s;
}
// A failed test must not leave its server holding the data directory for the next one.
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

function rows(afterSeq: number): AuditRow[] {
  const db = new Database(join(dir, 'coffer.db'), { readonly: true });
  try {
    return db.prepare('SELECT * FROM audit_events WHERE seq > ? ORDER BY seq').all(afterSeq) as AuditRow[];
  } finally {
    db.close();
  }
}
const headSeq = () => rows(0).at(-1)?.seq ?? 0;

function expectNoSecrets(text: string, where: string): void {
  for (const s of secrets) expect(text.includes(s), `${where} contains ${s.slice(0, 12)}…`).toBe(false);
}

beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'coffer-sinks-'));
  key = (await runCoffer(['keygen'])).stdout.trim();
  const created = await runCoffer(['account', 'create', ACCOUNT, '--data-dir', dir, '--json'], { env: { COFFER_DATA_KEY: key } });
  expect(created.code, created.stderr).toBe(0);
  adminKey = JSON.parse(created.stdout).api_key;
  secrets.push(adminKey);
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('--audit-log FILE (json)', () => {
  let srv: CofferProcess;
  let file: string;
  let startSeq: number;

  it('writes every committed event as one JSON line, identical to the API, and no secret anywhere', async () => {
    file = join(dir, 'audit.jsonl');
    startSeq = headSeq();
    srv = await server(['--audit-log', file]);
    const api = new Client(srv.url, ACCOUNT);
    const admin = await api.login('admin', adminKey);
    secrets.push(admin, Buffer.from(admin).toString('base64'));
    const load = await api.loadPolicy(admin, 'POST', 'root', `
- !host exec
- !user alice
- !policy
  id: app
  body:
  - !variable db
  - !variable secret
  - !variable other
- !permit
  role: !host exec
  privilege: [ read, execute ]
  resource: [ !variable app/db, !variable app/secret ]
- !permit
  role: !host exec
  privilege: read
  resource: !variable app/other
`);
    expect(load.status).toBe(201);
    execKey = load.json.created_roles[`${ACCOUNT}:host:exec`].api_key;
    aliceKey = load.json.created_roles[`${ACCOUNT}:user:alice`].api_key;
    secrets.push(execKey, aliceKey);

    expect((await api.setSecret(admin, 'app/secret', CANARY_VALUE)).status).toBe(201);
    expect((await api.setSecret(admin, 'app/db', 'db-value')).status).toBe(201);
    const exec = await api.login('host/exec', execKey);
    secrets.push(exec, Buffer.from(exec).toString('base64'));
    // A failed authentication with a wrong key: the key tried is not recorded either.
    const wrong = await api.request('POST', `/authn/${ACCOUNT}/host%2Fexec/authenticate`, { body: CANARY_KEY });
    expect(wrong.status).toBe(401);
    expect((await api.getSecret(exec, 'app/secret')).text).toBe(CANARY_VALUE);
    expect((await api.getSecret(exec, 'app/other')).status).toBe(403);
    const batch = await api.request('POST', `/secrets/${ACCOUNT}/batch`, {
      token: exec,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ids: ['app/secret', 'app/db', 'app/other'] }),
    });
    expect(batch.json.values[`${ACCOUNT}:variable:app/secret`]).toBe(CANARY_VALUE);
    const basic = (login: string, secret: string) => `Basic ${Buffer.from(`${login}:${secret}`).toString('base64')}`;
    const pw = await api.request('PUT', `/authn/${ACCOUNT}/password`, { body: CANARY_PASSWORD, headers: { Authorization: basic('alice', aliceKey) } });
    expect(pw.status).toBe(204);
    const rotated = await api.request('PUT', `/authn/${ACCOUNT}/api_key`, { headers: { Authorization: basic('alice', CANARY_PASSWORD) } });
    expect(rotated.status).toBe(200);
    secrets.push(rotated.text.trim());
    const check = await api.request('GET', `/resources/${ACCOUNT}/variable/app/db?check=true&privilege=execute&role=host:exec`, { token: admin });
    expect(check.status).toBe(204);

    // An internal error (a ciphertext moved to another variable) is logged on stderr, without the value.
    const db = new Database(join(dir, 'coffer.db'));
    const original = db.prepare('SELECT * FROM secrets WHERE resource_id = ?').get(`${ACCOUNT}:variable:app/db`) as { nonce: Buffer; ciphertext: Buffer; key_version: number };
    const canaryRow = db.prepare('SELECT * FROM secrets WHERE resource_id = ?').get(`${ACCOUNT}:variable:app/secret`) as typeof original;
    const put = db.prepare('UPDATE secrets SET nonce = ?, ciphertext = ?, key_version = ? WHERE resource_id = ?');
    put.run(canaryRow.nonce, canaryRow.ciphertext, canaryRow.key_version, `${ACCOUNT}:variable:app/db`);
    const swapped = await api.getSecret(exec, 'app/db');
    put.run(original.nonce, original.ciphertext, original.key_version, `${ACCOUNT}:variable:app/db`);
    db.close();
    expect(swapped.status).toBe(500);
    expectNoSecrets(swapped.text, 'the 500 body');
    expect((await api.getSecret(exec, 'app/db')).text).toBe('db-value');

    const stopped = await srv.stop();
    expect(stopped.code).toBe(0);
    expect(srv.stderr()).toMatch(/coffer: error in request \S+: CofferError: Stored value failed authentication/);

    // After a clean stop every event of the run is in the file, once, in order, exactly as the API renders it.
    const events = rows(startSeq);
    expect(events.length).toBeGreaterThan(15);
    const text = readFileSync(file, 'utf8');
    const lines = text.trimEnd().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual(events.map((r) => JSON.parse(JSON.stringify(auditEventJson(r)))));
    for (const action of ['policy', 'update', 'authn', 'fetch', 'password', 'api-key', 'check']) {
      expect(events.some((e) => e.action === action), action).toBe(true);
    }
    expect(events.some((e) => e.action === 'authn' && e.result === 'failure')).toBe(true);

    expectNoSecrets(text, 'the audit stream');
    expectNoSecrets(`${srv.stdout()}\n${srv.stderr()}`, "the server's stdout/stderr");
    expectNoSecrets(JSON.stringify(rows(0)), 'the audit table');
  });

  it('appends on the next start instead of truncating', async () => {
    const before = readFileSync(file, 'utf8');
    const s = await server(['--audit-log', file]);
    const api = new Client(s.url, ACCOUNT);
    await api.login('admin', adminKey);
    await s.stop();
    const after = readFileSync(file, 'utf8');
    expect(after.startsWith(before)).toBe(true);
    expect(after.length).toBeGreaterThan(before.length);
  });
});

describe('--audit-format rfc5424', () => {
  it("writes Conjur's RFC 5424 lines: one per event, one per change of a policy load", async () => {
    const file = join(dir, 'audit.rfc5424');
    const startSeq = headSeq();
    const srv = await server(['--audit-log', file, '--audit-format', 'rfc5424']);
    const api = new Client(srv.url, ACCOUNT);
    const admin = await api.login('admin', adminKey);
    const exec = await api.login('host/exec', execKey);
    expect((await api.getSecret(exec, 'app/db')).status).toBe(200);
    expect((await api.getSecret(exec, 'app/other')).status).toBe(403);
    expect((await api.request('GET', '/whoami', { token: exec })).status).toBe(200);
    const patch = await api.loadPolicy(admin, 'PATCH', 'root', `
- !variable app/extra
- !permit
  role: !host exec
  privilege: execute
  resource: !variable app/extra
`);
    expect(patch.status).toBe(201);
    const version = patch.json.version as number;
    await srv.stop();

    const text = readFileSync(file, 'utf8');
    expectNoSecrets(text, 'the RFC 5424 stream');
    const lines = text.trimEnd().split('\n');
    const LINE = /^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) - conjur (\d+) (\S+) ((?:\[[^\]]*(?:\\\][^\]]*)*\])+) (.+)$/;
    for (const l of lines) {
      const m = LINE.exec(l);
      expect(m, l).not.toBeNull();
      expect(Number(m![3])).toBe(srv.pid);
    }
    // Every event of the run is there, under its own sequence number and time.
    const events = rows(startSeq);
    for (const e of events) {
      const own = lines.filter((l) => l.includes(`[meta sequenceId="${e.seq}"]`));
      expect(own.length, `event ${e.seq} (${e.action})`).toBeGreaterThan(0);
      for (const l of own) expect(l).toContain(`>1 ${e.time} - conjur`);
    }
    const seqs = new Set(lines.map((l) => /\[meta sequenceId="(\d+)"\]/.exec(l)?.[1]));
    expect([...seqs].map(Number).sort((a, b) => a - b)).toEqual(events.map((e) => e.seq));

    const ip = '\\[client@43868 ip="127\\.0\\.0\\.1" request_id="[^"]+"\\]';
    const A = ACCOUNT;
    const expectLine = (re: string) => expect(lines.some((l) => new RegExp(re).test(l)), re).toBe(true);
    expectLine(
      `^<86>1 \\S+ - conjur \\d+ authn \\[subject@43868 role="${A}:host:exec"\\]\\[auth@43868 user="${A}:host:exec" authenticator="authn" service="${A}:webservice:conjur/authn"\\]` +
        `${ip}\\[action@43868 result="success" operation="authenticate"\\]\\[meta sequenceId="\\d+"\\] ${A}:host:exec successfully authenticated with authenticator authn service ${A}:webservice:conjur/authn$`,
    );
    expectLine(
      `^<86>1 \\S+ - conjur \\d+ fetch \\[auth@43868 user="${A}:host:exec"\\]\\[subject@43868 resource="${A}:variable:app/db" version="1"\\]` +
        `${ip}\\[action@43868 result="success" operation="fetch"\\]\\[meta sequenceId="\\d+"\\] ${A}:host:exec fetched ${A}:variable:app/db$`,
    );
    expectLine(
      `^<84>1 \\S+ - conjur \\d+ fetch \\[auth@43868 user="${A}:host:exec"\\]\\[subject@43868 resource="${A}:variable:app/other"\\]` +
        `${ip}\\[action@43868 result="failure" operation="fetch"\\]\\[meta sequenceId="\\d+"\\] ${A}:host:exec tried to fetch ${A}:variable:app/other: Forbidden$`,
    );
    expectLine(`^<38>1 \\S+ - conjur \\d+ identity-check .* ${A}:host:exec checked its identity using whoami$`);
    const policy = `\\[policy@43868 id="${A}:policy:root" version="${version}"\\]${ip}`;
    expectLine(
      `^<85>1 \\S+ - conjur \\d+ policy \\[auth@43868 user="${A}:user:admin"\\]\\[subject@43868 resource="${A}:variable:app/extra"\\]${policy}` +
        `\\[action@43868 result="success" operation="add"\\]\\[meta sequenceId="\\d+"\\] ${A}:user:admin added resource ${A}:variable:app/extra$`,
    );
    expectLine(
      `^<85>1 \\S+ - conjur \\d+ policy \\[auth@43868 user="${A}:user:admin"\\]\\[subject@43868 role="${A}:host:exec" privilege="execute" resource="${A}:variable:app/extra"\\]${policy}` +
        `\\[action@43868 result="success" operation="add"\\]\\[meta sequenceId="\\d+"\\] ${A}:user:admin added permission of ${A}:host:exec to execute on ${A}:variable:app/extra$`,
    );
    // The policy load is one event, written as one line per change, all under that event's number.
    const policyEvent = events.find((e) => e.action === 'policy')!;
    const changes = JSON.parse(policyEvent.details!) as { added: string[]; changed: string[]; removed: string[] };
    const changeCount = changes.added.length + changes.changed.length + changes.removed.length;
    expect(changeCount).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.includes(`[meta sequenceId="${policyEvent.seq}"]`))).toHaveLength(changeCount);
    expect(lines).toHaveLength(events.length - 1 + changeCount);
  });
});

describe('--audit-log - (stdout)', () => {
  it('streams JSON lines on stdout', async () => {
    const startSeq = headSeq();
    const srv = await server(['--audit-log', '-']);
    const api = new Client(srv.url, ACCOUNT);
    const exec = await api.login('host/exec', execKey);
    expect((await api.getSecret(exec, 'app/secret')).text).toBe(CANARY_VALUE);
    await srv.stop();
    const events = rows(startSeq);
    const out = srv.stdout().trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(out).toEqual(events.map((r) => JSON.parse(JSON.stringify(auditEventJson(r)))));
    expect(out.some((e) => e.action === 'fetch' && e.resource === `${ACCOUNT}:variable:app/secret`)).toBe(true);
    expectNoSecrets(srv.stdout(), 'stdout');
  });
});

describe('a failing sink', () => {
  it('never breaks a request: the failure is reported once on stderr and the events stay in the database', async () => {
    const startSeq = headSeq();
    const srv = await server(['--audit-log', '/dev/full']);
    try {
      const api = new Client(srv.url, ACCOUNT);
      const exec = await api.login('host/exec', execKey);
      for (let i = 0; i < 5; i++) {
        const r = await api.getSecret(exec, 'app/db');
        expect(r.status).toBe(200);
        expect(r.text).toBe('db-value');
      }
      const admin = await api.login('admin', adminKey);
      const fetches = await api.request('GET', `/audit/${ACCOUNT}?action=fetch&role=host:exec&limit=5`, { token: admin });
      expect(fetches.json.events).toHaveLength(5);
      expect(fetches.json.events.every((e: { seq: number }) => e.seq > startSeq)).toBe(true);
    } finally {
      expect((await srv.stop()).code).toBe(0);
    }
    const reports = srv.stderr().split('\n').filter((l) => l.includes('audit sink'));
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatch(/^coffer: audit sink \/dev\/full failed: ENOSPC: no space left on device, write; events stay in the database; reopening it in 5 s$/);
  });

  it('a sink that cannot be opened stops the start with a clear message, before the database is touched', async () => {
    const bad = join(dir, 'no-such-dir', 'audit.log');
    const before = headSeq();
    const err = await server(['--audit-log', bad]).then(
      async (s) => {
        await s.stop();
        return undefined;
      },
      (e: { code: number; stderr: string }) => e,
    );
    expect(err, 'the server started').toBeDefined();
    expect(err!.code).toBe(1);
    expect(err!.stderr).toContain(`coffer: --audit-log: cannot open ${bad}: ENOENT: no such file or directory`);
    expect(existsSync(join(dir, 'server.pid'))).toBe(false);
    expect(headSeq()).toBe(before);
  });
});

describe('tokens in the stream', () => {
  it('appear only as their jti', async () => {
    const file = join(dir, 'tokens.jsonl');
    const srv = await server(['--audit-log', file]);
    const api = new Client(srv.url, ACCOUNT);
    const exec = await api.login('host/exec', execKey);
    const revoke = await api.request('DELETE', `/authn/${ACCOUNT}/token`, { headers: { Authorization: tokenHeader(exec) } });
    expect(revoke.status).toBe(204);
    await srv.stop();
    const text = readFileSync(file, 'utf8');
    const token = JSON.parse(exec) as { protected: string; payload: string; signature: string };
    for (const part of [token.signature, token.payload, Buffer.from(exec).toString('base64')]) expect(text).not.toContain(part);
    const jti = (JSON.parse(Buffer.from(token.payload, 'base64').toString('utf8')) as { jti: string }).jti;
    expect(text).toContain(jti);
  });
});
