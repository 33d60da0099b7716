/**
 * The store: every SQL statement of Coffer lives under src/store/. Domain
 * code receives a `Store` (or a narrow part of it), awaits its methods and
 * never sees SQL or which backend answers (see ./types.ts).
 */
import type { OpenOptions } from './db.js';
import { openSqliteStore, type SqliteStore, type SqliteStoreOptions } from './sqlite.js';

export type {
  AccountsStore,
  AuditHead,
  AuditStore,
  ChainBatch,
  AuthenticatorsStore,
  CredentialsStore,
  DynamicStore,
  GraphStore,
  HostFactoriesStore,
  KeyringStore,
  PolicyVersionsStore,
  SecretsStore,
  Store,
  StorageHealth,
  TokensStore,
} from './types.js';
export { createSqliteStore, type SqliteStore } from './sqlite.js';

/** Opens (creating and migrating if needed) the SQLite database at `path`. */
export function openStore(path: string, opts?: OpenOptions & SqliteStoreOptions): SqliteStore {
  return openSqliteStore(path, opts);
}
