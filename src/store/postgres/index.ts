/**
 * The PostgreSQL backend behind the asynchronous store interface: several
 * Coffer nodes may share one database.
 *
 * Transactions: `tx(fn)` opens a transaction on a connection of its own
 * (`sql.begin`) and every store call made in its async context
 * (AsyncLocalStorage) runs on that connection; calls outside any
 * transaction run on the pool, each in its own implicit transaction. Each
 * write transaction first takes one cluster-wide advisory lock, so write
 * transactions are serialized across every node as SQLite's single writer
 * serializes them in one process: the audit chain has one head, and policy
 * loads never interleave. Reads outside transactions run concurrently and
 * see committed rows only.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type postgres from 'postgres';
import type { WritableReport } from '../health.js';
import type { Store } from '../types.js';
import { storageFailureOf } from '../../errors.js';
import { createPostgresClient, type PgClientOptions, type PgQueryable, type PgSql, type PgTypes } from './client.js';
import { createPgFamilies } from './families.js';
import { createPgGraphStore } from './graph.js';
import { createPgAuditStore } from './audit.js';
import { createPgChangeFeed } from './changes.js';
import { migratePostgres } from './migrate.js';

/** The advisory lock every write transaction takes first (an arbitrary constant: "Coffer" in ASCII). */
export const WRITE_LOCK_KEY = '73735413855602';

const HEALTH_CACHE_MS = 1000;

interface TxContext {
  sql: postgres.TransactionSql<PgTypes>;
  open: boolean;
}

export interface PostgresStore extends Store {
  readonly backend: 'postgres';
  /** The pool, for tools and tests (never domain code). */
  readonly sql: PgSql;
}

export type PostgresStoreOptions = PgClientOptions;

/** Connects to `url`, applies pending migrations (one node at a time) and answers the store. */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const sql = createPostgresClient(url, opts);
  try {
    await migratePostgres(sql);
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  return createPostgresStore(sql);
}

export function createPostgresStore(sql: PgSql): PostgresStore {
  const context = new AsyncLocalStorage<TxContext>();
  const current = (): PgQueryable => {
    const ctx = context.getStore();
    return ctx?.open ? ctx.sql : sql;
  };
  let cached: { at: number; report: WritableReport } | undefined;

  async function tx<T>(fn: () => Promise<T>): Promise<T> {
    const outer = context.getStore();
    try {
      if (outer?.open) {
        return (await outer.sql.savepoint((sp) => context.run({ sql: sp, open: true }, fn))) as T;
      }
      return (await sql.begin(async (t) => {
        const ctx: TxContext = { sql: t, open: true };
        try {
          await t.unsafe(`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
          return await context.run(ctx, fn);
        } finally {
          ctx.open = false;
        }
      })) as T;
    } catch (err) {
      if (storageFailureOf(err)) cached = undefined;
      throw err;
    }
  }

  const families = createPgFamilies(current);
  const changes = createPgChangeFeed(sql);
  return {
    backend: 'postgres',
    sql,
    ...families,
    graph: createPgGraphStore(current),
    audit: createPgAuditStore(current),
    health: {
      async check(nowMs) {
        // The disk is the database server's: free space is its business; a write that commits is the answer.
        if (cached && nowMs >= cached.at && nowMs - cached.at < HEALTH_CACHE_MS) return cached.report;
        let report: WritableReport;
        try {
          await sql.begin(async (t) => {
            await t.unsafe("SET LOCAL statement_timeout = '2s'");
            await t`UPDATE health_probe SET probed_at = ${new Date(nowMs).toISOString()} WHERE id = 1`;
          });
          report = { writable: true };
        } catch (err) {
          const failure = storageFailureOf(err);
          report = { writable: false, reason: failure ? `the database cannot be written: ${failure.message} (${failure.code})` : 'the database cannot be written' };
        }
        cached = { at: nowMs, report };
        return report;
      },
      noteFailure(err) {
        if (storageFailureOf(err)) cached = undefined;
      },
      async ping() {
        await sql`SELECT 1`;
      },
    },
    changes: { subscribe: (fn) => changes.subscribe(fn) },
    tx,
    inTransaction: () => context.getStore()?.open === true,
    async close() {
      await changes.close();
      await sql.end({ timeout: 5 });
    },
  };
}
