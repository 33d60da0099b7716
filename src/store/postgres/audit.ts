/**
 * The audit_events table on PostgreSQL. Appends happen inside the store's
 * write transactions, which hold one cluster-wide advisory lock (see
 * ./index.ts), so `head()` then `insert()` extend one chain whichever node
 * appends. A filtered page is one statement: PostgreSQL's planner picks among
 * the same (account, …, seq) indexes SQLite's slices walk (a scoped
 * auditor's page: one subquery per resource-id range, see rangePlanSqls), and `q` by the
 * trigram index of audit_search (ILIKE on a COLLATE "C" column folds ASCII letters only, as
 * SQLite's LIKE does) plus the events not copied there yet (migration 0006, qSql).
 */
import { KNOWN_KINDS } from '../../ids.js';
import { isExactRange, rangeCountSql, rollupSql, scopeRanges, type AuditFilter, type AuditRow, type AuditScope } from '../audit.js';
import type { AuditStore } from '../types.js';
import { rowsOf, type PgConnection, type PgQueryable } from './client.js';

const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

type Placeholder = (v: unknown) => string;

/** Every filter but the auditor's scopes and the cursor, as conditions. */
function filterConditions(f: AuditFilter, p: Placeholder): string[] {
  const where: string[] = [`account = ${p(f.account)}`];
  if (f.resource !== undefined) where.push(`resource_id = ${p(f.resource)}`);
  if (f.role !== undefined) where.push(`role_id = ${p(f.role)}`);
  if (f.action !== undefined) where.push(`action = ${p(f.action)}`);
  if (f.result !== undefined) where.push(`result = ${p(f.result)}`);
  if (f.since !== undefined) where.push(`time >= ${p(f.since)}`);
  if (f.until !== undefined) where.push(`time < ${p(f.until)}`);
  if (f.cursor !== undefined) where.push(`seq ${f.order === 'desc' ? '<' : '>'} ${p(f.cursor)}`);
  return where;
}

function placeholders(): { params: unknown[]; p: Placeholder } {
  const params: unknown[] = [];
  return {
    params,
    p: (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    },
  };
}

/**
 * The query as text with $n placeholders (the filter's shape varies: unsafe with bound parameters). A q query needs
 * `searchedUpto`, the highest seq audit_search held when the query began (see qSql), and may name the trigrams of q
 * that find its candidates (`driving`, see rareTrigrams).
 */
function querySql(f: AuditFilter, searchedUpto?: number, driving?: Driving): { text: string; params: unknown[] } {
  const { params, p } = placeholders();
  const where = filterConditions(f, p);
  if (f.scopes.length === 0) where.push('false');
  else if (!f.scopes.some((s) => s.type === 'all')) where.push(`(${f.scopes.map((s) => scopeSql(s, p)).join(' OR ')})`);
  const order = `ORDER BY seq ${f.order === 'desc' ? 'DESC' : 'ASC'}`;
  const limit = f.limit === undefined ? '' : ` LIMIT ${p(f.limit)}`;
  if (f.q === undefined) return { text: `SELECT * FROM audit_events WHERE ${where.join(' AND ')} ${order}${limit}`, params };
  if (searchedUpto === undefined) throw new Error('a q query needs the highest seq audit_search holds');
  const drivingSql = driving && { patterns: driving.trigrams.map((t) => p(`%${t}%`)), max: driving.maxCandidates };
  return { text: qSql(where, p(`%${escapeLike(f.q)}%`), p(searchedUpto), order, limit, drivingSql), params };
}

/** The highest seq copied to audit_search (0 before any): audit_search holds exactly the events up to it. */
const SEARCH_UPTO = '(SELECT coalesce(max(seq), 0) FROM audit_search)';

/**
 * A q page in two arms of one statement: the events up to `upto` (audit_search's highest seq, read just before),
 * found by its trigram index, and the events after it, read from audit_events by seq and matched there. Every event
 * up to `upto` is in audit_search for good (it is always a prefix of the chain, migration 0006), so the two arms
 * cover every event once. `upto` goes in as a value rather than a subquery so the planner sees how short the
 * second arm is (nodes keep audit_search close to the head, see indexSearchBatch): with a subquery it planned a
 * scan of a third of the log, in parallel workers, about 10 ms even when it found nothing.
 *
 * With `driving` (patterns of q's rare trigrams, see rareTrigrams), the index is asked for those alone and the
 * whole pattern is checked on the rows it finds: a MATERIALIZED CTE keeps the planner from handing the whole
 * pattern to the index as well, which would read every trigram's list again. Every event matching the whole pattern
 * contains each of its trigrams, so the answer is the same. A sample can be wrong (its pages missed a stretch of the
 * log where a trigram is common): past `driving.max` candidates (MAX_DRIVEN_CANDIDATES) the whole pattern answers instead (a
 * one-time filter: only one of the two arms runs), so a wrong guess costs at most that many rows read.
 */
function qSql(
  where: string[],
  pattern: string,
  upto: string,
  order: string,
  limit: string,
  driving?: { patterns: string[]; max: number },
): string {
  const whole = `SELECT seq FROM audit_search WHERE message ILIKE ${pattern}`;
  const searched =
    driving && driving.patterns.length > 0
      ? `WITH candidates AS MATERIALIZED (
           SELECT seq, message FROM audit_search WHERE ${driving.patterns.map((d) => `message ILIKE ${d}`).join(' AND ')} LIMIT ${driving.max + 1})
         SELECT seq FROM candidates WHERE message ILIKE ${pattern} AND (SELECT count(*) FROM candidates) <= ${driving.max}
         UNION ALL
         ${whole} AND (SELECT count(*) FROM candidates) > ${driving.max}`
      : whole;
  const indexed = `(SELECT * FROM audit_events WHERE ${where.join(' AND ')} AND seq <= ${upto} AND seq IN (${searched}) ${order}${limit})`;
  const recent = `(SELECT * FROM audit_events WHERE ${where.join(' AND ')} AND seq > ${upto} AND message ILIKE ${pattern} ${order}${limit})`;
  return `SELECT * FROM (${indexed} UNION ALL ${recent}) AS matched ${order}${limit}`;
}

/**
 * Copied events from which a q query first looks for q's rare trigrams. Below it every trigram's list is short
 * and the whole pattern costs less than the sample (3–5 ms measured over a million events).
 */
export const Q_SAMPLE_FROM = 100_000;
/** Rows the sample aims at (TABLESAMPLE SYSTEM takes whole pages: 600–1,400 rows over a million events here). */
const Q_SAMPLE_ROWS = 600;
/** Fewer sampled rows than this say nothing worth trusting: the whole pattern is used. */
const Q_SAMPLE_MIN_ROWS = 100;
/** Trigrams of q counted in the sample (spread over q, as SQLite's rareTrigram probes them). */
const MAX_SAMPLED_TRIGRAMS = 12;
/** A trigram in at most this share of the sample is rare; at most MAX_DRIVING_TRIGRAMS of the rarest drive. */
const RARE_SHARE = 0.02;
const MAX_DRIVING_TRIGRAMS = 3;
/** Candidates the rare trigrams may find before the whole pattern is used instead (see qSql). */
export const MAX_DRIVEN_CANDIDATES = 20_000;

/** q's rare trigrams (rareTrigrams) and how many candidates they may find (qSql). */
interface Driving {
  trigrams: string[];
  maxCandidates: number;
}

/** The share of audit_search's pages (in percent, as TABLESAMPLE takes it) that holds about Q_SAMPLE_ROWS of `upto` events. */
export function samplePercent(upto: number): number {
  return Math.min(100, (Q_SAMPLE_ROWS / Math.max(upto, 1)) * 100);
}

/**
 * q's trigrams that the trigram index can look up alone: three ASCII letters or digits in a row (any other
 * character ends a word), each once, lower case by ASCII's rule — the one ILIKE on a COLLATE "C" column follows.
 * Each is then a substring of q up to ASCII case, so `message ILIKE '%t%'` holds for every match of q. Words are
 * taken before lower-casing: Unicode's lower case maps the Kelvin sign to `k` and `İ` to `i` + U+0307, which would
 * make trigrams that no match of q contains.
 */
export function wordTrigrams(q: string): string[] {
  const found = new Set<string>();
  for (const word of (q.match(/[A-Za-z0-9]{3,}/g) ?? []).map((w) => w.toLowerCase())) {
    for (let i = 0; i + 3 <= word.length; i++) found.add(word.slice(i, i + 3));
  }
  const all = [...found];
  const step = Math.max(1, all.length / MAX_SAMPLED_TRIGRAMS);
  return Array.from({ length: Math.min(all.length, MAX_SAMPLED_TRIGRAMS) }, (_, i) => all[Math.floor(i * step)]!);
}

/**
 * The trigrams of q that should find its candidates, or undefined for the whole pattern. The trigram index answers
 * a pattern by reading the list of every trigram in it and intersecting them; over a big log a trigram most
 * messages contain ("eve" of "event") has a list of many pages, and `seeded event 500000` read 3,649 pages (40 ms)
 * over a million events where its two rare trigrams' lists take 395 (3 ms). PostgreSQL keeps no count per trigram,
 * so a sample of the copied messages (about Q_SAMPLE_ROWS, whole pages, the same pages for the same table) tells
 * which are rare. Only worth it on a big log (`from`, Q_SAMPLE_FROM by default).
 */
async function rareTrigrams(db: PgConnection, q: string, upto: number, from: number): Promise<string[] | undefined> {
  if (upto < from) return undefined;
  const trigrams = wordTrigrams(q);
  if (trigrams.length < 2) return undefined;
  // One statement text whatever q is (prepared once): the trigrams go in as an array.
  const [row] = await db()<{ n: number; counts: number[] }[]>`
    WITH sampled AS MATERIALIZED (SELECT lower(message) AS m FROM audit_search TABLESAMPLE SYSTEM (${samplePercent(upto)}::float4) REPEATABLE (0))
    SELECT (SELECT count(*) FROM sampled)::int4 AS n,
      array(SELECT (SELECT count(*) FROM sampled WHERE strpos(m, t) > 0)::int4 FROM unnest(${trigrams}::text[]) WITH ORDINALITY AS c(t, i) ORDER BY i) AS counts`;
  if (!row || row.n < Q_SAMPLE_MIN_ROWS) return undefined;
  const rare = trigrams
    .map((t, i) => ({ t, n: Number(row.counts[i]) }))
    .filter((c) => c.n <= RARE_SHARE * row.n)
    .sort((a, b) => a.n - b.n)
    .slice(0, MAX_DRIVING_TRIGRAMS);
  return rare.length > 0 ? rare.map((c) => c.t) : undefined;
}

async function searchedUpto(db: PgConnection): Promise<number> {
  const [row] = await db()<{ upto: number }[]>`SELECT coalesce(max(seq), 0)::int8 AS upto FROM audit_search`;
  return Number(row!.upto);
}

/** Key of the transaction-level advisory lock one search-index fill holds (the bytes of 'coffer:s'): one node fills at a time. */
export const SEARCH_FILL_LOCK_KEY = '7165058122144430707';

/** Events per INSERT: a batch bigger than this (a policy load's change log) takes several. */
const AUDIT_ROWS_PER_INSERT = 5_000;

/** Subqueries per statement of a range plan: its text and parameters stay bounded however many scopes an auditor has. */
const RANGES_PER_STATEMENT = 64;

/**
 * A scoped auditor's page with no id or q filter of its own: the OR of
 * scope expressions can use no index, and the planner walked the account's
 * newest events down until it had a page — 660 ms over a million events for
 * a policy holding 1 % of them, the whole account for one holding none. As
 * SQLite's rangePlan does, each scope becomes ranges of the (account,
 * resource_id, seq) index (one per resource kind for a subtree; the same
 * range once), each range a subquery asking for its own first page in the
 * requested order. A statement merges up to RANGES_PER_STATEMENT of them
 * (UNION drops an event two ranges both hold); an auditor of many policies
 * gets several statements, merged here.
 */
function rangePlanSqls(f: AuditFilter, kinds: string[]): { text: string; params: unknown[] }[] {
  const seen = new Set<string>();
  const ranges = f.scopes
    .flatMap((sc) => scopeRanges(sc, f.account, kinds))
    .filter((r) => {
      const key = JSON.stringify([r.from, r.to, r.endsWith ?? null]);
      return !seen.has(key) && seen.add(key);
    });
  const statements: { text: string; params: unknown[] }[] = [];
  for (let i = 0; i < ranges.length; i += RANGES_PER_STATEMENT) {
    const { params, p } = placeholders();
    const order = f.order === 'desc' ? 'DESC' : 'ASC';
    const limit = f.limit === undefined ? '' : ` LIMIT ${p(f.limit)}`;
    const arms = ranges.slice(i, i + RANGES_PER_STATEMENT).map((range) => {
      const where = filterConditions(f, p);
      if (isExactRange(range)) where.push(`resource_id = ${p(range.from)}`);
      else where.push(`resource_id >= ${p(range.from)} AND resource_id < ${p(range.to)}`);
      if (range.endsWith !== undefined) {
        const from = p(range.from);
        const suffix = p(range.endsWith);
        where.push(`length(resource_id) > length(${from}) + length(${suffix}) AND right(resource_id, length(${suffix})) = ${suffix}`);
      }
      return `(SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq ${order}${limit})`;
    });
    statements.push({ text: `SELECT * FROM (${arms.join(' UNION ')}) AS scoped ORDER BY seq ${order}${limit}`, params });
  }
  return statements;
}

/** Whether `f` is a scoped auditor's page that rangePlanSqls serves (an id or q filter drives its own index). */
const usesRangePlan = (f: AuditFilter) =>
  f.scopes.length > 0 && !f.scopes.some((s) => s.type === 'all') && f.resource === undefined && f.role === undefined && f.q === undefined;

/** The account's resource kinds, one index probe per kind (PostgreSQL has no skip scan for DISTINCT). */
async function kindsOf(db: PgConnection, account: string): Promise<string[]> {
  const rows = await db()<{ kind: string }[]>`
    WITH RECURSIVE k(kind) AS (
      (SELECT kind FROM resources WHERE account = ${account} ORDER BY kind LIMIT 1)
      UNION ALL
      SELECT (SELECT r.kind FROM resources r WHERE r.account = ${account} AND r.kind > k.kind ORDER BY r.kind LIMIT 1)
      FROM k WHERE k.kind IS NOT NULL
    )
    SELECT kind FROM k WHERE kind IS NOT NULL`;
  return [...new Set([...KNOWN_KINDS, ...rows.map((r) => r.kind)])];
}

/** The same exact, case-sensitive id comparisons as SQLite's scopeSql (no LIKE: `%` would swallow a ':'). */
function scopeSql(scope: AuditScope, p: (v: unknown) => string): string {
  switch (scope.type) {
    case 'all':
      return `account = ${p(scope.account)}`;
    case 'resource':
      return `resource_id = ${p(scope.resourceId)}`;
    case 'subtree': {
      // "acct:KIND:PATH/…" (KIND has no ':'), or the policy "acct:policy:PATH" itself.
      const prefix = p(`${scope.account}:`);
      const under = p(`${scope.path}/`);
      const policy = p(`${scope.account}:policy:${scope.path}`);
      return (
        `((left(resource_id, length(${prefix})) = ${prefix} AND ` +
        `substr(resource_id, length(${prefix}) + strpos(substr(resource_id, length(${prefix}) + 1), ':') + 1, length(${under})) = ${under}) ` +
        `OR resource_id = ${policy})`
      );
    }
    case 'users': {
      // Users defined in policy P are named "name@P-with-dashes" (Conjur's rule).
      const prefix = p(`${scope.account}:user:`);
      const suffix = p(`@${scope.suffix}`);
      return `(left(resource_id, length(${prefix})) = ${prefix} AND length(resource_id) > length(${prefix}) + length(${suffix}) AND right(resource_id, length(${suffix})) = ${suffix})`;
    }
  }
}

/** `?` placeholders as PostgreSQL's $1, $2, … (the texts hold no other `?`). */
function numbered(q: { sql: string; params: unknown[] }): { sql: string; params: unknown[] } {
  let i = 0;
  return { sql: q.sql.replace(/\?/g, () => `$${++i}`), params: q.params };
}

/**
 * One step of filling audit_search, in the caller's transaction (one of its own, without the write lock: see
 * ./index.ts): copies up to `max` events after its highest seq, in order; answers how many. One node at a time: a
 * node that finds another filling answers 0 (that node carries on).
 */
export async function fillSearchIndex(t: PgQueryable, max: number): Promise<number> {
  const [lock] = await t<{ got: boolean }[]>`SELECT pg_try_advisory_xact_lock(${SEARCH_FILL_LOCK_KEY}::int8) AS got`;
  if (!lock?.got) return 0;
  const added = await t.unsafe(
    `INSERT INTO audit_search (seq, message) SELECT seq, message FROM audit_events WHERE seq > ${SEARCH_UPTO} ORDER BY seq LIMIT $1`,
    [max],
  );
  return added.count;
}

/** Everything but the group commit and the search index's fill, which run in transactions of their own (see ./index.ts). */
export function createPgAuditStore(
  db: PgConnection,
  options: { qSampleFrom?: number; maxDrivenCandidates?: number } = {},
): Omit<AuditStore, 'appendChained' | 'indexSearchBatch'> {
  const qSampleFrom = options.qSampleFrom ?? Q_SAMPLE_FROM;
  const maxCandidates = options.maxDrivenCandidates ?? MAX_DRIVEN_CANDIDATES;
  const filteredSql = async (f: AuditFilter) => {
    if (f.q === undefined) return querySql(f);
    const upto = await searchedUpto(db);
    const trigrams = await rareTrigrams(db, f.q, upto, qSampleFrom);
    return querySql(f, upto, trigrams && { trigrams, maxCandidates });
  };
  return {
    async head() {
      const [row] = await db()<{ seq: number; hash: Buffer }[]>`SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`;
      return row;
    },
    async insert(row: AuditRow) {
      await db()`INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, version,
          client_ip, request_id, user_agent, reason, message, details, prev_hash, hash)
        VALUES (${row.seq}, ${row.time}, ${row.account}, ${row.action}, ${row.operation}, ${row.result}, ${row.role_id}, ${row.resource_id},
          ${row.version}, ${row.client_ip}, ${row.request_id}, ${row.user_agent}, ${row.reason}, ${row.message}, ${row.details},
          ${row.prev_hash}, ${row.hash})`;
    },
    async insertAll(rows: AuditRow[]) {
      // One statement text whatever the batch holds (the rows travel as one JSON document), so it is prepared once
      // per connection. A multi-row VALUES list changed with every batch size: sent unprepared, each one was parsed
      // and described in a round trip of its own before it could run (an eighth of a fetch-heavy node's time went
      // to writing those second messages).
      for (let i = 0; i < rows.length; i += AUDIT_ROWS_PER_INSERT) {
        const chunk = rows.slice(i, i + AUDIT_ROWS_PER_INSERT).map((r) => ({
          ...r,
          // int8 as text (seq and version may pass 2^31), hashes as hex.
          seq: String(r.seq),
          version: r.version === null ? null : String(r.version),
          prev_hash: r.prev_hash.toString('hex'),
          hash: r.hash.toString('hex'),
        }));
        await db()`INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, version,
            client_ip, request_id, user_agent, reason, message, details, prev_hash, hash)
          SELECT seq, time, account, action, operation, result, role_id, resource_id, version,
            client_ip, request_id, user_agent, reason, message, details, decode(prev_hash, 'hex'), decode(hash, 'hex')
          FROM jsonb_to_recordset(${JSON.stringify(chunk)}::text::jsonb) AS r(seq bigint, time text, account text, action text,
            operation text, result text, role_id text, resource_id text, version bigint, client_ip text, request_id text,
            user_agent text, reason text, message text, details text, prev_hash text, hash text)
          ORDER BY seq`;
      }
    },
    async page(afterSeq, limit) {
      return rowsOf(await db()<AuditRow[]>`SELECT * FROM audit_events WHERE seq > ${afterSeq} ORDER BY seq LIMIT ${limit}`);
    },
    async query(f) {
      if (usesRangePlan(f)) {
        const bySeq = new Map<number, AuditRow>();
        for (const { text, params } of rangePlanSqls(f, await kindsOf(db, f.account))) {
          // seq arrives as a number (client.ts parses int8).
          for (const row of rowsOf((await db().unsafe(text, params as never[])) as unknown as AuditRow[])) bySeq.set(row.seq, row);
        }
        const rows = [...bySeq.values()].sort((a, b) => (f.order === 'desc' ? b.seq - a.seq : a.seq - b.seq));
        return f.limit === undefined ? rows : rows.slice(0, f.limit);
      }
      const { text, params } = await filteredSql(f);
      return rowsOf((await db().unsafe(text, params as never[])) as unknown as AuditRow[]);
    },
    async countRollup(q) {
      const { sql, params } = numbered(rollupSql(q));
      const rows = (await db().unsafe(sql, params as never[])) as unknown as { start: string; action: string; result: 'success' | 'failure'; n: number | string }[];
      return rows.map((r) => ({ start: r.start, action: r.action, result: r.result, n: Number(r.n) }));
    },
    async countRange(q) {
      const { sql, params } = numbered(rangeCountSql(q));
      const rows = (await db().unsafe(sql, params as never[])) as unknown as { action: string; result: 'success' | 'failure'; n: number | string }[];
      return rows.map((r) => ({ action: r.action, result: r.result, n: Number(r.n) }));
    },
    async explainCounts(r, c) {
      const lines: string[] = [];
      for (const q of [numbered(rollupSql(r)), numbered(rangeCountSql(c))]) {
        const rows = (await db().unsafe(`EXPLAIN ${q.sql}`, q.params as never[])) as unknown as { 'QUERY PLAN': string }[];
        lines.push(...rows.map((row) => row['QUERY PLAN']));
      }
      return lines;
    },
    async explain(f) {
      const lines: string[] = [];
      for (const { text, params } of usesRangePlan(f) ? rangePlanSqls(f, await kindsOf(db, f.account)) : [await filteredSql(f)]) {
        const rows = (await db().unsafe(`EXPLAIN ${text}`, params as never[])) as unknown as { 'QUERY PLAN': string }[];
        lines.push(...rows.map((r) => r['QUERY PLAN']));
      }
      return lines;
    },
  };
}
