/**
 * The SQLite backend (better-sqlite3, the embedded default) behind the
 * asynchronous store interface.
 *
 * better-sqlite3 is synchronous and Coffer keeps one connection, so the
 * backend's only work is keeping transactions whole now that their bodies
 * await: while a transaction is open (its body awaiting between statements),
 * any store call from outside it waits until it commits or rolls back — else
 * another request would read its uncommitted rows or write into it. Calls
 * made inside the transaction (AsyncLocalStorage tells which) run at once.
 * Outside a transaction each call runs synchronously as before, in its own
 * implicit transaction; waiting callers run in arrival order.
 */
import { TransactionContext } from './tx-context.js';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { openDatabase, type Db, type OpenOptions } from './db.js';
import { createAccountsStore } from './accounts.js';
import { createAuditStore, type AuditFilter, type AuditStoreOptions } from './audit.js';
import { createAuthenticatorsStore } from './authenticators.js';
import { createCredentialsStore } from './credentials.js';
import { createDynamicStore } from './dynamic.js';
import { createGraphStore } from './graph.js';
import { createStorageHealth } from './health.js';
import { createHostFactoriesStore } from './host-factories.js';
import { createKeyringStore } from './keyring.js';
import { createPolicyVersionsStore } from './policy-versions.js';
import { createSecretsStore } from './secrets.js';
import { createTokensStore } from './tokens.js';
import type { Async, AuditStore, Store } from './types.js';

interface TxContext {
  open: boolean;
  savepoints: number;
}

export interface SqliteStore extends Store {
  readonly backend: 'sqlite';
  /** The connection itself, for tools and tests that inspect the file (never domain code). */
  readonly db: Db;
}

export interface SqliteStoreOptions {
  audit?: AuditStoreOptions;
}

/** Wraps a family of synchronous functions so that each answers a Promise, run by `run`. */
function asyncFamily<S extends object>(family: S, run: <T>(fn: () => T) => Promise<T>): Async<S> {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(family)) {
    if (typeof fn === 'function') out[name] = (...args: unknown[]) => run(() => (fn as (...a: unknown[]) => unknown)(...args));
  }
  return out as Async<S>;
}

export function createSqliteStore(db: Db, opts: SqliteStoreOptions = {}): SqliteStore {
  const health = createStorageHealth(db);
  const context = new TransactionContext<TxContext>();
  /** Work waiting for the open transaction to end, in arrival order. */
  const waiting: (() => void)[] = [];
  let txOpen = false;

  const runNow = <T>(fn: () => T): Promise<T> => {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      health.noteFailure(err);
      return Promise.reject(err);
    }
  };

  /** Runs `fn` now if no transaction is open or the caller is inside it, else once it has ended. */
  const run = <T>(fn: () => T): Promise<T> => {
    if (!txOpen || context.getStore()?.open) return runNow(fn);
    return new Promise<T>((resolve, reject) => waiting.push(() => runNow(fn).then(resolve, reject)));
  };

  /** Runs waiting calls until one of them opens a transaction. */
  const drain = () => {
    while (!txOpen && waiting.length > 0) waiting.shift()!();
  };

  const begin = (): Promise<void> => {
    if (!txOpen) {
      txOpen = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) =>
      waiting.push(() => {
        txOpen = true;
        resolve();
      }),
    );
  };

  async function savepoint<T>(ctx: TxContext, fn: () => Promise<T>): Promise<T> {
    const name = `coffer_sp_${++ctx.savepoints}`;
    db.exec(`SAVEPOINT ${name}`);
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      db.exec(`ROLLBACK TO ${name}`);
      db.exec(`RELEASE ${name}`);
      throw err;
    }
    db.exec(`RELEASE ${name}`);
    return result;
  }

  async function tx<T>(fn: () => Promise<T>): Promise<T> {
    const outer = context.getStore();
    if (outer?.open) return savepoint(outer, fn);
    await begin();
    const ctx: TxContext = { open: true, savepoints: 0 };
    try {
      db.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = await context.run(ctx, fn);
        db.exec('COMMIT');
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw err;
      }
      return result;
    } catch (err) {
      health.noteFailure(err);
      throw err;
    } finally {
      ctx.open = false;
      txOpen = false;
      drain();
    }
  }

  const auditSync = createAuditStore(db, opts.audit);
  const audit: AuditStore = {
    head: () => run(() => auditSync.head()),
    // In-process: reading the head costs nothing, so `expected` is not needed.
    appendChained: (batch) =>
      tx(() =>
        run(() => {
          const rows = batch.chain(auditSync.head());
          for (const row of rows) auditSync.insert(row);
          return rows;
        }),
      ),
    insert: (row) => run(() => auditSync.insert(row)),
    insertAll: (rows) =>
      run(() => {
        for (const row of rows) auditSync.insert(row);
      }),
    indexSearchBatch: (max) => run(() => auditSync.indexSearchBatch(max)),
    page: (afterSeq, limit) => run(() => auditSync.page(afterSeq, limit)),
    async query(f: AuditFilter) {
      // One bounded slice per turn of the event loop (see querySlices).
      const slices = auditSync.querySlices(f);
      for (;;) {
        const step = await run(() => slices.next());
        if (step.done) return step.value;
        await nextTurn();
      }
    },
    explain: (f) => run(() => auditSync.explain(f)),
    countRollup: (q) => run(() => auditSync.countRollup(q)),
    countRange: (q) => run(() => auditSync.countRange(q)),
    explainCounts: (r, c) => run(() => auditSync.explainCounts(r, c)),
  };

  return {
    backend: 'sqlite',
    db,
    accounts: asyncFamily(createAccountsStore(db), run),
    audit,
    authenticators: asyncFamily(createAuthenticatorsStore(db), run),
    credentials: asyncFamily(createCredentialsStore(db), run),
    dynamic: asyncFamily(createDynamicStore(db), run),
    graph: asyncFamily(createGraphStore(db), run),
    hostFactories: asyncFamily(createHostFactoriesStore(db), run),
    keyring: asyncFamily(createKeyringStore(db), run),
    policyVersions: asyncFamily(createPolicyVersionsStore(db), run),
    secrets: asyncFamily(createSecretsStore(db), run),
    tokens: asyncFamily(createTokensStore(db), run),
    health: {
      check: (nowMs, minFreeBytes) => run(() => health.check(nowMs, minFreeBytes)),
      noteFailure: (err) => health.noteFailure(err),
      ping: () => run(() => void db.prepare('SELECT 1').get()),
    },
    changes: { subscribe: () => undefined },
    tx,
    inTransaction: () => context.getStore()?.open === true,
    async close() {
      // Let an open transaction finish first: closing under it would roll it back.
      await run(() => undefined);
      db.close();
    },
  };
}

export function openSqliteStore(path: string, opts?: OpenOptions & SqliteStoreOptions): SqliteStore {
  return createSqliteStore(openDatabase(path, opts), opts);
}
