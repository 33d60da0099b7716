/**
 * End to end: boundaries and near-misses (issue 13 item 2).
 *
 * - Access tokens exactly at `exp`, a second and a millisecond either side
 *   (Slosilo `validate_jwt`: "token expired" if exp <= Time.now).
 * - API keys and passwords one character off (start, middle, end, case, one
 *   extra, one missing) on every way a secret is presented: authenticate,
 *   Basic login, password change, own key rotation.
 * - Host-factory tokens exactly at their expiration (Conjur
 *   `HostFactoryToken#expired?`: Time.now >= expiration).
 * - `restricted_to` CIDRs at their edges (first and last address, one past
 *   each end, /32, /31, IPv6), and `restricted_to` on every way in:
 *   authenticate, Basic login, password change, own key rotation, authn-jwt,
 *   host-factory enrolment with a CIDR-restricted token.
 *
 * Tests talk from 127.0.0.1 only, so the server trusts 127.0.0.1 as a proxy
 * and other client addresses are presented with X-Forwarded-For.
 */
import { describe, it, expect, beforeAll, afterAll, onTestFinished } from 'vitest';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { randomUUID } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client, type Reply } from '../helpers/http.js';
import { openRawDb } from '../helpers/raw-db.js';

let srv: TestServer;
let api: Client;
let admin: string;
const A = () => srv.account;
const keys: Record<string, string> = {};
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };
const JWT_ISSUER = 'https://ci.example';
let jwtKey: CryptoKey;

const basic = (login: string, secret: string) => `Basic ${Buffer.from(`${login}:${secret}`).toString('base64')}`;
const from = (ip: string | undefined): Record<string, string> => (ip === undefined ? {} : { 'X-Forwarded-For': ip });

function authenticate(login: string, key: string, ip?: string): Promise<Reply> {
  return api.request('POST', `/authn/${A()}/${encodeURIComponent(login)}/authenticate`, { body: key, headers: { 'Content-Type': 'text/plain', ...from(ip) } });
}
function basicLogin(login: string, secret: string, ip?: string): Promise<Reply> {
  return api.request('GET', `/authn/${A()}/login`, { headers: { Authorization: basic(login, secret), ...from(ip) } });
}
function changePassword(login: string, secret: string, next: string, ip?: string): Promise<Reply> {
  return api.request('PUT', `/authn/${A()}/password`, { body: next, headers: { Authorization: basic(login, secret), ...from(ip) } });
}
function rotateOwn(login: string, secret: string, ip?: string): Promise<Reply> {
  return api.request('PUT', `/authn/${A()}/api_key`, { headers: { Authorization: basic(login, secret), ...from(ip) } });
}
const whoami = (token: string) => api.request('GET', '/whoami', { token });

/** The newest audit event of `action` (newest first). */
async function newestEvent(action: string): Promise<any> {
  const r = await api.request('GET', `/audit/${A()}?action=${action}&limit=1`, { token: admin });
  expect(r.status).toBe(200);
  return r.json.events[0];
}

/**
 * Runs `attempt` and checks it wrote exactly one new audit event of
 * `action`, a failure matching `expected`.
 */
async function expectAuditedFailure(action: string, expected: { operation: string; role?: string; reason: RegExp }, attempt: () => Promise<Reply>): Promise<Reply> {
  const before = (await newestEvent(action))?.seq ?? 0;
  const r = await attempt();
  const r2 = await api.request('GET', `/audit/${A()}?action=${action}&limit=5`, { token: admin });
  const fresh = (r2.json.events as any[]).filter((e) => e.seq > before);
  expect(fresh).toHaveLength(1);
  expect(fresh[0]).toMatchObject({ action, operation: expected.operation, result: 'failure', ...(expected.role ? { role: expected.role } : {}) });
  expect(fresh[0].reason).toMatch(expected.reason);
  return r;
}

/** One character off: at the start, middle or end, a case change, one extra, one missing. */
function nearMisses(secret: string): [string, string][] {
  const swap = (c: string) => (c === 'x' ? 'y' : 'x');
  const at = (i: number) => secret.slice(0, i) + swap(secret[i]!) + secret.slice(i + 1);
  const mid = Math.floor(secret.length / 2);
  const caseIdx = [...secret].findIndex((c) => c.toUpperCase() !== c.toLowerCase());
  const flipped = secret[caseIdx] === secret[caseIdx]!.toLowerCase() ? secret[caseIdx]!.toUpperCase() : secret[caseIdx]!.toLowerCase();
  const cases: [string, string][] = [
    ['first character changed', at(0)],
    ['middle character changed', at(mid)],
    ['last character changed', at(secret.length - 1)],
    ['one letter in the other case', secret.slice(0, caseIdx) + flipped + secret.slice(caseIdx + 1)],
    ['one character extra at the end', `${secret}x`],
    ['one character extra at the start', `x${secret}`],
    ['last character missing', secret.slice(0, -1)],
    ['first character missing', secret.slice(1)],
  ];
  for (const [, v] of cases) expect(v).not.toBe(secret);
  return cases;
}

/** Unix seconds `exp` of an access token. */
const expOf = (token: string): number => JSON.parse(Buffer.from(JSON.parse(token).payload, 'base64').toString()).exp;

const POLICY = `
- !host
  id: short
  annotations:
    authn/token-ttl: "60"
- !host near-host
- !user near-user
- !host edge-31
- !host edge-30
- !host edge-32
- !host edge-v6
- !host
  id: fenced-host
  restricted_to: 10.50.0.0/24
- !user
  id: fenced-user
  restricted_to: 10.50.0.0/24
- !policy
  id: conjur/authn-jwt/edge
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !group apps
  - !permit
    role: !group apps
    privilege: [ read, authenticate ]
    resource: !webservice
- !host
  id: jwt-fenced
  restricted_to: 10.50.0.0/24
  annotations:
    authn-jwt/edge/repository: acme/app
- !grant
  role: !group conjur/authn-jwt/edge/apps
  member: !host jwt-fenced
- !layer pool
- !host-factory
  id: enrol
  layers: [ !layer pool ]
`;

beforeAll(async () => {
  srv = await startTestServer({
    flags: { 'trusted-proxies': '127.0.0.1/32', authenticators: 'authn,authn-jwt/edge' },
    // Near-miss tests fail many times per login on purpose; the throttle is tested elsewhere.
    env: { COFFER_AUTHN_MAX_FAILURES: '100000' },
  });
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', POLICY);
  expect(r.status).toBe(201);
  for (const [id, v] of Object.entries(r.json.created_roles as Record<string, { api_key: string }>)) keys[id.split(':').slice(1).join(':')] = v.api_key;
  // Host restrictions loaded separately, so each range is exactly what the test names.
  const ranges = await api.loadPolicy(admin, 'PATCH', 'root', `
- !host
  id: edge-31
  restricted_to: 127.0.0.0/31
- !host
  id: edge-30
  restricted_to: 10.20.30.8/30
- !host
  id: edge-32
  restricted_to: 10.20.30.40
- !host
  id: edge-v6
  restricted_to: 2001:db8::/127
`);
  expect(ranges.status).toBe(201);

  const pair = await generateKeyPair('RS256', { extractable: true });
  jwtKey = pair.privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'edge-1', alg: 'RS256' };
  expect((await api.setSecret(admin, 'conjur/authn-jwt/edge/public-keys', JSON.stringify({ type: 'jwks', value: { keys: [jwk] } }))).status).toBe(201);
  expect((await api.setSecret(admin, 'conjur/authn-jwt/edge/issuer', JWT_ISSUER)).status).toBe(201);
});
afterAll(async () => {
  await srv?.close();
});

describe('access token expiry (Slosilo: a token is expired once exp <= now, so it dies at exactly exp)', () => {
  it('works one second and one millisecond before exp; refused at exactly exp and one second after', async () => {
    const token = await api.login('host/short', keys['host:short']!);
    const exp = expOf(token);
    expect(exp - JSON.parse(Buffer.from(JSON.parse(token).payload, 'base64').toString()).iat).toBe(60);

    srv.clock.ms = (exp - 1) * 1000;
    expect((await whoami(token)).status).toBe(200);
    srv.clock.ms = exp * 1000 - 1;
    expect((await whoami(token)).status).toBe(200);
    srv.clock.ms = exp * 1000;
    const atExp = await whoami(token);
    expect(atExp.status).toBe(401);
    expect(atExp.text).toContain('Invalid token');
    srv.clock.ms = (exp + 1) * 1000;
    expect((await whoami(token)).status).toBe(401);
    // A fresh token issued now works, so the refusal above was the expiry and nothing else.
    expect((await whoami(await api.login('host/short', keys['host:short']!))).status).toBe(200);
    admin = await api.login('admin', srv.adminKey);
  });

  it('the same rule holds for the default 8-minute TTL (exp - 1 s works, exp refused)', async () => {
    const token = await api.login('host/near-host', keys['host:near-host']!);
    const exp = expOf(token);
    srv.clock.ms = (exp - 1) * 1000;
    expect((await whoami(token)).status).toBe(200);
    srv.clock.ms = exp * 1000;
    expect((await whoami(token)).status).toBe(401);
    admin = await api.login('admin', srv.adminKey);
  });
});

describe('API keys one character off are refused everywhere, and audited', () => {
  it('POST /authn/{account}/{login}/authenticate: every near miss 401 with an audited failure; the right key 200', async () => {
    const key = keys['host:near-host']!;
    for (const [what, wrong] of nearMisses(key)) {
      const r = await expectAuditedFailure('authn', { operation: 'authenticate', role: `${A()}:host:near-host`, reason: /^CONJ00002E/ }, () => authenticate('host/near-host', wrong));
      expect([what, r.status]).toEqual([what, 401]);
      expect(r.text).not.toContain(key);
    }
    const ok = await authenticate('host/near-host', key);
    expect(ok.status).toBe(200);
    expect((await whoami(ok.text)).json.username).toBe('host/near-host');
  });

  it('GET /authn/{account}/login (Basic): every near miss 401, audited, no key in the body; the right key returns it', async () => {
    const key = keys['user:near-user']!;
    for (const [what, wrong] of nearMisses(key)) {
      const r = await expectAuditedFailure('authn', { operation: 'login', role: `${A()}:user:near-user`, reason: /^CONJ00002E/ }, () => basicLogin('near-user', wrong));
      expect([what, r.status]).toEqual([what, 401]);
      expect(r.text).not.toContain(key);
    }
    const ok = await basicLogin('near-user', key);
    expect([ok.status, ok.text]).toEqual([200, key]);
  });

  it('PUT /authn/{account}/api_key (Basic, own key): every near miss 401, audited, and the key is not rotated; the right key rotates', async () => {
    const key = keys['host:near-host']!;
    for (const [what, wrong] of nearMisses(key)) {
      const r = await expectAuditedFailure('api-key', { operation: 'rotate', role: `${A()}:host:near-host`, reason: /^CONJ00002E/ }, () => rotateOwn('host/near-host', wrong));
      expect([what, r.status]).toEqual([what, 401]);
    }
    // Not rotated: the old key still authenticates.
    expect((await authenticate('host/near-host', key)).status).toBe(200);
    const rotated = await rotateOwn('host/near-host', key);
    expect(rotated.status).toBe(200);
    expect(rotated.text).not.toBe(key);
    expect((await authenticate('host/near-host', key)).status).toBe(401);
    expect((await authenticate('host/near-host', rotated.text)).status).toBe(200);
    keys['host:near-host'] = rotated.text;
  });

  it('PUT /authn/{account}/password with a near-miss API key: 401, audited, password not set; the right key sets it', async () => {
    const key = keys['user:near-user']!;
    const password = 'Near-Miss-Pass-42';
    for (const [what, wrong] of nearMisses(key)) {
      const r = await expectAuditedFailure('password', { operation: 'change', role: `${A()}:user:near-user`, reason: /^CONJ00002E/ }, () => changePassword('near-user', wrong, password));
      expect([what, r.status]).toEqual([what, 401]);
    }
    expect((await basicLogin('near-user', password)).status).toBe(401);
    expect((await changePassword('near-user', key, password)).status).toBe(204);
    expect((await basicLogin('near-user', password)).text).toBe(key);
  });
});

describe('passwords one character off are refused everywhere, and audited', () => {
  const password = 'Near-Miss-Pass-42';

  it('Basic login with a near-miss password: 401, audited, no key; the right password returns the key', async () => {
    for (const [what, wrong] of nearMisses(password)) {
      const r = await expectAuditedFailure('authn', { operation: 'login', role: `${A()}:user:near-user`, reason: /^CONJ00002E/ }, () => basicLogin('near-user', wrong));
      expect([what, r.status]).toEqual([what, 401]);
      expect(r.text).not.toContain(keys['user:near-user']!);
    }
    const ok = await basicLogin('near-user', password);
    expect([ok.status, ok.text]).toEqual([200, keys['user:near-user']]);
  });

  it('password change with a near-miss password: 401, audited, the password stays; the right one changes it', async () => {
    const next = 'Changed-Pass-Word-77';
    for (const [what, wrong] of nearMisses(password)) {
      const r = await expectAuditedFailure('password', { operation: 'change', role: `${A()}:user:near-user`, reason: /^CONJ00002E/ }, () => changePassword('near-user', wrong, next));
      expect([what, r.status]).toEqual([what, 401]);
    }
    expect((await basicLogin('near-user', next)).status).toBe(401);
    expect((await basicLogin('near-user', password)).status).toBe(200);
    expect((await changePassword('near-user', password, next)).status).toBe(204);
    expect((await basicLogin('near-user', next)).status).toBe(200);
    expect((await basicLogin('near-user', password)).status).toBe(401);
    // Back, for the next test.
    expect((await changePassword('near-user', next, password)).status).toBe(204);
  });

  it('own key rotation with a near-miss password: 401, audited, key not rotated; the right password rotates', async () => {
    const key = keys['user:near-user']!;
    for (const [what, wrong] of nearMisses(password)) {
      const r = await expectAuditedFailure('api-key', { operation: 'rotate', role: `${A()}:user:near-user`, reason: /^CONJ00002E/ }, () => rotateOwn('near-user', wrong));
      expect([what, r.status]).toEqual([what, 401]);
    }
    expect((await authenticate('near-user', key)).status).toBe(200);
    const rotated = await rotateOwn('near-user', password);
    expect(rotated.status).toBe(200);
    expect((await authenticate('near-user', key)).status).toBe(401);
    expect((await authenticate('near-user', rotated.text)).status).toBe(200);
    keys['user:near-user'] = rotated.text;
  });
});

describe('host-factory tokens at their expiration (Conjur: expired once now >= expiration)', () => {
  it('enrols one second and one millisecond before; refused, audited and nothing created at exactly the expiration and after', async () => {
    admin = await api.login('admin', srv.adminKey);
    const expiresMs = (Math.floor(srv.clock.nowMs() / 1000) + 120) * 1000;
    const expiration = new Date(expiresMs).toISOString().replace(/\.000Z$/, 'Z');
    const created = await api.request('POST', '/host_factory_tokens', {
      token: admin,
      body: `host_factory=${encodeURIComponent(`${A()}:host_factory:enrol`)}&expiration=${expiration}`,
      headers: FORM,
    });
    expect(created.status).toBe(200);
    expect(created.json[0].expiration).toBe(expiration);
    const hfToken = created.json[0].token as string;
    const enrol = (id: string) => api.request('POST', '/host_factories/hosts', { body: `id=${id}`, headers: { ...FORM, Authorization: `Token token="${hfToken}"` } });
    const exists = async (id: string) => (await api.request('GET', `/resources/${A()}/host/${id}`, { token: admin })).status === 200;

    srv.clock.ms = expiresMs - 1000;
    expect((await enrol('hf-second-before')).status).toBe(201);
    srv.clock.ms = expiresMs - 1;
    expect((await enrol('hf-ms-before')).status).toBe(201);
    srv.clock.ms = expiresMs;
    admin = await api.login('admin', srv.adminKey);
    const atExpiry = await expectAuditedFailure('host-factory', { operation: 'create-host', reason: /^host-factory token expired at / }, () => enrol('hf-at-expiry'));
    expect(atExpiry.status).toBe(401);
    expect(await exists('hf-at-expiry')).toBe(false);
    srv.clock.ms = expiresMs + 1000;
    expect((await enrol('hf-after')).status).toBe(401);
    expect(await exists('hf-after')).toBe(false);
    expect(await exists('hf-second-before')).toBe(true);
    expect(await exists('hf-ms-before')).toBe(true);
  });
});

describe('host-factory tokens one character off', () => {
  it('every near miss of a valid token is 401, audited, and creates nothing; the token itself enrols', async () => {
    admin = await api.login('admin', srv.adminKey);
    const created = await api.request('POST', '/host_factory_tokens', {
      token: admin,
      body: `host_factory=${encodeURIComponent(`${A()}:host_factory:enrol`)}&expiration=2050-12-31T00:00:00Z`,
      headers: FORM,
    });
    expect(created.status).toBe(200);
    const hfToken = created.json[0].token as string;
    const enrol = (token: string) => api.request('POST', '/host_factories/hosts', { body: 'id=hf-near', headers: { ...FORM, Authorization: `Token token="${token}"` } });
    // A token that matches none is audited without an account (it names none), so the events are read from the database.
    const db = await openRawDb(srv);
    const anonymous = () =>
      db.all<{ seq: number; operation: string; result: string; reason: string }>("SELECT seq, operation, result, reason FROM audit_events WHERE action = 'host-factory' AND account IS NULL ORDER BY seq");
    onTestFinished(() => db.close());
    for (const [what, wrong] of nearMisses(hfToken)) {
      const before = (await anonymous()).length;
      const r = await enrol(wrong);
      expect([what, r.status]).toEqual([what, 401]);
      const fresh = (await anonymous()).slice(before);
      expect(fresh).toHaveLength(1);
      expect(fresh[0]).toMatchObject({ operation: 'create-host', result: 'failure' });
      expect(fresh[0]!.reason).toMatch(/^(unknown or revoked|missing or malformed) host-factory token$/);
      expect((await api.request('GET', `/resources/${A()}/host/hf-near`, { token: admin })).status).toBe(404);
    }
    expect((await enrol(hfToken)).status).toBe(201);
  });
});

describe('restricted_to at the edges of its ranges (client address via a trusted proxy)', () => {
  const cases: [string, string, string, number][] = [
    // host, client address, what it is, expected status
    ['edge-31', '127.0.0.0', 'first address of 127.0.0.0/31', 200],
    ['edge-31', '127.0.0.1', 'last address of 127.0.0.0/31 (the test client itself)', 200],
    ['edge-31', '127.0.0.2', 'one past the end of 127.0.0.0/31', 401],
    ['edge-31', '126.255.255.255', 'one before the start of 127.0.0.0/31', 401],
    ['edge-30', '10.20.30.8', 'first address of 10.20.30.8/30', 200],
    ['edge-30', '10.20.30.11', 'last address of 10.20.30.8/30', 200],
    ['edge-30', '10.20.30.7', 'one before the start of 10.20.30.8/30', 401],
    ['edge-30', '10.20.30.12', 'one past the end of 10.20.30.8/30', 401],
    ['edge-30', '::ffff:10.20.30.9', 'an IPv4-mapped IPv6 address inside 10.20.30.8/30', 200],
    ['edge-32', '10.20.30.40', 'the one address of 10.20.30.40/32', 200],
    ['edge-32', '10.20.30.39', 'one before 10.20.30.40/32', 401],
    ['edge-32', '10.20.30.41', 'one after 10.20.30.40/32', 401],
    ['edge-v6', '2001:db8::', 'first address of 2001:db8::/127', 200],
    ['edge-v6', '2001:db8::1', 'last address of 2001:db8::/127', 200],
    ['edge-v6', '2001:db8::2', 'one past the end of 2001:db8::/127', 401],
    ['edge-v6', '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 'one before the start of 2001:db8::/127', 401],
    ['edge-v6', '10.20.30.8', 'an IPv4 client against an IPv6 range', 401],
  ];

  it('the ranges are stored as loaded', async () => {
    const shown = async (id: string) => (await api.request('GET', `/resources/${A()}/host/${id}`, { token: admin })).json.restricted_to;
    expect(await shown('edge-31')).toEqual(['127.0.0.0/31']);
    expect(await shown('edge-30')).toEqual(['10.20.30.8/30']);
    expect(await shown('edge-32')).toEqual(['10.20.30.40/32']);
    expect(await shown('edge-v6')).toEqual(['2001:db8::/127']);
  });

  for (const [host, ip, what, status] of cases) {
    it(`${host} from ${ip} (${what}) → ${status}${status === 401 ? ', audited CONJ00003E' : ''}`, async () => {
      const attempt = () => authenticate(`host/${host}`, keys[`host:${host}`]!, ip);
      if (status === 200) {
        expect((await attempt()).status).toBe(200);
      } else {
        const r = await expectAuditedFailure('authn', { operation: 'authenticate', role: `${A()}:host:${host}`, reason: /^CONJ00003E Origin \S+ is not allowed/ }, attempt);
        expect(r.status).toBe(401);
      }
    });
  }
});

describe('restricted_to on every way in: inside works, outside is 401, audited, and changes nothing', () => {
  const INSIDE = '10.50.0.255';
  const OUTSIDE = '10.50.1.0';
  const userPassword = 'Fenced-Pass-Word-9';

  it('authenticate', async () => {
    const r = await expectAuditedFailure('authn', { operation: 'authenticate', role: `${A()}:host:fenced-host`, reason: /^CONJ00003E Origin 10\.50\.1\.0 / }, () =>
      authenticate('host/fenced-host', keys['host:fenced-host']!, OUTSIDE),
    );
    expect(r.status).toBe(401);
    expect(r.text).not.toContain('payload');
    expect((await authenticate('host/fenced-host', keys['host:fenced-host']!, INSIDE)).status).toBe(200);
    // Without the proxy header the client is 127.0.0.1: outside too.
    expect((await authenticate('host/fenced-host', keys['host:fenced-host']!)).status).toBe(401);
  });

  it('Basic login (GET /authn/{account}/login) with the API key and with the password', async () => {
    const key = keys['user:fenced-user']!;
    // Set a password from inside first (that path is tested below).
    expect((await changePassword('fenced-user', key, userPassword, INSIDE)).status).toBe(204);
    for (const secret of [key, userPassword]) {
      const r = await expectAuditedFailure('authn', { operation: 'login', role: `${A()}:user:fenced-user`, reason: /^CONJ00003E Origin 10\.50\.1\.0 / }, () => basicLogin('fenced-user', secret, OUTSIDE));
      expect(r.status).toBe(401);
      expect(r.text).not.toContain(key);
      const ok = await basicLogin('fenced-user', secret, INSIDE);
      expect([ok.status, ok.text]).toEqual([200, key]);
    }
  });

  it('password change (PUT /authn/{account}/password): the password is not changed from outside', async () => {
    const next = 'Outside-Attempt-Pw-1';
    const r = await expectAuditedFailure('password', { operation: 'change', role: `${A()}:user:fenced-user`, reason: /^CONJ00003E Origin 10\.50\.1\.0 / }, () =>
      changePassword('fenced-user', userPassword, next, OUTSIDE),
    );
    expect(r.status).toBe(401);
    expect((await basicLogin('fenced-user', next, INSIDE)).status).toBe(401);
    expect((await basicLogin('fenced-user', userPassword, INSIDE)).status).toBe(200);
    // From inside it changes, and back.
    expect((await changePassword('fenced-user', userPassword, next, INSIDE)).status).toBe(204);
    expect((await basicLogin('fenced-user', next, INSIDE)).status).toBe(200);
    expect((await changePassword('fenced-user', next, userPassword, INSIDE)).status).toBe(204);
  });

  it('own API key rotation (PUT /authn/{account}/api_key with Basic): the key is not rotated from outside', async () => {
    for (const [login, kind] of [['fenced-user', 'user'], ['host/fenced-host', 'host']] as const) {
      const id = login.replace(/^host\//, '');
      const key = keys[`${kind}:${id}`]!;
      const r = await expectAuditedFailure('api-key', { operation: 'rotate', role: `${A()}:${kind}:${id}`, reason: /^CONJ00003E Origin 10\.50\.1\.0 / }, () => rotateOwn(login, key, OUTSIDE));
      expect(r.status).toBe(401);
      expect(r.text).not.toMatch(/^[0-9a-z]{40,}$/);
      // Not rotated: the same key still authenticates from inside.
      expect((await authenticate(login, key, INSIDE)).status).toBe(200);
      const ok = await rotateOwn(login, key, INSIDE);
      expect(ok.status).toBe(200);
      expect((await authenticate(login, key, INSIDE)).status).toBe(401);
      keys[`${kind}:${id}`] = ok.text;
    }
  });

  it('GET /authn/{account}/api_key with Basic: 401 from outside and audited (also a wrong password); 200 inside', async () => {
    const key = keys['user:fenced-user']!;
    const show = (secret: string, ip: string) => api.request('GET', `/authn/${A()}/api_key`, { headers: { Authorization: basic('fenced-user', secret), ...from(ip) } });
    const out = await expectAuditedFailure('api-key', { operation: 'show', role: `${A()}:user:fenced-user`, reason: /^CONJ00003E Origin 10\.50\.1\.0 / }, () => show(key, OUTSIDE));
    expect(out.status).toBe(401);
    expect(out.text).not.toContain('timestamp');
    const wrong = await expectAuditedFailure('api-key', { operation: 'show', role: `${A()}:user:fenced-user`, reason: /^CONJ00002E/ }, () => show(`${userPassword}x`, INSIDE));
    expect(wrong.status).toBe(401);
    const inside = await api.request('GET', `/authn/${A()}/api_key`, { headers: { Authorization: basic('fenced-user', key), ...from(INSIDE) } });
    expect(inside.status).toBe(200);
    expect(inside.json.role).toBe(`${A()}:user:fenced-user`);
  });

  it('authn-jwt: a valid JWT for a host restricted elsewhere is 401 CONJ00003E from outside, 200 inside', async () => {
    const now = Math.floor(srv.clock.nowMs() / 1000);
    const jwt = () =>
      new SignJWT({ repository: 'acme/app', jti: randomUUID() })
        .setProtectedHeader({ alg: 'RS256', kid: 'edge-1' })
        .setIssuer(JWT_ISSUER)
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(jwtKey);
    const send = async (ip: string) =>
      api.request('POST', `/authn-jwt/edge/${A()}/${encodeURIComponent('host/jwt-fenced')}/authenticate`, {
        body: `jwt=${await jwt()}`,
        headers: { ...FORM, ...from(ip) },
      });
    const r = await expectAuditedFailure('authn', { operation: 'authenticate', role: `${A()}:host:jwt-fenced`, reason: /^CONJ00003E/ }, () => send(OUTSIDE));
    expect(r.status).toBe(401);
    expect(r.text).not.toContain('payload');
    const ok = await send(INSIDE);
    expect(ok.status).toBe(200);
    expect((await whoami(ok.text)).json.username).toBe('host/jwt-fenced');
  });

  it('X-Forwarded-For cannot step inside: behind the trusted proxy the right-most untrusted hop counts, so a spoofed inside address on the left is refused', async () => {
    const key = keys['host:fenced-host']!;
    const r = await expectAuditedFailure('authn', { operation: 'authenticate', role: `${A()}:host:fenced-host`, reason: /^CONJ00003E Origin 10\.50\.1\.0 / }, () =>
      authenticate('host/fenced-host', key, `${INSIDE}, ${OUTSIDE}`),
    );
    expect(r.status).toBe(401);
    // The proxy's own address on the right is skipped: the client it reports is what counts.
    expect((await authenticate('host/fenced-host', key, `${OUTSIDE}, ${INSIDE}, 127.0.0.1`)).status).toBe(200);
    expect((await authenticate('host/fenced-host', key, `${INSIDE}, ${OUTSIDE}, 127.0.0.1`)).status).toBe(401);
  });

  for (const [what, flags] of [
    ['no --trusted-proxies at all', {}],
    ['--trusted-proxies naming another proxy (192.0.2.1), not the peer', { 'trusted-proxies': '192.0.2.1/32' }],
  ] as const) {
    it(`X-Forwarded-For from a peer that is not a trusted proxy is ignored (${what}): an inside address in the header does not help`, async () => {
      const plain = await startTestServer({ account: 'plain', flags });
      try {
        const c = new Client(plain.url, plain.account);
        const adminToken = await c.login('admin', plain.adminKey);
        const loaded = await c.loadPolicy(adminToken, 'POST', 'root', '- !host\n  id: fenced\n  restricted_to: 10.50.0.0/24\n');
        expect(loaded.status).toBe(201);
        const key = loaded.json.created_roles['plain:host:fenced'].api_key as string;
        const r = await c.request('POST', '/authn/plain/host%2Ffenced/authenticate', { body: key, headers: { 'X-Forwarded-For': INSIDE } });
        expect(r.status).toBe(401);
        const events = await c.request('GET', '/audit/plain?action=authn&result=failure&limit=1', { token: adminToken });
        expect(events.json.events[0]).toMatchObject({ role: 'plain:host:fenced', client_ip: '127.0.0.1' });
        expect(events.json.events[0].reason).toMatch(/^CONJ00003E Origin 127\.0\.0\.1 /);
      } finally {
        await plain.close();
      }
    });
  }

  it('host-factory enrolment with a CIDR-restricted token: nothing created, no key rotated from outside; inside works', async () => {
    admin = await api.login('admin', srv.adminKey);
    const created = await api.request('POST', '/host_factory_tokens', {
      token: admin,
      body: `host_factory=${encodeURIComponent(`${A()}:host_factory:enrol`)}&expiration=2050-12-31T00:00:00Z&cidr[]=10.60.0.0/30`,
      headers: FORM,
    });
    expect(created.status).toBe(200);
    expect(created.json[0].cidr).toEqual(['10.60.0.0/30']);
    const hfToken = created.json[0].token as string;
    const enrol = (id: string, ip: string) => api.request('POST', '/host_factories/hosts', { body: `id=${id}`, headers: { ...FORM, Authorization: `Token token="${hfToken}"`, ...from(ip) } });
    const exists = async (id: string) => (await api.request('GET', `/resources/${A()}/host/${id}`, { token: admin })).status === 200;

    for (const ip of ['10.60.0.4', '10.59.255.255']) {
      const r = await expectAuditedFailure('host-factory', { operation: 'create-host', reason: new RegExp(`^origin ${ip.replace(/\./g, '\\.')} is outside the token's cidr 10\\.60\\.0\\.0/30`) }, () => enrol('hf-fenced', ip));
      expect(r.status).toBe(401);
      expect(await exists('hf-fenced')).toBe(false);
    }
    const first = await enrol('hf-fenced', '10.60.0.3');
    expect(first.status).toBe(201);
    const key = first.json.api_key as string;
    expect((await enrol('hf-fenced-2', '10.60.0.0')).status).toBe(201);
    // Re-enrolling an existing host rotates its key — but not from outside.
    const again = await enrol('hf-fenced', '10.60.0.4');
    expect(again.status).toBe(401);
    expect(again.text).not.toMatch(/api_key/);
    expect((await authenticate('host/hf-fenced', key)).status).toBe(200);
  });
});
