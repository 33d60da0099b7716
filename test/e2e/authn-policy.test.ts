/** End to end: accounts, authn, policy loading in all modes, RBAC read APIs (issue: foundation). */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let srv: TestServer;
let api: Client;
let admin: string;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
});
afterAll(() => srv.close());

describe('server basics', () => {
  it('answers /health and / with a version', async () => {
    // The backend this run uses (COFFER_TEST_BACKEND=postgres: every test server on PostgreSQL).
    const backend = process.env.COFFER_TEST_BACKEND === 'postgres' ? 'postgres' : 'sqlite';
    expect((await api.request('GET', '/health')).json).toMatchObject({ status: 'ok', backend, database: 'ok' });
    const root = await api.request('GET', '/', { headers: { Accept: 'application/json' } });
    expect(root.json).toEqual({ version: expect.any(String), coffer_version: expect.any(String) });
    expect(root.headers.get('x-request-id')).toBeTruthy();
  });

  it('echoes a sane X-Request-Id', async () => {
    const r = await api.request('GET', '/health', { headers: { 'X-Request-Id': 'req-123' } });
    expect(r.headers.get('x-request-id')).toBe('req-123');
  });

  it('answers 401 text "Authorization missing" without a token, and for a bad token', async () => {
    const r = await api.request('GET', '/whoami');
    expect(r.status).toBe(401);
    expect(r.text).toBe('Authorization missing');
    const bad = await api.request('GET', '/whoami', { headers: { Authorization: 'Token token="bm9wZQ=="' } });
    expect(bad.status).toBe(401);
    expect(bad.text).toBe('Unauthorized: Invalid token');
  });
});

describe('authn', () => {
  it('authenticates with the raw API key body (any Content-Type) and whoami names the role', async () => {
    const r = await api.request('POST', `/authn/${srv.account}/admin/authenticate`, {
      body: srv.adminKey,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    expect(Object.keys(r.json).sort()).toEqual(['payload', 'protected', 'signature']);
    const who = await api.request('GET', '/whoami', { token: r.text });
    expect(who.json).toMatchObject({ account: srv.account, username: 'admin', client_ip: '127.0.0.1' });
  });

  it('accepts a token header with whitespace inside the base64', async () => {
    const b64 = Buffer.from(admin).toString('base64');
    const wrapped = b64.replace(/(.{40})/g, '$1 \t ');
    const r = await api.request('GET', '/whoami', { headers: { Authorization: `Token token="${wrapped}"` } });
    expect(r.status).toBe(200);
  });

  it('returns base64 when Accept-Encoding lists base64 among others', async () => {
    const r = await api.request('POST', `/authn/${srv.account}/admin/authenticate`, {
      body: srv.adminKey,
      headers: { 'Accept-Encoding': 'gzip,  bASe64 ,deflate' },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-encoding')).toBe('base64');
    expect(JSON.parse(Buffer.from(r.text, 'base64').toString())).toHaveProperty('signature');
  });

  it('refuses wrong keys, unknown logins and tokens as credentials with 401, and audits them', async () => {
    for (const [login, body] of [['admin', 'wrong'], ['non-existing', srv.adminKey], ['admin', admin]] as const) {
      const r = await api.request('POST', `/authn/${srv.account}/${login}/authenticate`, { body });
      expect(r.status).toBe(401);
    }
    const events = await api.request('GET', `/audit/${srv.account}?action=authn&result=failure`, { token: admin });
    expect(events.json.events.some((e: any) => e.reason === 'CONJ00002E Invalid credentials')).toBe(true);
    expect(events.json.events.some((e: any) => /CONJ00007E 'non-existing' not found/.test(e.reason))).toBe(true);
    expect(JSON.stringify(events.json)).not.toContain(srv.adminKey);
  });

  it('logs in with Basic (API key) and refuses ?role= for another user', async () => {
    const basic = `Basic ${Buffer.from(`admin:${srv.adminKey}`).toString('base64')}`;
    const r = await api.request('GET', `/authn/${srv.account}/login`, { headers: { Authorization: basic } });
    expect(r.status).toBe(200);
    expect(r.text).toBe(srv.adminKey);
    const foreign = await api.request('GET', `/authn/${srv.account}/login?role=user:alice`, { headers: { Authorization: basic } });
    expect(foreign.status).toBe(401);
    expect((await api.request('GET', `/authn/${srv.account}/login`, { token: admin })).status).toBe(401);
  });
});

describe('policy loading and RBAC', () => {
  let hostKey = '';
  let bobKey = '';

  it('POST root creates users and hosts and returns their API keys once', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', `
- !user bob
- !host host-01
- !group devs
- !policy
  id: ci
  body:
  - !layer executors
  - !variable db-password
  - !permit
    role: !layer executors
    privilege: [ read, execute ]
    resource: !variable db-password
- !grant
  role: !layer ci/executors
  member: !host host-01
`);
    expect(r.status).toBe(201);
    expect(Object.keys(r.json.created_roles).sort()).toEqual([`${srv.account}:host:host-01`, `${srv.account}:user:bob`]);
    expect(r.json.version).toBe(1);
    hostKey = r.json.created_roles[`${srv.account}:host:host-01`].api_key;
    bobKey = r.json.created_roles[`${srv.account}:user:bob`].api_key;
    expect(hostKey).toMatch(/^[0-9a-z]{40,}$/);
  });

  it('a host authenticates with an encoded login and sees only what it may', async () => {
    const host = await api.login('host/host-01', hostKey);
    const list = await api.request('GET', `/resources/${srv.account}`, { token: host });
    expect(list.json.map((r: any) => r.id)).toEqual([`${srv.account}:variable:ci/db-password`]);
    const show = await api.request('GET', `/resources/${srv.account}/variable/ci/db-password`, { token: host });
    expect(show.json).toMatchObject({ id: `${srv.account}:variable:ci/db-password`, owner: `${srv.account}:policy:ci`, policy: `${srv.account}:policy:root`, secrets: [] });
    const hidden = await api.request('GET', `/resources/${srv.account}/group/devs`, { token: host });
    expect(hidden.status).toBe(404);
    expect(hidden.json.error).toEqual({
      code: 'not_found',
      message: `Group 'devs' not found in account '${srv.account}'`,
      target: 'group',
      details: { code: 'not_found', target: 'id', message: `${srv.account}:group:devs` },
    });
  });

  it('check and permitted_roles follow Conjur', async () => {
    const base = `/resources/${srv.account}/variable/ci%2Fdb-password`;
    expect((await api.request('GET', `${base}?check=true&privilege=execute`, { token: admin })).status).toBe(204);
    expect((await api.request('GET', `${base}?check=true&privilege=execute&role=${srv.account}:user:bob`, { token: admin })).status).toBe(404);
    expect((await api.request('GET', `${base}?check=true&privilege=execute&role=${srv.account}:user:ghost`, { token: admin })).status).toBe(403);
    const roles = await api.request('GET', `${base}?permitted_roles=true&privilege=execute`, { token: admin });
    expect(roles.json).toEqual(expect.arrayContaining([`${srv.account}:user:admin`, `${srv.account}:policy:ci`, `${srv.account}:layer:ci/executors`, `${srv.account}:host:host-01`]));
  });

  it('paging and count follow the list rules', async () => {
    expect((await api.request('GET', `/resources/${srv.account}?limit=1`, { token: admin })).json).toHaveLength(1);
    for (const bad of ['abc', '0', '-10']) {
      const r = await api.request('GET', `/resources/${srv.account}?limit=${bad}`, { token: admin });
      expect(r.status).toBe(422);
      expect(r.json.error.message).toBe("'limit' contains an invalid value. 'limit' must be a positive integer.");
    }
    const listed = await api.request('GET', `/audit/${srv.account}?action=list&limit=1000`, { token: admin });
    expect(listed.json.events.some((e: any) => e.message.includes('"limit":"abc"'))).toBe(false);
    const count = await api.request('GET', `/resources/${srv.account}/variable?count=true`, { token: admin });
    expect(count.json).toEqual({ count: 1 });
    const search = await api.request('GET', `/resources/${srv.account}?search=db`, { token: admin });
    expect(search.json.map((r: any) => r.id)).toContain(`${srv.account}:variable:ci/db-password`);
  });

  it('roles: members, memberships, all and graph', async () => {
    const members = await api.request('GET', `/roles/${srv.account}/layer/ci/executors?members`, { token: admin });
    expect(members.json).toEqual(expect.arrayContaining([
      expect.objectContaining({ member: `${srv.account}:host:host-01`, role: `${srv.account}:layer:ci/executors`, admin_option: false, ownership: false }),
      expect.objectContaining({ member: `${srv.account}:policy:ci`, ownership: true, admin_option: true }),
    ]));
    const all = await api.request('GET', `/roles/${srv.account}/host/host-01?all`, { token: admin });
    expect(all.json).toEqual([`${srv.account}:host:host-01`, `${srv.account}:layer:ci/executors`]);
    const count = await api.request('GET', `/roles/${srv.account}/host/host-01?all&count`, { token: admin });
    expect(count.json).toEqual({ count: 2 });
    const graph = await api.request('GET', `/roles/${srv.account}/host/host-01?graph`, { token: admin });
    expect(graph.json).toContainEqual({ parent: `${srv.account}:layer:ci/executors`, child: `${srv.account}:host:host-01` });
  });

  it('POST refuses deletion statements with Conjur\'s exact body, and changes nothing', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', '- !delete\n  record: !user bob\n');
    expect(r.status).toBe(422);
    expect(r.json).toEqual({
      error: {
        code: 'validation_failed',
        message: 'policy_text may not contain deletion statements',
        details: [{ code: 'validation_failed', target: 'policy_text', message: 'may not contain deletion statements' }],
      },
    });
    expect((await api.request('GET', `/resources/${srv.account}/user/bob`, { token: admin })).status).toBe(200);
  });

  it('a reference to a missing record is 422 policy_invalid and leaves the graph as it was', async () => {
    const before = (await api.request('GET', `/resources/${srv.account}?count=true`, { token: admin })).json.count;
    const r = await api.loadPolicy(admin, 'POST', 'root', '- !variable new-var\n- !permit\n  role: !user ghost\n  privilege: read\n  resource: !variable new-var\n');
    expect(r.status).toBe(422);
    expect(r.json.error).toMatchObject({ code: 'policy_invalid', message: `User 'ghost' not found in account '${srv.account}'` });
    expect((await api.request('GET', `/resources/${srv.account}?count=true`, { token: admin })).json.count).toBe(before);
  });

  it('YAML errors carry line and column; unknown tags are rejected', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', '- !user alice\n- !nonsense x\n');
    expect(r.status).toBe(422);
    expect(r.json.error.code).toBe('policy_invalid');
    expect(r.json.error.message).toContain('!nonsense');
    expect(r.json.error.innererror).toMatchObject({ line: 2 });
    const empty = await api.loadPolicy(admin, 'POST', 'root', '');
    expect(empty.json.error).toMatchObject({ code: 'validation_failed', message: 'policy_text is not present' });
  });

  it('loading into a sub-policy namespaces ids and renames users; dry run writes nothing', async () => {
    const dry = await api.loadPolicy(admin, 'POST', 'ci', '- !user carol\n', '?dryRun=true');
    expect(dry.status).toBe(200);
    expect(dry.json.status).toBe('Valid YAML');
    expect(dry.json.created.items[0]).toMatchObject({ identifier: `${srv.account}:user:carol@ci`, owner: `${srv.account}:policy:ci`, type: 'user' });
    expect((await api.request('GET', `/resources/${srv.account}/user/carol@ci`, { token: admin })).status).toBe(404);
    const real = await api.loadPolicy(admin, 'POST', 'ci', '- !user carol\n');
    expect(Object.keys(real.json.created_roles)).toEqual([`${srv.account}:user:carol@ci`]);
  });

  it('POST never updates; PATCH updates; PUT removes what the text no longer declares', async () => {
    await api.loadPolicy(admin, 'POST', 'ci', '- !variable\n  id: b\n  kind: password\n');
    await api.loadPolicy(admin, 'POST', 'ci', '- !variable\n  id: b\n  kind: private key\n');
    const ann = async () => (await api.request('GET', `/resources/${srv.account}/variable/ci/b`, { token: admin })).json.annotations;
    expect(await ann()).toEqual([{ name: 'conjur/kind', value: 'password', policy: `${srv.account}:policy:ci` }]);
    await api.loadPolicy(admin, 'PATCH', 'ci', '- !variable\n  id: b\n  kind: another\n');
    expect((await ann())[0].value).toBe('another');
    const put = await api.loadPolicy(admin, 'PUT', 'ci', '- !variable c\n');
    expect(put.status).toBe(201);
    expect((await api.request('GET', `/resources/${srv.account}/variable/ci/b`, { token: admin })).status).toBe(404);
    expect((await api.request('GET', `/resources/${srv.account}/variable/ci/c`, { token: admin })).status).toBe(200);
    // Records created by the root load (shadowed) survive a replace of ci.
    expect((await api.request('GET', `/resources/${srv.account}/variable/ci/db-password`, { token: admin })).status).toBe(200);
  });

  it('a PUT dry run shows a shadowed record losing this policy\'s annotation as updated, not created', async () => {
    expect((await api.loadPolicy(admin, 'POST', 'root', '- !policy\n  id: shadow\n  body:\n  - !variable pw\n')).status).toBe(201);
    expect((await api.loadPolicy(admin, 'PATCH', 'shadow', '- !variable\n  id: pw\n  annotations:\n    x: y\n')).status).toBe(201);
    const dry = await api.loadPolicy(admin, 'PUT', 'shadow', '- !variable keep\n', '?dryRun=true');
    expect(dry.status).toBe(200);
    const ids = (items: { id: string }[]) => items.map((i) => i.id);
    expect(ids(dry.json.created.items)).toEqual(['shadow/keep']);
    expect(ids(dry.json.updated.before.items)).toEqual(['shadow/pw']);
    expect(dry.json.updated.before.items[0].annotations).toEqual({ x: 'y' });
    expect(dry.json.updated.after.items[0].annotations).toEqual({});
    expect(dry.json.deleted.items).toEqual([]);
  });

  it('policy versions: 21 loads keep the 20 newest, visible in the policy resource', async () => {
    for (let i = 0; i < 21; i++) await api.loadPolicy(admin, 'POST', 'ci', `- !variable v${i}\n`);
    const r = await api.request('GET', `/resources/${srv.account}/policy/ci`, { token: admin });
    expect(r.json.policy_versions).toHaveLength(20);
    expect(r.json.policy_versions[19].policy_text).toBe('- !variable v20\n');
    expect(r.json.policy_versions[0].policy_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('authorization on loads: no privilege 404, read 403, create allows POST only', async () => {
    await api.loadPolicy(admin, 'POST', 'root', `
- !user reader
- !user creator
- !permit
  role: !user reader
  privilege: read
  resource: !policy ci
- !permit
  role: !user creator
  privilege: [ read, create ]
  resource: !policy ci
`).then((r) => {
      expect(r.status).toBe(201);
      return r;
    }).then(async (r) => {
      const reader = await api.login('reader', r.json.created_roles[`${srv.account}:user:reader`].api_key);
      const creator = await api.login('creator', r.json.created_roles[`${srv.account}:user:creator`].api_key);
      const bob = await api.login('bob', bobKey);
      expect((await api.loadPolicy(bob, 'POST', 'ci', '- !variable x\n')).status).toBe(404);
      expect((await api.loadPolicy(reader, 'POST', 'ci', '- !variable x\n')).status).toBe(403);
      expect((await api.loadPolicy(creator, 'POST', 'ci', '- !variable x\n')).status).toBe(201);
      expect((await api.loadPolicy(creator, 'PATCH', 'ci', '- !variable x\n')).status).toBe(403);
    });
  });

  it('restricted_to: normalized, enforced at authenticate, merged by POST', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', '- !host\n  id: fenced\n  restricted_to: 10.1.2.3\n');
    const key = r.json.created_roles[`${srv.account}:host:fenced`].api_key;
    const show = await api.request('GET', `/resources/${srv.account}/host/fenced`, { token: admin });
    expect(show.json.restricted_to).toEqual(['10.1.2.3/32']);
    const denied = await api.request('POST', `/authn/${srv.account}/host%2Ffenced/authenticate`, { body: key });
    expect(denied.status).toBe(401);
    await api.loadPolicy(admin, 'POST', 'root', '- !host\n  id: fenced\n  restricted_to: 127.0.0.1\n');
    const merged = await api.request('GET', `/resources/${srv.account}/host/fenced`, { token: admin });
    expect(merged.json.restricted_to).toEqual(['10.1.2.3/32', '127.0.0.1/32']);
    expect((await api.request('POST', `/authn/${srv.account}/host%2Ffenced/authenticate`, { body: key })).status).toBe(200);
    const bad = await api.loadPolicy(admin, 'POST', 'root', '- !host\n  id: h2\n  restricted_to: 10.0.0.1/24\n');
    expect(bad.status).toBe(422);
    expect(bad.json.error.message).toContain("Did you mean '10.0.0.0/24'");
  });
});

describe('tokens and keys', () => {
  it('tokens expire after the TTL (injected clock) and honour authn/token-ttl', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', "- !host\n  id: short\n  annotations:\n    authn/token-ttl: PT1M\n");
    const key = r.json.created_roles[`${srv.account}:host:short`].api_key;
    const token = await api.login('host/short', key);
    const claims = JSON.parse(Buffer.from(JSON.parse(token).payload, 'base64').toString());
    expect(claims.exp - claims.iat).toBe(60);
    expect((await api.request('GET', '/whoami', { token })).status).toBe(200);
    srv.clock.advance(61);
    expect((await api.request('GET', '/whoami', { token })).status).toBe(401);
    admin = await api.login('admin', srv.adminKey);
  });

  it('rotating an API key: self with Basic, other with update; a token on oneself is 401', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', '- !user rot\n- !layer lay\n');
    const key = r.json.created_roles[`${srv.account}:user:rot`].api_key;
    const token = await api.login('rot', key);
    const self = await api.request('PUT', `/authn/${srv.account}/api_key`, { token });
    expect(self.status).toBe(401);
    expect(self.json).toEqual({ error: { code: 'unauthorized', message: 'Credential strength is insufficient' } });
    const basic = `Basic ${Buffer.from(`rot:${key}`).toString('base64')}`;
    const rotated = await api.request('PUT', `/authn/${srv.account}/api_key`, { headers: { Authorization: basic } });
    expect(rotated.status).toBe(200);
    expect(rotated.text).not.toBe(key);
    expect((await api.request('POST', `/authn/${srv.account}/rot/authenticate`, { body: key })).status).toBe(401);
    // Outstanding tokens die with the old key.
    expect((await api.request('GET', '/whoami', { token })).status).toBe(401);
    const byAdmin = await api.request('PUT', `/authn/${srv.account}/api_key?role=user:rot`, { token: admin });
    expect(byAdmin.status).toBe(200);
    expect((await api.request('PUT', `/authn/${srv.account}/api_key?role=layer:lay`, { token: admin })).status).toBe(405);
    expect((await api.request('PUT', `/authn/${srv.account}/api_key?role=user:does_not_exist`, { token: admin })).status).toBe(404);
  });

  it('password change follows Conjur\'s strength rules; hosts get 403', async () => {
    const basic = `Basic ${Buffer.from(`admin:${srv.adminKey}`).toString('base64')}`;
    const weak = await api.request('PUT', `/authn/${srv.account}/password`, { headers: { Authorization: basic }, body: 'short' });
    expect(weak.status).toBe(422);
    const ok = await api.request('PUT', `/authn/${srv.account}/password`, { headers: { Authorization: basic }, body: 'New-Password1!xY' });
    expect(ok.status).toBe(204);
    const login = await api.request('GET', `/authn/${srv.account}/login`, {
      headers: { Authorization: `Basic ${Buffer.from('admin:New-Password1!xY').toString('base64')}` },
    });
    expect(login.status).toBe(200);
    expect(login.text).toBe(srv.adminKey);
  });

  it('throttles repeated failures per login and IP with 429 and Retry-After', async () => {
    let last;
    for (let i = 0; i < 11; i++) last = await api.request('POST', `/authn/${srv.account}/nobody/authenticate`, { body: 'x' });
    expect(last!.status).toBe(429);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('revokes the presented token with DELETE /authn/{account}/token', async () => {
    const t = await api.login('admin', srv.adminKey);
    expect((await api.request('DELETE', `/authn/other-account/token`, { token: t })).status).toBe(404);
    expect((await api.request('GET', '/whoami', { token: t })).status).toBe(200);
    expect((await api.request('DELETE', `/authn/${srv.account}/token`, { token: t })).status).toBe(204);
    expect((await api.request('GET', '/whoami', { token: t })).status).toBe(401);
  });
});
