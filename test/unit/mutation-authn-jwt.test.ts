/**
 * Mutation-testing follow-up for src/authn/jwt/ (issue 13 item 5): each test
 * pins a behaviour that a surviving Stryker mutant changed while every other
 * test stayed green — identity and id checks, the clock-tolerance bounds, the
 * jti rules, the replay store's boundaries, configuration parsing, the JWKS
 * cache and discovery, the non-public address check (literals and every
 * address of a DNS answer), and the server-side service's decisions (service
 * ids, cross-account status, private hosts, listing). Audit reasons are
 * compared whole: they are what an operator reads (Conjur's CONJ code and text).
 *
 * No beforeAll: keys are made inside the tests (a failing hook would make
 * Stryker count the mutants as survived), and no network is used except
 * loopback servers and the refusals that happen before any connection (the
 * DNS test answers dns.lookup from a table and stubs http.request).
 */
import dns from 'node:dns';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CompactSign, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import type { Actor } from '../../src/context.js';
import { CofferError } from '../../src/errors.js';
import { JwtAuthnService, type JwtServiceDeps } from '../../src/authn/jwt/service.js';
import {
  authenticateJwt,
  checkHostRestrictions,
  claimAt,
  createJwtKeySource,
  httpGetText,
  InMemoryJtiStore,
  isNonPublicAddress,
  MAX_JTI_LENGTH,
  MAX_JWT_LENGTH,
  normalizeHostList,
  parseJwtAuthenticatorConfig,
  RemoteJwksKeySource,
  resolveHostIdentity,
  verifyJwt,
  type AuthenticateJwtInput,
  type FetchLimits,
  type JwtAuthenticatorConfig,
  type JwtKeySource,
} from '../../src/authn/jwt/index.js';

// ---------------------------------------------------------------------------
// Fixtures (lazy: no hooks)
// ---------------------------------------------------------------------------

const ISSUER = 'https://issuer.example';
const NOW_S = 1_900_000_000;
const fixedNow = () => NOW_S * 1000;

interface Key {
  privateKey: CryptoKey;
  jwk: JWK;
}
let keyPromise: Promise<Key> | undefined;
const theKey = () =>
  (keyPromise ??= (async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } };
  })());

async function sign(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  const key = await theKey();
  const payload: Record<string, unknown> = { iss: ISSUER, iat: NOW_S, exp: NOW_S + 300, host: 'myapp', ...claims };
  for (const name of Object.keys(payload)) if (payload[name] === undefined) delete payload[name];
  return new SignJWT(payload as JWTPayload).setProtectedHeader({ alg: 'ES256', kid: 'k1', ...header }).sign(key.privateKey);
}

async function staticConfig(extra: Record<string, string | undefined> = {}): Promise<JwtAuthenticatorConfig> {
  const key = await theKey();
  return parseJwtAuthenticatorConfig(
    {
      'public-keys': JSON.stringify({ type: 'jwks', value: { keys: [key.jwk] } }),
      issuer: ISSUER,
      'token-app-property': 'host',
      ...extra,
    },
    { account: 'acme', serviceId: 'ci' },
  );
}

/** A jwks-uri configuration for the pure identity/restriction functions (nothing is fetched). */
const plainConfig = (extra: Record<string, string | undefined> = {}) =>
  parseJwtAuthenticatorConfig({ 'jwks-uri': 'https://idp.example/keys', 'token-app-property': 'sub', ...extra });

/** The audit reason of the CofferError 401 that `action` throws (or rejects with). */
async function reasonOf(action: Promise<unknown> | (() => unknown)): Promise<string> {
  let caught: unknown;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected an authentication failure').toBeInstanceOf(CofferError);
  const error = caught as CofferError;
  expect(error.code).toBe('unauthorized');
  return error.auditReason ?? '';
}

async function thrown(action: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    return error;
  }
  return undefined;
}

const HOSTS: Record<string, Record<string, string>> = {
  'acme:host:myapp': { 'authn-jwt/ci/project': 'proj-1' },
};

async function authInput(jwt: string, overrides: Partial<AuthenticateJwtInput> = {}): Promise<AuthenticateJwtInput> {
  const config = overrides.config ?? (await staticConfig());
  return {
    jwt,
    serviceId: 'ci',
    account: 'acme',
    config,
    keySource: createJwtKeySource(config),
    lookupHostAnnotations: (roleId) => HOSTS[roleId],
    now: fixedNow,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------
// verify.ts: token checks
// ---------------------------------------------------------------------------

describe('verifyJwt: header, length and clock-tolerance bounds', () => {
  it('refuses a non-string kid before the key source is asked for anything', async () => {
    const config = await staticConfig();
    const key = await theKey();
    let asked = 0;
    const source: JwtKeySource = {
      getKeys: async () => {
        asked++;
        return [];
      },
      probe: async () => 0,
    };
    const payload = new TextEncoder().encode(JSON.stringify({ iss: ISSUER, exp: NOW_S + 60, host: 'myapp' }));
    const jwt = await new CompactSign(payload).setProtectedHeader({ alg: 'ES256', kid: 5 } as never).sign(key.privateKey);
    expect(await reasonOf(verifyJwt(jwt, config, source, { now: fixedNow }))).toBe(
      `CONJ00035E Failed to decode token (3rdPartyError ='invalid "kid" header value')`,
    );
    expect(asked).toBe(0);
  });

  it('accepts a clock tolerance of exactly 60 s and of 0 s', async () => {
    const config = await staticConfig();
    const jwt = await sign({ exp: NOW_S - 59 });
    const claims = await verifyJwt(jwt, config, createJwtKeySource(config), { now: fixedNow, clockToleranceSec: 60 });
    expect(claims.host).toBe('myapp');
    await expect(verifyJwt(await sign(), config, createJwtKeySource(config), { now: fixedNow, clockToleranceSec: 0 })).resolves.toMatchObject({
      host: 'myapp',
    });
  });

  it.each([[61], [-1], [Number.NaN], [Number.POSITIVE_INFINITY], [Number.NEGATIVE_INFINITY]])(
    'refuses a clock tolerance of %s with a RangeError, before the token is looked at',
    async (tolerance) => {
      const config = await staticConfig();
      const error = await thrown(verifyJwt(await sign(), config, createJwtKeySource(config), { now: fixedNow, clockToleranceSec: tolerance }));
      expect(error).toBeInstanceOf(RangeError);
      expect((error as Error).message).toBe('clockToleranceSec must be between 0 and 60');
    },
  );

  it('refuses a clock tolerance of 61 also through authenticateJwt', async () => {
    const error = await thrown(authenticateJwt(await authInput(await sign({ project: 'proj-1' }), { clockToleranceSec: 61 })));
    expect(error).toBeInstanceOf(RangeError);
  });

  it('takes a token of exactly MAX_JWT_LENGTH characters past the size check, and refuses one more', async () => {
    const config = await staticConfig();
    const real = await sign();
    const [h, p] = real.split('.');
    const filler = (n: number) => 'A'.repeat(n);
    const exact = `${h}.${p}.${filler(MAX_JWT_LENGTH - h!.length - p!.length - 2)}`;
    expect(exact.length).toBe(MAX_JWT_LENGTH);
    // Past the shape check: refused for its signature, not as "not a JWT".
    expect(await reasonOf(verifyJwt(exact, config, createJwtKeySource(config), { now: fixedNow }))).toMatch(/^CONJ00035E /);
    const over = `${exact}A`;
    expect(await reasonOf(verifyJwt(over, config, createJwtKeySource(config), { now: fixedNow }))).toBe(
      'CONJ00077E The request body does not contain JWT token',
    );
  });

  it.each([['not-a-jwt'], ['a.b'], ['a.b.c.d'], ['a b.c.d'], ['']])('refuses %j as "not a JWT" (CONJ00077E)', async (jwt) => {
    const config = await staticConfig();
    expect(await reasonOf(verifyJwt(jwt, config, createJwtKeySource(config), { now: fixedNow }))).toBe(
      'CONJ00077E The request body does not contain JWT token',
    );
  });

  it('names an undecodable protected header, an expired token and a future iat in the audit reason', async () => {
    const config = await staticConfig();
    const source = createJwtKeySource(config);
    const [, p, s] = (await sign()).split('.');
    expect(await reasonOf(verifyJwt(`${Buffer.from('{not json').toString('base64url')}.${p}.${s}`, config, source, { now: fixedNow }))).toBe(
      `CONJ00035E Failed to decode token (3rdPartyError ='invalid JWS protected header')`,
    );
    expect(await reasonOf(verifyJwt(await sign({ exp: NOW_S - 1 }), config, source, { now: fixedNow }))).toBe(
      'CONJ00016E Token expired',
    );
    expect(await reasonOf(verifyJwt(await sign({ iat: NOW_S + 31 }), config, source, { now: fixedNow, clockToleranceSec: 30 }))).toBe(
      `CONJ00035E Failed to decode token (3rdPartyError ='"iat" claim timestamp check failed (in the future)')`,
    );
    await expect(verifyJwt(await sign({ iat: NOW_S + 30 }), config, source, { now: fixedNow, clockToleranceSec: 30 })).resolves.toBeTruthy();
  });

  it('requires aud when an audience is configured (CONJ00091E), and not otherwise', async () => {
    const withAud = await staticConfig({ audience: 'coffer' });
    expect(await reasonOf(verifyJwt(await sign(), withAud, createJwtKeySource(withAud), { now: fixedNow }))).toBe(
      "CONJ00091E Failed to validate token: mandatory claim 'aud' is missing.",
    );
    const without = await staticConfig();
    await expect(verifyJwt(await sign(), without, createJwtKeySource(without), { now: fixedNow })).resolves.toBeTruthy();
  });
});

// ---------------------------------------------------------------------------
// verify.ts: identity
// ---------------------------------------------------------------------------

describe('resolveHostIdentity: blank values, types and malformed ids', () => {
  it.each([[null], [false], [[]], [{}], ['   '], [undefined]])('treats %j as a missing identity claim (CONJ00081E)', (value) => {
    const error = (() => {
      try {
        resolveHostIdentity({ sub: value } as JWTPayload, plainConfig());
      } catch (e) {
        return e as CofferError;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(CofferError);
    expect(error!.auditReason).toBe(`CONJ00081E 'sub' field not found in the token`);
  });

  it.each([
    [true, 'TrueClass'],
    [0, 'Integer'],
    [42, 'Integer'],
    [1.5, 'Float'],
    [['a'], 'Array'],
    [{ a: 1 }, 'Hash'],
  ])('refuses the non-string identity %j, naming its Ruby class %s (CONJ00118E)', async (value, cls) => {
    expect(await reasonOf(() => resolveHostIdentity({ sub: value } as unknown as JWTPayload, plainConfig()))).toBe(
      `CONJ00118E 'sub' value in token has type '${cls}'. An identity must be a String.`,
    );
  });

  it('returns kind, id and login for a host and a user from the URL, and for a host from a claim', () => {
    const fromUrl = plainConfig({ 'token-app-property': undefined });
    expect(resolveHostIdentity({}, fromUrl, 'host/ci/app')).toStrictEqual({ kind: 'host', id: 'ci/app', login: 'host/ci/app' });
    expect(resolveHostIdentity({}, fromUrl, 'alice')).toStrictEqual({ kind: 'user', id: 'alice', login: 'alice' });
    expect(resolveHostIdentity({ sub: 'app' }, plainConfig({ 'identity-path': 'ci' }))).toStrictEqual({
      kind: 'host',
      id: 'ci/app',
      login: 'host/ci/app',
    });
    // token-app-property set and an empty URL id: the claim is used.
    expect(resolveHostIdentity({ sub: 'app' }, plainConfig(), '')).toStrictEqual({ kind: 'host', id: 'app', login: 'host/app' });
  });

  it('treats a whitespace-only URL id as no URL id (CONJ00098E without token-app-property)', async () => {
    const fromUrl = plainConfig({ 'token-app-property': undefined });
    for (const urlId of ['   ', '', undefined]) {
      expect(await reasonOf(() => resolveHostIdentity({}, fromUrl, urlId))).toBe('CONJ00098E JWT identity configuration is invalid');
    }
    expect(await reasonOf(() => resolveHostIdentity({ sub: 'app' }, plainConfig(), 'host/app'))).toBe(
      'CONJ00098E JWT identity configuration is invalid',
    );
  });

  const MALFORMED = ['a//b', '/a', 'a/', '.', 'a/./b', '..', 'a/../b', 'a/..', 'a\u0001b', 'a\u007fb', 'a\nb', 'a\ud800b'];
  it.each(MALFORMED.map((id) => [id]))('refuses the malformed id %j from a claim and from the URL (CONJ00101E)', async (id) => {
    const reason = 'CONJ00101E JWT identity is empty or was not found. (malformed identity)';
    expect(await reasonOf(() => resolveHostIdentity({ sub: id }, plainConfig()))).toBe(reason);
    expect(await reasonOf(() => resolveHostIdentity({}, plainConfig({ 'token-app-property': undefined }), `host/${id}`))).toBe(reason);
    expect(await reasonOf(() => resolveHostIdentity({}, plainConfig({ 'token-app-property': undefined }), id))).toBe(reason);
  });

  it.each([['a.b'], ['...'], ['a/.b/c.'], ['x..y'], ['ci/project-42'], ['é/ü']])('accepts the well-formed id %j', (id) => {
    expect(resolveHostIdentity({ sub: id }, plainConfig()).id).toBe(id);
  });

  it('follows only own properties of objects: no indexing into strings or arrays', () => {
    expect(claimAt({ host: 'abc' }, 'host/length')).toBeUndefined();
    expect(claimAt({ host: 'abc' }, 'host/0')).toBeUndefined();
    expect(claimAt({ host: ['a'] }, 'host/0')).toBeUndefined();
    expect(claimAt({ host: { id: 'x' } }, 'host/id')).toBe('x');
  });

  it('treats null inside a claim path, and null documents, as missing (not a TypeError)', async () => {
    expect(claimAt({ project: null }, 'project/path')).toBeUndefined();
    expect(claimAt({ a: { b: null } }, 'a/b/c')).toBeUndefined();
    // A restriction whose claim path runs through null is a missing claim (CONJ00084E), not a crash.
    expect(
      await reasonOf(() =>
        checkHostRestrictions({ project: null } as JWTPayload, plainConfig(), 'ci', { 'authn-jwt/ci/project/path': 'x' }),
      ),
    ).toBe(
      "CONJ00084E Claim 'project/path' is missing from JWT token. Verify that you configured the host with permitted restrictions.",
    );
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ 'public-keys': 'null', issuer: ISSUER }))).toBe(
      "CONJ00120E Failed to parse 'public-keys': Type can't be blank, Value can't be blank, and Type '' is not a valid public-keys type. Valid types are: jwks",
    );
    const source = new RemoteJwksKeySource({ jwksUri: 'https://idp.example/keys' }, { fetchText: async () => 'null' });
    expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'k1' }))).toBe("CONJ00088E JWKS not found in response: 'keys' member missing");
  });
});

// ---------------------------------------------------------------------------
// verify.ts: host restrictions
// ---------------------------------------------------------------------------

describe('checkHostRestrictions: annotation selection and messages', () => {
  const payload = { iss: ISSUER, project: 'proj-1', ref: 'main' } as JWTPayload;

  it('names the missing service annotation (CONJ00099E)', async () => {
    expect(await reasonOf(() => checkHostRestrictions(payload, plainConfig(), 'ci', { 'authn-jwt/other/project': 'proj-1' }))).toBe(
      'CONJ00099E Role must have at least one relevant annotation',
    );
  });

  it('ignores annotations outside authn-jwt/, even with exactly two segments', () => {
    expect(() =>
      checkHostRestrictions(payload, plainConfig(), 'ci', {
        'authn-jwt/ci/project': 'proj-1',
        'conjur/description': 'anything',
        'kubernetes/namespace': 'x',
        description: 'y',
      }),
    ).not.toThrow();
  });

  it('still checks generic authn-jwt/<claim> annotations', async () => {
    expect(
      await reasonOf(() => checkHostRestrictions(payload, plainConfig(), 'ci', { 'authn-jwt/ci/project': 'proj-1', 'authn-jwt/ref': 'dev' })),
    ).toBe("CONJ00049E Resource restriction 'ref' does not match with the corresponding value in the request");
  });

  it('refuses a reserved claim written with surrounding spaces as reserved (CONJ00069E), not as a bad path', async () => {
    expect(await reasonOf(() => checkHostRestrictions(payload, plainConfig(), 'ci', { 'authn-jwt/ci/iss ': 'x' }))).toBe(
      "CONJ00069E Role can't have registered or aliased claim. Error: 'iss '",
    );
    expect(await reasonOf(() => checkHostRestrictions(payload, plainConfig(), 'ci', { 'authn-jwt/ci/exp': 'x' }))).toBe(
      "CONJ00069E Role can't have registered or aliased claim. Error: 'exp'",
    );
  });

  it('names an annotation that is not a claim path (CONJ00119E)', async () => {
    expect(await reasonOf(() => checkHostRestrictions(payload, plainConfig(), 'ci', { 'authn-jwt/ci/a b': 'x' }))).toBe(
      "CONJ00119E Restriction 'a b' is invalid and not representing claim path in the token",
    );
  });

  it('passes with no enforced claims and a matching restriction', () => {
    expect(() => checkHostRestrictions(payload, plainConfig(), 'ci', { 'authn-jwt/ci/project': 'proj-1' })).not.toThrow();
  });
});

// ---------------------------------------------------------------------------
// index.ts: jti
// ---------------------------------------------------------------------------

describe('authenticateJwt: jti rules and the replay store call', () => {
  const recording = () => {
    const calls: Array<[string, string, number]> = [];
    return { calls, store: { markUsed: (k: string, j: string, e: number) => (calls.push([k, j, e]), true) } };
  };

  it('marks the jti under account:service with exp plus the clock tolerance', async () => {
    const { calls, store } = recording();
    const jwt = await sign({ project: 'proj-1', jti: 'j-1' });
    const result = await authenticateJwt(await authInput(jwt, { jtiStore: store, clockToleranceSec: 30 }));
    expect(result.roleId).toBe('acme:host:myapp');
    expect(calls).toEqual([['acme:ci', 'j-1', NOW_S + 300 + 30]]);
  });

  it('keeps services apart in the replay store: the same jti is fresh for another service', async () => {
    const store = new InMemoryJtiStore({ now: fixedNow });
    const jwt = await sign({ project: 'proj-1', jti: 'shared' });
    await authenticateJwt(await authInput(jwt, { jtiStore: store }));
    expect(await reasonOf(authenticateJwt(await authInput(jwt, { jtiStore: store })))).toBe(
      `CONJ00035E Failed to decode token (3rdPartyError ='token replay: "jti" already used')`,
    );
    const other = await authInput(jwt, {
      jtiStore: store,
      serviceId: 'cd',
      lookupHostAnnotations: () => ({ 'authn-jwt/cd/project': 'proj-1' }),
    });
    await expect(authenticateJwt(other)).resolves.toMatchObject({ roleId: 'acme:host:myapp' });
    const otherAccount = await authInput(jwt, {
      jtiStore: store,
      account: 'beta',
      lookupHostAnnotations: () => ({ 'authn-jwt/ci/project': 'proj-1' }),
    });
    await expect(authenticateJwt(otherAccount)).resolves.toMatchObject({ roleId: 'beta:host:myapp' });
  });

  it.each([[''], [5], [['x']], ['x'.repeat(MAX_JTI_LENGTH + 1)]])('refuses the jti %j without recording it', async (jti) => {
    const { calls, store } = recording();
    const jwt = await sign({ project: 'proj-1', jti });
    expect(await reasonOf(authenticateJwt(await authInput(jwt, { jtiStore: store })))).toBe(
      `CONJ00035E Failed to decode token (3rdPartyError ='invalid "jti" claim')`,
    );
    expect(calls).toEqual([]);
  });

  it('accepts a jti of exactly MAX_JTI_LENGTH characters', async () => {
    const { calls, store } = recording();
    const jti = 'x'.repeat(MAX_JTI_LENGTH);
    await authenticateJwt(await authInput(await sign({ project: 'proj-1', jti }), { jtiStore: store }));
    expect(calls.map(([, j]) => j)).toEqual([jti]);
  });

  it('names the missing jti when one is required (CONJ00091E), and accepts its absence otherwise', async () => {
    const { calls, store } = recording();
    const jwt = await sign({ project: 'proj-1' });
    expect(await reasonOf(authenticateJwt(await authInput(jwt, { jtiStore: store, requireJti: true })))).toBe(
      "CONJ00091E Failed to validate token: mandatory claim 'jti' is missing.",
    );
    await expect(authenticateJwt(await authInput(jwt, { jtiStore: store }))).resolves.toMatchObject({ roleId: 'acme:host:myapp' });
    expect(calls).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// replay.ts
// ---------------------------------------------------------------------------

describe('InMemoryJtiStore: expiry boundary and sweeping', () => {
  it('still refuses a jti at exactly its expiry second, and accepts it one millisecond later', () => {
    let now = 1_000_000;
    const store = new InMemoryJtiStore({ now: () => now });
    expect(store.markUsed('s', 'j', 1000)).toBe(true);
    expect(store.markUsed('s', 'j', 1000)).toBe(false);
    now = 1_000_001;
    expect(store.markUsed('s', 'j', 2000)).toBe(true);
  });

  it('sweeps expired entries once the map reaches the threshold, keeping entries that expire now or later', () => {
    let now = 100_000; // 100 s
    const store = new InMemoryJtiStore({ now: () => now, sweepThreshold: 3 });
    store.markUsed('s', 'old-1', 50);
    store.markUsed('s', 'old-2', 60);
    expect(store.size).toBe(2);
    store.markUsed('s', 'at-now', 100); // size 2 < 3: no sweep
    expect(store.size).toBe(3);
    store.markUsed('s', 'new', 500); // size 3 >= 3: old-1 and old-2 swept, at-now (expires at 100 = now) kept
    expect(store.size).toBe(2);
    expect(store.markUsed('s', 'at-now', 100)).toBe(false);
    now = 100_500;
    expect(store.markUsed('s', 'at-now', 100)).toBe(true);
  });

  it('does not sweep below the threshold', () => {
    const store = new InMemoryJtiStore({ now: () => 100_000, sweepThreshold: 10 });
    for (let i = 0; i < 5; i++) store.markUsed('s', `old-${i}`, 1);
    expect(store.size).toBe(5);
  });
});

// ---------------------------------------------------------------------------
// config.ts
// ---------------------------------------------------------------------------

describe('parseJwtAuthenticatorConfig: values, defaults and messages', () => {
  const jwks = { 'jwks-uri': 'https://idp.example/keys' };
  const opts = { account: 'acme', serviceId: 'ci' };

  it.each([['issuer'], ['claim-aliases'], ['provider-uri'], ['public-keys'], ['token-app-property'], ['enforced-claims'], ['ca-cert'], ['audience'], ['identity-path']])(
    'names the variable %s that is defined without a value (CONJ00037E)',
    async (name) => {
      const values: Record<string, string> = name === 'provider-uri' || name === 'public-keys' ? { [name]: '' } : { ...jwks, [name]: ' ' };
      if (name === 'provider-uri' || name === 'public-keys') Object.assign(values, jwks);
      expect(await reasonOf(() => parseJwtAuthenticatorConfig(values, opts))).toBe(
        `CONJ00037E Missing value for resource: acme:variable:conjur/authn-jwt/ci/${name}`,
      );
    },
  );

  it('uses placeholders for the account and service id when they are not given', async () => {
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, issuer: '' }))).toBe(
      'CONJ00037E Missing value for resource: <account>:variable:conjur/authn-jwt/<service-id>/issuer',
    );
  });

  it('trims values and the token-app-property, and normalises identity-path', () => {
    const config = parseJwtAuthenticatorConfig({
      ...jwks,
      issuer: ' https://iss.example ',
      audience: ' coffer ',
      'token-app-property': ' project/path ',
      'identity-path': ' apps ',
    });
    expect(config.issuer).toBe('https://iss.example');
    expect(config.audience).toBe('coffer');
    expect(config.tokenAppProperty).toBe('project/path');
    expect(config.identityPath).toBe('apps');
    expect(parseJwtAuthenticatorConfig({ ...jwks, 'identity-path': '///' }).identityPath).toBeUndefined();
    expect(parseJwtAuthenticatorConfig({ ...jwks, 'identity-path': '/a//b/' }).identityPath).toBe('a/b');
    expect(parseJwtAuthenticatorConfig(jwks).signingKey).toStrictEqual({ type: 'jwks-uri', uri: 'https://idp.example/keys' });
  });

  it('names both signing sources when more than one is set', async () => {
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'provider-uri': 'https://idp.example' }))).toBe(
      'CONJ00122E Invalid signing key settings: jwks-uri and provider-uri cannot be defined simultaneously',
    );
  });

  it('gives the character-set message for a token-app-property with a forbidden character, the path message for an empty segment', async () => {
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'token-app-property': 'a b' }))).toBe(
      "CONJ00117E Failed to parse 'token-app-property' value. Error: " +
        "'token-app-property can only contain alpha-numeric characters, '-', '_', '/', and '.''",
    );
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'token-app-property': 'a//b' }))).toBe(
      "CONJ00117E Failed to parse 'token-app-property' value. Error: 'token-app-property includes `//` or an empty path segment'",
    );
  });

  it('names the problem in enforced-claims', async () => {
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'enforced-claims': ' a,,b ' }))).toBe(
      "CONJ00107E List of enforced claims 'a,,b' is in invalid format. Separate claim names with commas.",
    );
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'enforced-claims': ' a, a ' }))).toBe(
      "CONJ00108E List of enforced claims 'a, a' must not contain duplications.",
    );
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'enforced-claims': 'a b' }))).toBe(
      "CONJ00104E Failed to validate claim: claim name 'a b' does not match regular expression: '[a-zA-Z0-9\\/\\-_\\.]+'.",
    );
  });

  it('names the problem in claim-aliases', async () => {
    const parse = (aliases: string) => () => parseJwtAuthenticatorConfig({ ...jwks, 'claim-aliases': aliases });
    expect(await reasonOf(parse('a:b, '))).toBe(
      "CONJ00110E Failed to parse claim aliases: one or more mapping statements are blank or empty 'a:b,'.",
    );
    expect(await reasonOf(parse(' a:b,,c:d '))).toBe(
      "CONJ00110E Failed to parse claim aliases: one or more mapping statements are blank or empty 'a:b,,c:d'.",
    );
    expect(await reasonOf(parse('a:b, c '))).toBe(
      "CONJ00111E Failed to parse claim aliases: the claim alias value 'c' is in invalid format.The correct format is: 'annotation_name:claim_name'",
    );
    expect(await reasonOf(parse('a:b,a:c'))).toBe("CONJ00113E Failed to parse claim aliases: annotation name value 'a' appears more than once");
    expect(await reasonOf(parse('a:b,c:b'))).toBe("CONJ00113E Failed to parse claim aliases: claim name value 'b' appears more than once");
    expect(await reasonOf(parse('a/x:b'))).toBe("CONJ00114E Failed to parse claim aliases: the claim alias name 'a/x' contains '/'.");
    expect(await reasonOf(parse('a$:b'))).toBe(
      "CONJ00104E Failed to validate claim: claim name 'a$' does not match regular expression: '[a-zA-Z0-9\\-_\\.]+'.",
    );
  });

  it('checks URLs: absolute, no credentials, https unless allowed over http', async () => {
    const uri = (u: string, allow: string[] = []) => () => parseJwtAuthenticatorConfig({ 'jwks-uri': u }, { allowHttpHosts: allow });
    expect(await reasonOf(uri('/keys'))).toBe("CONJ00080E Failed to parse URI 'jwks-uri'. Reason: 'not an absolute URL'");
    for (const u of ['https://user@idp.example/keys', 'https://:pw@idp.example/keys', 'https://user:pw@idp.example/keys']) {
      expect(await reasonOf(uri(u))).toBe('CONJ00122E Invalid signing key settings: jwks-uri must not contain credentials');
    }
    expect(await reasonOf(uri('http://idp.example/keys'))).toBe(
      "CONJ00122E Invalid signing key settings: jwks-uri must use https (host 'idp.example' is not allowed over plain http)",
    );
    expect(await reasonOf(uri('ftp://idp.example/keys', ['idp.example']))).toBe(
      'CONJ00122E Invalid signing key settings: jwks-uri must be an https URL',
    );
    expect(parseJwtAuthenticatorConfig({ 'jwks-uri': 'http://IdP.example/keys' }, { allowHttpHosts: [' IDP.EXAMPLE '] }).issuer).toBe('idp.example');
    expect(parseJwtAuthenticatorConfig({ 'jwks-uri': 'http://[::1]:8080/keys' }, { allowHttpHosts: ['[::1]'] }).issuer).toBe('::1');
  });

  it('normalises the plain-http host list: trimmed, lower-case, brackets stripped only in pairs', () => {
    expect(normalizeHostList([' Example.COM ', '[::1]', '[fe80::1', 'fe80::2]', '[]'])).toEqual(['example.com', '::1', '[fe80::1', 'fe80::2]', '']);
  });

  it('checks ca-cert and public-keys, naming the problem', async () => {
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ ...jwks, 'ca-cert': 'no pem here' }))).toBe(
      'CONJ00122E Invalid signing key settings: ca-cert must contain at least one PEM certificate',
    );
    expect(
      await reasonOf(() =>
        parseJwtAuthenticatorConfig({ ...jwks, 'ca-cert': '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----' }),
      ),
    ).toBe('CONJ00122E Invalid signing key settings: ca-cert contains an invalid certificate');
    const key = await theKey();
    const pk = (value: unknown) => () =>
      parseJwtAuthenticatorConfig({ 'public-keys': typeof value === 'string' ? value : JSON.stringify(value), issuer: ISSUER });
    expect(await reasonOf(() => parseJwtAuthenticatorConfig({ 'public-keys': JSON.stringify({ type: 'jwks', value: { keys: [key.jwk] } }), issuer: ISSUER, 'ca-cert': 'x' }))).toBe(
      'CONJ00122E Invalid signing key settings: ca-cert can be defined only with jwks-uri or provider-uri',
    );
    expect(await reasonOf(pk('{not json'))).toBe("CONJ00120E Failed to parse 'public-keys': value is not valid JSON");
    expect(await reasonOf(pk({ type: 'pem', value: { keys: [key.jwk] } }))).toBe(
      "CONJ00120E Failed to parse 'public-keys': Type can't be blank, Value can't be blank, and Type '' is not a valid public-keys type. Valid types are: jwks",
    );
    expect(await reasonOf(pk({ type: 'jwks', value: { keys: [] } }))).toBe(
      "CONJ00120E Failed to parse 'public-keys': Value must include the name/value pair 'keys', which is an array of valid JWKS public keys",
    );
    const notPublic = "CONJ00120E Failed to parse 'public-keys': every key must be a public RSA, EC or OKP key";
    expect(await reasonOf(pk({ type: 'jwks', value: { keys: [key.jwk, { ...key.jwk, d: 'x' }] } }))).toBe(notPublic);
    expect(await reasonOf(pk({ type: 'jwks', value: { keys: [5] } }))).toBe(notPublic);
    expect(await reasonOf(pk({ type: 'jwks', value: { keys: ['RSA'] } }))).toBe(notPublic);
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
      expect(await reasonOf(pk({ type: 'jwks', value: { keys: [{ ...key.jwk, [member]: 'AQAB' }] } })), member).toBe(notPublic);
    }
  });
});

// ---------------------------------------------------------------------------
// jwks.ts: address checks, kid, remote source
// ---------------------------------------------------------------------------

describe('isNonPublicAddress: IPv4-mapped forms and non-addresses', () => {
  it.each([
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::FFFF:10.1.2.3', true],
    ['::ffff:a01:203', true],
    ['::ffff:8.8.8.8', false],
    ['::ffff:808:808', false],
    ['0:0:0:0:0:ffff:808:808', false],
    ['0:0:0:0:0:ffff:7f00:1', true],
    // Global unicast with ffff and a dotted tail in it: not an IPv4-mapped address.
    ['2606:4700::ffff:127.0.0.1', false],
    ['2606:4700::ffff:7f00:1', false],
    ['::ffff:7f00:1:0:0', false],
    ['8.8.8.8', false],
    ['2606:4700::1111', false],
    ['::1', true],
    ['fe80::1', true],
    ['not-an-address', true],
    ['::ffff:8.8.8.8junk', true],
    ['', true],
  ])('%s → %s', (address, expected) => {
    expect(isNonPublicAddress(address)).toBe(expected);
  });

  it('treats a dotted tail after ::ffff: that is not four numbers as a non-address (non-public)', () => {
    for (const address of ['::ffff:a.0.0.1', '::ffff:0.a.0.1', '::ffff:0.0.a.1', '::ffff:0.0.1.a', '::ffff:x.y.z.w']) {
      expect(isNonPublicAddress(address), address).toBe(true);
    }
  });
});

describe('httpGetText: refusals before connecting, request shape and size cap', () => {
  const limits: FetchLimits = { timeoutMs: 2000, maxBytes: 64, denyPrivateAddresses: true };

  it('refuses bracketed IPv6 and IPv4-mapped literals that are not public', async () => {
    for (const url of ['http://[::1]:9/', 'http://[::ffff:127.0.0.1]:9/', 'http://127.0.0.1:9/']) {
      const error = await thrown(httpGetText(new URL(url), limits));
      expect(error, url).toBeInstanceOf(Error);
      expect((error as Error).name).toBe('JwksFetchError');
      expect((error as Error).message).toBe(`${new URL(url).hostname} is not a public address`);
    }
  });

  it('refuses a host name that resolves to a loopback address', async () => {
    const error = await thrown(httpGetText(new URL('http://localhost:9/'), limits));
    expect((error as NodeJS.ErrnoException).message).toBe('localhost resolves to a non-public address');
  });

  it('checks every address of a DNS answer (one non-public address refuses the host), in both lookup forms', async () => {
    // The lookup that httpGetText hands to node:http is taken from the request options; dns.lookup answers
    // from a table, so no name is resolved and no connection is made.
    const answers: Record<string, dns.LookupAddress[]> = {
      'public.example': [
        { address: '93.184.216.34', family: 4 },
        { address: '2606:4700::1111', family: 6 },
      ],
      'mixed.example': [
        { address: '93.184.216.34', family: 4 },
        { address: '10.0.0.1', family: 4 },
      ],
      'mapped.example': [{ address: '::ffff:169.254.169.254', family: 6 }],
      'empty.example': [],
    };
    const asked: Array<[string, unknown]> = [];
    const lookupSpy = vi.spyOn(dns, 'lookup').mockImplementation(((
      host: string,
      options: dns.LookupAllOptions,
      callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
    ) => {
      asked.push([host, options.all]);
      const answer = answers[host];
      if (answer === undefined) {
        const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${host}`);
        error.code = 'ENOTFOUND';
        return callback(error, undefined as never);
      }
      return callback(null, answer);
    }) as never);
    let lookup: ((host: string, options: dns.LookupOptions, cb: (...args: unknown[]) => void) => void) | undefined;
    const requestSpy = vi.spyOn(http, 'request').mockImplementation(((_url: URL, options: http.RequestOptions) => {
      lookup = options.lookup as never;
      return Object.assign(new EventEmitter(), { end: () => undefined, destroy: () => undefined });
    }) as never);
    try {
      const pending = thrown(httpGetText(new URL('http://anything.example:9/'), { timeoutMs: 20, maxBytes: 64, denyPrivateAddresses: true }));
      expect(lookup).toBeTypeOf('function');
      const resolve = (host: string, all: boolean) =>
        new Promise<unknown[]>((done) => lookup!(host, { all }, (...args: unknown[]) => done(args)));
      for (const host of ['mixed.example', 'mapped.example', 'empty.example']) {
        for (const all of [true, false]) {
          const [error] = await resolve(host, all);
          expect(error, host).toBeInstanceOf(Error);
          expect((error as NodeJS.ErrnoException).code, host).toBe('ENONPUBLIC');
          expect((error as Error).message).toBe(`${host} resolves to a non-public address`);
        }
      }
      expect(await resolve('public.example', true)).toEqual([null, answers['public.example']]);
      expect(await resolve('public.example', false)).toEqual([null, '93.184.216.34', 4]);
      const [error] = await resolve('nowhere.example', false);
      expect((error as NodeJS.ErrnoException).code).toBe('ENOTFOUND');
      // Every resolution asks for all addresses, whatever form the caller wants.
      expect(asked.every(([, all]) => all === true)).toBe(true);
      expect(((await pending) as Error).message).toBe('request timed out after 20 ms');
    } finally {
      requestSpy.mockRestore();
      lookupSpy.mockRestore();
    }
  });

  it('refuses other protocols', async () => {
    const error = await thrown(httpGetText(new URL('ftp://idp.example/'), limits));
    expect((error as Error).message).toBe("unsupported protocol 'ftp:'");
  });

  async function serve(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void>; seen: http.IncomingMessage[] }> {
    const seen: http.IncomingMessage[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req);
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}/jwks`,
      seen,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  }

  it('sends a plain GET asking for uncompressed JSON, and accepts a body of exactly maxBytes', async () => {
    const body = 'x'.repeat(64);
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 64 });
      res.end(body);
    });
    try {
      expect(await httpGetText(new URL(s.url), { timeoutMs: 2000, maxBytes: 64 })).toBe(body);
      const req = s.seen[0]!;
      expect(req.method).toBe('GET');
      expect(req.headers['accept']).toBe('application/json');
      expect(req.headers['accept-encoding']).toBe('identity');
      expect(req.headers['user-agent']).toBe('coffer-authn-jwt');
    } finally {
      await s.close();
    }
  });

  it('refuses a body of maxBytes + 1, with and without content-length, and names a non-200 status', async () => {
    const s = await serve((req, res) => {
      if (req.url === '/chunked') {
        res.writeHead(200);
        res.write('x'.repeat(40));
        res.end('y'.repeat(25));
      } else if (req.url === '/404') {
        res.writeHead(404);
        res.end();
      } else {
        res.writeHead(200, { 'content-length': 65 });
        res.end('x'.repeat(65));
      }
    });
    try {
      const base = s.url.replace(/\/jwks$/, '');
      for (const path of ['/big', '/chunked']) {
        const error = await thrown(httpGetText(new URL(base + path), { timeoutMs: 2000, maxBytes: 64 }));
        expect((error as Error).message, path).toBe('response larger than 64 bytes');
      }
      const error = await thrown(httpGetText(new URL(`${base}/404`), { timeoutMs: 2000, maxBytes: 64 }));
      expect((error as Error).message).toBe("response code: '404'");
    } finally {
      await s.close();
    }
  });

  it('reports a connection closed before the response completed', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 50 });
      res.write('x'.repeat(10));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    try {
      const error = await thrown(httpGetText(new URL(s.url), { timeoutMs: 2000, maxBytes: 64 }));
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).name).toBe('JwksFetchError');
    } finally {
      await s.close();
    }
  });
});

describe('RemoteJwksKeySource: kid, cache age, refresh failures and discovery', () => {
  async function jwksText(): Promise<string> {
    return JSON.stringify({ keys: [(await theKey()).jwk] });
  }

  it('accepts dotted kids and refuses dot segments, with the exact reason', async () => {
    const text = await jwksText();
    const source = new RemoteJwksKeySource({ jwksUri: 'https://idp.example/keys' }, { fetchText: async () => text });
    for (const kid of ['k1.v2', 'a.b/c', '.x']) {
      expect(await reasonOf(source.getKeys({ alg: 'ES256', kid }))).toBe(
        "CONJ00035E Failed to decode token (3rdPartyError ='no applicable key found in the JSON Web Key Set')",
      );
    }
    for (const kid of ['a/./b', './a', 'a/..', 'a b']) {
      expect(await reasonOf(source.getKeys({ alg: 'ES256', kid }))).toBe(
        `CONJ00035E Failed to decode token (3rdPartyError ='invalid "kid" header value')`,
      );
    }
    await expect(source.getKeys({ alg: 'ES256', kid: 'k1' })).resolves.toHaveLength(1);
  });

  it('refetches exactly when the cached set reaches maxAgeMs, for getKeys and probe', async () => {
    const text = await jwksText();
    let now = 1_000_000;
    let fetches = 0;
    const source = new RemoteJwksKeySource(
      { jwksUri: 'https://idp.example/keys' },
      { fetchText: async () => (fetches++, text), now: () => now, maxAgeMs: 1000 },
    );
    await source.getKeys({ alg: 'ES256', kid: 'k1' });
    expect(fetches).toBe(1);
    now += 999;
    await source.getKeys({ alg: 'ES256', kid: 'k1' });
    expect(await source.probe()).toBe(1);
    expect(fetches).toBe(1);
    now += 1;
    await source.getKeys({ alg: 'ES256', kid: 'k1' });
    expect(fetches).toBe(2);
    now += 999;
    expect(await source.probe()).toBe(1);
    expect(fetches).toBe(2);
    now += 1;
    expect(await source.probe()).toBe(1);
    expect(fetches).toBe(3);
  });

  it('reports a failed retry fetch for an unknown kid as a fetch failure naming the URL', async () => {
    const text = await jwksText();
    let fail = false;
    const source = new RemoteJwksKeySource(
      { jwksUri: 'https://IDP.example/keys' },
      {
        fetchText: async () => {
          if (fail) throw new Error('boom');
          return text;
        },
      },
    );
    await source.getKeys({ alg: 'ES256', kid: 'k1' });
    fail = true;
    expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'unknown' }))).toBe(
      "CONJ00087E Failed to fetch JWKS from 'https://idp.example/keys'. Reason: 'boom'",
    );
  });

  it('names the refresh budget when the first load is refused by it, and when a retry is', async () => {
    const text = await jwksText();
    const failing = new RemoteJwksKeySource(
      { jwksUri: 'https://idp.example/keys' },
      { fetchText: async () => Promise.reject(new Error('down')), maxRefreshes: 1 },
    );
    expect(await reasonOf(failing.getKeys({ alg: 'ES256', kid: 'k1' }))).toBe(
      "CONJ00087E Failed to fetch JWKS from 'https://idp.example/keys'. Reason: 'down'",
    );
    expect(await reasonOf(failing.getKeys({ alg: 'ES256', kid: 'k1' }))).toBe(
      "CONJ00087E Failed to fetch JWKS from 'https://idp.example/keys'. Reason: 'JWKS refresh rate limit reached'",
    );
    const limited = new RemoteJwksKeySource({ jwksUri: 'https://idp.example/keys' }, { fetchText: async () => text, maxRefreshes: 1 });
    await limited.getKeys({ alg: 'ES256', kid: 'k1' });
    expect(await reasonOf(limited.getKeys({ alg: 'ES256', kid: 'other' }))).toBe(
      "CONJ00035E Failed to decode token (3rdPartyError ='no applicable key found in the JSON Web Key Set; JWKS refresh rate limit reached')",
    );
  });

  it('names what is wrong with a fetched JWKS', async () => {
    const cases: Array<[string, string]> = [
      ['{not json', "CONJ00093E Failed to convert HTTP response to JWKS type. Reason: 'invalid JSON'"],
      ['{"nokeys":[]}', "CONJ00088E JWKS not found in response: 'keys' member missing"],
      ['{"keys":[5]}', "CONJ00093E Failed to convert HTTP response to JWKS type. Reason: 'JSON Web Key Set malformed'"],
    ];
    for (const [body, reason] of cases) {
      const source = new RemoteJwksKeySource({ jwksUri: 'https://idp.example/keys' }, { fetchText: async () => body });
      expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'k1' })), body).toBe(reason);
    }
  });

  it('names a key that fails to import, and a fetch failure that is not an Error', async () => {
    const bad = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', kid: 'k1', alg: 'ES256', x: 'AAAA', y: 'AAAA' }] });
    const source = new RemoteJwksKeySource({ jwksUri: 'https://idp.example/keys' }, { fetchText: async () => bad });
    expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'k1' }))).toMatch(/^CONJ00035E Failed to decode token \(3rdPartyError ='.+'\)$/);
    expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'k1' }))).not.toContain('no applicable key');
    const weird = new RemoteJwksKeySource(
      { jwksUri: 'https://idp.example/keys' },
      {
        fetchText: async () => {
          throw 'not an error object';
        },
      },
    );
    expect(await reasonOf(weird.getKeys({ alg: 'ES256', kid: 'k1' }))).toBe(
      "CONJ00087E Failed to fetch JWKS from 'https://idp.example/keys'. Reason: 'unknown error'",
    );
  });

  it('names the variable when a remote source is built with a plain-http URL', async () => {
    expect(await reasonOf(() => new RemoteJwksKeySource({ jwksUri: 'http://idp.example/keys' }))).toBe(
      "CONJ00122E Invalid signing key settings: jwks-uri must use https (host 'idp.example' is not allowed over plain http)",
    );
    expect(await reasonOf(() => new RemoteJwksKeySource({ providerUri: 'http://idp.example' }))).toBe(
      "CONJ00122E Invalid signing key settings: provider-uri must use https (host 'idp.example' is not allowed over plain http)",
    );
  });

  describe('provider-uri discovery', () => {
    const provider = (providerUri: string, discovery: (url: URL) => string, jwks?: () => Promise<string>) => {
      const urls: string[] = [];
      const source = new RemoteJwksKeySource(
        { providerUri },
        {
          fetchText: async (url) => {
            urls.push(url.href);
            if (url.pathname.endsWith('/.well-known/openid-configuration')) return discovery(url);
            return jwks ? jwks() : jwksText();
          },
        },
      );
      return { source, urls };
    };

    it('strips every trailing slash of the provider URI before the well-known path, and compares issuers without them', async () => {
      const { source, urls } = provider('https://idp.example/realms/x//', () =>
        JSON.stringify({ issuer: 'https://idp.example/realms/x///', jwks_uri: 'https://idp.example/realms/x/certs' }),
      );
      await expect(source.getKeys({ alg: 'ES256', kid: 'k1' })).resolves.toHaveLength(1);
      expect(urls).toEqual(['https://idp.example/realms/x/.well-known/openid-configuration', 'https://idp.example/realms/x/certs']);
      const plain = provider('https://idp.example', () => JSON.stringify({ issuer: 'https://idp.example/', jwks_uri: 'https://idp.example/certs' }));
      await expect(plain.source.getKeys({ alg: 'ES256', kid: 'k1' })).resolves.toHaveLength(1);
    });

    it('names each discovery failure (CONJ00011E)', async () => {
      const failure = (reason: string) =>
        `CONJ00011E Failed to discover Identity Provider (Provider URI: 'https://idp.example'). Reason: '${reason}'`;
      const cases: Array<[string, string]> = [
        ['{not json', failure('response is not valid JSON')],
        ['{"issuer":"https://idp.example"}', failure('jwks_uri missing')],
        ['{"issuer":"https://evil.example","jwks_uri":"https://idp.example/certs"}', failure('issuer in discovery document does not match provider-uri')],
        ['{"jwks_uri":"http://idp.example/certs"}', failure('jwks_uri is not an allowed https URL')],
      ];
      for (const [doc, reason] of cases) {
        const { source } = provider('https://idp.example', () => doc);
        expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'k1' })), doc).toBe(reason);
      }
    });

    it('names the discovered JWKS URL, not the provider URI, when the key fetch fails', async () => {
      const { source } = provider(
        'https://idp.example',
        () => JSON.stringify({ jwks_uri: 'https://keys.idp.example/certs' }),
        async () => {
          throw new Error('refused');
        },
      );
      expect(await reasonOf(source.getKeys({ alg: 'ES256', kid: 'k1' }))).toBe(
        "CONJ00087E Failed to fetch JWKS from 'https://keys.idp.example/certs'. Reason: 'refused'",
      );
    });
  });
});


// ---------------------------------------------------------------------------
// service.ts: service ids, cross-account status, variables, private hosts, listing (fake dependencies)
// ---------------------------------------------------------------------------

describe('JwtAuthnService with fake dependencies: decisions before and around the key source', () => {
  /**
   * A service whose store, secrets, authorizer and audit are tables: every webservice exists,
   * `can` answers `allow`, and `variables` maps service id → variable → value (null: defined, no value).
   */
  function fakeService(opts: {
    enabledByConfig?: string[];
    allowPrivateHosts?: string[];
    variables?: Record<string, Record<string, string | null>>;
    allow?: boolean;
    enabledWebservices?: string[];
    configuredWebservices?: string[];
  }) {
    const calls: string[] = [];
    const fetched: Array<[string, boolean | undefined]> = [];
    const variableOf = (id: string) => /^acme:variable:conjur\/authn-jwt\/([^/]+)\/(.+)$/.exec(id);
    const deps = {
      config: {
        enabledByConfig: opts.enabledByConfig ?? [],
        allowHttpHosts: [],
        clockToleranceSec: 0,
        allowPrivateHosts: opts.allowPrivateHosts ?? [],
      },
      clock: { nowMs: fixedNow },
      store: {
        accounts: { exists: async (account: string) => account === 'acme' },
        authenticators: {
          enabled: async () => undefined,
          setEnabled: async (id: string) => void calls.push(`store.setEnabled ${id}`),
          enabledWebservices: async () => opts.enabledWebservices ?? [],
          configuredJwtWebservices: async () => opts.configuredWebservices ?? [],
        },
        graph: {
          getResource: async (id: string) => {
            const v = variableOf(id);
            if (v === null) return { id };
            return opts.variables?.[v[1]!]?.[v[2]!] !== undefined ? { id } : undefined;
          },
        },
        tx: async <T>(fn: () => Promise<T>) => fn(),
      },
      secrets: {
        readInternal: async (id: string) => {
          const v = variableOf(id)!;
          const value = opts.variables?.[v[1]!]?.[v[2]!];
          return value === null || value === undefined ? undefined : Buffer.from(value);
        },
      },
      authorizer: {
        can: async (role: string, privilege: string, resource: string) => {
          calls.push(`can ${role} ${privilege} ${resource}`);
          return opts.allow ?? true;
        },
        requireVisible: async (role: string, id: string) => (calls.push(`requireVisible ${role} ${id}`), { id }),
        canOn: async () => true,
      },
      audit: {
        record: async (event: { result: string; operation: string }) => void calls.push(`audit ${event.operation} ${event.result}`),
        recordInTransaction: async () => [],
        publish: () => undefined,
      },
      fetchText: async (url: URL, limits: FetchLimits) => {
        fetched.push([url.href, limits.denyPrivateAddresses]);
        return JSON.stringify({ keys: [(await theKey()).jwk] });
      },
    };
    return { service: new JwtAuthnService(deps as unknown as JwtServiceDeps), calls, fetched };
  }
  const actor = (account = 'acme'): Actor => ({
    account,
    roleId: `${account}:user:admin`,
    login: 'admin',
    request: { clientIp: '127.0.0.1' } as Actor['request'],
  });
  const remote = (uri: string) => ({ 'jwks-uri': uri, 'token-app-property': 'host' });

  it('refuses a service id outside [A-Za-z0-9._-]{1,128} even when the configuration enables it', async () => {
    const bad = ['a b', 'a/b', 'ok:x', 'x'.repeat(129)];
    const { service, fetched } = fakeService({
      enabledByConfig: bad.map((id) => `authn-jwt/${id}`),
      variables: Object.fromEntries(bad.map((id) => [id, remote('https://idp.example/keys')])),
    });
    for (const id of bad) {
      expect(await service.status(actor(), 'acme', id), id).toEqual({
        httpStatus: 500,
        body: { status: 'error', error: `CONJ00004E Authenticator 'authn-jwt/${id}' is not enabled` },
      });
      expect(await reasonOf(service.authenticate({ serviceId: id, account: 'acme', jwt: 'a.b.c', request: {} as Actor['request'] })), id).toBe(
        `CONJ00004E Authenticator 'authn-jwt/${id}' is not enabled`,
      );
    }
    expect(fetched).toEqual([]);
    // The longest and the widest valid ids pass the check.
    const ok = ['x'.repeat(128), 'A.z_0-9'];
    const good = fakeService({
      enabledByConfig: ok.map((id) => `authn-jwt/${id}`),
      variables: Object.fromEntries(ok.map((id) => [id, remote('https://idp.example/keys')])),
    });
    for (const id of ok) expect(await good.service.status(actor(), 'acme', id), id).toEqual({ httpStatus: 200, body: { status: 'ok' } });
  });

  it('answers an enable or disable of a malformed service id with 404 before any privilege check', async () => {
    const { service, calls } = fakeService({});
    for (const id of ['a b', 'a/b', 'x'.repeat(129)]) {
      const error = await thrown(service.setEnabled(actor(), 'acme', id, true));
      expect(error, id).toBeInstanceOf(CofferError);
      expect((error as CofferError).code).toBe('not_found');
      expect((error as CofferError).message).toBe(`Webservice 'conjur/authn-jwt/${id}' not found in account 'acme'`);
    }
    expect(calls).toEqual(['audit enable failure', 'audit enable failure', 'audit enable failure']);
    await service.setEnabled(actor(), 'acme', 'ci', true);
    expect(calls.slice(3)).toEqual(['requireVisible acme:user:admin acme:webservice:conjur/authn-jwt/ci', 'store.setEnabled acme:webservice:conjur/authn-jwt/ci']);
  });

  it("refuses the status of another account's service (403) without asking the authorizer", async () => {
    const { service, calls } = fakeService({ enabledByConfig: ['authn-jwt/ci'], variables: { ci: remote('https://idp.example/keys') } });
    expect(await service.status(actor('other'), 'acme', 'ci')).toEqual({
      httpStatus: 403,
      body: { status: 'error', error: "CONJ00006E 'admin' does not have 'read' privilege on acme:webservice:conjur/authn-jwt/ci/status" },
    });
    expect(calls).toEqual([]);
    expect(await service.status(actor(), 'acme', 'ci')).toEqual({ httpStatus: 200, body: { status: 'ok' } });
    expect(calls).toEqual(['can acme:user:admin read acme:webservice:conjur/authn-jwt/ci/status']);
  });

  it('reads a configuration variable that is defined without a value as missing (CONJ00037E)', async () => {
    const { service, fetched } = fakeService({
      enabledByConfig: ['authn-jwt/ci'],
      variables: { ci: { ...remote('https://idp.example/keys'), issuer: null } },
    });
    expect(await service.status(actor(), 'acme', 'ci')).toEqual({
      httpStatus: 500,
      body: { status: 'error', error: 'CONJ00037E Missing value for resource: acme:variable:conjur/authn-jwt/ci/issuer' },
    });
    expect(fetched).toEqual([]);
  });

  it('lets only the hosts named in allowPrivateHosts reach non-public addresses (case-insensitive, IPv6 unbracketed)', async () => {
    const services: Record<string, string> = {
      named: 'https://IDP.Internal/keys',
      v6: 'https://[::1]:8443/keys',
      other: 'https://idp.example/keys',
      otherv6: 'https://[::2]/keys',
    };
    const { service, fetched } = fakeService({
      enabledByConfig: Object.keys(services).map((id) => `authn-jwt/${id}`),
      allowPrivateHosts: ['idp.internal', '::1'],
      variables: Object.fromEntries(Object.entries(services).map(([id, uri]) => [id, remote(uri)])),
    });
    for (const id of Object.keys(services)) expect(await service.status(actor(), 'acme', id), id).toEqual({ httpStatus: 200, body: { status: 'ok' } });
    expect(fetched).toEqual([
      ['https://idp.internal/keys', false],
      ['https://[::1]:8443/keys', false],
      ['https://idp.example/keys', true],
      ['https://[::2]/keys', true],
    ]);
  });

  it('lists configured and enabled authenticators sorted, without status-only webservices or malformed ids', async () => {
    const { service } = fakeService({
      enabledByConfig: ['authn-jwt/b', 'authn', 'authn-jwt/a'],
      enabledWebservices: ['beta:webservice:conjur/authn-jwt/alpha', 'acme:webservice:conjur/authn-jwt/zed'],
      configuredWebservices: [
        'acme:webservice:conjur/authn-jwt/zed',
        'acme:webservice:conjur/authn-jwt/zed/status',
        'beta:webservice:conjur/authn-jwt/alpha',
        'beta:webservice:conjur/authn-jwt/ghost/status',
        'beta:webservice:conjur/authn-jwt/bad id',
      ],
    });
    expect(await service.listing()).toEqual({
      installed: ['authn', 'authn-jwt'],
      configured: ['authn', 'authn-jwt/alpha', 'authn-jwt/zed'],
      enabled: ['authn', 'authn-jwt/a', 'authn-jwt/alpha', 'authn-jwt/b', 'authn-jwt/zed'],
    });
  });
});

// ---------------------------------------------------------------------------
// service.ts: the server's status checks and audit events (in-process server)
// ---------------------------------------------------------------------------

describe('JwtAuthnService through the server: status reasons and audit events', () => {
  it('status names a missing webservice, a disabled service and an empty key set; enable/disable and authenticate are audited with their ids', async () => {
    const empty = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"keys":[]}');
    });
    await new Promise<void>((resolve) => empty.listen(0, '127.0.0.1', resolve));
    const emptyUrl = `http://127.0.0.1:${(empty.address() as AddressInfo).port}/jwks`;
    const { startTestServer } = await import('../helpers/server.js');
    const { Client } = await import('../helpers/http.js');
    const { allAuditRows } = await import('../helpers/audit-rows.js');
    const srv = await startTestServer({
      flags: { authenticators: 'authn,authn-jwt/ghost,authn-jwt/empty,authn-jwt/static', 'jwt-allow-http-hosts': '127.0.0.1' },
    });
    try {
      const A = srv.account;
      const api = new Client(srv.url, A);
      const admin = await api.login('admin', srv.adminKey);
      const key = await theKey();
      const policy = `
- !policy
  id: conjur/authn-jwt/ghost
  body:
  - !webservice status
- !policy
  id: conjur/authn-jwt/off
  body:
  - !webservice
  - !webservice status
- !policy
  id: conjur/authn-jwt/empty
  body:
  - !webservice
  - !webservice status
  - !variable jwks-uri
  - !variable token-app-property
- !policy
  id: conjur/authn-jwt/static
  body:
  - !webservice
  - !webservice status
  - !variable public-keys
  - !variable issuer
  - !variable token-app-property
- !host
  id: myapp
  annotations:
    authn-jwt/static/project: proj-1
- !permit
  role: !host myapp
  privilege: [ authenticate ]
  resource: !webservice conjur/authn-jwt/static
`;
      expect((await api.loadPolicy(admin, 'POST', 'root', policy)).status).toBe(201);
      const set = async (id: string, value: string) => expect((await api.setSecret(admin, id, value)).status).toBe(201);
      await set('conjur/authn-jwt/empty/jwks-uri', emptyUrl);
      await set('conjur/authn-jwt/empty/token-app-property', 'host');
      await set('conjur/authn-jwt/static/public-keys', JSON.stringify({ type: 'jwks', value: { keys: [key.jwk] } }));
      await set('conjur/authn-jwt/static/issuer', ISSUER);
      await set('conjur/authn-jwt/static/token-app-property', 'host');

      const status = async (service: string) => {
        const r = await api.request('GET', `/authn-jwt/${service}/${A}/status`, { token: admin });
        return [r.status, r.json] as const;
      };
      expect(await status('ghost')).toEqual([500, { status: 'error', error: "CONJ00005E Webservice 'authn-jwt/ghost' not found" }]);
      expect(await status('off')).toEqual([500, { status: 'error', error: "CONJ00004E Authenticator 'authn-jwt/off' is not enabled" }]);
      expect(await status('empty')).toEqual([500, { status: 'error', error: 'CONJ00035E the JSON Web Key Set holds no keys' }]);
      expect(await status('static')).toEqual([200, { status: 'ok' }]);

      const patch = (enabled: string) =>
        api.request('PATCH', `/authn-jwt/off/${A}`, {
          token: admin,
          body: `enabled=${enabled}`,
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        });
      expect((await patch('true')).status).toBe(204);
      expect((await patch('false')).status).toBe(204);

      const authn = (jwt: string, hostId?: string) =>
        api.request('POST', `/authn-jwt/static/${A}${hostId === undefined ? '' : `/${encodeURIComponent(hostId)}`}/authenticate`, {
          body: `jwt=${encodeURIComponent(jwt)}`,
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        });
      const good = await sign({ iat: Math.floor(srv.clock.nowMs() / 1000), exp: Math.floor(srv.clock.nowMs() / 1000) + 300, project: 'proj-1' });
      expect((await authn(good)).status).toBe(200);
      expect((await authn('not-a-jwt')).status).toBe(401);

      // Expired jti rows are purged at most once a minute, on a jti use; the urlHostId names a refused caller.
      const store = srv.server.vault.services.store;
      const purges: number[] = [];
      const purge = store.authenticators.purgeExpiredJti.bind(store.authenticators);
      store.authenticators.purgeExpiredJti = async (nowSec: number) => {
        purges.push(nowSec);
        return purge(nowSec);
      };
      const withJti = async (jti: string) => {
        const nowS = Math.floor(srv.clock.nowMs() / 1000);
        return authn(await sign({ iat: nowS, exp: nowS + 300, project: 'proj-1', jti }));
      };
      const t0 = srv.clock.nowMs();
      expect((await withJti('p-1')).status).toBe(200);
      expect(purges).toEqual([Math.floor(t0 / 1000)]);
      srv.clock.ms = t0 + 60_000;
      expect((await withJti('p-2')).status).toBe(200);
      expect(purges).toHaveLength(1);
      srv.clock.ms = t0 + 60_001;
      expect((await withJti('p-3')).status).toBe(200);
      expect((await withJti('p-4')).status).toBe(200);
      expect(purges).toEqual([Math.floor(t0 / 1000), Math.floor((t0 + 60_001) / 1000)]);
      expect((await authn('not-a-jwt', 'host/someone')).status).toBe(401);

      const rows = await allAuditRows(srv.server.vault.services.store);
      const toggles = rows.filter((r) => r.resource_id === `${A}:webservice:conjur/authn-jwt/off`);
      expect(toggles.map((r) => [r.action, r.operation, r.result])).toEqual([
        ['authenticator', 'enable', 'success'],
        ['authenticator', 'disable', 'success'],
      ]);
      const authns = rows.filter((r) => r.action === 'authn' && r.operation === 'authenticate' && r.details?.includes('authn-jwt'));
      expect(authns.map((r) => [r.result, r.role_id, r.resource_id])).toEqual([
        ['success', `${A}:host:myapp`, `${A}:host:myapp`],
        ['failure', null, `${A}:webservice:conjur/authn-jwt/static`],
        ...Array.from({ length: 4 }, () => ['success', `${A}:host:myapp`, `${A}:host:myapp`]),
        ['failure', null, `${A}:webservice:conjur/authn-jwt/static`],
      ]);
      expect(authns[6]!.message).toBe(
        `${A}:host/someone failed to authenticate with authenticator authn-jwt service ${A}:webservice:conjur/authn-jwt/static: ` +
          'CONJ00098E JWT identity configuration is invalid',
      );
      expect(authns[1]!.message).toBe(
        `an unidentified JWT bearer failed to authenticate with authenticator authn-jwt service ${A}:webservice:conjur/authn-jwt/static: ` +
          'CONJ00077E The request body does not contain JWT token',
      );
    } finally {
      await srv.close();
      await new Promise<void>((resolve) => empty.close(() => resolve()));
    }
  });
});
