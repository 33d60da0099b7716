/**
 * `coffer audit query` (a table for people, --json/--ndjson for machines,
 * --follow to keep watching) and online `coffer audit verify`. The offline
 * verify (`--data-dir`) lives with the admin commands.
 */
import { EXIT } from '../client/exit-codes.js';
import { httpError, sanitize } from '../client/errors.js';
import type { ClientSession } from '../client/session.js';
import { brokenSeqsLine } from '../audit-report.js';
import { CliError } from '../io.js';
import { intFlag, parseFlags, str, usageError, withSession, type Ctx, type Help } from './context.js';
import { parseDuration, parseTime } from './time.js';
import { columnWidths, formatRow, paint, startProgress } from './ui.js';

interface AuditEvent {
  seq: number;
  time: string;
  action: string;
  operation: string;
  result: 'success' | 'failure';
  role: string | null;
  resource: string | null;
  reason: string | null;
  message: string;
  [k: string]: unknown;
}

const QUERY_HELP: Help = {
  usage:
    'coffer audit query [--resource R] [--role R] [--action A] [--result success|failure] [--since T] [--until T]\n' +
    '                          [--search TEXT] [--limit N] [--follow [--interval D]] [--json | --ndjson]',
  description:
    'Shows audit events you may read, oldest first, as a table (the newest N; --limit, default 100). --json prints\n' +
    '{"events":[…]} newest first; --ndjson prints one event per line and, without --limit, every matching event.\n' +
    '--follow keeps printing new events until interrupted.',
  options:
    '  --resource R     events about R (variable:prod/db/password)\n' +
    '  --role R         events by R (host:ci/executor-1)\n' +
    '  --action A       authn, fetch, update, policy, check, list, api-key, …\n' +
    '  --result RESULT  success or failure\n' +
    '  --since T        a duration ago (30m, 1h, 7d) or a time (2026-01-31T12:00:00Z)\n' +
    '  --until T        events before T\n' +
    '  --search TEXT    message contains TEXT\n' +
    '  --limit N        at most N events\n' +
    '  --follow         keep watching for new events (poll every --interval, default 2s)',
  example: 'coffer audit query --action fetch --result failure --since 1h',
};
const VERIFY_HELP: Help = {
  usage: 'coffer audit verify [--json]   |   coffer audit verify --data-dir DIR [--json]',
  description: 'Asks the server to walk the audit hash chain (needs audit on the root policy). Exit 0 when intact, 3 when\nbroken. With --data-dir the data directory is checked offline instead (no server needed).',
  options: "  --json   the verification report as JSON",
  example: 'coffer audit verify',
};
const AUDIT_HELP: Help = {
  usage: 'coffer audit query|verify …',
  description: 'Reads and verifies the audit log. Run `coffer audit query --help` or `coffer audit verify --help`.',
  example: 'coffer audit query --since 1h',
};

export async function cmdAudit(args: string[], ctx: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'query') return auditQuery(rest, ctx);
  if (sub === 'verify') return auditVerify(rest, ctx);
  if (sub === '-h' || sub === '--help') return parseFlags(ctx, ['--help'], {}, AUDIT_HELP), EXIT.OK;
  throw usageError(sub ? `unknown audit command '${sub}'` : 'audit needs query or verify', AUDIT_HELP);
}

const PAGE = 1000;

function short(id: string | null, account: string): string {
  if (!id) return '';
  return id.startsWith(`${account}:`) ? id.slice(account.length + 1) : id;
}

function row(ctx: Ctx, e: AuditEvent, account: string): string[] {
  const result = e.result === 'success' ? paint(ctx, 'green', 'success') : paint(ctx, 'red', 'failure');
  return [e.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), `${e.action}/${e.operation}`, result, short(e.role, account), short(e.resource, account), e.reason ?? e.message].map((c, i) =>
    i === 2 ? c : sanitize(c, 1000),
  );
}

const HEADERS = ['TIME', 'ACTION', 'RESULT', 'ROLE', 'RESOURCE', 'DETAIL'];

function stopSignal(ctx: Ctx): { signal: AbortSignal; dispose(): void } {
  if (ctx.signal) return { signal: ctx.signal, dispose: () => undefined };
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once('SIGINT', onInt);
  return { signal: ac.signal, dispose: () => process.removeListener('SIGINT', onInt) };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolvePromise) => {
    if (signal.aborted) return resolvePromise();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolvePromise();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

async function page(s: ClientSession, filters: Record<string, string | undefined>, extra: Record<string, string | undefined>): Promise<{ events: AuditEvent[]; next_cursor: string | null }> {
  const res = await s.request('GET', `/audit/${encodeURIComponent(s.config.account)}`, { query: { ...filters, ...extra } });
  if (res.status !== 200) throw httpError(res, 'querying the audit log');
  return JSON.parse(res.body.toString('utf8')) as { events: AuditEvent[]; next_cursor: string | null };
}

async function auditQuery(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(
    ctx,
    args,
    {
      resource: { type: 'string' },
      role: { type: 'string' },
      action: { type: 'string' },
      result: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      search: { type: 'string' },
      limit: { type: 'string' },
      follow: { type: 'boolean', short: 'f' },
      interval: { type: 'string' },
      json: { type: 'boolean' },
      ndjson: { type: 'boolean' },
    },
    QUERY_HELP,
  );
  if (!p) return EXIT.OK;
  const v = p.values;
  if (v.json && v.ndjson) throw usageError('give --json or --ndjson, not both', QUERY_HELP);
  if (v.follow && v.json) throw usageError('--follow prints a table or --ndjson, not --json', QUERY_HELP);
  if (v.follow && v.until) throw usageError('--follow cannot be combined with --until', QUERY_HELP);
  const result = str(v.result);
  if (result !== undefined && result !== 'success' && result !== 'failure') throw usageError('--result must be success or failure', QUERY_HELP);
  const time = (name: 'since' | 'until') => {
    const raw = str(v[name]);
    if (raw === undefined) return undefined;
    const iso = parseTime(raw);
    if (!iso) throw usageError(`--${name} '${raw}' is neither a duration (30m, 1h, 7d) nor a time`, QUERY_HELP);
    return iso;
  };
  const filters = { resource: str(v.resource), role: str(v.role), action: str(v.action), result, since: time('since'), until: time('until'), q: str(v.search) };
  const limitFlag = intFlag(str(v.limit), 'limit', QUERY_HELP);
  const limit = limitFlag ?? (v.ndjson ? Number.POSITIVE_INFINITY : 100);
  const interval = str(v.interval) === undefined ? 2000 : parseDuration(str(v.interval)!);
  if (!interval) throw usageError(`--interval '${str(v.interval)}' is not a duration like 2s`, QUERY_HELP);

  return withSession(ctx, async (s) => {
    // Newest first, paging by cursor until we have `limit` events or run out.
    const events: AuditEvent[] = [];
    let fetched = 0;
    let lastSeq = 0;
    let cursor: string | undefined;
    let next: string | null = null;
    const progress = v.ndjson ? startProgress(ctx, 'Exporting audit events') : undefined;
    try {
      while (fetched < limit) {
        const got = await page(s, filters, { limit: String(Math.min(PAGE, limit - fetched)), cursor });
        fetched += got.events.length;
        for (const e of got.events) lastSeq = Math.max(lastSeq, e.seq);
        // NDJSON exports can be large: print each page as it comes instead of holding them all.
        if (v.ndjson) for (const e of got.events) ctx.out(JSON.stringify(e));
        else events.push(...got.events);
        next = got.next_cursor;
        if (!next) break;
        cursor = next;
      }
    } finally {
      progress?.stop();
    }
    const account = s.config.account;
    if (v.json) {
      ctx.out(JSON.stringify({ events, next_cursor: next }, null, 2));
      return EXIT.OK;
    }
    let widths: number[] = columnWidths([HEADERS], [20, 18, 7, 16, 24]);
    if (!v.ndjson) {
      const rows = events.reverse().map((e) => row(ctx, e, account));
      widths = columnWidths([HEADERS, ...rows], widths);
      ctx.out(paint(ctx, 'bold', formatRow(HEADERS, widths)));
      for (const r of rows) ctx.out(formatRow(r, widths));
    }
    if (!v.follow) return EXIT.OK;

    if (lastSeq === 0) {
      // Nothing matched yet: start from the newest event of the whole (visible) log.
      const newest = await page(s, {}, { limit: '1' });
      lastSeq = newest.events[0]?.seq ?? 0;
    }
    const stop = stopSignal(ctx);
    try {
      while (!stop.signal.aborted) {
        await sleep(interval, stop.signal);
        if (stop.signal.aborted) break;
        for (;;) {
          const got = await page(s, filters, { order: 'asc', cursor: String(lastSeq), limit: String(PAGE) });
          for (const e of got.events) {
            lastSeq = Math.max(lastSeq, e.seq);
            if (v.ndjson) ctx.out(JSON.stringify(e));
            else ctx.out(formatRow(row(ctx, e, account), widths));
          }
          if (got.events.length < PAGE) break;
        }
      }
    } finally {
      stop.dispose();
    }
    return EXIT.OK;
  });
}

async function auditVerify(args: string[], ctx: Ctx): Promise<number> {
  const p = parseFlags(ctx, args, { json: { type: 'boolean' } }, VERIFY_HELP);
  if (!p) return EXIT.OK;
  return withSession(ctx, async (s) => {
    const res = await s.request('GET', `/audit/${encodeURIComponent(s.config.account)}/verify`);
    if (res.status !== 200 && res.status !== 409) throw httpError(res, 'verifying the audit log');
    const body = res.body.toString('utf8');
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(body) as Record<string, unknown>;
    } catch {
      throw new CliError('the server answered the audit verification with something that is not JSON', EXIT.FAILURE);
    }
    const ok = r.ok === true && res.status === 200;
    if (p.values.json) ctx.out(body);
    else if (ok) ctx.out(`audit chain OK: ${Number(r.events)} events verified (last seq ${Number(r.last_seq)})`);
    else {
      ctx.out(`audit chain BROKEN at seq ${Number(r.first_bad_seq)}: ${sanitize(String(r.reason ?? 'unknown reason'))}`);
      const badSeqs = Array.isArray(r.bad_seqs) ? r.bad_seqs.filter((n): n is number => Number.isSafeInteger(n)) : [];
      if (badSeqs.length > 0) ctx.out(brokenSeqsLine(badSeqs, Number(r.bad_count ?? badSeqs.length), Number(r.events ?? 0)));
    }
    return ok ? EXIT.OK : EXIT.AUDIT_BROKEN;
  });
}
