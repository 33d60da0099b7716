/**
 * ChainVerifier cases aimed at mutants of src/audit/chain.ts
 * (npm run mutation -- --module audit): the link check on its own (a row
 * whose prev_hash was forged and its hash recomputed), the exact report
 * (first break, reason, every bad seq, the cap on the list), gaps and
 * out-of-order events, and that checking goes on after a break.
 */
import { describe, expect, it } from 'vitest';
import { ChainVerifier, GENESIS_HASH, MAX_LISTED_BAD_SEQS, chainHash, verifyChain, type UnhashedRow } from '../../src/audit/chain.js';
import type { AuditRow } from '../../src/store/audit.js';

function event(seq: number): UnhashedRow {
  return {
    seq, time: `2030-01-01T00:00:0${seq % 10}.000Z`, account: 'a', action: 'fetch', operation: 'fetch', result: 'success',
    role_id: 'a:user:u', resource_id: `a:variable:v${seq}`, version: 1, client_ip: '127.0.0.1', request_id: `r${seq}`,
    user_agent: 'ua', reason: null, message: `u fetched v${seq}`, details: null,
  };
}

function chain(n: number): AuditRow[] {
  const rows: AuditRow[] = [];
  let prev: Buffer = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const e = event(seq);
    const hash = chainHash(prev, e);
    rows.push({ ...e, prev_hash: prev, hash });
    prev = hash;
  }
  return rows;
}

function rehash(rows: AuditRow[], i: number, change: Partial<AuditRow>): void {
  const { prev_hash, hash: _old, ...rest } = { ...rows[i]!, ...change };
  rows[i] = { ...rest, prev_hash, hash: chainHash(prev_hash, rest) };
}

describe('ChainVerifier (mutation-testing gaps)', () => {
  it('accepts an intact chain', () => {
    expect(verifyChain(chain(4))).toEqual({ ok: true, checked: 4, lastSeq: 4, badSeqs: [], badCount: 0 });
  });

  it('flags a row whose prev_hash was forged and its hash recomputed over it (only the link check can see that)', () => {
    const rows = chain(4);
    rehash(rows, 2, { prev_hash: Buffer.alloc(32, 7) });
    // The forged row is self-consistent: its hash is over its own stored prev_hash.
    expect(chainHash(rows[2]!.prev_hash, rows[2]!).equals(rows[2]!.hash)).toBe(true);
    expect(verifyChain(rows)).toEqual({
      ok: false, checked: 4, lastSeq: 4, firstBadSeq: 3, reason: 'event 3 does not link to event 2', badSeqs: [3, 4], badCount: 2,
    });
    const v = new ChainVerifier();
    expect(rows.map((r) => v.push(r))).toEqual([true, true, false, false]);
  });

  it('flags a first event that does not start from the genesis hash', () => {
    const rows = chain(2);
    rehash(rows, 0, { prev_hash: Buffer.alloc(32, 1) });
    expect(verifyChain(rows)).toMatchObject({ ok: false, firstBadSeq: 1, reason: 'event 1 does not link to event 0', badSeqs: [1, 2] });
  });

  it('reports a modified event once and goes on checking the events after it', () => {
    const rows = chain(6);
    rows[1] = { ...rows[1]!, message: 'u fetched something else' };
    rows[4] = { ...rows[4]!, reason: 'edited' };
    const v = new ChainVerifier();
    expect(rows.map((r) => v.push(r))).toEqual([true, false, true, true, false, true]);
    expect(v.result()).toEqual({
      ok: false, checked: 6, lastSeq: 6, firstBadSeq: 2, reason: 'event 2 was modified (hash mismatch)', badSeqs: [2, 5], badCount: 2,
    });
  });

  it('reports missing events by the sequence numbers expected, and an event out of order', () => {
    const rows = chain(6);
    const gap = [rows[0]!, rows[3]!, rows[4]!, rows[5]!];
    expect(verifyChain(gap)).toEqual({
      ok: false, checked: 4, lastSeq: 6, firstBadSeq: 2, reason: 'events 2–3 are missing (next is 4)', badSeqs: [2, 3], badCount: 2,
    });
    expect(verifyChain([rows[0]!, rows[2]!, rows[3]!])).toMatchObject({ firstBadSeq: 2, reason: 'event 2 is missing (next is 3)', badSeqs: [2], badCount: 1 });
    const v = new ChainVerifier();
    expect([rows[0]!, rows[1]!, rows[1]!, rows[2]!].map((r) => v.push(r))).toEqual([true, true, false, true]);
    expect(v.result()).toMatchObject({ ok: false, checked: 3, lastSeq: 3, firstBadSeq: 2, reason: 'event 2 is out of order (after event 2)', badSeqs: [2], badCount: 1 });
  });

  it('after a gap it still checks the next event\'s own hash', () => {
    const rows = chain(4);
    rows[3] = { ...rows[3]!, message: 'edited' };
    expect(verifyChain([rows[0]!, rows[1]!, rows[3]!])).toMatchObject({ badSeqs: [3, 4], badCount: 2 });
  });

  it(`lists at most ${MAX_LISTED_BAD_SEQS} broken sequence numbers and counts all of them`, () => {
    const rows = chain(MAX_LISTED_BAD_SEQS + 20).map((r) => ({ ...r, message: 'edited' }));
    const r = verifyChain(rows);
    expect(r.badSeqs).toEqual(Array.from({ length: MAX_LISTED_BAD_SEQS }, (_, i) => i + 1));
    expect(r.badCount).toBe(MAX_LISTED_BAD_SEQS + 20);
    const big = chain(1);
    const far = { ...chain(MAX_LISTED_BAD_SEQS + 500).at(-1)! };
    expect(verifyChain([big[0]!, far])).toMatchObject({ badCount: MAX_LISTED_BAD_SEQS + 498, badSeqs: Array.from({ length: MAX_LISTED_BAD_SEQS }, (_, i) => i + 2) });
  });
});
