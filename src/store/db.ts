/**
 * Opening the SQLite database and applying migrations. The only place that
 * sets connection pragmas, so every open gets the same durability.
 */
import Database from 'better-sqlite3';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Db = Database.Database;

/** `src/store` and `dist/store` are both two levels below the package root. */
export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

export interface OpenOptions {
  readonly?: boolean;
  /** How long a writer waits for a lock held by another process, in ms. */
  busyTimeoutMs?: number;
  migrationsDir?: string;
}

/**
 * Opens (creating if needed) the database with WAL, foreign keys and
 * synchronous=FULL. better-sqlite3 is built with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1,
 * so an existing WAL database silently reopens at NORMAL unless the pragma is
 * set again on every open — which is why it is set unconditionally here.
 */
/** SQLite page cache per connection, KiB. */
export const PAGE_CACHE_KIB = 65_536;

export function openDatabase(path: string, opts: OpenOptions = {}): Db {
  const db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
  if (!opts.readonly) db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // A page cache of 64 MiB instead of SQLite's 2 MiB: a server's hot pages (the graph, the right edges of the audit
  // indexes and rollup) outgrow 2 MiB once the log holds millions of events. It did not, alone, bring audited fetch
  // throughput at 5M events back within 10 % of an empty log (README, audit queries).
  db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  migrate(db, opts.migrationsDir ?? MIGRATIONS_DIR, opts.readonly ?? false);
  return db;
}

interface Migration {
  version: number;
  name: string;
  file: string;
}

export function listMigrations(dir: string): Migration[] {
  const list = readdirSync(dir)
    .map((file) => /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ version: Number(m[1]), name: m[2]!, file: join(dir, m[0]) }))
    .sort((a, b) => a.version - b.version);
  const dup = list.find((m, i) => i > 0 && list[i - 1]!.version === m.version);
  if (dup) throw new SchemaError(`Two migrations share version ${dup.version} in ${dir}: renumber one of them.`);
  return list;
}

export class SchemaError extends Error {}

/** Applies pending migrations in order, each in its own transaction. */
export function migrate(db: Db, dir: string, readonly = false): void {
  const migrations = listMigrations(dir);
  const latest = migrations.at(-1)?.version ?? 0;
  if (!readonly) {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  }
  const current =
    (db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0;
  if (current > latest) {
    throw new SchemaError(
      `The database schema is at version ${current} but this Coffer knows migrations up to ${latest}: ` +
        'upgrade Coffer before opening this database.',
    );
  }
  // Applied by version, not by "above the highest": a migration that reached
  // a database after a later one (two branches merged) is still applied.
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
  const pending = migrations.filter((m) => !applied.has(m.version));
  if (readonly) {
    if (pending.length > 0) {
      throw new SchemaError(`The database schema lacks migration ${pending[0]!.version} (${pending[0]!.name}); start the server once to migrate it to ${latest}.`);
    }
    return;
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of pending) {
    const sql = readFileSync(m.file, 'utf8');
    db.transaction(() => {
      db.exec(sql);
      record.run(m.version, m.name, new Date().toISOString());
    })();
  }
}
