/**
 * End to end through the real `coffer` binary: data-key rotation and master-key
 * rekey (including a rotation killed mid-flight), the data-directory lock, the
 * errors of the key commands, and the offline audit-chain verification.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '../helpers/http.js';
import { ensureBuilt, runCoffer, startCofferServer, type CofferProcess } from '../helpers/coffer-process.js';
import { openVault } from '../../src/server.js';
import { decodeMasterKey } from '../../src/secrets/barrier.js';

const ACCOUNT = 'cucumber';
const BULK = 3000;
const BIN_VALUE = Buffer.from([0, 255, 1, 254, 10, 13, 0x80, 0xc3, 0x28]);

let dir: string;
let key: string;
let adminKey: string;
/** Every variable's expected current value. */
const expected = new Map<string, Buffer>();

const dbPath = () => join(dir, 'coffer.db');
const coffer = (args: string[], env: Record<string, string | undefined> = { COFFER_DATA_KEY: key }) => runCoffer(args, { env });
const server = (env: Record<string, string | undefined> = { COFFER_DATA_KEY: key }, args: string[] = []) =>
  startCofferServer(['--data-dir', dir, ...args], env);

function withDb<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(dbPath());
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

interface KeyRow {
  version: number;
  state: string;
  wrapped: number;
}
const keyring = () => withDb((db) => db.prepare('SELECT version, state, length(wrapped_key) AS wrapped FROM keyring ORDER BY version').all() as KeyRow[]);

/** A digest of everything key commands may touch: the keyring, the key check, and every sealed value. */
function sealedDigest(): string {
  return withDb((db) => {
    const h = createHash('sha256');
    for (const sql of [
      'SELECT * FROM keyring ORDER BY version',
      'SELECT * FROM server_meta ORDER BY name',
      'SELECT resource_id, version, key_version, nonce, ciphertext FROM secrets ORDER BY resource_id, version',
      'SELECT account, key_version, nonce, ciphertext FROM signing_keys ORDER BY account',
      'SELECT role_id, api_key_sealed FROM credentials ORDER BY role_id',
    ]) {
      for (const row of db.prepare(sql).all()) h.update(JSON.stringify(row, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v)));
    }
    return h.digest('hex');
  });
}

/** Which data-key versions the stored sealed values use. */
function keyVersionsInUse(): Set<number> {
  return withDb((db) => {
    const used = new Set<number>();
    for (const r of db.prepare('SELECT DISTINCT key_version AS v FROM secrets UNION SELECT key_version FROM signing_keys').all() as { v: number }[]) used.add(r.v);
    // Sealed API keys and server secrets are packed: 4-byte key version ‖ nonce ‖ ciphertext.
    for (const r of db.prepare('SELECT api_key_sealed AS b FROM credentials WHERE api_key_sealed IS NOT NULL').all() as { b: Buffer }[]) used.add(r.b.readUInt32BE(0));
    for (const r of db.prepare("SELECT value AS b FROM server_meta WHERE name LIKE 'secret:%'").all() as { b: Buffer }[]) used.add(r.b.readUInt32BE(0));
    return used;
  });
}

/** Reads every variable through the API and compares it with what was written. */
async function expectAllReadable(srv: CofferProcess): Promise<void> {
  const api = new Client(srv.url, ACCOUNT);
  const token = await api.login('admin', adminKey);
  const ids = [...expected.keys()];
  for (let i = 0; i < ids.length; i += 1000) {
    const chunk = ids.slice(i, i + 1000);
    const r = await api.request('POST', `/secrets/${ACCOUNT}/batch`, {
      token,
      headers: { 'Content-Type': 'application/json', 'Accept-Encoding': 'base64' },
      body: JSON.stringify({ ids: chunk }),
    });
    expect(r.status).toBe(200);
    expect(r.json.errors).toEqual({});
    for (const id of chunk) expect(Buffer.from(r.json.values[`${ACCOUNT}:variable:${id}`], 'base64').equals(expected.get(id)!), id).toBe(true);
  }
  const bin = await api.getSecret(token, 'app/bin');
  expect(bin.bytes.equals(BIN_VALUE)).toBe(true);
  expect((await api.getSecret(token, 'app/db', '?version=1')).text).toBe('db-v1');
}

beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'coffer-cli-'));
  key = (await runCoffer(['keygen'])).stdout.trim();
  expect(Buffer.from(key, 'base64')).toHaveLength(32);
  const created = await coffer(['account', 'create', ACCOUNT, '--data-dir', dir, '--json']);
  expect(created.code).toBe(0);
  adminKey = JSON.parse(created.stdout).api_key;

  // A policy and a few values written through the API, by a server run from the binary…
  const srv = await server();
  const api = new Client(srv.url, ACCOUNT);
  const admin = await api.login('admin', adminKey);
  const bulk = Array.from({ length: BULK }, (_, i) => `  - !variable v${i}`).join('\n');
  const r = await api.loadPolicy(admin, 'POST', 'root', `
- !host exec
- !policy
  id: app
  body:
  - !variable db
  - !variable bin
  - !variable
    id: json
    mime_type: application/json
- !policy
  id: bulk
  body:
${bulk}
`);
  expect(r.status).toBe(201);
  expect((await api.setSecret(admin, 'app/db', 'db-v1')).status).toBe(201);
  expect((await api.setSecret(admin, 'app/db', 'db-v2')).status).toBe(201);
  expect((await api.setSecret(admin, 'app/bin', BIN_VALUE)).status).toBe(201);
  expect((await api.setSecret(admin, 'app/json', '{"k":"v"}')).status).toBe(201);
  expected.set('app/db', Buffer.from('db-v2')).set('app/bin', BIN_VALUE).set('app/json', Buffer.from('{"k":"v"}'));
  expect((await srv.stop()).code).toBe(0);

  // …and a few thousand more written in one transaction through the same barrier, to make rotation take a while.
  const vault = await openVault({ dataDir: dir, masterKey: decodeMasterKey(key, 'test key') });
  try {
    await vault.services.store.tx(async () => {
      for (let i = 0; i < BULK; i++) {
        const value = Buffer.from(`bulk-${i}-${randomBytes(6).toString('hex')}`);
        await vault.services.secrets.writeVersion(`${ACCOUNT}:variable:bulk/v${i}`, value);
        expected.set(`bulk/v${i}`, value);
      }
    });
  } finally {
    await vault.close();
  }
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the data directory lock', () => {
  it('key commands and a second server refuse while a server holds the directory; nothing changes', async () => {
    const srv = await server();
    const keyFile = join(dir, '..', `${dir.split('/').pop()}-lock.key`);
    writeFileSync(keyFile, (await runCoffer(['keygen'])).stdout);
    try {
      const before = sealedDigest();
      for (const args of [['keys', 'rotate'], ['keys', 'rekey', '--new-key-file', keyFile]]) {
        const r = await coffer([...args, '--data-dir', dir]);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`a Coffer process (pid ${srv.pid}) holds ${dir} (server.pid); stop it before`);
      }
      await expect(server()).rejects.toThrow(`a Coffer process (pid ${srv.pid}) holds ${dir}`);
      expect(sealedDigest()).toBe(before);
      await expectAllReadable(srv);
    } finally {
      rmSync(keyFile, { force: true });
      expect((await srv.stop()).code).toBe(0);
    }
    expect(existsSync(join(dir, 'server.pid'))).toBe(false);
  });
});

describe('coffer keys rotate', () => {
  it('re-encrypts every sealed value under a new data key and destroys the old one', async () => {
    expect(keyring()).toEqual([{ version: 1, state: 'active', wrapped: expect.any(Number) }]);
    const r = await coffer(['keys', 'rotate', '--data-dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Rotated to data key version 2: re-encrypted ${BULK + 4} secret versions, 1 signing keys, 2 API keys, 0 host-factory tokens, 0 issuers; retired key versions 1\\.`));
    expect(r.stderr).toContain(`re-encrypted ${BULK + 4}/${BULK + 4} secret versions`);
    const ring = keyring();
    expect(ring).toEqual([
      { version: 1, state: 'retired', wrapped: 0 },
      { version: 2, state: 'active', wrapped: expect.any(Number) },
    ]);
    expect(ring[1]!.wrapped).toBeGreaterThan(32);
    expect([...keyVersionsInUse()]).toEqual([2]);
    expect(existsSync(join(dir, 'server.pid'))).toBe(false);
    // The rotation is on the audit record (server-wide, so with no account).
    const event = withDb((db) => db.prepare("SELECT * FROM audit_events WHERE action = 'keys' ORDER BY seq DESC LIMIT 1").get() as { operation: string; account: string | null; message: string });
    expect(event).toMatchObject({ operation: 'rotate', account: null });
    expect(event.message).toContain('data key version 2 is active');

    const srv = await server();
    try {
      await expectAllReadable(srv);
    } finally {
      await srv.stop();
    }
  });

  it('killed mid-way, leaves every value readable under the old key; a rerun completes', async () => {
    const ringBefore = keyring();
    const digestBefore = sealedDigest();
    let caught = false;
    // The rotation reports each finished batch on stderr; SIGKILL it at the first one, while the
    // transaction holding the re-encrypted rows is still open. If it finishes first (a slow
    // scheduler), the run was just a successful rotation: try again from the new state.
    for (let attempt = 0; attempt < 6 && !caught; attempt++) {
      const r = await runCoffer(['keys', 'rotate', '--data-dir', dir], {
        env: { COFFER_DATA_KEY: key },
        onStderr: (chunk, child) => {
          if (/re-encrypted \d+\/\d+ secret versions/.test(chunk) && !/re-encrypted (\d+)\/\1 /.test(chunk)) child.kill('SIGKILL');
        },
      });
      caught = r.signal === 'SIGKILL';
      if (!caught) console.warn(`rotation attempt ${attempt + 1} finished before it could be killed; retrying`);
      if (caught) {
        expect(r.stdout).not.toContain('Rotated');
        expect(r.stderr).toMatch(/re-encrypted 1000\/\d+ secret versions/);
      } else {
        expect(r.code, r.stderr).toBe(0);
      }
    }
    expect(caught, 'no rotation was caught mid-flight in 6 attempts').toBe(true);
    // The killed process left its lock behind; it names a dead process, so it is taken over.
    expect(existsSync(join(dir, 'server.pid'))).toBe(true);

    // Opening the database again (the server here) rolls the unfinished transaction back.
    const srv = await server();
    try {
      await expectAllReadable(srv);
    } finally {
      await srv.stop();
    }
    const ring = keyring();
    const active = ring.filter((k) => k.state === 'active').map((k) => k.version);
    expect(active).toHaveLength(1);
    expect([...keyVersionsInUse()]).toEqual(active);
    if (ring.length === ringBefore.length) expect(sealedDigest()).toBe(digestBefore);

    const rerun = await coffer(['keys', 'rotate', '--data-dir', dir]);
    expect(rerun.code, rerun.stderr).toBe(0);
    const after = keyring();
    const newActive = Math.max(...after.map((k) => k.version));
    expect(after.find((k) => k.version === newActive)!.state).toBe('active');
    expect(after.filter((k) => k.version !== newActive).every((k) => k.state === 'retired' && k.wrapped === 0)).toBe(true);
    expect([...keyVersionsInUse()]).toEqual([newActive]);
    const srv2 = await server();
    try {
      await expectAllReadable(srv2);
    } finally {
      await srv2.stop();
    }
  });
});

describe('coffer keys rekey', () => {
  it('re-wraps the keyring: the old master key is refused with a clear message, the new one opens everything', async () => {
    const newKey = (await runCoffer(['keygen'])).stdout.trim();
    const keyFile = join(dir, '..', `${dir.split('/').pop()}-new.key`);
    writeFileSync(keyFile, `${newKey}\n`, { mode: 0o600 });
    try {
      const secretsBefore = withDb((db) => db.prepare('SELECT resource_id, version, key_version, nonce, ciphertext FROM secrets ORDER BY 1, 2').all());
      const r = await coffer(['keys', 'rekey', '--data-dir', dir, '--new-key-file', keyFile]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('Re-wrapped the keyring under the new master key');
      // Only the keyring changed: values are not re-encrypted by a rekey.
      expect(withDb((db) => db.prepare('SELECT resource_id, version, key_version, nonce, ciphertext FROM secrets ORDER BY 1, 2').all())).toEqual(secretsBefore);

      const refused = await server().then(
        async (s) => {
          await s.stop();
          return undefined;
        },
        (err: { code: number; stderr: string }) => err,
      );
      expect(refused, 'the server started with the old key').toBeDefined();
      expect(refused!.code).not.toBe(0);
      expect(refused!.stderr).toContain('The data key does not match this database (key-check failed)');
      expect(existsSync(join(dir, 'server.pid'))).toBe(false);

      const srv = await server({}, ['--data-key-file', keyFile]);
      try {
        await expectAllReadable(srv);
      } finally {
        await srv.stop();
      }
      // The old key cannot drive key commands any more either, and changes nothing.
      const digest = sealedDigest();
      const old = await coffer(['keys', 'rotate', '--data-dir', dir]);
      expect(old.code).toBe(1);
      expect(old.stderr).toContain('does not match this database');
      expect(sealedDigest()).toBe(digest);
      key = newKey;
    } finally {
      rmSync(keyFile, { force: true });
    }
  });
});

describe('key command errors: a clear message, a non-zero exit, nothing changed', () => {
  it.each([
    ['a wrong data key', ['keys', 'rotate'], { COFFER_DATA_KEY: randomBytes(32).toString('base64') }, 1, 'The data key does not match this database (key-check failed)'],
    ['no data key', ['keys', 'rotate'], {}, 2, 'a data key is required: set COFFER_DATA_KEY or pass --data-key-file'],
    ['a malformed data key', ['keys', 'rotate'], { COFFER_DATA_KEY: 'not-a-key' }, 1, 'COFFER_DATA_KEY must be the base64 encoding of exactly 32 bytes'],
    ['rekey without --new-key-file', ['keys', 'rekey'], undefined, 2, 'coffer keys rekey needs --new-key-file FILE'],
    ['rekey with a missing key file', ['keys', 'rekey', '--new-key-file', '/nonexistent/new.key'], undefined, 1, 'cannot read the new key file: ENOENT'],
    ['rekey with a malformed key file', ['keys', 'rekey', '--new-key-file', 'BADFILE'], undefined, 1, 'must be the base64 encoding of exactly 32 bytes'],
    ['an unknown keys subcommand', ['keys', 'spin'], undefined, 2, 'usage: coffer keys rotate|rekey (--data-dir DIR | --database URL)'],
    ['a server without a data key', ['server'], {}, 2, 'a data key is required: set COFFER_DATA_KEY'],
    ['a server with a wrong data key', ['server', '--port', '0'], { COFFER_DATA_KEY: randomBytes(32).toString('base64') }, 1, 'The data key does not match this database'],
  ] as const)('%s', async (_name, args, env, code, message) => {
    const bad = join(dir, '..', `${dir.split('/').pop()}-bad.key`);
    writeFileSync(bad, 'c2hvcnQ=\n');
    try {
      const before = sealedDigest();
      const r = await coffer([...args.map((a) => (a === 'BADFILE' ? bad : a)), '--data-dir', dir], env ?? { COFFER_DATA_KEY: key });
      expect(r.code).toBe(code);
      expect(r.stderr).toContain(message);
      expect(r.stdout).toBe('');
      expect(sealedDigest()).toBe(before);
      expect(existsSync(join(dir, 'server.pid'))).toBe(false);
    } finally {
      rmSync(bad, { force: true });
    }
  });

  it('a data directory without a database is refused, not created', async () => {
    const missing = join(dir, 'nope');
    for (const args of [['keys', 'rotate'], ['audit', 'verify']]) {
      const r = await coffer([...args, '--data-dir', missing]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`no Coffer database at ${missing}/coffer.db (check --data-dir)`);
    }
    expect(existsSync(missing)).toBe(false);
  });
});

describe('coffer audit verify (offline)', () => {
  const count = () => withDb((db) => (db.prepare('SELECT count(*) AS n, max(seq) AS last FROM audit_events').get() as { n: number; last: number }));

  it('reports an intact chain with its event count, without needing the data key', async () => {
    const { n, last } = count();
    expect(n).toBeGreaterThan(10);
    const r = await coffer(['audit', 'verify', '--data-dir', dir], {});
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`audit chain OK: ${n} events verified (last seq ${last})`);
    const j = await coffer(['audit', 'verify', '--data-dir', dir, '--json'], {});
    expect(JSON.parse(j.stdout)).toEqual({ ok: true, events: n, last_seq: last });
  });

  it('names the first bad sequence number when one byte of one event was edited', async () => {
    const { n } = count();
    const target = Math.floor(n / 2);
    const original = withDb((db) => (db.prepare('SELECT role_id FROM audit_events WHERE seq = ?').get(target) as { role_id: string | null }).role_id);
    const edit = (value: string | null) =>
      withDb((db) => {
        db.exec('DROP TRIGGER audit_events_no_update');
        db.prepare('UPDATE audit_events SET role_id = ? WHERE seq = ?').run(value, target);
        db.exec("CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END");
      });
    const forged = original === null ? 'x' : `${original.slice(0, -1)}${original.endsWith('x') ? 'y' : 'x'}`;
    edit(forged);
    try {
      const r = await coffer(['audit', 'verify', '--data-dir', dir], {});
      expect(r.code).toBe(3);
      expect(r.stdout.trim()).toBe(
        `audit chain BROKEN at seq ${target}: event ${target} was modified (hash mismatch)\n` +
          `1 broken sequence number(s) among ${n} events read: ${target}`,
      );
      const j = await coffer(['audit', 'verify', '--data-dir', dir, '--json'], {});
      expect(j.code).toBe(3);
      expect(JSON.parse(j.stdout)).toEqual({ ok: false, events: n, last_seq: n, first_bad_seq: target, reason: `event ${target} was modified (hash mismatch)`, bad_seqs: [target], bad_count: 1 });
    } finally {
      edit(original);
    }
    expect((await coffer(['audit', 'verify', '--data-dir', dir], {})).code).toBe(0);
  });

  it('detects a deleted row', async () => {
    const target = 5;
    const row = withDb((db) => db.prepare('SELECT * FROM audit_events WHERE seq = ?').get(target) as Record<string, unknown>);
    withDb((db) => {
      db.exec('DROP TRIGGER audit_events_no_delete');
      db.prepare('DELETE FROM audit_events WHERE seq = ?').run(target);
    });
    try {
      const r = await coffer(['audit', 'verify', '--data-dir', dir], {});
      expect(r.code).toBe(3);
      expect(r.stdout).toContain(`audit chain BROKEN at seq ${target}: event ${target} is missing (next is ${target + 1})`);
    } finally {
      withDb((db) => {
        const cols = Object.keys(row);
        db.prepare(`INSERT INTO audit_events (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')})`).run(...Object.values(row));
        db.exec("CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END");
      });
    }
    expect((await coffer(['audit', 'verify', '--data-dir', dir], {})).code).toBe(0);
  });

  it('works beside a running server (read-only)', async () => {
    const srv = await server();
    try {
      const r = await coffer(['audit', 'verify', '--data-dir', dir], {});
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^audit chain OK: \d+ events verified/);
    } finally {
      await srv.stop();
    }
  });
});
