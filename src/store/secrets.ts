/** Encrypted secret versions and token signing keys. */
import type { Db } from './db.js';

export interface SecretRow {
  resource_id: string;
  version: number;
  key_version: number;
  nonce: Buffer;
  ciphertext: Buffer;
  expires_at: string | null;
  created_at: string;
}

export interface SigningKeyRow {
  account: string;
  kid: string;
  public_key: Buffer;
  key_version: number;
  nonce: Buffer;
  ciphertext: Buffer;
  created_at: string;
}

export function createSecretsStore(db: Db) {
  const latest = db.prepare<[string], SecretRow>(
    'SELECT * FROM secrets WHERE resource_id = ? ORDER BY version DESC LIMIT 1',
  );
  const byVersion = db.prepare<[string, number], SecretRow>(
    'SELECT * FROM secrets WHERE resource_id = ? AND version = ?',
  );
  const versions = db.prepare<[string], { version: number; expires_at: string | null }>(
    'SELECT version, expires_at FROM secrets WHERE resource_id = ? ORDER BY version',
  );
  const insert = db.prepare(
    'INSERT INTO secrets (resource_id, version, key_version, nonce, ciphertext, expires_at, created_at) VALUES (?, ?, ?, ?, ?, NULL, ?)',
  );
  const prune = db.prepare(
    'DELETE FROM secrets WHERE resource_id = ? AND version <= (SELECT max(version) FROM secrets WHERE resource_id = ?) - ?',
  );
  const clearExpiry = db.prepare('UPDATE secrets SET expires_at = NULL WHERE resource_id = ?');
  const underKey = db.prepare<[number, number], SecretRow>(
    'SELECT * FROM secrets WHERE key_version <> ? ORDER BY resource_id, version LIMIT ?',
  );
  const reseal = db.prepare(
    'UPDATE secrets SET key_version = ?, nonce = ?, ciphertext = ? WHERE resource_id = ? AND version = ?',
  );
  const countUnder = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM secrets WHERE key_version = ?');
  const getKey = db.prepare<[string], SigningKeyRow>('SELECT * FROM signing_keys WHERE account = ?');
  const getKeyByKid = db.prepare<[string], SigningKeyRow>('SELECT * FROM signing_keys WHERE kid = ?');
  const allKeys = db.prepare<[], SigningKeyRow>('SELECT * FROM signing_keys');
  const insertKey = db.prepare(
    'INSERT INTO signing_keys (account, kid, public_key, key_version, nonce, ciphertext, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const resealKey = db.prepare('UPDATE signing_keys SET key_version = ?, nonce = ?, ciphertext = ? WHERE account = ?');

  return {
    latest: (resourceId: string) => latest.get(resourceId),
    byVersion: (resourceId: string, version: number) => byVersion.get(resourceId, version),
    versions: (resourceId: string) => versions.all(resourceId),
    insert(row: Omit<SecretRow, 'expires_at' | 'created_at'>): void {
      insert.run(row.resource_id, row.version, row.key_version, row.nonce, row.ciphertext, new Date().toISOString());
    },
    /** Keeps only the newest `keep` versions. */
    prune: (resourceId: string, keep: number) => void prune.run(resourceId, resourceId, keep),
    clearExpirations: (resourceId: string) => void clearExpiry.run(resourceId),
    /** A batch of rows not yet under `keyVersion` (for key rotation). */
    notUnderKey: (keyVersion: number, limit: number) => underKey.all(keyVersion, limit),
    reseal(resourceId: string, version: number, keyVersion: number, nonce: Buffer, ciphertext: Buffer): void {
      reseal.run(keyVersion, nonce, ciphertext, resourceId, version);
    },
    countUnderKey: (keyVersion: number) => countUnder.get(keyVersion)!.n,
    signingKey: (account: string) => getKey.get(account),
    signingKeyByKid: (kid: string) => getKeyByKid.get(kid),
    allSigningKeys: () => allKeys.all(),
    insertSigningKey(row: Omit<SigningKeyRow, 'created_at'>): void {
      insertKey.run(row.account, row.kid, row.public_key, row.key_version, row.nonce, row.ciphertext, new Date().toISOString());
    },
    resealSigningKey(account: string, keyVersion: number, nonce: Buffer, ciphertext: Buffer): void {
      resealKey.run(keyVersion, nonce, ciphertext, account);
    },
  };
}

export type SecretsStore = ReturnType<typeof createSecretsStore>;
