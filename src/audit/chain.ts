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

/** Walks the chain in sequence order and reports the first break. */
export function verifyChain(rows: Iterable<AuditRow>): VerifyResult {
  let prev: Buffer = GENESIS_HASH;
  let expectedSeq = 1;
  let checked = 0;
  let lastSeq = 0;
  for (const row of rows) {
    const { prev_hash, hash, ...rest } = row;
    if (row.seq !== expectedSeq) {
      return { ok: false, checked, lastSeq, firstBadSeq: expectedSeq, reason: `event ${expectedSeq} is missing (next is ${row.seq})` };
    }
    if (!prev.equals(prev_hash)) {
      return { ok: false, checked, lastSeq, firstBadSeq: row.seq, reason: `event ${row.seq} does not link to event ${row.seq - 1}` };
    }
    if (!chainHash(prev, rest).equals(hash)) {
      return { ok: false, checked, lastSeq, firstBadSeq: row.seq, reason: `event ${row.seq} was modified (hash mismatch)` };
    }
    prev = hash;
    expectedSeq++;
    checked++;
    lastSeq = row.seq;
  }
  return { ok: true, checked, lastSeq };
}
