/**
 * The store: every SQL statement of Coffer lives under src/store/. Domain
 * code receives this object (or a narrow part of it) and never sees SQL, so a
 * PostgreSQL implementation can be added behind the same functions.
 */
import { openDatabase, type Db, type OpenOptions } from './db.js';
import { createAccountsStore } from './accounts.js';
import { createAuditStore } from './audit.js';
import { createAuthenticatorsStore } from './authenticators.js';
import { createCredentialsStore } from './credentials.js';
import { createGraphStore } from './graph.js';
import { createStorageHealth } from './health.js';
import { createHostFactoriesStore } from './host-factories.js';
import { createKeyringStore } from './keyring.js';
import { createPolicyVersionsStore } from './policy-versions.js';
import { createSecretsStore } from './secrets.js';
import { createTokensStore } from './tokens.js';

export function createStore(db: Db) {
  const health = createStorageHealth(db);
  return {
    db,
    accounts: createAccountsStore(db),
    audit: createAuditStore(db),
    authenticators: createAuthenticatorsStore(db),
    credentials: createCredentialsStore(db),
    graph: createGraphStore(db),
    hostFactories: createHostFactoriesStore(db),
    keyring: createKeyringStore(db),
    policyVersions: createPolicyVersionsStore(db),
    secrets: createSecretsStore(db),
    tokens: createTokensStore(db),
    /** Whether the database can still take writes (GET /health). */
    health,
    /** Runs `fn` in one transaction (nested calls become savepoints). */
    tx<T>(fn: () => T): T {
      try {
        return db.transaction(fn)();
      } catch (err) {
        health.noteFailure(err);
        throw err;
      }
    },
    close(): void {
      db.close();
    },
  };
}

export type Store = ReturnType<typeof createStore>;

export function openStore(path: string, opts?: OpenOptions): Store {
  return createStore(openDatabase(path, opts));
}
