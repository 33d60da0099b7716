/**
 * Tamper evidence: each event's hash is SHA-256(prev_hash ‖ canonical(event)),
 * where canonical is a JSON array of the event's fields in a fixed order.
 */
import { createHash } from 'node:crypto';
import type { AuditRow } from '../store/audit.js';

export const GENESIS_HASH = Buffer.alloc(32);

export type UnhashedRow = Omit<AuditRow, 'prev_hash' | 'hash'>;

export function canonicalEncoding(e: UnhashedRow): string {
  return JSON.stringify([
    e.seq, e.time, e.account, e.action, e.operation, e.result, e.role_id, e.resource_id, e.version,
    e.client_ip, e.request_id, e.user_agent, e.reason, e.message, e.details,
  ]);
}

export function chainHash(prevHash: Buffer, e: UnhashedRow): Buffer {
  return createHash('sha256').update(prevHash).update(canonicalEncoding(e), 'utf8').digest();
}

export interface VerifyResult {
  ok: boolean;
  /** Number of events checked. */
  checked: number;
  /** Sequence number of the last event. */
  lastSeq: number;
  /** First sequence number whose event or link is wrong. */
  firstBadSeq?: number;
  reason?: string;
}

/**
 * Checks the chain one event at a time, so a caller can feed it page by page
 * (the online verify yields to the event loop between pages). After the first
 * break it accepts nothing more.
 */
export class ChainVerifier {
  private prev: Buffer = GENESIS_HASH;
  private expectedSeq = 1;
  private checked = 0;
  private lastSeq = 0;
  private broken?: { firstBadSeq: number; reason: string };

  /** Checks the next event in sequence order; false once the chain is broken. */
  push(row: AuditRow): boolean {
    if (this.broken) return false;
    const { prev_hash, hash, ...rest } = row;
    if (row.seq !== this.expectedSeq) {
      this.broken = { firstBadSeq: this.expectedSeq, reason: `event ${this.expectedSeq} is missing (next is ${row.seq})` };
    } else if (!this.prev.equals(prev_hash)) {
      this.broken = { firstBadSeq: row.seq, reason: `event ${row.seq} does not link to event ${row.seq - 1}` };
    } else if (!chainHash(this.prev, rest).equals(hash)) {
      this.broken = { firstBadSeq: row.seq, reason: `event ${row.seq} was modified (hash mismatch)` };
    }
    if (this.broken) return false;
    this.prev = hash;
    this.expectedSeq++;
    this.checked++;
    this.lastSeq = row.seq;
    return true;
  }

  result(): VerifyResult {
    return { ok: !this.broken, checked: this.checked, lastSeq: this.lastSeq, ...this.broken };
  }
}

/** Walks the chain in sequence order and reports the first break. */
export function verifyChain(rows: Iterable<AuditRow>): VerifyResult {
  const verifier = new ChainVerifier();
  for (const row of rows) if (!verifier.push(row)) break;
  return verifier.result();
}
