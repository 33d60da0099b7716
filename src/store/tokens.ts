/** Revoked access tokens (by jti), kept until they would have expired. */
import type { Db } from './db.js';

export function createTokensStore(db: Db) {
  const insert = db.prepare('INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT(jti) DO NOTHING');
  const live = db.prepare<[number], { jti: string; expires_at: number }>(
    'SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?',
  );
  const purge = db.prepare('DELETE FROM revoked_tokens WHERE expires_at <= ?');
  const one = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM revoked_tokens WHERE jti = ?');
  return {
    revoke: (jti: string, expiresAt: number) => void insert.run(jti, expiresAt),
    liveRevocations: (now: number) => live.all(now),
    purgeExpired: (now: number) => purge.run(now).changes,
    /** Whether the token `jti` is revoked (read from the database: another node's revocation counts at once). */
    isRevoked: (jti: string) => one.get(jti)!.n > 0,
  };
}

export type TokensStore = ReturnType<typeof createTokensStore>;
