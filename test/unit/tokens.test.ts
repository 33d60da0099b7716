import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { randomBytes } from 'node:crypto';
import { Barrier, initSodium } from '../../src/secrets/barrier.js';
import { openStore } from '../../src/store/index.js';
import { TokenService } from '../../src/authn/tokens.js';
import { generateApiKey, ApiKeyHasher } from '../../src/authn/api-keys.js';
import { parseTokenTtl } from '../../src/authn/ttl.js';

beforeAll(() => initSodium());

function setup() {
  const store = openStore(join(tempDir('coffer-tok-'), 'c.db'));
  const barrier = Barrier.open(randomBytes(32), store.keyring);
  let ms = 1_700_000_000_000;
  const svc = new TokenService({
    barrier,
    secrets: store.secrets,
    tokens: store.tokens,
    credentials: store.credentials,
    now: () => Math.floor(ms / 1000),
    nowMs: () => ms,
  });
  store.accounts.insert('acme');
  svc.createAccountKey('acme');
  return { svc, store, advance: (s: number) => (ms += s * 1000) };
}

describe('access tokens', () => {
  it("have Conjur's JSON shape with a padded standard-base64 payload", () => {
    const { svc } = setup();
    const { json } = svc.issue('acme', 'host/ci/01', 480);
    const t = JSON.parse(json);
    expect(Object.keys(t).sort()).toEqual(['payload', 'protected', 'signature']);
    expect(t.payload).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(t.payload.length % 4).toBe(0);
    const claims = JSON.parse(Buffer.from(t.payload, 'base64').toString());
    expect(claims.sub).toBe('host/ci/01');
    expect(claims.exp - claims.iat).toBe(480);
    expect(typeof claims.jti).toBe('string');
  });

  it('verify fields, not bytes: a re-serialized token is accepted', () => {
    const { svc } = setup();
    const { json } = svc.issue('acme', 'alice', 480);
    const reserialized = JSON.stringify(JSON.parse(json), null, 2);
    expect(svc.verify(reserialized).roleId).toBe('acme:user:alice');
  });

  it('refuses tampered, expired, revoked and superseded tokens', () => {
    const { svc, advance } = setup();
    const { json, claims } = svc.issue('acme', 'alice', 60);
    const t = JSON.parse(json);
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'admin', account: undefined, roleId: undefined })).toString('base64');
    expect(() => svc.verify(JSON.stringify({ ...t, payload: forged }))).toThrow(/Invalid token/);
    expect(() => svc.verify('{"protected":1}')).toThrow(/Invalid token/);
    expect(() => svc.verify('not json')).toThrow(/Invalid token/);
    const other = svc.issue('acme', 'bob', 600);
    svc.revoke(svc.verify(other.json));
    expect(() => svc.verify(other.json)).toThrow(/Invalid token/);
    const third = svc.issue('acme', 'carol', 600);
    advance(1);
    svc.setNotBefore('acme:user:carol', 1_700_000_000_500);
    expect(() => svc.verify(third.json)).toThrow(/Invalid token/);
    expect(svc.verify(json).sub).toBe('alice');
    advance(60);
    expect(() => svc.verify(json)).toThrow(/Invalid token/);
  });
});

describe('API keys', () => {
  it("look like Conjur's (lowercase Crockford base32, ~50-56 chars) and verify in constant-time form", () => {
    const key = generateApiKey();
    expect(key).toMatch(/^[0-9a-hjkmnp-tv-z]{40,56}$/);
    const hasher = new ApiKeyHasher(randomBytes(32));
    const stored = hasher.hash(key);
    expect(hasher.verify(key, stored)).toBe(true);
    expect(hasher.verify(`${key}x`, stored)).toBe(false);
    expect(hasher.verify(key, undefined)).toBe(false);
  });
});

describe('token TTL annotation', () => {
  it('accepts seconds and ISO 8601 durations', () => {
    expect(parseTokenTtl('120')).toBe(120);
    expect(parseTokenTtl('PT5M')).toBe(300);
    expect(parseTokenTtl('PT1H30M')).toBe(5400);
    expect(parseTokenTtl('P1D')).toBe(86400);
    expect(parseTokenTtl('soon')).toBeUndefined();
    expect(parseTokenTtl('0')).toBeUndefined();
  });
});
