/**
 * Tamper evidence: each event's hash is SHA-256(prev_hash ‖ canonical(event)),
 * where canonical is the UTF-8 encoding of a JSON array of the event's fields
 * in a fixed order.
 *
 * Every string field is made well-formed (a lone UTF-16 surrogate becomes
 * U+FFFD) before it is hashed *and* before it is stored: SQLite keeps text as
 * UTF-8, which cannot hold a lone surrogate, so hashing the JavaScript string
 * as it came in and storing what SQLite makes of it would put an event in the
 * chain whose stored form no longer matches its hash.
 */
import { createHash } from 'node:crypto';
import type { AuditRow } from '../store/audit.js';

export const GENESIS_HASH = Buffer.alloc(32);

export type UnhashedRow = Omit<AuditRow, 'prev_hash' | 'hash'>;

/**
 * The text exactly as it is stored and hashed: well-formed UTF-16, so its
 * UTF-8 round-trips, and without U+0000, which PostgreSQL's TEXT cannot hold
 * (one event with it would fail its whole group-commit batch there). Lone
 * surrogates and U+0000 both become U+FFFD, on every backend.
 */
export function canonicalText(s: string): string;
export function canonicalText(s: string | null): string | null;
export function canonicalText(s: string | null): string | null {
  if (s === null) return s;
  const wellFormed = s.isWellFormed() ? s : s.toWellFormed();
  return wellFormed.includes('\u0000') ? wellFormed.replaceAll('\u0000', '\uFFFD') : wellFormed;
}

export function canonicalEncoding(e: UnhashedRow): string {
  return JSON.stringify([
    e.seq, e.time, e.account, e.action, e.operation, e.result, e.role_id, e.resource_id, e.version,
    e.client_ip, e.request_id, e.user_agent, e.reason, e.message, e.details,
  ]);
}

export function chainHash(prevHash: Buffer, e: UnhashedRow): Buffer {
  return hashOfEncoding(prevHash, canonicalEncoding(e));
}

export function hashOfEncoding(prevHash: Buffer, encoding: string): Buffer {
  return createHash('sha256').update(prevHash).update(encoding, 'utf8').digest();
}

/**
 * The encoding of an event without its sequence number, after `[seq`:
 * `[${e.seq}` + canonicalTail(e) is canonicalEncoding(e) for every integer seq,
 * so a batch linked again to another head is re-hashed, not re-encoded.
 */
export function canonicalTail(e: Omit<UnhashedRow, 'seq'>): string {
  return `,${JSON.stringify([
    e.time, e.account, e.action, e.operation, e.result, e.role_id, e.resource_id, e.version,
    e.client_ip, e.request_id, e.user_agent, e.reason, e.message, e.details,
  ]).slice(1)}`;
}

/** How many broken sequence numbers a report lists; `badCount` counts all of them. */
export const MAX_LISTED_BAD_SEQS = 100;

export interface VerifyResult {
  ok: boolean;
  /** Number of events read (intact or not). */
  checked: number;
  /** Sequence number of the last event read. */
  lastSeq: number;
  /** First sequence number whose event or link is wrong. */
  firstBadSeq?: number;
  /** Why the first bad sequence number is bad. */
  reason?: string;
  /** The broken sequence numbers in order, at most MAX_LISTED_BAD_SEQS of them. */
  badSeqs: number[];
  /** How many sequence numbers are broken (missing, unlinked or modified) in all. */
  badCount: number;
}

/**
 * Checks the chain one event at a time, so a caller can feed it page by page
 * (the online verify yields to the event loop between pages). A break does
 * not blind it: each event is checked on its own (its hash over its own
 * stored prev_hash) and for its link to the event before it, so one bad row
 * is reported as one bad row and every later break is still found.
 */
export class ChainVerifier {
  private prev: Buffer | undefined = GENESIS_HASH;
  private expectedSeq = 1;
  private checked = 0;
  private lastSeq = 0;
  private first?: { seq: number; reason: string };
  private readonly bad: number[] = [];
  private badCount = 0;

  /** Checks the next event in sequence order; false when this event (or a gap before it) is bad. */
  push(row: AuditRow): boolean {
    const { prev_hash, hash, ...rest } = row;
    let good = true;
    if (row.seq < this.expectedSeq) {
      this.flag(row.seq, `is out of order (after event ${this.expectedSeq - 1})`);
      return false;
    }
    if (row.seq > this.expectedSeq) {
      // The missing events' hashes are gone, so this row's link cannot be checked.
      const from = this.expectedSeq;
      const missing = row.seq - from > 1 ? `events ${from}–${row.seq - 1} are` : `event ${from} is`;
      this.flagRange(from, row.seq, `${missing} missing (next is ${row.seq})`);
      this.prev = undefined;
      good = false;
    }
    if (this.prev !== undefined && !this.prev.equals(prev_hash)) {
      this.flag(row.seq, `does not link to event ${row.seq - 1}`);
      good = false;
    } else if (!chainHash(prev_hash, rest).equals(hash)) {
      this.flag(row.seq, 'was modified (hash mismatch)');
      good = false;
    }
    this.prev = hash;
    this.expectedSeq = row.seq + 1;
    this.checked++;
    this.lastSeq = row.seq;
    return good;
  }

  result(): VerifyResult {
    return {
      ok: this.badCount === 0,
      checked: this.checked,
      lastSeq: this.lastSeq,
      ...(this.first ? { firstBadSeq: this.first.seq, reason: this.first.reason } : {}),
      badSeqs: [...this.bad],
      badCount: this.badCount,
    };
  }

  private flag(seq: number, what: string): void {
    this.flagRange(seq, seq + 1, `event ${seq} ${what}`);
  }

  /** Flags seqs [from, to) with one reason, in time independent of how many there are. */
  private flagRange(from: number, to: number, reason: string): void {
    this.first ??= { seq: from, reason };
    for (let s = from; s < to && this.bad.length < MAX_LISTED_BAD_SEQS; s++) this.bad.push(s);
    this.badCount += to - from;
  }
}

/** Walks the chain in sequence order and reports every break. */
export function verifyChain(rows: Iterable<AuditRow>): VerifyResult {
  const verifier = new ChainVerifier();
  for (const row of rows) verifier.push(row);
  return verifier.result();
}
