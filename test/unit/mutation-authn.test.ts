/**
 * Unit-level boundaries of src/authn/ aimed at its mutants
 * (npm run mutation -- --module authn): API keys one character off, stored
 * hashes of the wrong length, a token at exactly `exp` and one second
 * before, the "not before" instant, password strength at each limit, the
 * TTL parser's edges and the failed-login throttle's window.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { Barrier, initSodium } from '../../src/secrets/barrier.js';
import { openStore } from '../../src/store/index.js';
import { TokenService } from '../../src/authn/tokens.js';
import { ApiKeyHasher, generateApiKey } from '../../src/authn/api-keys.js';
import { checkPasswordStrength, hashPassword, verifyPassword } from '../../src/authn/passwords.js';
import { parseTokenTtl } from '../../src/authn/ttl.js';
import { AuthThrottle } from '../../src/authn/throttle.js';

beforeAll(() => initSodium());

const T0 = 1_700_000_000_000;

async function tokens() {
  const store = openStore(join(tempDir('coffer-mut-authn-'), 'c.db'));
  const dataKey = randomBytes(32);
  const barrier = await Barrier.open(dataKey, store);
  let ms = T0;
  const svc = new TokenService({
    barrier, secrets: store.secrets, tokens: store.tokens, credentials: store.credentials,
    now: () => Math.floor(ms / 1000), nowMs: () => ms,
  });
  await svc.load();
  await store.accounts.insert('acme');
  await svc.createAccountKey('acme');
  return { svc, store, dataKey, setMs: (v: number) => (ms = v) };
}

function flip(s: string, i: number): string {
  const c = s[i] === 'a' ? 'b' : 'a';
  return s.slice(0, i) + c + s.slice(i + 1);
}

describe('API key verification', () => {
  const hasher = new ApiKeyHasher(randomBytes(32));
  const key = generateApiKey();
  const stored = hasher.hash(key);

  it('accepts the key and refuses it with one character changed at the start, middle or end', () => {
    expect(hasher.verify(key, stored)).toBe(true);
    for (const i of [0, Math.floor(key.length / 2), key.length - 1]) expect(hasher.verify(flip(key, i), stored)).toBe(false);
    expect(hasher.verify(key.slice(0, -1), stored)).toBe(false);
    expect(hasher.verify('', stored)).toBe(false);
  });

  it('refuses (without throwing) a missing or wrong-length stored hash', () => {
    expect(hasher.verify(key, null)).toBe(false);
    expect(hasher.verify(key, undefined)).toBe(false);
    expect(hasher.verify(key, stored.subarray(0, 31))).toBe(false);
    expect(hasher.verify(key, Buffer.concat([stored, Buffer.alloc(1)]))).toBe(false);
    expect(hasher.verify(key, Buffer.alloc(0))).toBe(false);
  });

  it('a different pepper gives a different hash', () => {
    expect(new ApiKeyHasher(randomBytes(32)).verify(key, stored)).toBe(false);
    expect(hasher.hash(key).equals(stored)).toBe(true);
    expect(stored).toHaveLength(32);
  });

  it("generates 256-bit keys in Conjur's form (8 Crockford base32 groups of a uint32)", () => {
    const keys = new Set(Array.from({ length: 200 }, generateApiKey));
    expect(keys.size).toBe(200);
    for (const k of keys) {
      expect(k).toMatch(/^[0-9a-hjkmnp-tv-z]+$/);
      expect(k.length).toBeGreaterThanOrEqual(8);
      expect(k.length).toBeLessThanOrEqual(56);
    }
    // A uint32 is at most 7 base32 digits: the mean is close to 7 per group.
    const mean = [...keys].reduce((n, k) => n + k.length, 0) / keys.size;
    expect(mean).toBeGreaterThan(52);
  });
});

describe('access token expiry and "not before"', () => {
  it('accepts a token one second before exp and refuses it at exactly exp (and after)', async () => {
    const { svc, setMs } = await tokens();
    const { json, claims } = await svc.issue('acme', 'alice', 60);
    expect(claims.exp).toBe(T0 / 1000 + 60);
    setMs(T0 + 59_999);
    expect((await svc.verify(json)).sub).toBe('alice');
    setMs(T0 + 60_000);
    await expect(svc.verify(json)).rejects.toThrow(/Invalid token/);
    setMs(T0 + 59_000);
    // Refused once expired: the cache entry was dropped, and the clock going back does not matter to exp.
    expect((await svc.verify(json)).sub).toBe('alice');
  });

  it('refuses a token issued at the not-before instant and accepts one issued right after it', async () => {
    const { svc, setMs } = await tokens();
    const first = await svc.issue('acme', 'alice', 600);
    const nb = svc.nextNotBefore('acme:user:alice', T0);
    expect(nb).toBe(T0);
    svc.setNotBefore('acme:user:alice', nb);
    await expect(svc.verify(first.json)).rejects.toThrow(/Invalid token/);
    // Same millisecond: the next token is stamped nb + 1 and is valid.
    const second = await svc.issue('acme', 'alice', 600);
    expect(Number.parseInt(second.claims.jti.split('-')[0]!, 16)).toBe(T0 + 1);
    expect((await svc.verify(second.json)).sub).toBe('alice');
    // A further change in the same millisecond moves not-before past it.
    expect(svc.nextNotBefore('acme:user:alice', T0)).toBe(T0 + 1);
    svc.setNotBefore('acme:user:alice', T0 + 1);
    await expect(svc.verify(second.json)).rejects.toThrow(/Invalid token/);
    setMs(T0 + 5);
    expect(svc.nextNotBefore('acme:user:alice', T0 + 5)).toBe(T0 + 5);
    expect((await svc.verify((await svc.issue('acme', 'alice', 600)).json)).sub).toBe('alice');
    // Other roles are not affected.
    expect((await svc.verify((await svc.issue('acme', 'bob', 600)).json)).sub).toBe('bob');
  });

  it('refuses a token without the exact claim set, with the wrong algorithm or an unknown key', async () => {
    const { svc } = await tokens();
    const { json } = await svc.issue('acme', 'alice', 600);
    const t = JSON.parse(json) as { protected: string; payload: string; signature: string };
    const header = JSON.parse(Buffer.from(t.protected, 'base64url').toString()) as { kid: string };
    const reheader = (h: unknown) => JSON.stringify({ ...t, protected: Buffer.from(JSON.stringify(h)).toString('base64url') });
    await expect(svc.verify(reheader({ alg: 'none', kid: header.kid }))).rejects.toThrow(/Invalid token/);
    await expect(svc.verify(reheader({ alg: 'EdDSA', kid: 'f'.repeat(64) }))).rejects.toThrow(/Invalid token/);
    await expect(svc.verify(reheader({ alg: 'EdDSA' }))).rejects.toThrow(/Invalid token/);
    await expect(svc.verify(JSON.stringify({ ...t, signature: Buffer.alloc(64).toString('base64url') }))).rejects.toThrow(/Invalid token/);
    await expect(svc.verify(JSON.stringify({ protected: t.protected, payload: t.payload }))).rejects.toThrow(/Invalid token/);
  });

  it('pruning expired revocations (past 10,000) keeps every live one', async () => {
    const { svc, store, setMs } = await tokens();
    const live = await svc.issue('acme', 'alice', 600);
    await svc.revoke(await svc.verify(live.json));
    const nowS = T0 / 1000;
    // 10,000 more revocations, half of them already expired: the next revoke prunes.
    // One transaction: each revoke awaits only its store calls, and 10,000
    // separately committed (fsynced) inserts would outlast the test timeout.
    await store.tx(async () => {
      for (let i = 0; i < 10_000; i++) {
        await svc.revoke({ account: 'acme', sub: 'x', roleId: 'acme:user:x', iat: nowS - 100, exp: i % 2 ? nowS + 600 : nowS - 1, jti: `j${i}` });
      }
    });
    const late = await svc.issue('acme', 'bob', 600);
    await svc.revoke(await svc.verify(late.json));
    await expect(svc.verify(live.json)).rejects.toThrow(/Invalid token/);
    await expect(svc.verify(late.json)).rejects.toThrow(/Invalid token/);
    setMs(T0 + 1000);
    await expect(svc.verify(live.json)).rejects.toThrow(/Invalid token/);
    expect((await svc.verify((await svc.issue('acme', 'carol', 600)).json)).sub).toBe('carol');
  });

  it('a revocation survives a restart of the service', async () => {
    const { svc, store, dataKey } = await tokens();
    const { json } = await svc.issue('acme', 'alice', 600);
    await svc.revoke(await svc.verify(json));
    const again = new TokenService({
      barrier: await Barrier.open(dataKey, store), secrets: store.secrets, tokens: store.tokens, credentials: store.credentials,
      now: () => T0 / 1000, nowMs: () => T0,
    });
    await again.load();
    await expect(again.verify(json)).rejects.toThrow(/Invalid token/);
    expect((await again.verify((await svc.issue('acme', 'alice', 600)).json)).sub).toBe('alice');
  });
});

describe('password strength (Conjur: 12–128 chars, 2 upper, 2 lower, 1 digit, 1 special, no newline)', () => {
  const ok = 'AAbb1!xxxxxx'; // exactly 12
  it('accepts each minimum exactly', () => {
    expect(ok).toHaveLength(12);
    expect(() => checkPasswordStrength(ok)).not.toThrow();
    expect(() => checkPasswordStrength(`AAbb1!${'x'.repeat(122)}`)).not.toThrow(); // 128
  });
  it('refuses one below each minimum and one above the maximum', () => {
    for (const bad of [
      'AAbb1!xxxxx', // 11
      `AAbb1!${'x'.repeat(123)}`, // 129
      'Abbb1!xxxxxx', // one upper-case
      'AABB1!XXXXXb', // one lower-case
      'AAbbx!xxxxxx', // no digit
      'AAbb1xxxxxxx', // no special
      'AAbb1!xxxxx\n', // newline
      'AAbb1!xxxxx\r',
    ]) expect(() => checkPasswordStrength(bad), JSON.stringify(bad)).toThrow(/CONJ00046E/);
  });
  it('verifies argon2id hashes; a wrong or missing password is refused', async () => {
    const hash = await hashPassword(ok);
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
    expect(await verifyPassword(hash, ok)).toBe(true);
    expect(await verifyPassword(hash, `${ok.slice(0, -1)}y`)).toBe(false);
    expect(await verifyPassword(null, ok)).toBe(false);
    expect(await verifyPassword(undefined, 'coffer-dummy-password-for-timing')).toBe(false);
    expect(await verifyPassword('not a hash', ok)).toBe(false);
  });
});

describe('token TTL edges', () => {
  it('reads seconds and durations, refusing zero, empty parts and garbage', () => {
    expect(parseTokenTtl(' 1 ')).toBe(1);
    expect(parseTokenTtl('PT1S')).toBe(1);
    expect(parseTokenTtl('PT1.9S')).toBe(1);
    expect(parseTokenTtl('P1DT1H1M1S')).toBe(86400 + 3600 + 60 + 1);
    expect(parseTokenTtl('pt2m')).toBe(120);
    for (const bad of ['P', 'PT', 'P1DT', 'PT0S', 'PT0.5S', '-5', '1.5', '', 'P1W', 'xPT1M', 'PT1Mx']) {
      expect(parseTokenTtl(bad), bad).toBeUndefined();
    }
  });
});

describe('failed-login throttle', () => {
  it('allows maxFailures - 1 failures, refuses at maxFailures until the window has passed, and success clears it', () => {
    let ms = T0;
    const clock = { nowMs: () => ms, now: () => Math.floor(ms / 1000) };
    const t = new AuthThrottle(clock as never, 3, 10_000);
    t.fail('k');
    ms += 1000;
    t.fail('k');
    expect(() => t.check('k')).not.toThrow();
    t.fail('k');
    let err: unknown;
    try {
      t.check('k');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'too_many_requests', retryAfter: 9 });
    expect(() => t.check('other')).not.toThrow();
    // The first failure leaves the window at exactly T0 + 10 s.
    ms = T0 + 10_000;
    expect(() => t.check('k')).not.toThrow();
    t.fail('k');
    expect(() => t.check('k')).toThrow();
    t.succeed('k');
    expect(() => t.check('k')).not.toThrow();
  });

  it('Retry-After is at least 1 second', () => {
    let ms = T0;
    const t = new AuthThrottle({ nowMs: () => ms, now: () => 0 } as never, 1, 1000);
    t.fail('k');
    ms += 999;
    expect(() => t.check('k')).toThrow(expect.objectContaining({ retryAfter: 1 }));
  });
});
