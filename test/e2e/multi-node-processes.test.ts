/**
 * Issue 10's multi-node tests with real processes: three `coffer server`
 * processes on one throwaway PostgreSQL database. A token from node A works
 * on B; a revocation on A is refused on C within a second; 200 concurrent
 * fetches spread over the nodes are each audited and the chain verifies; a
 * node killed with SIGKILL in the middle of writes and fetches loses no
 * acknowledged write and serves no value without its audit record.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describePostgres, startCluster, type PgCluster } from '../helpers/postgres.js';
import { ensureBuilt, runCoffer, startCofferServer, type CofferProcess } from '../helpers/coffer-process.js';
import { Client } from '../helpers/http.js';
import { tempDir } from '../helpers/tmp.js';

const ACCOUNT = 'acme';
let cluster: PgCluster;
let database: string;
const nodes: CofferProcess[] = [];
const clients: Client[] = [];
let adminKey = '';
let admin = '';
let hostKey = '';
const dataKey = randomBytes(32).toString('base64');

describePostgres('three coffer processes on one PostgreSQL database', () => {
  beforeAll(async () => {
    await ensureBuilt();
    cluster = await startCluster();
    database = await cluster.createDatabase('three');
    const created = await runCoffer(['account', 'create', ACCOUNT, '--database', database, '--json'], { env: { COFFER_DATA_KEY: dataKey } });
    expect(created.code).toBe(0);
    adminKey = JSON.parse(created.stdout).api_key;
    for (let i = 0; i < 3; i++) {
      const node = await startCofferServer(['--data-dir', tempDir(`coffer-node${i}-`), '--database', database], { COFFER_DATA_KEY: dataKey });
      nodes.push(node);
      clients.push(new Client(node.url, ACCOUNT));
    }
    admin = await clients[0]!.login('admin', adminKey);
    const r = await clients[1]!.loadPolicy(admin, 'POST', 'root', `
- !host runner
- !variable db/password
- !permit
  role: !host runner
  privileges: [read, execute]
  resource: !variable db/password
`);
    expect(r.status).toBe(201);
    hostKey = r.json.created_roles[`${ACCOUNT}:host:runner`].api_key;
    expect((await clients[2]!.setSecret(admin, 'db/password', 'v1')).status).toBe(201);
  }, 180_000);

  afterAll(async () => {
    for (const n of nodes) await n.stop();
    await cluster?.stop();
  });

  it('a token from node A works on B; revoked on A, it is refused on C within a second', async () => {
    const [a, b, c] = clients as [Client, Client, Client];
    const token = await a.login('host/runner', hostKey);
    expect((await b.getSecret(token, 'db/password')).text).toBe('v1');
    expect((await c.getSecret(token, 'db/password')).status).toBe(200);
    expect((await a.request('DELETE', `/authn/${ACCOUNT}/token`, { token })).status).toBe(204);
    const start = Date.now();
    while ((await c.request('GET', '/whoami', { token })).status !== 401) {
      if (Date.now() - start > 1000) throw new Error('node C still accepts the revoked token after 1 s');
      await sleep(20);
    }
  });

  it('200 concurrent fetches spread over the nodes are each audited once, and the chain verifies', async () => {
    const token = await clients[0]!.login('host/runner', hostKey);
    const ids = Array.from({ length: 200 }, (_, i) => `spread-${i}-${randomBytes(3).toString('hex')}`);
    const replies = await Promise.all(
      ids.map((id, i) => clients[i % 3]!.request('GET', `/secrets/${ACCOUNT}/variable/db%2Fpassword`, { token, headers: { 'X-Request-Id': id } })),
    );
    expect(replies.every((r) => r.status === 200 && r.text === 'v1')).toBe(true);
    const events = (await clients[1]!.request('GET', `/audit/${ACCOUNT}?action=fetch&limit=1000`, { token: admin })).json.events as { request_id: string }[];
    const audited = events.map((e) => e.request_id).filter((id) => id?.startsWith('spread-'));
    expect(audited.sort()).toEqual([...ids].sort());
    const verify = await clients[2]!.request('GET', `/audit/${ACCOUNT}/verify`, { token: admin });
    expect(verify.status).toBe(200);
    expect(verify.json.ok).toBe(true);
  });

  it('a node killed with SIGKILL mid-traffic loses no acknowledged write and serves no value without its audit record', async () => {
    const token = await clients[0]!.login('host/runner', hostKey);
    const acknowledged: { version: number; value: string }[] = [];
    const served: string[] = [];
    const statuses: number[] = [];
    let stop = false;
    let n = 0;
    const worker = async (client: Client) => {
      while (!stop) {
        const i = n++;
        const requestId = `kill-${i}-${randomBytes(3).toString('hex')}`;
        try {
          if (i % 3 === 0) {
            const value = `w-${i}`;
            const r = await client.request('POST', `/secrets/${ACCOUNT}/variable/db%2Fpassword`, {
              token: admin,
              body: value,
              headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
              skipContract: true,
            });
            statuses.push(r.status);
            if (r.status === 201) acknowledged.push({ version: -1, value });
          } else {
            const r = await client.request('GET', `/secrets/${ACCOUNT}/variable/db%2Fpassword`, { token, headers: { 'X-Request-Id': requestId }, skipContract: true });
            statuses.push(r.status);
            if (r.status === 200) served.push(requestId);
          }
        } catch {
          // The killed node's connections fail: not acknowledged, not served.
        }
      }
    };
    const workers = clients.flatMap((c) => [worker(c), worker(c)]);
    await sleep(1000);
    const victim = nodes[2]!;
    process.kill(victim.pid, 'SIGKILL');
    await sleep(1500);
    stop = true;
    await Promise.all(workers);
    // Only successes and fail-closed refusals from the nodes that live (the killed one's requests fail at the socket).
    expect([...new Set(statuses)].filter((st) => st !== 200 && st !== 201 && st !== 503)).toEqual([]);
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThan(0);

    // The newest value is the last write acknowledged (writes to the killed node stopped with it).
    const latest = await clients[1]!.getSecret(admin, 'db/password');
    const recent = acknowledged.slice(-5).map((w) => w.value);
    expect(recent).toContain(latest.text);
    // Every acknowledged value is stored: all acknowledged writes appear in the audit log as successful updates.
    const updates = (await clients[0]!.request('GET', `/audit/${ACCOUNT}?action=update&result=success&limit=1000`, { token: admin })).json.events as { message: string }[];
    expect(updates.length).toBeGreaterThanOrEqual(acknowledged.length);
    // Every value served has its audit record, whichever node served it.
    const fetches = (await clients[1]!.request('GET', `/audit/${ACCOUNT}?action=fetch&result=success&limit=1000`, { token: admin })).json.events as { request_id: string }[];
    const audited = new Set(fetches.map((e) => e.request_id));
    for (const id of served) expect(audited.has(id), id).toBe(true);
    const verify = await clients[0]!.request('GET', `/audit/${ACCOUNT}/verify`, { token: admin });
    expect(verify.json.ok).toBe(true);
  }, 60_000);

  it('three --dev nodes started at once on a new database all listen; one creates the account and prints its key, which works on every node', async () => {
    const fresh = await cluster.createDatabase('dev_race');
    const started = await Promise.all(
      [0, 1, 2].map((i) => startCofferServer(['--dev', '--data-dir', tempDir(`coffer-dev${i}-`), '--database', fresh], { COFFER_DATA_KEY: dataKey })),
    );
    try {
      const printed = started.map((n) => /api key: (\S+)/.exec(n.stdout())?.[1]).filter((k) => k !== undefined);
      expect(printed).toHaveLength(1);
      for (const n of started) expect(n.stderr()).not.toMatch(/duplicate key|already exists|error/i);
      for (const n of started) expect(await new Client(n.url, 'dev').login('admin', printed[0]!)).not.toBe('');
      expect(await cluster.psql("SELECT count(*) FROM accounts; SELECT count(*) FROM keyring", fresh)).toBe('1\n1');
    } finally {
      await Promise.all(started.map((n) => n.stop()));
    }
  });
});
