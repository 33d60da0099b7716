/**
 * `--audit-log FILE|-`: a copy of each committed audit event, as one JSON line
 * or as Conjur's RFC 5424 lines, for log shippers and SIEMs.
 *
 * The database is the record; a sink only copies what is already committed.
 * So a sink that fails (disk full, directory gone, closed pipe) or falls
 * behind (a hung file system) must never block or fail a request: it reports
 * the problem on stderr once, drops what it cannot write — naming the
 * sequence numbers it missed, which `GET /audit/{account}` still serves —
 * and reopens the file after a pause. Only the first open happens at start-up
 * and fails the start, so a mistyped path is caught at once.
 */
import { createWriteStream, openSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { AuditRow } from '../store/audit.js';
import { auditEventJson, type AuditSink } from './log.js';
import { formatRfc5424Lines } from './rfc5424.js';

export type AuditFormat = 'json' | 'rfc5424';

export interface StreamSinkOptions {
  /** Pause before reopening a file after a failure. */
  reopenAfterMs?: number;
  /** Bytes a sink may have queued before it drops events instead of buffering more. */
  maxBufferedBytes?: number;
  now?: () => number;
}

/** The text one committed event becomes in the stream (each line ends with \n). */
export function formatAuditLines(row: AuditRow, format: AuditFormat): string {
  if (format === 'json') return `${JSON.stringify(auditEventJson(row))}\n`;
  return formatRfc5424Lines(row).map((l) => `${l}\n`).join('');
}

interface Missed {
  first: number;
  last: number;
  count: number;
}

export class StreamSink implements AuditSink {
  private out?: Writable;
  private retryAt = 0;
  private failing = false;
  private lagging = false;
  private missed?: Missed;
  private readonly name: string;
  private readonly reopenAfterMs: number;
  private readonly maxBufferedBytes: number;
  private readonly now: () => number;

  /** Opens the target at once; throws when it cannot be opened. */
  constructor(
    private readonly target: string,
    private readonly format: AuditFormat,
    private readonly report: (line: string) => void,
    opts: StreamSinkOptions = {},
  ) {
    this.name = target === '-' ? 'stdout' : resolve(target);
    this.reopenAfterMs = opts.reopenAfterMs ?? 5000;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 8 * 1024 * 1024;
    this.now = opts.now ?? Date.now;
    this.out = this.open();
  }

  write(row: AuditRow): void {
    const out = this.out ?? this.reopen();
    if (!out) return this.miss(row.seq);
    if (out.writableLength > this.maxBufferedBytes) {
      if (!this.lagging) {
        this.lagging = true;
        this.report(`coffer: audit sink ${this.name} is not keeping up (${out.writableLength} bytes queued); dropping events until it catches up (they stay in the database)`);
      }
      return this.miss(row.seq);
    }
    out.write(formatAuditLines(row, this.format), (err) => {
      if (err) {
        this.fail(out, err);
        this.miss(row.seq);
      } else if (out === this.out && (this.missed || this.lagging)) {
        this.recovered();
      }
    });
  }

  /** Flushes and closes a file (stdout is left open). */
  close(): Promise<void> {
    const out = this.out;
    this.out = undefined;
    this.retryAt = Number.POSITIVE_INFINITY;
    if (!out || this.target === '-') return Promise.resolve();
    return new Promise((done) => {
      out.once('error', () => done());
      out.end(() => done());
    });
  }

  private open(): Writable {
    if (this.target === '-') {
      process.stdout.on('error', (err) => this.fail(process.stdout, err));
      return process.stdout;
    }
    const fd = openSync(this.name, 'a', 0o600);
    const stream = createWriteStream(this.name, { fd });
    stream.on('error', (err) => this.fail(stream, err));
    return stream;
  }

  private reopen(): Writable | undefined {
    // A closed stdout cannot be reopened; a file is tried again after a pause.
    if (this.target === '-' || this.now() < this.retryAt) return undefined;
    try {
      this.out = this.open();
      return this.out;
    } catch (err) {
      this.fail(undefined, err);
      return undefined;
    }
  }

  private fail(stream: Writable | undefined, err: unknown): void {
    if (stream && stream !== this.out) return; // this stream's failure was already handled
    this.out = undefined;
    if (stream && stream !== process.stdout) stream.destroy();
    this.retryAt = this.now() + this.reopenAfterMs;
    if (this.failing) return;
    this.failing = true;
    const next = this.target === '-' ? 'no more events will be streamed to stdout' : `reopening it in ${Math.ceil(this.reopenAfterMs / 1000)} s`;
    this.report(`coffer: audit sink ${this.name} failed: ${(err as Error).message ?? String(err)}; events stay in the database; ${next}`);
  }

  private miss(seq: number): void {
    if (!this.missed) this.missed = { first: seq, last: seq, count: 0 };
    this.missed.first = Math.min(this.missed.first, seq);
    this.missed.last = Math.max(this.missed.last, seq);
    this.missed.count++;
  }

  private recovered(): void {
    const m = this.missed;
    const what = m ? `${m.count} event(s) between seq ${m.first} and ${m.last} were not streamed (read them with GET /audit/{account})` : 'no event was lost';
    this.report(`coffer: audit sink ${this.name} recovered; ${what}`);
    this.missed = undefined;
    this.failing = false;
    this.lagging = false;
  }
}

/** The sinks a server configuration asks for (none without --audit-log). */
export function openAuditSinks(target: string | undefined, format: AuditFormat, report: (line: string) => void): StreamSink[] {
  if (!target) return [];
  try {
    return [new StreamSink(target, format, report)];
  } catch (err) {
    throw new Error(`--audit-log: cannot open ${target === '-' ? 'stdout' : resolve(target)}: ${(err as Error).message}`);
  }
}
