/**
 * The audit histogram (issue 11, GET /audit/{account}/histogram): the
 * events an audit read would return, counted per UTC minute, hour or day.
 *
 * Two ways to count, one answer:
 * - a caller who may audit the whole account, with no resource, role or q
 *   filter: the audit_counts rollup (per account, minute/hour/day, action and
 *   result, kept by an insert trigger, migration 0009). The range is cut into
 *   whole days, hours and minutes (never a unit larger than the bucket, so
 *   each unit lies in one bucket) read from the rollup by its primary key,
 *   and at most two pieces shorter than a minute at the ends, counted from
 *   the account's time index. The reads are bounded by the number of buckets,
 *   not by the number of events.
 * - any other caller or filter: the audit read itself (AuditStore.query,
 *   with the caller's scopes), page by page in seq order, each event counted
 *   in its bucket — the same events by construction.
 */
import { unprocessable } from '../errors.js';
import type { AuditFilter, AuditScope, CountGrain } from '../store/audit.js';
import { GRAIN_KEY_LENGTH } from '../store/audit.js';
import type { AuditStore } from '../store/index.js';

export type BucketSize = 'minute' | 'hour' | 'day';
export const BUCKET_SIZES: readonly BucketSize[] = ['minute', 'hour', 'day'];

/** Most buckets one histogram answers (25 hours of minutes, 62 days of hours, 4 years of days). */
export const MAX_BUCKETS = 1500;

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const BUCKET_MS: Record<BucketSize, number> = { minute: MINUTE, hour: HOUR, day: DAY };
const GRAIN_MS: Record<CountGrain, number> = { m: MINUTE, h: HOUR, d: DAY };
/** The rollup grains a bucket size may read, smallest first (none larger than the bucket). */
const GRAINS_OF: Record<BucketSize, CountGrain[]> = { minute: ['m'], hour: ['m', 'h'], day: ['m', 'h', 'd'] };
/** Times a bucket key stands for: ISO strings of years 0000–9999 only sort as their keys do. */
const EARLIEST = Date.parse('0000-01-01T00:00:00.000Z');
const LATEST = Date.parse('9999-12-31T00:00:00.000Z');
/** Events per page of the audit read when counting through it. */
const READ_PAGE = 1000;

export interface HistogramQuery {
  bucket: BucketSize;
  /** ISO 8601 UTC (normalized), inclusive. */
  since: string;
  /** ISO 8601 UTC (normalized), exclusive. */
  until: string;
  resource?: string;
  role?: string;
  action?: string;
  result?: 'success' | 'failure';
  q?: string;
}

export interface HistogramBucket {
  start: string;
  /** Events with action `fetch` (secret fetches, successful or not). */
  fetches: number;
  /** Events with action `fetch` and result `failure`. */
  fetch_failures: number;
  /** Events with result `failure`, any action. */
  failures: number;
  /** Every event. */
  total: number;
}

export interface Histogram {
  bucket: BucketSize;
  since: string;
  until: string;
  buckets: HistogramBucket[];
}

/** Validates the range and bucket size; the first bucket's start and the number of buckets. */
export function planBuckets(bucket: BucketSize, since: string, until: string): { first: number; count: number } {
  const s = Date.parse(since);
  const u = Date.parse(until);
  if (!(u > s)) throw unprocessable("'until' must be after 'since'");
  if (s < EARLIEST || u > LATEST) throw unprocessable("'since' and 'until' must lie between 0000-01-01 and 9999-12-31");
  const size = BUCKET_MS[bucket];
  const first = Math.floor(s / size) * size;
  const count = Math.ceil((u - first) / size);
  if (count > MAX_BUCKETS) {
    const bigger = bucket === 'minute' ? "'hour' or 'day'" : bucket === 'hour' ? "'day'" : undefined;
    throw unprocessable(
      `The range holds ${count} ${bucket} buckets, more than ${MAX_BUCKETS}: ${bigger ? `use a bigger bucket (${bigger}) or ` : ''}a shorter range`,
    );
  }
  return { first, count };
}

interface Piece {
  /** A rollup grain, or undefined for a piece shorter than a minute (counted from the events). */
  grain?: CountGrain;
  from: number;
  to: number;
}

/**
 * [a, b) as whole units of the largest grains that fit (largest first in the
 * middle), then smaller ones towards the ends, and at most two pieces
 * shorter than the smallest grain at the very ends.
 */
export function decompose(a: number, b: number, grains: CountGrain[], out: Piece[] = []): Piece[] {
  if (a >= b) return out;
  if (grains.length === 0) {
    out.push({ from: a, to: b });
    return out;
  }
  const g = grains[grains.length - 1]!;
  const rest = grains.slice(0, -1);
  const ms = GRAIN_MS[g];
  const a2 = Math.ceil(a / ms) * ms;
  const b2 = Math.floor(b / ms) * ms;
  if (a2 < b2) {
    out.push({ grain: g, from: a2, to: b2 });
    decompose(a, a2, rest, out);
    decompose(b2, b, rest, out);
  } else {
    decompose(a, b, rest, out);
  }
  return out;
}

const iso = (ms: number) => new Date(ms).toISOString();
const keyOf = (ms: number, grain: CountGrain) => iso(ms).slice(0, GRAIN_KEY_LENGTH[grain]);
const KEY_SUFFIX: Record<CountGrain, string> = { m: ':00.000Z', h: ':00:00.000Z', d: 'T00:00:00.000Z' };

/**
 * Counts the events `scopes` lets the caller read in `account` that match
 * `q`, per bucket. `scopes` are the caller's (AuditReader.scopesFor).
 */
export async function auditHistogram(store: AuditStore, account: string, scopes: AuditScope[], q: HistogramQuery): Promise<Histogram> {
  const { first, count } = planBuckets(q.bucket, q.since, q.until);
  const size = BUCKET_MS[q.bucket];
  const buckets: HistogramBucket[] = Array.from({ length: count }, (_, i) => ({
    start: iso(first + i * size),
    fetches: 0,
    fetch_failures: 0,
    failures: 0,
    total: 0,
  }));
  const add = (atMs: number, action: string, result: string, n: number) => {
    const b = buckets[Math.floor((atMs - first) / size)];
    if (!b) return;
    b.total += n;
    if (result === 'failure') b.failures += n;
    if (action === 'fetch') {
      b.fetches += n;
      if (result === 'failure') b.fetch_failures += n;
    }
  };

  const wholeAccount = scopes.some((s) => s.type === 'all');
  if (wholeAccount && q.resource === undefined && q.role === undefined && q.q === undefined) {
    const s = Date.parse(q.since);
    const u = Date.parse(q.until);
    for (const piece of decompose(s, u, GRAINS_OF[q.bucket])) {
      if (piece.grain === undefined) {
        const rows = await store.countRange({ account, since: iso(piece.from), until: iso(piece.to), action: q.action, result: q.result });
        for (const r of rows) add(piece.from, r.action, r.result, r.n);
        continue;
      }
      const grain = piece.grain;
      const rows = await store.countRollup({ account, grain, fromKey: keyOf(piece.from, grain), toKey: keyOf(piece.to, grain), action: q.action, result: q.result });
      for (const r of rows) add(Date.parse(`${r.start}${KEY_SUFFIX[grain]}`), r.action, r.result, r.n);
    }
    return { bucket: q.bucket, since: q.since, until: q.until, buckets };
  }

  // Through the audit read: the same filter, scopes and time range, oldest first, page by page.
  const filter: AuditFilter = {
    account,
    scopes,
    resource: q.resource,
    role: q.role,
    action: q.action,
    result: q.result,
    since: q.since,
    until: q.until,
    q: q.q,
    order: 'asc',
    limit: READ_PAGE,
  };
  let cursor: number | undefined;
  for (;;) {
    const rows = await store.query({ ...filter, cursor });
    for (const r of rows) add(Date.parse(r.time), r.action, r.result, 1);
    if (rows.length < READ_PAGE) break;
    cursor = rows[rows.length - 1]!.seq;
  }
  return { bucket: q.bucket, since: q.since, until: q.until, buckets };
}
