/** Host-factory tokens (migration 0004): lookup by HMAC, sealed copy, expiry, CIDRs. */
import type { Db } from './db.js';

export interface HostFactoryTokenRow {
  /** HMAC-SHA-256 of the token under the server pepper. */
  token_hash: Buffer;
  host_factory_id: string;
  /** Barrier-packed ciphertext of the token. */
  token_sealed: Buffer;
  /** Unix milliseconds. */
  expires_at: number;
  /** JSON array of normalized CIDRs. */
  cidr: string;
  created_at: string;
}

export function createHostFactoriesStore(db: Db) {
  const insert = db.prepare(
    'INSERT INTO host_factory_tokens (token_hash, host_factory_id, token_sealed, expires_at, cidr, created_at) ' +
      'VALUES (?, ?, ?, ?, ?, ?)',
  );
  const byHash = db.prepare<[Buffer], HostFactoryTokenRow>('SELECT * FROM host_factory_tokens WHERE token_hash = ?');
  const live = db.prepare<[string, number], HostFactoryTokenRow>(
    'SELECT * FROM host_factory_tokens WHERE host_factory_id = ? AND expires_at > ? ORDER BY expires_at, created_at, token_hash',
  );
  const remove = db.prepare('DELETE FROM host_factory_tokens WHERE token_hash = ?');
  const purge = db.prepare('DELETE FROM host_factory_tokens WHERE expires_at <= ?');
  const sealedAll = db.prepare<[], { token_hash: Buffer; host_factory_id: string; token_sealed: Buffer }>(
    'SELECT token_hash, host_factory_id, token_sealed FROM host_factory_tokens',
  );
  const reseal = db.prepare('UPDATE host_factory_tokens SET token_sealed = ? WHERE token_hash = ?');
  const countFor = db.prepare<[string], { n: number }>(
    'SELECT count(*) AS n FROM host_factory_tokens WHERE host_factory_id = ?',
  );
  return {
    insert(row: HostFactoryTokenRow): void {
      insert.run(row.token_hash, row.host_factory_id, row.token_sealed, row.expires_at, row.cidr, row.created_at);
    },
    byHash: (hash: Buffer) => byHash.get(hash),
    /** Tokens of the factory that have not expired at `nowMs`, soonest expiry first. */
    liveFor: (hostFactoryId: string, nowMs: number) => live.all(hostFactoryId, nowMs),
    /** Every token row of the factory, expired ones included (tests and diagnostics). */
    countFor: (hostFactoryId: string) => countFor.get(hostFactoryId)!.n,
    /** Deletes one token; false when it did not exist. */
    delete: (hash: Buffer) => remove.run(hash).changes > 0,
    /** Deletes tokens that expired at or before `beforeMs`; returns how many. */
    purgeExpired: (beforeMs: number) => purge.run(beforeMs).changes,
    sealedTokens: () => sealedAll.all(),
    reseal: (hash: Buffer, sealed: Buffer) => void reseal.run(sealed, hash),
  };
}

export type HostFactoriesStore = ReturnType<typeof createHostFactoriesStore>;
