/**
 * The PostgreSQL client (the `postgres` package, porsager/postgres v3) as the
 * PostgreSQL backend configures it.
 *
 * Why this driver: failover needs a multi-host connection string with
 * `target_session_attrs=read-write` (or `primary`), which `postgres` parses
 * and honours itself — it tries the hosts in order and keeps only a session
 * that accepts writes, and reconnects the same way after the primary is
 * lost. It has no dependencies, pipelines queries and prepares statements
 * automatically.
 *
 * BIGINT: PostgreSQL's int8 (seq, epoch timestamps, count(*)) comes back from
 * the driver as a string by default (or as a BigInt with `postgres.BigInt`).
 * Coffer's rows carry JS numbers, as better-sqlite3 returns them, so int8 is
 * parsed with Number(): every int8 Coffer stores (audit seq, ms timestamps,
 * counts) is far below 2^53, and better-sqlite3 answers the same imprecise
 * number above 2^53 — the two backends agree even there. INTEGER (int4) and
 * BYTEA (Buffer) are the driver's defaults. An `undefined` parameter is
 * refused by the driver (UNDEFINED_VALUE) rather than written as NULL.
 */
import postgres from 'postgres';

/** int8 ↔ JS number (see above). */
const int8 = {
  to: 20,
  from: [20],
  serialize: (x: number) => String(x),
  parse: (x: string) => Number(x),
};

export const PG_TYPES = { int8 } as const;

export type PgTypes = { int8: number };

/** A connection pool (`postgres(url)`). */
export type PgSql = postgres.Sql<PgTypes>;

/**
 * Whatever a family runs its statements on: the pool, a reserved connection
 * or a transaction (`sql.begin`'s callback argument) — they all extend ISql.
 */
export type PgQueryable = postgres.ISql<PgTypes>;

/** Returns the connection the next statement runs on (the lead's routing layer decides: pool or open transaction). */
export type PgConnection = () => PgQueryable;

export interface PgClientOptions {
  /** Pool size (default 10). */
  max?: number;
  /** Seconds to wait for a connection (default 10). */
  connectTimeoutSec?: number;
  /** Called with each NOTICE the server sends; silent by default. */
  onNotice?: (notice: postgres.Notice) => void;
  /** application_name reported to the server (pg_stat_activity, synchronous_standby_names). */
  applicationName?: string;
}

/**
 * `target_session_attrs=read-write` as libpq means it. postgres.js 3.4 judges
 * read-write by the `default_transaction_read_only` the server reports at
 * startup alone; PostgreSQL 14 and newer report it as `off` on a hot standby
 * (only `transaction_read_only` is on there), so the driver would settle on a
 * standby, e.g. the surviving one after the primary died and before any
 * promotion, and every write would fail there. Its `primary` mode checks
 * `in_hot_standby`, which is what failover needs; read-write is mapped to it
 * (options win over the URL's parameter). The difference — a primary whose
 * default_transaction_read_only an operator turned on — is not a topology
 * Coffer supports.
 */
export function targetSessionAttrs(url: string): 'primary' | undefined {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  return new URLSearchParams(query).get('target_session_attrs') === 'read-write' ? 'primary' : undefined;
}

/**
 * A pool on `url` (`postgres://user:pass@host1:port1,host2:port2/db?target_session_attrs=read-write`).
 * No connection is made until the first statement.
 */
export function createPostgresClient(url: string, opts: PgClientOptions = {}): PgSql {
  const tsa = targetSessionAttrs(url);
  return postgres(url, {
    ...(tsa === undefined ? {} : { target_session_attrs: tsa }),
    max: opts.max ?? 10,
    connect_timeout: opts.connectTimeoutSec ?? 10,
    types: PG_TYPES,
    onnotice: opts.onNotice ?? (() => {}),
    connection: { application_name: opts.applicationName ?? 'coffer' },
  });
}

/** Array.from: plain arrays, not the driver's Result (which carries count, columns, statement…). */
export function rowsOf<T>(rows: Iterable<T>): T[] {
  return Array.from(rows);
}
