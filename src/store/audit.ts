/** The append-only audit_events table. */
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';
import { KNOWN_KINDS } from '../ids.js';
import { storageFailureOf } from '../errors.js';

export interface AuditRow {
  seq: number;
  time: string;
  account: string | null;
  action: string;
  operation: string;
  result: 'success' | 'failure';
  role_id: string | null;
  resource_id: string | null;
  version: number | null;
  client_ip: string | null;
  request_id: string | null;
  user_agent: string | null;
  reason: string | null;
  message: string;
  details: string | null;
  prev_hash: Buffer;
  hash: Buffer;
}

/** One OR-clause of the auditor's scope: the whole account, a resource id, a policy subtree, or a policy's users. */
export type AuditScope =
  | { type: 'all'; account: string }
  | { type: 'resource'; resourceId: string }
  | { type: 'subtree'; account: string; path: string }
  | { type: 'users'; account: string; suffix: string };

export interface AuditFilter {
  account: string;
  scopes: AuditScope[];
  resource?: string;
  role?: string;
  action?: string;
  result?: 'success' | 'failure';
  since?: string;
  until?: string;
  q?: string;
  /** Exclusive bound on seq in the sort direction (cursor pagination). */
  cursor?: number;
  order: 'desc' | 'asc';
  limit?: number;
}

const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

/**
 * Ids are compared with `substr`/`=` rather than LIKE: SQLite's LIKE ignores
 * ASCII case (policy `CI` is not `ci`), and a `%` standing for the kind would
 * also swallow the `:` an identifier may contain (`other/x:ci/y` is not under
 * `ci`). Lengths come from SQLite's own length() so that they count the same
 * characters substr does.
 */
function scopeSql(scope: AuditScope, params: unknown[]): string {
  switch (scope.type) {
    case 'all':
      params.push(scope.account);
      return 'account = ?';
    case 'resource':
      params.push(scope.resourceId);
      return 'resource_id = ?';
    case 'subtree': {
      // "acct:KIND:PATH/…" (KIND has no ':'), or the policy "acct:policy:PATH" itself.
      const prefix = `${scope.account}:`;
      const under = `${scope.path}/`;
      params.push(prefix, prefix, prefix, prefix, under, under, `${scope.account}:policy:${scope.path}`);
      return (
        '((substr(resource_id, 1, length(?)) = ? AND ' +
        "substr(resource_id, length(?) + instr(substr(resource_id, length(?) + 1), ':') + 1, length(?)) = ?) " +
        'OR resource_id = ?)'
      );
    }
    case 'users': {
      // Users defined in policy P are named "name@P-with-dashes" (Conjur's rule).
      const prefix = `${scope.account}:user:`;
      const suffix = `@${scope.suffix}`;
      params.push(prefix, prefix, prefix, suffix, suffix, suffix);
      return '(substr(resource_id, 1, length(?)) = ? AND length(resource_id) > length(?) + length(?) AND substr(resource_id, -length(?)) = ?)';
    }
  }
}

/**
 * Most index entries one slice of a query examines. A query whose filters no
 * single index answers exactly (say `role` and `result` together: the role's
 * index is walked and `result` checked per event) is run as a sequence of
 * slices, each bounded by this many entries of the index it walks, and the
 * caller yields to the event loop between slices (see `querySlices`).
 */
export const AUDIT_SCAN_SLICE = 10_000;

/**
 * Shortest `q` the trigram index can serve: 3 characters (Unicode code
 * points). The HTTP API refuses shorter ones; the store would still answer
 * one, by a sliced walk of the account (never in one go).
 */
export const MIN_Q_CHARS = 3;

/** Events added to the full-text index per step (a few tens of milliseconds of trigram indexing at most). */
export const SEARCH_INDEX_STEP = 500;

/** Index entries of a query's first slice (at least twice its limit); each next slice is 4 times larger, up to the bound. */
const FIRST_SLICE = 256;
const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** Bounds of `time` when since/until are absent (ISO 8601 strings sort by time). */
const TIME_MIN = '';
const TIME_MAX = '\uffff';

/** `q` as one FTS5 phrase: every character literal (operators, `*`, `^`, `:`, quotes doubled). */
const ftsPhrase = (q: string) => `"${q.replace(/"/g, '""')}"`;
const qServedByFts = (q: string) => [...q].length >= MIN_Q_CHARS && !q.includes('\u0000');

/** Events of the account's own index a q query checks before it turns to the full-text index. */
const Q_FIRST_WALK = 5_000;

/** Where the candidate events of a query come from, in seq order. */
type Driver =
  | { kind: 'index'; index: string; prefix: string; params: unknown[] }
  | { kind: 'fts'; match: string }
  | { kind: 'time'; since: string; until: string };

export interface AuditStoreOptions {
  /** Index entries per slice (tests use a few to exercise slicing on a small log). */
  scanSlice?: number;
  /** Index entries of a query's first slice (default FIRST_SLICE; tests use fewer to exercise the growth). */
  firstSlice?: number;
}

const accountDriver = (f: AuditFilter): Driver => ({ kind: 'index', index: 'audit_events_account', prefix: 'account = ?', params: [f.account] });

export function createAuditStore(db: Db, opts: AuditStoreOptions = {}) {
  const slice = Math.max(1, Math.floor(opts.scanSlice ?? AUDIT_SCAN_SLICE));
  const firstSlice = Math.max(1, Math.floor(opts.firstSlice ?? FIRST_SLICE));
  const insert = db.prepare(
    `INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, version,
       client_ip, request_id, user_agent, reason, message, details, prev_hash, hash)
     VALUES (@seq, @time, @account, @action, @operation, @result, @role_id, @resource_id, @version,
       @client_ip, @request_id, @user_agent, @reason, @message, @details, @prev_hash, @hash)`,
  );
  const head = db.prepare<[], { seq: number; hash: Buffer }>(
    'SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1',
  );
  const walk = db.prepare<[number], AuditRow>('SELECT * FROM audit_events WHERE seq > ? ORDER BY seq');
  const page = db.prepare<[number, number], AuditRow>('SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?');
  const kindsOf = db.prepare<[string], { kind: string }>('SELECT DISTINCT kind FROM resources WHERE account = ?');
  const ftsUpto = db.prepare<[], { n: number }>('SELECT indexed_upto AS n FROM audit_fts_state WHERE id = 1');
  const ftsFill = db.prepare<[number, number]>('INSERT INTO audit_fts (rowid, message) SELECT seq, message FROM audit_events WHERE seq > ? AND seq <= ?');
  const ftsMoveTo = db.prepare<[number]>('UPDATE audit_fts_state SET indexed_upto = ? WHERE id = 1');
  /** Adds up to `max` events after indexed_upto to the full-text index, in one transaction; returns how many. */
  const indexSearchBatch = db.transaction((max: number): number => {
    const upto = ftsUpto.get()!.n;
    const headSeq = head.get()?.seq ?? 0;
    if (headSeq <= upto) return 0;
    const to = Math.min(headSeq, upto + max);
    ftsFill.run(upto, to);
    ftsMoveTo.run(to);
    return to - upto;
  });
  const timeCount = db.prepare<[string, string, string], { n: number }>(
    'SELECT count(*) AS n FROM (SELECT 1 FROM audit_events INDEXED BY audit_events_account_time ' +
      `WHERE account = ? AND time >= ? AND time < ? LIMIT ${slice + 1})`,
  );
  // Query texts repeat (one per filter combination and scope shape): compile each once.
  const statements = new Map<string, Statement>();
  const prepared = (sql: string): Statement => {
    let st = statements.get(sql);
    if (!st) {
      if (statements.size >= 256) statements.clear();
      st = db.prepare(sql);
      statements.set(sql, st);
    }
    return st;
  };

  /** A time range [since, until) of the account holding at most one slice of events. */
  function narrowTime(f: AuditFilter): Driver | undefined {
    if (f.since === undefined && f.until === undefined) return undefined;
    const since = f.since ?? TIME_MIN;
    const until = f.until ?? TIME_MAX;
    return timeCount.get(f.account, since, until)!.n <= slice ? { kind: 'time', since, until } : undefined;
  }

  /**
   * The index a query walks. Exact ids first (usually few events each), then
   * a narrow time range, the full-text index for q, and the low-cardinality
   * action and result; the account's own index when nothing else is given.
   * Scoped auditors without an id, time or q filter use `rangePlan` instead.
   */
  function chooseDriver(f: AuditFilter, scoped: boolean): Driver | undefined {
    if (f.resource !== undefined) {
      return { kind: 'index', index: 'audit_events_account_resource', prefix: 'account = ? AND resource_id = ?', params: [f.account, f.resource] };
    }
    if (f.role !== undefined) {
      return { kind: 'index', index: 'audit_events_account_role', prefix: 'account = ? AND role_id = ?', params: [f.account, f.role] };
    }
    const time = narrowTime(f);
    if (time) return time;
    if (f.q !== undefined && qServedByFts(f.q)) return { kind: 'fts', match: ftsPhrase(f.q) };
    if (scoped) return undefined;
    if (f.action !== undefined) {
      return { kind: 'index', index: 'audit_events_account_action', prefix: 'account = ? AND action = ?', params: [f.account, f.action] };
    }
    if (f.result !== undefined) {
      return { kind: 'index', index: 'audit_events_account_result', prefix: 'account = ? AND result = ?', params: [f.account, f.result] };
    }
    return accountDriver(f);
  }

  interface SliceStatements {
    /** The far end of the slice: the AUDIT_SCAN_SLICE-th candidate past `from` (absent for a time driver: one slice). */
    bound?: { sql: string; params: (from: number, size: number) => unknown[] };
    /** The slice's events matching every filter, between `from` (exclusive) and `to` (inclusive). */
    rows: { sql: string; params: (from: number, to: number, need: number) => unknown[] };
  }

  function sliceStatements(f: AuditFilter, d: Driver): SliceStatements {
    const desc = f.order === 'desc';
    const dir = desc ? 'DESC' : 'ASC';
    const past = desc ? '<' : '>';
    const upTo = desc ? '>=' : '<=';
    const r = residual(f, true);
    switch (d.kind) {
      case 'index':
        return {
          bound: {
            sql: `SELECT seq FROM audit_events INDEXED BY ${d.index} WHERE ${d.prefix} AND seq ${past} ? ORDER BY seq ${dir} LIMIT 1 OFFSET ?`,
            params: (from, size) => [...d.params, from, size - 1],
          },
          rows: {
            sql: `SELECT * FROM audit_events INDEXED BY ${d.index} WHERE ${d.prefix} AND seq ${past} ? AND seq ${upTo} ? AND ${r.where} ORDER BY seq ${dir} LIMIT ?`,
            params: (from, to, need) => [...d.params, from, to, ...r.params, need],
          },
        };
      case 'fts':
        return {
          bound: {
            sql: `SELECT rowid AS seq FROM audit_fts WHERE audit_fts MATCH ? AND rowid ${past} ? ORDER BY rowid ${dir} LIMIT 1 OFFSET ?`,
            params: (from, size) => [d.match, from, size - 1],
          },
          rows: {
            sql:
              `SELECT * FROM audit_events WHERE seq IN (SELECT rowid FROM audit_fts WHERE audit_fts MATCH ? AND rowid ${past} ? AND rowid ${upTo} ?) ` +
              `AND ${r.where} ORDER BY seq ${dir} LIMIT ?`,
            params: (from, to, need) => [d.match, from, to, ...r.params, need],
          },
        };
      case 'time':
        return {
          rows: {
            sql:
              'SELECT * FROM audit_events INDEXED BY audit_events_account_time WHERE account = ? AND time >= ? AND time < ? ' +
              `AND seq ${past} ? AND seq ${upTo} ? AND ${r.where} ORDER BY seq ${dir} LIMIT ?`,
            params: (from, to, need) => [f.account, d.since, d.until, from, to, ...r.params, need],
          },
        };
    }
  }

  /**
   * Runs a query one slice at a time: each slice reads at most
   * AUDIT_SCAN_SLICE entries of the driving index (a narrow time range is
   * one slice), keeps the events matching every filter, and the generator
   * yields before the next slice so the caller can let other requests run.
   * No statement stays open across a yield. Returns the page.
   */
  function* sliced(f: AuditFilter, d: Driver, once?: number): Generator<void, { rows: AuditRow[]; from: number; done: boolean }, void> {
    const { bound, rows } = sliceStatements(f, d);
    const boundSt = bound && prepared(bound.sql);
    const rowsSt = prepared(rows.sql);
    const desc = f.order === 'desc';
    const out: AuditRow[] = [];
    let from = f.cursor ?? (desc ? MAX_SEQ : 0);
    // Slices start small (a page that fills from the first candidates reads few) and grow to the bound.
    let size = once ?? Math.min(slice, Math.max(firstSlice, 2 * (f.limit ?? slice)));
    for (;;) {
      const far = boundSt ? (boundSt.get(...bound.params(from, size)) as { seq: number } | undefined)?.seq : undefined;
      const need = f.limit === undefined ? -1 : f.limit - out.length;
      out.push(...(rowsSt.all(...rows.params(from, far ?? (desc ? 0 : MAX_SEQ), need)) as AuditRow[]));
      const full = f.limit !== undefined && out.length >= f.limit;
      if (far === undefined || full) return { rows: out, from: far ?? from, done: true };
      from = far;
      if (once !== undefined) return { rows: out, from, done: false };
      size = Math.min(slice, size * 4);
      yield;
    }
  }

  /**
   * A page for an auditor scoped to resources and policies, with no filter
   * that picks an index of its own. One OR over expressions cannot use an
   * index, and a policy with few events made SQLite walk the whole account
   * (600 ms over a million events). Instead each scope becomes index ranges
   * on (account, resource_id, seq) — one per resource kind for a subtree —
   * each asked for its first `limit` rows in the requested order, and the
   * pages are merged. Yields between ranges.
   */
  function* rangePlan(f: AuditFilter): Generator<void, AuditRow[], void> {
    const kinds = [...new Set([...KNOWN_KINDS, ...kindsOf.all(f.account).map((r) => r.kind)])];
    const bySeq = new Map<number, AuditRow>();
    for (const range of f.scopes.flatMap((sc) => scopeRanges(sc, f.account, kinds))) {
      const { sql, params } = rangeQuery(f, range);
      for (const row of prepared(sql).all(...params) as AuditRow[]) bySeq.set(row.seq, row);
      yield;
    }
    const rows = [...bySeq.values()].sort((a, b) => (f.order === 'desc' ? b.seq - a.seq : a.seq - b.seq));
    return f.limit === undefined ? rows : rows.slice(0, f.limit);
  }

  function* querySlices(f: AuditFilter): Generator<void, AuditRow[], void> {
    if (f.scopes.length === 0) return [];
    const scoped = !f.scopes.some((sc) => sc.type === 'all');
    const d = chooseDriver(f, scoped);
    if (!d) return yield* rangePlan(f);
    if (d.kind !== 'fts') return (yield* sliced(f, d)).rows;
    // The full-text index lags the log (it is filled off the write path): bring it up to the head first, one
    // bounded batch per step, so the search covers every event logged before this query. If that cannot be
    // written (a full disk), the search is still answered, by the account's own index in bounded slices.
    try {
      while (indexSearchBatch(SEARCH_INDEX_STEP) === SEARCH_INDEX_STEP) yield;
    } catch (err) {
      if (!storageFailureOf(err)) throw err;
      return (yield* sliced(f, accountDriver(f))).rows;
    }
    // A q that many events contain fills its page from the account's newest (or oldest) events sooner than
    // the full-text index can list them (its common trigrams have long doclists): one slice of the account's
    // own index first, then the full-text index from where that slice ended.
    const head = yield* sliced(f, accountDriver(f), Math.min(slice, Q_FIRST_WALK));
    if (head.done) return head.rows;
    yield;
    const rest = yield* sliced({ ...f, cursor: head.from, limit: f.limit === undefined ? undefined : f.limit - head.rows.length }, d);
    return [...head.rows, ...rest.rows];
  }

  return {
    head: () => head.get(),
    insert: (row: AuditRow) => void insert.run(row),
    /**
     * Adds up to `max` not yet indexed events to the full-text index (one
     * transaction); returns how many. The audit log calls it while idle, a
     * q query until it is caught up.
     */
    indexSearchBatch: (max: number): number => indexSearchBatch(max),
    /** Iterates events in sequence order, starting after `afterSeq`. */
    iterate: (afterSeq = 0) => walk.iterate(afterSeq) as IterableIterator<AuditRow>,
    /** Up to `limit` events after `afterSeq`, in sequence order (a walk that can pause between pages). */
    page: (afterSeq: number, limit: number): AuditRow[] => page.all(afterSeq, limit),
    /**
     * A filtered page, one bounded slice per step: drive it with `next()`
     * and let the event loop turn between steps (AuditReader.query does).
     */
    querySlices,
    /** A filtered page, all slices at once (tests and tools; the server uses querySlices). */
    query(f: AuditFilter): AuditRow[] {
      const gen = querySlices(f);
      for (;;) {
        const r = gen.next();
        if (r.done) return r.value;
      }
    },
    /**
     * EXPLAIN QUERY PLAN of every statement the first slice of `f` runs,
     * one detail line each (tests check that none scans audit_events).
     */
    explain(f: AuditFilter): string[] {
      if (f.scopes.length === 0) return [];
      const scoped = !f.scopes.some((sc) => sc.type === 'all');
      const d = chooseDriver(f, scoped);
      const plan = (sql: string, params: unknown[]) =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
      const lines: string[] = [];
      if (f.since !== undefined || f.until !== undefined) {
        lines.push(...plan(timeCount.source, [f.account, f.since ?? TIME_MIN, f.until ?? TIME_MAX]));
      }
      if (!d) {
        const kinds = [...new Set([...KNOWN_KINDS, ...kindsOf.all(f.account).map((r) => r.kind)])];
        for (const range of f.scopes.flatMap((sc) => scopeRanges(sc, f.account, kinds))) {
          const { sql, params } = rangeQuery(f, range);
          lines.push(...plan(sql, params));
        }
        return lines;
      }
      if (d.kind === 'fts') {
        const walk = sliceStatements(f, accountDriver(f));
        lines.push(...plan(walk.bound!.sql, walk.bound!.params(MAX_SEQ, slice)), ...plan(walk.rows.sql, walk.rows.params(MAX_SEQ, 0, 100)));
      }
      const { bound, rows } = sliceStatements(f, d);
      if (bound) lines.push(...plan(bound.sql, bound.params(MAX_SEQ, slice)));
      lines.push(...plan(rows.sql, rows.params(MAX_SEQ, 0, 100)));
      return lines;
    },
  };
}

/** Resource-id range [from, to), with an optional extra condition, making up (part of) a scope. */
interface IdRange {
  from: string;
  to: string;
  extra?: { sql: string; params: unknown[] };
}

/** The first string after every string that starts with `prefix` ('/' → '0', ':' → ';'). */
const after = (prefix: string) => prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);

/** Exact, case-sensitive ranges: `acct:KIND:PATH/…` per kind, never `other/x:PATH/…`. */
function scopeRanges(scope: AuditScope, account: string, kinds: string[]): IdRange[] {
  switch (scope.type) {
    case 'all':
      return [{ from: `${account}:`, to: after(`${account}:`) }];
    case 'resource':
      return [{ from: scope.resourceId, to: `${scope.resourceId}\u0000` }];
    case 'subtree': {
      const policy = `${scope.account}:policy:${scope.path}`;
      return [
        { from: policy, to: `${policy}\u0000` },
        ...kinds.map((k) => {
          const prefix = `${scope.account}:${k}:${scope.path}/`;
          return { from: prefix, to: after(prefix) };
        }),
      ];
    }
    case 'users': {
      const prefix = `${scope.account}:user:`;
      const suffix = `@${scope.suffix}`;
      return [
        {
          from: prefix,
          to: after(prefix),
          extra: { sql: 'length(resource_id) > length(?) + length(?) AND substr(resource_id, -length(?)) = ?', params: [prefix, suffix, suffix, suffix] },
        },
      ];
    }
  }
}

/**
 * Every filter of `f` as one condition (the exact check each candidate of
 * the driving index must pass), with the auditor's scopes when asked.
 */
function residual(f: AuditFilter, withScopes: boolean): { where: string; params: unknown[] } {
  const where: string[] = ['account = ?'];
  const params: unknown[] = [f.account];
  if (withScopes && !f.scopes.some((s) => s.type === 'all')) {
    where.push(f.scopes.length === 0 ? '0' : `(${f.scopes.map((s) => scopeSql(s, params)).join(' OR ')})`);
  }
  if (f.resource !== undefined) {
    where.push('resource_id = ?');
    params.push(f.resource);
  }
  if (f.role !== undefined) {
    where.push('role_id = ?');
    params.push(f.role);
  }
  if (f.action !== undefined) {
    where.push('action = ?');
    params.push(f.action);
  }
  if (f.result !== undefined) {
    where.push('result = ?');
    params.push(f.result);
  }
  if (f.since !== undefined) {
    where.push('time >= ?');
    params.push(f.since);
  }
  if (f.until !== undefined) {
    where.push('time < ?');
    params.push(f.until);
  }
  if (f.q !== undefined) {
    where.push("message LIKE ? ESCAPE '\\'");
    params.push(`%${escapeLike(f.q)}%`);
  }
  return { where: where.join(' AND '), params };
}

/** One scope range's first `limit` events past the cursor, walking the resource index (and sorting its rows). */
function rangeQuery(f: AuditFilter, range: IdRange): { sql: string; params: unknown[] } {
  const r = residual(f, false);
  const where = [r.where, 'resource_id >= ? AND resource_id < ?'];
  const params = [...r.params, range.from, range.to];
  if (range.extra) {
    where.push(range.extra.sql);
    params.push(...range.extra.params);
  }
  if (f.cursor !== undefined) {
    where.push(f.order === 'desc' ? 'seq < ?' : 'seq > ?');
    params.push(f.cursor);
  }
  let sql = `SELECT * FROM audit_events INDEXED BY audit_events_account_resource WHERE ${where.join(' AND ')} ORDER BY seq ${f.order === 'desc' ? 'DESC' : 'ASC'}`;
  if (f.limit !== undefined) {
    sql += ' LIMIT ?';
    params.push(f.limit);
  }
  return { sql, params };
}

export type AuditStore = ReturnType<typeof createAuditStore>;
