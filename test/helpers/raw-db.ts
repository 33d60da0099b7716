/**
 * The database behind a test server, opened beside it on either backend —
 * for tests that inspect tables the API does not show, or play an attacker
 * with write access to the database (tampering with the audit log) or a
 * failing disk (audit inserts refused).
 *
 * One SQL text serves both backends: `?` placeholders (rewritten to $1, $2…
 * for PostgreSQL), and the column names the two schemas share. What the two
 * dialects spell differently (triggers) is a method here.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import { PG_TYPES, type PgSql } from '../../src/store/postgres/client.js';
import { PG_BIN } from './postgres.js';
import { tempDir } from './tmp.js';

export interface RawDb {
  readonly backend: 'sqlite' | 'postgres';
  all<T = Record<string, unknown>>(sql: string, ...params: unknown[]): Promise<T[]>;
  get<T = Record<string, unknown>>(sql: string, ...params: unknown[]): Promise<T | undefined>;
  run(sql: string, ...params: unknown[]): Promise<void>;
  /** count(*) of a query's rows, as a number on both backends. */
  count(fromWhere: string, ...params: unknown[]): Promise<number>;
  /** Runs `fn` with audit_events' append-only triggers lifted, and puts them back afterwards (also when `fn` throws). */
  withAuditEditable<T>(fn: () => Promise<T>): Promise<T>;
  /** From now on every audit insert fails ('simulated disk failure') until the returned function is called. */
  failAuditInserts(): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface RawDbTarget {
  dataDir: string;
  /** The PostgreSQL URL the server runs on; undefined: SQLite in dataDir. */
  database?: string;
}

/** `?` → `$n` outside quoted strings. */
export function numberPlaceholders(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = '';
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  return out;
}

export async function openRawDb(target: RawDbTarget): Promise<RawDb> {
  return target.database ? openPostgres(target.database) : openSqlite(join(target.dataDir, 'coffer.db'));
}

/**
 * A consistent copy of the database behind a running server, in a data
 * directory of its own, for a test to tamper with while the original stays as
 * it is. SQLite: `VACUUM INTO` coffer.db of the new directory. PostgreSQL: a
 * new database in the same cluster, filled by `pg_dump` of the original (one
 * snapshot; the server may keep running) replayed with `psql`; `database`
 * names it (start a server on it with `flags: { database }`).
 */
export async function copyDatabase(target: RawDbTarget): Promise<RawDbTarget> {
  const dataDir = tempDir('coffer-db-copy-');
  if (!target.database) {
    const live = new Database(join(target.dataDir, 'coffer.db'), { readonly: true });
    try {
      live.exec(`VACUUM INTO '${join(dataDir, 'coffer.db').replace(/'/g, "''")}'`);
    } finally {
      live.close();
    }
    return { dataDir };
  }
  const url = new URL(target.database);
  const name = `coffer_copy_${randomBytes(6).toString('hex')}`;
  const admin = postgres({ host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username), database: 'postgres', max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const copy = new URL(target.database);
  copy.pathname = `/${name}`;
  const dump = join(dataDir, 'dump.sql');
  const run = promisify(execFile);
  await run(join(PG_BIN, 'pg_dump'), ['--no-owner', '--no-privileges', '-f', dump, '-d', target.database], { timeout: 60_000 });
  await run(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', dump, '-d', copy.toString()], { timeout: 60_000 });
  return { dataDir, database: copy.toString() };
}

function openSqlite(file: string): RawDb {
  const db = new Database(file);
  db.pragma('busy_timeout = 5000');
  const appendOnly = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
  ];
  return {
    backend: 'sqlite',
    all: async (sql, ...params) => db.prepare(sql).all(...params) as never,
    get: async (sql, ...params) => db.prepare(sql).get(...params) as never,
    run: async (sql, ...params) => {
      db.prepare(sql).run(...params);
    },
    count: async (fromWhere, ...params) => (db.prepare(`SELECT count(*) AS n ${fromWhere}`).get(...params) as { n: number }).n,
    async withAuditEditable(fn) {
      db.exec('DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;');
      try {
        return await fn();
      } finally {
        for (const t of appendOnly) db.exec(t);
      }
    },
    async failAuditInserts() {
      db.exec("CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END");
      return async () => {
        db.exec('DROP TRIGGER fail_audit');
      };
    },
    close: async () => {
      db.close();
    },
  };
}

function openPostgres(url: string): RawDb {
  const sql: PgSql = postgres(url, { max: 1, types: PG_TYPES, onnotice: () => {} }) as PgSql;
  const query = (text: string, params: unknown[]) => sql.unsafe(numberPlaceholders(text), params as never[]);
  return {
    backend: 'postgres',
    all: async (text, ...params) => [...(await query(text, params))] as never,
    get: async (text, ...params) => (await query(text, params))[0] as never,
    run: async (text, ...params) => {
      await query(text, params);
    },
    count: async (fromWhere, ...params) => Number((await query(`SELECT count(*) AS n ${fromWhere}`, params))[0]!.n),
    async withAuditEditable(fn) {
      await sql.unsafe('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update; ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_delete');
      try {
        return await fn();
      } finally {
        await sql.unsafe('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update; ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_delete');
      }
    },
    async failAuditInserts() {
      await sql.unsafe(`CREATE FUNCTION coffer_test_fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'simulated disk failure'; END $$;
        CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION coffer_test_fail_audit()`);
      return async () => {
        await sql.unsafe('DROP TRIGGER fail_audit ON audit_events; DROP FUNCTION coffer_test_fail_audit()');
      };
    },
    close: () => sql.end({ timeout: 5 }),
  };
}
