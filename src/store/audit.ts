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

/** Grains of the audit_counts rollup (migration 0009): minute, hour, day; a bucket's key is the time's first 16, 13 or 10 characters. */
export type CountGrain = 'm' | 'h' | 'd';
export const GRAIN_KEY_LENGTH: Record<CountGrain, number> = { m: 16, h: 13, d: 10 };

/** Rollup rows of one grain whose bucket key is in [fromKey, toKey), optionally of one action and/or result. */
export interface RollupQuery {
  account: string;
  grain: CountGrain;
  fromKey: string;
  toKey: string;
  action?: string;
  result?: 'success' | 'failure';
}

export interface RollupRow {
  start: string;
  action: string;
  result: 'success' | 'failure';
  n: number;
}

/** Events of an account in [since, until) (ISO times), optionally of one action and/or result, counted per action and result. */
export interface RangeCountQuery {
  account: string;
  since: string;
  until: string;
  action?: string;
  result?: 'success' | 'failure';
}

export interface RangeCountRow {
  action: string;
  result: 'success' | 'failure';
  n: number;
}

/** SQL and parameters of a rollup read (the same text on both backends, `?` placeholders). */
export function rollupSql(q: RollupQuery): { sql: string; params: unknown[] } {
  const where = ['account = ?', 'grain = ?', 'start >= ?', 'start < ?'];
  const params: unknown[] = [q.account, q.grain, q.fromKey, q.toKey];
  if (q.action !== undefined) {
    where.push('action = ?');
    params.push(q.action);
  }
  if (q.result !== undefined) {
    where.push('result = ?');
    params.push(q.result);
  }
  return { sql: `SELECT start, action, result, n FROM audit_counts WHERE ${where.join(' AND ')}`, params };
}

/** SQL and parameters of a range count over the account's time index. */
export function rangeCountSql(q: RangeCountQuery): { sql: string; params: unknown[] } {
  const where = ['account = ?', 'time >= ?', 'time < ?'];
  const params: unknown[] = [q.account, q.since, q.until];
  if (q.action !== undefined) {
    where.push('action = ?');
    params.push(q.action);
  }
  if (q.result !== undefined) {
    where.push('result = ?');
    params.push(q.result);
  }
  return { sql: `SELECT action, result, count(*) AS n FROM audit_events WHERE ${where.join(' AND ')} GROUP BY action, result`, params };
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
 * slices, each bounded by this many entries of each index range it walks
 * (action alone walks two: one per result), and the
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

/**
 * Candidate counts at which one trigram of `q` is taken alone as the
 * full-text candidates (the LIKE of the residual filter checks the rest):
 * first any trigram under the first bound, else any under the second. The
 * phrase itself makes FTS5 read every trigram's whole list — over 5M events
 * `app7/secret1207` (167 matches) costs 137 ms, its rarest trigram `207`
 * alone 0.8 ms for 8,333 candidates. Each probe reads at most its bound of
 * index entries (~0.1 µs each), and at most MAX_PROBED_TRIGRAMS are probed.
 */
const RARE_TRIGRAM_BOUNDS = [1_000, 10_000] as const;
const MAX_PROBED_TRIGRAMS = 24;

/** The values of `result` (the CHECK of audit_events in 0001). */
const RESULTS = ['success', 'failure'] as const;

/** One range of an index, in seq order: the equality terms on its leading columns. */
interface IndexRange {
  prefix: string;
  params: unknown[];
}

/**
 * Where the candidate events of a query come from, in seq order. An index
 * driver reads one range of its index, or several (action alone: one per
 * result) merged by seq.
 */
type Driver =
  | { kind: 'index'; index: string; ranges: IndexRange[] }
  | { kind: 'fts'; match: string }
  | { kind: 'time'; since: string; until: string };

/**
 * The seqs a query may return, both bounds exclusive: its time filters as
 * seq bounds (see `seqWindow`). Every walk stays inside it.
 */
export interface SeqWindow {
  after: number;
  before: number;
}
const WHOLE_LOG: SeqWindow = { after: 0, before: MAX_SEQ };

export interface AuditStoreOptions {
  /** Index entries per slice (tests use a few to exercise slicing on a small log). */
  scanSlice?: number;
  /** Index entries of a query's first slice (default FIRST_SLICE; tests use fewer to exercise the growth). */
  firstSlice?: number;
}

const indexDriver = (index: string, prefix: string, params: unknown[]): Driver => ({ kind: 'index', index, ranges: [{ prefix, params }] });
const accountDriver = (f: AuditFilter): Driver => indexDriver('audit_events_account', 'account = ?', [f.account]);

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
  const ftsNth = db.prepare<[string, number], { rowid: number }>('SELECT rowid FROM audit_fts WHERE audit_fts MATCH ? LIMIT 1 OFFSET ?');
  const ftsCount = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM audit_fts WHERE audit_fts MATCH ?');
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
  const timeState = db.prepare<[], { regression_upto: number }>('SELECT regression_upto FROM audit_time_state WHERE id = 1');
  /** The account's last event before `until` in (time, seq) order. */
  const lastBefore = db.prepare<[string, string], { seq: number }>(
    'SELECT seq FROM audit_events INDEXED BY audit_events_account_time WHERE account = ? AND time < ? ORDER BY time DESC, seq DESC LIMIT 1',
  );
  /** The account's first event at or after `since` in (time, seq) order. */
  const firstFrom = db.prepare<[string, string], { seq: number }>(
    'SELECT seq FROM audit_events INDEXED BY audit_events_account_time WHERE account = ? AND time >= ? ORDER BY time ASC, seq ASC LIMIT 1',
  );
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

  /**
   * The seqs a query's since/until can match, exactly, even when the clock
   * went backwards; undefined when none can. With R = regression_upto of
   * audit_time_state (every event after R has a time >= that of every event
   * before it):
   * - until U: let S be the account's last event with time < U in (time, seq)
   *   order. No event after max(S, R) has a time < U: such an event e is past
   *   R, so time(e) >= time(S) (S is before it); time(e) < U would make e an
   *   event below U later than S in (time, seq) order (equal time: higher seq).
   * - since T: let s be the account's first event with time >= T in (time, seq)
   *   order. When s > R, no event before s has a time >= T: such an event e
   *   has time(e) <= time(s) (s is past R), time(s) <= time(e) (s is first),
   *   so equal times, and then s is first by seq — yet e is before it. When
   *   s <= R, no lower bound.
   * The time conditions stay in every query (they are the exact filter); the
   * window only keeps the walks off events that cannot match.
   */
  function seqWindow(f: AuditFilter): SeqWindow | undefined {
    if (f.since === undefined && f.until === undefined) return WHOLE_LOG;
    // No state row (never so after the migration): no bound at all.
    const r = timeState.get()?.regression_upto ?? MAX_SEQ;
    const w = { ...WHOLE_LOG };
    if (f.until !== undefined) {
      const s = lastBefore.get(f.account, f.until);
      if (!s) return undefined;
      w.before = Math.min(MAX_SEQ, Math.max(s.seq, r) + 1);
    }
    if (f.since !== undefined) {
      const s = firstFrom.get(f.account, f.since);
      if (!s) return undefined;
      if (s.seq > r) w.after = s.seq - 1;
    }
    return w.after + 1 < w.before ? w : undefined;
  }

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
   * action (with result) and result; the account's own index when nothing
   * else is given. A wider time range is no driver: it bounds the walk of
   * the chosen one (`seqWindow`). Scoped auditors without an id, time or q
   * filter use `rangePlan` instead.
   */
  function chooseDriver(f: AuditFilter, scoped: boolean): Driver | undefined {
    if (f.resource !== undefined) return indexDriver('audit_events_account_resource', 'account = ? AND resource_id = ?', [f.account, f.resource]);
    if (f.role !== undefined) return indexDriver('audit_events_account_role', 'account = ? AND role_id = ?', [f.account, f.role]);
    const time = narrowTime(f);
    if (time) return time;
    if (f.q !== undefined && qServedByFts(f.q)) return { kind: 'fts', match: ftsPhrase(f.q) };
    if (scoped) return undefined;
    if (f.action !== undefined) {
      // action + result: one range; action alone: its two result ranges, merged by seq.
      const prefix = 'account = ? AND action = ? AND result = ?';
      const results = f.result === undefined ? RESULTS : [f.result];
      return { kind: 'index', index: 'audit_events_account_action_result', ranges: results.map((r) => ({ prefix, params: [f.account, f.action, r] })) };
    }
    if (f.result !== undefined) return indexDriver('audit_events_account_result', 'account = ? AND result = ?', [f.account, f.result]);
    return accountDriver(f);
  }

  interface SliceStatements {
    /**
     * Per range of the driver: its `size`-th candidate past `from`, not past the
     * walk's `end` (none for a time driver: one slice). The slice ends at the
     * nearest of them.
     */
    bounds: { sql: string; params: (from: number, end: number, size: number) => unknown[] }[];
    /** The slice's events matching every filter, between `from` (exclusive) and `to` (inclusive), in seq order. */
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
          bounds: d.ranges.map((range) => ({
            sql: `SELECT seq FROM audit_events INDEXED BY ${d.index} WHERE ${range.prefix} AND seq ${past} ? AND seq ${upTo} ? ORDER BY seq ${dir} LIMIT 1 OFFSET ?`,
            params: (from, end, size) => [...range.params, from, end, size - 1],
          })),
          // Several ranges: a UNION ALL ordered by seq, which SQLite runs as a merge of the ranges (each read in
          // index order, no sort) that stops at the limit.
          rows: {
            sql:
              d.ranges
                .map((range) => `SELECT * FROM audit_events INDEXED BY ${d.index} WHERE ${range.prefix} AND seq ${past} ? AND seq ${upTo} ? AND ${r.where}`)
                .join(' UNION ALL ') + ` ORDER BY seq ${dir} LIMIT ?`,
            params: (from, to, need) => [...d.ranges.flatMap((range) => [...range.params, from, to, ...r.params]), need],
          },
        };
      // FTS5 seeks to a rowid bound only when its value is an INTEGER; better-sqlite3 binds a JavaScript number as
      // a REAL, which FTS5 ignores (SQLite then filters every match: 46–64 ms instead of ~1 ms for a bound over
      // a million events), hence the CASTs.
      case 'fts':
        return {
          bounds: [
            {
              sql: `SELECT rowid AS seq FROM audit_fts WHERE audit_fts MATCH ? AND rowid ${past} CAST(? AS INTEGER) AND rowid ${upTo} CAST(? AS INTEGER) ORDER BY rowid ${dir} LIMIT 1 OFFSET ?`,
              params: (from, end, size) => [d.match, from, end, size - 1],
            },
          ],
          // NOT INDEXED: the candidates are looked up by seq. Otherwise a time filter lets SQLite walk the
          // account's time index instead, checking each event against the candidate list.
          rows: {
            sql:
              `SELECT * FROM audit_events NOT INDEXED WHERE seq IN (SELECT rowid FROM audit_fts WHERE audit_fts MATCH ? AND rowid ${past} CAST(? AS INTEGER) AND rowid ${upTo} CAST(? AS INTEGER)) ` +
              `AND ${r.where} ORDER BY seq ${dir} LIMIT ?`,
            params: (from, to, need) => [d.match, from, to, ...r.params, need],
          },
        };
      case 'time':
        return {
          bounds: [],
          rows: {
            sql:
              'SELECT * FROM audit_events INDEXED BY audit_events_account_time WHERE account = ? AND time >= ? AND time < ? ' +
              `AND seq ${past} ? AND seq ${upTo} ? AND ${r.where} ORDER BY seq ${dir} LIMIT ?`,
            params: (from, to, need) => [f.account, d.since, d.until, from, to, ...r.params, need],
          },
        };
    }
  }

  /** Where a walk starts (exclusive: the cursor, or the window's edge) and ends (inclusive), in the query's order. */
  function walkEnds(f: AuditFilter, w: SeqWindow): { from: number; end: number } {
    return f.order === 'desc'
      ? { from: Math.min(f.cursor ?? MAX_SEQ, w.before), end: w.after + 1 }
      : { from: Math.max(f.cursor ?? 0, w.after), end: w.before - 1 };
  }

  /**
   * Runs a query one slice at a time: each slice reads at most
   * AUDIT_SCAN_SLICE entries of each range of the driving index (a narrow
   * time range is one slice), keeps the events matching every filter, and
   * the generator yields before the next slice so the caller can let other
   * requests run. The walk stays inside the seq window `w`. No statement
   * stays open across a yield. Returns the page.
   */
  function* sliced(
    f: AuditFilter,
    d: Driver,
    w: SeqWindow,
    once?: number,
  ): Generator<void, { rows: AuditRow[]; from: number; done: boolean }, void> {
    const { bounds, rows } = sliceStatements(f, d);
    const boundSts = bounds.map((b) => prepared(b.sql));
    const rowsSt = prepared(rows.sql);
    const desc = f.order === 'desc';
    const out: AuditRow[] = [];
    let { from } = walkEnds(f, w);
    const { end } = walkEnds(f, w);
    if (desc ? from <= end : from >= end) return { rows: out, from, done: true };
    // Slices start small (a page that fills from the first candidates reads few) and grow to the bound.
    let size = once ?? Math.min(slice, Math.max(firstSlice, 2 * (f.limit ?? slice)));
    for (;;) {
      // The nearest of the ranges' far ends: no range has more than `size` candidates in the slice.
      let far: number | undefined;
      bounds.forEach((b, i) => {
        const seq = (boundSts[i]!.get(...b.params(from, end, size)) as { seq: number } | undefined)?.seq;
        if (seq !== undefined && (far === undefined || (desc ? seq > far : seq < far))) far = seq;
      });
      const need = f.limit === undefined ? -1 : f.limit - out.length;
      out.push(...(rowsSt.all(...rows.params(from, far ?? end, need)) as AuditRow[]));
      const full = f.limit !== undefined && out.length >= f.limit;
      if (far === undefined || far === end || full) return { rows: out, from: far ?? from, done: true };
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
   * pages are merged. Yields between ranges. Stays inside the seq window `w`.
   */
  function* rangePlan(f: AuditFilter, w: SeqWindow): Generator<void, AuditRow[], void> {
    const kinds = [...new Set([...KNOWN_KINDS, ...kindsOf.all(f.account).map((r) => r.kind)])];
    const bySeq = new Map<number, AuditRow>();
    for (const range of f.scopes.flatMap((sc) => scopeRanges(sc, f.account, kinds))) {
      const { sql, params } = rangeQuery(f, range, w);
      for (const row of prepared(sql).all(...params) as AuditRow[]) bySeq.set(row.seq, row);
      yield;
    }
    const rows = [...bySeq.values()].sort((a, b) => (f.order === 'desc' ? b.seq - a.seq : a.seq - b.seq));
    return f.limit === undefined ? rows : rows.slice(0, f.limit);
  }

  /**
   * `q`'s rarest trigram as an FTS5 phrase, when one has fewer index entries
   * than a bound of RARE_TRIGRAM_BOUNDS; undefined: use the whole phrase. Every
   * event containing `q` contains each of its trigrams (the index folds case
   * at least as widely as LIKE), so one trigram's events are a superset.
   */
  function rareTrigram(q: string): string | undefined {
    const chars = [...q];
    const all = [...new Set(chars.slice(0, -2).map((_, i) => chars.slice(i, i + 3).join('')))];
    const step = Math.max(1, all.length / MAX_PROBED_TRIGRAMS);
    const probed = Array.from({ length: Math.min(all.length, MAX_PROBED_TRIGRAMS) }, (_, i) => all[Math.floor(i * step)]!);
    for (const bound of RARE_TRIGRAM_BOUNDS) {
      let best: { phrase: string; n: number } | undefined;
      for (const trigram of probed) {
        const phrase = ftsPhrase(trigram);
        // Fewer than `bound` entries when there is no bound-th; then count them (cheap: under the bound).
        if (ftsNth.get(phrase, bound - 1) !== undefined) continue;
        const n = ftsCount.get(phrase)!.n;
        if (!best || n < best.n) best = { phrase, n };
      }
      if (best) return best.phrase;
    }
    return undefined;
  }

  function* querySlices(f: AuditFilter): Generator<void, AuditRow[], void> {
    if (f.scopes.length === 0) return [];
    const w = seqWindow(f);
    if (!w) return [];
    const scoped = !f.scopes.some((sc) => sc.type === 'all');
    const d = chooseDriver(f, scoped);
    if (!d) return yield* rangePlan(f, w);
    if (d.kind !== 'fts') return (yield* sliced(f, d, w)).rows;
    // The full-text index lags the log (it is filled off the write path): bring it up to the head first, one
    // bounded batch per step, so the search covers every event logged before this query. If that cannot be
    // written (a full disk), the search is still answered, by the account's own index in bounded slices.
    try {
      while (indexSearchBatch(SEARCH_INDEX_STEP) === SEARCH_INDEX_STEP) yield;
    } catch (err) {
      if (!storageFailureOf(err)) throw err;
      return (yield* sliced(f, accountDriver(f), w)).rows;
    }
    // A q that many events contain fills its page from the account's newest (or oldest) events sooner than
    // the full-text index can list them (its common trigrams have long doclists): one slice of the account's
    // own index first, then the full-text index from where that slice ended.
    const head = yield* sliced(f, accountDriver(f), w, Math.min(slice, Q_FIRST_WALK));
    if (head.done) return head.rows;
    yield;
    const candidates: Driver = { kind: 'fts', match: rareTrigram(f.q!) ?? d.match };
    yield;
    const rest = yield* sliced({ ...f, cursor: head.from, limit: f.limit === undefined ? undefined : f.limit - head.rows.length }, candidates, w);
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
    /** Rollup rows (audit_counts) of one grain and key range: its primary key serves it. */
    countRollup(q: RollupQuery): RollupRow[] {
      const { sql, params } = rollupSql(q);
      return prepared(sql).all(...params) as RollupRow[];
    },
    /** The account's events in a time range, counted per action and result, by its time index. */
    countRange(q: RangeCountQuery): RangeCountRow[] {
      const { sql, params } = rangeCountSql(q);
      return prepared(sql.replace('FROM audit_events', 'FROM audit_events INDEXED BY audit_events_account_time')).all(...params) as RangeCountRow[];
    },
    /** EXPLAIN QUERY PLAN of a rollup read and a range count (tests check that neither scans a table). */
    explainCounts(r: RollupQuery, c: RangeCountQuery): string[] {
      const plan = (sql: string, params: unknown[]) =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((row) => row.detail);
      const a = rollupSql(r);
      const b = rangeCountSql(c);
      return [...plan(a.sql, a.params), ...plan(b.sql.replace('FROM audit_events', 'FROM audit_events INDEXED BY audit_events_account_time'), b.params)];
    },
    /** Iterates events in sequence order, starting after `afterSeq`. */
    iterate: (afterSeq = 0) => walk.iterate(afterSeq) as IterableIterator<AuditRow>,
    /** Up to `limit` events after `afterSeq`, in sequence order (a walk that can pause between pages). */
    page: (afterSeq: number, limit: number): AuditRow[] => page.all(afterSeq, limit),
    /**
     * A filtered page, one bounded slice per step: drive it with `next()`
     * and let the event loop turn between steps (AuditReader.query does).
     */
    querySlices,
    /**
     * The seqs `f`'s since/until can match, as exclusive bounds (the whole
     * log without them); undefined when none can (tests check it never cuts
     * off a match).
     */
    timeWindow: (f: AuditFilter): SeqWindow | undefined => seqWindow(f),
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
      const plan = (sql: string, params: unknown[]) =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
      const lines: string[] = [];
      if (f.since !== undefined || f.until !== undefined) {
        lines.push(...plan(timeState.source, []));
        if (f.until !== undefined) lines.push(...plan(lastBefore.source, [f.account, f.until]));
        if (f.since !== undefined) lines.push(...plan(firstFrom.source, [f.account, f.since]));
      }
      // An empty window answers without another statement; the plans are then those of the whole log's.
      const w = seqWindow(f) ?? WHOLE_LOG;
      const scoped = !f.scopes.some((sc) => sc.type === 'all');
      const d = chooseDriver(f, scoped);
      if (f.since !== undefined || f.until !== undefined) {
        lines.push(...plan(timeCount.source, [f.account, f.since ?? TIME_MIN, f.until ?? TIME_MAX]));
      }
      if (!d) {
        const kinds = [...new Set([...KNOWN_KINDS, ...kindsOf.all(f.account).map((r) => r.kind)])];
        for (const range of f.scopes.flatMap((sc) => scopeRanges(sc, f.account, kinds))) {
          const { sql, params } = rangeQuery(f, range, w);
          lines.push(...plan(sql, params));
        }
        return lines;
      }
      const { from, end } = walkEnds(f, w);
      const slicePlans = (s: SliceStatements) => [
        ...s.bounds.flatMap((b) => plan(b.sql, b.params(from, end, slice))),
        ...plan(s.rows.sql, s.rows.params(from, end, 100)),
      ];
      if (d.kind === 'fts') lines.push(...slicePlans(sliceStatements(f, accountDriver(f))));
      lines.push(...slicePlans(sliceStatements(f, d)));
      return lines;
    },
  };
}

/**
 * Resource-id range [from, to) making up (part of) a scope; `endsWith`: only
 * the ids in it that end with that text after at least one more character
 * (a policy's users). Each backend renders it (SQLite here, PostgreSQL in
 * ./postgres/audit.ts).
 */
export interface IdRange {
  from: string;
  to: string;
  endsWith?: string;
}

/** The first string after every string that starts with `prefix` ('/' → '0', ':' → ';'). */
const after = (prefix: string) => prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);

/** The range holding exactly `id`; a backend whose text cannot hold NUL (PostgreSQL) tests equality instead. */
const exactly = (id: string): IdRange => ({ from: id, to: `${id}\u0000` });
export const isExactRange = (r: IdRange) => r.to === `${r.from}\u0000`;

/** Exact, case-sensitive ranges: `acct:KIND:PATH/…` per kind, never `other/x:PATH/…`. */
export function scopeRanges(scope: AuditScope, account: string, kinds: string[]): IdRange[] {
  switch (scope.type) {
    case 'all':
      return [{ from: `${account}:`, to: after(`${account}:`) }];
    case 'resource':
      return [exactly(scope.resourceId)];
    case 'subtree':
      return [
        exactly(`${scope.account}:policy:${scope.path}`),
        ...kinds.map((k) => {
          const prefix = `${scope.account}:${k}:${scope.path}/`;
          return { from: prefix, to: after(prefix) };
        }),
      ];
    case 'users': {
      const prefix = `${scope.account}:user:`;
      return [{ from: prefix, to: after(prefix), endsWith: `@${scope.suffix}` }];
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

/** One scope range's first `limit` events past the cursor and inside `w`, walking the resource index (and sorting its rows). */
function rangeQuery(f: AuditFilter, range: IdRange, w: SeqWindow): { sql: string; params: unknown[] } {
  const r = residual(f, false);
  const where = [r.where, 'resource_id >= ? AND resource_id < ?'];
  const params = [...r.params, range.from, range.to];
  if (range.endsWith !== undefined) {
    where.push('length(resource_id) > length(?) + length(?) AND substr(resource_id, -length(?)) = ?');
    params.push(range.from, range.endsWith, range.endsWith, range.endsWith);
  }
  if (f.cursor !== undefined) {
    where.push(f.order === 'desc' ? 'seq < ?' : 'seq > ?');
    params.push(f.cursor);
  }
  if (w.after > WHOLE_LOG.after) {
    where.push('seq > ?');
    params.push(w.after);
  }
  if (w.before < WHOLE_LOG.before) {
    where.push('seq < ?');
    params.push(w.before);
  }
  let sql = `SELECT * FROM audit_events INDEXED BY audit_events_account_resource WHERE ${where.join(' AND ')} ORDER BY seq ${f.order === 'desc' ? 'DESC' : 'ASC'}`;
  if (f.limit !== undefined) {
    sql += ' LIMIT ?';
    params.push(f.limit);
  }
  return { sql, params };
}

export type AuditStore = ReturnType<typeof createAuditStore>;
