/**
 * Dynamic secrets (issue 12) end to end: a real Coffer server and a throwaway
 * PostgreSQL cluster as the TARGET database its `postgresql` issuer creates
 * logins in. The target's pg_hba.conf asks TCP clients other than `postgres`
 * for a password (scram-sha-256), so a fetched login is really checked.
 */
import { readFileSync, writeFileSync } from 'node:fs';
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
  - !variable
    id: pg-payroll
    annotations:
      dynamic/issuer: pg1
      dynamic/grant-roles: app_read, payroll_read
  - !variable
    id: pg-sneaky
    annotations:
      dynamic/issuer: pg1
      dynamic/grant-roles: app_sneaky
  - !variable
    id: pg-super
    annotations:
      dynamic/issuer: pg1
      dynamic/grant-roles: app_super
  - !variable
    id: pg-delegate
    annotations:
      dynamic/issuer: pg1
      dynamic/grant-roles: app_delegate
- !permit
  role: !host ci
  privileges: [ read, execute ]
  resource:
  - !variable data/dynamic/pg-ci
  - !variable data/dynamic/pg-evil
  - !variable data/dynamic/pg-down
  - !variable data/dynamic/pg-payroll
  - !variable data/dynamic/pg-sneaky
  - !variable data/dynamic/pg-super
  - !variable data/dynamic/pg-delegate
  - !variable static/token
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
  const jtiOf = (t: string): string => {
    const outer = JSON.parse(t) as { payload: string };
    return (JSON.parse(Buffer.from(outer.payload, 'base64').toString('utf8')) as { jti: string }).jti;
  };
  async function fetchCreds(t: string, id = 'pg-ci') {
    const r = await api.request('GET', dynamicPath(id), { token: t });
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    return JSON.parse(r.text) as { username: string; password: string; host: string; port: number; database: string; expires_at: string; lease_id: string };
  }
  // The roles pg1's variables may grant: app_read, the two halves of pg-evil's annotation (so that they reach the
  // target, as identifiers), and two the target refuses (one inherits from a predefined role, one is a superuser).
  const EVIL = ['app_read"; DROP TABLE app_data; --', "x' ; DROP TABLE app_data; SELECT '1"];
  const ALLOWED = ['app_read', ...EVIL, 'app_sneaky', 'app_super', 'app_delegate'];
  const issuerData = (port: number, password: string) => ({
    host: '127.0.0.1', port, database: 'app', username: 'coffer_admin', password, sslmode: 'disable', allowed_grant_roles: ALLOWED,
  });
  const patchIssuer = (id: string, body: unknown) =>
    api.request('PATCH', `/issuers/${A}/${id}`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  async function createIssuer(id: string, port: number, password = ADMIN_PW, maxTtl = 900) {
    // The JSON conjur-cli-go's `conjur issuer create --id … --type … --max-ttl … --data '{…}'` sends.
    return api.request('POST', `/issuers/${A}`, {
      token: admin,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id, type: 'postgresql', max_ttl: maxTtl, data: issuerData(port, password) }),
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
        'CREATE ROLE payroll_read NOLOGIN',
        'GRANT SELECT ON payroll TO payroll_read',
        'CREATE ROLE app_sneaky NOLOGIN',
        'GRANT pg_read_server_files TO app_sneaky',
        'CREATE ROLE app_super NOLOGIN SUPERUSER',
        'CREATE ROLE app_delegate NOLOGIN',
        'GRANT app_read TO app_delegate WITH ADMIN OPTION',
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
      const grow = await patchIssuer('pg-cli', { max_ttl: 1200, data: { ...issuerData(target.port, '*****'), allowed_grant_roles: ['app_read'] } });
      expect(grow.status, grow.text).toBe(200);
      expect(grow.json).toMatchObject({ max_ttl: 1200, data: { host: '127.0.0.1', password: '*****', allowed_grant_roles: ['app_read'] } });
      // The masked password sent back kept the stored one.
      let updated = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-cli');
      expect((await srv.server.vault.services.issuers.connectionOf(updated!)).password).toBe(ADMIN_PW);
      // …but only while the connection stays where it was: moving it (host, port, user, TLS) needs the password again,
      // or whoever may update an issuer could send its stored password to a server of their choice.
      for (const moved of [{ host: 'attacker.example' }, { port: 1 }, { username: 'someone' }, { database: 'other' }, { sslmode: 'prefer' }]) {
        const r = await patchIssuer('pg-cli', { data: { ...issuerData(target.port, '*****'), allowed_grant_roles: ['app_read'], ...moved } });
        expect(r.status, r.text).toBe(400);
        expect(r.json.error.message).toMatch(/^data\.password must be sent again when data\.\w+ changes/);
        const noPassword = { ...issuerData(target.port, ''), allowed_grant_roles: ['app_read'], ...moved } as Record<string, unknown>;
        delete noPassword.password;
        expect((await patchIssuer('pg-cli', { data: noPassword })).status).toBe(400);
      }
      // Widening what the issuer grants needs the password too (narrowing, as above, does not).
      const widened = await patchIssuer('pg-cli', { data: { ...issuerData(target.port, '*****'), allowed_grant_roles: ['app_read', 'payroll_read'] } });
      expect(widened.status, widened.text).toBe(400);
      expect(widened.json.error.message).toMatch(/^data\.password must be sent again when data\.allowed_grant_roles changes/);
      updated = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-cli');
      expect(JSON.parse(updated!.data_public)).toMatchObject({ host: '127.0.0.1', port: target.port, username: 'coffer_admin', allowed_grant_roles: ['app_read'] });
      const moved = await patchIssuer('pg-cli', { data: { ...issuerData(target.port, 'a-new-password'), host: 'localhost' } });
      expect(moved.status, moved.text).toBe(200);
      updated = await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-cli');
      expect((await srv.server.vault.services.issuers.connectionOf(updated!)).password).toBe('a-new-password');
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
      // allowed_grant_roles: never a predefined role that reaches beyond the database, never the issuer's own login, at most 16.
      const refusedRoles: [unknown, RegExp][] = [
        [['app_read', 'pg_execute_server_program'], /may not name pg_execute_server_program: predefined roles \(pg_\*\) reach beyond the database/],
        [['pg_write_server_files'], /may not name pg_write_server_files/],
        [['pg_read_all_data'], /may not name pg_read_all_data/],
        [['coffer_admin'], /may not name the issuer's own login 'coffer_admin'/],
        [Array.from({ length: 17 }, (_, i) => `r${i}`), /may name at most 16 roles/],
        ['app_read', /must be an array of role names/],
        [[''], /must be a role name of 1 to 63 characters/],
        [['x'.repeat(64)], /must be a role name of 1 to 63 characters/],
      ];
      for (const [roles, message] of refusedRoles) {
        const r = await api.request('POST', `/issuers/${A}`, { token: admin, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'pg-roles', type: 'postgresql', max_ttl: 60, data: { ...issuerData(target.port, ADMIN_PW), allowed_grant_roles: roles } }) });
        expect(r.status, JSON.stringify(roles)).toBe(400);
        expect(r.json.error.message).toMatch(message);
        expect(await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg-roles')).toBeUndefined();
      }
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
      // Every earlier lease expired with it: let the sweeper finish them all, so the next tests count from a still state.
      await waitFor('every expired lease to end', async () => (await leaseCount()) === 0 && (await coffers()) === 0);
    });

    it('a versioned fetch of a dynamic variable is refused (422: it has no versions); no login created, no lease', async () => {
      const before = await coffers();
      const leases = await leaseCount();
      const r = await api.request('GET', `${dynamicPath('pg-ci')}?version=1`, { token: await token('host/ci') });
      expect(r.status, r.text).toBe(422);
      expect(r.json.error.message).toContain('is dynamic: it has no versions');
      expect(await coffers()).toBe(before);
      expect(await leaseCount()).toBe(leases);
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
      expect(r.json.error.message).toContain(`role ${EVIL.map((e) => JSON.stringify(e)).join(', ')} does not exist in database app`);
      expect(await target.psql('SELECT count(*) FROM app_data', 'app')).toBe('1');
      expect(await coffers()).toBe(before);
      expect((await srv.server.vault.services.store.dynamic.leasesOfAccount(A)).filter((l) => l.variable_id.endsWith('pg-evil'))).toEqual([]);
    });

    it("grant roles are the issuer's to allow: one outside data.allowed_grant_roles is 422 before the target is touched", async () => {
      const before = await coffers();
      const leases = await leaseCount();
      const r = await api.request('GET', dynamicPath('pg-payroll'), { token: await token('host/ci') });
      expect(r.status, r.text).toBe(422);
      expect(r.json.error.message).toContain(`issuer 'pg1' does not allow granting "payroll_read"`);
      expect(await coffers()).toBe(before);
      expect(await leaseCount()).toBe(leases);
      const audit = await api.request('GET', `/audit/${A}?resource=${encodeURIComponent(`${A}:variable:data/dynamic/pg-payroll`)}&limit=10`, { token: admin });
      expect(audit.json.events.at(-1)).toMatchObject({ result: 'failure' });
    });

    it('the target refuses allowed roles that would make the login more than a database user (superuser, predefined roles, inherited): nothing created', async () => {
      const before = await coffers();
      const leases = await leaseCount();
      const sneaky = await api.request('GET', dynamicPath('pg-sneaky'), { token: await token('host/ci') });
      expect(sneaky.status, sneaky.text).toBe(502);
      expect(sneaky.json.error.message).toContain('refusing to grant role "app_sneaky": it is a member of "pg_read_server_files", a predefined role, which reaches beyond the database');
      const superuser = await api.request('GET', dynamicPath('pg-super'), { token: await token('host/ci') });
      expect(superuser.status, superuser.text).toBe(502);
      expect(superuser.json.error.message).toContain('refusing to grant role "app_super": it is SUPERUSER');
      const delegate = await api.request('GET', dynamicPath('pg-delegate'), { token: await token('host/ci') });
      expect(delegate.status, delegate.text).toBe(502);
      expect(delegate.json.error.message).toContain('refusing to grant role "app_delegate": it is a member of "app_read", held WITH ADMIN OPTION');
      expect(await coffers()).toBe(before);
      expect(await leaseCount()).toBe(leases);
    });

    it("the password never reaches the target in clear: CREATE ROLE carries a SCRAM-SHA-256 verifier, so the target's statement log has none", async () => {
      await target.psql("ALTER ROLE coffer_admin SET log_statement = 'all'", 'postgres');
      try {
        await srv.server.vault.services.dynamic.targets.closeAll();
        const creds = await fetchCreds(await token('host/ci'));
        expect(await connect(creds)`SELECT x FROM app_data`).toEqual([{ x: 42 }]);
        const log = readFileSync(join(target.dir, 'server.log'), 'utf8');
        expect(log).toContain(`CREATE ROLE "${creds.username}" WITH LOGIN INHERIT PASSWORD 'SCRAM-SHA-256$4096:`);
        expect(log).not.toContain(creds.password);
        expect(await target.psql(`SELECT rolpassword LIKE 'SCRAM-SHA-256$4096:%' FROM pg_authid WHERE rolname = '${creds.username}'`, 'postgres')).toBe('t');
        expect((await api.request('DELETE', `/leases/${A}/${creds.lease_id}`, { token: admin })).status).toBe(204);
      } finally {
        await target.psql('ALTER ROLE coffer_admin RESET log_statement', 'postgres');
        await srv.server.vault.services.dynamic.targets.closeAll();
      }
    });

    it('a target that holds a lock on the login cannot stall revocation: the attempt gives up at lock_timeout (pending) and a retry finishes', async () => {
      const creds = await fetchCreds(await token('host/ci'));
      const db = connect(creds);
      expect(await db`SELECT 1 AS one`).toEqual([{ one: 1 }]);
      // Another session changes the login and keeps its transaction open for 8 s: ALTER ROLE … NOLOGIN has to wait.
      const holder = target.psql(`BEGIN; ALTER ROLE "${creds.username}" CONNECTION LIMIT 5; SELECT pg_sleep(8); COMMIT;`, 'app');
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      const del = await api.request('DELETE', `/leases/${A}/${creds.lease_id}`, { token: admin });
      const took = Date.now() - started;
      expect(del.status, del.text).toBe(202);
      expect(del.json.lease).toMatchObject({ state: 'pending', attempts: 1 });
      expect(del.json.lease.last_error).toContain('lock timeout');
      // Bounded by lock_timeout (5 s), not by the 8 s the other session holds on.
      expect(took).toBeLessThan(7_500);
      await holder;
      srv.clock.advance(10);
      admin = await api.login('admin', keys.get('admin')!);
      await waitFor('the pending lease to end', async () => !(await roleExists(creds.username)), 20_000);
      // Its session was terminated before the role was dropped.
      await expect(db`SELECT 1`).rejects.toThrow();
    });

    it('a lease ended while its login is being created (token revoked mid-fetch) is never handed out, and its login is dropped', async () => {
      const ci = await token('host/ci');
      const before = await coffers();
      // CREATE ROLE waits behind this lock on pg_authid for 2 s; meanwhile the token that asked is revoked.
      const holder = target.psql('BEGIN; LOCK TABLE pg_authid IN EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;', 'postgres');
      await new Promise((r) => setTimeout(r, 300));
      const fetching = api.request('GET', dynamicPath('pg-ci'), { token: ci });
      await waitFor('the lease to be written', async () => (await srv.server.vault.services.store.dynamic.activeLeasesOfToken(jtiOf(ci))).length > 0, 5_000);
      expect((await api.request('DELETE', `/authn/${A}/token`, { token: ci })).status).toBe(204);
      await holder;
      const r = await fetching;
      expect(r.status, r.text).toBe(401);
      expect(r.text).not.toContain('password');
      await waitFor('the login to be dropped', async () => (await coffers()) === before, 20_000);
      const leases = await srv.server.vault.services.store.dynamic.leasesOfAccount(A);
      expect(leases.filter((l) => l.token_jti === jtiOf(ci))).toEqual([]);
    });

    it("rotating a role's API key, or deleting the role, ends the leases it fetched", async () => {
      const ci = await token('host/ci');
      const first = await fetchCreds(ci);
      // While a lease lives on the issuer's database, the issuer cannot be pointed elsewhere (it could not end it).
      const move = await patchIssuer('pg1', { data: { ...issuerData(target.port, ADMIN_PW), host: 'localhost' } });
      expect(move.status, move.text).toBe(409);
      expect(move.json.error.message).toMatch(/^Issuer 'pg1' still has \d+ lease\(s\) on app at 127\.0\.0\.1:\d+: revoke them/);
      expect(JSON.parse((await srv.server.vault.services.store.dynamic.getIssuer(A, 'pg1'))!.data_public).host).toBe('127.0.0.1');
      const rotated = await api.request('PUT', `/authn/${A}/api_key?role=${encodeURIComponent('host:ci')}`, { token: admin });
      expect(rotated.status, rotated.text).toBe(200);
      keys.set('host/ci', rotated.text);
      await waitFor('the lease of the rotated role to end', async () => !(await roleExists(first.username)));
      // A throwaway host gets a lease, then a policy deletes it.
      const added = await api.loadPolicy(admin, 'POST', 'root', '- !host temp-job\n- !permit\n  role: !host temp-job\n  privileges: [ execute ]\n  resource: !variable data/dynamic/pg-ci\n');
      expect(added.status, added.text).toBe(201);
      const tempKey = (added.json.created_roles as Record<string, { api_key: string }>)[`${A}:host:temp-job`]!.api_key;
      const temp = await fetchCreds(await api.login('host/temp-job', tempKey));
      expect(await roleExists(temp.username)).toBe(true);
      const deleted = await api.loadPolicy(admin, 'PATCH', 'root', '- !delete\n  record: !host temp-job\n');
      expect(deleted.status, deleted.text).toBe(201);
      await waitFor('the lease of the deleted host to end', async () => !(await roleExists(temp.username)));
      // The revoker drops the login first and removes the lease row after, in a second step.
      await waitFor('the lease row to go', async () => (await srv.server.vault.services.store.dynamic.getLease(temp.lease_id)) === undefined);
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
      // The sweeper drops a login, then deletes its lease row: wait for both (the row can trail the DROP by a moment).
      await waitFor('every login to be dropped and every lease to end', async () => (await coffers()) === 0 && (await leaseCount()) === 0, 30_000);
      expect(await coffers()).toBe(0);
      expect(await leaseCount()).toBe(0);
    });

    it('a revocation the database refuses stays pending (listed, audited) and the sweeper finishes it', async () => {
      const creds = await fetchCreds(await token('host/ci'));
      // The issuer's login loses its password: the target refuses every connection of the issuer.
      await target.psql("ALTER ROLE coffer_admin PASSWORD 'changed-elsewhere'", 'app');
      const again = await patchIssuer('pg1', { data: issuerData(target.port, 'wrong-for-now') });
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
      expect((await patchIssuer('pg1', { data: issuerData(target.port, ADMIN_PW) })).status).toBe(200);
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

    it('an issuer holds at most COFFER_MAX_LEASES_PER_ISSUER leases: one fetch more is 429 with Retry-After, audited, no login created', async () => {
      const { dataDir, dataKey } = srv;
      await srv.close();
      srv = await startTestServer({ account: A, dataDir, dataKey, env: { COFFER_LEASE_SWEEP_INTERVAL_MS: '200', COFFER_MAX_LEASES_PER_ISSUER: '2' } });
      api = new Client(srv.url, A);
      admin = await api.login('admin', keys.get('admin')!);
      const ci = await token('host/ci');
      await waitFor('earlier leases to end', async () => (await srv.server.vault.services.store.dynamic.countIssuerLeases(A, 'pg1')) === 0);
      const a = await fetchCreds(ci);
      const b = await fetchCreds(ci);
      const before = await coffers();
      const third = await api.request('GET', dynamicPath('pg-ci'), { token: ci });
      expect(third.status, third.text).toBe(429);
      expect(third.headers.get('retry-after')).toBe('10');
      expect(third.json.error.message).toContain("Issuer 'pg1' already has 2 leases, its limit (COFFER_MAX_LEASES_PER_ISSUER)");
      expect(await coffers()).toBe(before);
      expect((await api.request('DELETE', `/leases/${A}/${a.lease_id}`, { token: admin })).status).toBe(204);
      const c = await fetchCreds(ci);
      for (const l of [b, c]) expect((await api.request('DELETE', `/leases/${A}/${l.lease_id}`, { token: admin })).status).toBe(204);
    });
  });
});
