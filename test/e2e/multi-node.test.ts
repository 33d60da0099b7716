/**
 * Issue 10, item 3: several Coffer nodes on one PostgreSQL database, any node
 * answering any request. Two real servers share one throwaway cluster's
 * database; every change made through one node must hold on the other —
 * tokens, revocation, key rotation, policy changes — within the issue's one
 * second (the change feed: LISTEN/NOTIFY, with a poll for missed notices),
 * policy loads sent to both serialize, and the audit log stays one chain.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describePostgres, holdAdvisoryLock, startCluster, type PgCluster } from '../helpers/postgres.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { CHANGE_POLL_MS } from '../../src/store/postgres/changes.js';
import { openVault } from '../../src/server.js';
import { createPostgresClient } from '../../src/store/postgres/client.js';
import { WRITE_LOCK_KEY } from '../../src/store/postgres/index.js';
import { MIGRATION_LOCK_KEY } from '../../src/store/postgres/migrate.js';
import { DataKeyMismatchError } from '../../src/secrets/barrier.js';

/** The issue's bound for a change made on one node to hold on every other. */
const PROPAGATION_BOUND_MS = 1000;

let cluster: PgCluster;
let nodeA: TestServer;
let nodeB: TestServer;
let a: Client;
let b: Client;
let adminA: string;
const ACCOUNT = 'acme';

/** Polls `check` until it is true; answers how long that took, or fails once `boundMs` has passed. */
async function within(boundMs: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > boundMs) throw new Error(`${what}: still not true after ${boundMs} ms`);
    await sleep(20);
  }
}

describePostgres('several nodes on one PostgreSQL database', () => {
  beforeAll(async () => {
    cluster = await startCluster();
    const database = await cluster.createDatabase('shared');
    const dataKey = randomBytes(32).toString('base64');
    nodeA = await startTestServer({ account: ACCOUNT, dataKey, flags: { database } });
    nodeB = await startTestServer({ account: ACCOUNT, dataKey, flags: { database } });
    expect(nodeA.adminKey).not.toBe('');
    expect(nodeB.adminKey).toBe(''); // the account already existed: created once, by node A
    // Real, shared time: token issue times and "not before" times are compared across nodes (README: keep node clocks in sync).
    nodeA.clock.nowMs = () => Date.now();
    nodeB.clock.nowMs = () => Date.now();
    a = new Client(nodeA.url, ACCOUNT);
    b = new Client(nodeB.url, ACCOUNT);
    adminA = await a.login('admin', nodeA.adminKey);
    const r = await a.loadPolicy(adminA, 'POST', 'root', `
- !policy
  id: ci
  body:
  - !host executor
  - !host other
  - !variable db/password
  - !permit
    role: !host executor
    privileges: [read, execute]
    resource: !variable db/password
`);
    expect(r.status).toBe(201);
    expect((await a.setSecret(adminA, 'ci/db/password', 's3cret')).status).toBe(201);
  }, 120_000);

  afterAll(async () => {
    await nodeA?.close();
    await nodeB?.close();
    await cluster?.stop();
  });

  const hostKey = async (client: Client, token: string, host: string) =>
    (await client.request('PUT', `/authn/${ACCOUNT}/api_key?role=host:${encodeURIComponent(host)}`, { token })).text;

  it('a token issued by one node is accepted by the other', async () => {
    const token = await a.login('admin', nodeA.adminKey);
    const who = await b.request('GET', '/whoami', { token });
    expect(who.status).toBe(200);
    expect(who.json.username).toBe('admin');
    expect((await b.getSecret(token, 'ci/db/password')).text).toBe('s3cret');
  });

  it('a token revoked on one node is refused by the other within a second', async () => {
    const token = await a.login('admin', nodeA.adminKey);
    expect((await b.request('GET', '/whoami', { token })).status).toBe(200); // node B has now verified (and cached) it
    expect((await a.request('DELETE', `/authn/${ACCOUNT}/token`, { token })).status).toBe(204);
    await within(PROPAGATION_BOUND_MS, 'node B refuses the revoked token', async () => (await b.request('GET', '/whoami', { token })).status === 401);
  });

  it("an API key rotated on one node: the old key and the tokens issued before are refused by the other", async () => {
    const key1 = await hostKey(a, adminA, 'ci/other');
    const before = await b.login('host/ci/other', key1);
    expect((await b.request('GET', '/whoami', { token: before })).status).toBe(200);
    const key2 = await hostKey(a, adminA, 'ci/other');
    expect(key2).not.toBe(key1);
    // The key itself is checked against the database: refused at once.
    expect((await b.request('POST', `/authn/${ACCOUNT}/host%2Fci%2Fother/authenticate`, { body: key1 })).status).toBe(401);
    expect((await b.request('POST', `/authn/${ACCOUNT}/host%2Fci%2Fother/authenticate`, { body: key2 })).status).toBe(200);
    await within(PROPAGATION_BOUND_MS, 'node B refuses a token issued before the rotation', async () => (await b.request('GET', '/whoami', { token: before })).status === 401);
  });

  it('a permission denied by a policy loaded on one node holds on the other within a second', async () => {
    const key = await hostKey(a, adminA, 'ci/executor');
    const host = await b.login('host/ci/executor', key);
    expect((await b.getSecret(host, 'ci/db/password')).status).toBe(200); // node B caches the decision
    // The permit was loaded into root (as the ci policy's body), so it is root's to deny.
    const denied = await a.loadPolicy(adminA, 'PATCH', 'root', `
- !deny
  role: !host ci/executor
  privileges: [execute]
  resource: !variable ci/db/password
`);
    expect(denied.status).toBe(201);
    expect((await a.getSecret(host, 'ci/db/password')).status).toBe(403);
    await within(PROPAGATION_BOUND_MS, 'node B refuses the fetch', async () => (await b.getSecret(host, 'ci/db/password')).status === 403);
    // And back: a permit loaded on node B holds on node A.
    const permitted = await b.loadPolicy(adminA, 'PATCH', 'ci', `
- !permit
  role: !host executor
  privileges: [execute]
  resource: !variable db/password
`);
    expect(permitted.status).toBe(201);
    await within(PROPAGATION_BOUND_MS, 'node A serves the fetch again', async () => (await a.getSecret(host, 'ci/db/password')).status === 200);
  });

  it("an annotation changed on one node (a value's MIME type) holds on the other within a second", async () => {
    const key = await hostKey(a, adminA, 'ci/executor');
    const host = await b.login('host/ci/executor', key);
    const before = await b.getSecret(host, 'ci/db/password');
    expect(before.status).toBe(200);
    expect(before.headers.get('content-type')).toBe('application/octet-stream'); // node B caches the (absent) annotation
    const r = await a.loadPolicy(adminA, 'PATCH', 'root', '- !variable\n  id: ci/db/password\n  annotations:\n    conjur/mime_type: text/plain\n');
    expect(r.status).toBe(201);
    await within(PROPAGATION_BOUND_MS, 'node B serves the new MIME type', async () =>
      ((await b.getSecret(host, 'ci/db/password')).headers.get('content-type') ?? '').startsWith('text/plain'));
  });

  it('a change nobody announced (a lost notification) is still picked up, by the poll', async () => {
    const key = await hostKey(a, adminA, 'ci/executor');
    const host = await b.login('host/ci/executor', key);
    expect((await b.getSecret(host, 'ci/db/password')).status).toBe(200);
    // Remove the permission behind every node's back: triggers off for this session, so no NOTIFY — only the
    // generation moves, as the triggers would have moved it.
    await cluster.psql(
      "BEGIN; SET LOCAL session_replication_role = replica; " +
        `DELETE FROM permissions WHERE role_id = '${ACCOUNT}:host:ci/executor' AND privilege = 'execute'; ` +
        "UPDATE change_generations SET generation = generation + 1 WHERE topic = 'graph'; COMMIT;",
      'shared',
    );
    await within(CHANGE_POLL_MS * 2 + 500, 'node B notices by polling', async () => (await b.getSecret(host, 'ci/db/password')).status === 403);
    await within(CHANGE_POLL_MS * 2 + 500, 'node A too', async () => (await a.getSecret(host, 'ci/db/password')).status === 403);
  });

  it('policy loads sent to both nodes at once serialize: every one lands, with its own version, and the chain holds', async () => {
    const loads = Array.from({ length: 16 }, (_, i) =>
      (i % 2 === 0 ? a : b).loadPolicy(adminA, 'POST', 'ci', `- !variable parallel/v${i}\n`),
    );
    const replies = await Promise.all(loads);
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 201));
    const versions = replies.map((r) => r.json.version as number).sort((x, y) => x - y);
    expect(new Set(versions).size).toBe(16);
    expect(versions.at(-1)! - versions[0]!).toBe(15);
    const listed = await b.request('GET', `/resources/${ACCOUNT}?kind=variable&search=parallel`, { token: adminA });
    expect(listed.json).toHaveLength(16);
    // One chain across both nodes, verified through either.
    const verifyA = await a.request('GET', `/audit/${ACCOUNT}/verify`, { token: adminA });
    const verifyB = await b.request('GET', `/audit/${ACCOUNT}/verify`, { token: adminA });
    expect(verifyA.status).toBe(200);
    expect(verifyB.json).toEqual(verifyA.json);
  });

  it('fetches through both nodes at once are each audited exactly once, in one chain', async () => {
    const key = await hostKey(a, adminA, 'ci/other');
    const tokenA = await a.login('host/ci/other', key);
    await a.loadPolicy(adminA, 'PATCH', 'ci', '- !permit\n  role: !host other\n  privileges: [execute]\n  resource: !variable db/password\n');
    await within(PROPAGATION_BOUND_MS, 'both nodes allow it', async () =>
      (await a.getSecret(tokenA, 'ci/db/password')).status === 200 && (await b.getSecret(tokenA, 'ci/db/password')).status === 200);
    const before = (await a.request('GET', `/audit/${ACCOUNT}?role=${encodeURIComponent(`${ACCOUNT}:host:ci/other`)}&action=fetch&limit=1000`, { token: adminA })).json.events.length;
    const fetches = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).getSecret(tokenA, 'ci/db/password')));
    expect(fetches.every((r) => r.status === 200 && r.text === 's3cret')).toBe(true);
    const after = await b.request('GET', `/audit/${ACCOUNT}?role=${encodeURIComponent(`${ACCOUNT}:host:ci/other`)}&action=fetch&limit=1000`, { token: adminA });
    expect(after.json.events.length - before).toBe(40);
    const seqs = (after.json.events as { seq: number }[]).map((e) => e.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect((await b.request('GET', `/audit/${ACCOUNT}/verify`, { token: adminA })).status).toBe(200);
  });

  it('nodes starting at once on a new database agree on one key check and one data key; a node with another key is refused', async () => {
    // Found by starting nodes in parallel on an empty database: each wrote its own key check and first data key, and one start failed on a duplicate keyring version.
    for (let round = 0; round < 3; round++) {
      const database = await cluster.createDatabase(`start_race_${round}`);
      const key = randomBytes(32);
      const other = randomBytes(32);
      const keys = [key, key, other, key, other, key];
      const opened = await Promise.allSettled(keys.map((masterKey) => openVault({ dataDir: '', masterKey, database })));
      const vaults = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      try {
        const winner = keys[opened.findIndex((o) => o.status === 'fulfilled')]!;
        // Every node with the first node's key started; every other was refused with the key-check message.
        opened.forEach((o, i) => {
          if (keys[i]!.equals(winner)) expect(o.status).toBe('fulfilled');
          else expect(o.status === 'rejected' && o.reason).toBeInstanceOf(DataKeyMismatchError);
        });
        expect(await cluster.psql("SELECT count(*) FROM keyring; SELECT count(*) FROM server_meta WHERE name = 'key_check'", database)).toBe('1\n1');
        // A value one node seals, every other node opens: they all hold the same data key.
        const sealed = vaults[0]!.services.barrier.encrypt(Buffer.from('shared'), 'coffer:test');
        for (const v of vaults) expect((await v.services.barrier.decrypt(sealed, 'coffer:test')).toString()).toBe('shared');
        // And the same API-key pepper (made on first start, like the data key): a key one node hashes, every node
        // matches, also after a restart (which reads the stored one).
        const stored = (await vaults[0]!.services.barrier.serverSecret('api-key-pepper')).toString('hex');
        expect(await cluster.psql("SELECT count(*) FROM server_meta WHERE name LIKE 'secret:%'", database)).toBe('2');
        const hashes = vaults.map((v) => v.services.credentials.hasher.hash('an-api-key').toString('hex'));
        expect(new Set(hashes).size).toBe(1);
        const restarted = await openVault({ dataDir: '', masterKey: winner, database });
        try {
          expect(restarted.services.credentials.hasher.hash('an-api-key').toString('hex')).toBe(hashes[0]);
          expect((await restarted.services.barrier.serverSecret('api-key-pepper')).toString('hex')).toBe(stored);
        } finally {
          await restarted.close();
        }
      } finally {
        await Promise.all(vaults.map((v) => v.close()));
      }
    }
  });

  /**
   * Opens a vault on a new database while another session holds `lockKey`, and gives the opening up after
   * `afterMs`; `check` runs while the lock is still held, and the lock is released whatever it does.
   */
  async function giveUpOpeningWhileHeld(name: string, lockKey: string, afterMs: number, check: (opening: Promise<unknown>) => Promise<void>) {
    const database = await cluster.createDatabase(name);
    const holder = createPostgresClient(database, { max: 1, applicationName: 'lock-holder' });
    const lock = await holdAdvisoryLock(holder, lockKey);
    try {
      const giveUp = new AbortController();
      const opening = openVault({ dataDir: '', masterKey: randomBytes(32), database, signal: giveUp.signal });
      await sleep(afterMs);
      giveUp.abort();
      await check(opening);
    } finally {
      await lock.release();
      await holder.end();
    }
    return database;
  }

  it('an opening given up (its deadline passed) closes its connections and fails, rather than finishing later unclosed', async () => {
    // The set-up of a new database waits for the write lock, which another session holds: the opening is stuck
    // where no per-call deadline reaches, as openWithRetries' deadline is for.
    const database = await giveUpOpeningWhileHeld('given_up', WRITE_LOCK_KEY, 1000, async (opening) => {
      // Settles while the lock is still held (before, it would have waited for the lock and then opened).
      const outcome = await Promise.race([opening.then(() => 'opened', () => 'failed'), sleep(15_000).then(() => 'still waiting')]);
      expect(outcome).toBe('failed');
    });
    // Its sessions end once the lock is free (a session waiting for a lock notices its closed socket only then).
    const others = () => cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`, database);
    for (let i = 0; i < 50 && (await others()) !== '0'; i++) await sleep(100);
    expect(await others()).toBe('0');
    expect(await cluster.psql("SELECT count(*) FROM server_meta WHERE name = 'key_check'", database)).toBe('0');
  });

  it('an opening given up while it waits to migrate fails at once with that reason (not the store deadline\'s)', async () => {
    const database = await giveUpOpeningWhileHeld('given_up_migrating', MIGRATION_LOCK_KEY, 500, async (opening) => {
      await expect(opening).rejects.toThrow('opening the database was given up');
    });
    // Nothing was migrated by the attempt given up.
    expect(await cluster.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'audit_events'", database)).toBe('0');
  });
});
