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

async function setup() {
  const store = openStore(join(tempDir('coffer-tok-'), 'c.db'));
  const barrier = await Barrier.open(randomBytes(32), store);
  let ms = 1_700_000_000_000;
  const svc = new TokenService({
    barrier,
    secrets: store.secrets,
    tokens: store.tokens,
    credentials: store.credentials,
    now: () => Math.floor(ms / 1000),
    nowMs: () => ms,
  });
  await svc.load();
  await store.accounts.insert('acme');
  await svc.createAccountKey('acme');
  return { svc, store, advance: (s: number) => (ms += s * 1000) };
}

describe('access tokens', () => {
  it("have Conjur's JSON shape with a padded standard-base64 payload", async () => {
    const { svc } = await setup();
    const { json } = await svc.issue('acme', 'host/ci/01', 480);
    const t = JSON.parse(json);
    expect(Object.keys(t).sort()).toEqual(['payload', 'protected', 'signature']);
    expect(t.payload).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(t.payload.length % 4).toBe(0);
    const claims = JSON.parse(Buffer.from(t.payload, 'base64').toString());
    expect(claims.sub).toBe('host/ci/01');
    expect(claims.exp - claims.iat).toBe(480);
    expect(typeof claims.jti).toBe('string');
  });

  it('verify fields, not bytes: a re-serialized token is accepted', async () => {
    const { svc } = await setup();
    const { json } = await svc.issue('acme', 'alice', 480);
    const reserialized = JSON.stringify(JSON.parse(json), null, 2);
    expect((await svc.verify(reserialized)).roleId).toBe('acme:user:alice');
  });

  it('refuses tampered, expired, revoked and superseded tokens', async () => {
    const { svc, advance } = await setup();
    const { json, claims } = await svc.issue('acme', 'alice', 60);
    const t = JSON.parse(json);
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'admin', account: undefined, roleId: undefined })).toString('base64');
    await expect(svc.verify(JSON.stringify({ ...t, payload: forged }))).rejects.toThrow(/Invalid token/);
    await expect(svc.verify('{"protected":1}')).rejects.toThrow(/Invalid token/);
    await expect(svc.verify('not json')).rejects.toThrow(/Invalid token/);
    const other = await svc.issue('acme', 'bob', 600);
    await svc.revoke(await svc.verify(other.json));
    await expect(svc.verify(other.json)).rejects.toThrow(/Invalid token/);
    const third = await svc.issue('acme', 'carol', 600);
    advance(1);
    svc.setNotBefore('acme:user:carol', 1_700_000_000_500);
    await expect(svc.verify(third.json)).rejects.toThrow(/Invalid token/);
    expect((await svc.verify(json)).sub).toBe('alice');
    advance(60);
    await expect(svc.verify(json)).rejects.toThrow(/Invalid token/);
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
