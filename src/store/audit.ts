/** The append-only audit_events table. */
import type { Db } from './db.js';

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

  return {
    head: () => head.get(),
    insert: (row: AuditRow) => void insert.run(row),
    /** Iterates events in sequence order, starting after `afterSeq`. */
    iterate: (afterSeq = 0) => walk.iterate(afterSeq) as IterableIterator<AuditRow>,
    /** Up to `limit` events after `afterSeq`, in sequence order (a walk that can pause between pages). */
    page: (afterSeq: number, limit: number): AuditRow[] => page.all(afterSeq, limit),
    query(f: AuditFilter): AuditRow[] {
      const { sql, params } = buildQuery(f);
      return db.prepare(sql).all(...params) as AuditRow[];
    },
    iterateQuery(f: AuditFilter): IterableIterator<AuditRow> {
      const { sql, params } = buildQuery(f);
      return db.prepare(sql).iterate(...params) as IterableIterator<AuditRow>;
    },
  };
}

function buildQuery(f: AuditFilter): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  where.push('account = ?');
  params.push(f.account);
  if (f.scopes.length === 0) where.push('0');
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
  let sql = `SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq ${f.order === 'desc' ? 'DESC' : 'ASC'}`;
  if (f.limit !== undefined) {
    sql += ' LIMIT ?';
    params.push(f.limit);
  }
  return { sql, params };
}

export type AuditStore = ReturnType<typeof createAuditStore>;
