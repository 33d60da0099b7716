import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CofferError } from '../../src/errors.js';
import {
  authenticateJwt,
  checkHostRestrictions,
  createJwtKeySource,
  httpGetText,
  InMemoryJtiStore,
  isNonPublicAddress,
  keySourceFingerprint,
  parseJwtAuthenticatorConfig,
  RemoteJwksKeySource,
  resolveHostIdentity,
  StaticJwksKeySource,
  verifyJwt,
  type AuthenticateJwtInput,
  type FetchLimits,
  type JwtAuthenticatorConfig,
  type JwtKeySource,
  type RemoteJwksOptions,
} from '../../src/authn/jwt/index.js';

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const ISSUER = 'https://issuer.example';
const NOW_S = Math.floor(Date.now() / 1000);
const fixedNow = () => NOW_S * 1000;
const LOOPBACK = ['127.0.0.1'];

interface TestKey {
  alg: string;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function makeKey(alg: string, kid: string): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwk };
}

/** Signs claims with defaults iss/iat/exp; a claim set to `undefined` is left out. */
async function sign(
  key: TestKey,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const payload: Record<string, unknown> = { iss: ISSUER, iat: NOW_S, exp: NOW_S + 300, host: 'myapp', ...claims };
  for (const name of Object.keys(payload)) if (payload[name] === undefined) delete payload[name];
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header })
    .sign(key.privateKey);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

interface TestServer {
  url: string;
  connections: number;
  requests: string[];
  handler: http.RequestListener;
  close(): Promise<void>;
}

async function startServer(handler: http.RequestListener, tls?: { key: string; cert: string }): Promise<TestServer> {
  const state = { connections: 0, requests: [] as string[], handler };
  const listener: http.RequestListener = (req, res) => {
    state.requests.push(req.url ?? '');
    state.handler(req, res);
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  server.on(tls ? 'secureConnection' : 'connection', () => {
    state.connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    get connections() {
      return state.connections;
    },
    get requests() {
      return state.requests;
    },
    get handler() {
      return state.handler;
    },
    set handler(next) {
      state.handler = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sendJson(res: http.ServerResponse, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function authFailure(action: Promise<unknown> | (() => unknown), code: string): Promise<CofferError> {
  let caught: unknown;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a ${code} failure`).toBeInstanceOf(CofferError);
  const error = caught as CofferError;
  expect(error.code).toBe('unauthorized');
  expect(error.message).toBe('Unauthorized');
  expect(error.auditReason).toMatch(new RegExp(`^${code} `));
  return error;
}

let rsa: TestKey;
let rsa2: TestKey;
let ec: TestKey;
let ed: TestKey;
let attacker: TestKey;
let jwksServer: TestServer;
let attackerServer: TestServer;
let jwksDoc: { keys: JWK[] };

function defaultJwksHandler(): http.RequestListener {
  return (req, res) => {
    if (req.url === '/jwks') return sendJson(res, jwksDoc);
    if (req.url === '/.well-known/openid-configuration') {
      return sendJson(res, { issuer: jwksServer.url, jwks_uri: `${jwksServer.url}/jwks` });
    }
    sendJson(res, { error: 'not found' }, 404);
  };
}

beforeAll(async () => {
  [rsa, rsa2, ec, ed, attacker] = await Promise.all([
    makeKey('RS256', 'rsa-1'),
    makeKey('RS256', 'rsa-2'),
    makeKey('ES256', 'ec-1'),
    makeKey('EdDSA', 'ed-1'),
    makeKey('RS256', 'attacker-1'),
  ]);
  jwksServer = await startServer(defaultJwksHandler());
  attackerServer = await startServer((_req, res) => sendJson(res, { keys: [attacker.jwk] }));
});

afterAll(async () => {
  await Promise.all([jwksServer.close(), attackerServer.close()]);
});

let baseConnections = 0;
let baseRequests = 0;
beforeEach(() => {
  jwksDoc = { keys: [rsa.jwk, ec.jwk, ed.jwk] };
  jwksServer.handler = defaultJwksHandler();
  baseConnections = jwksServer.connections;
  baseRequests = jwksServer.requests.length;
});
const jwksConnections = () => jwksServer.connections - baseConnections;
const jwksRequests = () => jwksServer.requests.length - baseRequests;

function jwksConfig(extra: Record<string, string | undefined> = {}): JwtAuthenticatorConfig {
  return parseJwtAuthenticatorConfig(
    { 'jwks-uri': `${jwksServer.url}/jwks`, issuer: ISSUER, 'token-app-property': 'host', ...extra },
    { allowHttpHosts: LOOPBACK, account: 'acme', serviceId: 'ci' },
  );
}

function remoteSource(config: JwtAuthenticatorConfig, opts: { now?: () => number; timeoutMs?: number } = {}) {
  return createJwtKeySource(config, { now: opts.now ?? fixedNow, timeoutMs: opts.timeoutMs ?? 1000 });
}

const HOSTS: Record<string, Record<string, string>> = {
  'acme:host:myapp': { 'authn-jwt/ci/project': 'proj-1', 'authn-jwt/other/project': 'ignored' },
  'acme:host:apps/myapp': { 'authn-jwt/ci/project': 'proj-1' },
  'acme:host:nested-app': { 'authn-jwt/ci/additional_data/group_name': 'grp', 'authn-jwt/ci/proj': 'proj-1' },
  'acme:user:alice': { 'authn-jwt/ci/project': 'proj-1' },
};

function authInput(
  jwt: string,
  config: JwtAuthenticatorConfig,
  keySource: JwtKeySource,
  overrides: Partial<AuthenticateJwtInput> = {},
): AuthenticateJwtInput {
  return {
    jwt,
    serviceId: 'ci',
    account: 'acme',
    config,
    keySource,
    lookupHostAnnotations: (roleId) => HOSTS[roleId],
    now: fixedNow,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

describe('parseJwtAuthenticatorConfig', () => {
  const parse = (values: Record<string, string | undefined>, allowHttpHosts: string[] = []) =>
    parseJwtAuthenticatorConfig(values, { allowHttpHosts, account: 'acme', serviceId: 'ci' });

  it('Should accept a jwks-uri and default the issuer to its hostname', () => {
    const config = parse({ 'jwks-uri': 'https://gitlab.example.com/oauth/discovery/keys', 'token-app-property': 'sub' });
    expect(config.signingKey).toEqual({ type: 'jwks-uri', uri: 'https://gitlab.example.com/oauth/discovery/keys' });
    expect(config.issuer).toBe('gitlab.example.com');
    expect(config.tokenAppProperty).toBe('sub');
    expect(config.enforcedClaims).toEqual([]);
  });

  it('Should default the issuer to the provider-uri value', () => {
    const config = parse({ 'provider-uri': 'https://login.example.com/realm' });
    expect(config.signingKey.type).toBe('provider-uri');
    expect(config.issuer).toBe('https://login.example.com/realm');
  });

  it('Should prefer an explicit issuer', () => {
    expect(parse({ 'jwks-uri': 'https://a.example/keys', issuer: 'https://gitlab.com' }).issuer).toBe('https://gitlab.com');
  });

  it('Should refuse more than one signing key source (CONJ00122E)', async () => {
    const error = await authFailure(
      () => parse({ 'jwks-uri': 'https://a.example/k', 'provider-uri': 'https://a.example' }),
      'CONJ00122E',
    );
    expect(error.auditReason).toContain('cannot be defined simultaneously');
    await authFailure(() => parse({ 'jwks-uri': 'https://a.example/k', 'public-keys': '{}', issuer: 'x' }), 'CONJ00122E');
  });

  it('Should refuse a configuration without a signing key source (CONJ00122E)', async () => {
    const error = await authFailure(() => parse({ 'token-app-property': 'sub' }), 'CONJ00122E');
    expect(error.auditReason).toContain('One of the following must be defined');
  });

  it('Should name the variable whose value is missing (CONJ00037E)', async () => {
    const error = await authFailure(() => parse({ 'jwks-uri': 'https://a.example/k', audience: '' }), 'CONJ00037E');
    expect(error.auditReason).toBe('CONJ00037E Missing value for resource: acme:variable:conjur/authn-jwt/ci/audience');
    await authFailure(() => parse({ 'jwks-uri': '' }), 'CONJ00037E');
    await authFailure(() => parse({ 'jwks-uri': 'https://a.example/k', 'identity-path': ' ' }), 'CONJ00037E');
  });

  it('Should require issuer with public-keys (CONJ00037E)', async () => {
    const publicKeys = JSON.stringify({ type: 'jwks', value: { keys: [rsa.jwk] } });
    const error = await authFailure(() => parse({ 'public-keys': publicKeys }), 'CONJ00037E');
    expect(error.auditReason).toContain('conjur/authn-jwt/ci/issuer');
    expect(parse({ 'public-keys': publicKeys, issuer: ISSUER }).signingKey.type).toBe('public-keys');
  });

  it('Should validate the public-keys document (CONJ00120E)', async () => {
    await authFailure(() => parse({ 'public-keys': '{not json', issuer: 'x' }), 'CONJ00120E');
    await authFailure(() => parse({ 'public-keys': '{"type":"pem","value":{}}', issuer: 'x' }), 'CONJ00120E');
    await authFailure(() => parse({ 'public-keys': '{"type":"jwks","value":{"keys":[]}}', issuer: 'x' }), 'CONJ00120E');
    const secret = JSON.stringify({ type: 'jwks', value: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } });
    await authFailure(() => parse({ 'public-keys': secret, issuer: 'x' }), 'CONJ00120E');
    const privateJwk = await exportJWK(rsa.privateKey);
    const leaked = JSON.stringify({ type: 'jwks', value: { keys: [privateJwk] } });
    const error = await authFailure(() => parse({ 'public-keys': leaked, issuer: 'x' }), 'CONJ00120E');
    expect(error.auditReason).not.toContain(privateJwk.d!);
  });

  it('Should allow ca-cert only with jwks-uri or provider-uri (CONJ00122E)', async () => {
    const publicKeys = JSON.stringify({ type: 'jwks', value: { keys: [rsa.jwk] } });
    await authFailure(
      () => parse({ 'public-keys': publicKeys, issuer: 'x', 'ca-cert': '-----BEGIN CERTIFICATE-----' }),
      'CONJ00122E',
    );
    const error = await authFailure(
      () => parse({ 'jwks-uri': 'https://a.example/k', 'ca-cert': 'not a certificate' }),
      'CONJ00122E',
    );
    expect(error.auditReason).toContain('ca-cert');
  });

  it('Should require https unless the host is allowed over plain http (CONJ00122E)', async () => {
    const error = await authFailure(() => parse({ 'jwks-uri': 'http://idp.example/keys' }), 'CONJ00122E');
    expect(error.auditReason).toContain('must use https');
    await authFailure(() => parse({ 'provider-uri': 'http://idp.example' }), 'CONJ00122E');
    await authFailure(() => parse({ 'jwks-uri': 'ftp://idp.example/keys' }), 'CONJ00122E');
    expect(parse({ 'jwks-uri': 'http://IDP.example:8080/keys' }, ['idp.example']).signingKey.type).toBe('jwks-uri');
    expect(parse({ 'jwks-uri': 'http://[::1]:8080/keys' }, ['::1']).issuer).toBe('::1');
  });

  it('Should refuse URLs with credentials or that do not parse', async () => {
    const error = await authFailure(() => parse({ 'jwks-uri': 'https://user:pw@idp.example/keys' }), 'CONJ00122E');
    expect(error.auditReason).not.toContain('pw@');
    await authFailure(() => parse({ 'jwks-uri': 'idp.example/keys' }), 'CONJ00080E');
  });

  it('Should validate token-app-property (CONJ00117E)', async () => {
    await authFailure(() => parse({ 'jwks-uri': 'https://a.example/k', 'token-app-property': 'a b' }), 'CONJ00117E');
    await authFailure(() => parse({ 'jwks-uri': 'https://a.example/k', 'token-app-property': 'a//b' }), 'CONJ00117E');
    expect(parse({ 'jwks-uri': 'https://a.example/k', 'token-app-property': 'a/b.c/d-e_f' }).tokenAppProperty).toBe(
      'a/b.c/d-e_f',
    );
  });

  it('Should parse enforced-claims and refuse reserved, malformed or repeated claims', async () => {
    const base = { 'jwks-uri': 'https://a.example/k' };
    expect(parse({ ...base, 'enforced-claims': ' ref , ns/project ' }).enforcedClaims).toEqual(['ref', 'ns/project']);
    const reserved = await authFailure(() => parse({ ...base, 'enforced-claims': 'ref,exp' }), 'CONJ00105E');
    expect(reserved.auditReason).toContain(`claim name 'exp' is in denylist '["iss", "exp", "nbf", "iat", "jti", "aud"]'`);
    await authFailure(() => parse({ ...base, 'enforced-claims': 'a$b' }), 'CONJ00104E');
    await authFailure(() => parse({ ...base, 'enforced-claims': 'a,,b' }), 'CONJ00107E');
    await authFailure(() => parse({ ...base, 'enforced-claims': 'a,a' }), 'CONJ00108E');
  });

  it('Should parse claim-aliases and apply Conjur syntax rules', async () => {
    const base = { 'jwks-uri': 'https://a.example/k' };
    const config = parse({ ...base, 'claim-aliases': 'project: ns/project_path, branch:ref' });
    expect([...config.claimAliases]).toEqual([
      ['project', 'ns/project_path'],
      ['branch', 'ref'],
    ]);
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a:b,a:c' }), 'CONJ00113E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a:b,c:b' }), 'CONJ00113E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a:b:c' }), 'CONJ00111E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a/x:b' }), 'CONJ00114E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a:b c' }), 'CONJ00104E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a:b,' }), 'CONJ00110E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'a:iss' }), 'CONJ00105E');
    await authFailure(() => parse({ ...base, 'claim-aliases': 'jti:sub' }), 'CONJ00105E');
  });

  it('Should normalise identity-path slashes', () => {
    expect(parse({ 'jwks-uri': 'https://a.example/k', 'identity-path': '/apps//ci/' }).identityPath).toBe('apps/ci');
  });

  it('Should give the same key-source fingerprint only for the same signing settings', () => {
    const a = parse({ 'jwks-uri': 'https://a.example/k', audience: 'x' });
    const b = parse({ 'jwks-uri': 'https://a.example/k', audience: 'y' });
    const c = parse({ 'jwks-uri': 'https://b.example/k' });
    expect(keySourceFingerprint(a)).toBe(keySourceFingerprint(b));
    expect(keySourceFingerprint(a)).not.toBe(keySourceFingerprint(c));
  });
});

// ---------------------------------------------------------------------------
// Attack matrix
// ---------------------------------------------------------------------------

describe('authn-jwt attack matrix: every forged or invalid token is a 401 with a CONJ code', () => {
  let config: JwtAuthenticatorConfig;
  let source: JwtKeySource;
  beforeEach(() => {
    config = jwksConfig();
    source = remoteSource(config);
  });
  const attempt = (jwt: string, overrides: Partial<AuthenticateJwtInput> = {}) =>
    authenticateJwt(authInput(jwt, config, source, overrides));

  it('Should refuse alg "none" without fetching any key', async () => {
    const header = b64url({ alg: 'none', kid: rsa.kid });
    const payload = b64url({ iss: ISSUER, exp: NOW_S + 300, host: 'myapp', project: 'proj-1' });
    const error = await authFailure(attempt(`${header}.${payload}.`), 'CONJ00035E');
    expect(error.auditReason).toContain('not allowed');
    await authFailure(attempt(`${header}.${payload}.c2ln`), 'CONJ00035E');
    expect(jwksConnections()).toBe(0);
  });

  it('Should refuse HS256 signed with the RSA public key PEM (algorithm confusion)', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const jwt = await new SignJWT({ iss: ISSUER, exp: NOW_S + 300, host: 'myapp', project: 'proj-1' })
      .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
      .sign(new TextEncoder().encode(pem));
    await authFailure(attempt(jwt), 'CONJ00035E');
    expect(jwksConnections()).toBe(0);
  });

  it('Should refuse a wrong issuer', async () => {
    const error = await authFailure(attempt(await sign(rsa, { iss: 'https://evil.example', project: 'proj-1' })), 'CONJ00035E');
    expect(error.auditReason).toContain('"iss"');
    await authFailure(attempt(await sign(rsa, { iss: undefined, project: 'proj-1' })), 'CONJ00035E');
  });

  it('Should refuse a wrong or missing audience when one is configured', async () => {
    config = jwksConfig({ audience: 'conjur' });
    source = remoteSource(config);
    await authFailure(attempt(await sign(rsa, { aud: 'someone-else', project: 'proj-1' })), 'CONJ00035E');
    await authFailure(attempt(await sign(rsa, { project: 'proj-1' })), 'CONJ00091E');
    const ok = await attempt(await sign(rsa, { aud: ['other', 'conjur'], project: 'proj-1' }));
    expect(ok.roleId).toBe('acme:host:myapp');
  });

  it('Should refuse an expired token, beyond the clock tolerance', async () => {
    const jwt = await sign(rsa, { iat: NOW_S - 600, exp: NOW_S - 20, project: 'proj-1' });
    await authFailure(attempt(jwt), 'CONJ00016E');
    expect((await attempt(jwt, { clockToleranceSec: 30 })).roleId).toBe('acme:host:myapp');
  });

  it('Should refuse a token whose nbf is in the future beyond the skew', async () => {
    const future = await sign(rsa, { nbf: NOW_S + 120, project: 'proj-1' });
    const error = await authFailure(attempt(future, { clockToleranceSec: 30 }), 'CONJ00035E');
    expect(error.auditReason).toContain('"nbf"');
    const nearFuture = await sign(rsa, { nbf: NOW_S + 10, project: 'proj-1' });
    expect((await attempt(nearFuture, { clockToleranceSec: 30 })).roleId).toBe('acme:host:myapp');
  });

  it('Should refuse a token issued in the future', async () => {
    await authFailure(attempt(await sign(rsa, { iat: NOW_S + 3600, project: 'proj-1' })), 'CONJ00035E');
  });

  it('Should refuse a token without exp (CONJ00091E)', async () => {
    const error = await authFailure(attempt(await sign(rsa, { exp: undefined, project: 'proj-1' })), 'CONJ00091E');
    expect(error.auditReason).toContain("mandatory claim 'exp' is missing");
  });

  it('Should refuse a token missing an enforced claim (CONJ00084E)', async () => {
    config = jwksConfig({ 'enforced-claims': 'project,ref' });
    source = remoteSource(config);
    const error = await authFailure(attempt(await sign(rsa, { project: 'proj-1' })), 'CONJ00084E');
    expect(error.auditReason).toContain("Claim 'ref' is missing from JWT token");
  });

  it('Should refuse a token whose claim does not match the host annotation (CONJ00049E)', async () => {
    const error = await authFailure(attempt(await sign(rsa, { project: 'proj-2' })), 'CONJ00049E');
    expect(error.auditReason).toBe(
      "CONJ00049E Resource restriction 'project' does not match with the corresponding value in the request",
    );
  });

  it('Should ignore jku and x5u headers: zero connections to the URL they name', async () => {
    const jwt = await sign(attacker, { project: 'proj-1' }, {
      jku: `${attackerServer.url}/jwks`,
      x5u: `${attackerServer.url}/cert.pem`,
    });
    await authFailure(attempt(jwt), 'CONJ00035E');
    const withTrustedKid = await sign({ ...attacker, kid: rsa.kid }, { project: 'proj-1' }, {
      jku: `${attackerServer.url}/jwks`,
    });
    await authFailure(attempt(withTrustedKid), 'CONJ00035E');
    expect(attackerServer.connections).toBe(0);
    expect(attackerServer.requests).toEqual([]);
  });

  it('Should ignore an embedded jwk header (CVE-2018-0114)', async () => {
    const jwt = await sign({ ...attacker, kid: rsa.kid }, { project: 'proj-1' }, { jwk: attacker.jwk });
    await authFailure(attempt(jwt), 'CONJ00035E');
    expect(attackerServer.connections).toBe(0);
  });

  it('Should refuse a kid with path characters before any fetch', async () => {
    for (const kid of ['../../etc/passwd', 'a/../b', './x', 'a/./b', '%2e%2e%2fkeys', 'key id', 'k\\x']) {
      await authFailure(attempt(await sign({ ...rsa, kid }, { project: 'proj-1' })), 'CONJ00035E');
    }
    expect(jwksConnections()).toBe(0);
  });

  it('Should refuse a replayed jti', async () => {
    const jtiStore = new InMemoryJtiStore({ now: fixedNow });
    const jwt = await sign(rsa, { jti: 'job-42', project: 'proj-1' });
    expect((await attempt(jwt, { jtiStore })).roleId).toBe('acme:host:myapp');
    const error = await authFailure(attempt(jwt, { jtiStore }), 'CONJ00035E');
    expect(error.auditReason).toContain('replay');
    const other = await sign(rsa, { jti: 'job-43', project: 'proj-1' });
    expect((await attempt(other, { jtiStore })).roleId).toBe('acme:host:myapp');
  });

  it('Should not use up a jti when the token is refused for another reason', async () => {
    const jtiStore = new InMemoryJtiStore({ now: fixedNow });
    await authFailure(attempt(await sign(rsa, { jti: 'j1', project: 'wrong' }), { jtiStore }), 'CONJ00049E');
    expect(jtiStore.size).toBe(0);
  });

  it('Should refuse a token without jti when jti is required', async () => {
    const jtiStore = new InMemoryJtiStore({ now: fixedNow });
    await authFailure(attempt(await sign(rsa, { project: 'proj-1' }), { jtiStore, requireJti: true }), 'CONJ00091E');
    await authFailure(attempt(await sign(rsa, { jti: 7, project: 'proj-1' }), { jtiStore }), 'CONJ00035E');
  });

  it('Should refuse an identity outside identity-path or an unknown host (CONJ00007E)', async () => {
    config = jwksConfig({ 'identity-path': 'other' });
    source = remoteSource(config);
    const error = await authFailure(attempt(await sign(rsa, { project: 'proj-1' })), 'CONJ00007E');
    expect(error.auditReason).toBe("CONJ00007E 'host/other/myapp' not found");
    config = jwksConfig();
    source = remoteSource(config);
    await authFailure(attempt(await sign(rsa, { host: 'ghost', project: 'proj-1' })), 'CONJ00007E');
  });

  it('Should refuse an identity claim that escapes identity-path with dot segments', async () => {
    config = jwksConfig({ 'identity-path': 'apps' });
    source = remoteSource(config);
    await authFailure(attempt(await sign(rsa, { host: '../myapp', project: 'proj-1' })), 'CONJ00101E');
  });

  it('Should refuse input that is not a compact JWS (CONJ00077E)', async () => {
    for (const jwt of ['', 'abc', 'a.b', 'a.b.c.d.e', 'a.b!.c', `${'a'.repeat(40_000)}.b.c`]) {
      await authFailure(attempt(jwt), 'CONJ00077E');
    }
    expect(jwksConnections()).toBe(0);
  });

  it('Should refuse a tampered payload', async () => {
    const [h, , s] = (await sign(rsa, { project: 'proj-1' })).split('.');
    const forged = b64url({ iss: ISSUER, iat: NOW_S, exp: NOW_S + 300, host: 'myapp', project: 'proj-1', admin: true });
    const error = await authFailure(attempt(`${h}.${forged}.${s}`), 'CONJ00035E');
    expect(error.auditReason).toContain('signature verification failed');
  });

  it('Should never put the token in the audit reason', async () => {
    const jwt = await sign(rsa, { project: 'proj-2' });
    const error = await authFailure(attempt(jwt), 'CONJ00049E');
    for (const part of jwt.split('.')) expect(error.auditReason).not.toContain(part);
  });

  it('Should refuse both a URL id and token-app-property, or neither (CONJ00098E)', async () => {
    const jwt = await sign(rsa, { project: 'proj-1' });
    await authFailure(attempt(jwt, { urlHostId: 'host/myapp' }), 'CONJ00098E');
    const urlConfig = jwksConfig({ 'token-app-property': undefined });
    await authFailure(authenticateJwt(authInput(jwt, urlConfig, source)), 'CONJ00098E');
    expect(jwksConnections()).toBe(0);
  });
});

// ---------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------

describe('authn-jwt happy paths', () => {
  it.each([
    ['RS256', () => rsa],
    ['ES256', () => ec],
    ['EdDSA', () => ed],
  ])('Should authenticate a %s token signed by a key from the JWKS URL', async (_alg, key) => {
    const config = jwksConfig();
    const result = await authenticateJwt(authInput(await sign(key(), { project: 'proj-1' }), config, remoteSource(config)));
    expect(result.roleId).toBe('acme:host:myapp');
    expect(result.claims).toMatchObject({ project: 'proj-1' });
    expect(jwksRequests()).toBe(1);
  });

  it('Should verify with static public-keys and no network', async () => {
    const config = parseJwtAuthenticatorConfig(
      {
        'public-keys': JSON.stringify({ type: 'jwks', value: { keys: [rsa.jwk, ed.jwk] } }),
        issuer: ISSUER,
        'token-app-property': 'host',
      },
      { account: 'acme', serviceId: 'ci' },
    );
    const source = createJwtKeySource(config);
    expect(source).toBeInstanceOf(StaticJwksKeySource);
    for (const key of [rsa, ed]) {
      const result = await authenticateJwt(authInput(await sign(key, { project: 'proj-1' }), config, source));
      expect(result.roleId).toBe('acme:host:myapp');
    }
    await authFailure(authenticateJwt(authInput(await sign(ec, { project: 'proj-1' }), config, source)), 'CONJ00035E');
    expect(jwksConnections()).toBe(0);
  });

  it('Should map annotations through claim-aliases, including nested claims', async () => {
    const config = jwksConfig({ 'claim-aliases': 'proj:ns/project_id', 'enforced-claims': 'ns/project_id' });
    const jwt = await sign(rsa, {
      host: 'nested-app',
      ns: { project_id: 'proj-1' },
      additional_data: { group_name: 'grp', team: 'x' },
    });
    expect((await authenticateJwt(authInput(jwt, config, remoteSource(config)))).roleId).toBe('acme:host:nested-app');
  });

  it('Should read the identity from a nested token-app-property and prefix identity-path', async () => {
    const config = jwksConfig({ 'token-app-property': 'account/project/id', 'identity-path': '/apps/' });
    const jwt = await sign(rsa, { host: undefined, account: { project: { id: 'myapp' } }, project: 'proj-1' });
    expect((await authenticateJwt(authInput(jwt, config, remoteSource(config)))).roleId).toBe('acme:host:apps/myapp');
  });

  it('Should take the host or user id from the URL when token-app-property is unset', async () => {
    const config = jwksConfig({ 'token-app-property': undefined });
    const source = remoteSource(config);
    const jwt = await sign(rsa, { host: undefined, project: 'proj-1' });
    expect((await authenticateJwt(authInput(jwt, config, source, { urlHostId: 'host/myapp' }))).roleId).toBe(
      'acme:host:myapp',
    );
    expect((await authenticateJwt(authInput(jwt, config, source, { urlHostId: 'alice' }))).roleId).toBe('acme:user:alice');
  });

  it('Should discover the JWKS through provider-uri and use it as the issuer', async () => {
    const config = parseJwtAuthenticatorConfig(
      { 'provider-uri': jwksServer.url, 'token-app-property': 'host' },
      { allowHttpHosts: LOOPBACK },
    );
    expect(config.issuer).toBe(jwksServer.url);
    const jwt = await sign(ec, { iss: jwksServer.url, project: 'proj-1' });
    expect((await authenticateJwt(authInput(jwt, config, remoteSource(config)))).roleId).toBe('acme:host:myapp');
    expect(jwksServer.requests.slice(-2)).toEqual(['/.well-known/openid-configuration', '/jwks']);
  });

  it('Should try each candidate key when the token has no kid', async () => {
    jwksDoc = { keys: [rsa2.jwk, rsa.jwk].map(({ kid: _kid, ...jwk }) => jwk) };
    const config = jwksConfig();
    const jwt = await new SignJWT({ iss: ISSUER, exp: NOW_S + 60, host: 'myapp', project: 'proj-1' })
      .setProtectedHeader({ alg: 'RS256' })
      .sign(rsa.privateKey);
    expect((await authenticateJwt(authInput(jwt, config, remoteSource(config)))).roleId).toBe('acme:host:myapp');
  });

  it('Should return the verified claims from verifyJwt', async () => {
    const config = jwksConfig();
    const claims = await verifyJwt(await sign(rsa, { project: 'proj-1' }), config, remoteSource(config), {
      now: fixedNow,
    });
    expect(claims).toMatchObject({ iss: ISSUER, host: 'myapp', project: 'proj-1' });
  });

  it('Should refuse a clock tolerance above 60 seconds', async () => {
    const config = jwksConfig();
    await expect(
      verifyJwt(await sign(rsa), config, remoteSource(config), { clockToleranceSec: 61 }),
    ).rejects.toBeInstanceOf(RangeError);
  });
});

// ---------------------------------------------------------------------------
// Identity and host restrictions (Conjur v2 ResolveIdentity rules)
// ---------------------------------------------------------------------------

describe('resolveHostIdentity', () => {
  const config = (extra: Record<string, string | undefined> = {}) =>
    parseJwtAuthenticatorConfig({ 'jwks-uri': 'https://idp.example/keys', 'token-app-property': 'sub', ...extra });

  it('Should refuse a missing or blank identity claim (CONJ00081E)', async () => {
    await authFailure(() => resolveHostIdentity({}, config()), 'CONJ00081E');
    await authFailure(() => resolveHostIdentity({ sub: '  ' }, config()), 'CONJ00081E');
  });

  it('Should refuse a non-string identity claim (CONJ00118E)', async () => {
    const error = await authFailure(() => resolveHostIdentity({ sub: ['a'] } as never, config()), 'CONJ00118E');
    expect(error.auditReason).toContain("has type 'Array'");
  });

  it('Should not resolve inherited properties such as constructor', async () => {
    await authFailure(() => resolveHostIdentity({}, config({ 'token-app-property': 'constructor' })), 'CONJ00081E');
  });

  it('Should build host ids with identity-path', () => {
    expect(resolveHostIdentity({ sub: 'app' }, config({ 'identity-path': 'ci/prod' }))).toEqual({
      kind: 'host',
      id: 'ci/prod/app',
      login: 'host/ci/prod/app',
    });
  });
});

describe('checkHostRestrictions', () => {
  const config = (extra: Record<string, string | undefined> = {}) =>
    parseJwtAuthenticatorConfig({ 'jwks-uri': 'https://idp.example/keys', 'token-app-property': 'sub', ...extra });
  const claims: JWTPayload = {
    sub: 'app',
    ref: 'main',
    project_id: '42',
    groups: ['a', 'b'],
    run: 7,
    nested: { team: 'blue' },
    empty: '',
  };
  const check = (annotations: Record<string, string>, extra: Record<string, string | undefined> = {}) =>
    () => checkHostRestrictions(claims, config(extra), 'ci', annotations);

  it('Should pass when every service annotation matches', () => {
    expect(check({ 'authn-jwt/ci/ref': 'main', 'authn-jwt/ci/nested/team': 'blue', 'authn-jwt/gh/ref': 'x' })).not.toThrow();
  });

  it('Should require at least one service-specific annotation (CONJ00099E)', async () => {
    await authFailure(check({}), 'CONJ00099E');
    await authFailure(check({ 'authn-jwt/ref': 'main' }), 'CONJ00099E');
    await authFailure(check({ 'authn-jwt/other/ref': 'main', 'authn-jwt/ci': 'x' }), 'CONJ00099E');
  });

  it('Should refuse an empty annotation value (CONJ00100E)', async () => {
    const error = await authFailure(check({ 'authn-jwt/ci/ref': '' }), 'CONJ00100E');
    expect(error.auditReason).toBe("CONJ00100E Annotation, 'ref', is empty");
  });

  it('Should refuse a mismatch, including array and number claims (CONJ00049E)', async () => {
    await authFailure(check({ 'authn-jwt/ci/ref': 'dev' }), 'CONJ00049E');
    await authFailure(check({ 'authn-jwt/ci/groups': 'a' }), 'CONJ00049E');
    await authFailure(check({ 'authn-jwt/ci/groups': 'a,b' }), 'CONJ00049E');
    await authFailure(check({ 'authn-jwt/ci/run': '7' }), 'CONJ00049E');
  });

  it('Should refuse a restriction on a claim the token lacks (CONJ00084E)', async () => {
    const error = await authFailure(check({ 'authn-jwt/ci/missing': 'x' }), 'CONJ00084E');
    expect(error.auditReason).toContain("Claim 'missing' is missing from JWT token");
    await authFailure(check({ 'authn-jwt/ci/empty': 'x' }), 'CONJ00084E');
    await authFailure(check({ 'authn-jwt/ci/constructor': 'x' }), 'CONJ00084E');
    await authFailure(check({ 'authn-jwt/ci/groups/0': 'a' }), 'CONJ00084E');
    const aliased = await authFailure(check({ 'authn-jwt/ci/team': 'x' }, { 'claim-aliases': 'team:squad/name' }), 'CONJ00084E');
    expect(aliased.auditReason).toContain("Claim 'squad/name (annotation: team)'");
  });

  it('Should refuse reserved claims and claims that are alias targets (CONJ00069E)', async () => {
    await authFailure(check({ 'authn-jwt/ci/ref': 'main', 'authn-jwt/ci/iss': 'x' }), 'CONJ00069E');
    const error = await authFailure(
      check({ 'authn-jwt/ci/project_id': '42' }, { 'claim-aliases': 'project:project_id' }),
      'CONJ00069E',
    );
    expect(error.auditReason).toContain('cannot also be aliased');
  });

  it('Should refuse a restriction name that is not a claim path (CONJ00119E)', async () => {
    await authFailure(check({ 'authn-jwt/ci/ref': 'main', 'authn-jwt/ci/actions[0]': 'GET' }), 'CONJ00119E');
  });

  it('Should require every enforced claim among the annotations, after aliasing (CONJ00057E)', async () => {
    const error = await authFailure(
      check({ 'authn-jwt/ci/ref': 'main' }, { 'enforced-claims': 'ref,project_id' }),
      'CONJ00057E',
    );
    expect(error.auditReason).toBe(`CONJ00057E Role does not have the required constraints: '["project_id"]'`);
    expect(
      check({ 'authn-jwt/ci/ref': 'main', 'authn-jwt/ci/project': '42' }, {
        'enforced-claims': 'ref,project_id',
        'claim-aliases': 'project:project_id',
      }),
    ).not.toThrow();
  });

  it('Should also check generic authn-jwt/<claim> annotations once a service one exists', async () => {
    await authFailure(check({ 'authn-jwt/ci/ref': 'main', 'authn-jwt/project_id': '43' }), 'CONJ00049E');
    expect(check({ 'authn-jwt/ci/ref': 'main', 'authn-jwt/project_id': '42', 'authn-jwt/ci': 'x' })).not.toThrow();
  });
});

// ---------------------------------------------------------------------------
// JWKS fetching, caching and limits
// ---------------------------------------------------------------------------

describe('RemoteJwksKeySource', () => {
  const jwksUri = () => `${jwksServer.url}/jwks`;
  const remote = (opts: RemoteJwksOptions = {}, uri = jwksUri()) =>
    new RemoteJwksKeySource({ jwksUri: uri }, { now: fixedNow, allowHttpHosts: LOOPBACK, ...opts });

  it('Should refresh at most once per verification for an unknown kid', async () => {
    const config = jwksConfig();
    const source = remoteSource(config);
    const verify = async (key: TestKey) => verifyJwt(await sign(key), config, source, { now: fixedNow });

    await authFailure(verify(rsa2), 'CONJ00035E');
    expect(jwksRequests()).toBe(1); // cold cache: the first fetch is this verification's only one
    await authFailure(verify(rsa2), 'CONJ00035E');
    expect(jwksRequests()).toBe(2); // warm cache: one refresh for the unknown kid
    jwksDoc = { keys: [rsa.jwk, rsa2.jwk] };
    await verify(rsa2);
    expect(jwksRequests()).toBe(3);
    await verify(rsa2);
    await verify(rsa);
    expect(jwksRequests()).toBe(3); // cached
  });

  it('Should rate-limit refreshes to 10 per 300 s (sliding window)', async () => {
    let nowMs = fixedNow();
    const source = remote({ now: () => nowMs });
    for (let i = 0; i < 12; i += 1) {
      await authFailure(source.getKeys({ alg: 'RS256', kid: `unknown-${i}` }), 'CONJ00035E');
      nowMs += 1000;
    }
    expect(jwksRequests()).toBe(10);
    const limited = await authFailure(source.getKeys({ alg: 'RS256', kid: 'unknown-x' }), 'CONJ00035E');
    expect(limited.auditReason).toContain('rate limit');
    expect((await source.getKeys({ alg: 'RS256', kid: rsa.kid })).length).toBe(1); // cached keys still work
    nowMs = fixedNow() + 300_000; // the first refresh leaves the window
    await authFailure(source.getKeys({ alg: 'RS256', kid: 'unknown-y' }), 'CONJ00035E');
    expect(jwksRequests()).toBe(11);
    await authFailure(source.getKeys({ alg: 'RS256', kid: 'unknown-z' }), 'CONJ00035E');
    expect(jwksRequests()).toBe(11);
  });

  it('Should share one in-flight fetch between concurrent verifications', async () => {
    const source = remote();
    const results = await Promise.all(
      Array.from({ length: 5 }, () => source.getKeys({ alg: 'ES256', kid: ec.kid })),
    );
    expect(results.every((keys) => keys.length === 1)).toBe(true);
    expect(jwksRequests()).toBe(1);
  });

  it('Should refuse a response over 64 KiB, with or without content-length', async () => {
    const big = JSON.stringify({ keys: [rsa.jwk], pad: 'x'.repeat(70 * 1024) });
    jwksServer.handler = (req, res) => {
      if (req.url === '/jwks') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) });
        return res.end(big);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let i = 0; i < big.length; i += 8192) res.write(big.slice(i, i + 8192));
      res.end();
    };
    for (const path of ['/jwks', '/chunked']) {
      const source = remote({}, `${jwksServer.url}${path}`);
      const error = await authFailure(source.getKeys({ alg: 'RS256', kid: rsa.kid }), 'CONJ00087E');
      expect(error.auditReason).toContain('larger than 65536 bytes');
    }
  });

  it('Should accept a document just under the cap', async () => {
    const padded = { keys: [rsa.jwk], pad: 'x'.repeat(60 * 1024) };
    jwksServer.handler = (_req, res) => sendJson(res, padded);
    const source = remote();
    expect(await source.getKeys({ alg: 'RS256', kid: rsa.kid })).toHaveLength(1);
  });

  it('Should give up after the fetch timeout', async () => {
    jwksServer.handler = (_req, res) => {
      setTimeout(() => sendJson(res, jwksDoc), 1500).unref();
    };
    const source = remote({ timeoutMs: 150 });
    const started = Date.now();
    const error = await authFailure(source.getKeys({ alg: 'RS256', kid: rsa.kid }), 'CONJ00087E');
    expect(error.auditReason).toContain('timed out after 150 ms');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('Should cap the timeout at 5 s and the size at 64 KiB whatever the options say', async () => {
    const seen: FetchLimits[] = [];
    const source = new RemoteJwksKeySource(
      { jwksUri: 'https://idp.example/jwks', caCert: 'PEM' },
      {
        now: fixedNow,
        timeoutMs: 60_000,
        maxBytes: 10_000_000,
        fetchText: async (_url, limits) => {
          seen.push(limits);
          return JSON.stringify({ keys: [rsa.jwk] });
        },
      },
    );
    await source.getKeys({ alg: 'RS256', kid: rsa.kid });
    expect(seen).toEqual([{ timeoutMs: 5000, maxBytes: 65536, caCert: 'PEM', denyPrivateAddresses: false }]);
  });

  it('Should report HTTP errors, invalid JSON and missing keys', async () => {
    const cases: Array<[http.RequestListener, string]> = [
      [(_req, res) => sendJson(res, { error: 'x' }, 500), 'CONJ00087E'],
      [(_req, res) => res.writeHead(302, { location: `${attackerServer.url}/jwks` }).end(), 'CONJ00087E'],
      [(_req, res) => res.end('<html>'), 'CONJ00093E'],
      [(_req, res) => sendJson(res, { not_keys: [] }), 'CONJ00088E'],
    ];
    for (const [handler, code] of cases) {
      jwksServer.handler = handler;
      const source = remote();
      const error = await authFailure(source.getKeys({ alg: 'RS256', kid: rsa.kid }), code);
      expect(error.auditReason).not.toContain('<html>');
    }
    expect(attackerServer.connections).toBe(0); // redirects are not followed
  });

  it('Should refresh a stale set, and keep it when the refresh fails', async () => {
    let nowMs = fixedNow();
    const source = remote({ now: () => nowMs, maxAgeMs: 60_000 });
    await source.getKeys({ alg: 'RS256', kid: rsa.kid });
    nowMs += 61_000;
    jwksServer.handler = (_req, res) => sendJson(res, {}, 503);
    expect(await source.getKeys({ alg: 'RS256', kid: rsa.kid })).toHaveLength(1);
    expect(jwksRequests()).toBe(2);
  });

  it('Should refuse a discovery document for another issuer or with a plain-http jwks_uri', async () => {
    for (const document of [
      { issuer: 'https://evil.example', jwks_uri: `${jwksServer.url}/jwks` },
      { issuer: jwksServer.url, jwks_uri: 'http://idp.example/jwks' },
      { issuer: jwksServer.url },
    ]) {
      jwksServer.handler = (_req, res) => sendJson(res, document);
      const source = new RemoteJwksKeySource(
        { providerUri: jwksServer.url },
        { now: fixedNow, allowHttpHosts: LOOPBACK },
      );
      await authFailure(source.getKeys({ alg: 'RS256', kid: rsa.kid }), 'CONJ00011E');
    }
  });

  it('Should keep the https rule when built directly, without a parsed config', async () => {
    await authFailure(() => new RemoteJwksKeySource({ jwksUri: jwksUri() }), 'CONJ00122E');
    await authFailure(() => new RemoteJwksKeySource({ providerUri: 'http://idp.example' }), 'CONJ00122E');
    expect(jwksConnections()).toBe(0);
  });

  it('Should refuse loopback and private targets when denyPrivateAddresses is set, without connecting', async () => {
    const source = remote({ denyPrivateAddresses: true });
    await authFailure(source.getKeys({ alg: 'RS256', kid: rsa.kid }), 'CONJ00087E');
    await expect(
      httpGetText(new URL('http://localhost:9/jwks'), { timeoutMs: 1000, maxBytes: 1024, denyPrivateAddresses: true }),
    ).rejects.toThrow(/non-public/);
    expect(jwksConnections()).toBe(0);
    const nonPublic = ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fd00::1'];
    // Text that is no address is never public, whatever it looks like.
    for (const address of [...nonPublic, '::ffff:10.0.0.1', '::ffff:7f00:1', '::ffff:999.0.0.1', '::ffff:300.1.1.1', 'not-an-address', '']) {
      expect(isNonPublicAddress(address), address).toBe(true);
    }
    for (const address of ['8.8.8.8', '2606:4700:4700::1111', '::ffff:1.1.1.1', '::ffff:808:808']) {
      expect(isNonPublicAddress(address), address).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------
// ca-cert as the only trust root (needs the openssl CLI)
// ---------------------------------------------------------------------------

function haveOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!haveOpenssl())('ca-cert over https', () => {
  let dir: string;
  let tlsServer: TestServer;
  let caPem: string;
  let otherCaPem: string;

  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-jwt-tls-'));
    openssl('req', '-x509', ...ecKey, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=Test CA');
    openssl('req', '-x509', ...ecKey, '-keyout', 'other.key', '-out', 'other.crt', '-days', '1', '-subj', '/CN=Other CA');
    openssl('req', ...ecKey, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    const signArgs = ['-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf'];
    openssl('x509', '-req', '-in', 'srv.csr', '-out', 'srv.crt', ...signArgs);
    caPem = readFileSync(join(dir, 'ca.crt'), 'utf8');
    otherCaPem = readFileSync(join(dir, 'other.crt'), 'utf8');
    tlsServer = await startServer((_req, res) => sendJson(res, { keys: [rsa.jwk] }), {
      key: readFileSync(join(dir, 'srv.key'), 'utf8'),
      cert: readFileSync(join(dir, 'srv.crt'), 'utf8'),
    });
  });

  afterAll(async () => {
    await tlsServer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('Should fetch over https when the server chains to ca-cert', async () => {
    const config = parseJwtAuthenticatorConfig({
      'jwks-uri': `${tlsServer.url}/jwks`,
      'ca-cert': caPem,
      issuer: ISSUER,
      'token-app-property': 'host',
    });
    const claims = await verifyJwt(await sign(rsa), config, createJwtKeySource(config, { now: fixedNow }), {
      now: fixedNow,
    });
    expect(claims.host).toBe('myapp');
  });

  it('Should refuse the server when ca-cert names another CA, and without ca-cert', async () => {
    for (const values of [{ 'ca-cert': otherCaPem }, {}]) {
      const config = parseJwtAuthenticatorConfig({ 'jwks-uri': `${tlsServer.url}/jwks`, issuer: ISSUER, ...values });
      const source = createJwtKeySource(config, { now: fixedNow });
      await authFailure(source.getKeys({ alg: 'RS256', kid: rsa.kid }), 'CONJ00087E');
    }
  });
});

// ---------------------------------------------------------------------------
// Replay store
// ---------------------------------------------------------------------------

describe('InMemoryJtiStore', () => {
  it('Should accept a jti once per service until it expires', () => {
    let nowMs = 1_000_000;
    const store = new InMemoryJtiStore({ now: () => nowMs, sweepThreshold: 2 });
    expect(store.markUsed('acme:ci', 'a', 1_100)).toBe(true);
    expect(store.markUsed('acme:ci', 'a', 1_100)).toBe(false);
    expect(store.markUsed('acme:other', 'a', 1_100)).toBe(true);
    nowMs = 1_200_000;
    expect(store.markUsed('acme:ci', 'a', 1_300)).toBe(true);
    expect(store.size).toBeLessThanOrEqual(2);
  });
});
