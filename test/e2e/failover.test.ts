/**
 * Issue 10, item 4: a primary with a synchronous streaming standby
 * (synchronous_commit = on, synchronous_standby_names naming the standby, so
 * an acknowledged commit exists on both), a Coffer node on the multi-host URL
 * with target_session_attrs=read-write. Writes and fetches run continuously;
 * the primary is SIGKILLed, then the standby promoted. While no writable
 * database is reachable the node answers 503 (never a value, never a 500,
 * never a hang, never a crash); afterwards it serves again without a restart;
 * no acknowledged write is lost, every value served has its audit record,
 * and the chain verifies.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describePostgres, killCluster, multiHostUrl, promote, startCluster, startStandby, type PgCluster } from '../helpers/postgres.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

const ACCOUNT = 'acme';
let primary: PgCluster;
let standby: PgCluster;
let node: TestServer;
let api: Client;
let admin: string;
let host: string;

interface Outcome {
  kind: 'set' | 'fetch';
  id: string;
  requestId: string;
  status: number;
  value?: string;
  body: string;
}

describePostgres('failover to a synchronous standby', () => {
  beforeAll(async () => {
    primary = await startCluster({ database: 'coffer' });
    standby = await startStandby(primary);
    node = await startTestServer({ account: ACCOUNT, flags: { database: multiHostUrl([primary, standby], 'coffer') } });
    node.clock.nowMs = () => Date.now();
    api = new Client(node.url, ACCOUNT);
    admin = await api.login('admin', node.adminKey);
    const r = await api.loadPolicy(admin, 'POST', 'root', `
- !host runner
- !variable seed
- !permit
  role: !host runner
  privileges: [execute]
  resource: !variable seed
`);
    expect(r.status).toBe(201);
    expect((await api.setSecret(admin, 'seed', 'seed-value')).status).toBe(201);
    host = await api.login('host/runner', r.json.created_roles[`${ACCOUNT}:host:runner`].api_key);
  }, 180_000);

  afterAll(async () => {
    await node?.close();
    await standby?.stop();
    await primary?.stop();
  });

  it('answers 503 while no writable database is reachable, then serves again without a restart; nothing acknowledged is lost', async () => {
    const outcomes: Outcome[] = [];
    let n = 0;
    let stop = false;
    const step = async () => {
      const i = n++;
      const requestId = `failover-${i}-${randomBytes(4).toString('hex')}`;
      const headers = { 'X-Request-Id': requestId };
      if (i % 2 === 0) {
        const id = `written/v${i}`;
        const value = `value-${i}`;
        // A variable per write: declared and set in one policy load would hide which step failed, so set an annotation-free variable.
        const load = await api.request('POST', `/policies/${ACCOUNT}/policy/root`, { token: admin, body: `- !variable ${id}\n`, headers, skipContract: true });
        if (load.status !== 201) return outcomes.push({ kind: 'set', id, requestId, status: load.status, body: load.text });
        const set = await api.request('POST', `/secrets/${ACCOUNT}/variable/${encodeURIComponent(id)}`, { token: admin, body: value, headers, skipContract: true });
        outcomes.push({ kind: 'set', id, requestId, status: set.status, value, body: set.text });
      } else {
        const got = await api.request('GET', `/secrets/${ACCOUNT}/variable/seed`, { token: host, headers, skipContract: true });
        outcomes.push({ kind: 'fetch', id: 'seed', requestId, status: got.status, value: got.status === 200 ? got.text : undefined, body: got.text });
      }
    };
    const loop = (async () => {
      while (!stop) await step();
    })();

    await sleep(1500);
    const beforeKill = outcomes.length;
    await killCluster(primary);
    // The node must refuse, not hang: keep going until several refusals were answered.
    const deadline = Date.now() + 60_000;
    while (outcomes.slice(beforeKill).filter((o) => o.status === 503).length < 3) {
      if (Date.now() > deadline) throw new Error(`no 503 after the primary died: ${JSON.stringify(outcomes.slice(beforeKill).map((o) => o.status))}`);
      await sleep(100);
    }
    // A load balancer sees it too: /health names the backend and is 503 while no writable server answers.
    const down = await api.request('GET', '/health');
    expect(down.status).toBe(503);
    expect(down.json).toMatchObject({ status: 'error', backend: 'postgres' });
    expect(['unavailable', 'not_writable']).toContain(down.json.database);
    await promote(standby);
    const promotedAt = outcomes.length;
    while (!outcomes.slice(promotedAt).some((o) => o.kind === 'fetch' && o.status === 200)) {
      if (Date.now() > deadline + 60_000) throw new Error('the node did not serve again after the standby was promoted');
      await sleep(100);
    }
    await sleep(1000);
    stop = true;
    await loop;
    const healthy = await api.request('GET', '/health');
    expect(healthy.status).toBe(200);
    expect(healthy.json).toMatchObject({ status: 'ok', backend: 'postgres', database: 'ok' });

    // Nothing but success or a fail-closed refusal, ever; a refusal carries no value.
    expect([...new Set(outcomes.map((o) => o.status))].sort()).toEqual(expect.arrayContaining([200, 503]));
    for (const o of outcomes) {
      expect([200, 201, 503]).toContain(o.status);
      if (o.status === 503) expect(o.body).not.toContain('seed-value');
    }
    expect(outcomes.slice(beforeKill).some((o) => o.status === 503)).toBe(true);

    // Every acknowledged write survived, on the promoted standby, through the same node.
    const acknowledged = outcomes.filter((o) => o.kind === 'set' && o.status === 201);
    expect(acknowledged.length).toBeGreaterThan(0);
    for (const o of acknowledged) {
      const r = await api.getSecret(admin, o.id);
      expect(r.status, o.id).toBe(200);
      expect(r.text).toBe(o.value);
    }
    // Every value served has its audit record (matched by request id), and the chain verifies.
    const events = (await api.request('GET', `/audit/${ACCOUNT}?action=fetch&result=success&limit=1000`, { token: admin })).json.events as { request_id: string }[];
    const audited = new Set(events.map((e) => e.request_id));
    for (const o of outcomes.filter((x) => x.kind === 'fetch' && x.status === 200)) expect(audited.has(o.requestId), o.requestId).toBe(true);
    const verify = await api.request('GET', `/audit/${ACCOUNT}/verify`, { token: admin });
    expect(verify.status).toBe(200);
    expect(verify.json.ok).toBe(true);
  }, 240_000);
});
