/** GET /audit/{account}[/verify]: the auditors' query API (Coffer's own; Conjur OSS has none). */
import { stream } from 'hono/streaming';
import { unprocessable } from '../../errors.js';
import { auditEventJson } from '../../audit/log.js';
import { makeFullId } from '../../ids.js';
import { MIN_Q_CHARS, type AuditQuery } from '../../audit/reader.js';
import { BUCKET_SIZES, type BucketSize } from '../../audit/histogram.js';
import { authenticateRequest } from '../auth.js';
import type { RouteDeps } from '../context.js';
import { integerParam } from '../paging.js';
import { accountSegment, queryParam, type Ctx } from '../request.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
const EXPORT_PAGE = 1000;

function isoParam(c: Ctx, name: string): string | undefined {
  const raw = queryParam(c, name);
  if (raw === undefined) return undefined;
  const t = Date.parse(raw);
  if (Number.isNaN(t)) throw unprocessable(`'${name}' must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z`);
  return new Date(t).toISOString();
}

/**
 * `q`: a literal, ASCII-case-insensitive substring of the message, served
 * by the trigram index, which needs at least MIN_Q_CHARS characters: a
 * shorter q would have to read every event, so it is refused. An empty q
 * filters nothing (as before).
 */
function qParam(c: Ctx): string | undefined {
  const q = queryParam(c, 'q');
  if (q === undefined || q === '') return undefined;
  if ([...q].length < MIN_Q_CHARS) throw unprocessable(`'q' must be at least ${MIN_Q_CHARS} characters (it is a substring search served by a trigram index)`);
  if (q.includes('\u0000')) throw unprocessable("'q' must not contain NUL characters");
  return q;
}

/** The filters of an audit read (shared by the histogram: same names, same checks). */
function parseFilters(c: Ctx, account: string) {
  const result = queryParam(c, 'result');
  if (result !== undefined && result !== 'success' && result !== 'failure') {
    throw unprocessable("'result' must be 'success' or 'failure'");
  }
  const resource = queryParam(c, 'resource');
  const role = queryParam(c, 'role');
  return {
    resource: resource === undefined ? undefined : makeFullId(resource, account),
    role: role === undefined ? undefined : makeFullId(role, account),
    action: queryParam(c, 'action'),
    result: result as 'success' | 'failure' | undefined,
    since: isoParam(c, 'since'),
    until: isoParam(c, 'until'),
    q: qParam(c),
  };
}

function parseQuery(c: Ctx, account: string): AuditQuery {
  const filters = parseFilters(c, account);
  const order = queryParam(c, 'order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw unprocessable("'order' must be 'asc' or 'desc'");
  const rawLimit = queryParam(c, 'limit');
  if (rawLimit !== undefined && (!/^\d+$/.test(rawLimit) || Number(rawLimit) < 1 || Number(rawLimit) > MAX_LIMIT)) {
    throw unprocessable(`'limit' must be an integer from 1 to ${MAX_LIMIT}`);
  }
  const rawCursor = queryParam(c, 'cursor');
  const cursor = rawCursor === undefined ? undefined : integerParam(rawCursor, 0, Number.MAX_SAFE_INTEGER, "'cursor' must be the next_cursor of a previous page");
  return {
    ...filters,
    cursor,
    order,
    limit: rawLimit === undefined ? DEFAULT_LIMIT : Number(rawLimit),
  };
}

export function registerAudit({ app, services }: RouteDeps): void {
  app.get('/audit/:account/verify', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const r = await services.auditReader.verify(account, actor.roleId);
    const body = {
      ok: r.ok,
      account: r.account,
      events: r.events,
      last_seq: r.lastSeq,
      ...(r.ok ? {} : { first_bad_seq: r.firstBadSeq, reason: r.reason, bad_seqs: r.badSeqs, bad_count: r.badCount }),
    };
    return c.json(body, r.ok ? 200 : 409);
  });

  app.get('/audit/:account/histogram', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const bucket = queryParam(c, 'bucket');
    if (bucket === undefined || !(BUCKET_SIZES as readonly string[]).includes(bucket)) {
      throw unprocessable("'bucket' must be 'minute', 'hour' or 'day'");
    }
    const { since, until, ...filters } = parseFilters(c, account);
    if (since === undefined || until === undefined) throw unprocessable("'since' and 'until' are required (ISO 8601 times)");
    return c.json(await services.auditReader.histogram(account, actor.roleId, { bucket: bucket as BucketSize, since, until, ...filters }));
  });

  app.get('/audit/:account', async (c) => {
    const actor = await authenticateRequest(c, services.tokens, services.authorizer);
    const account = accountSegment(c, 1);
    const query = parseQuery(c, account);
    if ((c.req.header('accept') ?? '').includes('application/x-ndjson')) {
      c.header('Content-Type', 'application/x-ndjson');
      return stream(c, async (s) => {
        // Pages are read one at a time (each in bounded slices) so no statement stays open across awaits.
        let cursor = query.cursor;
        for (;;) {
          const rows = await services.auditReader.query(account, actor.roleId, { ...query, cursor, limit: EXPORT_PAGE });
          if (rows.length === 0) break;
          await s.write(rows.map((r) => `${JSON.stringify(auditEventJson(r))}\n`).join(''));
          cursor = rows[rows.length - 1]!.seq;
          if (rows.length < EXPORT_PAGE) break;
        }
      });
    }
    const rows = await services.auditReader.query(account, actor.roleId, query);
    const next = rows.length === query.limit ? String(rows[rows.length - 1]!.seq) : null;
    return c.json({ events: rows.map(auditEventJson), next_cursor: next });
  });
}
