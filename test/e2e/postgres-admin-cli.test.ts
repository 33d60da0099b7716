/**
 * Issue 10, item 1: `coffer account create`, `keys rotate`, `keys rekey` and
 * the offline `audit verify` take --database (or COFFER_DATABASE_URL) and work
 * on PostgreSQL — `keys rotate` while a node keeps serving (it reloads the
 * keyring from the change feed); a database from a newer Coffer is refused.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describePostgres, startCluster, type PgCluster } from '../helpers/postgres.js';
import { runCli } from '../helpers/cli.js';
import { ensureBuilt, runCoffer } from '../helpers/coffer-process.js';
import { tempDir } from '../helpers/tmp.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let cluster: PgCluster;
let database: string;
let node: TestServer | undefined;
let adminApiKey = '';
const dataKey = randomBytes(32).toString('base64');
const env = () => ({ COFFER_DATA_KEY: dataKey });

describePostgres('admin commands on PostgreSQL', () => {
  beforeAll(async () => {
    cluster = await startCluster();
    database = await cluster.createDatabase('admin_cli');
  }, 120_000);
  afterAll(async () => {
    await node?.close();
    await cluster?.stop();
  });

  it('account create --database makes the account a node then serves', async () => {
    const created = await runCli(['account', 'create', 'acme', '--database', database, '--json'], { env: env() });
    expect(created.err).toBe('');
    expect(created.code).toBe(0);
    const { api_key: apiKey } = JSON.parse(created.out);
    adminApiKey = apiKey;
    // A second create of the same name is refused, and nothing else changes.
    const again = await runCli(['account', 'create', 'acme', '--database', database], { env: env() });
    expect(again.code).toBe(1);
    node = await startTestServer({ account: 'acme', dataKey, flags: { database } });
    node.clock.nowMs = () => Date.now();
    const api = new Client(node.url, 'acme');
    const admin = await api.login('admin', apiKey);
    expect((await api.loadPolicy(admin, 'POST', 'root', '- !variable db/password\n')).status).toBe(201);
    expect((await api.setSecret(admin, 'db/password', 'before-rotation')).status).toBe(201);
  });

  it('keys rotate --database re-encrypts while the node keeps serving; the node uses the new key for new values', async () => {
    const api = new Client(node!.url, 'acme');
    const rotated = await runCli(['keys', 'rotate', '--database', database], { env: env() });
    expect(rotated.code).toBe(0);
    expect(rotated.out).toMatch(/Rotated to data key version 2: re-encrypted 1 secret versions/);
    const adminToken = await api.login('admin', adminApiKey);
    expect((await api.getSecret(adminToken, 'db/password')).text).toBe('before-rotation');
    // A value written after the rotation is sealed under key version 2 by the running node (it reloaded the keyring).
    let newest = 0;
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(50)) {
      expect((await api.setSecret(adminToken, 'db/password', 'after-rotation')).status).toBe(201);
      newest = Number(await cluster.psql("SELECT key_version FROM secrets WHERE resource_id = 'acme:variable:db/password' ORDER BY version DESC LIMIT 1", 'admin_cli'));
      if (newest === 2) break;
    }
    expect(newest).toBe(2);
    expect((await api.getSecret(adminToken, 'db/password')).text).toBe('after-rotation');
  });

  it('audit verify --database walks the chain read-only: 0 when intact, 3 with the broken seq when not', async () => {
    const ok = await runCli(['audit', 'verify', '--database', database, '--json'], { env: {} });
    expect(ok.code).toBe(0);
    const report = JSON.parse(ok.out);
    expect(report.ok).toBe(true);
    expect(report.events).toBeGreaterThan(3);
    // Tamper with one event (the append-only trigger off for this session only).
    await cluster.psql(
      "BEGIN; SET LOCAL session_replication_role = replica; UPDATE audit_events SET message = 'edited' WHERE seq = 2; COMMIT;",
      'admin_cli',
    );
    const broken = await runCli(['audit', 'verify', '--database', database, '--json'], { env: {} });
    expect(broken.code).toBe(3);
    expect(JSON.parse(broken.out)).toMatchObject({ ok: false, first_bad_seq: 2, bad_seqs: [2] });
  });

  it('a database written by a newer Coffer is refused with a clear message, by the server and by the commands', async () => {
    const newer = await cluster.createDatabase('from_the_future');
    expect((await runCli(['account', 'create', 'x', '--database', newer], { env: env() })).code).toBe(0);
    await cluster.psql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from_the_future', '')", 'from_the_future');
    const verify = await runCli(['audit', 'verify', '--database', newer], { env: {} });
    expect(verify.code).toBe(1);
    expect(verify.err).toMatch(/schema is at version 9999 .*upgrade Coffer/);
    const create = await runCli(['account', 'create', 'y', '--database', newer], { env: env() });
    expect(create.code).toBe(1);
    expect(create.err).toMatch(/upgrade Coffer/);
    await expect(startTestServer({ account: 'x', dataKey, flags: { database: newer } })).rejects.toThrow(/schema is at version 9999 .*upgrade Coffer/);
  });

  it('a server whose database refuses its login stops at once with one line, never printing the password', async () => {
    await ensureBuilt();
    const url = new URL(database);
    url.username = 'nobody';
    url.password = 'hunter2-not-to-be-printed';
    const r = await runCoffer(['server', '--data-dir', tempDir('coffer-pg-start-'), '--port', '0', '--database', url.toString()], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual(['coffer: role "nobody" does not exist']);
    expect(r.stderr + r.stdout).not.toContain('hunter2');
  }, 60_000);

  it('a server whose database is unreachable keeps retrying with backoff and says so', async () => {
    await ensureBuilt();
    const dead = `postgres://coffer:hunter2-not-to-be-printed@127.0.0.1:1/coffer`;
    let lines = 0;
    const r = await runCoffer(['server', '--data-dir', tempDir('coffer-pg-start-'), '--port', '0', '--database', dead], {
      env: env(),
      onStderr: (chunk, child) => {
        lines += (chunk.match(/retrying in/g) ?? []).length;
        if (lines >= 2) child.kill('SIGTERM');
      },
    });
    const retries = r.stderr.split('\n').filter((l) => l.includes('retrying in'));
    expect(retries.slice(0, 2)).toEqual([
      'coffer: the database is unreachable (connect ECONNREFUSED 127.0.0.1:1); retrying in 1 s',
      'coffer: the database is unreachable (connect ECONNREFUSED 127.0.0.1:1); retrying in 2 s',
    ]);
    expect(r.stderr).not.toContain('hunter2');
  }, 60_000);

  it('refuses a --database that is not a postgres:// URL', async () => {
    const r = await runCli(['audit', 'verify', '--database', 'mysql://x'], { env: {} });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/postgres:\/\//);
  });
});
