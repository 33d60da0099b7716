/** Keyring (wrapped data-encryption keys) and server_meta rows. */
import type { Db } from './db.js';

export interface KeyringRow {
  version: number;
  nonce: Buffer;
  wrapped_key: Buffer;
  state: 'active' | 'retiring' | 'retired';
  created_at: string;
}

export function createKeyringStore(db: Db) {
  const getMeta = db.prepare<[string], { value: Buffer }>('SELECT value FROM server_meta WHERE name = ?');
  const putMeta = db.prepare(
    'INSERT INTO server_meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value',
  );
  const allKeys = db.prepare<[], KeyringRow>('SELECT * FROM keyring ORDER BY version');
  const insertKey = db.prepare(
    'INSERT INTO keyring (version, nonce, wrapped_key, state, created_at) VALUES (?, ?, ?, ?, ?)',
  );
  const setState = db.prepare('UPDATE keyring SET state = ? WHERE version = ?');
  const rewrap = db.prepare('UPDATE keyring SET nonce = ?, wrapped_key = ? WHERE version = ?');
  const retire = db.prepare("UPDATE keyring SET state = 'retired', wrapped_key = x'', nonce = x'' WHERE version = ?");

  return {
    getMeta: (name: string): Buffer | undefined => getMeta.get(name)?.value,
    putMeta: (name: string, value: Buffer): void => void putMeta.run(name, value),
    listKeys: (): KeyringRow[] => allKeys.all(),
    insertKey: (version: number, nonce: Buffer, wrapped: Buffer, state: KeyringRow['state']): void =>
      void insertKey.run(version, nonce, wrapped, state, new Date().toISOString()),
    setKeyState: (version: number, state: KeyringRow['state']): void => void setState.run(state, version),
    rewrapKey: (version: number, nonce: Buffer, wrapped: Buffer): void => void rewrap.run(nonce, wrapped, version),
    /** Destroys the key material of a retired key; its row stays as history. */
    retireKey: (version: number): void => void retire.run(version),
  };
}

export type KeyringStore = ReturnType<typeof createKeyringStore>;
