/**
 * Issue 10, item 5: `coffer store copy --from DIR --to postgres://…` moves an
 * SQLite installation whole; a node on the copy serves the same secrets to the
 * same credentials with the same chain; a non-empty target is refused and left
 * as it was.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { describePostgres, startCluster, type PgCluster } from '../helpers/postgres.js';
import { runCli } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { tempDir } from '../helpers/tmp.js';

let cluster: PgCluster;
let source: TestServer;
let node: TestServer | undefined;
const dataKey = randomBytes(32).toString('base64');
let hostKey = '';
let headSeq = 0;

describePostgres('coffer store copy', () => {
  beforeAll(async () => {
    cluster = await startCluster();
    // An SQLite installation with a graph, values (two versions), a revoked token and audit events.
    source = await startTestServer({ account: 'acme', dataKey, keepDataDir: true });
    const api = new Client(source.url, 'acme');
    const admin = await api.login('admin', source.adminKey);
    const r = await api.loadPolicy(admin, 'POST', 'root', `
- !host runner
- !variable db/password
- !permit
  role: !host runner
  privileges: [read, execute]
  resource: !variable db/password
`);
    expect(r.status).toBe(201);
    hostKey = r.json.created_roles['acme:host:runner'].api_key;
    await api.setSecret(admin, 'db/password', 'first');
    await api.setSecret(admin, 'db/password', 'second');
    const host = await api.login('host/runner', hostKey);
    expect((await api.getSecret(host, 'db/password')).text).toBe('second');
    expect((await api.request('DELETE', '/authn/acme/token', { token: host })).status).toBe(204);
    headSeq = (await api.request('GET', '/audit/acme/verify', { token: admin })).json.last_seq;
    await source.close();
  }, 120_000);
  afterAll(async () => {
    await node?.close();
    await cluster?.stop();
  });

  it('copies everything into an empty database; a node on it serves the same values to the same keys; the chain verifies', async () => {
    const target = await cluster.createDatabase('copied');
    const r = await runCli(['store', 'copy', '--from', source.dataDir, '--to', target], { env: {} });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Copied \d+ rows \(.*secrets 2.*audit_events \d+.*\); row counts match, and the audit chain verifies to seq \d+\.\n$/);
    // The search index's copy of the messages is filled by the copy itself, up to the copied head.
    expect(await cluster.psql('SELECT count(*) = (SELECT count(*) FROM audit_events) AND max(seq) = (SELECT max(seq) FROM audit_events) FROM audit_search', 'copied')).toBe('t');
    node = await startTestServer({ account: 'acme', dataKey, flags: { database: target } });
    expect(node.adminKey).toBe(''); // the account came with the copy
    node.clock.nowMs = () => Date.now();
    const api = new Client(node.url, 'acme');
    const host = await api.login('host/runner', hostKey);
    expect((await api.getSecret(host, 'db/password')).text).toBe('second');
    expect((await api.getSecret(host, 'db/password', '?version=1')).text).toBe('first');
    const verify = await api.request('GET', '/audit/acme/verify', { token: host });
    expect(verify.status).toBe(403); // a host may not; the chain is checked offline below
    const offline = await runCli(['audit', 'verify', '--database', target, '--json'], { env: {} });
    expect(offline.code).toBe(0);
    expect(JSON.parse(offline.out)).toMatchObject({ ok: true });
    expect(JSON.parse(offline.out).last_seq).toBeGreaterThan(headSeq);
  });

  it('refuses a target that is not empty and leaves it as it was', async () => {
    const target = cluster.urlFor('copied');
    const before = await cluster.psql('SELECT count(*) FROM audit_events', 'copied');
    const r = await runCli(['store', 'copy', '--from', source.dataDir, '--to', target], { env: {} });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/the target database is not empty \(rows in accounts, .*\); copy into a new, empty database/);
    expect(await cluster.psql('SELECT count(*) FROM audit_events', 'copied')).toBe(before);
  });

  it('refuses a source directory without a database, and a --to that is not a PostgreSQL URL', async () => {
    const empty = await runCli(['store', 'copy', '--from', tempDir('coffer-nodb-'), '--to', cluster.urlFor('copied')], { env: {} });
    expect(empty.code).toBe(1);
    expect(empty.err).toMatch(/no Coffer database at/);
    const badUrl = await runCli(['store', 'copy', '--from', source.dataDir, '--to', '/tmp/x'], { env: {} });
    expect(badUrl.code).toBe(2);
    expect(badUrl.err).toMatch(/postgres:\/\//);
  });

  it('refuses a source whose audit chain does not verify, and copies nothing', async () => {
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(`${source.dataDir}/coffer.db`);
    db.exec('DROP TRIGGER audit_events_no_update');
    db.prepare("UPDATE audit_events SET message = 'edited' WHERE seq = 3").run();
    db.close();
    const target = await cluster.createDatabase('from_broken');
    const r = await runCli(['store', 'copy', '--from', source.dataDir, '--to', target], { env: {} });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/the audit chain does not verify \(seq 3: .*\); nothing was copied/);
    expect(await cluster.psql('SELECT count(*) FROM accounts', 'from_broken')).toBe('0');
    expect(await cluster.psql('SELECT count(*) FROM audit_search', 'from_broken')).toBe('0');
  });
});
