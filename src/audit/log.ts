/**
 * The audit log. Fail closed and durable with group commit: `record()` queues
 * the event and resolves only once the transaction holding it has committed
 * (synchronous=FULL); every event queued during one event-loop turn, or while
 * the previous batch commits, goes into one transaction, so durability costs
 * one fsync per batch instead of one per request. A failed commit rejects every waiter, and callers answer 503
 * without releasing anything.
 */
import { SEARCH_INDEX_STEP, type AuditRow } from '../store/audit.js';
import type { AuditHead, AuditStore } from '../store/index.js';
import { CofferError } from '../errors.js';
import { GENESIS_HASH, canonicalEncoding, canonicalTail, canonicalText, hashOfEncoding, type UnhashedRow } from './chain.js';
import { formatRfc5424Lines } from './rfc5424.js';

/** Who made the request, as the HTTP layer saw it. */
export interface RequestInfo {
  clientIp?: string;
  requestId?: string;
  userAgent?: string;
}

export interface AuditEvent {
  account: string | null;
  action: string;
  operation: string;
  result: 'success' | 'failure';
  /** The acting role (full id). */
  roleId?: string | null;
  /** The resource or role the event is about (full id). */
  resourceId?: string | null;
  version?: number | null;
  /** Why it failed; never a secret. */
  reason?: string | null;
  message: string;
  details?: unknown;
  request?: RequestInfo;
}

/** Receives each committed event, after its commit; must not throw for long or block. */
export interface AuditSink {
  write(row: AuditRow): void;
  /** Flushes and releases the sink (server shutdown). */
  close?(): Promise<void>;
}

/** Public JSON form of an event (the API and the JSON-lines sink). */
export function auditEventJson(r: AuditRow) {
  return {
    seq: r.seq,
    time: r.time,
    account: r.account,
    action: r.action,
    operation: r.operation,
    result: r.result,
    role: r.role_id,
    resource: r.resource_id,
    version: r.version,
    client_ip: r.client_ip,
    request_id: r.request_id,
    user_agent: r.user_agent,
    reason: r.reason,
    message: r.message,
    details: r.details === null ? null : (JSON.parse(r.details) as unknown),
    hash: r.hash.toString('hex'),
  };
}

/** Writes each committed event as one JSON line. */
export function jsonLinesSink(write: (line: string) => void): AuditSink {
  return { write: (row) => write(`${JSON.stringify(auditEventJson(row))}\n`) };
}

/** Writes each committed event as RFC 5424 lines in Conjur's format (a policy load: one line per change). */
export function rfc5424Sink(write: (line: string) => void): AuditSink {
  return { write: (row) => write(formatRfc5424Lines(row).map((l) => `${l}\n`).join('')) };
}

interface Pending {
  event: AuditEvent;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface AuditLogDeps {
  store: AuditStore;
  sinks?: AuditSink[];
  nowIso?: () => string;
  /** Called when a sink throws; sinks run after commit and never block the request. */
  onSinkError?: (err: unknown) => void;
}

/** How long the log must have been quiet before the search index is filled (SEARCH_INDEX_STEP events a step). */
const SEARCH_INDEX_IDLE_MS = 250;
/**
 * Where the store fills its search index while busy (AuditStore.indexSearchWhileBusy): events this node writes
 * between fills, and events a fill step copies. The index then lags the head by a few thousand events at most,
 * which a q query reads without it.
 */
export const SEARCH_INDEX_BUSY_EVENTS = 2_000;

const MAX_FIELD = 2048;
/** Request-supplied text, at most MAX_FIELD UTF-16 units (a cut surrogate pair becomes U+FFFD below). */
const clip = (s: string | undefined | null) => (s == null ? null : s.length > MAX_FIELD ? s.slice(0, MAX_FIELD) : s);
/** A field as it is hashed and stored (see canonicalText). */
const text = (s: string | undefined | null) => canonicalText(s ?? null);

interface EventFields {
  row: Omit<UnhashedRow, 'seq'>;
  /** canonicalTail(row): the row's encoding after `[seq`. */
  tail: string;
}

export class AuditLog {
  private queue: Pending[] = [];
  private drainWaiters: (() => void)[] = [];
  private scheduled = false;
  /** A batch is being committed; events queued meanwhile go into the next one. */
  private flushing = false;
  private searchIndexTimer?: NodeJS.Timeout;
  /** Batches written so far; the idle-time indexer stops when it changes. */
  private writesSeen = 0;
  /** Events written since the last fill while busy started. */
  private unindexed = 0;
  /** The fill while busy that is running, if one is. */
  private busyFill?: Promise<void>;
  /** The quiet-time fill's step that is running, if one is. */
  private quietStep?: Promise<void>;
  /** close() was called: no fill starts or goes on. */
  private closing = false;
  /** The last event this log committed: the head the next batch expects (see AuditStore.appendChained). */
  private lastWritten?: AuditHead;
  private readonly nowIso: () => string;

  constructor(private readonly deps: AuditLogDeps) {
    this.nowIso = deps.nowIso ?? (() => new Date().toISOString());
  }

  /** Queues an event; resolves when it is durable, rejects with 503 when it cannot be written. */
  record(event: AuditEvent): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  /**
   * Appends events inside the caller's open transaction (policy loads), so
   * they commit or roll back with it. Pass the returned rows to `publish`
   * after the commit.
   */
  recordInTransaction(events: AuditEvent[]): Promise<AuditRow[]> {
    return this.append(events);
  }

  /** Sends committed rows to the sinks. */
  publish(rows: AuditRow[]): void {
    for (const row of rows) {
      for (const sink of this.deps.sinks ?? []) {
        try {
          sink.write(row);
        } catch (err) {
          this.deps.onSinkError?.(err);
        }
      }
    }
  }

  /** Resolves once everything queued so far is durable (or failed). */
  drain(): Promise<void> {
    if (this.queue.length === 0 && !this.flushing) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Drains the queue, then flushes and closes the sinks (server shutdown). */
  async close(): Promise<void> {
    await this.drain();
    this.closing = true;
    clearTimeout(this.searchIndexTimer);
    await Promise.all([this.busyFill, this.quietStep]);
    await Promise.all((this.deps.sinks ?? []).map((sink) => sink.close?.()));
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    this.flushing = true;
    const batch = this.queue;
    const drains = this.drainWaiters;
    this.queue = [];
    this.drainWaiters = [];
    let rows: AuditRow[] = [];
    try {
      // One time for the batch, and its events normalized and encoded once, however many times the batch is
      // linked (the store may link it again to another head).
      const fields = this.fields(batch.map((p) => p.event), this.nowIso());
      const encodings = new WeakMap<AuditRow, string>();
      rows = await this.deps.store.appendChained(
        { chain: (head) => this.link(fields, head, encodings), encode: (row) => encodings.get(row) ?? canonicalEncoding(row) },
        this.lastWritten,
      );
    } catch (cause) {
      this.flushing = false;
      this.lastWritten = undefined;
      const err = new CofferError(
        'service_unavailable',
        'The audit log cannot be written, so the request was refused (fail closed). Check the server log and disk.',
        { cause },
      );
      for (const p of batch) p.reject(err);
      this.settled(drains);
      return;
    }
    this.flushing = false;
    const last = rows[rows.length - 1];
    if (last) this.lastWritten = { seq: last.seq, hash: last.hash };
    for (const p of batch) p.resolve();
    this.settled(drains);
    this.publish(rows);
    this.indexSearchWhenIdle();
    this.indexSearchWhileBusy(rows.length);
  }

  /** After a batch: its drain waiters are done, and so are later ones if nothing new was queued; else the next batch starts. */
  private settled(drains: (() => void)[]): void {
    for (const resolve of drains) resolve();
    if (this.queue.length > 0) return this.schedule();
    const idle = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of idle) resolve();
  }

  /**
   * The full-text index of messages (q queries) is kept off the write path:
   * it is filled in batches once no event has been written for a while, and
   * a q query catches it up itself. Every write pushes the next batch back,
   * so a busy server spends nothing on it.
   */
  private indexSearchWhenIdle(): void {
    clearTimeout(this.searchIndexTimer);
    // A batch still running when a write lands must not re-arm itself: that write's own timer decides.
    const writes = ++this.writesSeen;
    const step = async () => {
      let added = 0;
      try {
        added = await this.deps.store.indexSearchBatch(SEARCH_INDEX_STEP);
      } catch {
        // A derived index: a failed batch (a full disk) is retried after the next write.
        return;
      }
      if (added === SEARCH_INDEX_STEP && writes === this.writesSeen && !this.closing) this.searchIndexTimer = setTimeout(run, 0).unref();
    };
    const run = () => {
      if (this.closing) return;
      this.quietStep = step().finally(() => (this.quietStep = undefined));
    };
    this.searchIndexTimer = setTimeout(run, SEARCH_INDEX_IDLE_MS).unref();
  }

  /** Where the store fills while busy: a fill every SEARCH_INDEX_BUSY_EVENTS events, in the background, never awaited by a request. */
  private indexSearchWhileBusy(written: number): void {
    if (!this.deps.store.indexSearchWhileBusy) return;
    this.unindexed += written;
    if (this.busyFill || this.closing || this.unindexed < SEARCH_INDEX_BUSY_EVENTS) return;
    this.unindexed = 0;
    const fill = async () => {
      try {
        while ((await this.deps.store.indexSearchBatch(SEARCH_INDEX_BUSY_EVENTS)) === SEARCH_INDEX_BUSY_EVENTS && !this.closing);
      } catch {
        // A derived index: a failed fill is tried again after the next SEARCH_INDEX_BUSY_EVENTS events (a q query
        // stays complete meanwhile, reading the events not copied yet from the log itself).
      }
    };
    // Cleared after the assignment, even when the store throws at once.
    this.busyFill = fill().finally(() => (this.busyFill = undefined));
  }

  private async append(events: AuditEvent[]): Promise<AuditRow[]> {
    if (events.length === 0) return [];
    const fields = this.fields(events, this.nowIso());
    const rows = this.link(fields, await this.deps.store.head());
    // One statement for the batch where the backend can (a round trip per event on PostgreSQL otherwise).
    await this.deps.store.insertAll(rows);
    return rows;
  }

  /** Each event's stored fields (all but seq and the hashes) and their encoding after the seq. */
  private fields(events: AuditEvent[], time: string): EventFields[] {
    return events.map((e) => {
      const row: Omit<UnhashedRow, 'seq'> = {
        time,
        account: text(e.account),
        action: canonicalText(e.action),
        operation: canonicalText(e.operation),
        result: e.result,
        role_id: text(e.roleId),
        resource_id: text(e.resourceId),
        version: e.version ?? null,
        client_ip: text(clip(e.request?.clientIp)),
        request_id: text(clip(e.request?.requestId)),
        user_agent: text(clip(e.request?.userAgent)),
        reason: text(clip(e.reason)),
        message: canonicalText(e.message),
        // JSON.stringify already escapes a lone surrogate as \udXXX, so details are ASCII-safe there.
        details: e.details === undefined ? null : JSON.stringify(e.details),
      };
      return { row, tail: canonicalTail(row) };
    });
  }

  /** The events as rows linked to `head` (a pure function of its arguments); `encodings` gets each row's hashed text. */
  private link(fields: EventFields[], head: AuditHead | undefined, encodings?: WeakMap<AuditRow, string>): AuditRow[] {
    let seq = head?.seq ?? 0;
    let prev: Buffer = head?.hash ?? GENESIS_HASH;
    const rows: AuditRow[] = [];
    for (const f of fields) {
      seq++;
      const encoding = `[${seq}${f.tail}`;
      const hash = hashOfEncoding(prev, encoding);
      const row: AuditRow = { seq, ...f.row, prev_hash: prev, hash };
      encodings?.set(row, encoding);
      rows.push(row);
      prev = hash;
    }
    return rows;
  }
}
