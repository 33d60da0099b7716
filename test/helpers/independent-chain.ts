/**
 * A second, test-only audit-chain verifier, written from the documented format
 * (README, "Audit log" → "Tamper evidence") and deliberately importing nothing
 * from src/: if the server's hash function drifts from the documentation (or a
 * change makes it ignore the previous hash), this verifier disagrees with the
 * server's own `verifyChain`, which would still agree with itself.
 *
 * The format, as documented:
 *   hash(event) = SHA-256( prev_hash ‖ UTF-8( JSON array of the stored columns
 *     seq, time, account, action, operation, result, role_id, resource_id,
 *     version, client_ip, request_id, user_agent, reason, message, details ) )
 *   prev_hash(event 1) = 32 zero bytes; prev_hash(event n) = hash(event n-1),
 *   both as raw bytes; seq runs 1, 2, 3, … without gaps.
 *
 * Unlike the server, it does not stop at the first break: it lists every
 * problem it sees, each checked on its own.
 */
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';

/** The hashed columns, in the documented order. */
export const HASHED_COLUMNS = [
  'seq', 'time', 'account', 'action', 'operation', 'result', 'role_id', 'resource_id', 'version',
  'client_ip', 'request_id', 'user_agent', 'reason', 'message', 'details',
] as const;

export type RawEvent = { [K in (typeof HASHED_COLUMNS)[number]]: string | number | null } & {
  seq: number;
  prev_hash: Buffer;
  hash: Buffer;
};

export const ZERO_HASH = Buffer.alloc(32);

/** Every event, read with plain SQL in sequence order (the column list is spelled out here, not taken from src/). */
export function readEvents(db: Database.Database): RawEvent[] {
  return db.prepare(`SELECT ${HASHED_COLUMNS.join(', ')}, prev_hash, hash FROM audit_events ORDER BY seq`).all() as RawEvent[];
}

/** The documented hash of one event, given the previous hash. */
export function documentedHash(prevHash: Buffer, event: Omit<RawEvent, 'prev_hash' | 'hash'>): Buffer {
  const fields = HASHED_COLUMNS.map((c) => event[c]);
  return createHash('sha256').update(prevHash).update(Buffer.from(JSON.stringify(fields), 'utf8')).digest();
}

export type Problem =
  | { seq: number; kind: 'gap'; expectedSeq: number }
  | { seq: number; kind: 'link' }
  | { seq: number; kind: 'hash' };

export interface IndependentReport {
  ok: boolean;
  events: number;
  problems: Problem[];
  /** The sequence numbers with a problem, ascending, each once. */
  badSeqs: number[];
}

export function verifyIndependently(events: RawEvent[]): IndependentReport {
  const problems: Problem[] = [];
  let expectedSeq = 1;
  let prevStored: Buffer = ZERO_HASH;
  for (const e of events) {
    if (e.seq !== expectedSeq) problems.push({ seq: e.seq, kind: 'gap', expectedSeq });
    // The link: this event names the stored hash of the event before it.
    if (!Buffer.from(e.prev_hash).equals(prevStored)) problems.push({ seq: e.seq, kind: 'link' });
    // The content: the stored hash is the documented hash over the stored prev_hash and columns.
    const { prev_hash, hash, ...columns } = e;
    if (!documentedHash(Buffer.from(prev_hash), columns).equals(Buffer.from(hash))) problems.push({ seq: e.seq, kind: 'hash' });
    prevStored = Buffer.from(hash);
    expectedSeq = e.seq + 1;
  }
  const badSeqs = [...new Set(problems.map((p) => p.seq))].sort((a, b) => a - b);
  return { ok: problems.length === 0, events: events.length, problems, badSeqs };
}
