/** The append-only audit_events table. */
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';
import { KNOWN_KINDS } from '../ids.js';

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

export function createAuditStore(db: Db) {
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
   * A page for an auditor scoped to resources and policies. One OR over
   * expressions cannot use an index, and a policy with few events made SQLite
   * walk the whole account (600 ms over a million events). Instead each
   * scope becomes index ranges on (account, resource_id, seq) — one per
   * resource kind for a subtree — each asked for its first `limit` rows in
   * the requested order, and the pages are merged.
   */
  function scopedPage(f: AuditFilter): AuditRow[] {
    const kinds = [...new Set([...KNOWN_KINDS, ...kindsOf.all(f.account).map((r) => r.kind)])];
    const bySeq = new Map<number, AuditRow>();
    for (const range of f.scopes.flatMap((sc) => scopeRanges(sc, f.account, kinds))) {
      const { sql, params } = buildQuery(f, range);
      for (const row of prepared(sql).all(...params) as AuditRow[]) bySeq.set(row.seq, row);
    }
    const rows = [...bySeq.values()].sort((a, b) => (f.order === 'desc' ? b.seq - a.seq : a.seq - b.seq));
    return rows.slice(0, f.limit);
  }

  return {
    head: () => head.get(),
    insert: (row: AuditRow) => void insert.run(row),
    /** Iterates events in sequence order, starting after `afterSeq`. */
    iterate: (afterSeq = 0) => walk.iterate(afterSeq) as IterableIterator<AuditRow>,
    /** Up to `limit` events after `afterSeq`, in sequence order (a walk that can pause between pages). */
    page: (afterSeq: number, limit: number): AuditRow[] => page.all(afterSeq, limit),
    query(f: AuditFilter): AuditRow[] {
      if (f.limit !== undefined && f.scopes.length > 0 && !f.scopes.some((sc) => sc.type === 'all')) return scopedPage(f);
      const { sql, params } = buildQuery(f);
      return prepared(sql).all(...params) as AuditRow[];
    },
    iterateQuery(f: AuditFilter): IterableIterator<AuditRow> {
      const { sql, params } = buildQuery(f);
      // Its own statement: an export may still be iterating when another request runs the same query.
      return db.prepare(sql).iterate(...params) as IterableIterator<AuditRow>;
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

function buildQuery(f: AuditFilter, range?: IdRange): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  where.push('account = ?');
  params.push(f.account);
  if (range) {
    where.push('resource_id >= ? AND resource_id < ?');
    params.push(range.from, range.to);
    if (range.extra) {
      where.push(range.extra.sql);
      params.push(...range.extra.params);
    }
  } else if (f.scopes.length === 0) where.push('0');
  else if (!f.scopes.some((s) => s.type === 'all')) {
    where.push(`(${f.scopes.map((s) => scopeSql(s, params)).join(' OR ')})`);
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
  if (f.cursor !== undefined) {
    where.push(f.order === 'desc' ? 'seq < ?' : 'seq > ?');
    params.push(f.cursor);
  }
  // A range walks its own index (and sorts its rows) rather than the whole account in seq order.
  const from = range ? 'audit_events INDEXED BY audit_events_account_resource' : 'audit_events';
  let sql = `SELECT * FROM ${from} WHERE ${where.join(' AND ')} ORDER BY seq ${f.order === 'desc' ? 'DESC' : 'ASC'}`;
  if (f.limit !== undefined) {
    sql += ' LIMIT ?';
    params.push(f.limit);
  }
  return { sql, params };
}

export type AuditStore = ReturnType<typeof createAuditStore>;
