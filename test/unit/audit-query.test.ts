/**
 * Audit queries (issue 9, item 3): every filter and combination returns
 * exactly what a naive filter over the whole log returns — including q's
 * literal, ASCII-case-insensitive substring semantics through the trigram
 * index, time filters on a clock that went backwards, and cursor paging
 * across slices — every query is served by an index (no full scan of
 * audit_events in its plan, and the check fails when an index is dropped),
 * and a query that walks many events lets the event loop turn between slices.
 * Time filters become seq bounds through audit_time_state (migration 0008),
 * which must stay exact on logs whose clock went backwards: checked against
 * a naive reference after the migration and after every insert.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { MIGRATIONS_DIR, migrate, openDatabase, type Db } from '../../src/store/db.js';
import { openStore } from '../../src/store/index.js';
import { SEARCH_INDEX_STEP, createAuditStore, type AuditFilter, type AuditRow, type AuditScope } from '../../src/store/audit.js';
import { AuditReader } from '../../src/audit/reader.js';

const ACCOUNTS = ['a', 'b'];
const ROLES = ['r0', 'r1', 'r2'];
const RESOURCES = ['v0', 'v1', 'v2', 'v3'];
const ACTIONS = ['fetch', 'authn', 'policy'];
/** Not in seq order: the clock went backwards twice. */
const TIMES = ['2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z', '2026-01-03T00:00:00.000Z', '2026-01-04T00:00:00.000Z'];
/** Pieces of messages and of q: LIKE's wildcards and escape, FTS5 syntax and operators, case pairs, non-ASCII. */
const PIECES = ['a', 'A', 'b', 'B', 'é', 'É', 'ß', '%', '_', '\\', '"', "'", '*', '(', ')', ':', '^', '-', '+', ' ', 'AND', 'and', 'NEAR', 'OR', 'NOT', 'x', '💥', '{', '}', '.', '/'];

interface Ev {
  account: string;
  role: string;
  resource: string;
  action: string;
  result: 'success' | 'failure';
  time: string;
  message: string;
}

const messageArb = fc.array(fc.constantFrom(...PIECES), { maxLength: 10 }).map((p) => p.join(''));
const evArb: fc.Arbitrary<Ev> = fc.record({
  account: fc.constantFrom(...ACCOUNTS),
  role: fc.constantFrom(...ROLES),
  resource: fc.constantFrom(...RESOURCES),
  action: fc.constantFrom(...ACTIONS),
  result: fc.constantFrom('success' as const, 'failure' as const),
  time: fc.constantFrom(...TIMES),
  message: messageArb,
});

/** A time `minute` minutes into 2026-01-01 (times of the clock-walk logs). */
const minuteTime = (minute: number) => new Date(Date.UTC(2026, 0, 1) + minute * 60_000).toISOString();

/**
 * Clock steps: mostly forward or standing still (equal times), now and then
 * backwards (an NTP step, a VM restored) by up to 8 minutes.
 */
const stepArb = fc.oneof({ arbitrary: fc.integer({ min: 0, max: 2 }), weight: 8 }, { arbitrary: fc.integer({ min: -8, max: -1 }), weight: 1 });

/**
 * A log: either times drawn at random from TIMES (the clock jumps back and
 * forth all the time), or a clock walk that mostly goes forward and
 * sometimes backwards until some point — the case where time bounds narrow
 * the walk (the further back the last regression, the narrower).
 */
function logArb(minLength: number, maxLength: number): fc.Arbitrary<Ev[]> {
  const random = fc.array(evArb, { minLength, maxLength });
  // The clock only goes forward after a random point (anywhere, from the first event — never went back — to the last).
  const walked = fc.tuple(fc.array(fc.tuple(evArb, stepArb), { minLength, maxLength }), fc.nat()).map(([pairs, k]) => {
    const settled = k % (pairs.length + 1);
    let minute = 30;
    return pairs.map(([e, step], i) => {
      minute = Math.max(0, minute + (i >= settled ? Math.max(0, step) : step));
      return { ...e, time: minuteTime(minute) };
    });
  });
  return fc.oneof(random, walked);
}

/** Bounds for since/until: the log's own times, a minute either side of them, and TIMES (before and after every walk). */
function timePool(events: Ev[]): string[] {
  const near = events.flatMap((e) => {
    const t = Date.parse(e.time);
    return [e.time, new Date(t - 60_000).toISOString(), new Date(t + 60_000).toISOString()];
  });
  return [...new Set([...TIMES, ...near])];
}

/** A migrated database in memory (the schema is what matters here, not durability). */
function tmpDb(): Db {
  return openDatabase(':memory:');
}

function insertAll(db: Db, events: Ev[]): void {
  const store = createAuditStore(db);
  const hash = Buffer.alloc(32);
  db.transaction(() => {
    events.forEach((e, i) =>
      store.insert({
        seq: i + 1,
        time: e.time,
        account: e.account,
        action: e.action,
        operation: e.action,
        result: e.result,
        role_id: `${e.account}:host:${e.role}`,
        resource_id: `${e.account}:variable:${e.resource}`,
        version: null,
        client_ip: null,
        request_id: null,
        user_agent: null,
        reason: null,
        message: e.message,
        details: null,
        prev_hash: hash,
        hash,
      }),
    );
  })();
}

/** SQLite's LIKE ignores the case of ASCII letters only. */
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** The reference: the whole log filtered in JavaScript. */
function naive(events: Ev[], f: AuditFilter): number[] {
  const seqs = events
    .map((e, i) => ({ e, seq: i + 1, role: `${e.account}:host:${e.role}`, resource: `${e.account}:variable:${e.resource}` }))
    .filter(({ e, seq, role, resource }) => {
      if (e.account !== f.account) return false;
      if (!f.scopes.some((s) => s.type === 'all' || (s.type === 'resource' && s.resourceId === resource))) return false;
      if (f.resource !== undefined && resource !== f.resource) return false;
      if (f.role !== undefined && role !== f.role) return false;
      if (f.action !== undefined && e.action !== f.action) return false;
      if (f.result !== undefined && e.result !== f.result) return false;
      if (f.since !== undefined && !(e.time >= f.since)) return false;
      if (f.until !== undefined && !(e.time < f.until)) return false;
      if (f.q !== undefined && !asciiLower(e.message).includes(asciiLower(f.q))) return false;
      if (f.cursor !== undefined && (f.order === 'desc' ? seq >= f.cursor : seq <= f.cursor)) return false;
      return true;
    })
    .map((x) => x.seq);
  if (f.order === 'desc') seqs.reverse();
  return f.limit === undefined ? seqs : seqs.slice(0, f.limit);
}

/** Absent two times in three, so that combinations stay small enough to match something. */
const opt = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 2 }, { arbitrary: arb, weight: 1 });

/** A q: random pieces, or a piece of a logged message with its ASCII case flipped (so that it matches). */
function qArb(events: Ev[]): fc.Arbitrary<string> {
  const random = fc.array(fc.constantFrom(...PIECES), { minLength: 1, maxLength: 5 }).map((p) => p.join(''));
  const messages = events.map((e) => e.message).filter((m) => m.length > 0);
  if (messages.length === 0) return random;
  const fromLog = fc
    .tuple(fc.constantFrom(...messages), fc.nat(), fc.nat(), fc.boolean())
    .map(([m, a, b, flip]) => {
      const cps = [...m];
      const i = a % cps.length;
      const s = cps.slice(i, i + 1 + (b % (cps.length - i))).join('');
      return flip ? s.replace(/[a-zA-Z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())) : s;
    });
  return fc.oneof({ arbitrary: random, weight: 1 }, { arbitrary: fromLog, weight: 3 });
}

function filterArb(events: Ev[]): fc.Arbitrary<AuditFilter> {
  return fc
    .record({
      account: fc.constantFrom(...ACCOUNTS),
      scoped: opt(fc.uniqueArray(fc.constantFrom(...RESOURCES), { minLength: 1, maxLength: 3 })),
      resource: opt(fc.constantFrom(...RESOURCES)),
      role: opt(fc.constantFrom(...ROLES)),
      action: opt(fc.constantFrom(...ACTIONS)),
      result: opt(fc.constantFrom('success' as const, 'failure' as const)),
      since: opt(fc.constantFrom(...timePool(events))),
      until: opt(fc.constantFrom(...timePool(events))),
      q: opt(qArb(events)),
      cursor: opt(fc.integer({ min: 1, max: events.length + 1 })),
      order: fc.constantFrom('asc' as const, 'desc' as const),
      limit: opt(fc.integer({ min: 1, max: 12 })),
    })
    .map(({ account, scoped, resource, role, ...rest }) => ({
      ...rest,
      account,
      scopes: scoped === undefined ? [{ type: 'all', account } as AuditScope] : scoped.map((r) => ({ type: 'resource', resourceId: `${account}:variable:${r}` }) as AuditScope),
      resource: resource === undefined ? undefined : `${account}:variable:${resource}`,
      role: role === undefined ? undefined : `${account}:host:${role}`,
    }));
}

const seqsOf = (rows: AuditRow[]) => rows.map((r) => r.seq);
/** [first slice, largest slice]: fixed tiny slices, slices that grow (1 → 4 → 7, 2 → 8 → 32 → 50), the defaults. */
const SLICES: [number, number][] = [[1, 1], [2, 2], [3, 3], [1, 7], [2, 50], [256, 10_000]];

describe('audit query results equal a naive filter of the whole log', () => {
  it('for random logs, filters, combinations, cursors, orders, limits and slice sizes', () => {
    let checks = 0;
    let hits = 0;
    let shortQHits = 0;
    fc.assert(
      fc.property(
        logArb(5, 60).chain((events) =>
          fc.tuple(fc.constant(events), fc.array(filterArb(events), { minLength: 1, maxLength: 8 }), fc.constantFrom(...SLICES)),
        ),
        ([events, filters, [firstSlice, scanSlice]]) => {
          const db = tmpDb();
          try {
            insertAll(db, events);
            const store = createAuditStore(db, { firstSlice, scanSlice });
            for (const f of filters) {
              const expected = naive(events, f);
              expect(seqsOf(store.query(f)), JSON.stringify(f)).toEqual(expected);
              checks++;
              if (expected.length > 0) hits++;
              if (f.q !== undefined && [...f.q].length < 3 && expected.length > 0) shortQHits++;
            }
          } finally {
            db.close();
          }
        },
      ),
      { numRuns: 150 },
    );
    // The property is only as strong as its cases: most must find something.
    expect(hits / checks).toBeGreaterThan(0.25);
    expect(shortQHits).toBeGreaterThan(0);
  });

  it('cursor paging adds up to the whole filtered list, without gaps or repeats, in both orders and any slice size', () => {
    fc.assert(
      fc.property(
        logArb(1, 60).chain((events) =>
          fc.tuple(fc.constant(events), filterArb(events), fc.integer({ min: 1, max: 5 }), fc.constantFrom(...SLICES)),
        ),
        ([events, f0, limit, [firstSlice, scanSlice]]) => {
          const db = tmpDb();
          try {
            insertAll(db, events);
            const store = createAuditStore(db, { firstSlice, scanSlice });
            const f = { ...f0, cursor: undefined };
            const all = naive(events, { ...f, limit: undefined });
            const paged: number[] = [];
            let cursor: number | undefined;
            for (let pages = 0; pages <= all.length + 1; pages++) {
              const rows = store.query({ ...f, cursor, limit });
              paged.push(...seqsOf(rows));
              if (rows.length < limit) break;
              cursor = rows[rows.length - 1]!.seq;
            }
            expect(paged).toEqual(all);
          } finally {
            db.close();
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('takes q literally: LIKE wildcards, its escape, FTS5 syntax and operators, case only for ASCII', () => {
    const messages = [
      'tried to fetch a:variable:x',
      '100% done_now',
      'back\\slash',
      'say "hi" * (x): ^start -minus',
      'cats AND dogs NEAR here',
      'ÉCOLE',
      'école',
      'TRIED TO FETCH',
    ];
    const events: Ev[] = messages.map((message) => ({ account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: 'success', time: TIMES[0]!, message }));
    const db = tmpDb();
    insertAll(db, events);
    const store = createAuditStore(db);
    const q = (text: string) => seqsOf(store.query({ account: 'a', scopes: [{ type: 'all', account: 'a' }], q: text, order: 'asc' }));
    expect(q('tried to')).toEqual([1, 8]);
    expect(q('Tried%Fetch')).toEqual([]);
    expect(q('0% d')).toEqual([2]);
    expect(q('e_n')).toEqual([2]);
    expect(q('done now')).toEqual([]);
    expect(q('k\\s')).toEqual([3]);
    expect(q('"hi"')).toEqual([4]);
    expect(q('* (x): ^')).toEqual([4]);
    expect(q('-minus')).toEqual([4]);
    expect(q('AND dogs')).toEqual([5]);
    expect(q('cats NEAR')).toEqual([]);
    expect(q('NEAR')).toEqual([5]);
    expect(q('OR')).toEqual([]); // two characters: answered by a sliced walk in the store (the API refuses it)
    expect(q('ÉCO')).toEqual([6]); // 'É' ≠ 'é' for LIKE, although the trigram index folds them
    expect(q('éCO')).toEqual([7]);
    expect(q('COLE')).toEqual([6, 7]);
    expect(q('école')).toEqual([7]);
    expect(q('ÉCOLE')).toEqual([6]);
    db.close();
  });
});

/** Each query shape, as the HTTP API builds it. */
function shapes(account: string): [string, Partial<AuditFilter>][] {
  const base = { order: 'desc' as const, limit: 100 };
  return [
    ['no filter', base],
    ['resource', { ...base, resource: `${account}:variable:v1` }],
    ['role', { ...base, role: `${account}:host:r1` }],
    ['action', { ...base, action: 'authn' }],
    ['result', { ...base, result: 'failure' }],
    ['since', { ...base, since: TIMES[1] }],
    ['until', { ...base, until: TIMES[2] }],
    ['since + until', { ...base, since: TIMES[1], until: TIMES[2] }],
    ['q', { ...base, q: 'tried to' }],
    ['cursor, asc', { ...base, order: 'asc', cursor: 5 }],
    ['cursor, desc', { ...base, cursor: 5 }],
    ['role + result', { ...base, role: `${account}:host:r1`, result: 'failure' }],
    ['action + result', { ...base, action: 'authn', result: 'failure' }],
    ['action + result + cursor', { ...base, action: 'fetch', result: 'failure', cursor: 9 }],
    ['action, asc', { ...base, order: 'asc', action: 'fetch' }],
    ['action + until', { ...base, action: 'fetch', until: TIMES[2] }],
    ['action + since + until, asc', { ...base, order: 'asc', action: 'fetch', since: TIMES[0], until: TIMES[3] }],
    ['result + until + cursor', { ...base, result: 'success', until: TIMES[3], cursor: 300 }],
    ['q + until', { ...base, q: 'tried', until: TIMES[3] }],
    ['since after every event', { ...base, since: '2027-01-01T00:00:00.000Z' }],
    ['until before every event', { ...base, until: '2025-01-01T00:00:00.000Z' }],
    ['resource + q', { ...base, resource: `${account}:variable:v1`, q: 'tried' }],
    ['q + result + since, asc', { ...base, order: 'asc', q: 'tried', result: 'success', since: TIMES[0] }],
    ['every filter', { ...base, resource: `${account}:variable:v1`, role: `${account}:host:r1`, action: 'fetch', result: 'failure', since: TIMES[0], until: TIMES[3], q: 'tried', cursor: 40 }],
  ];
}

const SCOPES: [string, (account: string) => AuditScope[]][] = [
  ['admin (whole account)', (account) => [{ type: 'all', account }]],
  [
    'auditor (policy subtree, its users, one resource)',
    (account) => [
      { type: 'subtree', account, path: 'ci' },
      { type: 'users', account, suffix: 'ci' },
      { type: 'resource', resourceId: `${account}:variable:v2` },
    ],
  ],
];

/** Plan lines that read audit_events (or an index of it) from end to end. */
const fullScans = (plan: string[]) => plan.filter((l) => /^SCAN (audit_events|e)\b/.test(l) || (/^SCAN audit_fts\b/.test(l) && !/INDEX \d+:M/.test(l)));

describe('every audit query is served by an index', () => {
  const db = tmpDb();
  // Enough events that SQLite has something to choose between.
  insertAll(
    db,
    Array.from({ length: 500 }, (_, i) => ({
      account: ACCOUNTS[i % 2]!,
      role: ROLES[i % 3]!,
      resource: RESOURCES[i % 4]!,
      action: ACTIONS[i % 3]!,
      result: i % 7 ? ('success' as const) : ('failure' as const),
      time: TIMES[i % 4]!,
      message: `tried to fetch ${i}`,
    })),
  );
  const store = createAuditStore(db, { scanSlice: 50 });

  for (const [scopeName, scopes] of SCOPES) {
    it.each(shapes('a'))(`${scopeName}: %s`, (_name, shape) => {
      const f: AuditFilter = { order: 'desc', ...shape, account: 'a', scopes: scopes('a') };
      const plan = store.explain(f);
      expect(plan.length).toBeGreaterThan(0);
      expect(fullScans(plan), plan.join('\n')).toEqual([]);
      expect(plan.some((l) => /^SEARCH|VIRTUAL TABLE INDEX \d+:M/.test(l)), plan.join('\n')).toBe(true);
    });
  }

  it('a wide time range (more than one slice of events) is walked through another index, not scanned', () => {
    const f: AuditFilter = { account: 'a', scopes: [{ type: 'all', account: 'a' }], since: TIMES[0], order: 'desc', limit: 100 };
    const plan = store.explain(f);
    expect(plan.join('\n')).toContain('audit_events_account ');
    expect(fullScans(plan)).toEqual([]);
  });

  it.each([
    ['audit_events_account_result', { result: 'failure' as const }],
    ['audit_events_account_time', { since: TIMES[3] }],
    ['audit_events_account_action_result', { action: 'authn' }],
    ['audit_events_account_action_result', { action: 'authn', result: 'failure' as const }],
    ['audit_events_account_role', { role: 'a:host:r1' }],
    ['audit_events_account_resource', { resource: 'a:variable:v1' }],
    ['audit_events_account', {}],
  ])('the check fails when %s is dropped (%j)', (index, shape) => {
    const other = tmpDb();
    insertAll(other, [{ account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: 'success', time: TIMES[0]!, message: 'm' }]);
    other.exec(`DROP INDEX ${index}`);
    const f: AuditFilter = { account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'desc', limit: 100, ...shape };
    let failed: boolean;
    try {
      failed = fullScans(createAuditStore(other).explain(f)).length > 0;
    } catch (err) {
      failed = /no such index/.test(String(err));
    }
    expect(failed).toBe(true);
    other.close();
  });

  it('action alone merges its two result ranges of one index (both read in seq order: no sort, no scan); action + result is one range', () => {
    for (const order of ['desc', 'asc'] as const) {
      const alone = store.explain({ account: 'a', scopes: [{ type: 'all', account: 'a' }], action: 'authn', order, limit: 100 });
      const ranges = alone.filter((l) => l.includes('audit_events_account_action_result (account=? AND action=? AND result=? AND seq'));
      // Two slice bounds (one per range) and the two sides of the merge.
      expect(ranges, alone.join('\n')).toHaveLength(4);
      expect(alone).toContain('MERGE (UNION ALL)');
      expect(alone.filter((l) => /TEMP B-TREE/.test(l)), alone.join('\n')).toEqual([]);
      expect(fullScans(alone)).toEqual([]);
      const both = store.explain({ account: 'a', scopes: [{ type: 'all', account: 'a' }], action: 'authn', result: 'failure', order, limit: 100 });
      expect(both.filter((l) => l.includes('audit_events_account_action_result (account=? AND action=? AND result=? AND seq')), both.join('\n')).toHaveLength(2);
      expect(both.filter((l) => /TEMP B-TREE|MERGE/.test(l))).toEqual([]);
    }
  });

  it('time bounds are found in the time index (the last event below until, the first at or above since) and the state row by its key', () => {
    const plan = store.explain({ account: 'a', scopes: [{ type: 'all', account: 'a' }], since: TIMES[0], until: TIMES[2], order: 'desc', limit: 100 });
    expect(plan).toContain('SEARCH audit_time_state USING INTEGER PRIMARY KEY (rowid=?)');
    expect(plan).toContain('SEARCH audit_events USING COVERING INDEX audit_events_account_time (account=? AND time<?)');
    expect(plan).toContain('SEARCH audit_events USING COVERING INDEX audit_events_account_time (account=? AND time>?)');
    expect(fullScans(plan)).toEqual([]);
  });

  it('a q with a time filter looks its candidates up by seq, not through the time index', () => {
    const plan = store.explain({ account: 'a', scopes: [{ type: 'all', account: 'a' }], q: 'tried', since: TIMES[0], order: 'desc', limit: 100 });
    expect(plan).toContain('SEARCH audit_events USING INTEGER PRIMARY KEY (rowid=?)');
    expect(plan.filter((l) => /TEMP B-TREE/.test(l))).toEqual([]);
  });

  it('the check fails when the full-text index is dropped', () => {
    const other = tmpDb();
    other.exec('DROP TABLE audit_fts;');
    const f: AuditFilter = { account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'desc', limit: 100, q: 'tried' };
    expect(() => createAuditStore(other).explain(f)).toThrow(/no such table: audit_fts/);
    other.close();
  });
});

/** Inserts without the store (whose statements need the latest schema): for a database at an older migration. */
function rawInsertAll(db: Db, events: Ev[]): void {
  const st = db.prepare(
    'INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, message, prev_hash, hash) ' +
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, x'00', x'00')",
  );
  db.transaction(() => events.forEach((e, i) => st.run(i + 1, e.time, e.account, e.action, e.action, e.result, `${e.account}:host:${e.role}`, `${e.account}:variable:${e.resource}`, e.message)))();
}

/** audit_time_state from its definition: the last event older than some event before it, and the largest time up to it. */
function timeStateOf(times: string[]): { regression_upto: number; max_time: string } {
  let r = 0;
  times.forEach((t, i) => {
    if (times.slice(0, i).some((u) => u > t)) r = i + 1;
  });
  const max_time = times.slice(0, r).reduce((m, t) => (t > m ? t : m), '');
  return { regression_upto: r, max_time };
}

const timeState = (db: Db) => db.prepare('SELECT regression_upto, max_time FROM audit_time_state WHERE id = 1').get();

/** The steps a query takes: one per slice (querySlices yields between slices). */
function steps(store: ReturnType<typeof createAuditStore>, f: AuditFilter): { rows: AuditRow[]; steps: number } {
  const gen = store.querySlices(f);
  for (let n = 1; ; n++) {
    const r = gen.next();
    if (r.done) return { rows: r.value, steps: n };
  }
}

describe('time filters as seq bounds (audit_time_state, migration 0008)', () => {
  /** A database migrated up to 0007 only (before audit_time_state). */
  function dbAt0007(): Db {
    const partial = join(tempDir('coffer-auditq-'), 'migrations');
    mkdirSync(partial);
    for (const f of readdirSync(MIGRATIONS_DIR).filter((n) => /^000[1-7]_/.test(n))) copyFileSync(join(MIGRATIONS_DIR, f), join(partial, f));
    return openDatabase(':memory:', { migrationsDir: partial });
  }

  it('the migration computes the state over events already logged, whatever their clock did', () => {
    fc.assert(
      fc.property(logArb(0, 60), (events) => {
        const db = dbAt0007();
        try {
          rawInsertAll(db, events);
          migrate(db, MIGRATIONS_DIR);
          expect(timeState(db)).toEqual(timeStateOf(events.map((e) => e.time)));
        } finally {
          db.close();
        }
      }),
      { numRuns: 100 },
    );
  });

  it('the trigger keeps the state right after every insert (and agrees with the migration)', () => {
    fc.assert(
      fc.property(logArb(0, 40), fc.nat(), (events, cut) => {
        // Some events before the migration, the rest through the trigger.
        const k = events.length === 0 ? 0 : cut % (events.length + 1);
        const db = dbAt0007();
        try {
          rawInsertAll(db, events.slice(0, k));
          migrate(db, MIGRATIONS_DIR);
          const store = createAuditStore(db);
          const hash = Buffer.alloc(32);
          events.slice(k).forEach((e, j) => {
            const seq = k + j + 1;
            store.insert({ seq, time: e.time, account: e.account, action: e.action, operation: e.action, result: e.result, role_id: null, resource_id: null, version: null, client_ip: null, request_id: null, user_agent: null, reason: null, message: e.message, details: null, prev_hash: hash, hash });
            expect(timeState(db), `after seq ${seq}`).toEqual(timeStateOf(events.slice(0, seq).map((x) => x.time)));
          });
        } finally {
          db.close();
        }
      }),
      { numRuns: 100 },
    );
  });

  it('the trigger: equal times are no regression, an older time is, and a missing previous event makes it read the earlier ones', () => {
    const db = tmpDb();
    const ins = db.prepare("INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES (?, ?, 'a', 'fetch', 'fetch', 'success', 'm', x'00', x'00')");
    expect(timeState(db)).toEqual({ regression_upto: 0, max_time: '' });
    ins.run(1, minuteTime(5));
    ins.run(2, minuteTime(5));
    expect(timeState(db)).toEqual({ regression_upto: 0, max_time: '' });
    ins.run(3, minuteTime(3));
    expect(timeState(db)).toEqual({ regression_upto: 3, max_time: minuteTime(5) });
    ins.run(4, minuteTime(4)); // still older than seq 1 and 2: the previous event is not past the regression, max_time counts
    expect(timeState(db)).toEqual({ regression_upto: 4, max_time: minuteTime(5) });
    ins.run(5, minuteTime(6));
    ins.run(6, minuteTime(6));
    expect(timeState(db)).toEqual({ regression_upto: 4, max_time: minuteTime(5) });
    ins.run(7, minuteTime(5)); // the previous event is past the regression: its own time is the largest so far
    expect(timeState(db)).toEqual({ regression_upto: 7, max_time: minuteTime(6) });
    ins.run(9, minuteTime(5)); // no seq 8 (the app never does this): the earlier events are read
    expect(timeState(db)).toEqual({ regression_upto: 9, max_time: minuteTime(6) });
    db.close();
  });

  it('the window never cuts off an event the time filters match, and is exact when the clock never went backwards', () => {
    let narrowed = 0;
    let exact = 0;
    fc.assert(
      fc.property(
        logArb(1, 80).chain((events) =>
          fc.tuple(fc.constant(events), fc.array(fc.record({ account: fc.constantFrom(...ACCOUNTS), since: fc.option(fc.constantFrom(...timePool(events)), { nil: undefined }), until: fc.option(fc.constantFrom(...timePool(events)), { nil: undefined }) }), { minLength: 1, maxLength: 10 })),
        ),
        ([events, bounds]) => {
          const db = tmpDb();
          try {
            insertAll(db, events);
            const store = createAuditStore(db);
            const monotone = (timeState(db) as { regression_upto: number }).regression_upto === 0;
            for (const b of bounds) {
              const f: AuditFilter = { ...b, scopes: [{ type: 'all', account: b.account }], order: 'asc' };
              const matching = naive(events, f);
              const w = store.timeWindow(f);
              if (w === undefined) {
                expect(matching, JSON.stringify(f)).toEqual([]);
                continue;
              }
              for (const seq of matching) expect(seq > w.after && seq < w.before, `${seq} in ${JSON.stringify(w)} for ${JSON.stringify(f)}`).toBe(true);
              if (events.some((e, i) => e.account === b.account && !(i + 1 > w.after && i + 1 < w.before))) narrowed++;
              if (monotone && (b.since !== undefined || b.until !== undefined)) {
                // No regression: each bound is the account's first / last event on the right side of it.
                if (b.until !== undefined) expect(w.before - 1).toBe(naive(events, { ...f, since: undefined }).at(-1));
                if (b.since !== undefined) expect(w.after + 1).toBe(naive(events, { ...f, until: undefined })[0]);
                exact++;
              }
            }
          } finally {
            db.close();
          }
        },
      ),
      { numRuns: 200 },
    );
    // The window does narrow walks, and the monotone logs are checked often enough to mean something.
    expect(narrowed).toBeGreaterThan(40);
    expect(exact).toBeGreaterThan(50);
  });

  /** 3,000 events of account a, a minute apart, all authentications succeeding: one more clock regression when asked. */
  function bigLog(regressionAt?: number): Ev[] {
    return Array.from({ length: 3000 }, (_, i) => ({
      account: 'a',
      role: 'r0',
      resource: 'v0',
      action: i % 3 ? 'fetch' : 'authn',
      result: 'success' as const,
      time: minuteTime(i + 1 === regressionAt ? 0 : i + 1),
      message: `event ${i + 1}`,
    }));
  }
  const all: AuditScope[] = [{ type: 'all', account: 'a' }];

  it('an until far in the past starts the walk at its bound, not at the newest event (few slices)', () => {
    for (const [regressionAt, most] of [[undefined, 1], [100, 3]] as const) {
      const events = bigLog(regressionAt);
      const db = tmpDb();
      insertAll(db, events);
      const store = createAuditStore(db, { firstSlice: 10, scanSlice: 40 });
      for (const f of [
        { account: 'a', scopes: all, until: minuteTime(20), order: 'desc', limit: 5 },
        { account: 'a', scopes: all, until: minuteTime(20), action: 'fetch', order: 'desc', limit: 5 },
        { account: 'a', scopes: all, since: minuteTime(2990), order: 'asc', limit: 5 },
        { account: 'a', scopes: all, since: minuteTime(2990), result: 'success', order: 'asc', limit: 5 },
      ] as AuditFilter[]) {
        const r = steps(store, f);
        expect(seqsOf(r.rows), JSON.stringify(f)).toEqual(naive(events, f));
        // Without the bounds: ~75 slices of 40 down (or up) to the range. With an old regression (seq 100,
        // time 0), the walk starts there: 80 events, slices of 10 and 40.
        expect(r.steps, JSON.stringify(f)).toBeLessThanOrEqual(most);
      }
      db.close();
    }
  });

  it('action alone: a slice reads at most one slice of each result range (it ends at the nearer of their bounds)', () => {
    // 1,000 authentications, 1 in 33 failing: the failure range's 10th entry lies ~330 successes away.
    const events = bigLog().map((e, i) => (e.action === 'authn' && (i / 3) % 33 === 0 ? { ...e, result: 'failure' as const } : e));
    const db = tmpDb();
    insertAll(db, events);
    const store = createAuditStore(db, { firstSlice: 10, scanSlice: 10 });
    // q of 2 characters: no full-text search, the action's ranges are walked and q checked per event; nothing matches.
    for (const order of ['desc', 'asc'] as const) {
      const r = steps(store, { account: 'a', scopes: all, action: 'authn', q: 'zz', order, limit: 100 });
      expect(r.rows).toEqual([]);
      expect(r.steps).toBeGreaterThanOrEqual(1000 / (2 * 10));
    }
    db.close();
  });

  it('action + result with no match is one empty index range (one slice), and action alone merges its ranges in order', () => {
    const events = bigLog();
    const db = tmpDb();
    insertAll(db, events);
    const store = createAuditStore(db, { firstSlice: 10, scanSlice: 10 });
    const none = steps(store, { account: 'a', scopes: all, action: 'authn', result: 'failure', order: 'desc', limit: 100 });
    expect(none).toEqual({ rows: [], steps: 1 });
    for (const order of ['desc', 'asc'] as const) {
      const f: AuditFilter = { account: 'a', scopes: all, action: 'authn', order, limit: 7 };
      expect(seqsOf(store.query(f))).toEqual(naive(events, f));
    }
    db.close();
  });
});

describe('the full-text index', () => {
  it('is filled off the write path, up to the head before a q query, one bounded step at a time', () => {
    const db = tmpDb();
    const rows = Array.from({ length: SEARCH_INDEX_STEP * 2 + 7 }, (_, i) => ({ account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: 'success' as const, time: TIMES[0]!, message: i % 2 ? `odd event ${i}` : `even event ${i}` }));
    insertAll(db, rows);
    const store = createAuditStore(db);
    const indexed = () => (db.prepare("SELECT count(*) AS n FROM audit_fts WHERE audit_fts MATCH '\"event\"'").get() as { n: number }).n;
    expect(indexed()).toBe(0); // writing an event does not index it
    const f: AuditFilter = { account: 'a', scopes: [{ type: 'all', account: 'a' }], q: 'odd event', order: 'desc' };
    const steps = store.querySlices(f);
    expect(steps.next().done).toBe(false);
    expect(indexed()).toBe(SEARCH_INDEX_STEP); // one bounded step, then the caller may yield
    let r = steps.next();
    while (!r.done) r = steps.next();
    expect(indexed()).toBe(rows.length);
    expect(r.value).toHaveLength((rows.length - 1) / 2);
    expect(store.indexSearchBatch(SEARCH_INDEX_STEP)).toBe(0);
    db.close();
  });

  it("serves a q past the first walk from the rarest of q's trigrams (or the phrase), checking the rest by LIKE", () => {
    const db = tmpDb();
    // 1,400 events: "common" in every one, "needle" in 3 (far from the newest), "Rare Needle Zq" in 1;
    // 'ommon nee' has trigrams of 1,400 entries (over the first bound) and of 3.
    const rows = Array.from({ length: 1_400 }, (_, i) => ({
      account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: 'success' as const, time: TIMES[0]!,
      message: i === 5 ? 'common rare needle zq' : [3, 7, 11].includes(i) ? `common needle ${i}` : `common hay ${i}`,
    }));
    insertAll(db, rows);
    const store = createAuditStore(db, { firstSlice: 2, scanSlice: 2 });
    const all = [{ type: 'all', account: 'a' } as AuditScope];
    for (const order of ['desc', 'asc'] as const) {
      for (const q of ['needle', 'NEEDLE 1', 'rare NEEDLE', 'common needle 7', 'ommon nee', 'needle zq', 'hay 139', 'no such']) {
        const f: AuditFilter = { account: 'a', scopes: all, q, order, limit: 100 };
        expect(seqsOf(store.query(f)), q).toEqual(naive(rows, f));
      }
    }
    // Every trigram over both bounds: the phrase serves (and the result is still exact).
    const many = Array.from({ length: 10_050 }, (_, i) => ({ account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: 'success' as const, time: TIMES[0]!, message: i === 9 ? 'abcd' : 'abc bcd' }));
    const db2 = tmpDb();
    insertAll(db2, many);
    const store2 = createAuditStore(db2, { firstSlice: 2, scanSlice: 2 });
    expect(seqsOf(store2.query({ account: 'a', scopes: all, q: 'abcd', order: 'desc', limit: 10 }))).toEqual([10]);
    db.close();
    db2.close();
  });

  it('a rolled-back event is never indexed', () => {
    const db = tmpDb();
    insertAll(db, [{ account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: 'success', time: TIMES[0]!, message: 'kept event' }]);
    const store = createAuditStore(db);
    const row = store.query({ account: 'a', scopes: [{ type: 'all', account: 'a' }], order: 'desc' })[0]!;
    expect(() =>
      db.transaction(() => {
        store.insert({ ...row, seq: 2, message: 'rolled back event' });
        throw new Error('abort');
      })(),
    ).toThrow('abort');
    expect(store.indexSearchBatch(SEARCH_INDEX_STEP)).toBe(1);
    expect(db.prepare("SELECT rowid FROM audit_fts WHERE audit_fts MATCH '\"event\"'").all()).toEqual([{ rowid: 1 }]);
    db.close();
  });

  it('is backfilled by the migration for events logged before it', () => {
    const dir = tempDir('coffer-auditq-');
    // A migrations directory that stops before 0006, then the real one.
    const partial = join(dir, 'migrations');
    const all = join(process.cwd(), 'migrations');
    mkdirSync(partial);
    for (const f of readdirSync(all).filter((n) => /^000[1-5]_/.test(n))) copyFileSync(join(all, f), join(partial, f));
    const path = join(dir, 'c.db');
    const old = openDatabase(path, { migrationsDir: partial });
    old.prepare(
      "INSERT INTO audit_events (seq, time, account, action, operation, result, message, prev_hash, hash) VALUES (1, ?, 'a', 'fetch', 'fetch', 'success', 'Logged Before The Index', x'00', x'00')",
    ).run(TIMES[0]);
    old.close();
    const db = openDatabase(path);
    const store = createAuditStore(db);
    expect(db.prepare("SELECT rowid FROM audit_fts WHERE audit_fts MATCH '\"before the\"'").all()).toEqual([{ rowid: 1 }]);
    expect(seqsOf(store.query({ account: 'a', scopes: [{ type: 'all', account: 'a' }], q: 'before the', order: 'desc' }))).toEqual([1]);
    expect(() => db.prepare('DELETE FROM audit_events').run()).toThrow(/append-only/);
    db.close();
  });
});

describe('a query that walks many events', () => {
  it('lets the event loop turn between slices (the reader awaits between them)', async () => {
    const dir = tempDir('coffer-auditq-');
    // The SQLite backend's audit.query runs one slice per turn of the event loop.
    const store = openStore(join(dir, 'c.db'), { audit: { firstSlice: 20, scanSlice: 20 } });
    insertAll(
      store.db,
      Array.from({ length: 300 }, (_, i) => ({ account: 'a', role: 'r0', resource: 'v0', action: 'fetch', result: i === 0 ? ('failure' as const) : ('success' as const), time: TIMES[0]!, message: `m${i}` })),
    );
    const reader = new AuditReader({ store: store.audit, graph: store.graph, authorizer: { can: async () => true, canOn: async () => true, allRoles: async () => new Set() } as never });
    // role + result: the role's index is walked and result checked per event, 300 events in slices of 20.
    const turns: boolean[] = [];
    let done = false;
    const tick = () => {
      turns.push(done);
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    const rows = await reader.query('a', 'a:user:admin', { role: 'a:host:r0', result: 'failure', order: 'desc', limit: 10 });
    done = true;
    expect(seqsOf(rows)).toEqual([1]);
    // The other callback ran at least once per slice boundary while the query was still running.
    expect(turns.filter((t) => !t).length).toBeGreaterThanOrEqual(300 / 20 - 1);
    await store.close();
  });
});
