/** Credentials: API-key hashes, password hashes, CIDR restrictions, token "not before". */
import type { Db } from './db.js';

export interface CredentialsRow {
  role_id: string;
  api_key_hash: Buffer | null;
  /** Barrier-packed ciphertext of the API key (see migration 0001). */
  api_key_sealed: Buffer | null;
  password_hash: string | null;
  restricted_to: string;
  updated_at: string;
  tokens_not_before: number;
}

export function createCredentialsStore(db: Db) {
  const get = db.prepare<[string], CredentialsRow>('SELECT * FROM credentials WHERE role_id = ?');
  const insert = db.prepare(
    'INSERT INTO credentials (role_id, api_key_hash, api_key_sealed, restricted_to, updated_at, tokens_not_before) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const setKey = db.prepare(
    'UPDATE credentials SET api_key_hash = ?, api_key_sealed = ?, updated_at = ?, tokens_not_before = ? WHERE role_id = ?',
  );
  const setPassword = db.prepare('UPDATE credentials SET password_hash = ?, updated_at = ? WHERE role_id = ?');
  const setRestricted = db.prepare('UPDATE credentials SET restricted_to = ? WHERE role_id = ?');
  const resealList = db.prepare<[], { role_id: string; api_key_sealed: Buffer }>(
    'SELECT role_id, api_key_sealed FROM credentials WHERE api_key_sealed IS NOT NULL',
  );
  const reseal = db.prepare('UPDATE credentials SET api_key_sealed = ? WHERE role_id = ?');
  const notBefore = db.prepare<[], { role_id: string; tokens_not_before: number }>(
    'SELECT role_id, tokens_not_before FROM credentials WHERE tokens_not_before > 0',
  );
  return {
    get: (roleId: string) => get.get(roleId),
    /** New credentials; tokens issued before `notBeforeMs` (unix ms) for this role id are refused. */
    insert(roleId: string, apiKeyHash: Buffer, apiKeySealed: Buffer, restrictedTo: string[], notBeforeMs: number): void {
      insert.run(roleId, apiKeyHash, apiKeySealed, JSON.stringify(restrictedTo), new Date().toISOString(), notBeforeMs);
    },
    /** Replaces the API key; tokens issued before `notBeforeMs` (unix ms) stop working. */
    setApiKey(roleId: string, apiKeyHash: Buffer, apiKeySealed: Buffer, notBeforeMs: number): void {
      setKey.run(apiKeyHash, apiKeySealed, new Date().toISOString(), notBeforeMs, roleId);
    },
    setPasswordHash: (roleId: string, hash: string) =>
      void setPassword.run(hash, new Date().toISOString(), roleId),
    setRestrictedTo: (roleId: string, cidrs: string[]) => void setRestricted.run(JSON.stringify(cidrs), roleId),
    allNotBefore: () => notBefore.all(),
    sealedApiKeys: () => resealList.all(),
    resealApiKey: (roleId: string, sealed: Buffer) => void reseal.run(sealed, roleId),
  };
}

export type CredentialsStore = ReturnType<typeof createCredentialsStore>;
