/** End to end: host factories — tokens, host enrolment, revocation, visibility, audit (issue 4 §2, reference §1.9, §8 items 42–44). */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client, type Reply } from '../helpers/http.js';
import { openRawDb } from '../helpers/raw-db.js';
import { rotateDataKey } from '../../src/secrets/rotation.js';
import { createAccountIn } from '../../src/server.js';

let srv: TestServer;
let api: Client;
let admin: string;
let alice: string; // read + execute on ci/executors: may create tokens, not see or revoke them
let reader: string; // read only
let operator: string; // read + execute + update: sees token values, may revoke
let stranger: string; // nothing
const A = () => srv.account;
const HF = () => `${A()}:host_factory:ci/executors`;
const FUTURE = '2050-12-31T00:00:00Z';
/** Every token value handed out, to prove none reaches the audit log. */
const issuedTokens: string[] = [];
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };

function tokenCount(factoryId = HF()): Promise<number> {
  return srv.server.vault.services.store.hostFactories.countFor(factoryId);
}

async function createTokens(token: string, body: string, headers: Record<string, string> = FORM): Promise<Reply> {
  const r = await api.request('POST', '/host_factory_tokens', { token, body, headers });
  if (r.status === 200) for (const t of r.json) issuedTokens.push(t.token);
  return r;
}

async function oneToken(params = '', factory = HF()): Promise<string> {
  const r = await createTokens(operator, `host_factory=${encodeURIComponent(factory)}&expiration=${FUTURE}${params}`);
  expect(r.status).toBe(200);
  return r.json[0].token;
}

/** POST /host_factories/hosts with the raw token, as Conjur clients send it. */
function enrol(hfToken: string | undefined, body: string, opts: { headers?: Record<string, string>; query?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...FORM, ...opts.headers };
  if (hfToken !== undefined) headers.Authorization = `Token token="${hfToken}"`;
  return api.request('POST', `/host_factories/hosts${opts.query ?? ''}`, { body, headers });
}

async function exists(kind: string, id: string): Promise<boolean> {
  const r = await api.request('GET', `/resources/${A()}/${kind}/${encodeURIComponent(id)}`, { token: admin });
  return r.status === 200;
}

async function hfEvents(query = ''): Promise<any[]> {
  const r = await api.request('GET', `/audit/${A()}?action=host-factory&limit=1000${query}`, { token: admin });
  expect(r.status).toBe(200);
  return r.json.events;
}

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  // ci's records are loaded into policy ci itself, so a PUT on ci can remove them later.
  const root = await api.loadPolicy(admin, 'POST', 'root', `
- !user alice
- !user reader
- !user operator
- !user stranger
- !group devs
- !policy ci
- !layer root-pool
- !host-factory
  id: root-factory
  layers: [ !layer root-pool ]
- !policy
  id: fleet
  body:
  - !layer pool
  - !host-factory
    id: executors
    layers: [ !layer pool ]
`);
  expect(root.status).toBe(201);
  const keys = root.json.created_roles;
  const ci = await api.loadPolicy(admin, 'POST', 'ci', `
- !layer executors
- !host-factory
  id: executors
  annotations:
    description: elastic CI executors
  layers: [ !layer executors ]
- !host existing
- !variable db-password
- !permit
  role: !layer executors
  privilege: [ read, execute ]
  resource: !variable db-password
`);
  expect(ci.status).toBe(201);
  const permits = await api.loadPolicy(admin, 'POST', 'root', `
- !permit
  role: !user alice
  privilege: [ read, execute ]
  resource: !host-factory ci/executors
- !permit
  role: !user reader
  privilege: read
  resource: !host-factory ci/executors
- !permit
  role: !user operator
  privilege: [ read, execute, update ]
  resource: !host-factory ci/executors
- !permit
  role: !user reader
  privilege: read
  resource: !group devs
`);
  expect(permits.status).toBe(201);
  expect((await api.setSecret(admin, 'ci/db-password', 's3cret-db')).status).toBe(201);
  alice = await api.login('alice', keys[`${A()}:user:alice`].api_key);
  reader = await api.login('reader', keys[`${A()}:user:reader`].api_key);
  operator = await api.login('operator', keys[`${A()}:user:operator`].api_key);
  stranger = await api.login('stranger', keys[`${A()}:user:stranger`].api_key);
});
afterAll(() => srv.close());

describe('!host-factory in policy', () => {
  it('refuses a host factory without layers (422 policy_invalid) and writes nothing', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', `
- !policy
  id: another-app
  body:
  - !policy
    id: hosts
    body:
    - !layer
    - !host-factory
`);
    expect(r.status).toBe(422);
    expect(r.json.error).toMatchObject({ code: 'policy_invalid', message: "Host factory 'another-app/hosts' does not include any layers" });
    expect(await exists('policy', 'another-app')).toBe(false);
    expect(await exists('layer', 'another-app/hosts')).toBe(false);
  });

  it('shows the factory with its layers and no tokens yet; the factory role is a member of its layers', async () => {
    const r = await api.request('GET', `/resources/${A()}/host_factory/ci/executors`, { token: admin });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: HF(), owner: `${A()}:policy:ci`, layers: [`${A()}:layer:ci/executors`], tokens: [] });
    const members = await api.request('GET', `/roles/${A()}/layer/ci/executors?members`, { token: admin });
    expect(members.json.map((m: any) => m.member)).toContain(HF());
  });
});

describe('POST /host_factory_tokens', () => {
  it('creates one token from a form body for a role with execute (Conjur shape)', async () => {
    const before = await tokenCount();
    const r = await createTokens(alice, `host_factory=${encodeURIComponent(HF())}&expiration=${encodeURIComponent(FUTURE)}`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual([{ expiration: FUTURE, cidr: [], token: expect.stringMatching(/^[0-9a-z]{40,}$/) }]);
    expect(await tokenCount()).toBe(before + 1);
  });

  it('creates count tokens from a JSON body, with normalized CIDRs, all distinct', async () => {
    const r = await createTokens(
      operator,
      JSON.stringify({ host_factory: 'host_factory:ci/executors', expiration: '2050-12-31T01:00:00+01:00', count: 3, cidr: ['10.0.0.1', '192.168.0.0/16'] }),
      { 'Content-Type': 'application/json' },
    );
    expect(r.status).toBe(200);
    expect(r.json).toHaveLength(3);
    for (const t of r.json) expect(t).toMatchObject({ expiration: FUTURE, cidr: ['10.0.0.1/32', '192.168.0.0/16'] });
    expect(new Set(r.json.map((t: any) => t.token)).size).toBe(3);
  });

  it('accepts the parameters in the query string and a date-only expiration', async () => {
    const r = await api.request('POST', `/host_factory_tokens?host_factory=${encodeURIComponent(HF())}&expiration=2051-01-01&cidr[]=127.0.0.1`, { token: alice });
    expect(r.status).toBe(200);
    issuedTokens.push(r.json[0].token);
    expect(r.json[0]).toMatchObject({ expiration: '2051-01-01T00:00:00Z', cidr: ['127.0.0.1/32'] });
  });

  it('refuses every bad request with Conjur\'s status and a clear message, creating nothing', async () => {
    const hf = encodeURIComponent(HF());
    const cases: [string, string, number, Record<string, unknown> | null][] = [
      [stranger, `host_factory=${hf}&expiration=${FUTURE}`, 404, { code: 'not_found', message: "Host factory 'ci/executors' not found in account 'cucumber'" }],
      [reader, `host_factory=${hf}&expiration=${FUTURE}`, 403, null],
      [alice, `expiration=${FUTURE}`, 422, { code: 'argument_error', message: 'param is missing or the value is empty: host_factory' }],
      [alice, `host_factory=${encodeURIComponent(`${A()}:group:devs`)}&expiration=${FUTURE}`, 422, { code: 'argument_error', message: 'Invalid resource kind: group' }],
      [alice, `host_factory=nonsense&expiration=${FUTURE}`, 422, { code: 'argument_error' }],
      [alice, `host_factory=${encodeURIComponent(`${A()}:host_factory:nope`)}&expiration=${FUTURE}`, 404, { code: 'not_found' }],
      [alice, `host_factory=${hf}`, 422, { code: 'argument_error', message: 'param is missing or the value is empty: expiration' }],
      [alice, `host_factory=${hf}&expiration=tomorrow`, 422, { code: 'unprocessable_entity', message: expect.stringContaining("'expiration' must be an ISO 8601 date-time") }],
      [alice, `host_factory=${hf}&expiration=2050-02-30T00:00:00Z`, 422, { code: 'unprocessable_entity' }],
      [alice, `host_factory=${hf}&expiration=2001-01-01T00:00:00Z`, 422, { code: 'unprocessable_entity', message: "'expiration' must be in the future, got '2001-01-01T00:00:00Z'" }],
      [alice, `host_factory=${hf}&expiration=${FUTURE}&count=0`, 422, { code: 'unprocessable_entity', message: "'count' must be an integer from 1 to 100, got '0'" }],
      [alice, `host_factory=${hf}&expiration=${FUTURE}&count=abc`, 422, { code: 'unprocessable_entity' }],
      [alice, `host_factory=${hf}&expiration=${FUTURE}&count=101`, 422, { code: 'unprocessable_entity' }],
      [alice, `host_factory=${hf}&expiration=${FUTURE}&cidr[]=10.0.0.0/8&cidr[]=1.895.abc.0/32`, 422, { code: 'unprocessable_entity', message: "Invalid IP address or CIDR range '1.895.abc.0/32'" }],
      [alice, `host_factory=${hf}&expiration=${FUTURE}&cidr[]=10.0.0.1/24`, 422, { code: 'unprocessable_entity', message: expect.stringContaining("Did you mean '10.0.0.0/24'") }],
    ];
    const before = await tokenCount();
    for (const [token, body, status, error] of cases) {
      const r = await createTokens(token, body);
      expect({ body, status: r.status }).toEqual({ body, status });
      if (error) expect(r.json.error).toMatchObject(error);
      else expect(r.text).toBe('');
    }
    expect(await tokenCount()).toBe(before);
    const noAuth = await api.request('POST', '/host_factory_tokens', { body: `host_factory=${hf}&expiration=${FUTURE}`, headers: FORM });
    expect(noAuth.status).toBe(401);
    const badJson = await createTokens(alice, '{"host_factory":', { 'Content-Type': 'application/json' });
    expect(badJson.status).toBe(400);
    expect(await tokenCount()).toBe(before);
  });
});

describe('POST /host_factories/hosts', () => {
  let token = '';
  beforeAll(async () => {
    token = await oneToken();
  });

  it('creates a host owned by the factory, in its layers, with an API key that authenticates and fetches', async () => {
    const r = await enrol(token, 'id=ci/exec-01&annotations[purpose]=build&annotations[team]=platform');
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({
      id: `${A()}:host:ci/exec-01`,
      owner: HF(),
      permissions: [],
      restricted_to: [],
      annotations: [
        { name: 'purpose', value: 'build' },
        { name: 'team', value: 'platform' },
      ],
      api_key: expect.stringMatching(/^[0-9a-z]{40,}$/),
    });
    const hostToken = await api.login('host/ci/exec-01', r.json.api_key);
    const secret = await api.getSecret(hostToken, 'ci/db-password');
    expect(secret.status).toBe(200);
    expect(secret.text).toBe('s3cret-db');
    const members = await api.request('GET', `/roles/${A()}/layer/ci/executors?members`, { token: admin });
    expect(members.json.map((m: any) => m.member)).toContain(`${A()}:host:ci/exec-01`);
  });

  it('answers Conjur\'s exact shape for a root-level factory and an id in the query string (cucumber host_factory)', async () => {
    const rootToken = await (async () => {
      const r = await createTokens(admin, `host_factory=${encodeURIComponent(`${A()}:host_factory:root-factory`)}&expiration=${FUTURE}`);
      return r.json[0].token as string;
    })();
    const r = await enrol(rootToken, '', { query: '?id=host-01' });
    expect(r.status).toBe(201);
    expect(Object.keys(r.json).sort()).toEqual(['annotations', 'api_key', 'created_at', 'id', 'owner', 'permissions', 'restricted_to']);
    expect(r.json).toMatchObject({ annotations: [], id: `${A()}:host:host-01`, owner: `${A()}:host_factory:root-factory`, permissions: [], restricted_to: [] });
  });

  it('takes a JSON body with annotations', async () => {
    const r = await enrol(token, JSON.stringify({ id: 'ci/exec-json', annotations: { purpose: 'json' } }), { headers: { 'Content-Type': 'application/json' } });
    expect(r.status).toBe(201);
    expect(r.json.annotations).toEqual([{ name: 'purpose', value: 'json' }]);
  });

  it('refuses missing, malformed and unknown tokens with an empty 401, creating nothing', async () => {
    for (const [hfToken, auth] of [
      [undefined, undefined],
      [undefined, 'Basic YTpi'],
      ['not a token!', undefined],
      ['0123456789abcdefghjkmnpqrstvwxyz0123456789abcdefgh', undefined],
      [Buffer.from(token).toString('base64'), undefined], // base64 of a good token is not the token
    ] as const) {
      const r = await enrol(hfToken, 'id=ci/exec-nope', { headers: auth ? { Authorization: auth } : {} });
      expect(r.status).toBe(401);
      expect(r.text).toBe('');
    }
    expect(await exists('host', 'ci/exec-nope')).toBe(false);
  });

  it('refuses bad ids and annotations with 422 and creates nothing', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['', { code: 'argument_error', message: 'param is missing or the value is empty: id' }],
      ['id=', { code: 'argument_error', message: 'param is missing or the value is empty: id' }],
      ['id=conjur/authn-jwt/x', { code: 'argument_error', message: 'Invalid id: conjur/authn-jwt/x' }],
      ['id=/conjur/x', { code: 'argument_error', message: 'Invalid id: /conjur/x' }],
      ['id=exec-02', { code: 'argument_error', message: "Invalid id: exec-02 is outside the host factory's policy 'ci'; host ids must begin with 'ci/'" }],
      ['id=prod/db-admin', { code: 'argument_error' }],
      ['id=ci/../prod/x', { code: 'argument_error', message: expect.stringContaining("'..' path segments are not allowed") }],
      ['id=ci//x', { code: 'argument_error' }],
      ['id=ci/x%00y', { code: 'argument_error', message: 'id contains a control character' }],
      ['id=ci/ok-1&annotations[]=v', { code: 'argument_error', message: expect.stringContaining('Invalid annotation name') }],
      [`id=ci/ok-2&${Array.from({ length: 51 }, (_, i) => `annotations[a${i}]=v`).join('&')}`, { code: 'argument_error', message: 'At most 50 annotations may be given' }],
    ];
    for (const [body, error] of cases) {
      const r = await enrol(token, body);
      expect({ body, status: r.status }).toEqual({ body, status: 422 });
      expect(r.json.error).toMatchObject(error);
    }
    for (const id of ['exec-02', 'prod/db-admin', 'ci/ok-1', 'ci/ok-2', 'conjur/authn-jwt/x']) expect(await exists('host', id)).toBe(false);
  });

  it('refuses a host that exists with another owner (403) and leaves it alone', async () => {
    const before = await api.request('GET', `/resources/${A()}/host/ci/existing`, { token: admin });
    const r = await enrol(token, 'id=ci/existing');
    expect(r.status).toBe(403);
    expect(r.text).toBe('');
    const after = await api.request('GET', `/resources/${A()}/host/ci/existing`, { token: admin });
    expect(after.json).toEqual(before.json);
    const members = await api.request('GET', `/roles/${A()}/layer/ci/executors?members`, { token: admin });
    expect(members.json.map((m: any) => m.member)).not.toContain(`${A()}:host:ci/existing`);
  });

  it('re-enrolling a host of the factory rotates its key: the old key and its access tokens stop working', async () => {
    const first = await enrol(token, 'id=ci/exec-rekey&annotations[gen]=1');
    expect(first.status).toBe(201);
    const oldToken = await api.login('host/ci/exec-rekey', first.json.api_key);
    expect((await api.request('GET', '/whoami', { token: oldToken })).status).toBe(200);

    const second = await enrol(token, 'id=ci/exec-rekey&annotations[gen]=2');
    expect(second.status).toBe(201);
    expect(second.json.api_key).not.toBe(first.json.api_key);
    expect(second.json.annotations).toEqual([{ name: 'gen', value: '1' }]); // an existing host's annotations are left alone
    const old = await api.request('POST', `/authn/${A()}/host%2Fci%2Fexec-rekey/authenticate`, { body: first.json.api_key });
    expect(old.status).toBe(401);
    expect((await api.request('GET', '/whoami', { token: oldToken })).status).toBe(401);
    const fresh = await api.login('host/ci/exec-rekey', second.json.api_key);
    expect((await api.getSecret(fresh, 'ci/db-password')).text).toBe('s3cret-db');
  });

  it('enforces the token cidr against the client address (127.0.0.1)', async () => {
    const outside = await oneToken('&cidr[]=10.0.0.0/8&cidr[]=192.168.1.1');
    const inside = await oneToken('&cidr[]=10.0.0.0/8&cidr[]=127.0.0.0/8');
    const refused = await enrol(outside, 'id=ci/exec-cidr');
    expect(refused.status).toBe(401);
    expect(await exists('host', 'ci/exec-cidr')).toBe(false);
    expect((await enrol(inside, 'id=ci/exec-cidr')).status).toBe(201);
    const events = await hfEvents('&result=failure');
    expect(events.some((e) => /origin 127\.0\.0\.1 is outside the token's cidr 10\.0\.0\.0\/8,192\.168\.1\.1\/32/.test(e.reason))).toBe(true);
  });

  it('refuses a token once it has expired (TestClock), and no longer lists it', async () => {
    const expiresAt = new Date(srv.clock.nowMs() + 60_000).toISOString();
    const r = await createTokens(operator, `host_factory=${encodeURIComponent(HF())}&expiration=${expiresAt}`);
    expect(r.status).toBe(200);
    const shortLived = r.json[0].token;
    expect((await enrol(shortLived, 'id=ci/exec-early')).status).toBe(201);
    srv.clock.advance(61);
    // Access tokens live 8 minutes, so the operator's token is still good; the host-factory token is not.
    const late = await enrol(shortLived, 'id=ci/exec-late');
    expect(late.status).toBe(401);
    expect(await exists('host', 'ci/exec-late')).toBe(false);
    const show = await api.request('GET', `/resources/${A()}/host_factory/ci/executors`, { token: operator });
    expect(show.json.tokens.map((t: any) => t.token)).not.toContain(shortLived);
    const events = await hfEvents('&result=failure');
    expect(events.some((e) => /^host-factory token expired at /.test(e.reason))).toBe(true);
  });

  it('fails closed: when the audit event cannot be written, no host is created (503)', async () => {
    const db = await openRawDb(srv);
    const restore = await db.failAuditInserts();
    try {
      const r = await enrol(token, 'id=ci/exec-unaudited');
      expect(r.status).toBe(503);
      expect(r.text).not.toMatch(/api_key/);
    } finally {
      await restore();
      await db.close();
    }
    expect(await exists('host', 'ci/exec-unaudited')).toBe(false);
  });
});

describe('an enrolled host cannot be adopted by a policy', () => {
  it('a policy declaring the id of a host the factory enrolled is refused (no grant lands on a role a token holder controls)', async () => {
    const token = await oneToken();
    const enrolled = await enrol(token, 'id=ci/deploy-bot');
    expect(enrolled.status).toBe(201);
    const holderKey = enrolled.json.api_key as string;
    const load = await api.loadPolicy(admin, 'POST', 'ci', `
- !host
  id: deploy-bot
  restricted_to: 10.99.0.0/16
- !variable deploy-only
- !permit
  role: !host deploy-bot
  privilege: [ read, execute ]
  resource: !variable deploy-only
`);
    expect(load.status).toBe(422);
    expect(load.json.error.code).toBe('policy_invalid');
    expect(load.json.error.message).toContain("Host 'ci/deploy-bot' was enrolled through host factory 'ci/executors'");
    // Nothing was written: no variable, no permit, the enrolled host unchanged.
    expect(await exists('variable', 'ci/deploy-only')).toBe(false);
    expect((await api.request('POST', `/authn/${A()}/host%2Fci%2Fdeploy-bot/authenticate`, { body: holderKey })).status).toBe(200);
    const owner = (await api.request('GET', `/resources/${A()}/host/ci%2Fdeploy-bot`, { token: admin })).json.owner;
    expect(owner).toBe(HF());

    // Deleting the enrolled host first makes the id free for the policy, with a fresh key.
    expect((await api.loadPolicy(admin, 'PATCH', 'ci', '- !delete\n  record: !host deploy-bot\n')).status).toBe(201);
    const again = await api.loadPolicy(admin, 'POST', 'ci', '- !host deploy-bot\n');
    expect(again.status).toBe(201);
    expect(again.json.created_roles[`${A()}:host:ci/deploy-bot`].api_key).not.toBe(holderKey);
    expect((await api.request('POST', `/authn/${A()}/host%2Fci%2Fdeploy-bot/authenticate`, { body: holderKey })).status).toBe(401);
  });
});

describe('DELETE /host_factory_tokens/{token}', () => {
  it('needs update on the factory: 404 when invisible, 403 with execute only; revoke is 204, then 404; the token stops working', async () => {
    const token = await oneToken();
    const path = `/host_factory_tokens/${token}`;
    const hidden = await api.request('DELETE', path, { token: stranger });
    expect(hidden.status).toBe(404);
    expect(hidden.text).not.toContain(token);
    expect((await api.request('DELETE', path, { token: alice })).status).toBe(403);
    expect((await api.request('DELETE', path)).status).toBe(401);
    expect((await enrol(token, 'id=ci/exec-before-revoke')).status).toBe(201);

    const before = await tokenCount();
    expect((await api.request('DELETE', path, { token: operator })).status).toBe(204);
    expect(await tokenCount()).toBe(before - 1);
    const again = await api.request('DELETE', path, { token: operator });
    expect(again.status).toBe(404);
    expect(again.json.error).toEqual({ code: 'not_found', message: 'Host factory token not found', target: 'host_factory_token' });
    expect(again.text).not.toContain(token);
    // A mistyped path under the token is an unknown route; its 404 does not echo the token either.
    const stray = await api.request('DELETE', `${path}/junk`, { token: operator, skipContract: true });
    expect(stray.status).toBe(404);
    expect(stray.json.error).toEqual({ code: 'not_found', message: 'No route matches DELETE /host_factory_tokens/…' });
    expect(stray.text).not.toContain(token);
    expect((await enrol(token, 'id=ci/exec-after-revoke')).status).toBe(401);
    expect(await exists('host', 'ci/exec-after-revoke')).toBe(false);
    // Hosts created before the revocation keep working.
    expect(await exists('host', 'ci/exec-before-revoke')).toBe(true);
  });

  it('answers 404 for a token that never existed, in any shape', async () => {
    for (const t of ['0123456789abcdefghjkmnpqrstvwxyz0123456789abcdefgh', 'NOT-A-TOKEN']) {
      const r = await api.request('DELETE', `/host_factory_tokens/${t}`, { token: operator });
      expect(r.status).toBe(404);
    }
  });
});

describe('token visibility in the resource JSON', () => {
  it('shows token values only to roles with update; others see expiration and cidr; strangers see nothing', async () => {
    const value = await oneToken('&cidr[]=10.1.0.0/16');
    const asOperator = await api.request('GET', `/resources/${A()}/host_factory/ci/executors`, { token: operator });
    expect(asOperator.status).toBe(200);
    expect(asOperator.json.tokens).toContainEqual({ expiration: FUTURE, cidr: ['10.1.0.0/16'], token: value });
    expect(asOperator.json.tokens.every((t: any) => typeof t.token === 'string')).toBe(true);

    for (const viewer of [alice, reader]) {
      const r = await api.request('GET', `/resources/${A()}/host_factory/ci/executors`, { token: viewer });
      expect(r.status).toBe(200);
      expect(r.json.tokens.length).toBe(asOperator.json.tokens.length);
      expect(r.json.tokens).toContainEqual({ expiration: FUTURE, cidr: ['10.1.0.0/16'] });
      expect(r.text).not.toContain(value);
    }
    const listed = await api.request('GET', `/resources/${A()}?kind=host_factory`, { token: reader });
    expect(listed.text).not.toContain(value);
    expect((await api.request('GET', `/resources/${A()}/host_factory/ci/executors`, { token: stranger })).status).toBe(404);
  });

  it('keeps tokens usable and readable across a data-key rotation', async () => {
    const value = await oneToken();
    const report = await rotateDataKey(srv.server.vault.services);
    expect(report.hostFactoryTokens).toBeGreaterThan(0);
    const show = await api.request('GET', `/resources/${A()}/host_factory/ci/executors`, { token: operator });
    expect(show.json.tokens.map((t: any) => t.token)).toContain(value);
    expect((await enrol(value, 'id=ci/exec-after-rotation')).status).toBe(201);
  });
});

describe('audit', () => {
  it('records token creation, revocation and host creation, success and failure, never a token value or API key', async () => {
    const events = await hfEvents();
    const ops = new Set(events.map((e) => `${e.operation}:${e.result}`));
    for (const op of ['create-tokens:success', 'create-tokens:failure', 'revoke-token:success', 'revoke-token:failure', 'create-host:success', 'create-host:failure']) {
      expect(ops).toContain(op);
    }
    const created = events.find((e) => e.operation === 'create-host' && e.result === 'success' && e.resource === `${A()}:host:ci/exec-01`);
    expect(created).toMatchObject({ role: HF(), details: { host_factory: HF(), created: true, token: expect.stringMatching(/^[0-9a-f]{16}$/) } });
    const tokensEvent = events.find((e) => e.operation === 'create-tokens' && e.result === 'success');
    expect(tokensEvent.details.tokens[0]).toMatch(/^[0-9a-f]{16}$/);
    const forbidden = events.find((e) => e.operation === 'create-host' && e.result === 'failure' && e.resource === `${A()}:host:ci/existing`);
    expect(forbidden.reason).toMatch(/not owned by/);

    // Nothing anywhere in the audit table (unknown-token events have no account) carries a token or key.
    const db = await openRawDb(srv);
    const dump = JSON.stringify(await db.all('SELECT * FROM audit_events'));
    const anonymous = await db.all<{ reason: string }>("SELECT reason FROM audit_events WHERE action = 'host-factory' AND account IS NULL");
    await db.close();
    expect(issuedTokens.length).toBeGreaterThan(10);
    for (const t of issuedTokens) expect(dump).not.toContain(t);
    expect(anonymous.map((r) => r.reason)).toEqual(expect.arrayContaining(['missing or malformed host-factory token', 'unknown or revoked host-factory token']));
  });
});

describe('audit: whose log a failure lands in', () => {
  it('a request naming another account\'s (invisible or missing) factory is logged in the caller\'s account only', async () => {
    await createAccountIn(srv.server.vault, 'victim');
    const count = async () => {
      const db = await openRawDb(srv);
      const n = await db.count("FROM audit_events WHERE account = 'victim' AND action = 'host-factory'");
      await db.close();
      return n;
    };
    const before = await count();
    for (const factory of ['victim:host_factory:ci/executors', 'victim:host_factory:made-up-by-the-caller']) {
      const r = await createTokens(stranger, `host_factory=${encodeURIComponent(factory)}&expiration=${FUTURE}`);
      expect(r.status).toBe(404);
    }
    expect(await count()).toBe(before);
    const mine = await hfEvents('&result=failure');
    expect(mine.some((e) => e.resource === 'victim:host_factory:made-up-by-the-caller' && e.role === `${A()}:user:stranger`)).toBe(true);
  });
});

describe('thundering herd', () => {
  it('200 concurrent enrolments, each followed by authentication, all succeed without duplicates', async () => {
    const r = await createTokens(admin, `host_factory=${encodeURIComponent(`${A()}:host_factory:fleet/executors`)}&expiration=${FUTURE}`);
    const token = r.json[0].token;
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const host = await enrol(token, `id=fleet/exec-${i}`);
        if (host.status !== 201) return { status: host.status, auth: 0, key: '' };
        const auth = await api.request('POST', `/authn/${A()}/${encodeURIComponent(`host/fleet/exec-${i}`)}/authenticate`, { body: host.json.api_key });
        return { status: host.status, auth: auth.status, key: host.json.api_key as string };
      }),
    );
    const elapsedMs = performance.now() - started;
    expect(results.filter((x) => x.status !== 201 || x.auth !== 200)).toEqual([]);
    expect(new Set(results.map((x) => x.key)).size).toBe(200);
    const members = await api.request('GET', `/roles/${A()}/layer/fleet/pool?members`, { token: admin });
    const hosts = members.json.map((m: any) => m.member as string).filter((id: string) => id.startsWith(`${A()}:host:`));
    expect(hosts).toHaveLength(200);
    expect(new Set(hosts).size).toBe(200);
    console.log(`host-factory herd: 200 enrolments + authentications in ${elapsedMs.toFixed(0)} ms`);
  });
});

describe('deleting the factory', () => {
  it('a PUT that keeps the factory keeps its enrolled hosts; one that drops it removes the factory, its tokens and its hosts', async () => {
    const token = await oneToken();
    expect((await enrol(token, 'id=ci/exec-last')).status).toBe(201);
    const keep = await api.loadPolicy(admin, 'PUT', 'ci', `
- !layer executors
- !host-factory
  id: executors
  annotations:
    description: elastic CI executors
  layers: [ !layer executors ]
- !host existing
- !variable db-password
- !permit
  role: !layer executors
  privilege: [ read, execute ]
  resource: !variable db-password
`);
    expect(keep.status).toBe(201);
    expect(await exists('host', 'ci/exec-last')).toBe(true);
    expect(await tokenCount()).toBeGreaterThan(0);

    const drop = await api.loadPolicy(admin, 'PUT', 'ci', `
- !layer executors
- !host existing
- !variable db-password
`);
    expect(drop.status).toBe(201);
    expect(await exists('host_factory', 'ci/executors')).toBe(false);
    expect(await tokenCount()).toBe(0);
    expect(await exists('host', 'ci/exec-last')).toBe(false);
    expect(await exists('host', 'ci/exec-01')).toBe(false);
    expect(await exists('host', 'ci/existing')).toBe(true);
    expect((await enrol(token, 'id=ci/exec-orphan')).status).toBe(401);
    const revoke = await api.request('DELETE', `/host_factory_tokens/${token}`, { token: admin });
    expect(revoke.status).toBe(404);
  });
});

describe('policy-examples/host-factory', () => {
  it('runs the README\'s calls: autoscaler mints a token, an executor enrols, authenticates and fetches', async () => {
    const example = new Client(srv.url, 'example');
    const adminKey = (await createAccountIn(srv.server.vault, 'example')).api_key;
    const exAdmin = await example.login('admin', adminKey);
    const policy = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../../policy-examples/host-factory/policy.yml'), 'utf8');
    const loaded = await example.loadPolicy(exAdmin, 'POST', 'root', policy);
    expect(loaded.status).toBe(201);
    expect((await example.setSecret(exAdmin, 'ci/secrets/test-db-password', 's3cret')).status).toBe(201);
    const autoscaler = await example.login('host/autoscaler', loaded.json.created_roles['example:host:autoscaler'].api_key);

    const mint = (cidr: string) =>
      example.request('POST', '/host_factory_tokens', {
        token: autoscaler,
        headers: FORM,
        body: `host_factory=${encodeURIComponent('example:host_factory:ci/executors')}&expiration=${encodeURIComponent(new Date(srv.clock.nowMs() + 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z'))}&cidr[]=${encodeURIComponent(cidr)}`,
      });
    const subnetOnly = await mint('10.20.0.0/16');
    expect(subnetOnly.status).toBe(200);
    const local = await mint('127.0.0.0/8');
    const hfToken = local.json[0].token as string;
    issuedTokens.push(subnetOnly.json[0].token, hfToken);

    const body = `id=${encodeURIComponent('ci/executors/runner-1')}&${encodeURIComponent('annotations[launched-by]')}=autoscaler`;
    expect((await enrol(subnetOnly.json[0].token, body)).status).toBe(401);
    const enrolled = await enrol(hfToken, body);
    expect(enrolled.status).toBe(201);
    expect(enrolled.json).toMatchObject({ id: 'example:host:ci/executors/runner-1', owner: 'example:host_factory:ci/executors' });
    const executor = await example.login('host/ci/executors/runner-1', enrolled.json.api_key);
    expect((await example.getSecret(executor, 'ci/secrets/test-db-password')).text).toBe('s3cret');
    expect((await example.getSecret(executor, 'ci/secrets/artifact-repo-token')).status).toBe(404); // no value yet

    // The autoscaler sees expirations and CIDRs, not values, and cannot revoke; the policy owner (admin) can.
    const seen = await example.request('GET', '/resources/example/host_factory/ci/executors', { token: autoscaler });
    expect(seen.json.tokens).toHaveLength(2);
    expect(seen.text).not.toContain(hfToken);
    expect((await example.request('DELETE', `/host_factory_tokens/${hfToken}`, { token: autoscaler })).status).toBe(403);
    expect((await example.request('DELETE', `/host_factory_tokens/${hfToken}`, { token: exAdmin })).status).toBe(204);

    const removed = await example.loadPolicy(exAdmin, 'PATCH', 'ci', '- !delete { record: !host executors/runner-1 }\n');
    expect(removed.status).toBe(201);
    expect((await example.request('POST', '/authn/example/host%2Fci%2Fexecutors%2Frunner-1/authenticate', { body: enrolled.json.api_key })).status).toBe(401);
  });
});
