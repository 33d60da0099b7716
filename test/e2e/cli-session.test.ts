/** The client session (src/cli/client/session.ts) against a real server: credential sources, renewal, revocation. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openSession, httpError } from '../../src/cli/client/session.js';
import { CliError } from '../../src/cli/io.js';

let srv: TestServer;
let home: string;
const warnings: string[] = [];
const warn = (l: string) => void warnings.push(l);

beforeAll(async () => {
  srv = await startTestServer();
  home = mkdtempSync(join(tmpdir(), 'coffer-home-'));
});
afterAll(async () => {
  await srv.close();
  rmSync(home, { recursive: true, force: true });
});

function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { HOME: home, CONJUR_APPLIANCE_URL: `${srv.url}/`, CONJUR_ACCOUNT: srv.account, ...extra };
}

async function failure(p: Promise<unknown>): Promise<CliError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CliError) return err;
    throw err;
  }
  throw new Error('expected a CliError');
}

describe('openSession', () => {
  it('authenticates lazily with an API key from the environment, strips the trailing slash, and revokes its token on close', async () => {
    const s = await openSession(baseEnv({ CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey }), { warn });
    expect(s.config.applianceUrl).toBe(srv.url);
    expect(s.config.login).toBe('admin');
    const who = await s.request('GET', '/whoami');
    expect(who.status).toBe(200);
    expect(JSON.parse(who.body.toString())).toMatchObject({ username: 'admin', account: srv.account });
    const header = await s.authorization();
    expect(header).toMatch(/^Token token="[A-Za-z0-9+/=]+"$/);
    await s.close();
    // The token obtained by the session is dead now.
    const after = await fetch(`${srv.url}/whoami`, { headers: { Authorization: header } });
    expect(after.status).toBe(401);
  });

  it('close() during authentication waits for the token and revokes it too', async () => {
    const s = await openSession(baseEnv({ CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey }), { warn });
    const obtaining = s.authorization();
    await s.close();
    const header = await obtaining;
    const after = await fetch(`${srv.url}/whoami`, { headers: { Authorization: header } });
    expect(after.status).toBe(401);
  });

  it('uses a ready token from CONJUR_AUTHN_TOKEN (JSON or base64) and never revokes it', async () => {
    const r = await fetch(`${srv.url}/authn/${srv.account}/admin/authenticate`, { method: 'POST', body: srv.adminKey });
    const tokenJson = await r.text();
    for (const value of [tokenJson, Buffer.from(tokenJson).toString('base64')]) {
      const s = await openSession(baseEnv({ CONJUR_AUTHN_TOKEN: value }), { warn });
      expect((await s.request('GET', '/whoami')).status).toBe(200);
      await s.close();
    }
    const still = await fetch(`${srv.url}/whoami`, { headers: { Authorization: `Token token="${Buffer.from(tokenJson).toString('base64')}"` } });
    expect(still.status).toBe(200);
  });

  it('reads CONJUR_AUTHN_TOKEN_FILE and refuses garbage in it', async () => {
    const r = await fetch(`${srv.url}/authn/${srv.account}/admin/authenticate`, { method: 'POST', body: srv.adminKey });
    const file = join(home, 'token.json');
    writeFileSync(file, await r.text());
    const s = await openSession(baseEnv({ CONJUR_AUTHN_TOKEN_FILE: file }), { warn });
    expect((await s.request('GET', '/whoami')).status).toBe(200);
    writeFileSync(file, 'not a token');
    const bad = await openSession(baseEnv({ CONJUR_AUTHN_TOKEN_FILE: file }), { warn });
    const err = await failure(bad.request('GET', '/whoami'));
    expect(err.exitCode).toBe(6);
    expect(err.message).toContain('does not hold a Conjur access token');
  });

  it('reads ~/.conjurrc and ~/.netrc as the Conjur CLI writes them, and repairs a world-readable netrc', async () => {
    writeFileSync(join(home, '.conjurrc'), `---\naccount: ${srv.account}\nappliance_url: ${srv.url}\ncert_file: \nplugins: []\n`);
    writeFileSync(join(home, '.netrc'), `machine https://other.example/authn\n  login bob\n  password xyz\nmachine ${srv.url}/authn\n  login admin\n  password ${srv.adminKey}\n`, { mode: 0o644 });
    chmodSync(join(home, '.netrc'), 0o644);
    warnings.length = 0;
    const s = await openSession({ HOME: home }, { warn });
    expect(s.config).toMatchObject({ applianceUrl: srv.url, account: srv.account, login: 'admin' });
    expect((await s.request('GET', '/whoami')).status).toBe(200);
    await s.close();
    expect(statSync(join(home, '.netrc')).mode & 0o777).toBe(0o600);
    expect(warnings.join('\n')).toContain('was readable by other users');
    expect(warnings.join('\n')).not.toContain(srv.adminKey);
    rmSync(join(home, '.conjurrc'));
    rmSync(join(home, '.netrc'));
  });

  it('fails clearly: no server, no account, no credentials, wrong key, unreachable server', async () => {
    let err = await failure(openSession({ HOME: home }, { warn }));
    expect([err.exitCode, err.message]).toEqual([2, expect.stringContaining('no server configured')]);
    err = await failure(openSession({ HOME: home, CONJUR_APPLIANCE_URL: srv.url }, { warn }));
    expect([err.exitCode, err.message]).toEqual([2, expect.stringContaining('no account configured')]);
    err = await failure(openSession(baseEnv(), { warn }));
    expect([err.exitCode, err.message]).toEqual([6, expect.stringContaining('not logged in')]);
    err = await failure(openSession(baseEnv({ CONJUR_APPLIANCE_URL: 'ftp://x' }), { warn }));
    expect(err.exitCode).toBe(2);
    const wrong = await openSession(baseEnv({ CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: 'wrong-key-123' }), { warn });
    err = await failure(wrong.authorization());
    expect(err.exitCode).toBe(6);
    expect(err.message).toContain("authentication as 'admin' failed");
    expect(err.message).not.toContain('wrong-key-123');
    const dead = await openSession(baseEnv({ CONJUR_APPLIANCE_URL: 'http://127.0.0.1:1', CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: 'k' }), { warn });
    err = await failure(dead.request('GET', '/whoami'));
    expect([err.exitCode, err.message]).toEqual([5, expect.stringContaining('connection refused')]);
  });

  it('httpError carries the server message and the documented exit code', async () => {
    const s = await openSession(baseEnv({ CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: srv.adminKey }), { warn });
    const res = await s.request('GET', `/secrets/${srv.account}/variable/nope`);
    const err = httpError(res, 'fetching nope');
    expect(err.exitCode).toBe(4);
    expect(err.message).toBe(`fetching nope: CONJ00076E Variable ${srv.account}:variable:nope is empty or not found.`);
    await s.close();
  });
});

describe('authn-jwt credentials (CONJUR_AUTHN_JWT_SERVICE_ID + JWT_TOKEN_PATH, or ~/.conjurrc authn_type: jwt)', () => {
  let jwtSrv: TestServer;
  let key: import('jose').CryptoKey;
  let jwtHome: string;
  const ISSUER = 'https://ci.example';

  beforeAll(async () => {
    const { exportJWK, generateKeyPair } = await import('jose');
    const pair = await generateKeyPair('ES256', { extractable: true });
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
    jwtSrv = await startTestServer({ flags: { authenticators: 'authn,authn-jwt/ci' } });
    jwtHome = mkdtempSync(join(tmpdir(), 'coffer-jwt-home-'));
    const s = await openSession({ HOME: jwtHome, CONJUR_APPLIANCE_URL: jwtSrv.url, CONJUR_ACCOUNT: jwtSrv.account, CONJUR_AUTHN_LOGIN: 'admin', CONJUR_AUTHN_API_KEY: jwtSrv.adminKey }, { warn });
    const policy = `
- !policy
  id: conjur/authn-jwt/ci
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
  id: ci/runner
  annotations:
    authn-jwt/ci/repository: acme/app
- !grant
  role: !group conjur/authn-jwt/ci/apps
  member: !host ci/runner
`;
    expect((await s.request('POST', `/policies/${jwtSrv.account}/policy/root`, { body: policy })).status).toBe(201);
    for (const [id, value] of [['public-keys', JSON.stringify({ type: 'jwks', value: { keys: [jwk] } })], ['issuer', ISSUER]]) {
      expect((await s.request('POST', `/secrets/${jwtSrv.account}/variable/${encodeURIComponent(`conjur/authn-jwt/ci/${id}`)}`, { body: value })).status).toBe(201);
    }
    await s.close();
  });
  afterAll(async () => {
    await jwtSrv.close();
    rmSync(jwtHome, { recursive: true, force: true });
  });

  async function jwtFile(name: string, claims: Record<string, unknown> = {}): Promise<string> {
    const { SignJWT } = await import('jose');
    const now = Math.floor(jwtSrv.clock.nowMs() / 1000);
    const jwt = await new SignJWT({ iss: ISSUER, repository: 'acme/app', iat: now, exp: now + 120, ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key);
    const path = join(jwtHome, name);
    writeFileSync(path, `${jwt}\n`);
    return path;
  }

  it('authenticates with the job JWT from the environment and revokes the token on close', async () => {
    const env = {
      HOME: jwtHome,
      CONJUR_APPLIANCE_URL: jwtSrv.url,
      CONJUR_ACCOUNT: jwtSrv.account,
      CONJUR_AUTHN_JWT_SERVICE_ID: 'ci',
      JWT_TOKEN_PATH: await jwtFile('job.jwt'),
      CONJUR_AUTHN_JWT_HOST_ID: 'host/ci/runner',
    };
    const s = await openSession(env, { warn });
    expect(s.config.login).toBe('host/ci/runner');
    const who = await s.request('GET', '/whoami');
    expect(JSON.parse(who.body.toString()).username).toBe('host/ci/runner');
    const header = await s.authorization();
    await s.close();
    expect((await fetch(`${jwtSrv.url}/whoami`, { headers: { Authorization: header } })).status).toBe(401);
  });

  it('reads the JWT settings the Go CLI writes to ~/.conjurrc', async () => {
    writeFileSync(
      join(jwtHome, '.conjurrc'),
      `account: ${jwtSrv.account}\nappliance_url: ${jwtSrv.url}\nauthn_type: jwt\nservice_id: ci\njwt_file: ${await jwtFile('rc.jwt')}\njwt_host_id: host/ci/runner\n`,
    );
    const s = await openSession({ HOME: jwtHome }, { warn });
    expect((await s.request('GET', '/whoami')).status).toBe(200);
    await s.close();
    rmSync(join(jwtHome, '.conjurrc'));
  });

  it('a JWT the server refuses, or a missing JWT file, is exit 6 and names neither the token nor its claims', async () => {
    const base = { HOME: jwtHome, CONJUR_APPLIANCE_URL: jwtSrv.url, CONJUR_ACCOUNT: jwtSrv.account, CONJUR_AUTHN_JWT_SERVICE_ID: 'ci', CONJUR_AUTHN_JWT_HOST_ID: 'host/ci/runner' };
    const wrong = await jwtFile('wrong.jwt', { repository: 'evil/app' });
    const s = await openSession({ ...base, JWT_TOKEN_PATH: wrong }, { warn });
    const err = await failure(s.request('GET', '/whoami'));
    expect(err.exitCode).toBe(6);
    expect(err.message).toBe(`JWT authentication with authn-jwt/ci failed: the server did not accept the token in ${wrong}`);
    expect(err.message).not.toContain(readFileSync(wrong, 'utf8').trim());
    const none = await openSession({ ...base, JWT_TOKEN_PATH: join(jwtHome, 'absent.jwt') }, { warn });
    const e2 = await failure(none.authorization());
    expect([e2.exitCode, e2.message]).toEqual([6, expect.stringContaining('cannot read the JWT file')]);
  });
});
