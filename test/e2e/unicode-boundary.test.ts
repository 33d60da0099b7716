/**
 * Whatever text a request carries — ids, logins, JSON and YAML strings, headers
 * — the audit chain stays verifiable: ill-formed Unicode is refused at the
 * boundary with a clear error, and whatever still reaches an event is hashed
 * exactly as it is stored (issue 9, item 1).
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Client } from '../helpers/http.js';
import { openRawDb, type RawDb } from '../helpers/raw-db.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let api: Client;
let admin: string;
let host: string;
let raw: RawDb;

async function verifyChain(): Promise<void> {
  const r = await api.request('GET', `/audit/${api.account}/verify`, { token: admin });
  expect(r.json).toMatchObject({ ok: true });
  expect(r.status).toBe(200);
}

const tableCount = (table: string) => raw.count(`FROM ${table}`);

/** Text with lone surrogates, NUL, controls and astral characters, from raw UTF-16 code units. */
const illFormed = fc
  .tuple(fc.string({ maxLength: 8 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.string({ maxLength: 8 }))
  .map(([a, s, b]) => `${a}${String.fromCharCode(s)}${b}`)
  .filter((s) => !s.isWellFormed());
const anyUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 24 }).map((u) => String.fromCharCode(...u));

beforeAll(async () => {
  server = await startTestServer();
  raw = await openRawDb(server);
  api = new Client(server.url, server.account);
  admin = await api.login('admin', server.adminKey);
  const loaded = await api.loadPolicy(admin, 'POST', 'root', '- !host nobody\n- !variable db/password\n');
  expect(loaded.status).toBe(201);
  host = await api.login('host/nobody', loaded.json.created_roles[`${api.account}:host:nobody`].api_key);
});
afterAll(async () => {
  await raw?.close();
  await server.close();
});

describe('ill-formed Unicode at the boundary', () => {
  it('the probe’s example: a lone surrogate in a batch id is refused with 422 and the chain stays intact', async () => {
    const r = await api.request('POST', `/secrets/${api.account}/batch`, {
      token: host,
      body: '{"ids":["\\ud800"]}',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(r.status).toBe(422);
    expect(r.json.error.message).toMatch(/ill-formed Unicode/);
    await verifyChain();
  });

  it('any JSON string with a lone surrogate, anywhere in a batch body, is refused; the chain stays intact', async () => {
    const before = await tableCount('audit_events');
    await fc.assert(
      fc.asyncProperty(illFormed, fc.constantFrom('id', 'key', 'nested'), async (text, where) => {
        const body =
          where === 'id' ? { ids: [`variable:${text}`] } : where === 'key' ? { ids: ['variable:db/password'], [text]: 1 } : { ids: ['variable:db/password'], x: [{ y: text }] };
        const r = await api.request('POST', `/secrets/${api.account}/batch`, {
          token: host,
          body: JSON.stringify(body),
          headers: { 'Content-Type': 'application/json' },
        });
        expect(r.status).toBe(422);
        expect(r.json.error.code).toBeDefined();
      }),
      { numRuns: 40 },
    );
    // Refused before anything was looked up: no fetch was recorded for them.
    expect(await tableCount('audit_events')).toBe(before);
    await verifyChain();
  });

  it('any well-formed or ill-formed text in batch ids, path ids, logins and headers leaves a verifiable chain', async () => {
    await fc.assert(
      fc.asyncProperty(anyUnits, async (text) => {
        const wellFormed = text.toWellFormed();
        const headers = { 'Content-Type': 'application/json', 'User-Agent': `ua ${Buffer.from(wellFormed, 'utf8').toString('latin1').replace(/[\u0000-\u001f\u007f]/g, '').trim()}` };
        const batch = await api.request('POST', `/secrets/${api.account}/batch`, { token: host, body: JSON.stringify({ ids: [text] }), headers, skipContract: true });
        expect([200, 422]).toContain(batch.status);
        if (text.isWellFormed() && batch.status === 422) expect(batch.json.error.message).not.toMatch(/ill-formed/);
        const fetched = await api.request('GET', `/secrets/${api.account}/variable/${encodeURIComponent(wellFormed)}`, { token: host, headers, skipContract: true });
        expect([400, 404, 422]).toContain(fetched.status);
        const authn = await api.request('POST', `/authn/${api.account}/${encodeURIComponent(wellFormed)}/authenticate`, { body: 'not-a-key', headers, skipContract: true });
        expect([400, 401, 404, 422]).toContain(authn.status);
      }),
      { numRuns: 40 },
    );
    await verifyChain();
  });

  it('a percent-encoded lone surrogate (invalid UTF-8) in a path is a 400, not an event', async () => {
    const before = await tableCount('audit_events');
    for (const path of [`/secrets/${api.account}/variable/%ED%A0%80`, `/authn/${api.account}/%ED%A0%80/authenticate`, `/resources/${api.account}/variable/a%C0%AF`]) {
      const r = await api.request(path.startsWith('/authn') ? 'POST' : 'GET', path, { token: host, body: path.startsWith('/authn') ? 'x' : undefined, skipContract: true });
      expect(r.status).toBe(400);
      expect(r.json.error.message).toMatch(/percent-encoding/);
    }
    expect(await tableCount('audit_events')).toBe(before);
    await verifyChain();
  });

  it('a lone surrogate in a host-factory JSON body is refused and nothing is created', async () => {
    const tokens = await tableCount('host_factory_tokens');
    const r = await api.request('POST', '/host_factory_tokens', {
      token: admin,
      body: '{"host_factory":"host_factory:x\\udc00","expiration":"2099-01-01T00:00:00Z"}',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(r.status).toBe(422);
    expect(r.json.error.message).toMatch(/ill-formed Unicode/);
    expect(await tableCount('host_factory_tokens')).toBe(tokens);
    await verifyChain();
  });

  it('a lone surrogate escape in a policy id or annotation is refused with its line and nothing is loaded', async () => {
    const resources = await tableCount('resources');
    const annotations = await tableCount('annotations');
    for (const yaml of ['- !variable\n  id: "bad\\ud800"\n', '- !variable\n  id: fine\n  annotations:\n    note: "x\\udfffy"\n']) {
      const r = await api.loadPolicy(admin, 'POST', 'root', yaml);
      expect(r.status).toBe(422);
      expect(r.json.error.message).toMatch(/ill-formed Unicode/);
      expect(r.json.error.innererror).toMatchObject({ line: expect.any(Number), column: expect.any(Number) });
    }
    expect(await tableCount('resources')).toBe(resources);
    expect(await tableCount('annotations')).toBe(annotations);
    await verifyChain();
  });

  it('U+0000 in a policy string (a "\\0" escape) is refused with its line on every backend, and nothing is loaded', async () => {
    const resources = await tableCount('resources');
    const annotations = await tableCount('annotations');
    for (const yaml of ['- !variable\n  id: "nul\\0here"\n', '- !variable\n  id: fine-too\n  annotations:\n    note: "x\\x00y"\n']) {
      const r = await api.loadPolicy(admin, 'POST', 'root', yaml);
      expect(r.status).toBe(422);
      expect(r.json.error.message).toMatch(/U\+0000|Invalid id/); // an id is refused earlier, by the id rules
      expect(r.json.error.innererror).toMatchObject({ line: expect.any(Number), column: expect.any(Number) });
    }
    expect(await tableCount('resources')).toBe(resources);
    expect(await tableCount('annotations')).toBe(annotations);
    await verifyChain();
  });
});

describe('ill-formed Unicode in JWT claims (authn-jwt)', () => {
  let jwtServer: TestServer;
  let jwtApi: Client;
  let sign: (claims: Record<string, unknown>) => Promise<string>;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
    sign = (claims) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(pair.privateKey);
    jwtServer = await startTestServer({ flags: { authenticators: 'authn,authn-jwt/ci' } });
    jwtApi = new Client(jwtServer.url, jwtServer.account);
    const token = await jwtApi.login('admin', jwtServer.adminKey);
    const policy = [
      '- !policy',
      '  id: conjur/authn-jwt/ci',
      '  body:',
      '  - !webservice',
      '  - !variable public-keys',
      '  - !variable issuer',
      '  - !variable token-app-property',
      '  - !group apps',
      '  - !permit',
      '    role: !group apps',
      '    privilege: [ read, authenticate ]',
      '    resource: !webservice',
      '- !host',
      '  id: runner',
      '  annotations:',
      '    authn-jwt/ci/repo: app',
      '- !grant',
      '  role: !group conjur/authn-jwt/ci/apps',
      '  member: !host runner',
      '',
    ].join('\n');
    expect((await jwtApi.loadPolicy(token, 'POST', 'root', policy)).status).toBe(201);
    for (const [id, value] of [
      ['conjur/authn-jwt/ci/public-keys', JSON.stringify({ type: 'jwks', value: { keys: [jwk] } })],
      ['conjur/authn-jwt/ci/issuer', 'https://ci.example'],
      ['conjur/authn-jwt/ci/token-app-property', 'sub'],
    ]) expect((await jwtApi.setSecret(token, id!, value!)).status).toBe(201);
    admin = token;
  });
  afterAll(() => jwtServer.close());

  const authenticate = (jwt: string) =>
    jwtApi.request('POST', `/authn-jwt/ci/${jwtApi.account}/authenticate`, {
      body: `jwt=${jwt}`,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      skipContract: true,
    });

  it('an identity claim with a lone surrogate is refused (malformed identity); other claims with one are recorded safely; the chain verifies', async () => {
    const now = Math.floor(jwtServer.clock.nowMs() / 1000);
    const base = { iss: 'https://ci.example', iat: now, exp: now + 60, repo: 'app' };
    const refused = await authenticate(await sign({ ...base, sub: 'runner\ud800', jti: 'a' }));
    expect(refused.status).toBe(401);
    const db = await openRawDb(jwtServer);
    onTestFinished(() => db.close());
    const last = async () => (await db.get("SELECT reason, details FROM audit_events WHERE action = 'authn' ORDER BY seq DESC LIMIT 1")) as { reason: string; details: string };
    expect((await last()).reason).toMatch(/^CONJ00101E/);
    const ok = await authenticate(await sign({ ...base, sub: 'runner', jti: 'j\udc00', extra: '\ud83d' }));
    expect(ok.status, JSON.stringify(await last())).toBe(200);
    const verify = await jwtApi.request('GET', `/audit/${jwtApi.account}/verify`, { token: admin });
    expect(verify.json).toMatchObject({ ok: true });
    expect(verify.status).toBe(200);
  });
});
