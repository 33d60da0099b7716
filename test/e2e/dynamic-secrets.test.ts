/**
 * Dynamic secrets (issue 12) end to end: a real Coffer server and a throwaway
 * PostgreSQL cluster as the TARGET database its `postgresql` issuer creates
 * logins in. The target's pg_hba.conf asks TCP clients other than `postgres`
 * for a password (scram-sha-256), so a fetched login is really checked.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../helpers/http.js';
import { describePostgres, startCluster, type PgCluster } from '../helpers/postgres.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { runCli, tempHome } from '../helpers/cli.js';

const A = 'cucumber';
const ADMIN_PW = 'Adm1n-target-pw-9f3Kq';

const POLICY = `
- !policy
  id: conjur/issuers
- !user issuer-admin
- !user issuer-reader
- !permit
  role: !user issuer-admin
  privileges: [ read, create, update ]
  resource: !policy conjur/issuers
- !permit
  role: !user issuer-reader
  privileges: [ read ]
  resource: !policy conjur/issuers
- !host ci
- !host reader
- !host outsider
- !variable static/token
- !policy
  id: data/dynamic
  body:
  - !variable
    id: pg-ci
    annotations:
      dynamic/issuer: pg1
      dynamic/ttl: 600
      dynamic/method: login-role
      dynamic/grant-roles: app_read
  - !variable
    id: pg-evil
    annotations:
      dynamic/issuer: pg1
      dynamic/grant-roles: "app_read\\"; DROP TABLE app_data; --, x' ; DROP TABLE app_data; SELECT '1"
  - !variable
    id: pg-down
    annotations:
      dynamic/issuer: pg-down
      dynamic/grant-roles: app_read
  - !variable
    id: pg-temp
    annotations:
      dynamic/issuer: pg-temp
      dynamic/grant-roles: app_read
- !permit
  role: !host ci
  privileges: [ read, execute ]
  resource: [ !variable data/dynamic/pg-ci, !variable data/dynamic/pg-evil, !variable data/dynamic/pg-down, !variable static/token ]
- !permit
  role: !host reader
  privileges: [ read ]
  resource: !variable data/dynamic/pg-ci
`;

describePostgres('dynamic secrets: a postgresql issuer against a real target database', () => {
  let target: PgCluster;
  let srv: TestServer;
  let api: Client;
  let admin = '';
  const keys = new Map<string, string>();
  const clients: postgres.Sql[] = [];

  const token = (login: string) => api.login(login, keys.get(login)!);
  const coffers = async () => Number(await target.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'coffer\\_%' AND rolname <> 'coffer_admin'", 'postgres'));
  const roleExists = async (name: string) => (await target.psql(`SELECT count(*) FROM pg_roles WHERE rolname = '${name.replace(/'/g, "''")}'`, 'postgres')) === '1';
  const leaseCount = () => srv.server.vault.services.store.dynamic.countLeases(A);
  const dynamicPath = (id: string) => `/secrets/${A}/variable/${encodeURIComponent(`data/dynamic/${id}`)}`;
  async function waitFor(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
    const until = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  function connect(creds: { username: string; password: string; host: string; port: number; database: string }): postgres.Sql {
    const sql = postgres({ host: creds.host, port: creds.port, database: creds.database, username: creds.username, password: creds.password, max: 1, ssl: false, onnotice: () => undefined, connect_timeout: 5 });
    clients.push(sql);
    return sql;
  }
  async function fetchCreds(t: string, id = 'pg-ci') {
    const r = await api.request('GET', dynamicPath(id), { token: t });
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    return JSON.parse(r.text) as { username: string; password: string; host: string; port: number; database: string; expires_at: string; lease_id: string };
  }
  async function createIssuer(id: string, port: number, password = ADMIN_PW, maxTtl = 900) {
    // The JSON conjur-cli-go's `conjur issuer create --id … --type … --max-ttl … --data '{…}'` sends.
    return api.request('POST', `/issuers/${A}`, {
      token: admin,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id, type: 'postgresql', max_ttl: maxTtl, data: { host: '127.0.0.1', port, database: 'app', username: 'coffer_admin', password, sslmode: 'disable' } }),
    });
  }

  beforeAll(async () => {
    target = await startCluster({ database: 'app' });
    writeFileSync(
      join(target.dataDir, 'pg_hba.conf'),
      ['local all all trust', 'host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
    );
    await target.psql('SELECT pg_reload_conf()', 'postgres');
    await target.psql(
      [
        `CREATE ROLE coffer_admin LOGIN CREATEROLE PASSWORD '${ADMIN_PW}'`,
        'GRANT pg_signal_backend TO coffer_admin',
        'CREATE ROLE app_read NOLOGIN',
        'CREATE TABLE app_data (x int)',
        'INSERT INTO app_data VALUES (42)',
        'CREATE TABLE payroll (salary int)',
        'GRANT SELECT ON app_data TO app_read',
      ].join('; '),
      'app',
    );
    srv = await startTestServer({ account: A, env: { COFFER_LEASE_SWEEP_INTERVAL_MS: '200' }, keepDataDir: true });
    api = new Client(srv.url, A);
    keys.set('admin', srv.adminKey);
    admin = await api.login('admin', srv.adminKey);
    const loaded = await api.loadPolicy(admin, 'POST', 'root', POLICY);
    expect(loaded.status, loaded.text).toBe(201);
    for (const [id, c] of Object.entries(loaded.json.created_roles as Record<string, { api_key: string }>)) {
      const [, kind, identifier] = id.split(':') as [string, string, string];
      keys.set(kind === 'user' ? identifier : `${kind}/${identifier}`, c.api_key);
    }
    expect((await api.setSecret(admin, 'static/token', 'static-value-1')).status).toBe(201);
    expect((await createIssuer('pg1', target.port)).status).toBe(201);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 1 }).catch(() => undefined)));
    await srv?.close();
    await target?.stop();
  });

  describe('the issuers API (conjur-cli-go request formats)', () => {
    it('create answers the issuer with the password masked; it is sealed at rest; list omits data; get shows it masked', async () => {
      const created = await createIssuer('pg-cli', target.port);
      expect(created.status, created.text).toBe(201);
      expect(created.json).toMatchObject({ id: 'pg-cli', type: 'postgresql', max_ttl: 900, data: { host: '127.0.0.1', port: target.port, database: 'app', username: 'coffer_admin', password: '*****', sslmode: 'disable' } });
      expect(created.text).not.toContain(ADMIN_PW);
      // conjur-api-go's Issuer struct: id, type, max_ttl, data, created_at, modified_at.
      expect(Object.keys(created.json).sort()).toEqual(['created_at', 'data', 'id', 'max_ttl', 'modified_at', 'type']);
      expect(typeof created.json.created_at).toBe('string');
      const row = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-cli');
      expect(row!.data_public).not.toContain(ADMIN_PW);
      expect(row!.data_sealed.includes(Buffer.from(ADMIN_PW))).toBe(false);

      // conjur issuer list
      const list = await api.request('GET', `/issuers/${A}`, { token: admin });
      expect(list.status).toBe(200);
      expect(list.json.issuers.map((i: { id: string }) => i.id)).toEqual(['pg-cli', 'pg1']);
      expect(list.json.issuers[0].data).toBeUndefined();
      expect(Object.keys(list.json.issuers[0]).sort()).toEqual(['created_at', 'id', 'max_ttl', 'modified_at', 'type']);
      // conjur issuer get --id pg-cli (the id query-escaped into the path)
      const got = await api.request('GET', `/issuers/${A}/${encodeURIComponent('pg-cli')}`, { token: admin });
      expect(got.status).toBe(200);
      expect(got.json.data.password).toBe('*****');
      expect(got.text).not.toContain(ADMIN_PW);
      // conjur-api-go UpdateIssuer: {"max_ttl": …} and/or {"data": …}; max_ttl may not shrink
      const shrink = await api.request('PATCH', `/issuers/${A}/pg-cli`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ max_ttl: 600 }) });
      expect(shrink.status).toBe(400);
      expect(shrink.json.error.message).toBe('The new max_ttl must be equal or higher than the current max_ttl');
      const grow = await api.request('PATCH', `/issuers/${A}/pg-cli`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ max_ttl: 1200, data: { host: 'localhost', port: target.port, database: 'app', username: 'coffer_admin', password: '*****' } }) });
      expect(grow.status, grow.text).toBe(200);
      expect(grow.json).toMatchObject({ max_ttl: 1200, data: { host: 'localhost', password: '*****' } });
      // The masked password sent back kept the stored one.
      const updated = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-cli');
      expect((await srv.server.vault.services.issuers.connectionOf(updated!)).password).toBe(ADMIN_PW);
      // conjur issuer delete --id pg-cli  → DELETE …?keep_secrets=false
      const del = await api.request('DELETE', `/issuers/${A}/pg-cli?keep_secrets=false`, { token: admin });
      expect(del.status).toBe(200);
      expect((await api.request('GET', `/issuers/${A}/pg-cli`, { token: admin })).status).toBe(404);
    });

    it('refuses duplicates (409), Conjur-invalid ids and extra parameters (400), and audits every change', async () => {
      expect((await createIssuer('pg1', target.port)).status).toBe(409);
      const bad = await api.request('POST', `/issuers/${A}`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'a/b', type: 'postgresql', max_ttl: 60, data: {} }) });
      expect(bad.status).toBe(400);
      expect(bad.json.error.message).toContain("invalid 'id' parameter");
      const extra = await api.request('POST', `/issuers/${A}`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'x', type: 'postgresql', max_ttl: 60, data: { host: 'h', database: 'd', username: 'u', password: 'p' }, owner: 'me' }) });
      expect(extra.status).toBe(400);
      const audit = await api.request('GET', `/audit/${A}?action=issuer&limit=100`, { token: admin });
      expect(audit.status).toBe(200);
      const ops = (audit.json.events as { operation: string; result: string; resource: string }[]).map((e) => `${e.operation}:${e.result}:${e.resource}`);
      expect(ops).toEqual(expect.arrayContaining([`add:success:${A}:issuer:pg1`, `update:success:${A}:issuer:pg-cli`, `remove:success:${A}:issuer:pg-cli`, `add:failure:${A}:issuer:pg1`]));
      expect(audit.text).not.toContain(ADMIN_PW);
    });

    it('follows Conjur: create needs create on conjur/issuers, the rest update; without them 403', async () => {
      const issuerAdmin = await token('issuer-admin');
      const issuerReader = await token('issuer-reader');
      const ci = await token('host/ci');
      expect((await api.request('GET', `/issuers/${A}`, { token: issuerAdmin })).status).toBe(200);
      for (const t of [issuerReader, ci]) {
        expect((await api.request('GET', `/issuers/${A}`, { token: t })).status).toBe(403);
        expect((await api.request('GET', `/issuers/${A}/pg1`, { token: t })).status).toBe(403);
        const create = await api.request('POST', `/issuers/${A}`, { token: t, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'nope', type: 'postgresql', max_ttl: 60, data: { host: 'h', database: 'd', username: 'u', password: 'p' } }) });
        expect(create.status).toBe(403);
        expect((await api.request('DELETE', `/issuers/${A}/pg1`, { token: t })).status).toBe(403);
      }
      expect(await srv.server.vault.services.store.dynamic.getIssuer(A, 'nope')).toBeUndefined();
    });
  });

  describe('fetching a dynamic variable', () => {
    it('mints a login that connects and can do what app_read can, and nothing more; the lease is listed', async () => {
      const ci = await token('host/ci');
      const creds = await fetchCreds(ci);
      expect(creds).toMatchObject({ host: '127.0.0.1', port: target.port, database: 'app' });
      expect(creds.username).toMatch(/^coffer_[0-9a-f]{24}$/);
      expect(creds.password.length).toBeGreaterThanOrEqual(32);
      const db = connect(creds);
      expect(await db`SELECT x FROM app_data`).toEqual([{ x: 42 }]);
      await expect(db`SELECT salary FROM payroll`).rejects.toThrow(/permission denied/);
      await expect(db`CREATE TABLE mine (y int)`).rejects.toThrow(/permission denied/);
      // A wrong password is refused: the target really checks it.
      await expect(connect({ ...creds, password: `${creds.password}x` })`SELECT 1`).rejects.toThrow(/password authentication failed/);
      const leases = await api.request('GET', `/leases/${A}`, { token: ci });
      expect(leases.status).toBe(200);
      expect(leases.json.leases).toContainEqual(expect.objectContaining({ id: creds.lease_id, username: creds.username, variable: `${A}:variable:data/dynamic/pg-ci`, state: 'active', role: `${A}:host:ci` }));
      expect(leases.text).not.toContain(creds.password);
      // Audited before it left, with the lease but never the password.
      const audit = await api.request('GET', `/audit/${A}?resource=${encodeURIComponent(`${A}:variable:data/dynamic/pg-ci`)}&limit=100`, { token: admin });
      expect(audit.text).toContain(creds.lease_id);
      expect(audit.text).not.toContain(creds.password);
      // Each fetch is a new login.
      const again = await fetchCreds(ci);
      expect(again.username).not.toBe(creds.username);
    });

    it('DELETE /leases (update on the variable) drops the login and terminates its open session', async () => {
      const ci = await token('host/ci');
      const creds = await fetchCreds(ci);
      const db = connect(creds);
      expect(await db`SELECT 1 AS one`).toEqual([{ one: 1 }]);
      // ci has read and execute, not update.
      expect((await api.request('DELETE', `/leases/${A}/${creds.lease_id}`, { token: ci })).status).toBe(403);
      expect((await api.request('DELETE', `/leases/${A}/${creds.lease_id}`, { token: await token('host/outsider') })).status).toBe(404);
      expect(await roleExists(creds.username)).toBe(true);
      const del = await api.request('DELETE', `/leases/${A}/${creds.lease_id}`, { token: admin });
      expect(del.status, del.text).toBe(204);
      expect(await roleExists(creds.username)).toBe(false);
      await expect(db`SELECT 1`).rejects.toThrow();
      expect(await srv.server.vault.services.store.dynamic.getLease(creds.lease_id)).toBeUndefined();
      await expect(connect(creds)`SELECT 1`).rejects.toThrow();
    });

    it('revoking the access token that fetched it (DELETE /authn/{account}/token) ends the lease', async () => {
      const ci = await token('host/ci');
      const creds = await fetchCreds(ci);
      expect(await roleExists(creds.username)).toBe(true);
      expect((await api.request('DELETE', `/authn/${A}/token`, { token: ci })).status).toBe(204);
      expect(await roleExists(creds.username)).toBe(false);
    });

    it('ends at its TTL: the sweeper drops the login once the lease has expired', async () => {
      const creds = await fetchCreds(await token('host/ci'));
      expect(Date.parse(creds.expires_at) - srv.clock.nowMs()).toBeGreaterThan(590_000);
      srv.clock.advance(601);
      admin = await api.login('admin', keys.get('admin')!);
      await waitFor('the expired login to be dropped', async () => !(await roleExists(creds.username)));
      await waitFor('the lease row to go', async () => (await srv.server.vault.services.store.dynamic.getLease(creds.lease_id)) === undefined);
    });

    it('a host without execute: 404 when it cannot see the variable, 403 when it can; no login created, no lease', async () => {
      const before = await coffers();
      const leases = await leaseCount();
      expect((await api.request('GET', dynamicPath('pg-ci'), { token: await token('host/outsider') })).status).toBe(404);
      expect((await api.request('GET', dynamicPath('pg-ci'), { token: await token('host/reader') })).status).toBe(403);
      expect(await coffers()).toBe(before);
      expect(await leaseCount()).toBe(leases);
    });

    it('refuses to set a value on a dynamic variable (422)', async () => {
      const r = await api.setSecret(admin, 'data/dynamic/pg-ci', 'not-allowed');
      expect(r.status).toBe(422);
      expect(r.json.error.message).toContain('is dynamic');
    });

    it('target database down: 502 naming the issuer, never its password; no lease, no half-written row', async () => {
      const closedPort = target.port === 65000 ? 65001 : 65000;
      expect((await createIssuer('pg-down', closedPort, 'D0wn-secret-pw-77')).status).toBe(201);
      const leases = await leaseCount();
      const r = await api.request('GET', dynamicPath('pg-down'), { token: await token('host/ci') });
      expect(r.status).toBe(502);
      expect(r.json.error.code).toBe('bad_gateway');
      expect(r.json.error.message).toContain("Issuer 'pg-down'");
      expect(r.text).not.toContain('D0wn-secret-pw-77');
      expect(srv.logs.join('\n')).not.toContain('D0wn-secret-pw-77');
      expect(await leaseCount()).toBe(leases);
      const audit = await api.request('GET', `/audit/${A}?resource=${encodeURIComponent(`${A}:variable:data/dynamic/pg-down`)}&limit=10`, { token: admin });
      expect(audit.json.events.at(-1)).toMatchObject({ result: 'failure' });
      expect(audit.text).not.toContain('D0wn-secret-pw-77');
    });

    it('annotation values with quotes and semicolons are identifiers, never SQL: the grant fails, nothing is dropped, nothing left behind', async () => {
      const before = await coffers();
      const r = await api.request('GET', dynamicPath('pg-evil'), { token: await token('host/ci') });
      expect(r.status, r.text).toBe(502);
      expect(r.json.error.message).toMatch(/role .* does not exist/);
      expect(await target.psql('SELECT count(*) FROM app_data', 'app')).toBe('1');
      expect(await coffers()).toBe(before);
      expect((await srv.server.vault.services.store.dynamic.leasesOfAccount(A)).filter((l) => l.variable_id.endsWith('pg-evil'))).toEqual([]);
    });

    it('works through GET /secrets?variable_ids= and POST /secrets/{account}/batch, next to a static variable', async () => {
      const ci = await token('host/ci');
      const ids = [`${A}:variable:data/dynamic/pg-ci`, `${A}:variable:static/token`];
      const all = await api.request('GET', `/secrets?variable_ids=${encodeURIComponent(ids.join(','))}`, { token: ci });
      expect(all.status, all.text).toBe(200);
      expect(all.json[ids[1]!]).toBe('static-value-1');
      const creds = JSON.parse(all.json[ids[0]!]);
      expect(await connect(creds)`SELECT x FROM app_data`).toEqual([{ x: 42 }]);
      const batch = await api.request('POST', `/secrets/${A}/batch`, { token: ci, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ids: ['data/dynamic/pg-ci', 'data/dynamic/pg-down', 'static/token'] }) });
      expect(batch.status).toBe(200);
      expect(JSON.parse(batch.json.values[ids[0]!]).username).toMatch(/^coffer_/);
      expect(batch.json.errors[`${A}:variable:data/dynamic/pg-down`].code).toBe('bad_gateway');
      // All or nothing: a batch with a failing dynamic variable mints nothing that survives.
      const leases = await leaseCount();
      const failing = await api.request('GET', `/secrets?variable_ids=${encodeURIComponent(`${ids[0]},${A}:variable:data/dynamic/pg-down`)}`, { token: ci });
      expect(failing.status).toBe(502);
      await waitFor('the batch\'s first lease to be taken back', async () => (await leaseCount()) === leases);
    });

    it('100 concurrent fetches: 100 distinct logins and leases, all ended at expiry', async () => {
      const ci = await token('host/ci');
      const before = await coffers();
      const creds = await Promise.all(Array.from({ length: 100 }, () => fetchCreds(ci)));
      expect(new Set(creds.map((c) => c.username)).size).toBe(100);
      expect(new Set(creds.map((c) => c.lease_id)).size).toBe(100);
      expect(await coffers()).toBe(before + 100);
      srv.clock.advance(601);
      admin = await api.login('admin', keys.get('admin')!);
      await waitFor('every login to be dropped', async () => (await coffers()) === 0, 30_000);
      expect(await leaseCount()).toBe(0);
    });

    it('a revocation the database refuses stays pending (listed, audited) and the sweeper finishes it', async () => {
      const creds = await fetchCreds(await token('host/ci'));
      // The issuer's login loses its password: the target refuses every connection of the issuer.
      await target.psql("ALTER ROLE coffer_admin PASSWORD 'changed-elsewhere'", 'app');
      const again = await api.request('PATCH', `/issuers/${A}/pg1`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ data: { host: '127.0.0.1', port: target.port, database: 'app', username: 'coffer_admin', password: 'wrong-for-now', sslmode: 'disable' } }) });
      expect(again.status).toBe(200);
      const del = await api.request('DELETE', `/leases/${A}/${creds.lease_id}`, { token: admin });
      expect(del.status).toBe(202);
      expect(del.json.lease).toMatchObject({ state: 'pending', attempts: 1 });
      expect(del.json.lease.last_error).toContain('password authentication failed');
      expect(await roleExists(creds.username)).toBe(true);
      const list = await api.request('GET', `/leases/${A}`, { token: admin });
      expect(list.json.leases.find((l: { id: string }) => l.id === creds.lease_id)).toMatchObject({ state: 'pending' });
      // The database comes back (the issuer's password is right again): the sweeper ends it.
      await target.psql(`ALTER ROLE coffer_admin PASSWORD '${ADMIN_PW}'`, 'app');
      await api.request('PATCH', `/issuers/${A}/pg1`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ data: { host: '127.0.0.1', port: target.port, database: 'app', username: 'coffer_admin', password: ADMIN_PW, sslmode: 'disable' } }) });
      // The retry is due at most 10 s (on the server's clock) after the failed attempt.
      srv.clock.advance(10);
      admin = await api.login('admin', keys.get('admin')!);
      await waitFor('the pending lease to end', async () => !(await roleExists(creds.username)), 20_000);
      const audit = await api.request('GET', `/audit/${A}?action=lease&limit=1000`, { token: admin });
      const mine = (audit.json.events as { seq: string; message: string; result: string }[]).filter((e) => e.message.includes(creds.lease_id));
      expect(mine.sort((x, y) => Number(x.seq) - Number(y.seq)).map((e) => e.result)).toEqual(['failure', 'success']);
    });

    it('deleting the issuer ends its leases and, with keep_secrets=false, deletes its variables', async () => {
      expect((await createIssuer('pg-temp', target.port)).status).toBe(201);
      const grant = await api.loadPolicy(admin, 'PATCH', 'root', '- !permit\n  role: !host ci\n  privileges: [ execute ]\n  resource: !variable data/dynamic/pg-temp\n');
      expect(grant.status).toBe(201);
      const creds = await fetchCreds(await token('host/ci'), 'pg-temp');
      expect(await roleExists(creds.username)).toBe(true);
      expect((await api.request('DELETE', `/issuers/${A}/pg-temp?keep_secrets=false`, { token: admin })).status).toBe(200);
      expect(await roleExists(creds.username)).toBe(false);
      expect(await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-temp')).toBeUndefined();
      expect((await api.request('GET', `/resources/${A}/variable/${encodeURIComponent('data/dynamic/pg-temp')}`, { token: admin })).status).toBe(404);
    });

    it('coffer issuer create|list|show|update|delete and coffer leases list|revoke', async () => {
      const home = tempHome();
      const env = (login: string) => ({ HOME: home, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: A, CONJUR_AUTHN_LOGIN: login, CONJUR_AUTHN_API_KEY: keys.get(login)! });
      const data = JSON.stringify({ host: '127.0.0.1', port: target.port, database: 'app', username: 'coffer_admin', password: ADMIN_PW, sslmode: 'disable' });
      const created = await runCli(['issuer', 'create', '-i', 'pg-cli2', '-t', 'postgresql', '-m', '900', '--data', '-'], { env: env('issuer-admin'), stdin: data });
      expect(created.err).toBe('');
      expect(created.code).toBe(0);
      expect(JSON.parse(created.out)).toMatchObject({ id: 'pg-cli2', data: { password: '*****' } });
      expect(created.out).not.toContain(ADMIN_PW);
      const listed = await runCli(['issuer', 'list'], { env: env('issuer-admin') });
      expect(JSON.parse(listed.out).issuers.map((i: { id: string }) => i.id)).toContain('pg-cli2');
      const shown = await runCli(['issuer', 'show', '-i', 'pg-cli2'], { env: env('issuer-admin') });
      expect(JSON.parse(shown.out).data.password).toBe('*****');
      const updated = await runCli(['issuer', 'update', '-i', 'pg-cli2', '-m', '1000'], { env: env('issuer-admin') });
      expect(JSON.parse(updated.out).max_ttl).toBe(1000);
      const refused = await runCli(['issuer', 'list'], { env: env('host/ci') });
      expect(refused.code).toBe(4);
      const creds = await fetchCreds(await token('host/ci'));
      const leases = await runCli(['leases', 'list'], { env: { ...env('admin') } });
      expect(leases.code).toBe(0);
      expect(leases.out).toContain(creds.lease_id);
      expect(leases.out).toContain(creds.username);
      expect(leases.out).not.toContain(creds.password);
      const revoked = await runCli(['leases', 'revoke', creds.lease_id], { env: env('admin') });
      expect(revoked.code).toBe(0);
      expect(await roleExists(creds.username)).toBe(false);
      const deleted = await runCli(['issuer', 'delete', '-i', 'pg-cli2', '--keep-secrets'], { env: env('issuer-admin') });
      expect(deleted.out).toContain("The issuer 'pg-cli2' was deleted");
    });

    it('coffer run: the job gets PGUSER/PGPASSWORD from one fetch, and the login is gone when it exits', async () => {
      const home = tempHome();
      const out = join(home, 'job.out');
      const script = `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({ u: process.env.PGUSER, p: process.env.PGPASSWORD, all: process.env.PG_JSON }))`;
      const res = await runCli(
        ['run', '--yaml', 'PGUSER: !var:field username data/dynamic/pg-ci\nPGPASSWORD: !var:field password data/dynamic/pg-ci\nPG_JSON: !var data/dynamic/pg-ci\n', '--', process.execPath, '-e', script],
        { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, CONJUR_APPLIANCE_URL: srv.url, CONJUR_ACCOUNT: A, CONJUR_AUTHN_LOGIN: 'host/ci', CONJUR_AUTHN_API_KEY: keys.get('host/ci')! } },
      );
      expect(res.err).toBe('');
      expect(res.code).toBe(0);
      const seen = JSON.parse((await import('node:fs')).readFileSync(out, 'utf8')) as { u: string; p: string; all: string };
      expect(seen.u).toMatch(/^coffer_/);
      const json = JSON.parse(seen.all);
      // One fetch per variable per run: every field comes from the same credential.
      expect(json.username).toBe(seen.u);
      expect(json.password).toBe(seen.p);
      expect(await roleExists(seen.u)).toBe(false);
      expect(await srv.server.vault.services.store.dynamic.getLease(json.lease_id)).toBeUndefined();
    });

    it('a data-key rotation re-encrypts the issuer: fetching still works under the new key alone', async () => {
      const { rotateDataKey } = await import('../../src/secrets/rotation.js');
      const before = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg1');
      const report = await rotateDataKey(srv.server.vault.services);
      expect(report.retiredKeyVersions.length).toBeGreaterThan(0);
      const after = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg1');
      expect(after!.data_sealed.equals(before!.data_sealed)).toBe(false);
      expect(after!.data_sealed.readUInt32BE(0)).toBe(report.newKeyVersion);
      const creds = await fetchCreds(await token('host/ci'));
      expect(await connect(creds)`SELECT x FROM app_data`).toEqual([{ x: 42 }]);
    });

    it('a restart in the middle of the TTL still ends the lease', async () => {
      const creds = await fetchCreds(await token('host/ci'));
      const { dataDir, dataKey } = srv;
      await srv.close();
      srv = await startTestServer({ account: A, dataDir, dataKey, env: { COFFER_LEASE_SWEEP_INTERVAL_MS: '200' } });
      api = new Client(srv.url, A);
      admin = await api.login('admin', keys.get('admin')!);
      expect(await roleExists(creds.username)).toBe(true);
      // The new server's clock starts at the real time; move it past the lease's expiry.
      srv.clock.ms = Date.parse(creds.expires_at) + 1000;
      await waitFor('the login to be dropped after the restart', async () => !(await roleExists(creds.username)));
    });
  });
});
