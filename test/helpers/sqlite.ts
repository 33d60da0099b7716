/** Direct access to the SQLite backend, for tests that inspect or edit the database file itself. */
import { createAuditStore } from '../../src/store/audit.js';
import type { Db } from '../../src/store/db.js';
import type { SqliteStore, Store } from '../../src/store/index.js';

/** The SQLite connection behind a store (the embedded default every in-process test server uses). */
export function dbOf(store: Store): Db {
  if (store.backend !== 'sqlite') throw new Error(`this test reads the SQLite file directly; the store is ${store.backend}`);
  return (store as SqliteStore).db;
}

/** The SQLite backend's synchronous audit table functions (walk, head, query) over the same connection. */
export const syncAudit = (store: Store) => createAuditStore(dbOf(store));
