/**
 * PostgreSQL migrations: migrations/postgres/NNNN_name.sql, applied in order,
 * each in its own transaction together with its schema_migrations row.
 *
 * Several nodes may start at once against one database. Each migration step
 * is a transaction that first takes a transaction-level advisory lock
 * (pg_advisory_xact_lock), then reads which versions are applied and applies
 * the next pending one. The first node migrates; the others wait on the lock
 * and, once they hold it, find the step already recorded and go on. The lock
 * is released by the commit or rollback, and with the session if the node
 * dies: no stale lock to clear by hand.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listMigrations, MIGRATIONS_DIR, SchemaError } from '../db.js';
import type { PgQueryable, PgSql } from './client.js';

export { SchemaError };

export const PG_MIGRATIONS_DIR = join(MIGRATIONS_DIR, 'postgres');

/**
 * The advisory lock key of the migrator (an int8, as text: it exceeds 2^53;
 * advisory locks are per database). The bytes of 'coffer:m'.
 */
export const MIGRATION_LOCK_KEY = '7165058122144430701';

export interface PgMigrateOptions {
  migrationsDir?: string;
  /**
   * Only check: refuse a newer schema, and one that lacks a migration
   * (offline tools that must not change the database); apply nothing.
   */
  readonly?: boolean;
}

export interface PgMigrateResult {
  /** Versions this call applied (empty when another node had already applied them, or nothing was pending). */
  applied: number[];
  /** The schema version afterwards. */
  version: number;
}

async function appliedVersions(tx: PgQueryable): Promise<Set<number>> {
  const [exists] = await tx<{ t: string | null }[]>`SELECT to_regclass('schema_migrations')::text AS t`;
  if (!exists?.t) return new Set();
  const rows = await tx<{ version: number }[]>`SELECT version FROM schema_migrations`;
  return new Set(rows.map((r) => r.version));
}

function refuseNewer(applied: Set<number>, latest: number): void {
  const current = Math.max(0, ...applied);
  if (current > latest) {
    throw new SchemaError(
      `The database schema is at version ${current} but this Coffer knows migrations up to ${latest}: ` +
        'upgrade Coffer before opening this database.',
    );
  }
}

/** Applies the pending migrations of `dir` to the database of `sql`; safe when several nodes run it at once. */
export async function migratePostgres(sql: PgSql, opts: PgMigrateOptions = {}): Promise<PgMigrateResult> {
  const dir = opts.migrationsDir ?? PG_MIGRATIONS_DIR;
  const migrations = listMigrations(dir);
  const latest = migrations.at(-1)?.version ?? 0;

  if (opts.readonly) {
    const applied = await appliedVersions(sql);
    refuseNewer(applied, latest);
    const missing = migrations.find((m) => !applied.has(m.version));
    if (missing) {
      throw new SchemaError(
        `The database schema lacks migration ${missing.version} (${missing.name}); start the server once to migrate it to ${latest}.`,
      );
    }
    return { applied: [], version: Math.max(0, ...applied) };
  }

  const appliedNow: number[] = [];
  for (;;) {
    // One step per transaction: lock, look, apply at most one migration, record it.
    const step = await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::int8)`;
      const applied = await appliedVersions(tx);
      refuseNewer(applied, latest);
      if (applied.size === 0) {
        await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
          version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`;
      }
      // Applied by version, not by "above the highest" (as for SQLite).
      const next = migrations.find((m) => !applied.has(m.version));
      if (!next) return { done: true as const, version: Math.max(0, ...applied) };
      // No parameters: the simple query protocol, so a file may hold many statements.
      await tx.unsafe(readFileSync(next.file, 'utf8'));
      await tx`INSERT INTO schema_migrations (version, name, applied_at) VALUES (${next.version}, ${next.name}, ${new Date().toISOString()})`;
      return { done: false as const, version: next.version };
    });
    if (step.done) return { applied: appliedNow, version: step.version };
    appliedNow.push(step.version);
  }
}
