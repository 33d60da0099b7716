/**
 * Access tokens in Conjur's JSON-serialized JWS shape:
 *   {"protected": b64url(header), "payload": b64(claims), "signature": b64url(sig)}
 * `payload` uses padded standard base64 because conjur-api-go decodes it that
 * way. Claims are `sub`, `iat`, `exp`, `jti`. Signed with a per-account
 * Ed25519 key whose private half is stored encrypted by the barrier.
 *
 * Verification checks fields, not bytes: the Ruby client re-serializes the
 * token JSON before sending it back. Verified tokens are cached (keyed by a
 * SHA-256 of the presented bytes) until they expire, so the signature is not
 * paid per request; revocation and "not before" checks run on every request
 * against in-memory sets, loaded from the store by `load()` before the
 * service is used.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import type { Barrier } from '../secrets/barrier.js';
import type { CredentialsStore, SecretsStore, TokensStore } from '../store/index.js';
import { unauthorized } from '../errors.js';
import { roleIdFromLogin } from '../ids.js';

export interface TokenClaims {
  account: string;
  /** Login: `alice` or `host/app/01`. */
  sub: string;
  roleId: string;
  iat: number;
  exp: number;
  jti: string;
}

interface AccountKey {
  account: string;
  kid: string;
  publicKey: KeyObject;
  privateKey?: KeyObject;
}

const MAX_CACHE = 100_000;
const signingAd = (account: string) => `signing-key:${account}`;

function b64url(buf: Buffer | string): string {
  // Ruby's urlsafe_encode64 keeps '=' padding; clients never decode these two fields.
  return Buffer.from(buf).toString('base64url');
}

export interface TokenServiceDeps {
  barrier: Barrier;
  secrets: SecretsStore;
  tokens: TokensStore;
  credentials: CredentialsStore;
  /** Current unix time in seconds. */
  now: () => number;
  /** Current unix time in milliseconds (same clock). */
  nowMs: () => number;
}

export class TokenService {
  private keysByKid = new Map<string, AccountKey>();
  private keysByAccount = new Map<string, AccountKey>();
  private verified = new Map<string, TokenClaims>();
  private revoked = new Map<string, number>();
  private notBefore = new Map<string, number>();
  private loaded = false;

  constructor(private readonly deps: TokenServiceDeps) {}

  /**
   * Loads the revoked token ids and the roles' "not before" times from the
   * store. Call once, before the service verifies or issues any token:
   * until then a revoked token would pass.
   */
  async load(): Promise<void> {
    const now = this.deps.now();
    const revoked = await this.deps.tokens.liveRevocations(now);
    const notBefore = await this.deps.credentials.allNotBefore();
    // Merged, not replaced: a revocation or credential change made while the
    // rows were read is already in the maps and may be newer than the rows.
    for (const r of revoked) this.revoked.set(r.jti, r.expires_at);
    for (const r of notBefore) {
      const current = this.notBefore.get(r.role_id);
      this.notBefore.set(r.role_id, current === undefined ? r.tokens_not_before : Math.max(current, r.tokens_not_before));
    }
    this.loaded = true;
  }

  /** Fails closed when `load()` has not run: the revocation and "not before" sets would be empty. */
  private requireLoaded(): void {
    if (!this.loaded) throw new Error('TokenService.load() must complete before tokens are issued or verified');
  }

  /** Creates the account's signing key (account creation). */
  async createAccountKey(account: string): Promise<void> {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
    const sealed = this.deps.barrier.encrypt(pkcs8, signingAd(account));
    pkcs8.fill(0);
    await this.deps.secrets.insertSigningKey({
      account,
      kid: createHash('sha256').update(spki).digest('hex'),
      public_key: spki,
      key_version: sealed.keyVersion,
      nonce: sealed.nonce,
      ciphertext: sealed.ciphertext,
    });
  }

  private async keyForAccount(account: string): Promise<AccountKey> {
    let key = this.keysByAccount.get(account);
    if (!key?.privateKey) {
      const row = await this.deps.secrets.signingKey(account);
      if (!row) throw new Error(`account '${account}' has no signing key`);
      const der = await this.deps.barrier.decrypt(
        { keyVersion: row.key_version, nonce: row.nonce, ciphertext: row.ciphertext },
        signingAd(account),
      );
      const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      der.fill(0);
      key = { account, kid: row.kid, publicKey: createPublicKey({ key: row.public_key, format: 'der', type: 'spki' }), privateKey };
      this.keysByAccount.set(account, key);
      this.keysByKid.set(key.kid, key);
    }
    return key;
  }

  private async keyForKid(kid: string): Promise<AccountKey | undefined> {
    let key = this.keysByKid.get(kid);
    if (!key) {
      const row = await this.deps.secrets.signingKeyByKid(kid);
      if (!row) return undefined;
      key = { account: row.account, kid, publicKey: createPublicKey({ key: row.public_key, format: 'der', type: 'spki' }) };
      this.keysByKid.set(kid, key);
    }
    return key;
  }

  /** Issues a token for `login` in `account`, valid for `ttlSeconds`. Returns the token JSON text. */
  async issue(account: string, login: string, ttlSeconds: number): Promise<{ json: string; claims: TokenClaims }> {
    this.requireLoaded();
    const key = await this.keyForAccount(account);
    // iat is captured once so exp - iat is exactly the TTL clients see.
    const iat = this.deps.now();
    // The jti carries the issue time in milliseconds so that a credential
    // change in the same second as an issue can still tell them apart.
    // Strictly after the role's last credential change, so "issued at or
    // before the change" is refused and a token issued right after it is not.
    const nb = this.notBefore.get(roleIdFromLogin(account, login));
    const issuedMs = Math.max(this.deps.nowMs(), nb === undefined ? 0 : nb + 1);
    const jti = `${issuedMs.toString(16)}-${randomBytes(12).toString('hex')}`;
    const claims = { sub: login, iat, exp: iat + ttlSeconds, jti };
    const protectedPart = b64url(JSON.stringify({ alg: 'EdDSA', kid: key.kid }));
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64');
    const signature = b64url(sign(null, Buffer.from(`${protectedPart}.${payload}`), key.privateKey!));
    const json = JSON.stringify({ protected: protectedPart, payload, signature });
    return { json, claims: { ...claims, account, roleId: roleIdFromLogin(account, login) } };
  }

  /**
   * Verifies a token (the decoded JSON text of the Authorization header).
   * Throws 401 "Invalid token" for anything wrong with it. A cached token
   * costs no store call; only a signing key not seen before is read.
   */
  async verify(tokenJson: string): Promise<TokenClaims> {
    this.requireLoaded();
    const cacheKey = createHash('sha256').update(tokenJson).digest('base64');
    let claims = this.verified.get(cacheKey);
    if (!claims) {
      claims = await this.verifyUncached(tokenJson);
      if (this.verified.size >= MAX_CACHE) this.pruneCache();
      this.verified.set(cacheKey, claims);
    }
    const now = this.deps.now();
    if (claims.exp <= now) {
      this.verified.delete(cacheKey);
      throw invalidToken('token expired');
    }
    if (this.revoked.has(claims.jti)) throw invalidToken('token revoked');
    const nb = this.notBefore.get(claims.roleId);
    if (nb !== undefined && issuedAtMs(claims) <= nb) throw invalidToken('token issued before the role\'s credentials changed');
    return claims;
  }

  private async verifyUncached(tokenJson: string): Promise<TokenClaims> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(tokenJson);
    } catch {
      throw invalidToken('token is not JSON');
    }
    const t = parsed as Record<string, unknown>;
    if (typeof t.protected !== 'string' || typeof t.payload !== 'string' || typeof t.signature !== 'string') {
      throw invalidToken('token lacks protected, payload or signature');
    }
    let header: { alg?: unknown; kid?: unknown };
    let payload: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(t.protected, 'base64url').toString('utf8'));
      payload = JSON.parse(Buffer.from(t.payload, 'base64').toString('utf8'));
    } catch {
      throw invalidToken('token header or payload is not JSON');
    }
    if (header.alg !== 'EdDSA' || typeof header.kid !== 'string') throw invalidToken('unsupported token algorithm');
    const key = await this.keyForKid(header.kid);
    if (!key) throw invalidToken('unknown signing key');
    const ok = verify(null, Buffer.from(`${t.protected}.${t.payload}`), key.publicKey, Buffer.from(t.signature, 'base64url'));
    if (!ok) throw invalidToken('bad signature');
    const allowed = new Set(['sub', 'iat', 'exp', 'jti']);
    if (Object.keys(payload).some((k) => !allowed.has(k))) throw invalidToken('unrecognized claims');
    const { sub, iat, exp, jti } = payload;
    if (typeof sub !== 'string' || typeof iat !== 'number' || typeof exp !== 'number' || typeof jti !== 'string') {
      throw invalidToken('token claims are malformed');
    }
    return { account: key.account, sub, roleId: roleIdFromLogin(key.account, sub), iat, exp, jti };
  }

  private pruneCache(): void {
    const now = this.deps.now();
    for (const [k, c] of this.verified) if (c.exp <= now) this.verified.delete(k);
    if (this.verified.size >= MAX_CACHE) this.verified.clear();
  }

  /**
   * Whether a token verified earlier has been revoked since, or its role's
   * credentials changed — asked of the database too, so a revocation or key
   * rotation on another node counts before its notice arrives here.
   */
  async isRevokedNow(claims: TokenClaims): Promise<boolean> {
    const local = this.notBefore.get(claims.roleId);
    if (this.revoked.has(claims.jti) || (local !== undefined && issuedAtMs(claims) <= local)) return true;
    if (await this.deps.tokens.isRevoked(claims.jti)) return true;
    const stored = (await this.deps.credentials.get(claims.roleId))?.tokens_not_before ?? 0;
    return stored > 0 && issuedAtMs(claims) <= stored;
  }

  /** A revocation another node stored: refuse the token here too, from now on. */
  noteRevoked(jti: string, expiresAt: number): void {
    if (expiresAt > this.deps.now()) this.revoked.set(jti, expiresAt);
  }

  /** Revokes a token until it would have expired; survives restart through the store. */
  async revoke(claims: TokenClaims): Promise<void> {
    await this.deps.tokens.revoke(claims.jti, claims.exp);
    this.revoked.set(claims.jti, claims.exp);
    const now = this.deps.now();
    if (this.revoked.size > 10_000) {
      for (const [jti, exp] of this.revoked) if (exp <= now) this.revoked.delete(jti);
      await this.deps.tokens.purgeExpired(now);
    }
  }

  /** The role's current "not before" (unix ms), undefined when its credentials never changed. */
  notBeforeOf(roleId: string): number | undefined {
    return this.notBefore.get(roleId);
  }

  /**
   * The "not before" to record for a credential change of `roleId` now. A
   * token is stamped max(now, previous not-before + 1), so with a clock that
   * has not moved since the last change, now alone would not cover it.
   */
  nextNotBefore(roleId: string, nowMs: number): number {
    const current = this.notBefore.get(roleId);
    return current === undefined ? nowMs : Math.max(nowMs, current + 1);
  }

  /**
   * Records that tokens of `roleId` issued at or before `atMs` are invalid
   * (key rotation, role re-creation). Never moves backwards: two changes of
   * one role may now overlap (each awaits its store write between
   * `nextNotBefore` and this call), and the one finishing last may carry the
   * earlier time.
   */
  setNotBefore(roleId: string, atMs: number): void {
    const current = this.notBefore.get(roleId);
    this.notBefore.set(roleId, current === undefined ? atMs : Math.max(current, atMs));
  }
}

/** Issue time in ms from the jti; tokens without one fall back to iat. */
function issuedAtMs(claims: TokenClaims): number {
  const dash = claims.jti.indexOf('-');
  const ms = dash > 0 ? Number.parseInt(claims.jti.slice(0, dash), 16) : Number.NaN;
  return Number.isFinite(ms) ? ms : claims.iat * 1000;
}

function invalidToken(reason: string) {
  return unauthorized('Unauthorized: Invalid token', { auditReason: reason });
}
