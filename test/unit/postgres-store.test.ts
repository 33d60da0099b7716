/**
 * The PostgreSQL backend's schema, migrator and simple table families
 * (src/store/postgres/), against a throwaway cluster (test/helpers/postgres.ts):
 *  - migrations apply once, also when three migrators race; a newer schema
 *    is refused; a failing migration leaves nothing behind;
 *  - migrations/postgres/0001_init.sql has the SQLite schema's tables,
 *    columns, keys, foreign keys and indexes, and its constraints and the
 *    append-only audit log behave the same;
 *  - every family answers the same calls with the same values as the SQLite
 *    family (each call made on both backends, results compared strictly).
 * The families' database uses an ICU en-US default collation: ordering and
 * ranges must still be SQLite's bytewise ones.
 */
import { cpSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createAccountsStore } from '../../src/store/accounts.js';
import { createAuditStore, type AuditFilter, type AuditRow, type AuditScope } from '../../src/store/audit.js';
import { createPgAuditStore, fillSearchIndex, MAX_DRIVEN_CANDIDATES, SEARCH_FILL_LOCK_KEY } from '../../src/store/postgres/audit.js';
import { createAuthenticatorsStore } from '../../src/store/authenticators.js';
import { createCredentialsStore } from '../../src/store/credentials.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { createHostFactoriesStore } from '../../src/store/host-factories.js';
import { createKeyringStore } from '../../src/store/keyring.js';
import { createPolicyVersionsStore } from '../../src/store/policy-versions.js';
import { createSecretsStore } from '../../src/store/secrets.js';
import { createTokensStore } from '../../src/store/tokens.js';
import { createDynamicStore } from '../../src/store/dynamic.js';
import { createPostgresClient, rowsOf, type PgSql } from '../../src/store/postgres/client.js';
import { createPgFamilies, createPgSecretsStore } from '../../src/store/postgres/families.js';
import { migratePostgres, PG_MIGRATIONS_DIR, SchemaError } from '../../src/store/postgres/migrate.js';
import { createPostgresStore, WRITE_LOCK_KEY } from '../../src/store/postgres/index.js';
import type { Async } from '../../src/store/types.js';
import { describePostgres, holdAdvisoryLock, startCluster, type PgCluster } from '../helpers/postgres.js';
import { tempDir } from '../helpers/tmp.js';

type Families = ReturnType<typeof createPgFamilies>;

/** The SQLite families behind the same asynchronous interface (what src/store/sqlite.ts does, minus its transaction queue). */
function asyncOf<S extends object>(family: S): Async<S> {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(family)) {
    out[name] = async (...args: unknown[]) => (fn as (...a: unknown[]) => unknown)(...args);
  }
  return out as Async<S>;
}

function sqliteFamilies(db: Db): Families {
  return {
    accounts: asyncOf(createAccountsStore(db)),
    authenticators: asyncOf(createAuthenticatorsStore(db)),
    credentials: asyncOf(createCredentialsStore(db)),
    dynamic: asyncOf(createDynamicStore(db)),
    hostFactories: asyncOf(createHostFactoriesStore(db)),
    keyring: asyncOf(createKeyringStore(db)),
    policyVersions: asyncOf(createPolicyVersionsStore(db)),
    secrets: asyncOf(createSecretsStore(db)),
    tokens: asyncOf(createTokensStore(db)),
  };
}

describePostgres('PostgreSQL store', () => {
  let cluster: PgCluster;
  const clients: PgSql[] = [];
  let dbCount = 0;

  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 1 })));
    await cluster?.stop();
  });

  function client(url: string, max = 4): PgSql {
    const sql = createPostgresClient(url, { max });
    clients.push(sql);
    return sql;
  }

  async function freshDatabase(opts: { icuLocale?: string } = {}): Promise<string> {
    return cluster.createDatabase(`t${++dbCount}`, opts);
  }

  /** The shipped migrations (version, name), so these tests follow new ones. */
  const SHIPPED = readdirSync(PG_MIGRATIONS_DIR)
    .map((f) => /^(\d+)_(.+)\.sql$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ version: Number(m[1]), name: m[2]! }))
    .sort((a, b) => a.version - b.version);
  const LATEST = SHIPPED.at(-1)!.version;

  function migrationsWith(extra: Record<string, string>): string {
    const dir = join(tempDir('coffer-pgmig-'), 'migrations');
    mkdirSync(dir);
    cpSync(PG_MIGRATIONS_DIR, dir, { recursive: true });
    for (const [file, text] of Object.entries(extra)) writeFileSync(join(dir, file), text);
    return dir;
  }

  // ---------------------------------------------------------------- migrations

  it('applies the migrations once, recorded by version, when three migrators race', async () => {
    const url = await freshDatabase();
    // A slow second step keeps the racers overlapping; without the lock the
    // losers would fail on CREATE TABLE of tables that already exist.
    const dir = migrationsWith({ '0090_slow.sql': 'SELECT pg_sleep(0.3); CREATE TABLE slow_marker (x INTEGER);' });
    const racers = [client(url, 1), client(url, 1), client(url, 1)];
    const results = await Promise.all(racers.map((sql) => migratePostgres(sql, { migrationsDir: dir })));
    expect(results.map((r) => r.version)).toEqual([90, 90, 90]);
    expect(results.flatMap((r) => r.applied).sort((a, b) => a - b)).toEqual([...SHIPPED.map((m) => m.version), 90]);
    const sql = racers[0]!;
    expect(SHIPPED.slice(0, 2)).toEqual([
      { version: 1, name: 'init' },
      { version: 2, name: 'change_feed' },
    ]);
    expect(await sql`SELECT version, name FROM schema_migrations ORDER BY version`).toEqual([...SHIPPED, { version: 90, name: 'slow' }]);
    expect(await migratePostgres(sql, { migrationsDir: dir })).toEqual({ applied: [], version: 90 });
    expect(await sql`SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'`).toEqual([{ extname: 'pg_trgm' }]);
  });

  it('refuses a database whose schema is newer than this Coffer, with the upgrade message', async () => {
    const url = await freshDatabase();
    const sql = client(url, 1);
    await migratePostgres(sql, { migrationsDir: migrationsWith({ '0099_future.sql': 'CREATE TABLE future (x INTEGER);' }) });
    const refusal = migratePostgres(sql);
    await expect(refusal).rejects.toBeInstanceOf(SchemaError);
    await expect(migratePostgres(sql)).rejects.toThrow(
      `The database schema is at version 99 but this Coffer knows migrations up to ${LATEST}: upgrade Coffer before opening this database.`,
    );
    await expect(migratePostgres(sql, { readonly: true })).rejects.toThrow(/schema is at version 99 .* upgrade Coffer/);
  });

  it('rolls a failing migration back entirely; read-only opening refuses a schema that lacks one', async () => {
    const url = await freshDatabase();
    const sql = client(url, 1);
    await expect(migratePostgres(sql, { readonly: true })).rejects.toThrow(/lacks migration 1 \(init\)/);
    const broken = migrationsWith({ '0098_broken.sql': 'CREATE TABLE half (x INTEGER); SELECT * FROM no_such_table;' });
    await expect(migratePostgres(sql, { migrationsDir: broken })).rejects.toThrow(/no_such_table/);
    expect(await sql`SELECT to_regclass('half')::text AS t`).toEqual([{ t: null }]);
    expect(await sql`SELECT version FROM schema_migrations ORDER BY version`).toEqual(SHIPPED.map((m) => ({ version: m.version })));
    expect(await migratePostgres(sql, { readonly: true })).toEqual({ applied: [], version: LATEST });
  });

  // ---------------------------------------------------------------- schema

  it("has SQLite's tables, columns, primary keys, foreign keys and indexes", async () => {
    const lite = openDatabase(join(tempDir('coffer-pgcmp-'), 'c.db'));
    const sql = client(await freshDatabase(), 1);
    await migratePostgres(sql);

    const liteTables = (
      lite.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'audit_fts%' ORDER BY name").all() as {
        name: string;
        sql: string;
      }[]
    );
    // change_generations is PostgreSQL's own (the change feed between nodes; one SQLite process needs none), and so is
    // audit_search (the search index's copy of the messages, where SQLite has audit_fts).
    const pgTables = await sql<{ name: string }[]>`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'
      AND table_name NOT IN ('change_generations', 'audit_search') ORDER BY table_name COLLATE "C"`;
    expect(pgTables.map((t) => t.name)).toEqual(liteTables.map((t) => t.name));

    const normDefault = (d: string | null) => (d === null ? null : d.replace(/::[a-z ]+$/, ''));
    for (const { name, sql: createSql } of liteTables) {
      const liteCols = (lite.prepare(`PRAGMA table_info(${name})`).all() as { name: string; notnull: number; dflt_value: string | null; pk: number }[]).map(
        (c) => ({ name: c.name, notNull: c.notnull === 1 || c.pk > 0, default: c.dflt_value, pk: c.pk }),
      );
      const pgCols = await sql<{ name: string; not_null: boolean; dflt: string | null; pk: number }[]>`
        SELECT a.attname AS name, a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS dflt,
               coalesce(array_position(pk.conkey, a.attnum), 0) AS pk
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_constraint pk ON pk.conrelid = a.attrelid AND pk.contype = 'p'
        WHERE a.attrelid = ${name}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`;
      expect(pgCols.map((c) => ({ name: c.name, notNull: c.not_null, default: normDefault(c.dflt), pk: c.pk })), name).toEqual(liteCols);

      // Foreign keys: target, ON DELETE and deferral (SQLite's pragma does not say; its CREATE TABLE line does).
      const liteFks = (lite.prepare(`PRAGMA foreign_key_list(${name})`).all() as { table: string; from: string; to: string; on_delete: string }[]).map((f) => {
        const line = createSql.split('\n').find((l) => l.trim().startsWith(`${f.from} `) && l.includes('REFERENCES'))!;
        return { from: f.from, table: f.table, to: f.to, onDelete: f.on_delete, deferred: /DEFERRABLE INITIALLY DEFERRED/.test(line) };
      });
      const pgFks = await sql<{ from: string; table: string; to: string; del: string; deferred: boolean }[]>`
        SELECT a.attname AS from, c.confrelid::regclass::text AS table, fa.attname AS to, c.confdeltype AS del, c.condeferred AS deferred
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND c.conrelid = ${name}::regclass`;
      const action: Record<string, string> = { a: 'NO ACTION', c: 'CASCADE', r: 'RESTRICT', n: 'SET NULL', d: 'SET DEFAULT' };
      const byFrom = (x: { from: string }, y: { from: string }) => (x.from < y.from ? -1 : 1);
      expect(pgFks.map((f) => ({ from: f.from, table: f.table, to: f.to, onDelete: action[f.del], deferred: f.deferred })).sort(byFrom), name).toEqual(liteFks.sort(byFrom));

      // Indexes made by CREATE INDEX (keys and uniqueness are compared above and by behaviour below).
      const liteIdx = (lite.prepare(`PRAGMA index_list(${name})`).all() as { name: string; origin: string; unique: number }[])
        .filter((i) => i.origin === 'c' || i.origin === 'u')
        .map((i) => ({ name: i.name, unique: i.unique === 1, columns: (lite.prepare(`PRAGMA index_info(${i.name})`).all() as { name: string }[]).map((c) => c.name) }));
      const pgIdx = await sql<{ name: string; unique: boolean; columns: string[] }[]>`
        SELECT ic.relname AS name, i.indisunique AS unique,
               array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) AS columns
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = ${name}::regclass AND NOT i.indisprimary`;
      const byName = (x: { name: string }, y: { name: string }) => (x.name < y.name ? -1 : 1);
      expect(pgIdx.map((i) => ({ name: i.name, unique: i.unique, columns: i.columns })).sort(byName), name).toEqual(liteIdx.sort(byName));
    }
    // Triggers: SQLite's, and TRUNCATE refused too.
    const liteTriggers = (lite.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
    const pgTriggers = await sql<{ name: string }[]>`SELECT tgname AS name FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname COLLATE "C"`;
    // Plus the change feed's (migration postgres/0002: every table whose rows nodes cache announces its changes).
    const changeFeed = ['annotations_changed', 'credentials_not_before', 'keyring_changed', 'permissions_changed', 'resources_changed', 'revoked_tokens_added', 'role_memberships_changed', 'roles_changed'];
    const searchCopy = ['audit_search_no_delete', 'audit_search_no_truncate', 'audit_search_no_update'];
    expect(pgTriggers.map((t) => t.name)).toEqual([...liteTriggers, 'audit_events_no_truncate', ...changeFeed, ...searchCopy].sort());
    // Instead of FTS5: a trigram index on a copy of the messages, off the group commit's path (migration 0006).
    expect(await sql`SELECT indexname, indexdef FROM pg_indexes WHERE indexdef LIKE '%gin_trgm_ops%'`).toEqual([
      { indexname: 'audit_search_message_trgm', indexdef: 'CREATE INDEX audit_search_message_trgm ON public.audit_search USING gin (message gin_trgm_ops)' },
    ]);
    // ILIKE on these columns folds ASCII only, like SQLite's LIKE (what an audit `q` search needs).
    expect(await sql`SELECT 'ÄRGER abc'::text COLLATE "C" ILIKE '%Ärger ABC%' AS ascii, 'ÄRGER'::text COLLATE "C" ILIKE 'ärger' AS unicode`).toEqual([
      { ascii: true, unicode: false },
    ]);
    // Every text column compares bytewise, as SQLite's BINARY collation.
    expect(
      await sql`SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND data_type = 'text'
        AND coalesce(collation_name, '') <> 'C' AND table_name <> 'schema_migrations'`,
    ).toEqual([]);
    lite.close();
  });

  it('constraints, cascades and the append-only audit log behave as in SQLite', async () => {
    const { both, bothThrow, exec, sql } = await pair();
    await exec("INSERT INTO roles VALUES ('a:user:u', 'a', 'user', 'u', NULL, 't')");
    await exec("INSERT INTO resources VALUES ('a:webservice:w', 'a', 'webservice', 'w', 'a:user:u', NULL, 't', NULL)");
    await exec("INSERT INTO credentials (role_id, restricted_to, updated_at) VALUES ('a:user:u', '[]', 't')");
    await exec("INSERT INTO authenticator_configs VALUES ('a:webservice:w', 1, 't')");
    await bothThrow((_f, side) => exec("INSERT INTO keyring VALUES (1, x'00', x'00', 'bogus', 't')", side));
    await bothThrow((_f, side) => exec("INSERT INTO authenticator_configs VALUES ('a:webservice:w', 2, 't')", side));
    await bothThrow((_f, side) => exec("INSERT INTO health_probe VALUES (2, 't')", side));
    await bothThrow((_f, side) => exec("INSERT INTO secrets VALUES ('a:webservice:w', 1, 7, x'00', x'00', NULL, 't')", side)); // no key 7
    await bothThrow((_f, side) => exec("INSERT INTO authenticator_configs VALUES ('a:webservice:nope', 1, 't')", side)); // immediate FK
    const auditRow = (seq: number, result: string) =>
      `INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES (${seq}, 't', 'a', 'x', 'y', '${result}', 'm', x'00', x'01')`;
    await exec(auditRow(1, 'success'));
    await bothThrow((_f, side) => exec(auditRow(2, 'maybe'), side));
    await bothThrow((_f, side) => exec(auditRow(1, 'success'), side)); // primary key
    for (const stmt of ["UPDATE audit_events SET message = 'x'", 'DELETE FROM audit_events']) {
      const messages = await both(async (_f, side) => {
        try {
          await exec(stmt, side);
          return 'allowed';
        } catch (err) {
          return /audit_events is append-only/.test((err as Error).message) ? 'append-only' : (err as Error).message;
        }
      });
      expect(messages).toBe('append-only');
    }
    await expect(sql`TRUNCATE audit_events`).rejects.toThrow(/append-only/);
    // Deleting the role cascades to its credentials and resources, and on to the resource's rows.
    await exec("DELETE FROM roles WHERE role_id = 'a:user:u'");
    expect(await both(async (f) => [await f.credentials.get('a:user:u'), await f.authenticators.enabled('a:webservice:w')])).toStrictEqual([undefined, undefined]);
  });

  it("audit_time_state follows SQLite's trigger over a clock that goes backwards", async () => {
    const { exec, lite, sql } = await pair();
    const state = async () => ({
      sqlite: lite.prepare('SELECT regression_upto, max_time FROM audit_time_state').all(),
      postgres: rowsOf(await sql`SELECT regression_upto, max_time FROM audit_time_state`),
    });
    expect((await state()).postgres).toStrictEqual([{ regression_upto: 0, max_time: '' }]);
    // Mostly forward, with jumps back (some below an earlier regression's max_time) and equal times, in
    // statements of 1–6 events as group commits insert them (a row trigger then runs once per event, in seq order).
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let clock = Date.parse('2030-01-01T00:00:00.000Z');
    const changes = new Set<string>();
    for (let seq = 1; seq <= 240; ) {
      const events: [number, string][] = [];
      for (let n = 1 + Math.floor(rand() * 6); n > 0; n--, seq++) {
        const r = rand();
        clock += r < 0.15 ? -Math.floor(rand() * 60_000) : r < 0.25 ? 0 : Math.floor(rand() * 5_000);
        events.push([seq, new Date(clock).toISOString()]);
      }
      await exec(
        `INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES ${events.map(() => "(?, ?, 'a', 'x', 'y', 'success', 'm', x'00', x'01')").join(', ')}`,
        undefined,
        ...events.flat(),
      );
      const { sqlite, postgres } = await state();
      expect(postgres, `after seq ${seq - 1}`).toStrictEqual(sqlite);
      changes.add(JSON.stringify(sqlite));
    }
    // The clock went back often enough to move the state many times.
    expect(changes.size).toBeGreaterThan(5);
    // Times equal to the largest so far are not regressions: a statement of two such events, one ending on the
    // largest again after a regression, one that goes back and forward again within itself.
    const largest = new Date(Math.max(clock, ...[...changes].flatMap((c) => (JSON.parse(c) as { max_time: string }[]).map((r) => Date.parse(r.max_time) || 0)))).toISOString();
    const later = (ms: number) => new Date(Date.parse(largest) + ms).toISOString();
    for (const events of [
      [[241, later(1000)], [242, later(1000)]],
      [[243, later(500)], [244, later(1000)]],
      [[245, later(2000)], [246, later(1500)], [247, later(2000)], [248, later(2000)]],
    ] as [number, string][][]) {
      await exec(
        `INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES ${events.map(() => "(?, ?, 'a', 'x', 'y', 'success', 'm', x'00', x'01')").join(', ')}`,
        undefined,
        ...events.flat(),
      );
      const { sqlite, postgres } = await state();
      expect(postgres, `after seq ${events.at(-1)![0]}`).toStrictEqual(sqlite);
    }
    expect((await state()).postgres).toStrictEqual([{ regression_upto: 246, max_time: later(2000) }]);
    expect((await state()).sqlite).not.toEqual([{ regression_upto: 0, max_time: '' }]);
  });

  it('migration 0008 takes over audit_time_state from the per-row trigger on a log that has one, state unchanged', async () => {
    const sql = client(await freshDatabase(), 2);
    const lite = openDatabase(join(tempDir('coffer-pgmig8-'), 'c.db'));
    const before = join(tempDir('coffer-pgmig8-'), 'migrations');
    mkdirSync(before);
    for (const f of readdirSync(PG_MIGRATIONS_DIR).filter((name) => Number(name.slice(0, 4)) < 8)) cpSync(join(PG_MIGRATIONS_DIR, f), join(before, f));
    expect((await migratePostgres(sql, { migrationsDir: before })).version).toBe(7);
    const t = (s: number) => `2030-01-01T00:00:${String(s).padStart(2, '0')}.000Z`;
    const insert = async (events: [number, string][]) => {
      const values = events.map(([seq, time]) => `(${seq}, '${time}', 'a', 'x', 'y', 'success', 'm', x'00', x'01')`).join(', ');
      lite.exec(`INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES ${values}`);
      await sql.unsafe(`INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES ${values.replace(/x'(\d\d)'/g, "'\\x$1'::bytea")}`);
    };
    const state = async () => ({
      sqlite: lite.prepare('SELECT regression_upto, max_time FROM audit_time_state').all(),
      postgres: rowsOf(await sql`SELECT regression_upto, max_time FROM audit_time_state`),
    });
    // Written under the per-row trigger: the clock went back at 3 (below 2's time) and at 5.
    await insert([[1, t(10)], [2, t(20)], [3, t(15)]]);
    await insert([[4, t(30)], [5, t(25)]]);
    const old = await state();
    expect(old.postgres).toStrictEqual([{ regression_upto: 5, max_time: t(30) }]);
    expect(old.postgres).toStrictEqual(old.sqlite);
    expect((await migratePostgres(sql)).applied[0]).toBe(8);
    expect((await state()).postgres).toStrictEqual(old.postgres);
    // The statement trigger goes on from there: the event after the last regression, a new regression, equal times.
    for (const events of [[[6, t(30)]], [[7, t(40)], [8, t(35)], [9, t(40)]], [[10, t(41)]], [[11, t(5)], [12, t(41)]]] as [number, string][][]) {
      await insert(events);
      const { sqlite, postgres } = await state();
      expect(postgres, `after seq ${events.at(-1)![0]}`).toStrictEqual(sqlite);
    }
    expect((await state()).postgres).toStrictEqual([{ regression_upto: 11, max_time: t(41) }]);
    expect(await sql`SELECT tgname, tgtype & 1 AS per_row FROM pg_trigger WHERE tgname = 'audit_events_time_state'`).toEqual([
      { tgname: 'audit_events_time_state', per_row: 0 },
    ]);
  });

  // ---------------------------------------------------------------- families

  /**
   * A SQLite store and a migrated PostgreSQL database (ICU en-US default
   * collation). `both(fn)` runs fn on SQLite, then on PostgreSQL, at the same
   * fake time, expects strictly equal results and answers them.
   */
  async function pair() {
    const lite = openDatabase(join(tempDir('coffer-pgcmp-'), 'c.db'));
    const sql = client(await freshDatabase({ icuLocale: 'en-US' }));
    await migratePostgres(sql);
    const families = { sqlite: sqliteFamilies(lite), postgres: createPgFamilies(() => sql) };
    type Side = keyof typeof families;
    let now = Date.parse('2030-01-02T03:04:05.678Z');

    async function both<T>(fn: (f: Families, side: Side) => Promise<T>): Promise<T> {
      now += 1000;
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(now);
        const a = await fn(families.sqlite, 'sqlite');
        vi.setSystemTime(now);
        const b = await fn(families.postgres, 'postgres');
        expect(b).toStrictEqual(a);
        return a;
      } finally {
        vi.useRealTimers();
      }
    }
    async function bothThrow(fn: (f: Families, side: Side) => Promise<unknown>): Promise<void> {
      const outcome = async (side: Side) => fn(families[side], side).then(() => 'resolved', (err: Error) => `threw: ${err.constructor.name}`);
      expect([await outcome('sqlite'), await outcome('postgres')]).toEqual(['threw: SqliteError', 'threw: PostgresError']);
    }
    /** Raw SQL on one side, or both; `?` placeholders. */
    async function exec(text: string, side?: Side, ...params: unknown[]): Promise<void> {
      if (side !== 'postgres') lite.prepare(text).run(...params);
      if (side !== 'sqlite') {
        let n = 0;
        await sql.unsafe(text.replace(/\?/g, () => `$${++n}`).replace(/x'([0-9a-f]*)'/gi, "'\\x$1'::bytea"), params as never[]);
      }
    }
    const role = (id: string) => exec('INSERT INTO roles (role_id, account, kind, identifier, policy_id, created_at) VALUES (?, ?, ?, ?, NULL, ?)', undefined, id, ...id.split(':'), 't');
    const resource = (id: string, owner: string) =>
      exec('INSERT INTO resources (resource_id, account, kind, identifier, owner_id, policy_id, created_at) VALUES (?, ?, ?, ?, ?, NULL, ?)', undefined, id, ...id.split(':'), owner, 't');
    return { both, bothThrow: (fn: (f: Families, side: Side) => Promise<unknown>) => bothThrow(fn), exec, role, resource, sql, lite, families };
  }

  const buf = (s: string) => Buffer.from(s);
  const byKey = <T>(key: keyof T) => (rows: T[]) => [...rows].sort((x, y) => Buffer.compare(Buffer.from(String(x[key])), Buffer.from(String(y[key]))));

  it('accounts: insert, exists, list in bytewise order, a duplicate refused', async () => {
    const { both, bothThrow, sql } = await pair();
    // The database's own collation orders otherwise: the schema's COLLATE "C" is what makes the order bytewise.
    expect(await sql`SELECT array_agg(x ORDER BY x) AS v FROM (VALUES ('b'), ('B'), ('a')) t(x)`).toEqual([{ v: ['a', 'b', 'B'] }]);
    expect(await both((f) => f.accounts.list())).toEqual([]);
    expect(await both((f) => f.accounts.exists('acme'))).toBe(false);
    for (const name of ['b', 'B', 'a', '_x', 'Ä', 'a b', 'acme', 'Z9']) await both((f) => f.accounts.insert(name));
    // Bytewise, as SQLite: an en-US collation would say a, a b, acme, Ä, b, B, …
    expect(await both((f) => f.accounts.list())).toEqual(['B', 'Z9', '_x', 'a', 'a b', 'acme', 'b', 'Ä']);
    expect(await both((f) => f.accounts.exists('B'))).toBe(true);
    expect(await both((f) => f.accounts.exists('ACME'))).toBe(false);
    await bothThrow((f) => f.accounts.insert('acme'));
  });

  it('authenticators: enabled flags, the authn-jwt webservice range, single-use jti', async () => {
    const { both, role, resource } = await pair();
    await role('a:user:admin');
    const ids = [
      'conjur/authn-jwt/svc',
      'conjur/authn-jwt/svc/status',
      'conjur/authn-jwt/é',
      'conjur/authn-jwt/',
      'conjur/authn-jwt',
      'conjur/authn-jwt0',
      'conjur/authn-jwT/upper',
      'conjur/authn-jwt-other',
    ];
    for (const id of ids) await resource(`a:webservice:${id}`, 'a:user:admin');
    await resource('a:variable:conjur/authn-jwt/not-a-webservice', 'a:user:admin');
    expect(await both((f) => f.authenticators.configuredJwtWebservices())).toEqual([
      'a:webservice:conjur/authn-jwt/',
      'a:webservice:conjur/authn-jwt/svc',
      'a:webservice:conjur/authn-jwt/svc/status',
      'a:webservice:conjur/authn-jwt/é',
    ]);
    expect(await both((f) => f.authenticators.enabled('a:webservice:conjur/authn-jwt/svc'))).toBeUndefined();
    await both((f) => f.authenticators.setEnabled('a:webservice:conjur/authn-jwt/svc', true, '2030-01-01T00:00:00.000Z'));
    await both((f) => f.authenticators.setEnabled('a:webservice:conjur/authn-jwt/é', true, '2030-01-01T00:00:00.000Z'));
    await both((f) => f.authenticators.setEnabled('a:webservice:conjur/authn-jwt/é', false, '2030-01-01T00:00:01.000Z'));
    expect(await both((f) => f.authenticators.enabled('a:webservice:conjur/authn-jwt/svc'))).toBe(true);
    expect(await both((f) => f.authenticators.enabled('a:webservice:conjur/authn-jwt/é'))).toBe(false);
    expect(await both((f) => f.authenticators.enabledWebservices())).toEqual(['a:webservice:conjur/authn-jwt/svc']);

    const exp = 2_000_000_000; // epoch seconds
    expect(await both((f) => f.authenticators.markJtiUsed('svc', 'j1', exp, exp - 100))).toBe(true);
    expect(await both((f) => f.authenticators.markJtiUsed('svc', 'j1', exp, exp - 50))).toBe(false);
    expect(await both((f) => f.authenticators.markJtiUsed('other', 'j1', exp, exp - 50))).toBe(true);
    expect(await both((f) => f.authenticators.markJtiUsed('svc', 'j1', exp + 500, exp + 1))).toBe(true); // the old row expired
    expect(await both((f) => f.authenticators.markJtiUsed('svc', 'j1', exp + 900, exp + 2))).toBe(false);
    expect(await both((f) => f.authenticators.purgeExpiredJti(exp + 1))).toBe(1);
    expect(await both((f) => f.authenticators.purgeExpiredJti(exp + 1))).toBe(0);
  });

  it('authenticators: a jti is single use across connections racing for it (PostgreSQL)', async () => {
    const url = await freshDatabase();
    await migratePostgres(client(url, 1));
    const nodes = [client(url, 2), client(url, 2), client(url, 2), client(url, 2)].map((sql) => createPgFamilies(() => sql).authenticators);
    for (let round = 0; round < 20; round++) {
      const wins = await Promise.all(nodes.map((n) => n.markJtiUsed('svc', `race-${round}`, 2_000_000_000, 1_900_000_000)));
      expect(wins.filter(Boolean)).toHaveLength(1);
    }
  });

  it('credentials: insert, get, API-key rotation, password, CIDRs, not-before, resealing, cascade', async () => {
    const { both, bothThrow, exec, role } = await pair();
    for (const id of ['a:user:alice', 'a:host:h1', 'a:user:bob']) await role(id);
    expect(await both((f) => f.credentials.get('a:user:alice'))).toBeUndefined();
    await both((f) => f.credentials.insert('a:user:alice', buf('hash-a'), buf('sealed-a'), [], 0));
    await both((f) => f.credentials.insert('a:host:h1', buf('hash-h'), buf('sealed-h'), ['10.0.0.0/8', '192.168.1.1/32'], 1_900_000_000_123));
    await bothThrow((f) => f.credentials.insert('a:user:alice', buf('x'), buf('y'), [], 0));
    await bothThrow((f) => f.credentials.insert('a:user:nobody', buf('x'), buf('y'), [], 0)); // deferred FK, checked at the statement's own commit
    const row = await both((f) => f.credentials.get('a:host:h1'));
    expect(row).toMatchObject({ restricted_to: '["10.0.0.0/8","192.168.1.1/32"]', tokens_not_before: 1_900_000_000_123, password_hash: null });
    expect(Buffer.isBuffer(row!.api_key_hash)).toBe(true);
    await both((f) => f.credentials.setApiKey('a:user:alice', buf('hash-a2'), buf('sealed-a2'), 1_900_000_000_456));
    await both((f) => f.credentials.setPasswordHash('a:user:alice', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'));
    await both((f) => f.credentials.setRestrictedTo('a:user:alice', ['127.0.0.1/32']));
    await both((f) => f.credentials.setApiKey('a:user:nobody', buf('h'), buf('s'), 1)); // no row: nothing happens
    expect(await both((f) => f.credentials.get('a:user:alice'))).toBeDefined();
    expect(await both(async (f) => byKey<{ role_id: string }>('role_id')(await f.credentials.allNotBefore()))).toEqual([
      { role_id: 'a:host:h1', tokens_not_before: 1_900_000_000_123 },
      { role_id: 'a:user:alice', tokens_not_before: 1_900_000_000_456 },
    ]);
    await both((f) => f.credentials.resealApiKey('a:host:h1', buf('resealed-h')));
    expect(await both(async (f) => byKey<{ role_id: string }>('role_id')(await f.credentials.sealedApiKeys()))).toEqual([
      { role_id: 'a:host:h1', api_key_sealed: buf('resealed-h') },
      { role_id: 'a:user:alice', api_key_sealed: buf('sealed-a2') },
    ]);
    await exec("DELETE FROM roles WHERE role_id = 'a:host:h1'");
    expect(await both((f) => f.credentials.get('a:host:h1'))).toBeUndefined();
  });

  it('tokens: revocations kept until expiry, a repeated revocation ignored, purge counts', async () => {
    const { both } = await pair();
    const t = 1_900_000_000_000;
    await both((f) => f.tokens.revoke('jti-1', t + 10));
    await both((f) => f.tokens.revoke('jti-1', t + 99_999)); // DO NOTHING: the first expiry stays
    await both((f) => f.tokens.revoke('jti-2', t + 20));
    await both((f) => f.tokens.revoke('jti-3', t + 30));
    const live = (now: number) => both(async (f) => byKey<{ jti: string }>('jti')(await f.tokens.liveRevocations(now)));
    expect(await live(t + 10)).toEqual([
      { jti: 'jti-2', expires_at: t + 20 },
      { jti: 'jti-3', expires_at: t + 30 },
    ]);
    expect(await live(t)).toHaveLength(3);
    expect(await both((f) => f.tokens.purgeExpired(t + 20))).toBe(2);
    expect(await both((f) => f.tokens.purgeExpired(t + 20))).toBe(0);
    expect(await live(0)).toEqual([{ jti: 'jti-3', expires_at: t + 30 }]);
  });

  it('keyring: server meta upsert, keys inserted, state changes, rewrap, retire, a bad state refused', async () => {
    const { both, bothThrow } = await pair();
    expect(await both((f) => f.keyring.getMeta('pepper'))).toBeUndefined();
    await both((f) => f.keyring.putMeta('pepper', buf('p1')));
    await both((f) => f.keyring.putMeta('pepper', buf('p2')));
    await both((f) => f.keyring.putMeta('empty', Buffer.alloc(0)));
    expect(await both((f) => f.keyring.getMeta('pepper'))).toEqual(buf('p2'));
    expect(await both((f) => f.keyring.getMeta('empty'))).toEqual(Buffer.alloc(0));
    await both((f) => f.keyring.insertKey(1, buf('n1'), buf('w1'), 'active'));
    await both((f) => f.keyring.insertKey(2, buf('n2'), Buffer.from([0, 255, 0x5c, 0x78]), 'retiring'));
    await bothThrow((f) => f.keyring.insertKey(2, buf('n'), buf('w'), 'active'));
    await bothThrow((f) => f.keyring.insertKey(3, buf('n'), buf('w'), 'bogus' as 'active'));
    await both((f) => f.keyring.setKeyState(1, 'retiring'));
    await both((f) => f.keyring.setKeyState(2, 'active'));
    await both((f) => f.keyring.rewrapKey(2, buf('n2b'), buf('w2b')));
    await both((f) => f.keyring.retireKey(1));
    const keys = await both((f) => f.keyring.listKeys());
    expect(keys.map((k) => [k.version, k.state, k.wrapped_key.length])).toEqual([
      [1, 'retired', 0],
      [2, 'active', 3],
    ]);
  });

  it('policyVersions: next version, insert, prune to the newest N, list', async () => {
    const { both, role, resource } = await pair();
    await role('a:user:admin');
    await resource('a:policy:root', 'a:user:admin');
    await resource('a:policy:other', 'a:user:admin');
    expect(await both((f) => f.policyVersions.nextVersion('a:policy:root'))).toBe(1);
    for (let v = 1; v <= 25; v++) {
      await both((f) =>
        f.policyVersions.insert({
          resource_id: 'a:policy:root',
          version: v,
          role_id: 'a:user:admin',
          client_ip: v % 2 ? '127.0.0.1' : null,
          policy_text: `- !variable v${v}\n`,
          policy_sha256: 'ab'.repeat(32),
          created_at: new Date(Date.UTC(2030, 0, 1, 0, 0, v)).toISOString(),
          finished_at: v % 3 ? null : new Date(Date.UTC(2030, 0, 1, 0, 1, v)).toISOString(),
        }),
      );
    }
    await both((f) => f.policyVersions.prune('a:policy:root', 20));
    await both((f) => f.policyVersions.prune('a:policy:other', 20)); // no versions: nothing
    const list = await both((f) => f.policyVersions.list('a:policy:root'));
    expect(list.map((r) => r.version)).toEqual(Array.from({ length: 20 }, (_, i) => i + 6));
    expect(await both((f) => f.policyVersions.nextVersion('a:policy:root'))).toBe(26);
    expect(await both((f) => f.policyVersions.list('a:policy:other'))).toEqual([]);
  });

  it('secrets: versions, latest, prune, expirations, rotation batches, resealing, signing keys', async () => {
    const { both, bothThrow, exec, role, resource, sql, families } = await pair();
    const liteFamilies = families.sqlite;
    await role('a:user:admin');
    for (const v of ['a:variable:db/password', 'a:variable:api-key', 'a:variable:B']) await resource(v, 'a:user:admin');
    await both((f) => f.keyring.insertKey(1, buf('n1'), buf('w1'), 'retiring'));
    await both((f) => f.keyring.insertKey(2, buf('n2'), buf('w2'), 'active'));
    expect(await both((f) => f.secrets.latest('a:variable:db/password'))).toBeUndefined();
    for (let v = 1; v <= 4; v++) {
      await both((f) => f.secrets.insert({ resource_id: 'a:variable:db/password', version: v, key_version: v < 3 ? 1 : 2, nonce: buf(`n${v}`), ciphertext: buf(`c${v}`) }));
    }
    await both((f) => f.secrets.insert({ resource_id: 'a:variable:api-key', version: 1, key_version: 1, nonce: buf('n'), ciphertext: Buffer.alloc(0) }));
    await both((f) => f.secrets.insert({ resource_id: 'a:variable:B', version: 1, key_version: 1, nonce: buf('n'), ciphertext: buf('c') }));
    await bothThrow((f) => f.secrets.insert({ resource_id: 'a:variable:B', version: 2, key_version: 9, nonce: buf('n'), ciphertext: buf('c') }));
    expect((await both((f) => f.secrets.latest('a:variable:db/password')))!.version).toBe(4);
    // Outside a transaction PostgreSQL answers `latest` for every fetch of one event-loop turn in one statement:
    // the same rows, each to its own caller, a missing one undefined, a repeated id answered twice.
    const ids = ['a:variable:B', 'a:variable:db/password', 'a:variable:none', 'a:variable:api-key', 'a:variable:db/password'];
    const batched = createPgSecretsStore(() => sql, () => true);
    expect(await Promise.all(ids.map((id) => batched.latest(id)))).toStrictEqual(await Promise.all(ids.map((id) => liteFamilies.secrets.latest(id))));
    expect(await both((f) => f.secrets.byVersion('a:variable:db/password', 2))).toBeDefined();
    expect(await both((f) => f.secrets.byVersion('a:variable:db/password', 9))).toBeUndefined();
    await exec("UPDATE secrets SET expires_at = '2030-06-01T00:00:00.000Z' WHERE resource_id = 'a:variable:db/password'");
    expect(await both((f) => f.secrets.versions('a:variable:db/password'))).toHaveLength(4);
    await both((f) => f.secrets.clearExpirations('a:variable:db/password'));
    await both((f) => f.secrets.prune('a:variable:db/password', 2));
    expect(await both((f) => f.secrets.versions('a:variable:db/password'))).toEqual([
      { version: 3, expires_at: null },
      { version: 4, expires_at: null },
    ]);
    expect(await both((f) => f.secrets.countUnderKey(1))).toBe(2);
    const batch = await both((f) => f.secrets.notUnderKey(2, 10));
    expect(batch.map((r) => r.resource_id)).toEqual(['a:variable:B', 'a:variable:api-key']); // bytewise: 'B' < 'a'
    expect(await both((f) => f.secrets.notUnderKey(2, 1))).toHaveLength(1);
    for (const r of batch) await both((f) => f.secrets.reseal(r.resource_id, r.version, 2, buf('rn'), buf('rc')));
    expect(await both((f) => f.secrets.countUnderKey(1))).toBe(0);
    expect(await both((f) => f.secrets.countUnderKey(2))).toBe(4);

    expect(await both((f) => f.secrets.signingKey('a'))).toBeUndefined();
    await both((f) => f.secrets.insertSigningKey({ account: 'a', kid: 'kid-a', public_key: buf('pub-a'), key_version: 1, nonce: buf('n'), ciphertext: buf('c') }));
    await both((f) => f.secrets.insertSigningKey({ account: 'b', kid: 'kid-b', public_key: buf('pub-b'), key_version: 2, nonce: buf('n'), ciphertext: buf('c') }));
    await bothThrow((f) => f.secrets.insertSigningKey({ account: 'a', kid: 'k', public_key: buf('p'), key_version: 1, nonce: buf('n'), ciphertext: buf('c') }));
    await both((f) => f.secrets.resealSigningKey('a', 2, buf('n2'), buf('c2')));
    expect(await both((f) => f.secrets.signingKey('a'))).toMatchObject({ key_version: 2, kid: 'kid-a' });
    expect(await both((f) => f.secrets.signingKeyByKid('kid-b'))).toMatchObject({ account: 'b' });
    expect(await both((f) => f.secrets.signingKeyByKid('nope'))).toBeUndefined();
    expect(await both(async (f) => byKey<{ account: string }>('account')(await f.secrets.allSigningKeys()))).toHaveLength(2);
  });

  it('hostFactories: tokens by hash, live ones soonest expiry first, delete, purge, reseal, cascade', async () => {
    const { both, bothThrow, exec, role, resource } = await pair();
    await role('a:user:admin');
    await resource('a:host_factory:hf', 'a:user:admin');
    await resource('a:host_factory:other', 'a:user:admin');
    const t = 1_900_000_000_000;
    const token = (hash: string, expires: number, created: string, factory = 'a:host_factory:hf') => ({
      token_hash: Buffer.from(hash, 'hex'),
      host_factory_id: factory,
      token_sealed: buf(`sealed-${hash}`),
      expires_at: expires,
      cidr: hash === 'ff' ? '["10.0.0.0/8"]' : '[]',
      created_at: created,
    });
    const rows = [
      token('ff', t + 100, '2030-01-01T00:00:02.000Z'),
      token('0a', t + 100, '2030-01-01T00:00:01.000Z'),
      token('0b', t + 100, '2030-01-01T00:00:01.000Z'),
      token('01', t + 50, '2030-01-01T00:00:09.000Z'),
      token('02', t - 1, '2030-01-01T00:00:00.000Z'),
      token('03', t + 10, '2030-01-01T00:00:00.000Z', 'a:host_factory:other'),
    ];
    for (const r of rows) await both((f) => f.hostFactories.insert(r));
    await bothThrow((f) => f.hostFactories.insert(rows[0]!));
    expect(await both((f) => f.hostFactories.byHash(Buffer.from('ff', 'hex')))).toEqual(rows[0]);
    expect(await both((f) => f.hostFactories.byHash(Buffer.from('ee', 'hex')))).toBeUndefined();
    const live = await both((f) => f.hostFactories.liveFor('a:host_factory:hf', t));
    expect(live.map((r) => r.token_hash.toString('hex'))).toEqual(['01', '0a', '0b', 'ff']);
    expect(await both((f) => f.hostFactories.countFor('a:host_factory:hf'))).toBe(5);
    expect(await both((f) => f.hostFactories.delete(Buffer.from('0b', 'hex')))).toBe(true);
    expect(await both((f) => f.hostFactories.delete(Buffer.from('0b', 'hex')))).toBe(false);
    expect(await both((f) => f.hostFactories.purgeExpired(t))).toBe(1);
    await both((f) => f.hostFactories.reseal(Buffer.from('ff', 'hex'), buf('resealed')));
    expect(await both(async (f) => byKey<{ token_hash: Buffer }>('token_hash')(await f.hostFactories.sealedTokens()))).toHaveLength(4);
    await exec("DELETE FROM resources WHERE resource_id = 'a:host_factory:hf'");
    expect(await both((f) => f.hostFactories.countFor('a:host_factory:hf'))).toBe(0);
    expect(await both((f) => f.hostFactories.sealedTokens())).toEqual([
      { token_hash: Buffer.from('03', 'hex'), host_factory_id: 'a:host_factory:other', token_sealed: buf('sealed-03') },
    ]);
  });
  it('audit: batches of every size and pattern of NULLs are one prepared statement, reused, and stored exactly', async () => {
    const sql = client(await freshDatabase(), 1); // one connection: its prepared statements are the pool's
    await migratePostgres(sql);
    const audit = createPgAuditStore(() => sql);
    let seq = 0;
    const written: AuditRow[] = [];
    for (let size = 1; size <= 12; size++) {
      const rows = Array.from({ length: size }, (_, i): AuditRow => {
        const odd = (seq + i) % 2 === 1;
        return {
          seq: seq + i + 1, time: `2030-01-01T00:00:${String(size).padStart(2, '0')}.000Z`, account: odd ? null : 'a', action: 'fetch', operation: 'fetch',
          result: odd ? 'failure' : 'success', role_id: odd ? null : 'a:host:h', resource_id: 'a:variable:x', version: odd ? null : 2 ** 40 + i,
          client_ip: odd ? '::1' : null, request_id: null, user_agent: 'ü "quoted" \\ \n tab\t 𝄞', reason: odd ? 'x' : null,
          message: `event ${seq + i + 1} ✓`, details: odd ? '{"k":[1,"v"]}' : null, prev_hash: Buffer.alloc(32, i), hash: Buffer.alloc(32, 255 - i),
        };
      });
      await audit.insertAll(rows);
      written.push(...rows);
      seq += size;
    }
    // One named statement, prepared once and reused: not an unnamed one described anew (a second round trip) each time.
    const inserts = await sql`SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO audit_events%'`;
    expect(inserts).toHaveLength(1);
    expect(await audit.page(0, 1000)).toEqual(written);
  });

  it("audit: a scoped auditor's pages are SQLite's, read through the resource index range by range", async () => {
    const { exec, resource, role, sql, lite } = await pair();
    await role('a:user:admin');
    // A kind only this account uses: a subtree scope must cover it too.
    await resource('a:gizmo:ci/g', 'a:user:admin');
    const ids = [
      'a:policy:ci', 'a:variable:ci/db', 'a:variable:ci/sub/deep', 'a:gizmo:ci/g', 'a:host:ci/h', 'a:user:bob@ci', 'a:user:carol@ci-sub',
      // Look-alikes that no scope below covers.
      'a:variable:ci0', 'a:variable:ci', 'a:variable:other/x:ci/y', 'a:variable:CI/z', 'a:user:@ci', 'a:user:bob@ci-other', 'a:policy:ci0', 'b:variable:ci/db', 'a:policy:root',
    ];
    const lines: string[] = [];
    for (let seq = 1; seq <= 400; seq++) {
      const id = ids[(seq * 7) % ids.length]!;
      const result = seq % 5 === 0 ? 'failure' : 'success';
      const action = seq % 3 === 0 ? 'authn' : 'fetch';
      const time = `2030-01-01T00:${String(Math.floor(seq / 60)).padStart(2, '0')}:${String(seq % 60).padStart(2, '0')}.000Z`;
      lines.push(`(${seq}, '${time}', '${id.split(':')[0]}', '${action}', 'op', '${result}', 'a:user:admin', '${id}', 'event ${seq}', x'00', x'01')`);
    }
    await exec(`INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, message, prev_hash, hash) VALUES ${lines.join(', ')}`);
    const liteAudit = createAuditStore(lite);
    const pgAudit = createPgAuditStore(() => sql);
    const scopes: AuditScope[] = [
      { type: 'subtree', account: 'a', path: 'ci' },
      { type: 'subtree', account: 'a', path: 'ci/sub' }, // inside the first: its events must not come twice
      { type: 'users', account: 'a', suffix: 'ci' },
      { type: 'users', account: 'a', suffix: 'ci-sub' },
      { type: 'resource', resourceId: 'a:variable:other/x:ci/y' },
    ];
    const shapes: Partial<AuditFilter>[] = [
      {}, { order: 'asc' }, { limit: 7 }, { limit: 7, order: 'asc', cursor: 100 }, { cursor: 250 }, { action: 'authn' }, { result: 'failure', limit: 5 },
      { action: 'fetch', result: 'failure' }, { since: '2030-01-01T00:03:00.000Z', limit: 9 }, { until: '2030-01-01T00:02:00.000Z', order: 'asc', limit: 9 },
      { limit: 1000 }, { limit: undefined }, { limit: undefined, order: 'asc', action: 'fetch' },
    ];
    // An auditor of many policies: hundreds of ranges, more than one statement's worth (merged across statements).
    const many: AuditScope[] = [
      ...Array.from({ length: 40 }, (_, i): AuditScope => ({ type: 'subtree', account: 'a', path: i === 7 ? 'ci' : `p${i}` })),
      ...Array.from({ length: 40 }, (_, i): AuditScope => ({ type: 'users', account: 'a', suffix: i === 9 ? 'ci-sub' : `p${i}` })),
      ...scopes,
    ];
    for (const scopeSet of [scopes, scopes.slice(2, 3), scopes.slice(4), [scopes[0]!], many]) {
      for (const shape of shapes) {
        const f: AuditFilter = { account: 'a', scopes: scopeSet, order: 'desc', limit: 20, ...shape };
        const expected = liteAudit.query(f).map((r) => r.seq);
        const got = (await pgAudit.query(f)).map((r) => Number(r.seq));
        expect(got, JSON.stringify(f)).toEqual(expected);
        expect(new Set(got).size).toBe(got.length);
      }
    }
    const covered = new Set(liteAudit.query({ account: 'a', scopes, order: 'asc' }).map((r) => r.resource_id));
    expect([...covered].sort()).toEqual(['a:gizmo:ci/g', 'a:host:ci/h', 'a:policy:ci', 'a:user:bob@ci', 'a:user:carol@ci-sub', 'a:variable:ci/db', 'a:variable:ci/sub/deep', 'a:variable:other/x:ci/y']);
    // One subquery per range, each with its own limit, merged; the planner picks each one's index from the statistics
    // (over 400 rows a range holding a sixth of them may be a sequential scan: the bench shows the big-log plan).
    await sql`ANALYZE audit_events`;
    const plan = (await pgAudit.explain({ account: 'a', scopes, order: 'desc', limit: 100 })).join('\n');
    expect(plan).toMatch(/Index Cond: \(\(account = 'a'::text\) AND \(resource_id = 'a:policy:ci'::text\)\)/);
    expect(plan.match(/-> +Limit/g)?.length).toBeGreaterThanOrEqual(scopes.length);
  });

  // qSampleFrom 0: every q page over 100 copied events or more samples them for q's rare trigrams (a big log's way);
  // maxDrivenCandidates 2: rare trigrams finding more candidates than that leave the page to the whole pattern.
  it.each([{ qSampleFrom: undefined }, { qSampleFrom: 0 }, { qSampleFrom: 0, maxDrivenCandidates: 2 }])('audit: q reads the search index and the events after it whatever the lag; fills copy a prefix, one at a time (%o)', async ({ qSampleFrom, maxDrivenCandidates }) => {
    const { exec, sql, lite } = await pair();
    // The Kelvin sign and İ: Unicode lower-cases them to ASCII letters, ILIKE on a "C" column does not.
    const words = ['alpha', 'Bravo \u212Aelvin bravo\u0130', 'charlie%', 'delta_x', 'ECHO'];
    const insertEvents = async (from: number, to: number, side?: 'postgres') => {
      for (let seq = from; seq <= to; seq++) {
        const message = `event ${seq} ${words[seq % words.length]} ${seq % 7 === 0 ? 'tried to fetch' : 'fetched'}${seq % 97 === 0 ? ' rarely' : ''}`;
        const time = `2030-01-01T00:${String(Math.floor(seq / 60)).padStart(2, '0')}:${String(seq % 60).padStart(2, '0')}.000Z`;
        await exec(
          "INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, message, prev_hash, hash) VALUES (?, ?, 'a', ?, 'op', ?, 'a:user:admin', 'a:variable:v', ?, x'00', x'01')",
          side, seq, time, seq % 3 === 0 ? 'authn' : 'fetch', seq % 4 === 0 ? 'failure' : 'success', message,
        );
      }
    };
    await insertEvents(1, 300);
    const liteAudit = createAuditStore(lite);
    const fill = (max: number) => sql.begin((t) => fillSearchIndex(t, max));
    // Another node's fill can land between a q page reading the copied head and its statement running: `racing`
    // events are copied just then (the statement goes through unsafe, the head's read through the template).
    let racing = 0;
    const pgAudit = createPgAuditStore(
      () =>
      new Proxy(sql, {
        get(target, prop, receiver) {
          if (prop !== 'unsafe') return Reflect.get(target, prop, receiver);
          return async (text: string, params: never[]) => {
            if (racing > 0) expect(await fill(racing)).toBe(racing);
            racing = 0;
            return target.unsafe(text, params);
          };
        },
      }),
      { qSampleFrom, maxDrivenCandidates },
    );
    const shapes: Partial<AuditFilter>[] = [
      { q: 'alpha' }, { q: 'bravo', order: 'asc' }, { q: 'charlie%', limit: 7 }, { q: 'delta_x', cursor: 150 }, { q: 'DELTA-X' },
      { q: 'tried to fetch', result: 'failure', limit: 1000 }, { q: 'event 1', order: 'asc', limit: 30 }, { q: 'event 1', cursor: 140, limit: 9 },
      { q: 'echo', action: 'authn', since: '2030-01-01T00:02:00.000Z' }, { q: 'no such text' }, { q: 'fetch', limit: undefined, order: 'asc' },
      // A rare trigram ('250', '123', '150') with common ones: sampled, the rare one finds the candidates and the
      // whole pattern is checked on them ('150 echo': event 150 has the trigram but not the text).
      { q: 'EVENT 250 alpha' }, { q: 'event 123 ', order: 'asc' }, { q: '150 echo' },
      // Trigrams only Unicode's lower case would make ('kel', 'voi'): never taken as rare ones.
      { q: '\u212Aelvin' }, { q: 'bravo\u0130', order: 'asc' },
      // Three events: over maxDrivenCandidates 2, the whole pattern answers.
      { q: 'rarely' },
    ];
    let copied = 0;
    // From nothing copied, through the head falling inside a page (and moving on while a page is read), to
    // everything copied.
    for (const [step, race] of [[0, 0], [1, 0], [136, 5], [70, 0], [8, 0]] as const) {
      if (step > 0) expect(await fill(step)).toBe(step);
      copied += step;
      expect(await sql`SELECT count(*)::int8 AS n, coalesce(max(seq), 0)::int8 AS upto FROM audit_search`).toEqual([{ n: copied, upto: copied }]);
      for (const shape of shapes) {
        const f: AuditFilter = { account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'desc', limit: 20, ...shape };
        racing = race;
        const got = (await pgAudit.query(f)).map((r) => Number(r.seq));
        copied += race;
        expect(got, `${copied} copied (${race} while reading), ${JSON.stringify(shape)}`).toEqual(liteAudit.query(f).map((r) => r.seq));
        expect(new Set(got).size).toBe(got.length);
      }
    }
    expect(copied).toBe(300);
    expect(await fill(10)).toBe(0); // caught up
    // The copied head goes into the statement as a value (read just before it), not as a subquery the planner
    // cannot see through: the recent arm is then known to be short.
    const plan = (await pgAudit.explain({ account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'desc', limit: 20, q: 'alpha' })).join('\n');
    expect(plan).toMatch(/audit_search/);
    expect(plan).toMatch(/seq > '300'::bigint/);
    expect(plan).not.toMatch(/InitPlan|SubPlan/);
    // Sampled, a q with a rare trigram asks the index for it alone and checks the whole pattern on what it finds;
    // without the sample the index is asked for every trigram of q.
    const rarePlan = (await pgAudit.explain({ account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'desc', limit: 20, q: 'EVENT 250 alpha' })).join('\n');
    // (Over 300 events the planner reads audit_search whole; the bench shows the index over a million.)
    if (qSampleFrom === 0) {
      expect(rarePlan).toMatch(/CTE candidates\n(.*\n)*?\s+Filter: \(message ~~\* '%250%'::text\)/);
      expect(rarePlan).toMatch(/CTE Scan on candidates.*\n\s+Filter: \(message ~~\* '%EVENT 250 alpha%'::text\)/);
      // The candidates are bounded; past the bound the whole pattern's arm runs instead (a one-time filter each).
      expect(rarePlan).toMatch(/CTE candidates\n\s+->  Limit/);
      expect(rarePlan.match(/One-Time Filter/g)?.length).toBe(2);
      expect(rarePlan).toMatch(new RegExp(`One-Time Filter: \\(\\$\\d+ <= ${maxDrivenCandidates ?? MAX_DRIVEN_CANDIDATES}\\)`));
    } else {
      expect(rarePlan).not.toMatch(/CTE candidates|'%250%'/);
    }
    // One fill at a time: while another holds the fill's lock, a fill copies nothing and says so.
    await insertEvents(301, 305, 'postgres');
    const other = await holdAdvisoryLock(sql, SEARCH_FILL_LOCK_KEY);
    expect(await fill(10)).toBe(0);
    await other.release();
    expect(await fill(10)).toBe(5);
    expect(await sql`SELECT message FROM audit_search WHERE seq = 305`).toEqual([{ message: 'event 305 alpha fetched' }]);
    // A prefix in seq order whatever order the rows lie in: 308 is stored before 306 and 307, and read by a
    // sequential scan it comes first.
    await insertEvents(308, 308, 'postgres');
    await insertEvents(306, 307, 'postgres');
    const scanned = await sql.begin(async (t) => {
      await t`SET LOCAL enable_indexscan = off`;
      await t`SET LOCAL enable_indexonlyscan = off`;
      await t`SET LOCAL enable_bitmapscan = off`;
      expect(await fillSearchIndex(t, 1)).toBe(1);
      return t`SELECT seq FROM audit_search WHERE seq > 305`;
    });
    expect(scanned).toEqual([{ seq: 306 }]);
    // Derived from an append-only log, and append-only itself.
    await expect(sql`DELETE FROM audit_search`).rejects.toThrow(/audit_search is append-only/);
    await expect(sql`UPDATE audit_search SET message = 'x'`).rejects.toThrow(/audit_search is append-only/);
    await expect(sql`TRUNCATE audit_search`).rejects.toThrow(/audit_search is append-only/);
  });

  it('migration 0006 moves the trigram index without copying the log; q stays complete, and the store fills it without the write lock', async () => {
    const sql = client(await freshDatabase(), 3);
    const before = join(tempDir('coffer-pgmig-'), 'migrations');
    mkdirSync(before);
    for (const f of readdirSync(PG_MIGRATIONS_DIR).filter((name) => Number(name.slice(0, 4)) < 6)) cpSync(join(PG_MIGRATIONS_DIR, f), join(before, f));
    expect((await migratePostgres(sql, { migrationsDir: before })).version).toBe(5);
    await sql.unsafe(
      `INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash)
       SELECT n, 't', 'a', 'fetch', 'fetch', 'success', 'old event ' || n, '\\x00'::bytea, '\\x01'::bytea FROM generate_series(1, 50) AS n`,
    );
    // A node's start bounds its migrations: the old log is left for the nodes' fills, not copied here.
    expect((await migratePostgres(sql)).applied).toContain(6);
    expect(await sql`SELECT count(*)::int8 AS n FROM audit_search`).toEqual([{ n: 0 }]);
    expect(await sql`SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%gin_trgm_ops%'`).toEqual([{ indexname: 'audit_search_message_trgm' }]);
    const store = createPostgresStore(sql);
    const q = async () =>
      (await store.audit.query({ account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'asc', q: 'event 4' })).map((r) => Number(r.seq));
    expect(await q()).toEqual([4, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
    // The store's fill: the audit log's busy fill is on, and a fill does not wait for the write lock (a long policy
    // load, or a group commit, holding it).
    expect(store.audit.indexSearchWhileBusy).toBe(true);
    const writer = await holdAdvisoryLock(sql, WRITE_LOCK_KEY);
    expect(await store.audit.indexSearchBatch(30)).toBe(30);
    expect(await q()).toEqual([4, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49]); // the head falls inside the answer
    expect(await store.audit.indexSearchBatch(30)).toBe(20);
    await writer.release();
    expect(await q()).toEqual([4, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
    expect(await sql`SELECT count(*)::int8 AS n, max(seq)::int8 AS upto FROM audit_search`).toEqual([{ n: 50, upto: 50 }]);
  });

  it('audit: appending looks events up by primary key whatever the planner thinks a sequential scan costs (migrations 0007, 0008)', async () => {
    // A connection's cached plan from when the log was a few pages long read the whole log per appended event.
    // Index scans made to look expensive (random_page_cost) stand in for that: the lookups must stay on the index.
    const sql = client(await freshDatabase(), 1);
    await migratePostgres(sql);
    const tail = (seq: number) =>
      `,"2030-01-01T00:00:${String(seq % 60).padStart(2, '0')}.000Z","a","fetch","fetch","success","a:host:h","a:variable:v",1,null,null,null,null,"fetched ${seq}",null]`;
    // The transaction's own scans: PostgreSQL 15's pg_stat_xact_* also count a connection's earlier, unflushed ones.
    const scansSoFar = async (t: PgSql) =>
      (await t<{ seq: number; idx: number }[]>`SELECT seq_scan::int8 AS seq, idx_scan::int8 AS idx FROM pg_stat_xact_user_tables WHERE relname = 'audit_events'`)[0] ?? { seq: 0, idx: 0 };
    const scans = await sql.begin(async (t) => {
      const before = await scansSoFar(t as unknown as PgSql);
      await t`SET LOCAL random_page_cost = 1000`;
      // A plain insert (as `coffer store copy` makes), then group commits.
      await t.unsafe(
        `INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash)
         SELECT g, '2030-01-01T00:00:00.000Z', 'a', 'fetch', 'fetch', 'success', 'event ' || g, '\\x00'::bytea, '\\x01'::bytea
         FROM generate_series(1, 300) AS g ORDER BY g`,
      );
      for (let batch = 0; batch < 10; batch++) {
        const events = Array.from({ length: 20 }, (_, i) => ({ tail: tail(300 + batch * 20 + i + 1), hash: '00' }));
        await t`SELECT count(*) FROM audit_append(${JSON.stringify(events)}, ${-1}::int8, ${null}::bytea, ${WRITE_LOCK_KEY}::int8, ${new Date(Date.now() + 60_000)}::timestamptz)`;
      }
      const after = await scansSoFar(t as unknown as PgSql);
      return { seq: after.seq - before.seq, idx: after.idx - before.idx };
    });
    expect(await sql`SELECT count(*)::int8 AS n, max(seq)::int8 AS head FROM audit_events`).toEqual([{ n: 500, head: 500 }]);
    expect(scans.seq).toBe(0);
    // At least the head's and the previous event's lookups of each of the 11 statements (one trigger call per
    // statement since migration 0008).
    expect(scans.idx).toBeGreaterThanOrEqual(22);
  });

  it('dynamic: issuers (deleted ones kept until their leases end), leases by token, issuer and expiry, retries, variables of an issuer', async () => {
    const { both, bothThrow, exec, role, resource } = await pair();
    await role('a:user:admin');
    await resource('a:variable:data/dynamic/pg', 'a:user:admin');
    await resource('a:variable:data/dynamic/other', 'a:user:admin');
    await resource('a:variable:data/static', 'a:user:admin');
    for (const v of ['a:variable:data/dynamic/pg', 'a:variable:data/static']) {
      await exec("INSERT INTO annotations (resource_id, name, value, policy_id) VALUES (?, 'dynamic/issuer', 'pg1', NULL)", undefined, v);
    }
    await exec("INSERT INTO annotations (resource_id, name, value, policy_id) VALUES ('a:variable:data/dynamic/other', 'dynamic/issuer', 'pg2', NULL)");
    const issuer = (id: string) => ({ account: 'a', id, type: 'postgresql', max_ttl: 600, data_public: '{"host":"h"}', data_sealed: buf(`sealed-${id}`), created_at: 't0', modified_at: 't0' });
    await both((f) => f.dynamic.insertIssuer(issuer('pg1')));
    await both((f) => f.dynamic.insertIssuer(issuer('pg0')));
    await bothThrow((f) => f.dynamic.insertIssuer(issuer('pg1')));
    expect(await both((f) => f.dynamic.getIssuer('a', 'pg1'))).toEqual({ ...issuer('pg1'), deleted_at: null });
    expect((await both((f) => f.dynamic.listIssuers('a'))).map((r) => r.id)).toEqual(['pg0', 'pg1']);
    expect(await both((f) => f.dynamic.updateIssuer('a', 'pg1', 900, '{"host":"h2"}', buf('s2'), 't1'))).toBe(true);
    expect(await both((f) => f.dynamic.updateIssuer('a', 'nope', 900, '{}', buf('s2'), 't1'))).toBe(false);
    expect(await both((f) => f.dynamic.variablesOfIssuer('a', 'pg1'))).toEqual(['a:variable:data/dynamic/pg']);
    const t = 1_900_000_000_000;
    const lease = (id: string, expires: number, jti: string | null, issuerId = 'pg1') => ({
      id, account: 'a', issuer_id: issuerId, variable_id: 'a:variable:data/dynamic/pg', role_id: 'a:user:admin', token_jti: jti, db_role: `coffer_${id}`, expires_at: expires, created_at: `2030-01-01T00:00:0${id.length}.000Z`,
    });
    for (const l of [lease('l1', t - 10, 'j1'), lease('l22', t + 10, 'j1'), lease('l333', t - 5, 'j2'), lease('l4444', t - 1, null, 'pg0')]) await both((f) => f.dynamic.insertLease(l));
    expect((await both((f) => f.dynamic.activeLeasesOfToken('j1'))).map((l) => l.id)).toEqual(['l1', 'l22']);
    expect((await both((f) => f.dynamic.expiredLeases(t, 2))).map((l) => l.id)).toEqual(['l1', 'l333']);
    await both((f) => f.dynamic.markRevoking('l1', 'expired'));
    await both((f) => f.dynamic.markRevoking('l1', 'second reason ignored'));
    await both((f) => f.dynamic.noteRevokeFailure('l1', 'connection refused', t + 1000));
    const pending = await both((f) => f.dynamic.getLease('l1'));
    expect(pending).toMatchObject({ state: 'revoking', revoke_reason: 'expired', attempts: 1, last_error: 'connection refused', next_attempt_at: t + 1000, expires_at: t - 10 });
    expect((await both((f) => f.dynamic.expiredLeases(t, 10))).map((l) => l.id)).toEqual(['l333', 'l4444']);
    expect(await both((f) => f.dynamic.retryDueLeases(t, 10))).toEqual([]);
    expect((await both((f) => f.dynamic.retryDueLeases(t + 1000, 10))).map((l) => l.id)).toEqual(['l1']);
    expect((await both((f) => f.dynamic.activeLeasesOfToken('j1'))).map((l) => l.id)).toEqual(['l22']);
    expect(await both((f) => f.dynamic.markIssuerDeleted('a', 'pg0', 't2'))).toBe(true);
    expect((await both((f) => f.dynamic.listIssuers('a'))).map((r) => r.id)).toEqual(['pg1']);
    expect((await both((f) => f.dynamic.deletedIssuers())).map((r) => r.id)).toEqual(['pg0']);
    expect(await both((f) => f.dynamic.purgeIssuer('a', 'pg0'))).toBe(false);
    expect(await both((f) => f.dynamic.deleteLease('l4444'))).toBe(true);
    expect(await both((f) => f.dynamic.deleteLease('l4444'))).toBe(false);
    expect(await both((f) => f.dynamic.purgeIssuer('a', 'pg0'))).toBe(true);
    expect(await both((f) => f.dynamic.purgeIssuer('a', 'pg1'))).toBe(false);
    expect(await both((f) => f.dynamic.countLeases('a'))).toBe(3);
    expect((await both((f) => f.dynamic.leasesOfAccount('a'))).map((l) => l.id)).toEqual(['l1', 'l22', 'l333']);
    await both((f) => f.dynamic.resealIssuer('a', 'pg1', buf('resealed')));
    expect(await both((f) => f.dynamic.sealedIssuers())).toEqual([{ account: 'a', id: 'pg1', data_sealed: buf('resealed') }]);
  });
});
