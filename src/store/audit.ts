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

/** One OR-clause of the auditor's scope: a resource id, or a policy subtree. */
export type AuditScope =
  | { type: 'all'; account: string }
  | { type: 'resource'; resourceId: string }
  | { type: 'subtree'; account: string; path: string; userSuffix: string };

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

function scopeSql(scope: AuditScope, params: unknown[]): string {
  switch (scope.type) {
    case 'all':
      params.push(scope.account);
      return 'account = ?';
    case 'resource':
      params.push(scope.resourceId);
      return 'resource_id = ?';
    case 'subtree': {
      // Resources of kind K under policy P have ids "acct:K:P/…"; users are
      // renamed "name@P-with-dashes"; the policy itself is "acct:policy:P".
      const a = escapeLike(scope.account);
      params.push(`${a}:%:${escapeLike(scope.path)}/%`, `${a}:user:%@${escapeLike(scope.userSuffix)}`, `${scope.account}:policy:${scope.path}`);
      return "(resource_id LIKE ? ESCAPE '\\' OR resource_id LIKE ? ESCAPE '\\' OR resource_id = ?)";
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

  return {
    head: () => head.get(),
    insert: (row: AuditRow) => void insert.run(row),
    /** Iterates events in sequence order, starting after `afterSeq`. */
    iterate: (afterSeq = 0) => walk.iterate(afterSeq) as IterableIterator<AuditRow>,
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
