/**
 * End to end: authn-jwt against the real server, with a JWKS server on
 * loopback (keys generated here), a static `public-keys` service, the attack
 * matrix of the executor-identity issue, enable/disable, status, and replay
 * protection across a restart.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, randomUUID } from 'node:crypto';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { openRawDb } from '../helpers/raw-db.js';

/** A loopback HTTP server that counts connections and requests. */
interface CountingServer {
  url: string;
  connections: number;
  requests: number;
  body: () => string;
  setBody(b: string): void;
  close(): Promise<void>;
}

async function countingServer(initialBody: string): Promise<CountingServer> {
  let body = initialBody;
  const state = { connections: 0, requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(body);
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get connections() {
      return state.connections;
    },
    get requests() {
      return state.requests;
    },
    body: () => body,
    setBody: (b) => void (body = b),
    close: () => new Promise<void>((r) => server.close(() => r())),
  } as CountingServer;
}

const ISSUER = 'https://jenkins.example.com';
const AUDIENCE = 'coffer';
let srv: TestServer;
let api: Client;
let admin: string;
let jwks: CountingServer;
let attacker: CountingServer;
let signingKey: CryptoKey;
let signingJwk: JWK;
let publicPem: string;
let otherKey: CryptoKey;
let staticKey: CryptoKey;
const A = () => srv.account;

const nowSec = () => Math.floor(srv.clock.nowMs() / 1000);

/** A Jenkins-like job token (claims as the Conjur Jenkins plugin sends them). */
function jenkinsClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'build-app',
    jenkins_full_name: 'build-app',
    jenkins_parent_full_name: 'app-team',
    jenkins_build_url: 'https://jenkins.example.com/job/build-app/42/',
    iat: nowSec(),
    nbf: nowSec() - 5,
    exp: nowSec() + 300,
    jti: randomUUID(),
    ...overrides,
  };
}

async function sign(claims: Record<string, unknown>, opts: { key?: CryptoKey; header?: Record<string, unknown> } = {}): Promise<string> {
  const clean = Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
  return new SignJWT(clean)
    .setProtectedHeader({ alg: 'RS256', kid: 'jenkins-1', ...opts.header } as { alg: string })
    .sign(opts.key ?? signingKey);
}

/** Compact JWS built by hand: what an attacker sends (alg none, HS256 with the public key). */
function handmade(header: Record<string, unknown>, claims: Record<string, unknown>, hmacKey?: string): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64(header)}.${b64(claims)}`;
  const sig = hmacKey === undefined ? '' : createHmac('sha256', hmacKey).update(input).digest('base64url');
  return `${input}.${sig}`;
}

async function authn(service: string, jwt: string, opts: { hostId?: string; headers?: Record<string, string> } = {}) {
  const host = opts.hostId === undefined ? '' : `/${encodeURIComponent(opts.hostId)}`;
  return api.request('POST', `/authn-jwt/${service}/${A()}${host}/authenticate`, {
    body: `jwt=${encodeURIComponent(jwt)}`,
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...opts.headers },
  });
}

/** The newest failed authn-jwt audit event's reason. */
async function lastFailureReason(): Promise<string> {
  const r = await api.request('GET', `/audit/${A()}?action=authn&result=failure&limit=1`, { token: admin });
  expect(r.status).toBe(200);
  const event = r.json.events[0];
  expect(event.details?.authenticator).toBe('authn-jwt');
  return event.reason as string;
}

async function whoami(tokenJson: string) {
  const r = await api.request('GET', '/whoami', { token: tokenJson });
  expect(r.status).toBe(200);
  return r.json.username as string;
}

const POLICY = `
- !policy
  id: conjur/authn-jwt/jenkins
  body:
  - !webservice
  - !webservice status
  - !variable jwks-uri
  - !variable issuer
  - !variable audience
  - !variable token-app-property
  - !variable identity-path
  - !variable enforced-claims
  - !variable claim-aliases
  - !group apps
  - !permit
    role: !group apps
    privilege: [ read, authenticate ]
    resource: !webservice
- !policy
  id: conjur/authn-jwt/static
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !group apps
  - !permit
    role: !group apps
    privilege: [ read, authenticate ]
    resource: !webservice
- !policy
  id: conjur/authn-jwt/gitlab
  body:
  - !webservice
  - !variable public-keys
  - !variable issuer
  - !variable token-app-property
  - !group apps
  - !permit
    role: !group apps
    privilege: [ read, authenticate ]
    resource: !webservice
- !policy
  id: conjur/authn-jwt/unconfigured
  body:
  - !webservice
- !policy
  id: conjur/authn-jwt/ssrf
  body:
  - !webservice
  - !webservice status
  - !variable jwks-uri
  - !variable token-app-property
- !policy
  id: jenkins/jobs
  body:
  - !host
    id: build-app
    annotations:
      authn-jwt/jenkins/folder: app-team
      authn-jwt/jenkins/jenkins_build_url: https://jenkins.example.com/job/build-app/42/
  - !host
    id: no-annotations
  - !host
    id: not-permitted
    annotations:
      authn-jwt/jenkins/folder: app-team
  - !host
    id: fenced
    restricted_to: 10.0.0.0/8
    annotations:
      authn-jwt/jenkins/folder: app-team
- !host
  id: outside
  annotations:
    authn-jwt/jenkins/folder: app-team
- !host
  id: ci/static-runner
  annotations:
    authn-jwt/static/repository: acme/app
- !host
  id: acme/app
  annotations:
    authn-jwt/gitlab/project_path: acme/app
- !user status-reader
- !permit
  role: !user status-reader
  privilege: read
  resource: !webservice conjur/authn-jwt/jenkins/status
- !grant
  role: !group conjur/authn-jwt/jenkins/apps
  members: [ !host jenkins/jobs/build-app, !host jenkins/jobs/no-annotations, !host jenkins/jobs/fenced, !host outside ]
- !grant
  role: !group conjur/authn-jwt/static/apps
  member: !host ci/static-runner
- !grant
  role: !group conjur/authn-jwt/gitlab/apps
  member: !host acme/app
`;

let statusReader: string;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256', { extractable: true });
  signingKey = pair.privateKey;
  signingJwk = { ...(await exportJWK(pair.publicKey)), kid: 'jenkins-1', alg: 'RS256', use: 'sig' };
  publicPem = await exportSPKI(pair.publicKey);
  otherKey = (await generateKeyPair('RS256', { extractable: true })).privateKey;
  const staticPair = await generateKeyPair('ES256', { extractable: true });
  staticKey = staticPair.privateKey;
  const staticJwk = { ...(await exportJWK(staticPair.publicKey)), kid: 'static-1', alg: 'ES256' };

  jwks = await countingServer(JSON.stringify({ keys: [signingJwk] }));
  attacker = await countingServer(JSON.stringify({ keys: [await exportJWK((await generateKeyPair('RS256', { extractable: true })).publicKey)] }));
  srv = await startTestServer({
    keepDataDir: true,
    flags: { authenticators: 'authn,authn-jwt/jenkins,authn-jwt/static,authn-jwt/unconfigured,authn-jwt/ssrf', 'jwt-allow-http-hosts': '127.0.0.1' },
  });
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const staticJwks = JSON.stringify({ type: 'jwks', value: { keys: [staticJwk] } });
  const r = await api.loadPolicy(admin, 'POST', 'root', POLICY);
  expect(r.status).toBe(201);
  statusReader = await api.login('status-reader', r.json.created_roles[`${A()}:user:status-reader`].api_key);
  const set = async (id: string, value: string) => expect((await api.setSecret(admin, id, value)).status).toBe(201);
  await set('conjur/authn-jwt/jenkins/jwks-uri', `${jwks.url}/jwks`);
  await set('conjur/authn-jwt/jenkins/issuer', ISSUER);
  await set('conjur/authn-jwt/jenkins/audience', AUDIENCE);
  await set('conjur/authn-jwt/jenkins/token-app-property', 'jenkins_full_name');
  await set('conjur/authn-jwt/jenkins/identity-path', 'jenkins/jobs');
  await set('conjur/authn-jwt/jenkins/enforced-claims', 'jenkins_parent_full_name');
  await set('conjur/authn-jwt/jenkins/claim-aliases', 'folder:jenkins_parent_full_name');
  await set('conjur/authn-jwt/ssrf/jwks-uri', `https://localhost:${new URL(attacker.url).port}/jwks`);
  await set('conjur/authn-jwt/ssrf/token-app-property', 'sub');
  await set('conjur/authn-jwt/static/public-keys', staticJwks);
  await set('conjur/authn-jwt/static/issuer', 'https://static.example');
  await set('conjur/authn-jwt/gitlab/public-keys', staticJwks);
  await set('conjur/authn-jwt/gitlab/issuer', 'https://gitlab.example');
  await set('conjur/authn-jwt/gitlab/token-app-property', 'project_path');
});
afterAll(async () => {
  await srv?.close();
  if (srv) rmSync(srv.dataDir, { recursive: true, force: true });
  await jwks?.close();
  await attacker?.close();
});

describe('authn-jwt: a CI job authenticates with its signed JWT', () => {
  it('exchanges a Jenkins job token for an access token of the mapped host (JSON and base64)', async () => {
    const r = await authn('jenkins', await sign(jenkinsClaims()));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    expect(await whoami(r.text)).toBe('host/jenkins/jobs/build-app');

    const b = await authn('jenkins', await sign(jenkinsClaims()), { headers: { 'Accept-Encoding': 'base64' } });
    expect(b.status).toBe(200);
    expect(b.headers.get('content-encoding')).toBe('base64');
    expect(await whoami(Buffer.from(b.text, 'base64').toString('utf8'))).toBe('host/jenkins/jobs/build-app');

    const ok = await api.request('GET', `/audit/${A()}?action=authn&result=success&limit=1`, { token: admin });
    expect(ok.json.events[0]).toMatchObject({
      role: `${A()}:host:jenkins/jobs/build-app`,
      details: { authenticator: 'authn-jwt', service: `${A()}:webservice:conjur/authn-jwt/jenkins`, jwt: { iss: ISSUER, sub: 'build-app' } },
    });
    expect(typeof ok.json.events[0].details.jwt.jti).toBe('string');
    expect(JSON.stringify(ok.json)).not.toContain(b.text);
  });

  it('takes the role from the URL when the service has no token-app-property (static public-keys, ES256)', async () => {
    const claims = { iss: 'https://static.example', repository: 'acme/app', exp: nowSec() + 60, iat: nowSec() };
    const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'static-1' }).sign(staticKey);
    const r = await authn('static', jwt, { hostId: 'host/ci/static-runner' });
    expect(r.status).toBe(200);
    expect(await whoami(r.text)).toBe('host/ci/static-runner');
    // The same service refuses the identity-from-token form (CONJ00098E), as Conjur does.
    const again = await new SignJWT({ ...claims, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'static-1' }).sign(staticKey);
    expect((await authn('static', again)).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00098E/);
  });

  it('refuses a request without a jwt field with 400, and a malformed one with 401', async () => {
    const r = await api.request('POST', `/authn-jwt/jenkins/${A()}/authenticate`, {
      body: 'token=abc',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).toBe(400);
    expect((await authn('jenkins', 'not-a-jwt')).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00077E/);
  });
});

describe('authn-jwt: attack matrix (each 401, audited, and no connection to anything but the configured JWKS)', () => {
  /** Runs one attack: 401, an audited CONJ reason, no attacker connection, at most `maxJwksFetches` JWKS fetches. */
  async function attack(jwt: string, reason: RegExp, maxJwksFetches = 0, service = 'jenkins') {
    // Warm the JWKS cache so that counted fetches are the attack's own.
    expect((await authn('jenkins', await sign(jenkinsClaims()))).status).toBe(200);
    const before = { jwks: jwks.requests, attacker: attacker.connections };
    const r = await authn(service, jwt);
    expect(r.status).toBe(401);
    expect(r.text).toBe('');
    expect(await lastFailureReason()).toMatch(reason);
    expect(attacker.connections).toBe(before.attacker);
    expect(jwks.requests - before.jwks).toBeLessThanOrEqual(maxJwksFetches);
  }

  it('alg: none', async () => {
    await attack(handmade({ alg: 'none', kid: 'jenkins-1' }, jenkinsClaims()), /^CONJ00035E.*Algorithm/);
  });

  it('HS256 signed with the RSA public key bytes (key confusion)', async () => {
    await attack(handmade({ alg: 'HS256', kid: 'jenkins-1' }, jenkinsClaims(), publicPem), /^CONJ00035E.*Algorithm/);
  });

  it('wrong issuer', async () => {
    await attack(await sign(jenkinsClaims({ iss: 'https://evil.example' })), /^CONJ00035E.*iss/);
  });

  it('wrong audience', async () => {
    await attack(await sign(jenkinsClaims({ aud: 'someone-else' })), /^CONJ00035E.*aud/);
  });

  it('expired', async () => {
    await attack(await sign(jenkinsClaims({ iat: nowSec() - 900, nbf: nowSec() - 900, exp: nowSec() - 120 })), /^CONJ00016E/);
  });

  it('nbf in the future (beyond the allowed skew)', async () => {
    await attack(await sign(jenkinsClaims({ nbf: nowSec() + 600 })), /^CONJ00035E.*nbf/);
  });

  it('missing exp', async () => {
    await attack(await sign(jenkinsClaims({ exp: undefined })), /^CONJ00091E.*'exp'/);
  });

  it('missing enforced claim', async () => {
    await attack(await sign(jenkinsClaims({ jenkins_parent_full_name: undefined })), /^CONJ00084E|^CONJ00057E/);
  });

  it('annotation mismatch', async () => {
    await attack(await sign(jenkinsClaims({ jenkins_parent_full_name: 'other-team' })), /^CONJ00049E/);
  });

  it('jku and x5u pointing at a loopback server are never fetched', async () => {
    const header = { jku: `${attacker.url}/jwks`, x5u: `${attacker.url}/cert.pem`, kid: 'attacker' };
    await attack(await sign(jenkinsClaims(), { key: otherKey, header }), /^CONJ00035E/, 1);
    // The configured JWKS answered the unknown kid with one refresh at most; the attacker saw nothing.
  });

  it('kid with path characters is refused before any fetch', async () => {
    await attack(await sign(jenkinsClaims(), { header: { kid: '../../etc/passwd' } }), /^CONJ00035E/);
  });

  it('a token signed by an unknown key', async () => {
    await attack(await sign(jenkinsClaims(), { key: otherKey }), /^CONJ00035E.*signature/);
  });

  it('replayed jti', async () => {
    const jwt = await sign(jenkinsClaims());
    expect((await authn('jenkins', jwt)).status).toBe(200);
    await attack(jwt, /^CONJ00035E.*replay/);
  });

  it('a host outside identity-path (path traversal in the claim, or an existing host elsewhere)', async () => {
    await attack(await sign(jenkinsClaims({ jenkins_full_name: '../../outside' })), /^CONJ00101E/);
    await attack(await sign(jenkinsClaims({ jenkins_full_name: 'outside' })), /^CONJ00007E/);
  });
});

describe('authn-jwt: no fetch from non-public addresses unless the operator names the host', () => {
  it('a jwks-uri resolving to loopback is never connected to, on authenticate or status', async () => {
    const before = attacker.connections;
    const r = await authn('ssrf', await sign(jenkinsClaims()));
    expect(r.status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00087E.*localhost/);
    const status = await api.request('GET', `/authn-jwt/ssrf/${A()}/status`, { token: admin });
    expect(status.status).toBe(500);
    expect(status.json.error).toMatch(/^CONJ00087E/);
    expect(attacker.connections).toBe(before);
  });
});

describe('authn-jwt: the host and the service must allow it', () => {
  it('unknown or not enabled service → CONJ00004E; enabled but not in policy → CONJ00005E', async () => {
    expect((await authn('nope', await sign(jenkinsClaims()))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00004E/);
    expect((await authn('gitlab', await sign(jenkinsClaims()))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00004E/);
    const other = new Client(srv.url, 'no-such-account');
    const r = await other.request('POST', `/authn-jwt/jenkins/no-such-account/authenticate`, {
      body: `jwt=${await sign(jenkinsClaims())}`,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).toBe(401);
  });

  it('a misconfigured service (no key source) → 401 with Conjur\'s configuration code', async () => {
    expect((await authn('unconfigured', await sign(jenkinsClaims()))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00/);
  });

  it('host missing, host without annotations, host without authenticate, host outside restricted_to', async () => {
    expect((await authn('jenkins', await sign(jenkinsClaims({ jenkins_full_name: 'ghost' })))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00007E/);
    expect((await authn('jenkins', await sign(jenkinsClaims({ jenkins_full_name: 'no-annotations' })))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00099E/);
    expect((await authn('jenkins', await sign(jenkinsClaims({ jenkins_full_name: 'not-permitted' })))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00006E/);
    expect((await authn('jenkins', await sign(jenkinsClaims({ jenkins_full_name: 'fenced' })))).status).toBe(401);
    expect(await lastFailureReason()).toMatch(/^CONJ00003E/);
  });

  it('a token refused by policy keeps its jti: the same JWT works once the policy is fixed', async () => {
    const jwt = await sign(jenkinsClaims({ jenkins_full_name: 'not-permitted' }));
    expect((await authn('jenkins', jwt)).status).toBe(401);
    const r = await api.loadPolicy(admin, 'POST', 'root', `
- !grant
  role: !group conjur/authn-jwt/jenkins/apps
  member: !host jenkins/jobs/not-permitted
`);
    expect(r.status).toBe(201);
    const ok = await authn('jenkins', jwt);
    expect(ok.status).toBe(200);
    expect(await whoami(ok.text)).toBe('host/jenkins/jobs/not-permitted');
  });
});

describe('authn-jwt: JWKS fetching', () => {
  it('an unknown kid triggers exactly one refresh, which picks up a rotated key', async () => {
    const rotated = await generateKeyPair('RS256', { extractable: true });
    const rotatedJwk = { ...(await exportJWK(rotated.publicKey)), kid: 'jenkins-2', alg: 'RS256' };
    const before = jwks.requests;
    jwks.setBody(JSON.stringify({ keys: [signingJwk, rotatedJwk] }));
    const jwt = await sign(jenkinsClaims(), { key: rotated.privateKey, header: { kid: 'jenkins-2' } });
    expect((await authn('jenkins', jwt)).status).toBe(200);
    expect(jwks.requests - before).toBe(1);
    // Known kid now: no further fetch.
    expect((await authn('jenkins', await sign(jenkinsClaims(), { key: rotated.privateKey, header: { kid: 'jenkins-2' } }))).status).toBe(200);
    expect(jwks.requests - before).toBe(1);
  });
});

describe('authn-jwt: status, enabling, listing', () => {
  it('GET status: 200 for a reader of the status webservice, 403 for others, 500 with the reason when broken', async () => {
    const ok = await api.request('GET', `/authn-jwt/jenkins/${A()}/status`, { token: statusReader });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ status: 'ok' });
    const host = await authn('jenkins', await sign(jenkinsClaims()));
    const denied = await api.request('GET', `/authn-jwt/jenkins/${A()}/status`, { token: host.text });
    expect(denied.status).toBe(403);
    expect(denied.json.status).toBe('error');
    expect(denied.json.error).toMatch(/^CONJ00006E/);
    // The admin owns everything, the status webservice of an undefined service does not exist → 403 as in Conjur.
    const broken = await api.request('GET', `/authn-jwt/unconfigured/${A()}/status`, { token: admin });
    expect(broken.status).toBe(403);
    const r = await api.loadPolicy(admin, 'POST', 'conjur/authn-jwt/unconfigured', '- !webservice status\n');
    expect(r.status).toBe(201);
    const misconfigured = await api.request('GET', `/authn-jwt/unconfigured/${A()}/status`, { token: admin });
    expect(misconfigured.status).toBe(500);
    expect(misconfigured.json.error).toMatch(/^CONJ00/);
    expect((await api.request('GET', `/authn-jwt/jenkins/${A()}/status`)).status).toBe(401);
  });

  it('PATCH enables a service for this account; config-enabled services cannot be disabled; privileges apply', async () => {
    const gitlabJwt = async () =>
      new SignJWT({ iss: 'https://gitlab.example', project_path: 'acme/app', exp: nowSec() + 60, jti: randomUUID() })
        .setProtectedHeader({ alg: 'ES256', kid: 'static-1' })
        .sign(staticKey);
    expect((await authn('gitlab', await gitlabJwt())).status).toBe(401);

    const patch = (service: string, body: string, token = admin, type = 'application/x-www-form-urlencoded') =>
      api.request('PATCH', `/authn-jwt/${service}/${A()}`, { token, body, headers: { 'Content-Type': type } });
    expect((await patch('gitlab', 'enabled=maybe')).status).toBe(422);
    expect((await patch('gitlab', 'enabled=true')).status).toBe(204);
    const list = await api.request('GET', '/authenticators');
    expect(list.json.enabled).toEqual(expect.arrayContaining(['authn', 'authn-jwt/jenkins', 'authn-jwt/gitlab']));
    expect(list.json.configured).toEqual(expect.arrayContaining(['authn', 'authn-jwt/jenkins', 'authn-jwt/static', 'authn-jwt/gitlab']));
    expect(list.json.installed).toEqual(['authn', 'authn-jwt']);

    const ok = await authn('gitlab', await gitlabJwt());
    expect(ok.status).toBe(200);
    expect(await whoami(ok.text)).toBe('host/acme/app');

    expect((await patch('gitlab', JSON.stringify({ enabled: false }), admin, 'application/json')).status).toBe(204);
    expect((await authn('gitlab', await gitlabJwt())).status).toBe(401);
    expect((await api.request('GET', '/authenticators')).json.enabled).not.toContain('authn-jwt/gitlab');

    const conflict = await patch('jenkins', 'enabled=false');
    expect(conflict.status).toBe(409);
    expect(conflict.json.error.message).toContain('COFFER_AUTHENTICATORS');

    // A host that can see the webservice (it may authenticate) but not update it: 403; a missing service: 404.
    const host = (await authn('jenkins', await sign(jenkinsClaims()))).text;
    expect((await patch('jenkins', 'enabled=true', host)).status).toBe(403);
    expect((await patch('nope', 'enabled=true')).status).toBe(404);
    expect((await patch('nope', 'enabled=true', '')).status).toBe(401);
  });
});

describe('authn-jwt: enabling is audited or not done', () => {
  it('PATCH fails closed: when the audit event cannot be written the answer is 503 and nothing changed', async () => {
    const db = await openRawDb(srv);
    const enabledRow = () => db.get('SELECT enabled FROM authenticator_configs WHERE resource_id = ?', `${A()}:webservice:conjur/authn-jwt/gitlab`);
    const before = await enabledRow();
    const restore = await db.failAuditInserts();
    try {
      const r = await api.request('PATCH', `/authn-jwt/gitlab/${A()}`, {
        token: admin,
        body: 'enabled=true',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      });
      expect(r.status).toBe(503);
      expect(await enabledRow()).toEqual(before);
    } finally {
      await restore();
      await db.close();
    }
  });
});

describe('authn-jwt: replay protection survives a restart', () => {
  it('a jti used before the restart is refused after it', async () => {
    const jwt = await sign(jenkinsClaims());
    expect((await authn('jenkins', jwt)).status).toBe(200);
    await srv.close();
    srv = await startTestServer({
      dataDir: srv.dataDir,
      dataKey: srv.dataKey,
      flags: { authenticators: 'authn,authn-jwt/jenkins', 'jwt-allow-http-hosts': '127.0.0.1' },
    });
    api = new Client(srv.url, srv.account);
    expect((await authn('jenkins', jwt)).status).toBe(401);
    expect((await authn('jenkins', await sign(jenkinsClaims()))).status).toBe(200);
  });
});
