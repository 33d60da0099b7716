/**
 * AuditLog with a store that takes two group commits at once (PostgreSQL's appendsInFlight): a batch formed while
 * one commits is sent at once, expecting the first batch's last event as its head; never more than two are
 * outstanding; each request is released by its own batch only; drain() waits for every batch begun.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { AuditLog, type AuditEvent } from '../../src/audit/log.js';
import type { AuditRow } from '../../src/store/audit.js';
import type { AuditHead, AuditStore, ChainBatch } from '../../src/store/types.js';

interface Call {
  expected: AuditHead | undefined;
  rows: AuditRow[];
  commit: () => void;
  fail: (err: Error) => void;
}

function fakeStore(appendsInFlight: number) {
  const calls: Call[] = [];
  let head: AuditHead | undefined;
  let outstanding = 0;
  let most = 0;
  const store = {
    appendsInFlight,
    appendChained: (batch: ChainBatch, expected?: AuditHead) =>
      new Promise<AuditRow[]>((resolve, reject) => {
        outstanding++;
        most = Math.max(most, outstanding);
        const rows = batch.chain(expected);
        calls.push({
          expected,
          rows,
          // Commits in call order, as PostgreSQL runs a connection's statements: linked to the real head.
          commit: () => {
            outstanding--;
            const linked = expected?.seq === head?.seq && expected?.hash.equals(head!.hash) ? rows : batch.chain(head);
            head = { seq: linked.at(-1)!.seq, hash: linked.at(-1)!.hash };
            resolve(linked);
          },
          fail: (err) => {
            outstanding--;
            reject(err);
          },
        });
      }),
    indexSearchBatch: async () => 0,
  } as unknown as AuditStore;
  return { store, calls, most: () => most };
}

const event = (n: number): AuditEvent => ({ account: 'a', action: 'fetch', operation: 'fetch', result: 'success', message: `event ${n}` });

it('sends a second batch while the first commits, expecting the first one\'s last event; never a third', async () => {
  const { store, calls, most } = fakeStore(2);
  const log = new AuditLog({ store });
  const settled: string[] = [];
  const track = (n: number) => log.record(event(n)).then(() => settled.push(`ok ${n}`), () => settled.push(`refused ${n}`));
  const a = [track(1), track(2)];
  await nextTurn();
  expect(calls).toHaveLength(1);
  const b = [track(3)];
  await nextTurn();
  expect(calls).toHaveLength(2);
  expect(calls[1]!.expected).toEqual({ seq: calls[0]!.rows.at(-1)!.seq, hash: calls[0]!.rows.at(-1)!.hash });
  const c = [track(4), track(5)];
  await nextTurn();
  expect(calls).toHaveLength(2); // two outstanding: the third waits
  let drained = false;
  const drain = log.drain().then(() => (drained = true));
  calls[0]!.commit();
  await Promise.all(a);
  expect(settled).toEqual(['ok 1', 'ok 2']); // only the first batch's requests
  await nextTurn();
  expect(calls).toHaveLength(3);
  calls[1]!.commit();
  await Promise.all(b);
  await nextTurn();
  expect(drained).toBe(false); // the third batch holds events queued before drain()
  calls[2]!.commit();
  await Promise.all([...c, drain]);
  expect(settled).toEqual(['ok 1', 'ok 2', 'ok 3', 'ok 4', 'ok 5']);
  expect(calls.flatMap((call) => call.rows.map((r) => r.seq))).toEqual([1, 2, 3, 4, 5]);
  expect(most()).toBe(2);
});

it('a first batch that fails refuses only its own requests; the one behind it commits, linked to the real head', async () => {
  const { store, calls } = fakeStore(2);
  const log = new AuditLog({ store });
  const first = log.record(event(1));
  await nextTurn();
  const second = log.record(event(2));
  await nextTurn();
  expect(calls).toHaveLength(2);
  calls[0]!.fail(new Error('the database did not answer'));
  await expect(first).rejects.toMatchObject({ code: 'service_unavailable' });
  calls[1]!.commit();
  await expect(second).resolves.toBeUndefined();
  // Expected behind the failed batch, so linked again on the real head (none: the first never committed).
  const after = log.record(event(3));
  await nextTurn();
  expect(calls[2]!.expected).toEqual({ seq: 1, hash: expect.any(Buffer) });
  calls[2]!.commit();
  await after;
});

it('with one commit at a time (SQLite), a batch formed meanwhile waits for the first to finish', async () => {
  const { store, calls, most } = fakeStore(1);
  const log = new AuditLog({ store });
  const first = log.record(event(1));
  await nextTurn();
  const second = log.record(event(2));
  await nextTurn();
  expect(calls).toHaveLength(1);
  calls[0]!.commit();
  await first;
  await nextTurn();
  expect(calls).toHaveLength(2);
  expect(calls[1]!.expected).toEqual({ seq: 1, hash: calls[0]!.rows[0]!.hash });
  calls[1]!.commit();
  await second;
  expect(most()).toBe(1);
});
