/** Revoked access tokens (by jti), kept until they would have expired. */
import type { Db } from './db.js';

export function createTokensStore(db: Db) {
  const insert = db.prepare('INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT(jti) DO NOTHING');
  const live = db.prepare<[number], { jti: string; expires_at: number }>(
    'SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > ?',
  );
  const purge = db.prepare('DELETE FROM revoked_tokens WHERE expires_at <= ?');
  return {
    revoke: (jti: string, expiresAt: number) => void insert.run(jti, expiresAt),
    liveRevocations: (now: number) => live.all(now),
    purgeExpired: (now: number) => purge.run(now).changes,
  };
}

export type TokensStore = ReturnType<typeof createTokensStore>;
