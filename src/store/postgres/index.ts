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
import { TransactionContext } from '../tx-context.js';
import { hashOfEncoding } from '../../audit/chain.js';
import type postgres from 'postgres';
import type { WritableReport } from '../health.js';
import type { AuditStore, Store } from '../types.js';
import { storageFailureOf } from '../../errors.js';
import { createPostgresClient, type PgClientOptions, type PgQueryable, type PgSql, type PgTypes } from './client.js';
import { createPgFamilies } from './families.js';
import { createPgGraphStore } from './graph.js';
import { createPgAuditStore, fillSearchIndex } from './audit.js';
import { createPgChangeFeed } from './changes.js';
import { migratePostgres } from './migrate.js';
import { guardDriverWriteRace } from './driver-guard.js';

/**
 * How long a statement or transaction may wait for the database before the
 * request is answered 503. The driver itself never gives up while no
 * writable server is reachable (it keeps reconnecting), so without this a
 * failover would hang every request instead of refusing it.
 */
export const DEFAULT_DEADLINE_MS = 5000;
/** While the database is known to be unreachable, how often a probe checks whether a writable server is back. */
const PROBE_MS = 500;

/** The error a request gets when the database does not answer in time (a storage failure: 503). */
export class DatabaseUnavailableError extends Error {
  readonly code = 'CONNECT_TIMEOUT';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

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

export interface PostgresStoreOptions extends PgClientOptions {
  /** See DEFAULT_DEADLINE_MS. */
  deadlineMs?: number;
  /** Gives the opening up: its connections are closed at once and it fails. */
  signal?: AbortSignal;
}

/** Connects to `url`, applies pending migrations (one node at a time) and answers the store. */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
  guardDriverWriteRace();
  const sql = createPostgresClient(url, opts);
  try {
    // The driver never gives up while no writable server answers (only a standby, say): bound the wait.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DatabaseUnavailableError(`no writable PostgreSQL server answered within ${opts.deadlineMs ?? DEFAULT_DEADLINE_MS} ms`)), opts.deadlineMs ?? DEFAULT_DEADLINE_MS);
      const settled = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', givenUp);
      };
      const givenUp = () => {
        settled();
        reject(new DatabaseUnavailableError('opening the database was given up'));
      };
      if (opts.signal?.aborted) givenUp();
      opts.signal?.addEventListener('abort', givenUp, { once: true });
      migratePostgres(sql).then(
        () => {
          settled();
          resolve();
        },
        (err: unknown) => {
          settled();
          reject(err);
        },
      );
    });
  } catch (err) {
    await sql.end({ timeout: 0 }).catch(() => undefined);
    throw err;
  }
  return createPostgresStore(sql, { ...opts, probe: () => createPostgresClient(url, { ...opts, max: 1, connectTimeoutSec: 2 }) });
}

/** Wraps every method of a family in `guard` (a deadline and the circuit breaker, outside transactions). */
function guardFamily<S extends object>(family: S, guard: <T>(call: () => Promise<T>) => Promise<T>): S {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(family)) {
    out[name] = typeof fn === 'function' ? (...args: unknown[]) => guard(() => (fn as (...a: unknown[]) => Promise<unknown>)(...args)) : fn;
  }
  return out as S;
}

export function createPostgresStore(
  sql: PgSql,
  opts: { deadlineMs?: number; probe?: () => PgSql } = {},
): PostgresStore {
  const deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const context = new TransactionContext<TxContext>();
  const current = (): PgQueryable => {
    const ctx = context.getStore();
    return ctx?.open ? ctx.sql : sql;
  };
  let cached: { at: number; report: WritableReport } | undefined;

  /**
   * The circuit breaker. A call that times out or fails as if the database
   * were gone makes the node suspect it: a probe on a fresh connection checks
   * for a writable server (2 s). If there is none, the database counts as
   * down and calls are refused at once (503) instead of each waiting out the
   * deadline, and the probe repeats every PROBE_MS until a writable server
   * answers. A slow query alone (the probe answers) changes nothing.
   */
  let down: DatabaseUnavailableError | undefined;
  let probing = false;
  const suspect = (err: unknown) => {
    if (probing || !opts.probe || !storageFailureOf(err)) return;
    probing = true;
    const reason = err instanceof DatabaseUnavailableError ? err : new DatabaseUnavailableError(`the database is unreachable: ${(err as Error).message}`, { cause: err });
    void probeUntilUp(opts.probe, reason).finally(() => {
      probing = false;
    });
  };
  const writable = async (makeProbe: () => PgSql): Promise<boolean> => {
    const probe = makeProbe();
    try {
      const [row] = await withDeadline(probe<{ r: boolean }[]>`SELECT pg_is_in_recovery() AS r`, 2000, () => undefined);
      return row !== undefined && !row.r;
    } catch {
      return false;
    } finally {
      await probe.end({ timeout: 0 }).catch(() => undefined);
    }
  };
  async function probeUntilUp(makeProbe: () => PgSql, reason: DatabaseUnavailableError): Promise<void> {
    for (;;) {
      if (await writable(makeProbe)) {
        down = undefined;
        return;
      }
      if (!down) {
        down = reason;
        cached = undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, PROBE_MS).unref());
    }
  }
  const withDeadline = <T>(work: Promise<T>, ms: number, onGiveUp: () => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        onGiveUp();
        reject(new DatabaseUnavailableError(`the database did not answer within ${ms} ms`));
      }, ms);
      work.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  /** A call outside any transaction: refused while down, bounded by the deadline. */
  const guard = async <T>(call: () => Promise<T>): Promise<T> => {
    if (context.getStore()?.open) return call();
    if (down) throw down;
    try {
      return await withDeadline(call(), deadlineMs, () => undefined);
    } catch (err) {
      suspect(err);
      throw err;
    }
  };

  /**
   * Runs a write transaction `begin` opens on a connection of its own. The deadline covers getting the connection
   * (a database that does not answer), not the body: a long policy load, or a wait for the write lock another node
   * holds, is not an outage. A transaction the caller gave up on must not run later (it would commit work already
   * answered 503): when it finally gets a connection, `start()` throws and it rolls back at once.
   */
  async function boundedStart<T>(begin: (start: () => void) => Promise<T>): Promise<T> {
    if (down) throw down;
    let abandoned = false;
    let started!: () => void;
    const startedOrTimedOut = withDeadline(
      new Promise<void>((resolve) => {
        started = resolve;
      }),
      deadlineMs,
      () => {
        abandoned = true;
      },
    );
    const run = begin(() => {
      if (abandoned) throw new DatabaseUnavailableError('the transaction was abandoned: the database did not answer in time');
      started();
    });
    // Settled before it started (an error at connect): stop the deadline's timer.
    void run.then(started, started);
    try {
      await Promise.race([startedOrTimedOut, run]);
      return await run;
    } catch (err) {
      // The begin may still settle after a timeout: keep its rejection from going unhandled.
      run.catch(() => undefined);
      suspect(err);
      if (storageFailureOf(err)) cached = undefined;
      throw err;
    }
  }

  async function tx<T>(fn: () => Promise<T>): Promise<T> {
    const outer = context.getStore();
    if (outer?.open) return (await outer.sql.savepoint((sp) => context.run({ sql: sp, open: true }, fn))) as T;
    return boundedStart((start) => sql.begin(async (t) => {
      start();
      const ctx: TxContext = { sql: t, open: true };
      try {
        // Sent, not awaited: the body's first statement follows it on the same connection (the driver pipelines
        // them), and PostgreSQL runs them in order, so everything the body reads or writes still happens under the
        // lock, a round trip sooner. A failed lock aborts the transaction; the driver rethrows the lock's error
        // (its first) when the body ends, so the body's own error for the aborted transaction never hides it.
        const lock = t.unsafe(`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`).execute();
        const result = await context.run(ctx, fn);
        await lock;
        return result;
      } finally {
        ctx.open = false;
      }
    }) as Promise<T>);
  }

  /**
   * The group commit (AuditStore.appendChained): one statement, `audit_append` (migration 0005), takes the write
   * lock, reads the head, links the batch to it and inserts it. One round trip whichever node wrote last, and the
   * lock is held only while PostgreSQL works: under load each round trip also waits for its turn on the node's
   * event loop, and a batch used to wait for five (BEGIN, lock, head, insert, COMMIT) — holding the lock, so every
   * other node waited too. The node sends each event's encoding after its sequence number, so the text hashed is
   * the node's own; the answer is checked against the node's chain on the head it was linked to (on `expected`,
   * PostgreSQL checks each hash before anything is committed), and a difference is a failure: the batch's requests
   * are refused, never answered with an event the chain would not verify.
   */
  const appendChained: AuditStore['appendChained'] = (batch, expected) => {
    if (context.getStore()?.open) throw new Error('appendChained runs in a transaction of its own');
    // As a transaction's, the deadline covers the database answering at all, not the wait for the lock (a long
    // policy load): `SELECT 1` goes out with the batch, and its answer starts the batch. A batch given up on must
    // not commit later: it carries a time after which the database refuses to begin it, well before the deadline.
    return boundedStart(async (start) => {
      const built = batch.chain(expected);
      if (built.length === 0) return built;
      const doc = JSON.stringify(
        built.map((row) => {
          const encoding = batch.encode(row);
          const lead = `[${row.seq},`;
          // The text sent is the text this node's hash covers, or nothing is sent.
          if (!encoding.startsWith(lead) || !hashOfEncoding(row.prev_hash, encoding).equals(row.hash)) {
            throw new Error(`audit event ${row.seq}: its encoding is not what its hash covers`);
          }
          return { tail: encoding.slice(lead.length - 1), hash: row.hash.toString('hex') };
        }),
      );
      const notAfter = new Date(Date.now() + deadlineMs / 2).toISOString();
      const conn = await sql.reserve();
      let linked: { seq: number; prev_hash: Buffer; hash: Buffer }[];
      try {
        const alive = conn`SELECT 1`.execute();
        const linking = conn<{ seq: number; prev_hash: Buffer; hash: Buffer }[]>`SELECT * FROM audit_append(${doc}, ${expected?.seq ?? -1}::int8,
          ${expected?.hash ?? Buffer.alloc(0)}::bytea, ${WRITE_LOCK_KEY}::int8, ${notAfter}::timestamptz)`.execute();
        linking.catch(() => undefined);
        await alive;
        start();
        linked = await linking;
      } finally {
        conn.release();
      }
      const first = linked[0];
      if (!first || linked.length !== built.length) throw new Error(`audit_append linked ${linked.length} of ${built.length} events`);
      const rows = first.prev_hash.equals(built[0]!.prev_hash) && first.seq === built[0]!.seq ? built : batch.chain({ seq: first.seq - 1, hash: first.prev_hash });
      rows.forEach((row, i) => {
        const got = linked[i]!;
        if (got.seq !== row.seq || !got.hash.equals(row.hash) || !got.prev_hash.equals(row.prev_hash)) {
          throw new Error(`the database linked audit event ${got.seq} differently than this node: check both run this Coffer version`);
        }
      });
      return rows;
    });
  };

  /**
   * AuditStore.indexSearchBatch: a transaction of its own that does not take the write lock, so filling the search
   * index never delays a group commit (the reason it left the commit's path, migration 0006).
   */
  const indexSearchBatch: AuditStore['indexSearchBatch'] = (max) => {
    if (context.getStore()?.open) throw new Error('indexSearchBatch runs in a transaction of its own');
    return boundedStart((start) =>
      sql.begin(async (t) => {
        start();
        return fillSearchIndex(t, max);
      }),
    );
  };

  const families = Object.fromEntries(
    Object.entries(createPgFamilies(current, () => !context.getStore()?.open)).map(([name, family]) => [name, guardFamily(family, guard)]),
  ) as ReturnType<typeof createPgFamilies>;
  const changes = createPgChangeFeed(sql);
  return {
    backend: 'postgres',
    sql,
    ...families,
    graph: guardFamily(createPgGraphStore(current), guard),
    audit: { ...guardFamily(createPgAuditStore(current), guard), appendChained, indexSearchBatch, indexSearchWhileBusy: true },
    health: {
      async check(nowMs) {
        // The disk is the database server's: free space is its business; a write that commits is the answer.
        if (cached && nowMs >= cached.at && nowMs - cached.at < HEALTH_CACHE_MS) return cached.report;
        let report: WritableReport;
        try {
          if (down) throw down;
          await tx(async () => {
            await current()`UPDATE health_probe SET probed_at = ${new Date(nowMs).toISOString()} WHERE id = 1`;
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
      ping: () => guard(async () => void (await sql`SELECT 1`)),
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
