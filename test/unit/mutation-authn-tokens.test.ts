/**
 * TokenService (src/authn/tokens.ts) beyond one node's happy path, aimed at
 * the mutants the `authn` module's tests left (npm run mutation -- --module
 * authn): the signing key sealed to its account, the "loaded" guard, what
 * other nodes' notices do (noteRevoked, not-before times loaded at start and
 * merged with the ones already in memory), the store re-check of a dynamic
 * fetch (isRevokedNow), the issue time read from the jti's millisecond
 * prefix, the audit reason of a refusal and the bound of the verified-token
 * cache.
 *
 * "Another node" is a second TokenService over the same SQLite store, with a
 * clock of its own: what PostgreSQL's change notices deliver to a real node
 * is called here by hand (services.ts subscribes noteRevoked, setNotBefore and
 * load to them).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { removeTempDirs, tempDir } from '../helpers/tmp.js';
import { Barrier, initSodium } from '../../src/secrets/barrier.js';
import { openStore, type SqliteStore } from '../../src/store/index.js';
import { TokenService, type TokenClaims } from '../../src/authn/tokens.js';
import { CofferError } from '../../src/errors.js';

beforeAll(() => initSodium());

/** A whole second, so a token's iat * 1000 is T0 while its jti can say T0 + a few ms. */
const T0 = 1_700_000_000_000;
const S0 = T0 / 1000;
const ALICE = 'acme:user:alice';
/** The verified-token cache's bound (MAX_CACHE in src/authn/tokens.ts, not exported). */
const MAX_CACHE = 100_000;
const NOT_BEFORE = "token issued before the role's credentials changed";

const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  removeTempDirs();
});

/** One database; `node()` starts a TokenService over it with its own clock (a Coffer node). */
async function world() {
  const store = openStore(join(tempDir('coffer-mut-tokens-'), 'c.db'));
  stores.push(store);
  const dataKey = randomBytes(32);
  await store.accounts.insert('acme');
  const node = async (opts: { load?: boolean } = {}) => {
    let ms = T0;
    const barrier = await Barrier.open(dataKey, store);
    const svc = new TokenService({
      barrier, secrets: store.secrets, tokens: store.tokens, credentials: store.credentials,
      now: () => Math.floor(ms / 1000), nowMs: () => ms,
    });
    if (opts.load !== false) await svc.load();
    return { svc, barrier, setMs: (v: number) => (ms = v) };
  };
  const a = await node();
  await a.svc.createAccountKey('acme');
  /** A credential change of `roleId` another node stored (API-key rotation): its tokens_not_before row. */
  const storeNotBefore = async (roleId: string, atMs: number) => {
    if (await store.credentials.get(roleId)) {
      await store.credentials.setApiKey(roleId, Buffer.alloc(32, 1), Buffer.alloc(8, 2), atMs);
    } else {
      await store.graph.insertRole(roleId, 'acme', 'user', roleId.split(':')[2]!, null);
      await store.credentials.insert(roleId, Buffer.alloc(32, 1), Buffer.alloc(8, 2), [], atMs);
    }
  };
  return { store, node, a, storeNotBefore };
}

/** Issued by `n` at `ms` (its jti then carries `ms`, unless the role's not-before is later). */
async function issueAt(n: { svc: TokenService; setMs: (v: number) => number }, ms: number, login = 'alice', ttl = 600) {
  n.setMs(ms);
  const t = await n.svc.issue('acme', login, ttl);
  n.setMs(T0);
  return t;
}

const jtiMs = (jti: string) => Number.parseInt(jti.split('-')[0]!, 16);

/** The 401 every refused token gets, with its audit reason. */
async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(CofferError);
  expect(err).toMatchObject({ code: 'unauthorized', message: 'Unauthorized: Invalid token' });
  return (err as CofferError).auditReason;
}

describe('the signing key is sealed to its account', () => {
  it("another account's sealed key moved into an account's row is refused, not used to sign", async () => {
    const { store, node, a } = await world();
    await store.accounts.insert('other');
    await a.svc.createAccountKey('other');
    const acme = (await store.secrets.signingKey('acme'))!;
    const other = (await store.secrets.signingKey('other'))!;
    await store.secrets.resealSigningKey('other', acme.key_version, acme.nonce, acme.ciphertext);
    for (const n of [a, await node()]) {
      const err = await n.svc.issue('other', 'alice', 60).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'internal_error', message: expect.stringMatching(/integrity check failed/) });
    }
    // Its own blob back in place, the account signs again (and acme never stopped).
    await store.secrets.resealSigningKey('other', other.key_version, other.nonce, other.ciphertext);
    const b = await node();
    expect((await b.svc.verify((await b.svc.issue('other', 'alice', 60)).json)).account).toBe('other');
    expect((await a.svc.verify((await a.svc.issue('acme', 'alice', 60)).json)).account).toBe('acme');
  });
});

describe('before load()', () => {
  it('issue and verify fail closed; once loaded, a token revoked in the store is refused', async () => {
    const { node, a } = await world();
    const revoked = await a.svc.issue('acme', 'alice', 600);
    await a.svc.revoke(await a.svc.verify(revoked.json));
    const valid = await a.svc.issue('acme', 'bob', 600);
    const b = await node({ load: false });
    await expect(b.svc.issue('acme', 'alice', 600)).rejects.toThrow(/TokenService\.load\(\) must complete/);
    await expect(b.svc.verify(revoked.json)).rejects.toThrow(/TokenService\.load\(\) must complete/);
    await expect(b.svc.verify(valid.json)).rejects.toThrow(/TokenService\.load\(\) must complete/);
    await b.svc.load();
    expect(await refusal(b.svc.verify(revoked.json))).toBe('token revoked');
    expect((await b.svc.verify(valid.json)).sub).toBe('bob');
    expect((await b.svc.verify((await b.svc.issue('acme', 'alice', 600)).json)).sub).toBe('alice');
  });
});

describe('the audit reason of a refused token', () => {
  it('names what was wrong: expired, revoked, issued before a credential change, bad signature', async () => {
    const { a } = await world();
    const short = await a.svc.issue('acme', 'alice', 5);
    const revoked = await a.svc.issue('acme', 'bob', 600);
    await a.svc.revoke(await a.svc.verify(revoked.json));
    const old = await a.svc.issue('acme', 'carol', 600);
    a.svc.setNotBefore('acme:user:carol', T0);
    expect(await refusal(a.svc.verify(revoked.json))).toBe('token revoked');
    expect(await refusal(a.svc.verify(old.json))).toBe(NOT_BEFORE);
    const t = JSON.parse(short.json) as Record<string, string>;
    expect(await refusal(a.svc.verify(JSON.stringify({ ...t, signature: Buffer.alloc(64).toString('base64url') })))).toBe('bad signature');
    expect(await refusal(a.svc.verify('{'))).toBe('token is not JSON');
    a.setMs(T0 + 5000);
    expect(await refusal(a.svc.verify(short.json))).toBe('token expired');
  });
});

describe('the issue time is the jti\'s milliseconds, not iat', () => {
  it('a not-before later in the same second than the issue keeps the token; one at its millisecond refuses it', async () => {
    const { node, a } = await world();
    const t = await issueAt(a, T0 + 400);
    expect(t.claims.iat).toBe(S0);
    expect(jtiMs(t.claims.jti)).toBe(T0 + 400);
    const b = await node();
    const claims = await b.svc.verify(t.json);
    for (const n of [a, b]) {
      n.svc.setNotBefore(ALICE, T0 + 399);
      expect((await n.svc.verify(t.json)).jti).toBe(t.claims.jti);
      expect(await n.svc.isRevokedNow(claims)).toBe(false);
      n.svc.setNotBefore(ALICE, T0 + 400);
      expect(await refusal(n.svc.verify(t.json))).toBe(NOT_BEFORE);
      expect(await n.svc.isRevokedNow(claims)).toBe(true);
    }
  });

  it('the same in the store: a not-before stored later in the same second than the issue keeps the token', async () => {
    const { node, a, storeNotBefore } = await world();
    const t = await issueAt(a, T0 + 400);
    await storeNotBefore(ALICE, T0 + 399);
    expect(await a.svc.isRevokedNow(t.claims)).toBe(false);
    expect((await (await node()).svc.verify(t.json)).sub).toBe('alice');
    await storeNotBefore(ALICE, T0 + 400);
    expect(await a.svc.isRevokedNow(t.claims)).toBe(true);
    expect(await refusal((await node()).svc.verify(t.json))).toBe(NOT_BEFORE);
  });

  it('a signed token whose jti has no millisecond prefix falls back to iat (whole seconds)', async () => {
    const { store, a } = await world();
    const row = (await store.secrets.signingKey('acme'))!;
    const der = await a.barrier.decrypt({ keyVersion: row.key_version, nonce: row.nonce, ciphertext: row.ciphertext }, 'signing-key:acme');
    const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    const protectedPart = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: row.kid })).toString('base64url');
    // Hex digits and no dash: a parser that dropped the "dash > 0" test would read 0xabcde / 16 as the issue time.
    const payload = Buffer.from(JSON.stringify({ sub: 'alice', iat: S0, exp: S0 + 600, jti: 'abcdef' })).toString('base64');
    const signature = sign(null, Buffer.from(`${protectedPart}.${payload}`), key).toString('base64url');
    const json = JSON.stringify({ protected: protectedPart, payload, signature });
    const claims = await a.svc.verify(json);
    expect(claims).toMatchObject({ sub: 'alice', iat: S0, jti: 'abcdef' });
    a.svc.setNotBefore(ALICE, T0 - 1);
    expect((await a.svc.verify(json)).sub).toBe('alice');
    expect(await a.svc.isRevokedNow(claims)).toBe(false);
    // The prefix is the text before the first dash only: ' ' is no number (read whole, ' -5' would be -5 ms).
    expect(await a.svc.isRevokedNow({ ...claims, jti: ' -5' })).toBe(false);
    a.svc.setNotBefore(ALICE, T0);
    expect(await refusal(a.svc.verify(json))).toBe(NOT_BEFORE);
    expect(await a.svc.isRevokedNow(claims)).toBe(true);
  });
});

describe("other nodes' notices", () => {
  it('noteRevoked: a token another node revoked is refused here once noted (before that only isRevokedNow, asking the store, sees it)', async () => {
    const { node, a } = await world();
    const t = await a.svc.issue('acme', 'alice', 600);
    const b = await node();
    const claims = await b.svc.verify(t.json);
    expect(await b.svc.isRevokedNow(claims)).toBe(false);
    await a.svc.revoke(await a.svc.verify(t.json));
    expect(await b.svc.isRevokedNow(claims)).toBe(true);
    b.svc.noteRevoked(t.claims.jti, t.claims.exp);
    expect(await refusal(b.svc.verify(t.json))).toBe('token revoked');
    expect(await refusal(a.svc.verify(t.json))).toBe('token revoked');
    // Other tokens of the role are not affected.
    expect((await b.svc.verify((await a.svc.issue('acme', 'alice', 600)).json)).sub).toBe('alice');
  });

  it('a noted revocation is kept in memory: refused even though the store has no row for it', async () => {
    const { node, a, store } = await world();
    const t = await a.svc.issue('acme', 'alice', 600);
    const b = await node();
    const claims = await b.svc.verify(t.json);
    b.svc.noteRevoked(t.claims.jti, S0 + 1);
    expect(await store.tokens.isRevoked(t.claims.jti)).toBe(false);
    expect(await refusal(b.svc.verify(t.json))).toBe('token revoked');
    expect(await b.svc.isRevokedNow(claims)).toBe(true);
    expect((await a.svc.verify(t.json)).sub).toBe('alice');
  });

  it('a notice whose expiry is not in the future is dropped', async () => {
    const { node, a } = await world();
    const t = await a.svc.issue('acme', 'alice', 600);
    const b = await node();
    const claims = await b.svc.verify(t.json);
    b.svc.noteRevoked(t.claims.jti, S0 - 1);
    b.svc.noteRevoked(t.claims.jti, S0);
    expect((await b.svc.verify(t.json)).sub).toBe('alice');
    expect(await b.svc.isRevokedNow(claims)).toBe(false);
    b.svc.noteRevoked(t.claims.jti, S0 + 1);
    expect(await refusal(b.svc.verify(t.json))).toBe('token revoked');
  });

  it("not-before times another node stored are loaded at start: the role's older tokens are refused, later ones kept", async () => {
    const { node, a, storeNotBefore } = await world();
    const before = await issueAt(a, T0 + 10);
    const bob = await issueAt(a, T0 + 10, 'bob');
    await storeNotBefore(ALICE, T0 + 10);
    // a was not told: its next token carries T0 + 11 (the change's millisecond + 1 only when known).
    const after = await issueAt(a, T0 + 11);
    expect(jtiMs(after.claims.jti)).toBe(T0 + 11);
    const b = await node();
    expect(b.svc.notBeforeOf(ALICE)).toBe(T0 + 10);
    expect(b.svc.notBeforeOf('acme:user:bob')).toBeUndefined();
    expect(await refusal(b.svc.verify(before.json))).toBe(NOT_BEFORE);
    expect((await b.svc.verify(after.json)).sub).toBe('alice');
    expect((await b.svc.verify(bob.json)).sub).toBe('bob');
    // b stamps its own next token past the loaded time.
    expect(jtiMs((await issueAt(b, T0 + 10)).claims.jti)).toBe(T0 + 11);
  });

  it('load() keeps the later of a not-before already in memory and the stored one (a notice during the load)', async () => {
    const { node, a, storeNotBefore } = await world();
    const at10 = await issueAt(a, T0 + 10);
    const at11 = await issueAt(a, T0 + 11);
    const at15 = await issueAt(a, T0 + 15);
    const at16 = await issueAt(a, T0 + 16);
    await storeNotBefore(ALICE, T0 + 10);
    // Memory newer than the row: kept.
    const newer = await node({ load: false });
    newer.svc.setNotBefore(ALICE, T0 + 15);
    await newer.svc.load();
    expect(newer.svc.notBeforeOf(ALICE)).toBe(T0 + 15);
    expect(await refusal(newer.svc.verify(at15.json))).toBe(NOT_BEFORE);
    expect((await newer.svc.verify(at16.json)).sub).toBe('alice');
    // Memory older than the row: the row wins.
    const older = await node({ load: false });
    older.svc.setNotBefore(ALICE, T0 + 5);
    await older.svc.load();
    expect(older.svc.notBeforeOf(ALICE)).toBe(T0 + 10);
    expect(await refusal(older.svc.verify(at10.json))).toBe(NOT_BEFORE);
    expect((await older.svc.verify(at11.json)).sub).toBe('alice');
    // A reload (the 'tokens' notice) moves it forward to a newer row, never back.
    await storeNotBefore(ALICE, T0 + 20);
    await older.svc.load();
    expect(older.svc.notBeforeOf(ALICE)).toBe(T0 + 20);
    await storeNotBefore(ALICE, T0 + 1);
    await older.svc.load();
    expect(older.svc.notBeforeOf(ALICE)).toBe(T0 + 20);
  });
});

describe('isRevokedNow (the re-check of a dynamic fetch): memory, then the store', () => {
  it('a role without a credentials row, nothing revoked: false', async () => {
    const { node, a, store } = await world();
    const t = await a.svc.issue('acme', 'alice', 600);
    expect(await store.credentials.get(ALICE)).toBeUndefined();
    expect(await a.svc.isRevokedNow(t.claims)).toBe(false);
    expect(await (await node()).svc.isRevokedNow(t.claims)).toBe(false);
  });

  it('a stored not-before of 0 means "never changed": not even a token stamped at the epoch counts as revoked', async () => {
    const { node, storeNotBefore } = await world();
    const epoch: TokenClaims = { account: 'acme', sub: 'zed', roleId: 'acme:user:zed', iat: 0, exp: S0 + 600, jti: '0-abc' };
    const b = await node();
    expect(await b.svc.isRevokedNow(epoch)).toBe(false);
    await storeNotBefore('acme:user:zed', 0);
    expect(await b.svc.isRevokedNow(epoch)).toBe(false);
    expect(await b.svc.isRevokedNow({ ...epoch, jti: 'no-ms-prefix' })).toBe(false);
  });

  it("another node's stored not-before counts at its millisecond and before, not after; a stored 0 never", async () => {
    const { node, a, storeNotBefore } = await world();
    const at100 = await issueAt(a, T0 + 100);
    const at101 = await issueAt(a, T0 + 101);
    await storeNotBefore(ALICE, 0);
    const b = await node();
    for (const t of [at100, at101]) expect(await b.svc.isRevokedNow(t.claims)).toBe(false);
    await storeNotBefore(ALICE, T0 + 100);
    // b has no notice: memory says nothing, the store decides.
    expect(b.svc.notBeforeOf(ALICE)).toBeUndefined();
    expect(await b.svc.isRevokedNow(at100.claims)).toBe(true);
    expect(await b.svc.isRevokedNow(at101.claims)).toBe(false);
    expect(await b.svc.isRevokedNow((await issueAt(a, T0 + 99)).claims)).toBe(true);
  });

  it("this node's own not-before (memory only): true at its millisecond and before, false after", async () => {
    const { a, store } = await world();
    const at200 = await issueAt(a, T0 + 200, 'bob');
    const at201 = await issueAt(a, T0 + 201, 'bob');
    a.svc.setNotBefore('acme:user:bob', T0 + 200);
    expect(await store.credentials.get('acme:user:bob')).toBeUndefined();
    expect(await a.svc.isRevokedNow(at200.claims)).toBe(true);
    expect(await a.svc.isRevokedNow(at201.claims)).toBe(false);
    // The other roles are not affected by it.
    expect(await a.svc.isRevokedNow((await issueAt(a, T0 + 200, 'alice')).claims)).toBe(false);
  });
});

describe('the verified-token cache is bounded', () => {
  /** The private cache (hash of the presented bytes → claims): its size is the only trace of the pruning. */
  const cacheOf = (svc: TokenService) => (svc as unknown as { verified: Map<string, TokenClaims> }).verified;
  const filler = (exp: number, i: number): TokenClaims => ({ account: 'acme', sub: 'f', roleId: 'acme:user:f', iat: S0, exp, jti: `f-${i}` });

  it('at the bound, expired entries go first; a cache still full is emptied; verification is unchanged throughout', async () => {
    const { a } = await world();
    // Entries that 100,000 distinct presented tokens would leave (filled by hand: 100,000 real signature checks
    // take about 8 s here, and every mutant of verify() would run them).
    const valid = await a.svc.issue('acme', 'alice', 600);
    const revoked = await a.svc.issue('acme', 'bob', 600);
    const short = await a.svc.issue('acme', 'carol', 10);
    await a.svc.verify(valid.json);
    await a.svc.revoke(await a.svc.verify(revoked.json));
    await a.svc.verify(short.json);
    const cache = cacheOf(a.svc);
    expect(cache.size).toBe(3);
    const EXPIRING = 60_000;
    for (let i = 0; i < EXPIRING; i++) cache.set(`expiring-${i}`, filler(S0 + 10, i));
    for (let i = 0; cache.size < MAX_CACHE - 1; i++) cache.set(`live-${i}`, filler(S0 + 600, i));
    // Exactly when the short token and the expiring entries expire.
    a.setMs(T0 + 10_000);
    // One below the bound: added without pruning.
    const first = await a.svc.issue('acme', 'dave', 600);
    expect((await a.svc.verify(first.json)).sub).toBe('dave');
    expect(cache.size).toBe(MAX_CACHE);
    // At the bound: the expired entries (the short token's included) are dropped, the live ones kept.
    const second = await a.svc.issue('acme', 'erin', 600);
    expect((await a.svc.verify(second.json)).sub).toBe('erin');
    expect(cache.size).toBe(MAX_CACHE - EXPIRING - 1 + 1);
    expect((await a.svc.verify(valid.json)).sub).toBe('alice');
    expect(await refusal(a.svc.verify(revoked.json))).toBe('token revoked');
    expect(await refusal(a.svc.verify(short.json))).toBe('token expired');
    expect(cache.size).toBe(MAX_CACHE - EXPIRING);
    // Full again of live entries only: the next new token empties the cache and is the only entry.
    for (let i = 0; cache.size < MAX_CACHE; i++) cache.set(`more-${i}`, filler(S0 + 600, i));
    // A token found in the cache costs nothing, not even a pruning.
    expect((await a.svc.verify(valid.json)).sub).toBe('alice');
    expect(cache.size).toBe(MAX_CACHE);
    const third = await a.svc.issue('acme', 'frank', 600);
    expect((await a.svc.verify(third.json)).sub).toBe('frank');
    expect(cache.size).toBe(1);
    expect((await a.svc.verify(valid.json)).sub).toBe('alice');
    expect(await refusal(a.svc.verify(revoked.json))).toBe('token revoked');
    expect((await a.svc.verify(first.json)).sub).toBe('dave');
    expect(cache.size).toBe(4);
  });
});

describe('revocations are pruned past 10,000', () => {
  /** The private revocation set (jti → expiry, unix s). */
  const revokedOf = (svc: TokenService) => (svc as unknown as { revoked: Map<string, number> }).revoked;

  it('the revoke that makes it 10,001 drops the expired ones, in memory and in the store; the live ones stay refused', async () => {
    const { store, a } = await world();
    const storedExpired = () => store.db.prepare('SELECT count(*) AS n FROM revoked_tokens WHERE expires_at <= ?').get(S0) as { n: number };
    // Revocations already expired (exactly now) and live ones, as earlier revokes and notices leave them.
    await store.tokens.revoke('stored-expired-1', S0);
    await store.tokens.revoke('stored-expired-2', S0 - 60);
    const revoked = revokedOf(a.svc);
    const EXPIRED = 5_000;
    for (let i = 0; i < EXPIRED; i++) revoked.set(`expired-${i}`, S0);
    for (let i = 0; revoked.size < 9_999; i++) revoked.set(`live-${i}`, S0 + 600);
    const first = await a.svc.issue('acme', 'alice', 600);
    const second = await a.svc.issue('acme', 'bob', 600);
    // The 10,000th: nothing pruned.
    await a.svc.revoke(await a.svc.verify(first.json));
    expect(revoked.size).toBe(10_000);
    expect(storedExpired().n).toBe(2);
    // The 10,001st: the expired ones go, from memory and from the store.
    await a.svc.revoke(await a.svc.verify(second.json));
    expect(revoked.size).toBe(10_001 - EXPIRED);
    expect(revoked.has('live-0')).toBe(true);
    expect(revoked.has('expired-0')).toBe(false);
    expect(storedExpired().n).toBe(0);
    expect(await store.tokens.isRevoked(first.claims.jti)).toBe(true);
    expect(await refusal(a.svc.verify(first.json))).toBe('token revoked');
    expect(await refusal(a.svc.verify(second.json))).toBe('token revoked');
    expect((await a.svc.verify((await a.svc.issue('acme', 'carol', 600)).json)).sub).toBe('carol');
  });
});
